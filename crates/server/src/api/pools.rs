//! `/api/v1/pools`: the warm pools' sizes, hit rates and time to ready.

use crate::api::error::{ApiError, ErrorBody};
use crate::caller::Caller;
use crate::service::pools::PoolStatus;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;

/// Every template's pool: target size, ready and starting sandboxes, hits, misses, hit rate
/// and time-to-ready percentiles.
#[utoipa::path(get, path = "/api/v1/pools", tag = "health", security(("bearer" = [])),
    responses(
        (status = 200, description = "Pools by template", body = [PoolStatus]),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key (pools are the deployment's)", body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<PoolStatus>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(state.pools.status().await?))
}
