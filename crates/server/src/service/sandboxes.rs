//! How a session's sandbox is made and unmade on this host: its directories, its disk, the
//! spec handed to the runtime, and the client for its executor.

use crate::service::dependencies::package_sets::PackageSets;
use crate::service::disk::WorkspaceDisks;
use crate::service::workspaces::WorkspaceStore;
use crate::settings::{DiskEnforcement, RuntimeKind, Settings};
use sandbox_core::model::Session;
use sandbox_core::{CpuQuantity, Language, MemoryQuantity};
use sandbox_executor_client::ByteStream;
use sandbox_protocol::contract::env as executor_env;
use sandbox_runtime::{ExecutorClient, Runtime, RuntimeError, Sandbox, SandboxSpec, labels};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
    /// A language whose interpreter the executor starts at once and keeps ready for the first
    /// execution (warm-pool sandboxes, whose first execution then skips interpreter start-up).
    pub prestart: Option<Language>,
}

/// The session whose workspace a new session starts with.
pub enum Seed {
    /// Its sandbox runs: its executor makes the copy.
    Running {
        /// The source session.
        session_id: String,
        /// Its executor.
        client: Box<ExecutorClient>,
    },
    /// It does not run: its files are where it left them (on this host, or in the bucket).
    Stopped {
        /// The source session.
        session_id: String,
    },
}

impl Seed {
    /// The source session.
    pub fn session_id(&self) -> &str {
        match self {
            Seed::Running { session_id, .. } | Seed::Stopped { session_id } => session_id,
        }
    }
}

/// Makes and unmakes sandboxes.
pub struct Sandboxes {
    settings: Arc<Settings>,
    runtime: Arc<dyn Runtime>,
    disks: WorkspaceDisks,
    deployment: String,
    workspaces: Arc<dyn WorkspaceStore>,
    /// Executor clients by session, with the container each was made for: a client keeps its
    /// connections to the executor open from one execution to the next.
    clients: Mutex<HashMap<String, (Option<String>, ExecutorClient)>>,
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
        Sandboxes { settings, runtime, disks, deployment, workspaces, clients: Mutex::default() }
    }

    /// The deployment label value of this installation's sandboxes.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// Host directory of a session's files: `<data_dir>/sessions/<id>`.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.settings.data_dir.join("sessions").join(id)
    }

    /// Host directory of a session's workspace: `<data_dir>/sessions/<id>/workspace`.
    pub fn workspace_dir(&self, id: &str) -> PathBuf {
        self.session_dir(id).join("workspace")
    }

    /// Host directory of session `id`'s egress proxy socket, mounted read-only into its sandbox:
    /// `<data_dir>/sessions/<id>/egress`, root-owned, mode 0755.
    pub fn egress_dir(&self, id: &str) -> PathBuf {
        self.session_dir(id).join("egress")
    }

    /// Host directory of the egress proxy socket of session `id`'s package installs, mounted
    /// read-only into each installer: `<data_dir>/sessions/<id>/installer-egress`.
    pub fn installer_egress_dir(&self, id: &str) -> PathBuf {
        self.session_dir(id).join("installer-egress")
    }

    /// The runtime's spec of session `id`'s sandbox as far as finding it needs (no image or
    /// shape).
    fn locator(&self, id: &str) -> SandboxSpec {
        SandboxSpec::new(Self::sandbox_name(id), "", self.workspace_dir(id), self.session_dir(id).join("run"))
    }

    /// The package directory of session `id`.
    pub fn package_sets(&self, id: &str) -> PackageSets {
        PackageSets::new(self.session_dir(id).join("deps"), self.disks, self.settings.executor.uid)
    }

    /// The name of a session's sandbox.
    pub fn sandbox_name(id: &str) -> String {
        format!("sandbox-{id}")
    }

    /// The spec of the sandbox for session `id`.
    pub fn spec(&self, id: &str, shape: &Shape) -> SandboxSpec {
        let mut spec = self.locator(id);
        spec.image = shape.image.clone();
        spec.cpu = shape.cpu;
        spec.memory = shape.memory;
        spec.uid = self.settings.executor.uid;
        spec.deps_dir = Some(self.session_dir(id).join("deps"));
        // A pod cannot be handed a host directory: egress is Docker's for now.
        if self.settings.runtime == RuntimeKind::Docker {
            spec.egress_dir = Some(self.egress_dir(id));
        }
        spec.labels.insert(labels::SESSION.into(), id.into());
        spec.labels.insert(labels::TEMPLATE.into(), shape.template_id.clone());
        spec.labels.insert(labels::DEPLOYMENT.into(), self.deployment.clone());
        let e = &self.settings.executor;
        for (k, v) in [
            (executor_env::MAX_OUTPUT_BYTES, e.max_output_bytes.to_string()),
            (executor_env::TMP_SIZE_MB, e.tmp_size_mb.to_string()),
            (executor_env::MAX_PROCESSES, e.max_processes.to_string()),
            (executor_env::MAX_CONCURRENT, e.max_concurrent.to_string()),
            (executor_env::MAX_CONTEXTS, e.max_contexts.to_string()),
            (executor_env::MAX_RUNNING_PROCESSES, e.max_running_processes.to_string()),
            (executor_env::CONTEXT_IDLE_TIMEOUT_SECS, e.context_idle_timeout_sec.to_string()),
            (executor_env::MAX_TIMEOUT_SECS, self.settings.limits.max_execution_timeout_sec.to_string()),
            // Only this process may drive the executor through its socket.
            (executor_env::CONTROL_UIDS, rustix::process::geteuid().as_raw().to_string()),
        ] {
            spec.executor_env.insert(k.into(), v);
        }
        if let Some(language) = shape.prestart {
            spec.executor_env.insert(executor_env::PRESTART.into(), language.as_str().into());
        }
        spec
    }

    /// Prepares the workspace (with its disk limit) and starts the sandbox of session `id`,
    /// within the configured start timeout, then restores its stored files (`s3` mode) or copies
    /// `seed`'s workspace into it. A sandbox whose workspace could not be filled is removed again:
    /// the caller gets a complete sandbox or an error.
    pub async fn start(&self, id: &str, shape: &Shape, seed: Option<Seed>) -> Result<Sandbox, RuntimeError> {
        let spec = self.spec(id, shape);
        let (disks, workspace, size, uid) = (self.disks, spec.workspace_dir.clone(), shape.disk, spec.uid);
        let (deps, egress) = (spec.deps_dir.clone(), spec.egress_dir.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(deps) = deps {
                std::fs::create_dir_all(deps)?;
            }
            if let Some(egress) = egress {
                crate::service::egress::prepare_dir(&egress)?;
            }
            disks.prepare(&workspace, size, uid).map_err(std::io::Error::other)?;
            adopt_workspace(&workspace, uid)
        })
        .await
        .map_err(|e| RuntimeError::Engine(e.to_string()))?
        .map_err(|source| RuntimeError::HostDir { path: spec.workspace_dir.clone(), source })?;
        let seed = match (seed, self.workspaces.bucket()) {
            (Some(seed), Some(_)) => {
                let from = seed.session_id();
                self.workspaces
                    .copy_session(from, id)
                    .await
                    .map_err(|e| RuntimeError::Engine(format!("copying the workspace of {from}: {e}")))?;
                None
            }
            (seed, _) => seed,
        };
        let limit = std::time::Duration::from_secs(self.settings.limits.sandbox_start_timeout_sec);
        let sandbox = match tokio::time::timeout(limit, self.runtime.create(&spec)).await {
            Ok(r) => r?,
            Err(_) => {
                let _ = self.runtime.remove(&spec.name).await;
                return Err(RuntimeError::NotReady { seconds: limit.as_secs(), reason: "timed out".into() });
            }
        };
        let filled = match seed {
            Some(seed) => self.copy_workspace(seed, &sandbox.executor).await,
            None => self
                .workspaces
                .restore(id, &sandbox.executor)
                .await
                .map(|_| ())
                .map_err(|e| format!("restoring the workspace from storage: {e}")),
        };
        if let Err(why) = filled {
            let _ = self.runtime.remove(&sandbox.id).await;
            return Err(RuntimeError::Engine(why));
        }
        Ok(sandbox)
    }

    /// Copies the workspace of `seed` into a new sandbox through its executor: from the source's
    /// executor when its sandbox runs (a tar stream it makes as the sandbox user), else from the
    /// stopped source's directory on this host, read without following any link.
    async fn copy_workspace(&self, seed: Seed, to: &ExecutorClient) -> Result<(), String> {
        let from = seed.session_id().to_owned();
        let archive: ByteStream = match seed {
            Seed::Running { client, .. } => {
                client.archive().await.map_err(|e| format!("reading the workspace of {from}: {e}"))?
            }
            Seed::Stopped { .. } => {
                let dir = self.workspace_dir(&from);
                let tree = tokio::task::spawn_blocking(move || sandbox_safefs::Tree::open(&dir))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("the workspace of {from} is not on this host: {e}"))?;
                Box::pin(sandbox_safefs::archive::tar_stream(
                    tree,
                    sandbox_safefs::archive::Limits::default(),
                ))
            }
        };
        let copied =
            to.extract(archive).await.map_err(|e| format!("copying the workspace of {from}: {e}"))?;
        tracing::info!(source = %from, files = copied.files, bytes = copied.bytes, symlinks = copied.symlinks, "workspace copied");
        Ok(())
    }

    /// The durable copy of workspaces.
    pub fn workspaces(&self) -> &dyn WorkspaceStore {
        self.workspaces.as_ref()
    }

    /// Removes everything of session `id` on the host: its disk, the staging filesystems of
    /// installs a crash left behind, and its directories.
    pub async fn release_files(&self, id: &str) -> Result<(), String> {
        let (dir, workspace) = (self.session_dir(id), self.workspace_dir(id));
        let disks = self.disks;
        tokio::task::spawn_blocking(move || {
            disks.release(&workspace).map_err(|e| e.to_string())?;
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("install-") {
                        for part in ["target", "tmp"] {
                            disks.release(&e.path().join(part)).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            // Never follows a link inside (the standard library removes through descriptors).
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

    /// A client for the executor of session `s`'s sandbox: the one kept for its container, or a
    /// new one (asking the runtime where it is, when the backend needs to: a pod another replica
    /// created).
    pub async fn client(&self, s: &Session) -> Result<ExecutorClient, RuntimeError> {
        if let Some((container, client)) = self.clients().get(&s.id)
            && *container == s.container_id
        {
            return Ok(client.clone());
        }
        let client = self.runtime.resolve_executor(&self.locator(&s.id)).await?;
        self.clients().insert(s.id.clone(), (s.container_id.clone(), client.clone()));
        Ok(client)
    }

    /// Drops the client kept for session `id` (its sandbox is going).
    pub fn forget_client(&self, id: &str) {
        self.clients().remove(id);
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<String>, ExecutorClient)>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands a workspace made for another sandbox uid (before the operator changed `executor.uid`,
/// or by an older version) to `uid`, entry by entry through descriptors, never following a link.
fn adopt_workspace(workspace: &std::path::Path, uid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(workspace)?.uid() == uid {
        return Ok(());
    }
    tracing::info!(workspace = %workspace.display(), uid, "handing a workspace to the sandbox uid");
    sandbox_safefs::Tree::open(workspace)
        .and_then(|t| t.chown_all(uid, uid))
        .map_err(|e| std::io::Error::other(e.to_string()))
}
