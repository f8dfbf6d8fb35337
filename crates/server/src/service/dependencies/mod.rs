//! Python packages for sessions. pip runs in a short-lived installer container of the
//! session's template on no network, reaching only its index (and the operator's download hosts)
//! through an egress proxy of its own (the sandbox itself never reaches the index), writing a
//! complete new set of packages beside the current one in the session's package directory; the
//! set becomes current by moving one link, so executions never see half an install and a failed
//! install leaves the previous packages in place. The exact versions installed are recorded, so
//! a sandbox recreated where the directory is gone gets the same packages back.

use crate::api::error::install_failure_code;
use crate::service::error::ServiceError;
pub mod package_sets;
pub mod pip_output;

pub use pip_output::InstallFailure;

use crate::service::egress::{Egress, install_policy};
use crate::service::sandboxes::Sandboxes;
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use package_sets::PackageSets;
use pip_output::classify;
use sandbox_core::model::{DependencySpec, InstallStatus, InstalledDependency, Session, Template};
use sandbox_core::packages;
use sandbox_core::packages::index::IndexAllowList;
use sandbox_core::packages::plan::{self, Plan, template_packages};
use sandbox_protocol::DEPS_PYTHONPATH;
use sandbox_runtime::{
    InstallerProgress, InstallerSpec, Runtime, SandboxInfo, SandboxState, labels, spec::INSTALLER_ROLE,
};
use sandbox_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How long after its start an install with no installer container counts as interrupted.
const START_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How long an installer may sit exited before its install counts as abandoned.
const EXIT_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// The code of an install its control plane stopped during.
const INTERRUPTED: &str = "dependency_install_interrupted";

/// An install request for a running session: the packages to add, the index (`None`: the
/// session's) and whether versions may conflict with those installed.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// The packages to add.
    pub new: Vec<DependencySpec>,
    /// The index to install from, if not the session's.
    pub index_url: Option<String>,
    /// Whether a version may replace an installed one.
    pub allow_conflicts: bool,
}

/// An install under way in the background; [`Installing::finish`] waits for its end.
pub struct Installing(tokio::task::JoinHandle<Result<Session, ServiceError>>);

impl Installing {
    /// The session with its packages once installed, or why the install failed.
    pub async fn finish(self) -> Result<Session, ServiceError> {
        self.0.await.map_err(ServiceError::internal)?
    }
}

/// What one run of pip installs: requirements from an index, with or without their
/// dependencies.
struct InstallSet<'a> {
    index_url: &'a str,
    requirements: &'a [String],
    no_deps: bool,
}

/// Runs installs and keeps their record.
pub struct Dependencies {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    sandboxes: Arc<Sandboxes>,
    egress: Arc<Egress>,
    allowed_indexes: IndexAllowList,
}

impl Dependencies {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        sandboxes: Arc<Sandboxes>,
        egress: Arc<Egress>,
    ) -> Self {
        let d = &settings.dependencies;
        // Checked when the settings were loaded.
        let allowed_indexes = IndexAllowList::new(&d.default_index_url, &d.allowed_index_urls)
            .expect("dependencies.allowed_index_urls was validated with the settings");
        Dependencies { settings, store, runtime, sandboxes, egress, allowed_indexes }
    }

    /// The egress proxies, which installs and sessions share.
    pub fn egress(&self) -> &Arc<Egress> {
        &self.egress
    }

    /// The package indexes installs may use.
    pub fn allowed_indexes(&self) -> &IndexAllowList {
        &self.allowed_indexes
    }

    /// The install timeout a request asks for (`None`: the default), checked against the
    /// maximum.
    pub fn timeout(&self, asked: Option<u32>) -> Result<Duration, ServiceError> {
        let d = &self.settings.dependencies;
        let secs = asked.unwrap_or(d.install_timeout_sec);
        let min = 30.min(d.max_install_timeout_sec);
        if secs < min || secs > d.max_install_timeout_sec {
            return Err(ServiceError::invalid_field(
                "install_timeout",
                format!("must be from {min} to {} seconds", d.max_install_timeout_sec),
            ));
        }
        Ok(Duration::from_secs(u64::from(secs)))
    }

    /// Runs `plan` for `session` (whose install is marked started) and returns the session with
    /// its dependency fields updated, and the failure if any; pip's output goes to `progress`
    /// line by line when given. Nothing is stored here.
    pub async fn run(
        &self,
        session: &Session,
        template: &Template,
        plan: &Plan,
        timeout: Duration,
        progress: Option<InstallerProgress>,
    ) -> (Session, Option<InstallFailure>) {
        let clock = std::time::Instant::now();
        let result = if plan.pip.is_empty() {
            Ok(Vec::new())
        } else {
            let install = InstallSet { index_url: &plan.index_url, requirements: &plan.pip, no_deps: false };
            self.install_set(&session.id, &template.image_url, install, timeout, progress).await
        };
        let now = Utc::now();
        let mut s = session.clone();
        s.updated_at = now;
        s.dependency_install_completed_at = Some(now);
        let failure = match result {
            Ok(installed) => {
                s.python_package_index_url = plan.index_url.clone();
                s.requested_dependencies = plan.wanted.clone();
                // Without an install nothing changed on disk: the packages stay as they were.
                if !plan.pip.is_empty() {
                    s.installed_dependencies = self.record(template, installed, now);
                }
                s.dependency_install_status = InstallStatus::Completed;
                s.dependency_install_error = None;
                s.dependency_install_error_code = None;
                None
            }
            Err(e) => {
                s.dependency_install_status = InstallStatus::Failed;
                s.dependency_install_error = Some(e.to_string());
                s.dependency_install_error_code = Some(install_failure_code(&e).to_owned());
                Some(e)
            }
        };
        tracing::info!(
            session_id = %s.id,
            packages = plan.pip.len(),
            status = %s.dependency_install_status,
            error = s.dependency_install_error.as_deref().unwrap_or(""),
            elapsed_ms = clock.elapsed().as_millis() as u64,
            "dependency install finished"
        );
        (s, failure)
    }

    /// What a session reports installed: what pip installed, and the template's packages it
    /// did not replace.
    fn record(
        &self,
        template: &Template,
        installed: Vec<(String, String)>,
        at: DateTime<Utc>,
    ) -> Vec<InstalledDependency> {
        let mut out: Vec<InstalledDependency> = template_packages(template, at)
            .into_iter()
            .filter(|t| {
                !installed.iter().any(|(n, _)| packages::normalize(n) == packages::normalize(&t.name))
            })
            .collect();
        out.extend(installed.into_iter().map(|(name, version)| InstalledDependency {
            name,
            version,
            install_location: DEPS_PYTHONPATH.into(),
            install_time: at,
            is_from_template: false,
        }));
        out
    }

    /// Starts installing more packages into a running session: checks the request and marks
    /// the install started (409 while another install of the session runs), then installs in
    /// the background, whoever waits for the end (the install goes on if the client hangs up).
    /// pip's output goes to `progress` line by line when given.
    pub async fn install(
        self: &Arc<Self>,
        session: Session,
        template: Template,
        request: InstallRequest,
        progress: Option<InstallerProgress>,
    ) -> Result<Installing, ServiceError> {
        let InstallRequest { new, index_url, allow_conflicts } = request;
        let index_url = index_url.unwrap_or_else(|| session.python_package_index_url.clone());
        let before = (&session.requested_dependencies[..], &session.installed_dependencies[..]);
        let plan = plan::plan(
            "dependencies",
            &template,
            before,
            &new,
            (&index_url, &self.allowed_indexes),
            allow_conflicts,
        )?;
        let timeout = self.timeout(None)?;
        // Millisecond precision: the stored start identifies this install.
        let started = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
        if !self.store.begin_dependency_install(&session.id, started).await? {
            return Err(ServiceError::conflict(
                "dependency_install_in_progress",
                format!("session {} is installing dependencies already; retry when it is done", session.id),
            ));
        }
        let mut session = session;
        session.dependency_install_status = InstallStatus::Installing;
        session.dependency_install_started_at = Some(started);
        let this = self.clone();
        Ok(Installing(tokio::spawn(async move {
            let (done, failure) = this.run(&session, &template, &plan, timeout, progress).await;
            if !this.store.finish_dependency_install(&done, started).await? {
                tracing::warn!(session_id = %done.id, "the install was given up meanwhile; its result is not recorded");
            }
            if let Err(e) = this.store.touch_session(&done.id, Utc::now()).await {
                tracing::warn!(session_id = %done.id, error = %e, "could not record session activity");
            }
            match failure {
                Some(f) => Err(f.into()),
                None => Ok(this.store.session(&done.id).await?.unwrap_or(done)),
            }
        })))
    }

    /// Before a session's sandbox is recreated: if its packages are gone from this host (a new
    /// node, a wiped directory), installs the exact recorded versions again. Returns the
    /// session with the outcome recorded when something had to be done.
    pub async fn restore(&self, session: &Session, template: &Template) -> Option<Session> {
        let pinned: Vec<String> = session
            .installed_dependencies
            .iter()
            .filter(|d| !d.is_from_template)
            .map(|d| format!("{}=={}", d.name, d.version))
            .collect();
        if pinned.is_empty() || self.sets(&session.id).current().is_some() {
            return None;
        }
        tracing::warn!(session_id = %session.id, packages = pinned.len(), "the session's packages are missing here; installing the recorded versions");
        let timeout = Duration::from_secs(u64::from(self.settings.dependencies.max_install_timeout_sec));
        let install =
            InstallSet { index_url: &session.python_package_index_url, requirements: &pinned, no_deps: true };
        let result = self.install_set(&session.id, &template.image_url, install, timeout, None).await;
        let mut s = session.clone();
        let now = Utc::now();
        s.dependency_install_completed_at = Some(now);
        match result {
            Ok(_) => {
                s.dependency_install_status = InstallStatus::Completed;
                s.dependency_install_error = None;
                s.dependency_install_error_code = None;
            }
            Err(e) => {
                tracing::warn!(session_id = %s.id, error = %e, "could not reinstall the session's packages");
                s.dependency_install_status = InstallStatus::Failed;
                s.dependency_install_error = Some(format!("reinstalling the recorded packages failed: {e}"));
                s.dependency_install_error_code = Some(install_failure_code(&e).to_owned());
            }
        }
        Some(s)
    }

    /// The package directory of a session (mounted read-only in its sandbox).
    pub fn sets(&self, session_id: &str) -> PackageSets {
        self.sandboxes.package_sets(session_id)
    }

    /// Runs pip for `install` into a new set and makes it current; returns what is in it.
    async fn install_set(
        &self,
        session_id: &str,
        image: &str,
        install: InstallSet<'_>,
        timeout: Duration,
        progress: Option<InstallerProgress>,
    ) -> Result<Vec<(String, String)>, InstallFailure> {
        let InstallSet { index_url, requirements, no_deps } = install;
        let d = &self.settings.dependencies;
        let sets = self.sets(session_id);
        let set = format!("set-{}", Utc::now().timestamp_micros());
        let name = format!("installer-{session_id}-{}", &set[4..]);
        let egress_dir = self.sandboxes.installer_egress_dir(session_id);
        // Only the index and the download hosts, through a proxy served for this install alone.
        let policy = install_policy(index_url, &d.download_hosts)
            .map_err(|e| InstallFailure::Host(std::io::Error::other(e)))?;
        let proxy = self.egress.listen_install(session_id, policy, &egress_dir)?;
        let max = d.max_size_mb;
        let staging = {
            let (sets, set) = (sets.clone(), set.clone());
            tokio::task::spawn_blocking(move || sets.stage(&set, max))
                .await
                .map_err(|e| InstallFailure::Host(std::io::Error::other(e)))??
        };
        let mut command: Vec<String> = [
            "python3",
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--no-warn-script-location",
            "--progress-bar",
            "off",
            "--target",
            InstallerSpec::TARGET,
        ]
        .map(String::from)
        .into();
        command.extend([
            "--retries".into(),
            d.pip_retries.max(1).to_string(),
            "--timeout".into(),
            d.pip_timeout_sec.to_string(),
        ]);
        if !d.allow_source_builds {
            command.push("--only-binary=:all:".into());
        }
        if no_deps {
            command.push("--no-deps".into());
        }
        if let Ok(url) = url::Url::parse(index_url)
            && url.scheme() == "http"
            && let Some(host) = url.host_str()
        {
            // The caller chose a plain-HTTP index; pip refuses one unless told to trust it.
            command.extend(["--trusted-host".into(), host.to_owned()]);
        }
        command.push("--".into());
        command.extend(requirements.iter().cloned());
        let spec = InstallerSpec {
            name,
            image: image.to_owned(),
            command,
            // The index (and any credentials in it) travels in pip's environment, never in argv.
            env: [("PIP_INDEX_URL".to_owned(), index_url.to_owned())].into(),
            target_dir: staging.target.clone(),
            scratch_dir: staging.scratch.clone(),
            egress_dir,
            cpu: d.cpu,
            memory: d.memory,
            pids_limit: 512,
            timeout,
            labels: [
                (labels::SESSION.to_owned(), session_id.to_owned()),
                (labels::DEPLOYMENT.to_owned(), self.sandboxes.deployment().to_owned()),
            ]
            .into(),
            uid: self.settings.executor.uid,
        };
        let outcome = self.runtime.run_installer(&spec, progress).await;
        drop(proxy);
        let refusal = self.egress.install_refusal(&spec.name);
        let finished =
            tokio::task::spawn_blocking(move || -> Result<Vec<(String, String)>, InstallFailure> {
                let result = (|| {
                    let outcome = outcome?;
                    if outcome.exit_code != Some(0) {
                        return Err(classify(&outcome, timeout, max, refusal));
                    }
                    let size_mb = sets.staged_size(&staging)? >> 20;
                    if size_mb > max {
                        return Err(InstallFailure::TooLarge { size_mb, limit_mb: max });
                    }
                    Ok(sets.commit(&staging, &set)?)
                })();
                if let Err(e) = sets.release(&staging) {
                    tracing::warn!(error = %e, "could not remove an install's staging filesystem");
                }
                result
            });
        finished.await.map_err(|e| InstallFailure::Host(std::io::Error::other(e)))?
    }

    /// Fails installs whose process is gone (a control plane that stopped mid-install): no
    /// installer container a minute after the start, an installer that exited and was not
    /// collected, or one past its deadline. `containers` is what the runtime runs for this
    /// deployment. Installer containers no install waits for are removed once stopped or past
    /// their deadline. Returns how
    /// many installs were failed.
    pub async fn fail_interrupted(&self, containers: &[SandboxInfo]) -> Result<u64, ServiceError> {
        let now = Utc::now();
        let installers: Vec<&SandboxInfo> = containers
            .iter()
            .filter(|c| c.labels.get(labels::ROLE).map(String::as_str) == Some(INSTALLER_ROLE))
            .collect();
        let past_deadline = |c: &SandboxInfo| {
            let deadline = c.labels.get(labels::DEADLINE).and_then(|d| d.parse::<i64>().ok());
            deadline.is_some_and(|d| now.timestamp() > d + 60)
        };
        let installing = self.store.sessions_installing_dependencies().await?;
        let mut failed = 0;
        for s in &installing {
            let Some(started) = s.dependency_install_started_at else { continue };
            let mine: Vec<&&SandboxInfo> =
                installers.iter().filter(|c| c.labels.get(labels::SESSION) == Some(&s.id)).collect();
            let abandoned = |c: &SandboxInfo| {
                c.state != SandboxState::Running && c.finished_at.is_some_and(|f| now - f > EXIT_GRACE)
            };
            let interrupted = if mine.is_empty() {
                now - started > START_GRACE
            } else {
                mine.iter().all(|c| past_deadline(c) || abandoned(c))
            };
            if !interrupted {
                continue;
            }
            for c in &mine {
                let _ = self.runtime.remove(&c.id).await;
            }
            let mut done = s.clone();
            done.dependency_install_status = InstallStatus::Failed;
            done.dependency_install_error = Some(
                "the install was interrupted (the control plane stopped during it); install again".into(),
            );
            done.dependency_install_error_code = Some(INTERRUPTED.to_owned());
            done.dependency_install_completed_at = Some(now);
            done.updated_at = now;
            if self.store.finish_dependency_install(&done, started).await? {
                tracing::warn!(session_id = %s.id, "failed an interrupted dependency install");
                failed += 1;
            }
        }
        for c in installers {
            let waited_for =
                c.labels.get(labels::SESSION).is_some_and(|id| installing.iter().any(|s| &s.id == id));
            if !waited_for && (c.state != SandboxState::Running || past_deadline(c)) {
                let _ = self.runtime.remove(&c.id).await;
            }
        }
        Ok(failed)
    }
}
