//! Python packages for sessions. pip runs in a short-lived installer container of the
//! session's template (the sandbox itself never gets a network), writing a complete new set of
//! packages beside the current one in the session's package directory; the set becomes current
//! by moving one link, so executions never see half an install and a failed install leaves the
//! previous packages in place. The exact versions installed are recorded, so a sandbox recreated
//! where the directory is gone gets the same packages back.

use crate::error::{ApiError, FieldError};
use crate::service::package_sets::{PackageSetError, PackageSets};
use crate::service::sandboxes::Sandboxes;
use crate::settings::Settings;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sandbox_core::model::{DependencySpec, InstalledDependency, Session, Template};
use sandbox_core::packages::{self, Pin, Requirement, TemplateFit};
use sandbox_core::{CpuQuantity, MemoryQuantity};
use sandbox_protocol::DEPS_PYTHONPATH;
use sandbox_runtime::{
    InstallerOutcome, InstallerSpec, Runtime, RuntimeError, SandboxInfo, SandboxState, labels,
    spec::INSTALLER_ROLE,
};
use sandbox_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Most packages one request may name (the Python control plane's limit).
pub const MAX_PACKAGES: usize = 50;
/// Longest index URL accepted.
pub const MAX_INDEX_URL_LEN: usize = 512;
/// Where the template's own packages are reported to live.
const TEMPLATE_LOCATION: &str = "template image";
/// Most characters of pip's output kept in an error.
const MAX_ERROR_CHARS: usize = 2000;
/// How long after its start an install with no installer container counts as interrupted.
const START_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How long an installer may sit exited before its install counts as abandoned.
const EXIT_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Checks a package index URL: `http` or `https`, with a host, at most 512 characters.
pub fn validate_index_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > MAX_INDEX_URL_LEN {
        return Err(format!("longer than {MAX_INDEX_URL_LEN} characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} must be an http:// or https:// URL with a host"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(url)
}

/// The package indexes sessions may install from: the default index, and the operator's
/// `dependencies.allowed_index_urls`. Anything else is refused before an installer starts, so a
/// tenant cannot make the platform fetch an address of the operator's network.
///
/// An entry is `scheme://host[:port]/path`: the scheme and host must match (a host `*.corp.example`
/// matches any name below `corp.example`), the port must match (`:*` matches any), and the URL's
/// path must lie under the entry's path. Credentials in the URL do not take part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexAllowList {
    entries: Vec<AllowedIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedIndex {
    scheme: String,
    /// A host name, or `.suffix` for `*.suffix`.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
    path: String,
}

impl AllowedIndex {
    fn parse(raw: &str) -> Result<Self, String> {
        let (scheme, rest) = raw.split_once("://").ok_or_else(|| format!("{raw:?} is not a URL"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (authority, any_port) = match authority.strip_suffix(":*") {
            Some(a) => (a, true),
            None => (authority, false),
        };
        let (authority, wildcard) = match authority.strip_prefix("*.") {
            Some(a) => (a, true),
            None => (authority, false),
        };
        let url = validate_index_url(&format!("{scheme}://{authority}{path}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{raw:?}: an allowed index has no credentials"));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        Ok(AllowedIndex {
            scheme: url.scheme().to_owned(),
            host: if wildcard { format!(".{host}") } else { host },
            port: if any_port { None } else { url.port_or_known_default() },
            path: url.path().to_owned(),
        })
    }

    fn allows(&self, url: &url::Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        let host_ok = match self.host.strip_prefix('.') {
            Some(suffix) => host.strip_suffix(suffix).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host == self.host,
        };
        let path = url.path();
        let path_ok = path == self.path
            || (self.path.ends_with('/') && path.starts_with(&self.path))
            || path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('/'));
        url.scheme() == self.scheme
            && host_ok
            && self.port.is_none_or(|p| url.port_or_known_default() == Some(p))
            && path_ok
    }
}

impl IndexAllowList {
    /// The default index and the extra entries; fails naming the first invalid entry.
    pub fn new(default_index: &str, extra: &[String]) -> Result<Self, String> {
        let entries = std::iter::once(default_index)
            .chain(extra.iter().map(String::as_str))
            .map(AllowedIndex::parse)
            .collect::<Result<_, _>>()?;
        Ok(IndexAllowList { entries })
    }

    /// Whether installs may use `url`.
    pub fn allows(&self, url: &url::Url) -> bool {
        self.entries.iter().any(|e| e.allows(url))
    }
}

/// The URL with any password replaced by `***`, for responses and logs.
pub fn redact_index_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// The template's packages as a session reports them.
pub fn template_packages(template: &Template, at: DateTime<Utc>) -> Vec<InstalledDependency> {
    template_pins(template)
        .into_iter()
        .map(|p| InstalledDependency {
            name: p.name,
            version: p.version.to_string(),
            install_location: TEMPLATE_LOCATION.into(),
            install_time: at,
            is_from_template: true,
        })
        .collect()
}

fn template_pins(template: &Template) -> Vec<Pin> {
    template.pre_installed_packages.iter().filter_map(|p| p.parse().ok()).collect()
}

/// A validated install: what the session will have asked for once it succeeds, and what pip
/// is told to install for that.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The session's requests after this install (earlier ones with these merged in).
    pub wanted: Vec<DependencySpec>,
    /// pip's requirement arguments; empty when the template already has everything.
    pub pip: Vec<String>,
    /// The index.
    pub index_url: String,
}

/// Validates an install of `new` into a session that asked for and got `before` (422 naming
/// each bad field, prefixed with `field`): the index URL and whether it is allowed (422
/// `index_not_allowed`, before anything else), names, versions, duplicates, and conflicts with
/// the template's packages unless `allow_conflicts`.
pub fn plan(
    field: &str,
    template: &Template,
    before: (&[DependencySpec], &[InstalledDependency]),
    new: &[DependencySpec],
    index: (&str, &IndexAllowList),
    allow_conflicts: bool,
) -> Result<Plan, ApiError> {
    let (index_url, allowed) = index;
    if let Ok(url) = validate_index_url(index_url)
        && !allowed.allows(&url)
    {
        return Err(ApiError {
            errors: vec![FieldError {
                field: "python_package_index_url".into(),
                message: "not on this server's list of allowed package indexes".into(),
            }],
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "index_not_allowed",
                format!(
                    "the package index {} is not allowed here; the operator lists the allowed ones (dependencies.allowed_index_urls)",
                    redact_index_url(index_url)
                ),
            )
        });
    }
    let mut errors = Vec::new();
    let mut bad = |f: String, message: String| errors.push(FieldError { field: f, message });
    if new.len() > MAX_PACKAGES {
        bad(field.into(), format!("at most {MAX_PACKAGES} packages per request"));
    }
    let pins = template_pins(template);
    let mut parsed: Vec<Requirement> = Vec::new();
    for (i, d) in new.iter().enumerate() {
        match Requirement::parse(&d.name, d.version.as_deref()) {
            Err(e @ packages::RequirementError::InvalidName(_)) => {
                bad(format!("{field}.{i}.name"), e.to_string())
            }
            Err(e) => bad(format!("{field}.{i}.version"), e.to_string()),
            Ok(r) if parsed.iter().any(|p| p.key() == r.key()) => {
                bad(format!("{field}.{i}.name"), format!("{} is listed twice", r.name()))
            }
            Ok(r) => {
                if let TemplateFit::Conflicts(v) = packages::template_fit(&r, &pins)
                    && !allow_conflicts
                {
                    bad(
                        format!("{field}.{i}.version"),
                        format!(
                            "the template ships {} {v}, which {} excludes; set allow_version_conflicts to install another version over it",
                            r.name(),
                            r.spec().version.unwrap_or_default()
                        ),
                    );
                }
                parsed.push(r);
            }
        }
    }
    if let Err(e) = validate_index_url(index_url) {
        bad("python_package_index_url".into(), e);
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    // Earlier requests were validated when made.
    let (requested, installed) = before;
    let before: Vec<Requirement> =
        requested.iter().filter_map(|d| Requirement::parse(&d.name, d.version.as_deref()).ok()).collect();
    let wanted = packages::merge(&before, &parsed);
    Ok(Plan {
        pip: packages::pip_requirements(&wanted, &parsed, installed, &pins),
        wanted: wanted.iter().map(Requirement::spec).collect(),
        index_url: index_url.to_owned(),
    })
}

/// Why an install did not complete.
#[derive(Debug, thiserror::Error)]
pub enum InstallFailure {
    /// A package, or a version of it that the constraint allows, is not on the index.
    #[error("{0}")]
    NotFound(String),
    /// The index could not be reached.
    #[error("the package index could not be reached: {0}")]
    IndexUnreachable(String),
    /// pip failed otherwise (conflicting requirements, no wheel, ...).
    #[error("{0}")]
    Failed(String),
    /// The install took longer than allowed.
    #[error("the install did not finish within {0}s")]
    TimedOut(u64),
    /// The packages are larger than allowed.
    #[error("the installed packages take {size_mb} MiB, more than the limit of {limit_mb} MiB")]
    TooLarge {
        /// Their size.
        size_mb: u64,
        /// The limit.
        limit_mb: u64,
    },
    /// pip ran out of room: the packages (or pip's unpacking of them) need more than allowed.
    #[error(
        "the packages do not fit in the limit of {limit_mb} MiB (dependencies.max_size_mb): pip stopped with 'No space left on device'"
    )]
    NoSpace {
        /// The limit.
        limit_mb: u64,
    },
    /// The installer container could not run.
    #[error("the installer could not run: {0}")]
    Runtime(#[from] RuntimeError),
    /// The host directory could not be prepared or read.
    #[error("the package directory: {0}")]
    Host(#[from] std::io::Error),
    /// The package directory or the staged packages could not be handled.
    #[error("the package directory: {0}")]
    Sets(#[from] PackageSetError),
}

impl InstallFailure {
    /// The API error a waiting client gets.
    pub fn api_error(&self) -> ApiError {
        let message = format!("installing dependencies failed: {self}");
        match self {
            InstallFailure::NotFound(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "package_not_found", message)
            }
            InstallFailure::Failed(_) | InstallFailure::TooLarge { .. } | InstallFailure::NoSpace { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "dependency_install_failed", message)
            }
            InstallFailure::IndexUnreachable(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "package_index_unreachable", message)
            }
            InstallFailure::TimedOut(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "dependency_install_timeout", message)
            }
            InstallFailure::Runtime(RuntimeError::Unsupported { .. }) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "dependencies_unsupported", message)
            }
            InstallFailure::Runtime(RuntimeError::ImageNotFound(_)) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "template_image_missing", message)
            }
            InstallFailure::Runtime(_) | InstallFailure::Host(_) | InstallFailure::Sets(_) => {
                ApiError::unavailable("installer_unavailable", message, 5)
            }
        }
    }
}

/// Reads what pip's output says went wrong.
fn classify(outcome: &InstallerOutcome, timeout: Duration, limit_mb: u64) -> InstallFailure {
    const UNREACHABLE: [&str; 8] = [
        "Failed to establish a new connection",
        "NewConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "Temporary failure in name resolution",
        "Name or service not known",
        "ProxyError",
        "SSLError",
    ];
    let Some(_) = outcome.exit_code else { return InstallFailure::TimedOut(timeout.as_secs()) };
    if outcome.oom_killed {
        return InstallFailure::Failed("the installer ran out of memory (dependencies.memory)".into());
    }
    if outcome.output.contains("No space left on device") {
        return InstallFailure::NoSpace { limit_mb };
    }
    let out = &outcome.output;
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("ERROR:")).collect();
    let summary = if errors.is_empty() {
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    } else {
        errors.join("\n")
    };
    let summary: String = summary.chars().take(MAX_ERROR_CHARS).collect();
    let not_found =
        out.contains("No matching distribution found") || out.contains("Could not find a version");
    if not_found && UNREACHABLE.iter().any(|u| out.contains(u)) {
        let why = out.lines().find(|l| UNREACHABLE.iter().any(|u| l.contains(u))).unwrap_or_default();
        let why: String = why.chars().take(MAX_ERROR_CHARS / 2).collect();
        return InstallFailure::IndexUnreachable(format!("{why}\n{summary}"));
    }
    if not_found {
        return InstallFailure::NotFound(summary);
    }
    InstallFailure::Failed(summary)
}

/// Runs installs and keeps their record.
pub struct Dependencies {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    sandboxes: Arc<Sandboxes>,
    allowed_indexes: IndexAllowList,
}

impl Dependencies {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        sandboxes: Arc<Sandboxes>,
    ) -> Self {
        let d = &settings.dependencies;
        // Checked when the settings were loaded.
        let allowed_indexes = IndexAllowList::new(&d.default_index_url, &d.allowed_index_urls)
            .expect("dependencies.allowed_index_urls was validated with the settings");
        Dependencies { settings, store, runtime, sandboxes, allowed_indexes }
    }

    /// The package indexes installs may use.
    pub fn allowed_indexes(&self) -> &IndexAllowList {
        &self.allowed_indexes
    }

    /// The install timeout a request asks for (`None`: the default), checked against the
    /// maximum.
    pub fn timeout(&self, asked: Option<u32>) -> Result<Duration, ApiError> {
        let d = &self.settings.dependencies;
        let secs = asked.unwrap_or(d.install_timeout_sec);
        let min = 30.min(d.max_install_timeout_sec);
        if secs < min || secs > d.max_install_timeout_sec {
            return Err(ApiError::invalid_field(
                "install_timeout",
                format!("must be from {min} to {} seconds", d.max_install_timeout_sec),
            ));
        }
        Ok(Duration::from_secs(u64::from(secs)))
    }

    /// Runs `plan` for `session` (whose install is marked started) and returns the session with
    /// its dependency fields updated, and the failure if any. Nothing is stored here.
    pub async fn run(
        &self,
        session: &Session,
        template: &Template,
        plan: &Plan,
        timeout: Duration,
    ) -> (Session, Option<InstallFailure>) {
        let clock = std::time::Instant::now();
        let result = if plan.pip.is_empty() {
            Ok(Vec::new())
        } else {
            self.install_set(&session.id, &template.image_url, &plan.index_url, &plan.pip, false, timeout)
                .await
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
                s.dependency_install_status = "completed".into();
                s.dependency_install_error = None;
                None
            }
            Err(e) => {
                s.dependency_install_status = "failed".into();
                s.dependency_install_error = Some(e.to_string());
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

    /// Installs more packages into a running session, waiting for the end (the install goes on
    /// if the client hangs up). 409 while another install of the session runs.
    pub async fn install(
        self: &Arc<Self>,
        session: Session,
        template: Template,
        new: Vec<DependencySpec>,
        index_url: Option<String>,
        allow_conflicts: bool,
    ) -> Result<Session, ApiError> {
        let index_url = index_url.unwrap_or_else(|| session.python_package_index_url.clone());
        let before = (&session.requested_dependencies[..], &session.installed_dependencies[..]);
        let plan = plan(
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
            return Err(ApiError::conflict(
                "dependency_install_in_progress",
                format!("session {} is installing dependencies already; retry when it is done", session.id),
            ));
        }
        let mut session = session;
        session.dependency_install_status = "installing".into();
        session.dependency_install_started_at = Some(started);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let (done, failure) = this.run(&session, &template, &plan, timeout).await;
            if !this.store.finish_dependency_install(&done, started).await? {
                tracing::warn!(session_id = %done.id, "the install was given up meanwhile; its result is not recorded");
            }
            Ok::<_, ApiError>((done, failure))
        });
        let (done, failure) = task.await.map_err(ApiError::internal)??;
        match failure {
            Some(f) => Err(f.api_error()),
            None => Ok(self.store.session(&done.id).await?.unwrap_or(done)),
        }
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
        let result = self
            .install_set(
                &session.id,
                &template.image_url,
                &session.python_package_index_url,
                &pinned,
                true,
                timeout,
            )
            .await;
        let mut s = session.clone();
        let now = Utc::now();
        s.dependency_install_completed_at = Some(now);
        match result {
            Ok(_) => {
                s.dependency_install_status = "completed".into();
                s.dependency_install_error = None;
            }
            Err(e) => {
                tracing::warn!(session_id = %s.id, error = %e, "could not reinstall the session's packages");
                s.dependency_install_status = "failed".into();
                s.dependency_install_error = Some(format!("reinstalling the recorded packages failed: {e}"));
            }
        }
        Some(s)
    }

    /// The package directory of a session (mounted read-only in its sandbox).
    pub fn sets(&self, session_id: &str) -> PackageSets {
        self.sandboxes.package_sets(session_id)
    }

    /// Runs pip for `requirements` into a new set and makes it current; returns what is in it.
    async fn install_set(
        &self,
        session_id: &str,
        image: &str,
        index_url: &str,
        requirements: &[String],
        no_deps: bool,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, InstallFailure> {
        let d = &self.settings.dependencies;
        let sets = self.sets(session_id);
        let set = format!("set-{}", Utc::now().timestamp_micros());
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
            name: format!("installer-{session_id}-{}", &set[4..]),
            image: image.to_owned(),
            command,
            // The index (and any credentials in it) travels in pip's environment, never in argv.
            env: [("PIP_INDEX_URL".to_owned(), index_url.to_owned())].into(),
            target_dir: staging.target.clone(),
            scratch_dir: staging.scratch.clone(),
            network: d.network.clone(),
            cpu: d.cpu.parse::<CpuQuantity>().map_err(|e| RuntimeError::Invalid(e.to_string()))?,
            memory: d.memory.parse::<MemoryQuantity>().map_err(|e| RuntimeError::Invalid(e.to_string()))?,
            pids_limit: 512,
            timeout,
            labels: [
                (labels::SESSION.to_owned(), session_id.to_owned()),
                (labels::DEPLOYMENT.to_owned(), self.sandboxes.deployment().to_owned()),
            ]
            .into(),
            uid: self.settings.executor.uid,
        };
        let outcome = self.runtime.run_installer(&spec).await;
        let finished =
            tokio::task::spawn_blocking(move || -> Result<Vec<(String, String)>, InstallFailure> {
                let result = (|| {
                    let outcome = outcome?;
                    if outcome.exit_code != Some(0) {
                        return Err(classify(&outcome, timeout, max));
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
    pub async fn fail_interrupted(&self, containers: &[SandboxInfo]) -> Result<u64, ApiError> {
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
            done.dependency_install_status = "failed".into();
            done.dependency_install_error = Some(
                "the install was interrupted (the control plane stopped during it); install again".into(),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit: Option<i64>, output: &str) -> InstallerOutcome {
        InstallerOutcome { exit_code: exit, output: output.into(), oom_killed: false }
    }

    #[test]
    fn pip_failures_are_told_apart() {
        let t = Duration::from_secs(60);
        let unknown = "Looking in indexes: http://127.0.0.1:9/simple/\nERROR: Could not find a version that satisfies the requirement nope (from versions: none)\nERROR: No matching distribution found for nope\n";
        assert!(
            matches!(classify(&outcome(Some(1), unknown), t, 8), InstallFailure::NotFound(m) if m.starts_with("ERROR: Could not find") && m.lines().count() == 2)
        );
        let refused = format!(
            "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(... Failed to establish a new connection: [Errno 111] Connection refused')': /simple/six/\n{unknown}"
        );
        assert!(
            matches!(classify(&outcome(Some(1), &refused), t, 8), InstallFailure::IndexUnreachable(m) if m.contains("Connection refused"))
        );
        let conflict = "ERROR: Cannot install a==1 and b==2 because these package versions have conflicting dependencies.\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io";
        assert!(
            matches!(classify(&outcome(Some(1), conflict), t, 8), InstallFailure::Failed(m) if m.contains("ResolutionImpossible"))
        );
        assert!(matches!(classify(&outcome(None, ""), t, 8), InstallFailure::TimedOut(60)));
        let oom = InstallerOutcome { oom_killed: true, ..outcome(Some(137), "") };
        assert!(matches!(classify(&oom, t, 8), InstallFailure::Failed(m) if m.contains("memory")));
        let full = "ERROR: Exception:\nTraceback ...\nOSError: [Errno 28] No space left on device\n";
        assert!(matches!(classify(&outcome(Some(2), full), t, 8), InstallFailure::NoSpace { limit_mb: 8 }));
        let long = "x\n".repeat(5000);
        assert!(
            matches!(classify(&outcome(Some(2), &long), t, 8), InstallFailure::Failed(m) if m.len() <= MAX_ERROR_CHARS)
        );
    }

    #[test]
    fn index_urls_are_checked_and_passwords_never_shown() {
        for ok in
            ["https://pypi.org/simple/", "http://127.0.0.1:8080/simple", "https://user:tok@pypi.corp/simple/"]
        {
            assert!(validate_index_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "pypi.org/simple",
            "ftp://x/simple",
            "file:///etc/passwd",
            "https://",
            "http://a b/",
            &format!("https://x/{}", "a".repeat(600)),
        ] {
            assert!(validate_index_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redact_index_url("https://user:tok@pypi.corp/simple/"),
            "https://user:***@pypi.corp/simple/"
        );
        assert_eq!(redact_index_url("https://pypi.org/simple/"), "https://pypi.org/simple/");
    }

    #[test]
    fn only_allowed_indexes_pass() {
        let list = IndexAllowList::new(
            "https://pypi.org/simple/",
            &[
                "https://*.corp.example/pypi".into(),
                "http://127.0.0.1:*/".into(),
                "https://mirror.example:8443/simple/".into(),
            ],
        )
        .unwrap();
        let allowed = |u: &str| list.allows(&url::Url::parse(u).unwrap());
        for ok in [
            "https://pypi.org/simple/",
            "https://PyPI.org/simple/sub/",
            "https://user:tok@pypi.org/simple/",
            "https://a.corp.example/pypi",
            "https://a.b.corp.example/pypi/simple/",
            "http://127.0.0.1:9/",
            "http://127.0.0.1:1234/simple/",
            "https://mirror.example:8443/simple/",
        ] {
            assert!(allowed(ok), "{ok} should be allowed");
        }
        for bad in [
            "http://pypi.org/simple/",
            "https://pypi.org:8443/simple/",
            "https://pypi.org/other/",
            "https://pypi.org.evil.example/simple/",
            "https://evil.example/simple/?https://pypi.org/simple/",
            "https://corp.example/pypi",
            "https://xcorp.example/pypi",
            "https://a.corp.example/pypiX",
            "http://127.0.0.2:9/",
            "http://169.254.169.254/latest/meta-data/",
            "https://mirror.example/simple/",
        ] {
            assert!(!allowed(bad), "{bad} should be refused");
        }
        assert!(IndexAllowList::new("https://pypi.org/simple/", &["https://u:p@x.example/".into()]).is_err());
        assert!(IndexAllowList::new("https://pypi.org/simple/", &["not a url".into()]).is_err());
    }
}
