//! Runtime backends create the hardened container each sandbox lives in, and find, inspect and
//! remove them later. The control plane picks one backend at start-up and uses it through
//! [`Runtime`]; it reaches the executor inside through the [`ExecutorClient`] a backend returns.

pub mod docker;
pub mod profile;
pub mod spec;

use async_trait::async_trait;
pub use sandbox_executor_client::ExecutorClient;
pub use spec::{SandboxInfo, SandboxSpec, SandboxState, labels};

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

    /// Inspects a sandbox straight from the engine (the seed's `get_container_status`);
    /// `None` if it does not exist.
    async fn status(&self, id: &str) -> Result<Option<SandboxInfo>, RuntimeError>;

    /// Whether the sandbox exists and runs (the seed's `is_container_running`).
    async fn is_running(&self, id: &str) -> bool {
        matches!(self.status(id).await, Ok(Some(info)) if info.state == SandboxState::Running)
    }

    /// Every sandbox carrying all of `labels`.
    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<SandboxInfo>, RuntimeError>;

    /// The last `tail` lines the sandbox logged.
    async fn logs(&self, id: &str, tail: usize) -> Result<String, RuntimeError>;

    /// A client for the executor of a sandbox that already runs (after a control plane restart).
    fn executor(&self, spec: &SandboxSpec) -> ExecutorClient;

    /// Whether `image` can be used to create sandboxes. Backends that cannot tell before
    /// trying (a cluster pulls images on its nodes) answer `true`.
    async fn image_available(&self, image: &str) -> Result<bool, RuntimeError> {
        let _ = image;
        Ok(true)
    }
}
