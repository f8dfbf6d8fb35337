//! Health, root information, metrics, and the manual state sync.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::types::{
    ComponentHealth, DetailedHealthResponse, HealthResponse, RootResponse, SyncResponse,
};
use crate::caller::Caller;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use sandbox_core::model::SessionStatus;
use std::collections::BTreeMap;

/// The server's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Liveness: answers without authentication while the process runs.
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    responses((status = 200, description = "The server runs", body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "healthy".into(),
        version: VERSION.into(),
        uptime: state.started.elapsed().as_secs_f64(),
    })
}

async fn session_counts(state: &AppState) -> Result<BTreeMap<String, u64>, ApiError> {
    let mut counts = BTreeMap::new();
    for status in SessionStatus::ALL {
        let filter = sandbox_store::SessionFilter { status: Some(status), limit: 1, ..Default::default() };
        counts.insert(status.as_str().to_owned(), state.store.list_sessions(&filter).await?.total);
    }
    Ok(counts)
}

/// Readiness: the database and the runtime answer; session counts.
#[utoipa::path(get, path = "/api/v1/health/detailed", tag = "health", security(("bearer" = [])),
    responses(
        (status = 200, description = "Component health", body = DetailedHealthResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key (the deployment's details)", body = ErrorBody)))]
pub async fn detailed(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DetailedHealthResponse>, ApiError> {
    caller.require_admin()?;
    let db = state.store.ping().await;
    let rt = state.runtime.list(&[("io.sandbox.probe", "none")]).await;
    let component = |kind: &str, err: Option<String>| ComponentHealth {
        kind: kind.into(),
        healthy: err.is_none(),
        error: err,
    };
    let database = component(state.store.dialect(), db.err().map(|e| e.to_string()));
    let runtime = component(state.runtime.name(), rt.err().map(|e| e.to_string()));
    let storage =
        state.sessions.workspaces().check().await.map(|r| component("s3", r.err().map(|e| e.to_string())));
    let sessions = if database.healthy { session_counts(&state).await? } else { BTreeMap::new() };
    Ok(Json(DetailedHealthResponse {
        status: if database.healthy && runtime.healthy && storage.as_ref().is_none_or(|s| s.healthy) {
            "healthy"
        } else {
            "degraded"
        }
        .into(),
        version: VERSION.into(),
        uptime: state.started.elapsed().as_secs_f64(),
        database,
        runtime,
        storage,
        sessions,
        instance_id: state.lifecycle.instance_id.clone(),
        leader: state.lifecycle.is_leader(),
    }))
}

/// Compares sessions with the sandboxes that actually run, now (admin).
#[utoipa::path(post, path = "/api/v1/health/sync", tag = "health", security(("bearer" = [])),
    responses(
        (status = 200, description = "What the sync changed", body = SyncResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)))]
pub async fn sync(State(state): State<AppState>, caller: Caller) -> Result<Json<SyncResponse>, ApiError> {
    caller.require_admin()?;
    let report = state.sessions.reconcile().await?;
    let expired = state.sessions.expire().await?;
    Ok(Json(SyncResponse {
        sessions_recovered: report.sessions_recovered,
        sessions_failed: report.sessions_failed,
        orphans_removed: report.orphans_removed,
        pool_discarded: report.pool_discarded,
        installs_failed: report.installs_failed,
        expired_terminated: expired as u64,
    }))
}

/// Where to start.
#[utoipa::path(get, path = "/", tag = "health", responses((status = 200, description = "Service information", body = RootResponse)))]
pub async fn root() -> Json<RootResponse> {
    Json(RootResponse {
        name: "sandbox-server".into(),
        version: VERSION.into(),
        openapi: "/openapi.json".into(),
    })
}

/// Prometheus metrics (any valid API key).
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key (the deployment's metrics)", body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let counts = session_counts(&state).await?;
    let counts: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render(&counts)))
}
