//! Creating a session: the request checked against its template and the limits, admitted,
//! then a warm-pool sandbox claimed or a new one started (its workspace copied from another
//! session when asked), while its packages install in the background.

use super::{Sessions, hostname};
use crate::caller::Caller;
use crate::ids;
use crate::service::error::{FieldError, ServiceError};
use crate::service::sandboxes::{Seed, Shape};
use chrono::{DateTime, Utc};
use sandbox_core::model::{DependencySpec, InstallStatus, Session, SessionStatus, Template};
use sandbox_core::packages::plan::{self, Plan};
use sandbox_core::{CpuQuantity, MemoryQuantity};
use sandbox_protocol::contract;
use sandbox_runtime::RuntimeError;
use std::collections::BTreeMap;
use std::sync::Arc;
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
    /// Labels to keep with the session.
    pub metadata: BTreeMap<String, String>,
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
    /// What it asks to reach on the network.
    pub network: sandbox_egress::NetworkRequest,
}

/// Checks environment variable names and values.
pub fn validate_env(env: &BTreeMap<String, String>, max: usize) -> Result<(), String> {
    if env.len() > max {
        return Err(format!("at most {max} variables"));
    }
    env.iter().try_for_each(|(k, v)| contract::check_env(k, v)).map_err(|e| e.to_string())
}

/// The most labels a session keeps.
pub const MAX_METADATA_ENTRIES: usize = 64;

/// Checks a session's labels: at most [`MAX_METADATA_ENTRIES`], keys of 1-256 bytes and values
/// of at most 1024, no NUL.
pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<(), String> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(format!("at most {MAX_METADATA_ENTRIES} entries"));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.len() > 256 || v.len() > 1024 || k.contains('\0') || v.contains('\0') {
            return Err(format!("{k:?}: keys must be 1-256 bytes and values at most 1024, without NUL"));
        }
    }
    Ok(())
}

/// The dependency install a new session asked for.
struct NewInstall {
    plan: Plan,
    timeout: Duration,
}

impl Sessions {
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
        let network = crate::service::egress::check_policy(&self.settings.egress, &req.network)?;
        if network.has_egress()
            && self.settings.runtime == crate::settings::RuntimeKind::Kubernetes
            && self.settings.kubernetes.egress_proxy_service.is_none()
        {
            let message = "network egress on the Kubernetes backend needs its egress proxy \
                           (kubernetes.egress_proxy_service)";
            return Err(ServiceError::refused(
                "egress_not_permitted",
                message,
                Some(FieldError::new("network", message)),
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
        crate::service::templates::check_ready(&template)?;
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
        if let Err(e) = validate_metadata(&req.metadata) {
            bad("metadata", e);
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
        let install = match plan::plan(
            "dependencies",
            &template,
            (&[], &[]),
            &req.dependencies,
            (&index_url, self.dependencies.allowed_indexes()),
            req.allow_version_conflicts,
        ) {
            Ok(plan) => match self.dependencies.timeout(req.install_timeout) {
                Ok(timeout) => Some(NewInstall { plan, timeout }),
                Err(ServiceError::Invalid(invalid)) => {
                    errors.extend(invalid);
                    None
                }
                Err(e) => return Err(e),
            },
            Err(plan::PlanError::Invalid(invalid)) => {
                errors.extend(invalid.into_iter().map(|(f, m)| FieldError::new(f, m)));
                None
            }
            // A refusal of its own (an index that is not allowed) answers on its own.
            Err(e) => return Err(e.into()),
        };
        let (Some(cpu), Some(memory), Some(disk), Some(install), true) =
            (cpu, memory, disk, install, errors.is_empty())
        else {
            return Err(ServiceError::Invalid(errors));
        };
        let shape = Shape {
            template_id: template.id.clone(),
            image: template.image_url.clone(),
            cpu,
            memory,
            disk,
            prestart: None,
        };
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
            metadata: req.metadata.clone(),
            network,
            runtime_backend: self.runtime.name().into(),
            sandbox_name: None,
            container_id: None,
            runtime_node: None,
            workspace_path: None,
            error_message: None,
            python_package_index_url: index_url,
            requested_dependencies: install.plan.wanted.clone(),
            installed_dependencies: plan::template_packages(&template, now),
            dependency_install_status: if install.plan.pip.is_empty() {
                InstallStatus::Completed
            } else {
                InstallStatus::Installing
            },
            dependency_install_error: None,
            dependency_install_started_at: (!install.plan.pip.is_empty())
                .then(|| DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)),
            dependency_install_completed_at: None,
            dependency_install_error_code: None,
            fail_on_dependency_error: req.fail_on_dependency_error,
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
    /// once, in `creating` (or already `running`, from a pool). Packages install in the
    /// background either way: the session says how the install goes, and code sent meanwhile
    /// waits for it (see [`Sessions::get_ready`]).
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
        let admitted = self.admission.admit_session(owner, &shape, install.is_some()).await?;
        if poolable && let Some(claimed) = self.pools.claim(&template, &shape).await {
            session.id = claimed.session_id;
            session.status = SessionStatus::Running;
            session.container_id = Some(claimed.container_id.clone());
            session.sandbox_name = Some(claimed.sandbox_name);
            session.workspace_path = Some(self.sandboxes.workspace_dir(&session.id).display().to_string());
            session.runtime_node = hostname();
            let recorded = self.store.insert_session(&session).await;
            // Recorded (or not): the live row counts from now on.
            drop(admitted);
            if let Err(e) = recorded {
                self.pools.discard(&session.id, Some(&claimed.container_id)).await;
                return Err(e.into());
            }
            self.pools.handed_over(&session.id).await;
            self.serve_egress(&session);
            self.metrics.session_created(&template.id, true, clock.elapsed());
            tracing::info!(session_id = %session.id, template = %template.id, elapsed_ms = clock.elapsed().as_millis() as u64, "session claimed a pool sandbox");
            return Ok(session);
        }
        let recorded = self.store.insert_session(&session).await;
        drop(admitted);
        match recorded {
            Err(sandbox_store::StoreError::Conflict(_)) => {
                return Err(ServiceError::conflict(
                    "session_exists",
                    format!("a session with id {} exists", session.id),
                ));
            }
            other => other?,
        }
        tracing::info!(session_id = %session.id, template = %template.id, "creating session");
        // Packages install beside the starting sandbox (they land in a directory it mounts),
        // in a task of their own that outlives this request.
        if let Some(install) = install {
            let (this, session, template) = (self.clone(), session.clone(), template.clone());
            tokio::spawn(async move { this.install_in_background(session, template, install).await });
        }
        let this = self.clone();
        let pending = session.clone();
        // The sandbox starts in its own task: a client that hangs up does not abandon it.
        let started = tokio::spawn(async move {
            this.start_sandbox(session, &template, &shape, seed.as_deref(), clock).await
        });
        if !wait {
            return Ok(pending);
        }
        match started.await.map_err(ServiceError::internal)?? {
            (session, None) => Ok(session),
            (_, Some(error)) => Err(error),
        }
    }

    /// Runs the install a new session asked for and records its outcome (only the dependency
    /// fields, and only while it is still the install in progress).
    async fn install_in_background(&self, session: Session, template: Template, install: NewInstall) {
        let Some(started) = session.dependency_install_started_at else { return };
        let (done, failure) =
            self.dependencies.run(&session, &template, &install.plan, install.timeout, None).await;
        let lock = self.lock_for(&session.id);
        let _guard = lock.lock().await;
        match self.store.finish_dependency_install(&done, started).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(session_id = %done.id, "the install was given up meanwhile; its result is not recorded")
            }
            Err(e) => {
                tracing::error!(session_id = %done.id, error = %e, "could not record the end of a dependency install")
            }
        }
        if let Some(f) = failure {
            tracing::warn!(session_id = %done.id, error = %f, refused = done.fail_on_dependency_error, "the packages the session was created with did not install");
        }
    }

    /// Starts the sandbox of a `creating` session and records the outcome; a failure also comes
    /// back as the error a waiting client gets.
    async fn start_sandbox(
        &self,
        session: Session,
        template: &Template,
        shape: &Shape,
        seed: Option<&str>,
        clock: Instant,
    ) -> Result<(Session, Option<ServiceError>), ServiceError> {
        let created = async {
            let seed = match seed {
                Some(source) => Some(self.seed(source).await?),
                None => None,
            };
            self.sandboxes.start(&session.id, shape, seed).await
        }
        .await;
        let lock = self.lock_for(&session.id);
        let _guard = lock.lock().await;
        // Terminated or deleted while starting: the new sandbox is not wanted. The row as it is
        // now is the base: the install may have recorded its end meanwhile.
        let mut session = match self.store.session(&session.id).await? {
            Some(current) if current.status == SessionStatus::Creating => current,
            current => {
                if let Ok(sb) = &created {
                    let _ = self.runtime.remove(&sb.id).await;
                }
                return Ok((current.unwrap_or(session), None));
            }
        };
        let now = Utc::now();
        session.updated_at = now;
        let mut failure = None;
        match created {
            Ok(sb) => {
                session.status = SessionStatus::Running;
                session.container_id = Some(sb.id);
                session.sandbox_name = Some(sb.name);
                session.workspace_path =
                    Some(self.sandboxes.workspace_dir(&session.id).display().to_string());
                session.runtime_node = hostname();
                self.serve_egress(&session);
                tracing::info!(session_id = %session.id, elapsed_ms = clock.elapsed().as_millis() as u64, "session running");
            }
            Err(why) => {
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
}
