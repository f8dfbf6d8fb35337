//! The Docker backend (bollard): one hardened container per sandbox, the executor reached
//! through a Unix socket in a per-sandbox host directory.

pub mod config;
mod installer;
mod pull;

pub use bollard;

use crate::image::PullProgress;
use crate::spec::{
    InstallerOutcome, InstallerProgress, InstallerSpec, SandboxInfo, SandboxSpec, SandboxState,
};
use crate::{ExecutorClient, HostCapacity, Runtime, RuntimeError, Sandbox};
use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
    HealthStatusEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sandbox_core::{CpuQuantity, MemoryQuantity};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Settings of the Docker backend.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// How long a new container may take until its executor answers.
    pub ready_timeout: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig { ready_timeout: Duration::from_secs(30) }
    }
}

/// The Docker backend.
pub struct DockerRuntime {
    docker: Docker,
    cfg: DockerConfig,
}

fn engine_error(e: bollard::errors::Error) -> RuntimeError {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            RuntimeError::Engine(format!("{status_code}: {message}"))
        }
        other => RuntimeError::Unavailable(other.to_string()),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

impl DockerRuntime {
    /// Connects to the local Docker daemon (`DOCKER_HOST` or the default socket) and settles on
    /// an API version both sides speak.
    pub async fn connect(cfg: DockerConfig) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(engine_error)?;
        let docker =
            docker.negotiate_version().await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        docker.ping().await.map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(DockerRuntime { docker, cfg })
    }

    /// The bollard client, for callers that need more than the trait offers.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    async fn wait_ready(
        &self,
        id: &str,
        executor: &ExecutorClient,
        socket: &Path,
    ) -> Result<(), RuntimeError> {
        let start = Instant::now();
        let mut last_error = String::from("executor socket not created yet");
        let mut polls = 0u32;
        loop {
            if socket.exists() {
                match executor.health().await {
                    Ok(_) => return Ok(()),
                    Err(e) => last_error = e.to_string(),
                }
            }
            polls += 1;
            if polls.is_multiple_of(10)
                && let Some(info) = self.status(id).await?
                && info.state != SandboxState::Running
                && info.state != SandboxState::Created
            {
                let logs = self.logs(id, 20).await.unwrap_or_default();
                return Err(RuntimeError::StartFailed(format!(
                    "container {} (exit code {:?}): {}",
                    state_name(info.state),
                    info.exit_code,
                    logs.trim()
                )));
            }
            if start.elapsed() > self.cfg.ready_timeout {
                let logs = self.logs(id, 20).await.unwrap_or_default();
                return Err(RuntimeError::NotReady {
                    seconds: self.cfg.ready_timeout.as_secs(),
                    reason: format!("{last_error}; logs: {}", logs.trim()),
                });
            }
            tokio::time::sleep(Duration::from_millis(if polls < 100 { 5 } else { 50 })).await;
        }
    }
}

impl DockerRuntime {
    /// Creates a sandbox from an explicit create request (normally
    /// [`config::container_config`] of `spec`), starts it and waits for its executor.
    pub async fn create_with_config(
        &self,
        spec: &SandboxSpec,
        body: bollard::models::ContainerCreateBody,
    ) -> Result<Sandbox, RuntimeError> {
        prepare_dir(&spec.workspace_dir, 0o755, spec.uid)?;
        prepare_dir(&spec.socket_dir, 0o700, spec.uid)?;
        let socket = spec.socket_path();
        let _ = std::fs::remove_file(&socket);
        let opts = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let created = match self.docker.create_container(Some(opts), body).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Err(RuntimeError::ImageNotFound(spec.image.clone())),
            Err(e) => return Err(engine_error(e)),
        };
        let id = created.id;
        let executor = ExecutorClient::unix_served_by(&socket, spec.uid);
        let started = async {
            self.docker.start_container(&id, None).await.map_err(engine_error)?;
            self.wait_ready(&id, &executor, &socket).await
        };
        if let Err(e) = started.await {
            let _ = self.remove(&id).await;
            return Err(e);
        }
        tracing::info!(sandbox = %spec.name, container = %id, "sandbox ready");
        Ok(Sandbox { id, name: spec.name.clone(), executor })
    }
}

fn state_name(s: SandboxState) -> &'static str {
    match s {
        SandboxState::Created => "created",
        SandboxState::Running => "running",
        SandboxState::Paused => "paused",
        SandboxState::Restarting => "restarting",
        SandboxState::Removing => "removing",
        SandboxState::Exited => "exited",
        SandboxState::Dead => "dead",
        SandboxState::Unknown => "unknown",
    }
}

/// Creates `dir` if needed and hands it to the sandbox user `uid`.
fn prepare_dir(dir: &Path, mode: u32, uid: u32) -> Result<(), RuntimeError> {
    let err = |source| RuntimeError::HostDir { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(err)
}

fn info_from_inspect(c: ContainerInspectResponse) -> SandboxInfo {
    let state = c.state.unwrap_or_default();
    let config = c.config.unwrap_or_default();
    SandboxInfo {
        id: c.id.unwrap_or_default(),
        name: c.name.unwrap_or_default().trim_start_matches('/').to_owned(),
        state: match state.status {
            Some(ContainerStateStatusEnum::CREATED) => SandboxState::Created,
            Some(ContainerStateStatusEnum::RUNNING) => SandboxState::Running,
            Some(ContainerStateStatusEnum::PAUSED) => SandboxState::Paused,
            Some(ContainerStateStatusEnum::RESTARTING) => SandboxState::Restarting,
            Some(ContainerStateStatusEnum::REMOVING) => SandboxState::Removing,
            Some(ContainerStateStatusEnum::EXITED) => SandboxState::Exited,
            Some(ContainerStateStatusEnum::DEAD) => SandboxState::Dead,
            _ => SandboxState::Unknown,
        },
        health: match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => "healthy",
            Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
            Some(HealthStatusEnum::STARTING) => "starting",
            _ => "unknown",
        }
        .to_owned(),
        created_at: c.created,
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        exit_code: state.exit_code.filter(|_| state.running != Some(true)),
        oom_killed: state.oom_killed.unwrap_or(false),
        // Docker reports `0001-01-01T00:00:00Z` for a container that never stopped.
        finished_at: state
            .finished_at
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .filter(|t| t.timestamp() > 0),
    }
}

/// A running container as the listing shows it.
fn info_from_summary(c: ContainerSummary) -> SandboxInfo {
    let status = c.status.unwrap_or_default();
    let health = if status.contains("(healthy)") {
        "healthy"
    } else if status.contains("(unhealthy)") {
        "unhealthy"
    } else if status.contains("(health: starting)") {
        "starting"
    } else {
        "unknown"
    };
    SandboxInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.into_iter().next())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        state: SandboxState::Running,
        health: health.to_owned(),
        created_at: c.created.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
        image: c.image.unwrap_or_default(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        exit_code: None,
        oom_killed: false,
        finished_at: None,
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        self.create_with_config(spec, config::container_config(spec)).await
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = StopContainerOptionsBuilder::default().t(5).build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(engine_error(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Already being removed by someone else.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
            Err(e) => Err(engine_error(e)),
        }
    }

    async fn status(&self, id: &str) -> Result<Option<SandboxInfo>, RuntimeError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(info_from_inspect(c))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine_error(e)),
        }
    }

    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<SandboxInfo>, RuntimeError> {
        let mut wanted: Vec<String> = vec![format!("{}=true", crate::labels::MANAGED)];
        wanted.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let filters = HashMap::from([("label", wanted)]);
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let summaries = self.docker.list_containers(Some(opts)).await.map_err(engine_error)?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id.clone() else { continue };
            if s.state == Some(ContainerSummaryStateEnum::RUNNING) {
                // The listing says all a running container has to say: no inspect per sandbox
                // in every reconciliation pass.
                out.push(info_from_summary(s));
            } else if let Some(info) = self.status(&id).await? {
                // A stopped one: its exit code, OOM kill and end time need an inspect (one
                // removed meanwhile is skipped).
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn logs(&self, id: &str, tail: usize) -> Result<String, RuntimeError> {
        let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&tail.to_string()).build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut out = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.push_str(&chunk.to_string()),
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(engine_error(e)),
            }
        }
        Ok(out)
    }

    fn executor(&self, spec: &SandboxSpec) -> ExecutorClient {
        ExecutorClient::unix_served_by(spec.socket_path(), spec.uid)
    }

    async fn update_resources(
        &self,
        id: &str,
        cpu: CpuQuantity,
        memory: MemoryQuantity,
    ) -> Result<bool, RuntimeError> {
        let bytes = memory.bytes() as i64;
        let body = bollard::models::ContainerUpdateBody {
            memory: Some(bytes),
            memory_swap: Some(bytes),
            cpu_period: Some(config::CPU_PERIOD),
            cpu_quota: Some(config::cpu_quota(cpu)),
            ..Default::default()
        };
        self.docker.update_container(id, body).await.map_err(engine_error)?;
        Ok(true)
    }

    async fn run_installer(
        &self,
        spec: &InstallerSpec,
        progress: Option<InstallerProgress>,
    ) -> Result<InstallerOutcome, RuntimeError> {
        self.installer(spec, progress).await
    }

    async fn host_capacity(&self) -> Result<Option<HostCapacity>, RuntimeError> {
        let info = self.docker.info().await.map_err(engine_error)?;
        Ok(match (info.ncpu, info.mem_total) {
            (Some(cpus), Some(mem)) if cpus > 0 && mem > 0 => {
                Some(HostCapacity { cpus: cpus as u32, memory_bytes: mem as u64 })
            }
            _ => None,
        })
    }

    fn pulls_images(&self) -> bool {
        true
    }

    async fn pull_image(
        &self,
        image: &str,
        progress: &tokio::sync::watch::Sender<PullProgress>,
    ) -> Result<(), RuntimeError> {
        self.pull(image, progress).await
    }

    async fn image_available(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            // 404: no such image; 400: not even a valid image reference.
            Err(e) if is_not_found(&e) => Ok(false),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 400, .. }) => Ok(false),
            Err(e) => Err(engine_error(e)),
        }
    }
}
