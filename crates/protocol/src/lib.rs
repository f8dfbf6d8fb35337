//! Wire types of the executor's HTTP API, shared by the executor and everything that talks to it.
//!
//! The executor listens on a Unix socket (Docker) or on TCP with a bearer token (Kubernetes) and
//! speaks HTTP/1.1 with JSON bodies. [`PROTOCOL_VERSION`] is reported by `GET /v1/health`; a
//! client refuses an executor whose version it does not speak. Every error body is an
//! [`ErrorBody`] with a stable [`ErrorCode`].

pub mod error;
pub mod exec;
pub mod files;
pub mod paths;

pub use error::{ErrorBody, ErrorCode};
pub use exec::{
    ExecMetrics, ExecMode, ExecRequest, ExecResult, ExecutionRecord, ExecutionSummary, StreamEvent,
};
pub use files::{ArchiveSummary, FileChange, FileChangeKind, FileEntry, FileKind, FileList};

use sandbox_core::Language;
use serde::{Deserialize, Serialize};

/// The version of this protocol. Bump it on any change an older peer would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// The host uid (and gid) sandbox containers and package installers run as unless the operator
/// chooses another: one no host account uses (below systemd's dynamic range, above the
/// human-user range), so a sandbox's processes and files are nobody's on the host.
pub const DEFAULT_SANDBOX_UID: u32 = 61_000;

/// Where the executor's Unix socket lives inside a sandbox container.
pub const CONTAINER_SOCKET_DIR: &str = "/run/sandbox";
/// The socket's file name inside [`CONTAINER_SOCKET_DIR`].
pub const SOCKET_FILE_NAME: &str = "executor.sock";
/// Where the workspace is mounted inside a sandbox container (and inside bwrap).
pub const WORKSPACE_DIR: &str = "/workspace";
/// Where a session's installed packages are mounted in its container, read-only.
pub const DEPS_DIR: &str = "/opt/sandbox/deps";
/// The name, inside [`DEPS_DIR`], of the link to the current set of installed packages; an
/// install writes a new set beside the old one and then moves this link, so an execution never
/// sees half an install.
pub const DEPS_CURRENT: &str = "site";
/// What Python finds installed packages through: `PYTHONPATH` of every execution.
pub const DEPS_PYTHONPATH: &str = "/opt/sandbox/deps/site";

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
