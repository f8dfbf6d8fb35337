//! Session lifecycle: create (a sandbox from the session's template), look up, list,
//! terminate, delete, and the idle cleaner.

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::ids;
use crate::metrics::Metrics;
use crate::settings::Settings;
use chrono::Utc;
use sandbox_core::model::{DependencySpec, Session, SessionStatus, Template};
use sandbox_core::{CpuQuantity, MemoryQuantity};
use sandbox_runtime::{ExecutorClient, Runtime, RuntimeError, SandboxSpec, labels};
use sandbox_store::{Page, SessionFilter, Store};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The package index sessions use unless told otherwise.
pub const DEFAULT_PACKAGE_INDEX: &str = "https://pypi.org/simple/";

/// A validated request for a new session (fields the client left out are `None`).
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// A client-chosen id.
    pub id: Option<String>,
    /// The template.
    pub template_id: String,
    /// Idle timeout, seconds.
    pub timeout: Option<u32>,
    /// CPU (`"1"`, `"0.5"`).
    pub cpu: Option<String>,
    /// Memory (`"512Mi"`).
    pub memory: Option<String>,
    /// Disk (`"1Gi"`).
    pub disk: Option<String>,
    /// Environment variables.
    pub env_vars: BTreeMap<String, String>,
    /// Packages to install.
    pub dependencies: Vec<DependencySpec>,
    /// Package index for installs.
    pub python_package_index_url: Option<String>,
}

/// Checks environment variable names and values.
pub fn validate_env(env: &BTreeMap<String, String>, max: usize) -> Result<(), String> {
    if env.len() > max {
        return Err(format!("at most {max} variables"));
    }
    for (k, v) in env {
        let valid = k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && k.len() <= 128;
        if !valid {
            return Err(format!("{k:?} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        if v.contains('\0') || v.len() > 32 * 1024 {
            return Err(format!("the value of {k} must be at most 32 KiB without NUL bytes"));
        }
    }
    Ok(())
}

/// Session lifecycle.
pub struct Sessions {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
    /// Serialises lifecycle changes of one session within this process.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The label value marking this deployment's sandboxes.
    deployment: String,
}

impl Sessions {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let deployment = settings.deployment_id();
        Sessions { settings, store, runtime, metrics, locks: Mutex::new(HashMap::new()), deployment }
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_owned()).or_default().clone()
    }

    /// Host directory of a session's files: `<data_dir>/sessions/<id>`.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.settings.data_dir.join("sessions").join(id)
    }

    /// The sandbox a session runs in.
    pub fn sandbox_spec(&self, s: &Session, image: &str) -> Result<SandboxSpec, ApiError> {
        let dir = self.session_dir(&s.id);
        let mut spec =
            SandboxSpec::new(format!("sandbox-{}", s.id), image, dir.join("workspace"), dir.join("run"));
        spec.cpu = s.cpu.parse().map_err(ApiError::internal)?;
        spec.memory = s.memory.parse().map_err(ApiError::internal)?;
        spec.labels.insert(labels::SESSION.into(), s.id.clone());
        spec.labels.insert(labels::TEMPLATE.into(), s.template_id.clone());
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
        Ok(spec)
    }

    /// A client for a running session's executor.
    pub fn executor(&self, s: &Session) -> ExecutorClient {
        let dir = self.session_dir(&s.id);
        let spec = SandboxSpec::new(
            s.sandbox_name.clone().unwrap_or_default(),
            "",
            dir.join("workspace"),
            dir.join("run"),
        );
        self.runtime.executor(&spec)
    }

    /// Resolves the request against its template and the configured maxima.
    async fn plan(&self, owner: &Caller, req: NewSession) -> Result<(Session, Template), ApiError> {
        let template = self.store.template(&req.template_id).await?.ok_or_else(|| ApiError {
            errors: vec![FieldError { field: "template_id".into(), message: "no such template".into() }],
            ..ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "template_not_found",
                format!("template {:?} does not exist", req.template_id),
            )
        })?;
        if !template.is_active {
            return Err(ApiError::invalid_field(
                "template_id",
                format!("template {} is not active", template.id),
            ));
        }
        let limits = &self.settings.limits;
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });

        let cpu = match &req.cpu {
            Some(c) => c.clone(),
            None => CpuQuantity::from_millis((template.default_cpu_cores * 1000.0).round() as u32)
                .map_err(ApiError::internal)?
                .to_string(),
        };
        let max_cpu: CpuQuantity = limits.max_cpu.parse().map_err(ApiError::internal)?;
        match cpu.parse::<CpuQuantity>() {
            Ok(c) if c > max_cpu => bad("cpu", format!("at most {max_cpu} cores")),
            Ok(_) => {}
            Err(e) => bad("cpu", e.to_string()),
        }
        let mib = |n: u32| {
            MemoryQuantity::from_mib(u64::from(n)).map(|q| q.to_string()).map_err(ApiError::internal)
        };
        let memory = match &req.memory {
            Some(m) => m.clone(),
            None => mib(template.default_memory_mb)?,
        };
        let max_memory: MemoryQuantity = limits.max_memory.parse().map_err(ApiError::internal)?;
        match memory.parse::<MemoryQuantity>() {
            Ok(m) if m > max_memory => bad("memory", format!("at most {max_memory}")),
            Ok(m) if m.mib() < 64 => bad("memory", "at least 64Mi".into()),
            Ok(_) => {}
            Err(e) => bad("memory", e.to_string()),
        }
        let disk = match &req.disk {
            Some(d) => d.clone(),
            None => mib(template.default_disk_mb)?,
        };
        let max_disk: MemoryQuantity = limits.max_disk.parse().map_err(ApiError::internal)?;
        match disk.parse::<MemoryQuantity>() {
            Ok(d) if d > max_disk => bad("disk", format!("at most {max_disk}")),
            Ok(_) => {}
            Err(e) => bad("disk", e.to_string()),
        }
        let timeout = req.timeout.unwrap_or(template.default_timeout_sec);
        if timeout == 0 || timeout > limits.max_session_timeout_sec {
            bad("timeout", format!("must be between 1 and {} seconds", limits.max_session_timeout_sec));
        }
        let mut env_vars = template.default_env_vars.clone();
        env_vars.extend(req.env_vars.clone());
        if let Err(e) = validate_env(&env_vars, limits.max_env_vars) {
            bad("env_vars", e);
        }
        if let Some(id) = &req.id
            && !ids::valid_client_id(id)
        {
            bad("id", "must be 1-64 characters of letters, digits, '_' and '-'".into());
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid_fields(errors));
        }
        if !req.dependencies.is_empty() {
            return Err(ApiError::invalid_field(
                "dependencies",
                "installing dependencies is not available in this version; leave the list empty",
            ));
        }
        let now = Utc::now();
        let session = Session {
            id: req.id.unwrap_or_else(ids::session_id),
            owner_key_id: owner.key_id.clone(),
            template_id: template.id.clone(),
            status: SessionStatus::Creating,
            cpu,
            memory,
            disk,
            timeout_sec: timeout,
            env_vars,
            runtime_type: self.runtime.name().into(),
            sandbox_name: None,
            container_id: None,
            runtime_node: None,
            workspace_path: None,
            error_message: None,
            python_package_index_url: req
                .python_package_index_url
                .unwrap_or_else(|| DEFAULT_PACKAGE_INDEX.into()),
            requested_dependencies: req.dependencies,
            installed_dependencies: Vec::new(),
            dependency_install_status: "completed".into(),
            dependency_install_error: None,
            dependency_install_started_at: None,
            dependency_install_completed_at: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
            last_activity_at: Some(now),
        };
        Ok((session, template))
    }

    /// Creates a session and starts its sandbox. With `wait`, returns once the sandbox runs (or
    /// fails with the reason); otherwise at once, in `creating`.
    pub async fn create(
        self: &Arc<Self>,
        owner: &Caller,
        req: NewSession,
        wait: bool,
    ) -> Result<Session, ApiError> {
        let (session, template) = self.plan(owner, req).await?;
        match self.store.insert_session(&session).await {
            Err(sandbox_store::StoreError::Conflict(_)) => {
                return Err(ApiError::conflict(
                    "session_exists",
                    format!("a session with id {} exists", session.id),
                ));
            }
            other => other?,
        }
        tracing::info!(session_id = %session.id, template = %template.id, "creating session");
        let this = self.clone();
        let pending = session.clone();
        // The sandbox starts in its own task: a client that hangs up does not abandon it.
        let started = tokio::spawn(async move { this.start_sandbox(session, template).await });
        if !wait {
            return Ok(pending);
        }
        match started.await.map_err(ApiError::internal)?? {
            (session, None) => Ok(session),
            (_, Some(error)) => Err(error),
        }
    }

    /// Starts the sandbox of a `creating` session and records the outcome; a failure also comes
    /// back as the error a waiting client gets.
    async fn start_sandbox(
        &self,
        mut session: Session,
        template: Template,
    ) -> Result<(Session, Option<ApiError>), ApiError> {
        let clock = Instant::now();
        let spec = self.sandbox_spec(&session, &template.image_url)?;
        let limit = Duration::from_secs(self.settings.limits.sandbox_start_timeout_sec);
        let created = match tokio::time::timeout(limit, self.runtime.create(&spec)).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::NotReady { seconds: limit.as_secs(), reason: "timed out".into() }),
        };
        let lock = self.lock_for(&session.id);
        let _guard = lock.lock().await;
        // Terminated or deleted while starting: the new sandbox is not wanted.
        let current = self.store.session(&session.id).await?;
        if current.as_ref().map(|s| s.status) != Some(SessionStatus::Creating) {
            if let Ok(sb) = &created {
                let _ = self.runtime.remove(&sb.id).await;
            }
            return Ok((current.unwrap_or(session), None));
        }
        let now = Utc::now();
        session.updated_at = now;
        let mut failure = None;
        match created {
            Ok(sb) => {
                session.status = SessionStatus::Running;
                session.container_id = Some(sb.id);
                session.sandbox_name = Some(sb.name);
                session.workspace_path = Some(spec.workspace_dir.display().to_string());
                session.runtime_node = hostname();
                tracing::info!(session_id = %session.id, elapsed_ms = clock.elapsed().as_millis() as u64, "session running");
            }
            Err(why) => {
                session.status = SessionStatus::Failed;
                session.error_message = Some(why.to_string());
                session.completed_at = Some(now);
                tracing::warn!(session_id = %session.id, error = %why, "session failed to start");
                let message = format!("the sandbox for session {} could not be started: {why}", session.id);
                failure = Some(match why {
                    RuntimeError::ImageNotFound(_) => ApiError {
                        errors: vec![FieldError { field: "template_id".into(), message: why.to_string() }],
                        ..ApiError::new(
                            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                            "template_image_missing",
                            message,
                        )
                    },
                    _ => ApiError::unavailable("sandbox_start_failed", message, 5),
                });
            }
        }
        self.metrics.session_created(&template.id, session.status == SessionStatus::Running, clock.elapsed());
        self.store.update_session(&session).await?;
        Ok((session, failure))
    }

    /// The session `id` if `caller` may see it, else 404.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Session, ApiError> {
        match self.store.session(id).await? {
            Some(s) if caller.can_see(&s.owner_key_id) => Ok(s),
            _ => Err(ApiError::not_found("session_not_found", format!("session {id} does not exist"))),
        }
    }

    /// The session `id` if `caller` may see it and it runs, else 404 or 409.
    pub async fn get_running(&self, caller: &Caller, id: &str) -> Result<Session, ApiError> {
        let s = self.get(caller, id).await?;
        if s.status != SessionStatus::Running {
            return Err(ApiError::conflict(
                "session_not_running",
                format!("session {id} is {}, not running", s.status),
            ));
        }
        Ok(s)
    }

    /// Sessions the caller may see.
    pub async fn list(&self, caller: &Caller, mut filter: SessionFilter) -> Result<Page<Session>, ApiError> {
        if !caller.is_admin {
            filter.owner_key_id = Some(caller.key_id.clone());
        }
        Ok(self.store.list_sessions(&filter).await?)
    }

    /// Stops a session's sandbox and keeps its record; terminating again changes nothing.
    pub async fn terminate(&self, caller: &Caller, id: &str) -> Result<Session, ApiError> {
        let s = self.get(caller, id).await?;
        self.stop(s, None).await
    }

    /// Stops the sandbox of `s` (unless already final) and records `reason`.
    pub async fn stop(&self, s: Session, reason: Option<String>) -> Result<Session, ApiError> {
        let lock = self.lock_for(&s.id);
        let _guard = lock.lock().await;
        let mut s = self.store.session(&s.id).await?.unwrap_or(s);
        if s.status.is_final() {
            return Ok(s);
        }
        if let Some(container) = &s.container_id {
            self.runtime.remove(container).await.map_err(|e| {
                ApiError::unavailable("runtime_unavailable", format!("could not stop the sandbox: {e}"), 5)
            })?;
        }
        let now = Utc::now();
        s.status = SessionStatus::Terminated;
        s.completed_at = Some(now);
        s.updated_at = now;
        if reason.is_some() {
            s.error_message = reason;
        }
        self.store.update_session(&s).await?;
        tracing::info!(session_id = %s.id, reason = s.error_message.as_deref().unwrap_or("request"), "session terminated");
        Ok(s)
    }

    /// Removes a session, its executions and its workspace. Deleting a deleted session succeeds.
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        let s = match self.get(caller, id).await {
            Ok(s) => s,
            Err(e) => {
                return match self.store.deleted_session_owner(id).await? {
                    Some(owner) if caller.can_see(&owner) => Ok(()),
                    _ => Err(e),
                };
            }
        };
        self.stop(s, None).await?;
        let dir = self.session_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(ApiError::internal(format!("removing {}: {e}", dir.display())));
        }
        self.store.delete_session(id, Utc::now()).await?;
        tracing::info!(session_id = %id, "session deleted");
        Ok(())
    }

    /// Records activity (an execution or a file operation) on a session.
    pub async fn touch(&self, id: &str) {
        if let Err(e) = self.store.touch_session(id, Utc::now()).await {
            tracing::warn!(session_id = %id, error = %e, "could not record session activity");
        }
    }

    /// Terminates running sessions idle for longer than their timeout; returns how many.
    pub async fn expire_idle(&self) -> Result<usize, ApiError> {
        let now = Utc::now();
        let mut n = 0;
        for s in self.store.sessions_in_status(&[SessionStatus::Running]).await? {
            let last = s.last_activity_at.unwrap_or(s.created_at);
            let idle = (now - last).num_seconds();
            if idle > i64::from(s.timeout_sec) {
                let reason = format!("idle timeout: no activity for {idle}s (timeout {}s)", s.timeout_sec);
                match self.stop(s, Some(reason)).await {
                    Ok(_) => n += 1,
                    Err(e) => tracing::warn!(error = %e, "could not terminate an idle session"),
                }
            }
        }
        Ok(n)
    }

    /// Runs [`expire_idle`](Self::expire_idle) every `interval` until the process ends.
    pub async fn run_cleaner(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            match self.expire_idle().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(terminated = n, "idle sessions terminated"),
                Err(e) => tracing::warn!(error = %e, "idle cleaner failed"),
            }
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// What a reconciliation pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Sessions whose sandbox was gone, marked failed.
    pub sessions_failed: u64,
    /// Sandboxes no live session owns, removed.
    pub orphans_removed: u64,
}

impl Sessions {
    /// Compares the store with what the runtime runs: running sessions whose sandbox is gone
    /// are marked failed; managed sandboxes no live session owns are removed.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ApiError> {
        let mut report = ReconcileReport::default();
        let sandboxes = self
            .runtime
            .list(&[(labels::DEPLOYMENT, &self.deployment)])
            .await
            .map_err(|e| ApiError::unavailable("runtime_unavailable", e.to_string(), 5))?;
        let live = self.store.sessions_in_status(&[SessionStatus::Running, SessionStatus::Creating]).await?;
        for s in &live {
            if s.status != SessionStatus::Running {
                continue;
            }
            let running = sandboxes.iter().any(|b| {
                Some(&b.id) == s.container_id.as_ref() && b.state == sandbox_runtime::SandboxState::Running
            });
            if !running {
                let lock = self.lock_for(&s.id);
                let _guard = lock.lock().await;
                let Some(mut current) = self.store.session(&s.id).await? else { continue };
                if current.status != SessionStatus::Running {
                    continue;
                }
                let now = Utc::now();
                current.status = SessionStatus::Failed;
                current.error_message = Some("the session's sandbox is no longer running".into());
                current.completed_at = Some(now);
                current.updated_at = now;
                self.store.update_session(&current).await?;
                if let Some(c) = &current.container_id {
                    let _ = self.runtime.remove(c).await;
                }
                report.sessions_failed += 1;
                tracing::warn!(session_id = %s.id, "session's sandbox vanished");
            }
        }
        for b in sandboxes {
            let owner = b.labels.get(labels::SESSION);
            let owned = owner.is_some_and(|id| live.iter().any(|s| &s.id == id));
            if !owned {
                tracing::info!(container = %b.id, session = owner.map(String::as_str).unwrap_or("-"), "removing orphan sandbox");
                self.runtime
                    .remove(&b.id)
                    .await
                    .map_err(|e| ApiError::unavailable("runtime_unavailable", e.to_string(), 5))?;
                report.orphans_removed += 1;
            }
        }
        Ok(report)
    }
}
