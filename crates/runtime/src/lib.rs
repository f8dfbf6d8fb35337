//! Runtime backends create the hardened container each sandbox lives in, and find, inspect and
//! remove them later. The control plane picks one backend at start-up and uses it through
//! [`Runtime`]; it reaches the executor inside through the [`ExecutorClient`] a backend returns.

pub mod docker;
pub mod image;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod profile;
pub mod spec;

use async_trait::async_trait;
pub use image::{ImageRef, PullProgress};
use sandbox_core::{CpuQuantity, MemoryQuantity};
pub use sandbox_executor_client::ExecutorClient;
pub use spec::{
    InstallerOutcome, InstallerProgress, InstallerSpec, SandboxInfo, SandboxSpec, SandboxState, labels,
};

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container engine cannot be reached.
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// The template's image does not exist on this host.
    #[error("image {0} not found; build it with images/build.sh")]
    ImageNotFound(String),
    /// The container started but the executor in it never answered.
    #[error("sandbox did not become ready within {seconds}s: {reason}")]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// What was seen (container state, last log lines).
        reason: String,
    },
    /// The container exited during start-up.
    #[error("sandbox exited while starting: {0}")]
    StartFailed(String),
    /// Preparing host directories failed.
    #[error("cannot prepare {path}: {source}")]
    HostDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Anything else the engine reported.
    #[error("container runtime error: {0}")]
    Engine(String),
    /// The backend's settings, or a spec, cannot be expressed on this runtime (for example a
    /// label value Kubernetes does not accept).
    #[error("invalid sandbox settings: {0}")]
    Invalid(String),
    /// The cluster could not start the sandbox's pod: it cannot be scheduled, its image cannot
    /// be pulled, its configuration is refused, or it failed.
    #[error("sandbox pod {pod} cannot start: {reason}: {message}")]
    PodFailed {
        /// The pod's name.
        pod: String,
        /// Kubernetes' reason (`Unschedulable`, `ErrImagePull`, `CreateContainerConfigError`, ...).
        reason: String,
        /// Kubernetes' message, with the container's last log lines when it ran.
        message: String,
    },
    /// Pulling an image failed; `code` is stable (`image_not_found`, `registry_unreachable`,
    /// `registry_denied`, `pull_failed`).
    #[error("pulling the image failed: {message}")]
    PullFailed {
        /// The stable code.
        code: &'static str,
        /// What the engine said.
        message: String,
    },
    /// This backend does not offer the operation.
    #[error("not supported by the {backend} runtime: {what}")]
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// What is missing.
        what: &'static str,
    },
}

/// A started sandbox.
#[derive(Clone)]
pub struct Sandbox {
    /// The runtime's id for it (the container id).
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// A client for its executor.
    pub executor: ExecutorClient,
}

/// What a control plane needs from a container engine.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The backend's name (`docker`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Creates and starts a sandbox, and returns once its executor answers.
    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError>;

    /// Stops a sandbox, keeping it for inspection. Stopping a stopped or missing one succeeds.
    async fn stop(&self, id: &str) -> Result<(), RuntimeError>;

    /// Removes a sandbox. Removing a missing one succeeds.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;

    /// Inspects a sandbox straight from the engine (the Python control plane's
    /// `get_container_status`);
    /// `None` if it does not exist.
    async fn status(&self, id: &str) -> Result<Option<SandboxInfo>, RuntimeError>;

    /// Whether the sandbox exists and runs (the Python control plane's `is_container_running`).
    async fn is_running(&self, id: &str) -> bool {
        matches!(self.status(id).await, Ok(Some(info)) if info.state == SandboxState::Running)
    }

    /// Every sandbox carrying all of `labels`.
    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<SandboxInfo>, RuntimeError>;

    /// The last `tail` lines the sandbox logged.
    async fn logs(&self, id: &str, tail: usize) -> Result<String, RuntimeError>;

    /// A client for the executor of a sandbox that already runs (after a control plane restart).
    /// Backends that must ask the engine first (Kubernetes: the pod's IP and token) answer from
    /// what they know; [`Runtime::resolve_executor`] asks.
    fn executor(&self, spec: &SandboxSpec) -> ExecutorClient;

    /// Like [`Runtime::executor`], but may ask the engine, so it also works for sandboxes another
    /// control plane replica created. Backends that need no lookup use the default.
    async fn resolve_executor(&self, spec: &SandboxSpec) -> Result<ExecutorClient, RuntimeError> {
        Ok(self.executor(spec))
    }

    /// Whether `image` can be used to create sandboxes. Backends that cannot tell before
    /// trying (a cluster pulls images on its nodes) answer `true`.
    async fn image_available(&self, image: &str) -> Result<bool, RuntimeError> {
        let _ = image;
        Ok(true)
    }

    /// Whether [`Runtime::pull_image`] fetches images from their registry. Backends whose
    /// nodes pull by themselves when a sandbox starts (Kubernetes) need not: their
    /// [`Runtime::image_available`] says `true`.
    fn pulls_images(&self) -> bool {
        false
    }

    /// Pulls `image` from its registry, publishing how far it got on `progress`; returns once
    /// the image is there.
    async fn pull_image(
        &self,
        image: &str,
        progress: &tokio::sync::watch::Sender<PullProgress>,
    ) -> Result<(), RuntimeError> {
        let _ = (image, progress);
        Err(RuntimeError::Unsupported { backend: self.name(), what: "pulling images" })
    }

    /// Changes a running sandbox's CPU and memory limits in place (a warm-pool sandbox claimed
    /// by a session that asked for another shape). `false` when the backend cannot.
    async fn update_resources(
        &self,
        id: &str,
        cpu: CpuQuantity,
        memory: MemoryQuantity,
    ) -> Result<bool, RuntimeError> {
        let _ = (id, cpu, memory);
        Ok(false)
    }

    /// Runs a package installer container to its end (or kills it at its timeout) and removes
    /// it; each line it prints goes to `progress` as it comes, when given (lines are dropped,
    /// never waited for, when the receiver lags). Backends without installers answer
    /// [`RuntimeError::Unsupported`].
    async fn run_installer(
        &self,
        spec: &InstallerSpec,
        progress: Option<InstallerProgress>,
    ) -> Result<InstallerOutcome, RuntimeError> {
        let _ = (spec, progress);
        Err(RuntimeError::Unsupported { backend: self.name(), what: "package installer containers" })
    }

    /// What the host can hold: CPUs and memory bytes; `None` when the backend cannot tell (a
    /// cluster schedules across nodes).
    async fn host_capacity(&self) -> Result<Option<HostCapacity>, RuntimeError> {
        Ok(None)
    }
}

/// The resources of the machine sandboxes run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCapacity {
    /// CPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
}
