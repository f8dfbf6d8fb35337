//! Bodies of the execution routes.

use chrono::{DateTime, Utc};
use sandbox_core::display::{DisplayOutput, ExecError};
use sandbox_core::model::{Artifact, Execution};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// `POST .../execute` and `.../execute-sync`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "def handler(event):\n    return {'message': 'Hello, ' + event.get('name', 'World')}", "language": "python", "timeout": 10, "event": {"name": "World"}}))]
pub struct ExecuteCodeRequest {
    /// The program (at most 102400 bytes).
    #[schema(min_length = 1, max_length = 102400)]
    pub code: String,
    /// `python`, `javascript` or `shell`. Required, unless `context_id` is given: then the
    /// context's language (a different one is a 422).
    #[serde(default)]
    #[schema(pattern = "^(python|javascript|shell)$")]
    pub language: Option<String>,
    /// Timeout in seconds (1-3600, default 30).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout: Option<u32>,
    /// Passed to a handler (stateless executions only).
    #[serde(default)]
    pub event: Option<serde_json::Map<String, Value>>,
    /// Run the code as the next cell of this code context (`POST /api/v1/sessions/{id}/contexts`):
    /// its variables, imports and functions persist, and the value of its last expression is the
    /// main result. 409 `context_busy` while another execution runs in it, 409 `context_lost`
    /// once its interpreter is gone.
    #[serde(default)]
    pub context_id: Option<String>,
}

/// Query of `POST .../execute`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExecuteQuery {
    /// `true`: answer with Server-Sent Events: `started`, `stdout`/`stderr` chunks and `display`
    /// outputs, `result`.
    #[serde(default)]
    pub stream: bool,
}

/// Query of `POST .../execute-sync`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExecuteSyncQuery {
    /// Accepted for compatibility (results are pushed, not polled).
    pub poll_interval: Option<f64>,
    /// Longest wait in seconds (10-3600, default 300); past it the current state is returned.
    pub sync_timeout: Option<u64>,
    /// `true`: answer with Server-Sent Events.
    #[serde(default)]
    pub stream: bool,
}

/// Answer of `POST .../execute`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecuteCodeResponse {
    /// The new execution.
    pub execution_id: String,
    /// Its session.
    pub session_id: String,
    /// `running`: the execution is handed to the sandbox at once.
    #[schema(pattern = "^running$")]
    pub status: String,
    /// When recorded.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub created_at: Option<DateTime<Utc>>,
}

/// A file an execution created, modified or deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArtifactResponse {
    /// Path relative to the workspace.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type from the extension.
    pub mime_type: String,
    /// `created`, `modified` or `deleted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When observed.
    #[serde(with = "crate::api::types::time::millis")]
    pub created_at: DateTime<Utc>,
    /// Not computed.
    pub checksum: Option<String>,
}

impl From<&Artifact> for ArtifactResponse {
    fn from(a: &Artifact) -> Self {
        ArtifactResponse {
            path: a.path.clone(),
            size: a.size,
            mime_type: a.mime_type.clone(),
            kind: a.change.as_str().into(),
            created_at: a.created_at,
            checksum: None,
        }
    }
}

/// Resource use of an execution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionMetricsResponse {
    /// Wall time.
    pub duration_ms: f64,
    /// CPU time of the whole process tree.
    pub cpu_time_ms: Option<f64>,
    /// Peak memory of the largest process.
    pub peak_memory_mb: Option<f64>,
}

/// An execution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionResponse {
    /// Id.
    pub id: String,
    /// Session.
    pub session_id: String,
    /// `running`, then `completed`, `failed`, `timeout`, `crashed` or `cancelled` (`pending` is
    /// never used by this server).
    #[schema(schema_with = super::execution_status)]
    pub status: String,
    /// The program.
    pub code: Option<String>,
    /// Its language.
    pub language: Option<String>,
    /// Timeout, seconds.
    pub timeout: Option<u32>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Why it did not complete.
    pub error_message: Option<String>,
    /// Seconds it ran.
    pub execution_time: Option<f64>,
    /// Standard output.
    pub stdout: Option<String>,
    /// Standard error.
    pub stderr: Option<String>,
    /// Workspace changes.
    pub artifacts: Vec<ArtifactResponse>,
    /// Retries.
    pub retry_count: u32,
    /// Recorded.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub created_at: Option<DateTime<Utc>>,
    /// Started.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub completed_at: Option<DateTime<Utc>>,
    /// A handler's return value.
    pub return_value: Option<Value>,
    /// Resource use.
    pub metrics: Option<ExecutionMetricsResponse>,
    /// The code context it ran in; `null` for a stateless execution.
    pub context_id: Option<String>,
    /// Rich display outputs in the order they were produced (`display()` calls, figures, and in
    /// a context the value of the last expression, marked `is_main_result`).
    pub results: Vec<DisplayResult>,
    /// Whether display outputs were left out for passing the size cap.
    pub results_truncated: bool,
    /// The uncaught exception that ended it (Python and JavaScript), besides its text on stderr.
    pub error: Option<ExecutionError>,
}

/// One rich output: the same value in one or more representations (a MIME bundle, as Jupyter's
/// `display_data` and `execute_result`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"data": {"text/plain": "2"}, "metadata": {}, "is_main_result": true}))]
pub struct DisplayResult {
    /// MIME type to representation: text for `text/plain`, `text/html`, `text/markdown`,
    /// `image/svg+xml`, ...; base64 for `image/png`, `image/jpeg`, ...; any JSON value for
    /// `application/json`.
    pub data: BTreeMap<String, Value>,
    /// Per-type details (an image's `width` and `height`).
    pub metadata: BTreeMap<String, Value>,
    /// Whether this is the value of the last expression (at most one per execution).
    pub is_main_result: bool,
}

impl From<DisplayOutput> for DisplayResult {
    fn from(d: DisplayOutput) -> Self {
        DisplayResult { data: d.data, metadata: d.metadata, is_main_result: d.is_main_result }
    }
}

/// An uncaught exception.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionError {
    /// Its type (`ZeroDivisionError`, `TypeError`, `KeyboardInterrupt`).
    pub name: String,
    /// Its message.
    pub value: String,
    /// The traceback as printed.
    pub traceback: String,
}

impl From<ExecError> for ExecutionError {
    fn from(e: ExecError) -> Self {
        ExecutionError { name: e.name, value: e.value, traceback: e.traceback }
    }
}

impl ExecutionResponse {
    /// The same, naming its session `session_id` (what the caller calls it).
    pub fn in_session(self, session_id: String) -> Self {
        ExecutionResponse { session_id, ..self }
    }
}

impl From<Execution> for ExecutionResponse {
    fn from(e: Execution) -> Self {
        ExecutionResponse {
            artifacts: e.artifacts.iter().map(Into::into).collect(),
            metrics: e.metrics.map(|m| ExecutionMetricsResponse {
                duration_ms: m.duration_ms,
                cpu_time_ms: m.cpu_time_ms,
                peak_memory_mb: m.peak_memory_mb,
            }),
            id: e.id,
            session_id: e.session_id,
            status: e.status.as_str().into(),
            code: Some(e.code),
            language: Some(e.language.as_str().into()),
            timeout: Some(e.timeout_sec),
            exit_code: e.exit_code,
            error_message: e.error_message,
            execution_time: e.execution_time,
            stdout: e.stdout,
            stderr: e.stderr,
            retry_count: e.retry_count,
            created_at: Some(e.created_at),
            started_at: e.started_at,
            completed_at: e.completed_at,
            return_value: e.return_value,
            context_id: e.context_id,
            results: e.results.into_iter().map(Into::into).collect(),
            results_truncated: e.results_truncated,
            error: e.error.map(Into::into),
        }
    }
}
