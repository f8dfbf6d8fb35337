//! Session lifecycle: admission, create (claiming a warm sandbox or starting one), look up,
//! list, terminate, delete, and what the lifecycle loop asks of sessions (recover lost
//! sandboxes, end idle and old sessions, purge old records).

use crate::caller::Caller;
use crate::ids;
use crate::metrics::Metrics;
use crate::service::admission::Admission;
use crate::service::dependencies::{self, Dependencies, Plan};
use crate::service::error::{FieldError, ServiceError};
use crate::service::pools::Pools;
use crate::service::sandboxes::{Sandboxes, Seed, Shape};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use sandbox_core::model::{DependencySpec, InstallStatus, Session, SessionStatus, Template};
use sandbox_core::{CpuQuantity, MemoryQuantity};
use sandbox_protocol::contract;
use sandbox_runtime::{ExecutorClient, Runtime, RuntimeError, SandboxState, labels};
use sandbox_store::{Page, SessionFilter, Store};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Seconds the install of `dependencies` may take.
    pub install_timeout: Option<u32>,
    /// Whether a failed install fails the session (else it runs without the packages).
    pub fail_on_dependency_error: bool,
    /// Whether a requested version may replace a different one the template ships.
    pub allow_version_conflicts: bool,
    /// A session whose workspace the new one starts with (a copy).
    pub source_session_id: Option<String>,
}

/// Checks environment variable names and values.
pub fn validate_env(env: &BTreeMap<String, String>, max: usize) -> Result<(), String> {
    if env.len() > max {
        return Err(format!("at most {max} variables"));
    }
    env.iter().try_for_each(|(k, v)| contract::check_env(k, v)).map_err(|e| e.to_string())
}

/// A session's resources as its record states them.
fn shape_of(s: &Session, template: &Template) -> Result<Shape, ServiceError> {
    Ok(Shape {
        template_id: template.id.clone(),
        image: template.image_url.clone(),
        cpu: s.cpu,
        memory: s.memory,
        disk: s.disk,
    })
}

/// A place among a session's running executions; the place frees itself when dropped.
pub struct ExecutionSlot {
    sessions: Arc<Sessions>,
    session_id: String,
}

impl Drop for ExecutionSlot {
    fn drop(&mut self) {
        let mut running = self.sessions.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.session_id) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.session_id);
            }
        }
    }
}

/// What a reconciliation pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Sessions whose lost sandbox was recreated.
    pub sessions_recovered: u64,
    /// Sessions marked failed (sandbox lost and not recreatable, or stuck creating).
    pub sessions_failed: u64,
    /// Sandboxes nobody owns, removed.
    pub orphans_removed: u64,
    /// Pool sandboxes that were dead, stuck or abandoned, removed.
    pub pool_discarded: u64,
    /// Dependency installs whose control plane stopped during them, failed.
    pub installs_failed: u64,
}

/// The dependency install a new session asked for.
struct NewInstall {
    plan: Plan,
    timeout: Duration,
    fail_session: bool,
}

/// Session lifecycle.
pub struct Sessions {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
    sandboxes: Arc<Sandboxes>,
    pools: Arc<Pools>,
    dependencies: Arc<Dependencies>,
    /// Serialises lifecycle changes of one session within this process.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Executions in flight per session, in this process.
    running: Mutex<HashMap<String, usize>>,
    /// Executor clients by session, with the container each was made for: a client keeps its
    /// connections to the executor open from one execution to the next.
    clients: Mutex<HashMap<String, (Option<String>, ExecutorClient)>>,
    admission: Admission,
}

impl Sessions {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        metrics: Arc<Metrics>,
        sandboxes: Arc<Sandboxes>,
        pools: Arc<Pools>,
        dependencies: Arc<Dependencies>,
    ) -> Self {
        let admission = Admission::new(settings.clone(), store.clone(), runtime.clone());
        Sessions {
            settings,
            store,
            runtime,
            metrics,
            sandboxes,
            pools,
            dependencies,
            locks: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            admission,
        }
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_owned()).or_default().clone()
    }

    /// The durable copy of workspaces.
    pub fn workspaces(&self) -> &dyn crate::service::workspaces::WorkspaceStore {
        self.sandboxes.workspaces()
    }

    /// A client for a session's executor: 503 `sandbox_unavailable` when the runtime cannot say
    /// where it is.
    pub async fn executor(&self, s: &Session) -> Result<ExecutorClient, ServiceError> {
        if let Some((container, client)) = self.clients().get(&s.id)
            && *container == s.container_id
        {
            return Ok(client.clone());
        }
        let client = self.sandboxes.executor(&s.id).await.map_err(|e| {
            ServiceError::unavailable(
                "sandbox_unavailable",
                format!("the session's sandbox cannot be reached: {e}"),
                5,
            )
        })?;
        self.clients().insert(s.id.clone(), (s.container_id.clone(), client.clone()));
        Ok(client)
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<String>, ExecutorClient)>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the workspace of `source` is copied from: its running sandbox's executor, or its
    /// files as it left them.
    async fn seed(&self, source: &str) -> Result<Seed, RuntimeError> {
        let session = self.store.session(source).await.map_err(|e| RuntimeError::Engine(e.to_string()))?;
        match session {
            Some(s) if s.status == SessionStatus::Running => {
                let client = self.executor(&s).await.map_err(|e| RuntimeError::Engine(e.to_string()))?;
                Ok(Seed::Running { session_id: s.id, client: Box::new(client) })
            }
            _ => Ok(Seed::Stopped { session_id: source.to_owned() }),
        }
    }

    /// Resolves the request against its template and the configured maxima.
    async fn plan(
        &self,
        owner: &Caller,
        req: NewSession,
    ) -> Result<(Session, Template, Shape, Option<NewInstall>), ServiceError> {
        if let Some(source) = &req.source_session_id
            && self.get(owner, source).await.is_err()
        {
            return Err(ServiceError::invalid_field(
                "source_session_id",
                format!("no session {source} to copy from"),
            ));
        }
        let template = self.store.template(&req.template_id).await?.ok_or_else(|| {
            ServiceError::refused(
                "template_not_found",
                format!("template {:?} does not exist", req.template_id),
                Some(FieldError::new("template_id", "no such template")),
            )
        })?;
        if !template.is_active {
            return Err(ServiceError::invalid_field(
                "template_id",
                format!("template {} is not active", template.id),
            ));
        }
        let limits = &self.settings.limits;
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
        let pool_shape = crate::service::pools::default_shape(&template).ok_or_else(|| {
            ServiceError::internal(format!("template {} has invalid defaults", template.id))
        })?;

        let max_cpu = limits.max_cpu;
        let cpu = match req.cpu.as_deref().map(str::parse::<CpuQuantity>) {
            None => Some(pool_shape.cpu),
            Some(Ok(c)) if c > max_cpu => {
                bad("cpu", format!("at most {max_cpu} cores"));
                None
            }
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                bad("cpu", e.to_string());
                None
            }
        };
        let mut quantity =
            |field: &str, given: Option<&str>, default: MemoryQuantity, max: MemoryQuantity, min_mib: u64| {
                match given.map(str::parse::<MemoryQuantity>) {
                    None => Some(default),
                    Some(Ok(m)) if m > max => {
                        bad(field, format!("at most {max}"));
                        None
                    }
                    Some(Ok(m)) if m.mib() < min_mib => {
                        bad(field, format!("at least {min_mib}Mi"));
                        None
                    }
                    Some(Ok(m)) => Some(m),
                    Some(Err(e)) => {
                        bad(field, e.to_string());
                        None
                    }
                }
            };
        let memory = quantity("memory", req.memory.as_deref(), pool_shape.memory, limits.max_memory, 64);
        let disk = quantity("disk", req.disk.as_deref(), pool_shape.disk, limits.max_disk, 16);
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
            && !contract::valid_id(id)
        {
            bad("id", "must be 1-64 characters of letters, digits, '_' and '-'".into());
        }
        let index_url = req
            .python_package_index_url
            .clone()
            .unwrap_or_else(|| self.settings.dependencies.default_index_url.clone());
        let install = match dependencies::plan(
            "dependencies",
            &template,
            (&[], &[]),
            &req.dependencies,
            (&index_url, self.dependencies.allowed_indexes()),
            req.allow_version_conflicts,
        ) {
            Ok(plan) => match self.dependencies.timeout(req.install_timeout) {
                Ok(timeout) => Some(NewInstall { plan, timeout, fail_session: req.fail_on_dependency_error }),
                Err(ServiceError::Invalid(invalid)) => {
                    errors.extend(invalid);
                    None
                }
                Err(e) => return Err(e),
            },
            Err(ServiceError::Invalid(invalid)) => {
                errors.extend(invalid);
                None
            }
            // A refusal of its own (an index that is not allowed) answers on its own.
            Err(e) => return Err(e),
        };
        let (Some(cpu), Some(memory), Some(disk), Some(install), true) =
            (cpu, memory, disk, install, errors.is_empty())
        else {
            return Err(ServiceError::Invalid(errors));
        };
        let shape =
            Shape { template_id: template.id.clone(), image: template.image_url.clone(), cpu, memory, disk };
        let now = Utc::now();
        let session = Session {
            id: match &req.id {
                Some(chosen) => ids::scoped_session_id(&owner.key_id, chosen),
                None => ids::session_id(),
            },
            client_id: req.id.clone(),
            owner_key_id: owner.key_id.clone(),
            template_id: template.id.clone(),
            status: SessionStatus::Creating,
            cpu,
            memory,
            disk,
            timeout_sec: timeout,
            env_vars,
            runtime_backend: self.runtime.name().into(),
            sandbox_name: None,
            container_id: None,
            runtime_node: None,
            workspace_path: None,
            error_message: None,
            python_package_index_url: index_url,
            requested_dependencies: install.plan.wanted.clone(),
            installed_dependencies: dependencies::template_packages(&template, now),
            dependency_install_status: if install.plan.pip.is_empty() {
                InstallStatus::Completed
            } else {
                InstallStatus::Installing
            },
            dependency_install_error: None,
            dependency_install_started_at: (!install.plan.pip.is_empty())
                .then(|| DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)),
            dependency_install_completed_at: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
            last_activity_at: Some(now),
        };
        let install = Some(install).filter(|i| !i.plan.pip.is_empty());
        Ok((session, template, shape, install))
    }

    /// Creates a session: from a warm pool when one has a sandbox of its shape, else by starting
    /// a sandbox. With `wait`, returns once it runs (or fails with the reason); otherwise at
    /// once, in `creating` (or already `running`, from a pool).
    pub async fn create(
        self: &Arc<Self>,
        owner: &Caller,
        req: NewSession,
        wait: bool,
    ) -> Result<Session, ServiceError> {
        let clock = Instant::now();
        // A pool sandbox fits a session whose id and workspace nothing fixes in advance; one
        // with packages to install starts its own sandbox while they install.
        let poolable = req.id.is_none() && req.source_session_id.is_none();
        let seed = req.source_session_id.clone();
        let (mut session, template, shape, install) = self.plan(owner, req).await?;
        let poolable = poolable && install.is_none();
        self.admission.admit_session(owner, &shape, install.is_some()).await?;
        if poolable && let Some(claimed) = self.pools.claim(&template, &shape).await {
            session.id = claimed.session_id;
            session.status = SessionStatus::Running;
            session.container_id = Some(claimed.container_id.clone());
            session.sandbox_name = Some(claimed.sandbox_name);
            session.workspace_path =
                Some(self.sandboxes.session_dir(&session.id).join("workspace").display().to_string());
            session.runtime_node = hostname();
            if let Err(e) = self.store.insert_session(&session).await {
                self.pools.discard(&session.id, Some(&claimed.container_id)).await;
                return Err(e.into());
            }
            self.pools.handed_over(&session.id).await;
            self.metrics.session_created(&template.id, true, clock.elapsed());
            tracing::info!(session_id = %session.id, template = %template.id, elapsed_ms = clock.elapsed().as_millis() as u64, "session claimed a pool sandbox");
            return Ok(session);
        }
        match self.store.insert_session(&session).await {
            Err(sandbox_store::StoreError::Conflict(_)) => {
                return Err(ServiceError::conflict(
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
        let started = tokio::spawn(async move {
            this.start_sandbox(session, &template, &shape, seed.as_deref(), install, clock).await
        });
        if !wait {
            return Ok(pending);
        }
        match started.await.map_err(ServiceError::internal)?? {
            (session, None) => Ok(session),
            (_, Some(error)) => Err(error),
        }
    }

    /// Starts the sandbox of a `creating` session and records the outcome; a failure also comes
    /// back as the error a waiting client gets.
    async fn start_sandbox(
        &self,
        mut session: Session,
        template: &Template,
        shape: &Shape,
        seed: Option<&str>,
        install: Option<NewInstall>,
        clock: Instant,
    ) -> Result<(Session, Option<ServiceError>), ServiceError> {
        // Packages install beside the starting sandbox: they land in a directory it mounts.
        let installing = async {
            match &install {
                Some(i) => Some(self.dependencies.run(&session, template, &i.plan, i.timeout).await),
                None => None,
            }
        };
        let starting = async {
            let seed = match seed {
                Some(source) => Some(self.seed(source).await?),
                None => None,
            };
            self.sandboxes.start(&session.id, shape, seed).await
        };
        let (created, installed) = tokio::join!(starting, installing);
        let mut install_failure = None;
        if let Some((done, failure)) = installed {
            if let Some(started) = session.dependency_install_started_at {
                self.store.finish_dependency_install(&done, started).await?;
            }
            session = done;
            install_failure = failure.filter(|_| install.as_ref().is_some_and(|i| i.fail_session));
        }
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
        match (created, install_failure) {
            (created, Some(f)) => {
                if let Ok(sb) = created {
                    let _ = self.runtime.remove(&sb.id).await;
                }
                session.status = SessionStatus::Failed;
                session.error_message = Some(format!("installing dependencies failed: {f}"));
                session.completed_at = Some(now);
                tracing::warn!(session_id = %session.id, error = %f, "session failed: its dependencies did not install");
                failure = Some(ServiceError::Install(f));
            }
            (Ok(sb), None) => {
                session.status = SessionStatus::Running;
                session.container_id = Some(sb.id);
                session.sandbox_name = Some(sb.name);
                session.workspace_path =
                    Some(self.sandboxes.session_dir(&session.id).join("workspace").display().to_string());
                session.runtime_node = hostname();
                tracing::info!(session_id = %session.id, elapsed_ms = clock.elapsed().as_millis() as u64, "session running");
            }
            (Err(why), None) => {
                session.status = SessionStatus::Failed;
                session.error_message = Some(why.to_string());
                session.completed_at = Some(now);
                tracing::warn!(session_id = %session.id, error = %why, "session failed to start");
                let message = format!("the sandbox for session {} could not be started: {why}", session.id);
                failure = Some(match why {
                    RuntimeError::ImageNotFound(_) => ServiceError::refused(
                        "template_image_missing",
                        message,
                        Some(FieldError::new("template_id", why.to_string())),
                    ),
                    _ => ServiceError::unavailable("sandbox_start_failed", message, 5),
                });
            }
        }
        self.metrics.session_created(&template.id, session.status == SessionStatus::Running, clock.elapsed());
        self.store.update_session(&session).await?;
        Ok((session, failure))
    }

    /// The session `id` if `caller` may see it, else 404.
    /// `id` is the caller's own name for one of its sessions (a client-chosen id), or a session's
    /// id.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Session, ServiceError> {
        for candidate in Self::candidates(caller, id) {
            if let Some(s) = self.store.session(&candidate).await?
                && caller.can_see(&s.owner_key_id)
            {
                return Ok(s);
            }
        }
        Err(ServiceError::not_found("session_not_found", format!("session {id} does not exist")))
    }

    /// The session ids `id` may stand for, for `caller`: its own client-chosen name first.
    fn candidates(caller: &Caller, id: &str) -> [String; 2] {
        [ids::scoped_session_id(&caller.key_id, id), id.to_owned()]
    }

    /// The session `id` if `caller` may see it and it runs, else 404 or 409.
    pub async fn get_running(&self, caller: &Caller, id: &str) -> Result<Session, ServiceError> {
        let s = self.get(caller, id).await?;
        if s.status != SessionStatus::Running {
            return Err(ServiceError::conflict(
                "session_not_running",
                format!("session {id} is {}, not running", s.status),
            ));
        }
        Ok(s)
    }

    /// Sessions the caller may see.
    pub async fn list(
        &self,
        caller: &Caller,
        mut filter: SessionFilter,
    ) -> Result<Page<Session>, ServiceError> {
        if !caller.is_admin {
            filter.owner_key_id = Some(caller.key_id.clone());
        }
        Ok(self.store.list_sessions(&filter).await?)
    }

    /// Stops a session's sandbox and keeps its record; terminating again changes nothing.
    pub async fn terminate(&self, caller: &Caller, id: &str) -> Result<Session, ServiceError> {
        let s = self.get(caller, id).await?;
        self.stop(s, None).await
    }

    /// Stops the sandbox of `s` (unless already final) and records `reason`.
    pub async fn stop(&self, s: Session, reason: Option<String>) -> Result<Session, ServiceError> {
        let lock = self.lock_for(&s.id);
        let _guard = lock.lock().await;
        let mut s = self.store.session(&s.id).await?.unwrap_or(s);
        self.clients().remove(&s.id);
        if s.status.is_final() {
            return Ok(s);
        }
        if let Some(container) = &s.container_id {
            self.runtime.remove(container).await.map_err(|e| {
                ServiceError::unavailable(
                    "runtime_unavailable",
                    format!("could not stop the sandbox: {e}"),
                    5,
                )
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
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let s = match self.get(caller, id).await {
            Ok(s) => s,
            Err(e) => {
                for candidate in Self::candidates(caller, id) {
                    if let Some(owner) = self.store.deleted_session_owner(&candidate).await?
                        && caller.can_see(&owner)
                    {
                        return Ok(());
                    }
                }
                return Err(e);
            }
        };
        self.remove(s).await
    }

    async fn remove(&self, s: Session) -> Result<(), ServiceError> {
        let id = s.id.clone();
        self.stop(s, None).await?;
        self.sandboxes.release_files(&id).await.map_err(ServiceError::internal)?;
        self.sandboxes.workspaces().delete_session(&id).await.map_err(|e| {
            ServiceError::unavailable(
                "storage_unavailable",
                format!("could not delete the stored workspace: {e}"),
                5,
            )
        })?;
        self.store.delete_session(&id, Utc::now()).await?;
        tracing::info!(session_id = %id, "session deleted");
        Ok(())
    }

    /// Records activity (an execution or a file operation) on a session.
    pub async fn touch(&self, id: &str) {
        if let Err(e) = self.store.touch_session(id, Utc::now()).await {
            tracing::warn!(session_id = %id, error = %e, "could not record session activity");
        }
    }

    /// Takes a place among the session's running executions: 429 when all are taken.
    pub fn begin_execution(self: &Arc<Self>, session_id: &str) -> Result<ExecutionSlot, ServiceError> {
        let max = self.settings.capacity.max_executions_per_session;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.entry(session_id.to_owned()).or_default();
        if max > 0 && *n >= max {
            return Err(ServiceError::quota(
                "too_many_executions",
                format!("session {session_id} already runs {max} executions, its limit"),
                1,
            ));
        }
        *n += 1;
        Ok(ExecutionSlot { sessions: self.clone(), session_id: session_id.to_owned() })
    }

    /// Recreates the sandbox of a running session whose sandbox is gone, from the session's own
    /// template, with its workspace as it was; or marks the session failed with the reason.
    /// Returns whether the session runs again.
    pub async fn recover(&self, id: &str) -> Result<bool, ServiceError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let Some(mut s) = self.store.session(id).await? else { return Ok(false) };
        if s.status != SessionStatus::Running {
            return Ok(false);
        }
        if let Some(c) = &s.container_id
            && self.runtime.is_running(c).await
        {
            return Ok(true);
        }
        if let Some(c) = &s.container_id {
            let _ = self.runtime.remove(c).await;
        }
        let now = Utc::now();
        s.updated_at = now;
        let started = match self.store.template(&s.template_id).await? {
            None => Err(format!("its template {} no longer exists", s.template_id)),
            Some(t) => match shape_of(&s, &t) {
                Ok(shape) => {
                    if let Some(restored) = self.dependencies.restore(&s, &t).await {
                        s = restored;
                    }
                    self.sandboxes.start(&s.id, &shape, None).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        let recovered = match started {
            Ok(sb) => {
                tracing::warn!(session_id = %s.id, container = %sb.id, "recreated the session's lost sandbox");
                s.container_id = Some(sb.id);
                true
            }
            Err(why) => {
                tracing::warn!(session_id = %s.id, error = %why, "session lost its sandbox");
                s.status = SessionStatus::Failed;
                s.completed_at = Some(now);
                s.error_message =
                    Some(format!("the session's sandbox stopped and could not be recreated: {why}"));
                false
            }
        };
        self.store.update_session(&s).await?;
        Ok(recovered)
    }

    /// Compares the store with what the runtime runs: running sessions whose sandbox is gone are
    /// recovered (or failed), sessions stuck creating are failed, pool sandboxes that died or
    /// were abandoned are removed, and sandboxes no session or pool owns are removed.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ServiceError> {
        let unavailable =
            |e: RuntimeError| ServiceError::unavailable("runtime_unavailable", e.to_string(), 5);
        let mut report = ReconcileReport::default();
        let sandboxes = self
            .runtime
            .list(&[(labels::DEPLOYMENT, self.sandboxes.deployment())])
            .await
            .map_err(unavailable)?;
        let running: HashSet<&str> =
            sandboxes.iter().filter(|b| b.state == SandboxState::Running).map(|b| b.id.as_str()).collect();
        let now = Utc::now();
        let deadline = chrono::Duration::seconds(self.settings.lifecycle.creating_deadline_sec as i64);
        for s in self.store.sessions_in_status(&[SessionStatus::Running, SessionStatus::Creating]).await? {
            match s.status {
                SessionStatus::Running if !s.container_id.as_deref().is_some_and(|c| running.contains(c)) => {
                    if self.recover(&s.id).await? {
                        report.sessions_recovered += 1;
                    } else {
                        report.sessions_failed += 1;
                    }
                }
                SessionStatus::Creating if now - s.created_at > deadline + self.install_allowance(&s) => {
                    let lock = self.lock_for(&s.id);
                    let _guard = lock.lock().await;
                    let Some(mut current) = self.store.session(&s.id).await? else { continue };
                    if current.status == SessionStatus::Creating {
                        let _ = self.runtime.remove(&Sandboxes::sandbox_name(&s.id)).await;
                        current.status = SessionStatus::Failed;
                        current.completed_at = Some(now);
                        current.updated_at = now;
                        current.error_message =
                            Some(format!("still creating after {}s; given up", deadline.num_seconds()));
                        self.store.update_session(&current).await?;
                        report.sessions_failed += 1;
                    }
                }
                _ => {}
            }
        }
        let pool = self.store.list_pool_sandboxes().await?;
        for p in &pool {
            let age = now - p.created_at;
            let dead = match p.state {
                sandbox_core::model::PoolState::Starting => age > deadline,
                sandbox_core::model::PoolState::Ready => {
                    !p.container_id.as_deref().is_some_and(|c| running.contains(c))
                }
                sandbox_core::model::PoolState::Claimed => {
                    p.claimed_at.is_some_and(|t| now - t > chrono::Duration::seconds(60))
                        && self.store.session(&p.id).await?.is_none()
                }
            };
            if dead {
                self.pools.discard(&p.id, p.container_id.as_deref()).await;
                report.pool_discarded += 1;
            }
        }
        // Owners are read again: sessions may have been created while the list above was made.
        let live: HashSet<String> = self
            .store
            .sessions_in_status(&[SessionStatus::Running, SessionStatus::Creating])
            .await?
            .into_iter()
            .map(|s| s.id)
            .chain(self.store.list_pool_sandboxes().await?.into_iter().map(|p| p.id))
            .collect();
        report.installs_failed = self.dependencies.fail_interrupted(&sandboxes).await?;
        for b in sandboxes.iter().filter(|b| !b.labels.contains_key(labels::ROLE)) {
            let owner = b.labels.get(labels::SESSION);
            if !owner.is_some_and(|id| live.contains(id)) {
                tracing::info!(container = %b.id, session = owner.map(String::as_str).unwrap_or("-"), "removing orphan sandbox");
                self.runtime.remove(&b.id).await.map_err(unavailable)?;
                report.orphans_removed += 1;
            }
        }
        Ok(report)
    }

    /// Extra time a `creating` session gets while its packages install.
    fn install_allowance(&self, s: &Session) -> chrono::Duration {
        match s.dependency_install_status {
            InstallStatus::Installing => {
                chrono::Duration::seconds(i64::from(self.settings.dependencies.max_install_timeout_sec))
            }
            _ => chrono::Duration::zero(),
        }
    }

    /// Installs more packages into a running session of `caller`'s, waiting for the end.
    pub async fn install_dependencies(
        &self,
        caller: &Caller,
        id: &str,
        new: Vec<DependencySpec>,
        index_url: Option<String>,
        allow_conflicts: bool,
    ) -> Result<Session, ServiceError> {
        let s = self.get_running(caller, id).await?;
        let template = self.store.template(&s.template_id).await?.ok_or_else(|| {
            ServiceError::conflict(
                "template_not_found",
                format!("the template {} of session {id} no longer exists", s.template_id),
            )
        })?;
        self.admission.admit_install().await?;
        let session = self.dependencies.install(s, template, new, index_url, allow_conflicts).await?;
        self.touch(&session.id).await;
        Ok(session)
    }

    /// Terminates running sessions idle past their timeout (none with an execution in flight)
    /// or older than the maximum lifetime; returns how many.
    pub async fn expire(&self) -> Result<usize, ServiceError> {
        let now = Utc::now();
        let max_life = self.settings.lifecycle.max_session_lifetime_sec as i64;
        let mut n = 0;
        for s in self.store.sessions_in_status(&[SessionStatus::Running]).await? {
            let idle = (now - s.last_activity_at.unwrap_or(s.created_at)).num_seconds();
            let age = (now - s.created_at).num_seconds();
            let reason = if max_life > 0 && age > max_life {
                format!("maximum lifetime reached: {age}s (limit {max_life}s)")
            } else if idle > i64::from(s.timeout_sec)
                && !self.store.session_has_unfinished_executions(&s.id).await?
            {
                format!("idle timeout: no activity for {idle}s (timeout {}s)", s.timeout_sec)
            } else {
                continue;
            };
            match self.stop(s, Some(reason)).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(error = %e, "could not terminate an expired session"),
            }
        }
        Ok(n)
    }

    /// Deletes terminated and failed sessions that ended longer ago than the retention; returns
    /// how many.
    pub async fn purge(&self) -> Result<usize, ServiceError> {
        let keep = chrono::Duration::seconds(self.settings.lifecycle.retention_sec as i64);
        let now = Utc::now();
        let mut n = 0;
        for s in self.store.sessions_in_status(&[SessionStatus::Terminated, SessionStatus::Failed]).await? {
            if s.completed_at.unwrap_or(s.updated_at) + keep < now {
                self.remove(s).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}
