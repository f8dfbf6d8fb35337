//! Code contexts: long-lived interpreters whose variables, imports and functions (for a shell:
//! working directory and exported variables) persist from one execution to the next.
//!
//! Each context runs in a sandbox of its own, built like a stateless execution's. Its
//! executions are cells: `POST /v1/contexts/{id}/executions` with an
//! [`ExecRequest`](crate::ExecRequest), one at a time (a second one while a cell runs is
//! refused with `context_busy`).

use chrono::{DateTime, Utc};
use sandbox_core::Language;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/contexts`: start a context.
///
/// Submitting a `context_id` the executor already knows starts nothing: the executor answers
/// with that context (so a control plane can retry safely).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRequest {
    /// Chosen by the control plane; unique per sandbox; `[A-Za-z0-9_-]{1,64}`.
    pub context_id: String,
    /// The interpreter.
    pub language: Language,
    /// The directory the interpreter starts in: an existing directory of the workspace, given
    /// relative to it (`data/raw`) or absolute under `/workspace`; the workspace root when
    /// absent. Cells may change directory afterwards; a restart starts here again.
    #[serde(default)]
    pub cwd: Option<String>,
    /// The interpreter's environment variables (the session's and the context's own), fixed for
    /// the context's life; like a stateless execution's, they reach the interpreter and never
    /// the sandbox's supervisor.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Where a context is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextStatus {
    /// Its interpreter is being started (created or restarted).
    Starting,
    /// Ready for the next execution.
    Idle,
    /// An execution is running in it.
    Busy,
    /// Its interpreter is gone (it exited, was killed after a timeout, by the out-of-memory
    /// killer or on request): its state is lost. Executions answer `context_lost`; a restart
    /// gives it a fresh interpreter.
    Lost,
    /// Reclaimed after being idle for the executor's context idle timeout; otherwise like
    /// [`Lost`](ContextStatus::Lost).
    Expired,
}

impl ContextStatus {
    /// Every status.
    pub const ALL: [ContextStatus; 5] = [
        ContextStatus::Starting,
        ContextStatus::Idle,
        ContextStatus::Busy,
        ContextStatus::Lost,
        ContextStatus::Expired,
    ];

    /// The name used on the wire (`idle`, `lost`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ContextStatus::Starting => "starting",
            ContextStatus::Idle => "idle",
            ContextStatus::Busy => "busy",
            ContextStatus::Lost => "lost",
            ContextStatus::Expired => "expired",
        }
    }

    /// Whether the context still has its interpreter.
    pub fn is_alive(self) -> bool {
        matches!(self, ContextStatus::Starting | ContextStatus::Idle | ContextStatus::Busy)
    }
}

/// A context as `GET /v1/contexts/{id}` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// The id.
    pub context_id: String,
    /// The interpreter.
    pub language: Language,
    /// The absolute directory (under `/workspace`) the interpreter started in.
    pub cwd: String,
    /// Where it is in its life.
    pub status: ContextStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last started or finished an execution (or was created or restarted); the idle
    /// timeout counts from here.
    pub last_active_at: DateTime<Utc>,
    /// Executions run since the interpreter last started.
    pub execution_count: u64,
    /// The execution running now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_execution: Option<String>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Why it is [`Lost`](ContextStatus::Lost) or [`Expired`](ContextStatus::Expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One pre-started interpreter waiting for an execution (`GET /v1/spares`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpareInfo {
    /// Its language.
    pub language: Language,
    /// Milliseconds since it was started.
    pub age_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_defaults_and_status_names() {
        let r: ContextRequest =
            serde_json::from_str(r#"{"context_id":"c1","language":"javascript"}"#).unwrap();
        assert_eq!((r.language, r.cwd, r.env.len()), (Language::Javascript, None, 0));
        assert_eq!(serde_json::to_string(&ContextStatus::Expired).unwrap(), r#""expired""#);
        assert!(ContextStatus::Busy.is_alive() && !ContextStatus::Lost.is_alive());
    }
}
