//! Bodies of the health, sync and root routes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy`.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// Seconds since start.
    pub uptime: f64,
}

/// `GET /api/v1/health/ready`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadinessResponse {
    /// `ready`, or `not_ready` when the database or the runtime does not answer.
    pub status: String,
    /// `up` or `down`.
    pub database: String,
    /// `up` or `down`.
    pub runtime: String,
}

/// `GET /api/v1/health/detailed`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DetailedHealthResponse {
    /// `healthy` or `degraded`.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// Seconds since start.
    pub uptime: f64,
    /// The database (`sqlite` or `mysql`) and whether it answers.
    pub database: ComponentHealth,
    /// The runtime backend and whether it answers.
    pub runtime: ComponentHealth,
    /// Workspace storage (`s3` mode only) and whether it answers.
    pub storage: Option<ComponentHealth>,
    /// Sessions by status.
    pub sessions: BTreeMap<String, u64>,
    /// This process's id among the replicas.
    pub instance_id: String,
    /// Whether this process runs the lifecycle loops (holds the lease).
    pub leader: bool,
}

/// One dependency's health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComponentHealth {
    /// What it is.
    pub kind: String,
    /// Whether it answers.
    pub healthy: bool,
    /// The error, when it does not.
    pub error: Option<String>,
}

/// Answer of `POST /api/v1/health/sync`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncResponse {
    /// Sessions whose lost sandbox was recreated.
    pub sessions_recovered: u64,
    /// Sessions marked failed (sandbox lost for good, or stuck creating).
    pub sessions_failed: u64,
    /// Sandboxes no session or pool owns, removed.
    pub orphans_removed: u64,
    /// Pool sandboxes that were dead or abandoned, removed.
    pub pool_discarded: u64,
    /// Dependency installs interrupted by a stopped control plane, marked failed.
    pub installs_failed: u64,
    /// Sessions terminated for idling past their timeout or living past the maximum lifetime.
    pub expired_terminated: u64,
}

/// `GET /`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RootResponse {
    /// The service.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The OpenAPI document.
    pub openapi: String,
}
