//! `/api/v1/admin/keys`: API key management for admin keys.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{Body, PathParam, Query, page};
use crate::api::types::{CreateKeyRequest, KeyResponse, Page, PageQuery};
use crate::caller::Caller;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// Creates a key; the answer is the only time its secret is shown.
#[utoipa::path(post, path = "/api/v1/admin/keys", tag = "admin", security(("bearer" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `key` holds the secret", body = KeyResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateKeyRequest>,
) -> Result<(StatusCode, Json<KeyResponse>), ApiError> {
    let (key, secret) = state.keys.create(&caller, &req.name, req.is_admin, req.e2b_format).await?;
    Ok((StatusCode::CREATED, Json(KeyResponse { key: Some(secret), ..key.into() })))
}

/// Lists keys (never their secrets).
#[utoipa::path(get, path = "/api/v1/admin/keys", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the keys, oldest first", body = Page<KeyResponse>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 422, description = "Invalid paging", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<KeyResponse>>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    Ok(Json(Page::of(state.keys.list(&caller).await?, limit, offset).map(Into::into)))
}

/// Revokes a key; it authenticates nothing afterwards.
#[utoipa::path(delete, path = "/api/v1/admin/keys/{key_id}", tag = "admin", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 409, description = "A key cannot revoke itself", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    state.keys.revoke(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
