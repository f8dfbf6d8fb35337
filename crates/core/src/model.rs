//! The control plane's records: API keys, templates, sessions, executions. Plain data; the
//! store persists them and the API renders them.

use crate::display::{DisplayOutput, ExecError};
use crate::{CpuQuantity, ExecutionStatus, Language, MemoryQuantity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Where a session's package installs stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallStatus {
    /// Nothing asked for yet.
    Pending,
    /// An install runs.
    Installing,
    /// The last install succeeded (or there was nothing to install).
    Completed,
    /// The last install failed; the session says why.
    Failed,
}

impl InstallStatus {
    /// Every status, in a stable order.
    pub const ALL: [InstallStatus; 4] =
        [InstallStatus::Pending, InstallStatus::Installing, InstallStatus::Completed, InstallStatus::Failed];

    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallStatus::Pending => "pending",
            InstallStatus::Installing => "installing",
            InstallStatus::Completed => "completed",
            InstallStatus::Failed => "failed",
        }
    }

    /// Parses a name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for InstallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a template's image is there for sessions to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateStatus {
    /// The runtime has the image (or pulls it itself when a sandbox starts).
    Ready,
    /// The runtime is pulling the image; sessions wait for `ready`.
    Pulling,
    /// Pulling the image failed; the template's pull record says why.
    Failed,
}

impl TemplateStatus {
    /// Every status, in a stable order.
    pub const ALL: [TemplateStatus; 3] =
        [TemplateStatus::Ready, TemplateStatus::Pulling, TemplateStatus::Failed];

    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Ready => "ready",
            TemplateStatus::Pulling => "pulling",
            TemplateStatus::Failed => "failed",
        }
    }

    /// Parses a name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for TemplateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far the pull of a template's image got, and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePull {
    /// Layer bytes downloaded so far.
    pub bytes_done: u64,
    /// Layer bytes to download, as far as known (grows while the registry announces layers).
    pub bytes_total: u64,
    /// Layers downloaded and unpacked (or already present).
    pub layers_done: u32,
    /// Layers the image has, as far as known.
    pub layers_total: u32,
    /// When the pull started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (either way).
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, when it did.
    pub error: Option<PullError>,
}

/// Why pulling an image failed: a stable code and the registry's or engine's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullError {
    /// `image_not_found`, `registry_unreachable`, `registry_denied`, `pull_timed_out` or
    /// `pull_failed`.
    pub code: String,
    /// What the engine said.
    pub message: String,
}

/// How an execution changed a path of its workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileChangeKind {
    /// It did not exist before the execution.
    Created,
    /// Its size, modification time or identity changed.
    Modified,
    /// It existed before and not after.
    Deleted,
}

impl FileChangeKind {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FileChangeKind::Created => "created",
            FileChangeKind::Modified => "modified",
            FileChangeKind::Deleted => "deleted",
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Its sandbox is being created.
    Creating,
    /// Its sandbox runs and takes executions.
    Running,
    /// Stopped on request or by the cleaner; the record (and workspace) remain.
    Terminated,
    /// Its sandbox could not be created or was lost; `error_message` says why.
    Failed,
}

impl SessionStatus {
    /// Every status, in a stable order.
    pub const ALL: [SessionStatus; 4] =
        [SessionStatus::Creating, SessionStatus::Running, SessionStatus::Terminated, SessionStatus::Failed];

    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Creating => "creating",
            SessionStatus::Running => "running",
            SessionStatus::Terminated => "terminated",
            SessionStatus::Failed => "failed",
        }
    }

    /// Parses a name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the session can no longer run code.
    pub fn is_final(self) -> bool {
        matches!(self, SessionStatus::Terminated | SessionStatus::Failed)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API key. Only a hash of the secret is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public identifier (`key_…`), safe to show and log.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    pub key_hash: String,
    /// Admin keys see every session and manage keys and templates.
    pub is_admin: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A template: an image and the defaults sessions made from it get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Unique id (`python-basic`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The container image.
    pub image_url: String,
    /// The language runtime its image provides (`python3.11`, `nodejs20`, ...).
    pub language_runtime: String,
    /// Default CPU cores.
    pub default_cpu_cores: f64,
    /// Default memory, MiB.
    pub default_memory_mb: u32,
    /// Default disk, MiB.
    pub default_disk_mb: u32,
    /// Default idle timeout, seconds.
    pub default_timeout_sec: u32,
    /// Environment variables every session gets (a session's own win).
    pub default_env_vars: BTreeMap<String, String>,
    /// Python packages the image ships (`name==version`).
    pub pre_installed_packages: Vec<String>,
    /// Inactive templates take no new sessions.
    pub is_active: bool,
    /// Whether its image is there: only `ready` templates take sessions.
    pub status: TemplateStatus,
    /// The last pull of its image (none when the image was there from the start).
    pub image_pull: Option<ImagePull>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

/// A Python package a session asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencySpec {
    /// The package name.
    pub name: String,
    /// A version constraint (`==2.31.0`, `>=1.0`), if any.
    #[serde(default)]
    pub version: Option<String>,
}

/// A Python package installed for a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledDependency {
    /// The package name.
    pub name: String,
    /// The exact version installed.
    pub version: String,
    /// Where it lives inside the sandbox.
    pub install_location: String,
    /// When it was installed.
    pub install_time: DateTime<Utc>,
    /// Whether the template's image ships it.
    pub is_from_template: bool,
}

/// A session: one sandbox and its workspace, owned by the key that created it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Unique id (`sess_…`; for a client-chosen id, derived from the owner's key and that id).
    pub id: String,
    /// The id its owner chose, if it did: unique per API key, not across keys, so choosing an
    /// id another key holds neither fails nor reveals that it exists.
    pub client_id: Option<String>,
    /// The API key that owns it.
    pub owner_key_id: String,
    /// Its template.
    pub template_id: String,
    /// Where it is in its life.
    pub status: SessionStatus,
    /// CPU.
    pub cpu: CpuQuantity,
    /// Memory.
    pub memory: MemoryQuantity,
    /// Workspace disk.
    pub disk: MemoryQuantity,
    /// Idle timeout, seconds.
    pub timeout_sec: u32,
    /// Environment variables for its executions (template defaults merged in).
    pub env_vars: BTreeMap<String, String>,
    /// Labels its owner attached (string keys and values).
    pub metadata: BTreeMap<String, String>,
    /// What it may reach on the network, through the egress proxy (as validated on create).
    pub network: SessionNetwork,
    /// The runtime backend it runs on (`docker`, `kubernetes`).
    pub runtime_backend: String,
    /// The sandbox's name in the runtime.
    pub sandbox_name: Option<String>,
    /// The runtime's id for the sandbox (container id).
    pub container_id: Option<String>,
    /// The node it runs on.
    pub runtime_node: Option<String>,
    /// Where its workspace lives (host path or bucket prefix).
    pub workspace_path: Option<String>,
    /// Why it failed or was terminated.
    pub error_message: Option<String>,
    /// Package index for dependency installs.
    pub python_package_index_url: String,
    /// Packages asked for.
    pub requested_dependencies: Vec<DependencySpec>,
    /// Packages installed.
    pub installed_dependencies: Vec<InstalledDependency>,
    /// Where its package installs stand.
    pub dependency_install_status: InstallStatus,
    /// pip's error of the last failed install.
    pub dependency_install_error: Option<String>,
    /// The stable code of the last failed install (`package_not_found`, ...).
    pub dependency_install_error_code: Option<String>,
    /// Whether code is refused while the packages asked for at creation failed to install
    /// (else it runs without them).
    pub fail_on_dependency_error: bool,
    /// When the last install started.
    pub dependency_install_started_at: Option<DateTime<Utc>>,
    /// When the last install ended.
    pub dependency_install_completed_at: Option<DateTime<Utc>>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
    /// When it ended (terminated or failed).
    pub completed_at: Option<DateTime<Utc>>,
    /// Last execution or file operation.
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// Whether a session may reach the network at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// No egress (the default).
    #[default]
    None,
    /// Egress to the destinations of its allow-list, within what the operator permits.
    Allowlist,
}

/// A session's network policy: its mode and its `host:port` patterns, in canonical form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionNetwork {
    /// `none` or `allowlist`.
    pub mode: NetworkMode,
    /// The patterns (empty unless `allowlist`).
    pub allow: Vec<String>,
}

impl SessionNetwork {
    /// Whether the session has an allow-list (and so an egress proxy while it runs).
    pub fn has_egress(&self) -> bool {
        self.mode == NetworkMode::Allowlist
    }
}

/// One attempt of a session to reach a destination through the egress proxy, as audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkAttempt {
    /// The session.
    pub session_id: String,
    /// The execution the relay named (untrusted metadata).
    pub execution_id: Option<String>,
    /// `connect` or `http`.
    pub kind: String,
    /// The destination's host as named.
    pub host: String,
    /// Its port, when readable.
    pub port: Option<u16>,
    /// The address connected to, refused or failed.
    pub address: Option<String>,
    /// `allowed`, `denied_policy`, `denied_address`, `denied_limit` or `error`.
    pub decision: String,
    /// Why (`allowed`, `not_in_allow_list`, `loopback`, `connect_failed`, ...).
    pub reason: String,
    /// Bytes sent to the destination.
    pub bytes_up: u64,
    /// Bytes received from it.
    pub bytes_down: u64,
    /// When the request arrived.
    pub started_at: DateTime<Utc>,
    /// How long the attempt lasted, milliseconds.
    pub duration_ms: u64,
}

/// A file an execution created, changed or deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to the workspace.
    pub path: String,
    /// Size in bytes (0 when deleted).
    pub size: u64,
    /// Guessed from the extension.
    pub mime_type: String,
    /// What happened to it.
    #[serde(rename = "type")]
    pub change: FileChangeKind,
    /// When the change was observed.
    pub created_at: DateTime<Utc>,
}

/// Resource use of an execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutionMetrics {
    /// Wall-clock time.
    pub duration_ms: f64,
    /// User plus system CPU time.
    pub cpu_time_ms: Option<f64>,
    /// Peak resident memory.
    pub peak_memory_mb: Option<f64>,
}

/// One run of code in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Unique id (`exec_…`).
    pub id: String,
    /// Its session.
    pub session_id: String,
    /// Where it is in its life.
    pub status: ExecutionStatus,
    /// The language.
    pub language: Language,
    /// The program.
    pub code: String,
    /// The handler's event.
    pub event: Option<Value>,
    /// Timeout, seconds.
    pub timeout_sec: u32,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why it did not complete.
    pub error_message: Option<String>,
    /// Standard output.
    pub stdout: Option<String>,
    /// Standard error.
    pub stderr: Option<String>,
    /// A handler's return value.
    pub return_value: Option<Value>,
    /// Workspace changes.
    pub artifacts: Vec<Artifact>,
    /// Resource use.
    pub metrics: Option<ExecutionMetrics>,
    /// How often it was retried.
    pub retry_count: u32,
    /// When recorded.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds it ran.
    pub execution_time: Option<f64>,
    /// The code context it ran in; `None` for a stateless execution.
    pub context_id: Option<String>,
    /// Rich display outputs, in the order they were produced.
    pub results: Vec<DisplayOutput>,
    /// Whether display outputs were left out for passing the size cap.
    pub results_truncated: bool,
    /// The uncaught exception that ended it, when one did.
    pub error: Option<ExecError>,
}

/// A request made with an `Idempotency-Key`: the operation and request the key was first used
/// for, and what that made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The API key that made the request (keys are scoped per API key).
    pub owner_key_id: String,
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// What was asked (`sessions.create`, `execute:<session>`).
    pub operation: String,
    /// A hash of the request, so the key cannot be reused for another one.
    pub fingerprint: String,
    /// What the request made (a session or execution id), once it has.
    pub resource_id: Option<String>,
    /// When the key was first used.
    pub created_at: DateTime<Utc>,
}

/// A code context: a long-lived interpreter in a session's sandbox, whose state persists from
/// one execution to the next. The record says what it was created with; whether its
/// interpreter is alive is the executor's to say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Unique id (`ctx_…`).
    pub id: String,
    /// Its session.
    pub session_id: String,
    /// Its interpreter.
    pub language: Language,
    /// The directory the interpreter starts in, relative to the workspace (`None`: its root).
    pub cwd: Option<String>,
    /// Its own environment variables, on top of the session's.
    pub env_vars: BTreeMap<String, String>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// Where a warm-pool sandbox is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolState {
    /// Its sandbox is being created.
    Starting,
    /// Its sandbox runs, unused, waiting to be claimed.
    Ready,
    /// A session took it (the session row is being written).
    Claimed,
}

impl PoolState {
    /// The name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Starting => "starting",
            PoolState::Ready => "ready",
            PoolState::Claimed => "claimed",
        }
    }

    /// Parses a name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        [PoolState::Starting, PoolState::Ready, PoolState::Claimed].into_iter().find(|x| x.as_str() == s)
    }
}

/// A sandbox started ahead of demand for a template. Its id is the id of the session that will
/// claim it, so its workspace and socket directories are already the session's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSandbox {
    /// The reserved session id.
    pub id: String,
    /// Its template.
    pub template_id: String,
    /// Where it is.
    pub state: PoolState,
    /// The runtime's id for its sandbox, once created.
    pub container_id: Option<String>,
    /// The sandbox's name, once created.
    pub sandbox_name: Option<String>,
    /// When the pool started making it.
    pub created_at: DateTime<Utc>,
    /// When it became ready.
    pub ready_at: Option<DateTime<Utc>>,
    /// When a session claimed it.
    pub claimed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(SessionStatus::parse("bogus"), None);
        assert_eq!(ExecutionStatus::parse("timeout"), Some(ExecutionStatus::Timeout));
        assert!(SessionStatus::Failed.is_final() && !SessionStatus::Running.is_final());
        for p in [PoolState::Starting, PoolState::Ready, PoolState::Claimed] {
            assert_eq!(PoolState::parse(p.as_str()), Some(p));
        }
    }
}
