//! How a session's sandbox is made and unmade on this host: its directories, its disk, the
//! spec handed to the runtime, and the client for its executor.

use crate::service::disk::WorkspaceDisks;
use crate::service::workspaces::WorkspaceStore;
use crate::settings::{DiskEnforcement, RuntimeKind, Settings};
use sandbox_core::{CpuQuantity, MemoryQuantity};
use sandbox_runtime::{ExecutorClient, Runtime, RuntimeError, Sandbox, SandboxSpec, labels};
use std::path::PathBuf;
use std::sync::Arc;

/// What a sandbox is made of, besides its session id.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The template.
    pub template_id: String,
    /// Its image.
    pub image: String,
    /// CPU.
    pub cpu: CpuQuantity,
    /// Memory.
    pub memory: MemoryQuantity,
    /// Workspace size.
    pub disk: MemoryQuantity,
}

/// Makes and unmakes sandboxes.
pub struct Sandboxes {
    settings: Arc<Settings>,
    runtime: Arc<dyn Runtime>,
    disks: WorkspaceDisks,
    deployment: String,
    workspaces: Arc<dyn WorkspaceStore>,
}

impl Sandboxes {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        runtime: Arc<dyn Runtime>,
        workspaces: Arc<dyn WorkspaceStore>,
    ) -> Self {
        // A cluster enforces disk limits itself (ephemeral storage, volume sizes).
        let enforcement = match settings.runtime {
            RuntimeKind::Docker => settings.limits.disk_enforcement,
            RuntimeKind::Kubernetes => DiskEnforcement::None,
        };
        let disks = WorkspaceDisks::new(enforcement);
        let deployment = settings.deployment_id();
        Sandboxes { settings, runtime, disks, deployment, workspaces }
    }

    /// The deployment label value of this installation's sandboxes.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// Host directory of a session's files: `<data_dir>/sessions/<id>`.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.settings.data_dir.join("sessions").join(id)
    }

    /// The name of a session's sandbox.
    pub fn sandbox_name(id: &str) -> String {
        format!("sandbox-{id}")
    }

    /// The spec of the sandbox for session `id`.
    pub fn spec(&self, id: &str, shape: &Shape) -> SandboxSpec {
        let dir = self.session_dir(id);
        let mut spec =
            SandboxSpec::new(Self::sandbox_name(id), &shape.image, dir.join("workspace"), dir.join("run"));
        spec.cpu = shape.cpu;
        spec.memory = shape.memory;
        spec.deps_dir = Some(dir.join("deps"));
        spec.labels.insert(labels::SESSION.into(), id.into());
        spec.labels.insert(labels::TEMPLATE.into(), shape.template_id.clone());
        spec.labels.insert(labels::DEPLOYMENT.into(), self.deployment.clone());
        let e = &self.settings.executor;
        for (k, v) in [
            ("SANDBOX_EXECUTOR_MAX_OUTPUT_BYTES", e.max_output_bytes.to_string()),
            ("SANDBOX_EXECUTOR_TMP_SIZE_MB", e.tmp_size_mb.to_string()),
            ("SANDBOX_EXECUTOR_MAX_PROCESSES", e.max_processes.to_string()),
            ("SANDBOX_EXECUTOR_MAX_CONCURRENT", e.max_concurrent.to_string()),
            ("SANDBOX_EXECUTOR_MAX_TIMEOUT_SECS", self.settings.limits.max_execution_timeout_sec.to_string()),
        ] {
            spec.executor_env.insert(k.into(), v);
        }
        spec
    }

    /// Prepares the workspace (with its disk limit) and starts the sandbox of session `id`,
    /// within the configured start timeout, then restores its stored files (`s3` mode). With
    /// `seed`, the workspace starts as a copy of that session's.
    pub async fn start(&self, id: &str, shape: &Shape, seed: Option<&str>) -> Result<Sandbox, RuntimeError> {
        let spec = self.spec(id, shape);
        let (disks, workspace, size) = (self.disks, spec.workspace_dir.clone(), shape.disk);
        let local_seed = seed
            .filter(|_| self.workspaces.bucket().is_none())
            .map(|s| self.session_dir(s).join("workspace"));
        let deps = spec.deps_dir.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(deps) = deps {
                std::fs::create_dir_all(deps)?;
            }
            disks.prepare(&workspace, size).map_err(std::io::Error::other)?;
            match local_seed {
                Some(from) => copy_tree(&from, &workspace),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| RuntimeError::Engine(e.to_string()))?
        .map_err(|source| RuntimeError::HostDir { path: spec.workspace_dir.clone(), source })?;
        if let (Some(from), Some(_)) = (seed, self.workspaces.bucket()) {
            self.workspaces
                .copy_session(from, id)
                .await
                .map_err(|e| RuntimeError::Engine(format!("copying the workspace of {from}: {e}")))?;
        }
        let limit = std::time::Duration::from_secs(self.settings.limits.sandbox_start_timeout_sec);
        let sandbox = match tokio::time::timeout(limit, self.runtime.create(&spec)).await {
            Ok(r) => r?,
            Err(_) => {
                let _ = self.runtime.remove(&spec.name).await;
                return Err(RuntimeError::NotReady { seconds: limit.as_secs(), reason: "timed out".into() });
            }
        };
        if let Err(e) = self.workspaces.restore(id, &sandbox.executor).await {
            let _ = self.runtime.remove(&sandbox.id).await;
            return Err(RuntimeError::Engine(format!("restoring the workspace from storage: {e}")));
        }
        Ok(sandbox)
    }

    /// The durable copy of workspaces.
    pub fn workspaces(&self) -> &dyn WorkspaceStore {
        self.workspaces.as_ref()
    }

    /// Removes everything of session `id` on the host: its disk and directories.
    pub async fn release_files(&self, id: &str) -> Result<(), String> {
        let dir = self.session_dir(id);
        let disks = self.disks;
        tokio::task::spawn_blocking(move || {
            disks.release(&dir.join("workspace")).map_err(|e| e.to_string())?;
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("removing {}: {e}", dir.display()))
                }
                _ => Ok(()),
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// A client for the executor of session `id`'s sandbox (asking the runtime where it is,
    /// when the backend needs to: a pod another replica created).
    pub async fn executor(&self, id: &str) -> Result<ExecutorClient, RuntimeError> {
        let dir = self.session_dir(id);
        let spec = SandboxSpec::new(Self::sandbox_name(id), "", dir.join("workspace"), dir.join("run"));
        self.runtime.resolve_executor(&spec).await
    }
}

/// Copies a workspace's tree (files, directories, symlinks as symlinks) into an empty one,
/// owned by the sandbox user. Blocking.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dst)?;
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(1000), Some(1000))?;
    }
    Ok(())
}
