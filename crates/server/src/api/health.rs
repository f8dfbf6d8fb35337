//! Health, root information, metrics, and the manual state sync.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::types::{
    ComponentHealth, DetailedHealthResponse, HealthResponse, ReadinessResponse, RootResponse, SyncResponse,
};
use crate::caller::Caller;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use sandbox_core::model::SessionStatus;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

/// The server's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a health check waits for the database or the runtime to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Why `check` failed, or `None` when it answered within [`CHECK_TIMEOUT`].
async fn failure<T, E: Display>(check: impl Future<Output = Result<T, E>>) -> Option<String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// Asks the database and the runtime at once whether they answer: why each does not, if it does
/// not.
async fn database_and_runtime(state: &AppState) -> (Option<String>, Option<String>) {
    tokio::join!(failure(state.store.ping()), failure(state.runtime.list(&[("io.sandbox.probe", "none")])))
}

/// Readiness: answers without authentication, 200 when the database and the runtime answer
/// (each within 2 s), 503 saying which does not otherwise (why is logged, not shown).
#[utoipa::path(get, path = "/api/v1/health/ready", tag = "health",
    responses(
        (status = 200, description = "The database and the runtime answer", body = ReadinessResponse),
        (status = 503, description = "The database or the runtime does not answer", body = ReadinessResponse)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadinessResponse>) {
    let (database, runtime) = database_and_runtime(&state).await;
    if database.is_some() || runtime.is_some() {
        tracing::warn!(database = database.as_deref(), runtime = runtime.as_deref(), "not ready");
    }
    let state_of = |failure: &Option<String>| if failure.is_some() { "down" } else { "up" }.to_owned();
    let ready = database.is_none() && runtime.is_none();
    let body = ReadinessResponse {
        status: if ready { "ready" } else { "not_ready" }.into(),
        database: state_of(&database),
        runtime: state_of(&runtime),
    };
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// The database's and the runtime's health (and the bucket's, in `s3` mode); session counts.
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
    let (db, rt) = database_and_runtime(&state).await;
    let component = |kind: &str, err: Option<String>| ComponentHealth {
        kind: kind.into(),
        healthy: err.is_none(),
        error: err,
    };
    let database = component(state.store.dialect(), db);
    let runtime = component(state.runtime.name(), rt);
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
