//! Wire types of the executor's HTTP API, shared by the executor and everything that talks to it.
//!
//! The executor listens on a Unix socket (Docker) or on TCP with a bearer token (Kubernetes) and
//! speaks HTTP/1.1 with JSON bodies. [`PROTOCOL_VERSION`] is reported by `GET /v1/health`; a
//! client refuses an executor whose version it does not speak. Every error body is an
//! [`ErrorBody`] with a stable [`ErrorCode`].

pub mod context;
pub mod contract;
pub mod error;
pub mod exec;
pub mod files;
pub mod paths;
pub mod process;

pub use context::{ContextInfo, ContextRequest, ContextStatus, SpareInfo};
pub use contract::{
    CONTAINER_SOCKET_DIR, DEFAULT_SANDBOX_UID, DEPS_CURRENT, DEPS_DIR, DEPS_PYTHONPATH, SOCKET_FILE_NAME,
    WORKSPACE_DIR,
};
pub use error::{ErrorBody, ErrorCode};
pub use exec::{
    DisplayOutput, ExecError, ExecEvent, ExecMetrics, ExecMode, ExecRequest, ExecResult, ExecutionRecord,
    ExecutionSummary, StreamEvent,
};
pub use files::{
    ArchiveSummary, DirCreated, FileChange, FileChangeKind, FileEntry, FileKind, FileList, MoveRequest,
    WatchEvent, WatchEventKind, WatchRequest, WatcherEvents, WatcherInfo,
};
pub use process::{
    ProcessEnd, ProcessEvent, ProcessInfo, ProcessRequest, ProcessSignal, ProcessState, PtySize,
    SignalRequest,
};

use sandbox_core::Language;
use serde::{Deserialize, Serialize};

/// The version of this protocol. Bump it on any change an older peer would misread (additions
/// an older peer ignores, such as contexts, display outputs and new fields with defaults, keep
/// it).
pub const PROTOCOL_VERSION: u32 = 1;

/// `GET /v1/health`: the executor is up and its sandbox works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"` when the executor answers at all.
    pub status: String,
    /// The executor's crate version.
    pub executor_version: String,
    /// The [`PROTOCOL_VERSION`] the executor speaks.
    pub protocol_version: u32,
    /// The languages whose interpreters exist in this image.
    pub languages: Vec<Language>,
    /// Executions running now.
    pub running_executions: usize,
    /// Milliseconds since the executor started.
    pub uptime_ms: u64,
}
