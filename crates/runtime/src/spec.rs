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
}

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
    /// Settings for the executor (`SANDBOX_EXECUTOR_*` variables).
    pub executor_env: BTreeMap<String, String>,
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
            executor_env: BTreeMap::new(),
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
}
