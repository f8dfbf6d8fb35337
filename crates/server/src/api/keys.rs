//! `/api/v1/admin/keys`: API key management for admin keys.

use crate::api::extract::{Body, PathParam};
use crate::api::types::{CreateKeyRequest, KeyResponse};
use crate::auth::{self, Caller};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;

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
    caller.require_admin()?;
    if req.name.trim().is_empty() || req.name.len() > 128 {
        return Err(ApiError::invalid_field("name", "must be 1-128 characters"));
    }
    let (key, secret) = auth::create_key(state.store.as_ref(), req.name.trim(), req.is_admin).await?;
    tracing::info!(key_id = %key.id, admin = key.is_admin, by = %caller.key_id, "API key created");
    Ok((StatusCode::CREATED, Json(KeyResponse { key: Some(secret), ..key.into() })))
}

/// Lists keys (never their secrets).
#[utoipa::path(get, path = "/api/v1/admin/keys", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "Keys", body = [KeyResponse]),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<KeyResponse>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(state.store.list_api_keys().await?.into_iter().map(Into::into).collect()))
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
    caller.require_admin()?;
    if id == caller.key_id {
        return Err(ApiError::conflict(
            "cannot_revoke_own_key",
            "a key cannot revoke itself (that would lock its holder out); use another admin key",
        ));
    }
    if !state.store.revoke_api_key(&id, Utc::now()).await? {
        return Err(ApiError::not_found("key_not_found", format!("key {id} does not exist")));
    }
    tracing::info!(key_id = %id, by = %caller.key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
