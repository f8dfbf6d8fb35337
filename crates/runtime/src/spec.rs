//! What a sandbox should be (the spec a backend turns into a container or pod) and what it is
//! (the status read back).

use chrono::{DateTime, Utc};
use sandbox_core::{CpuQuantity, MemoryQuantity};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Label keys every sandbox carries, so a restarted control plane can find its containers.
pub mod labels {
    /// Present (`true`) on every container the platform manages.
    pub const MANAGED: &str = "io.sandbox.managed";
    /// The sandbox's name.
    pub const SANDBOX: &str = "io.sandbox.sandbox";
    /// The session the sandbox serves.
    pub const SESSION: &str = "io.sandbox.session";
    /// The template it was made from.
    pub const TEMPLATE: &str = "io.sandbox.template";
    /// The deployment (control plane installation) that owns it; replicas sharing a database
    /// share it, and a control plane never touches another deployment's sandboxes.
    pub const DEPLOYMENT: &str = "io.sandbox.deployment";
    /// What a container is for, when it is not a sandbox: `installer` for a package install.
    pub const ROLE: &str = "io.sandbox.role";
    /// When an installer must have finished (Unix seconds); past it, its owner is gone.
    pub const DEADLINE: &str = "io.sandbox.deadline";
}

/// The [`labels::ROLE`] of package installer containers.
pub const INSTALLER_ROLE: &str = "installer";

/// Everything that decides one sandbox container.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSpec {
    /// Unique name; also the container name.
    pub name: String,
    /// The template image.
    pub image: String,
    /// CPU allowance.
    pub cpu: CpuQuantity,
    /// Memory limit (swap is not allowed on top).
    pub memory: MemoryQuantity,
    /// Most processes and threads in the container.
    pub pids_limit: i64,
    /// Size of the container's `/tmp`.
    pub tmp_size: MemoryQuantity,
    /// Labels (the [`labels`] keys are added by the backend).
    pub labels: BTreeMap<String, String>,
    /// Host directory mounted read-write at `/workspace`.
    pub workspace_dir: PathBuf,
    /// Host directory mounted at `/run/sandbox`, where the executor puts its socket.
    pub socket_dir: PathBuf,
    /// Host directory of installed packages, mounted read-only.
    pub deps_dir: Option<PathBuf>,
    /// Host directory mounted read-only at [`sandbox_protocol::contract::EGRESS_DIR`]: the
    /// control plane puts the session's egress proxy socket in it while the session may reach
    /// the network. It must be root-owned and not writable by the sandbox's uid.
    pub egress_dir: Option<PathBuf>,
    /// Settings for the executor (`SANDBOX_EXECUTOR_*` variables).
    pub executor_env: BTreeMap<String, String>,
    /// The uid and gid everything in the sandbox runs as (on the host too: no user namespace).
    pub uid: u32,
}

impl SandboxSpec {
    /// A spec with the platform's defaults: 1 CPU, 512 MiB, 128 processes, 512 MiB `/tmp`.
    pub fn new(
        name: impl Into<String>,
        image: impl Into<String>,
        workspace_dir: PathBuf,
        socket_dir: PathBuf,
    ) -> Self {
        SandboxSpec {
            name: name.into(),
            image: image.into(),
            cpu: CpuQuantity::from_millis(1000).expect("non-zero"),
            memory: MemoryQuantity::from_mib(512).expect("non-zero"),
            pids_limit: 128,
            tmp_size: MemoryQuantity::from_mib(512).expect("non-zero"),
            labels: BTreeMap::new(),
            workspace_dir,
            socket_dir,
            deps_dir: None,
            egress_dir: None,
            executor_env: BTreeMap::new(),
            uid: sandbox_protocol::DEFAULT_SANDBOX_UID,
        }
    }

    /// The executor's socket, as seen from the host.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(sandbox_protocol::SOCKET_FILE_NAME)
    }
}

/// A sandbox's state as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Restarting.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited.
    Exited,
    /// Dead (could not be removed).
    Dead,
    /// Something the engine reported that this crate does not know.
    Unknown,
}

/// A sandbox as the engine sees it right now.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxInfo {
    /// The engine's id.
    pub id: String,
    /// The name.
    pub name: String,
    /// The state.
    pub state: SandboxState,
    /// The engine's health verdict (`healthy`, `unhealthy`, `starting`, or `unknown`).
    pub health: String,
    /// When it was created.
    pub created_at: Option<DateTime<Utc>>,
    /// Its image.
    pub image: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The exit code, once exited.
    pub exit_code: Option<i64>,
    /// Whether the kernel's OOM killer ended the container's main process.
    pub oom_killed: bool,
    /// When it stopped, once stopped.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A one-off container that installs Python packages for a session: the template's image,
/// joining no network, reaching the package index only through the control plane's egress
/// proxy, writing only into one fresh host directory.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallerSpec {
    /// Unique name; also the container name, and the id the egress audit records its
    /// connections under (1 to 64 of `[A-Za-z0-9_-]`).
    pub name: String,
    /// The session's template image (the same Python the sandbox runs).
    pub image: String,
    /// The program and its arguments (`python3 -m pip install ...`), run without a shell.
    pub command: Vec<String>,
    /// Environment variables besides the backend's own (`PIP_INDEX_URL`: secrets such as index
    /// credentials go here, never into `command`).
    pub env: BTreeMap<String, String>,
    /// Host directory mounted read-write at [`InstallerSpec::TARGET`]: where packages go.
    pub target_dir: PathBuf,
    /// Host directory mounted read-write at `/tmp` for unpacking (kept off memory).
    pub scratch_dir: PathBuf,
    /// The host directory holding the install's egress proxy socket
    /// ([`EGRESS_SOCKET_NAME`](sandbox_protocol::contract::EGRESS_SOCKET_NAME)), made and
    /// served by the control plane with only the index allowed: the installer's only way out.
    /// It is mounted read-only at [`EGRESS_DIR`](sandbox_protocol::contract::EGRESS_DIR) and
    /// `command` runs under `sandbox-executor egress-relay`, with the proxy variables pointing
    /// at the relay on loopback. It must be root-owned and not writable by the installer's uid.
    pub egress_dir: PathBuf,
    /// CPU allowance.
    pub cpu: CpuQuantity,
    /// Memory limit.
    pub memory: MemoryQuantity,
    /// Most processes and threads.
    pub pids_limit: i64,
    /// How long it may run before it is killed.
    pub timeout: std::time::Duration,
    /// Labels (the [`labels`] keys for role and deadline are added by the backend).
    pub labels: BTreeMap<String, String>,
    /// The uid and gid it runs as (the sandbox's).
    pub uid: u32,
}

impl InstallerSpec {
    /// Where the target directory is mounted in the installer.
    pub const TARGET: &str = "/target";
}

/// Where an installer's output goes line by line while it runs.
pub type InstallerProgress = tokio::sync::mpsc::Sender<String>;

/// How an installer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerOutcome {
    /// Its exit code; `None` when it was killed at its timeout.
    pub exit_code: Option<i64>,
    /// The end of what it printed (stdout and stderr interleaved).
    pub output: String,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
}
