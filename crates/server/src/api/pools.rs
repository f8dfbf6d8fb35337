//! `/api/v1/pools`: the warm pools' sizes, hit rates and time to ready.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{Query, page};
use crate::api::types::{Page, PageQuery};
use crate::caller::Caller;
use crate::service::pools::PoolStatus;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;

/// Every template's pool: target size, ready and starting sandboxes, hits, misses, hit rate
/// and time-to-ready percentiles.
#[utoipa::path(get, path = "/api/v1/pools", tag = "health", security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the pools, by template", body = Page<PoolStatus>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key (pools are the deployment's)", body = ErrorBody),
        (status = 422, description = "Invalid paging", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<PoolStatus>>, ApiError> {
    caller.require_admin()?;
    let (limit, offset) = page(q.limit, q.offset)?;
    Ok(Json(Page::of(state.pools.status().await?, limit, offset)))
}
