//! Bodies of the code context routes.

use crate::api::types::container_path;
use crate::service::contexts::ContextView;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `POST /api/v1/sessions/{session_id}/contexts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"language": "python", "cwd": "data", "env_vars": {"MODE": "test"}}))]
pub struct CreateContextRequest {
    /// `python`, `javascript` or `shell`.
    #[schema(schema_with = super::language)]
    pub language: String,
    /// An existing directory of the workspace the interpreter starts in, relative to it or
    /// absolute under `/workspace` (default: the workspace root). A restart starts here again.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment variables of the interpreter, on top of the session's; fixed for the
    /// context's life.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
}

/// A code context.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContextResponse {
    /// Id (`ctx_…`).
    pub id: String,
    /// Its session (as the caller named it).
    pub session_id: String,
    /// `python`, `javascript` or `shell`.
    #[schema(schema_with = super::language)]
    pub language: String,
    /// The absolute directory its interpreter starts in.
    pub cwd: String,
    /// `starting`, `idle`, `busy`, `lost` (its interpreter is gone: executions answer 409
    /// `context_lost` until it is restarted) or `expired` (reclaimed after the idle timeout;
    /// otherwise like `lost`).
    #[schema(schema_with = super::context_status)]
    pub status: String,
    /// Why it is lost or expired.
    pub message: Option<String>,
    /// The names of its own environment variables (values are not shown).
    pub env_vars: Vec<String>,
    /// When created.
    #[serde(with = "crate::api::types::time::millis")]
    pub created_at: DateTime<Utc>,
    /// When it last started or finished an execution (the idle timeout counts from here); when
    /// its executor knows it.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub last_active_at: Option<DateTime<Utc>>,
    /// Executions run since its interpreter last started.
    pub execution_count: u64,
    /// The execution running in it now.
    pub running_execution_id: Option<String>,
    /// How often it was restarted in its current sandbox.
    pub restarts: u32,
}

impl ContextResponse {
    /// Renders a context of the session the caller calls `session_id`.
    pub fn new(v: ContextView, session_id: String) -> Self {
        let cwd = match (&v.info, &v.record.cwd) {
            (Some(info), _) => info.cwd.clone(),
            (None, Some(c)) if c.starts_with('/') => c.clone(),
            (None, c) => container_path(c.as_deref().unwrap_or_default()),
        };
        ContextResponse {
            id: v.record.id,
            session_id,
            language: v.record.language.as_str().into(),
            cwd,
            status: v.status.as_str().into(),
            message: v.message,
            env_vars: v.record.env_vars.into_keys().collect(),
            created_at: v.record.created_at,
            last_active_at: v.info.as_ref().map(|i| i.last_active_at),
            execution_count: v.info.as_ref().map_or(0, |i| i.execution_count),
            running_execution_id: v.info.as_ref().and_then(|i| i.running_execution.clone()),
            restarts: v.info.as_ref().map_or(0, |i| i.restarts),
        }
    }
}
