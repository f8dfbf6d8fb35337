//! The middleware that turns an `Authorization: Bearer` header into a [`Caller`], or answers 401.

use crate::api::error::ApiError;
use crate::caller::Caller;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Admits requests with a valid, unrevoked key and records the [`Caller`].
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(secret) = presented.filter(|s| !s.is_empty()) else {
        return ApiError::unauthorized("send an API key as 'Authorization: Bearer <key>'").into_response();
    };
    match state.keys.authenticate(secret).await {
        Ok(Some(caller)) => {
            tracing::Span::current().record("key_id", caller.key_id.as_str());
            req.extensions_mut().insert::<Caller>(caller);
            next.run(req).await
        }
        Ok(None) => ApiError::unauthorized("the API key is not valid").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
