//! Sessions: one sandbox and its workspace each, owned by the key that made it. This module holds
//! the service and the lookups; each step of a session's life has a file of its own: admission
//! (`admit`), creation (`create`), stopping and deleting (`stop`), recovering lost sandboxes and
//! reconciling with the runtime (`recover`), and ending idle and old sessions (`expire`).

mod admit;
mod create;
mod expire;
mod recover;
mod stop;

pub use create::{NewSession, validate_env, validate_metadata};
pub use recover::ReconcileReport;

use crate::caller::Caller;
use crate::ids;
use crate::metrics::Metrics;
use crate::service::dependencies::{Dependencies, InstallRequest, Installing};
use crate::service::egress::Egress;
use crate::service::error::ServiceError;
use crate::service::pools::Pools;
use crate::service::sandboxes::{Sandboxes, Shape};
use crate::settings::Settings;
use admit::Admission;
use chrono::Utc;
use sandbox_core::model::{InstallStatus, Session, SessionStatus, Template};
use sandbox_runtime::{ExecutorClient, InstallerProgress, Runtime};
use sandbox_store::{Page, SessionFilter, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A session's resources as its record states them.
fn shape_of(s: &Session, template: &Template) -> Shape {
    Shape {
        template_id: template.id.clone(),
        image: template.image_url.clone(),
        cpu: s.cpu,
        memory: s.memory,
        disk: s.disk,
        prestart: None,
    }
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
    egress: Arc<Egress>,
    /// Serialises lifecycle changes of one session within this process.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
        let egress = dependencies.egress().clone();
        Sessions {
            settings,
            store,
            runtime,
            metrics,
            sandboxes,
            pools,
            dependencies,
            egress,
            locks: Mutex::new(HashMap::new()),
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
        self.sandboxes.client(s).await.map_err(|e| {
            ServiceError::unavailable(
                "sandbox_unavailable",
                format!("the session's sandbox cannot be reached: {e}"),
                5,
            )
        })
    }

    /// The session `id` if `caller` may see it, else 404.
    /// `id` is the caller's own name for one of its sessions (a client-chosen id), or a session's
    /// id.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Session, ServiceError> {
        let candidates = Self::candidates(caller, id);
        // One query for both: this is on the path of every request about a session.
        let found = self.store.sessions_by_id(&[&candidates[0], &candidates[1]]).await?;
        candidates
            .iter()
            .find_map(|c| found.iter().find(|s| &s.id == c && caller.can_see(&s.owner_key_id)))
            .cloned()
            .ok_or_else(|| {
                ServiceError::not_found("session_not_found", format!("session {id} does not exist"))
            })
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

    /// The session `id` if `caller` may see it, it runs, and the packages it was created with
    /// are in place for code: while they install this waits for the install's end (at most the
    /// longest install allowed, then 503 `dependencies_installing`); if they failed to install
    /// and the session was created with `fail_on_dependency_error`, 409 `dependencies_failed`
    /// with the install's code and error. A session whose packages are in place (or that asked
    /// for none, or runs without them by choice) answers at once.
    pub async fn get_ready(&self, caller: &Caller, id: &str) -> Result<Session, ServiceError> {
        let max_wait =
            Duration::from_secs(u64::from(self.settings.dependencies.max_install_timeout_sec) + 60);
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let s = self.get_running(caller, id).await?;
            if !awaits_packages(&s) {
                return Ok(s);
            }
            match s.dependency_install_status {
                InstallStatus::Installing if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                InstallStatus::Installing => {
                    return Err(ServiceError::unavailable(
                        "dependencies_installing",
                        format!("session {id} is still installing its packages; retry when it is done"),
                        5,
                    ));
                }
                InstallStatus::Failed if s.fail_on_dependency_error => {
                    return Err(ServiceError::conflict(
                        "dependencies_failed",
                        format!(
                            "the packages session {id} was created with did not install ({}): {}; install them with POST /api/v1/sessions/{id}/dependencies/install, or create the session with fail_on_dependency_error=false to run code without them",
                            s.dependency_install_error_code.as_deref().unwrap_or("dependency_install_failed"),
                            s.dependency_install_error.as_deref().unwrap_or("no reason recorded"),
                        ),
                    ));
                }
                _ => return Ok(s),
            }
        }
    }

    /// Gives a running session of the caller's `secs` more seconds from now: its idle clock
    /// restarts and its idle timeout becomes `secs` (so this can shorten its life too).
    pub async fn set_timeout(&self, caller: &Caller, id: &str, secs: u32) -> Result<Session, ServiceError> {
        let max = self.settings.limits.max_session_timeout_sec;
        if secs == 0 || secs > max {
            return Err(ServiceError::invalid_field(
                "timeout",
                format!("must be between 1 and {max} seconds"),
            ));
        }
        let found = self.get_running(caller, id).await?;
        let lock = self.lock_for(&found.id);
        let _guard = lock.lock().await;
        let mut s = self.store.session(&found.id).await?.unwrap_or(found);
        if s.status != SessionStatus::Running {
            return Err(ServiceError::conflict(
                "session_not_running",
                format!("session {id} is {}, not running", s.status),
            ));
        }
        let now = Utc::now();
        s.timeout_sec = secs;
        s.last_activity_at = Some(now);
        s.updated_at = now;
        self.store.update_session(&s).await?;
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

    /// Serves the egress proxy of running session `s` if it has an allow-list (and is not served
    /// already).
    fn serve_egress(&self, s: &Session) {
        // On Kubernetes the proxy is its own Deployment, found by the pod's credential.
        if self.settings.runtime == crate::settings::RuntimeKind::Kubernetes {
            return;
        }
        self.egress.serve(&s.id, &s.network, &self.sandboxes.egress_dir(&s.id));
    }

    /// Serves the egress proxies of the running sessions with an allow-list: after a restart,
    /// the sockets of the sessions the previous process served. Returns how many are served.
    pub async fn resume_egress(&self) -> Result<usize, ServiceError> {
        let running = self.store.sessions_in_status(&[SessionStatus::Running]).await?;
        let mut served = 0;
        for s in running.iter().filter(|s| s.network.has_egress()) {
            self.serve_egress(s);
            served += usize::from(self.egress.is_serving(&s.id));
        }
        Ok(served)
    }

    /// A session's audited network attempts, newest first.
    pub async fn network_attempts(
        &self,
        caller: &Caller,
        id: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Page<sandbox_core::model::NetworkAttempt>, ServiceError> {
        let s = self.get(caller, id).await?;
        Ok(self.store.list_network_attempts(&s.id, limit, offset).await?)
    }

    /// Records activity (an execution or a file operation) on a session.
    pub async fn touch(&self, id: &str) {
        if let Err(e) = self.store.touch_session(id, Utc::now()).await {
            tracing::warn!(session_id = %id, error = %e, "could not record session activity");
        }
    }

    /// Starts installing more packages into a running session of `caller`'s (see
    /// [`Dependencies::install`]).
    pub async fn install_dependencies(
        &self,
        caller: &Caller,
        id: &str,
        request: InstallRequest,
        progress: Option<InstallerProgress>,
    ) -> Result<Installing, ServiceError> {
        let s = self.get_running(caller, id).await?;
        let template = self.store.template(&s.template_id).await?.ok_or_else(|| {
            ServiceError::conflict(
                "template_not_found",
                format!("the template {} of session {id} no longer exists", s.template_id),
            )
        })?;
        self.admission.admit_install().await?;
        self.dependencies.install(s, template, request, progress).await
    }
}

/// Whether a package the session asked for is not installed (yet): the install of the packages
/// it was created with has not succeeded. A later install that fails leaves what it asked for
/// out of `requested_dependencies`, and the packages before it in place.
fn awaits_packages(s: &Session) -> bool {
    s.requested_dependencies.iter().any(|r| {
        // `name[extras]`: the extras install no distribution of that name.
        let name = sandbox_core::packages::normalize(r.name.split('[').next().unwrap_or_default());
        !s.installed_dependencies.iter().any(|i| sandbox_core::packages::normalize(&i.name) == name)
    })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}
