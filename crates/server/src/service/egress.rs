//! Network egress of sessions: the policy check on create, the server's egress proxies (one for
//! sessions, one for package installers), a Unix socket per running session with an allow-list
//! (in the directory its sandbox mounts at `EGRESS_DIR`; Docker) and per running install, or one
//! TCP listener for every sandbox's credential, each mapped to the session holding the sandbox
//! through the store (`sandbox-server egress-proxy`, Kubernetes), and the audit, queued to the
//! store and bounded per session.

use crate::metrics::Metrics;
use crate::service::error::{FieldError, ServiceError};
use sandbox_core::model::SessionStatus;
use sandbox_core::model::{NetworkAttempt, NetworkMode, SessionNetwork};
use sandbox_egress::{
    AuditRecord, AuditSink, Decision, EgressKey, EgressSettings, Grant, LookupError, Mode, NetworkRequest,
    Pattern, PolicyError, Proxy, SessionLookup, SessionPolicy, SettingsError,
};
use sandbox_protocol::contract::EGRESS_SOCKET_NAME;
use sandbox_store::Store;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The newest audited attempts kept per session; older ones are deleted as new ones arrive.
pub const AUDIT_KEEP_PER_SESSION: u64 = 10_000;

/// Records waiting for the store at most; past it new records are dropped (and counted).
const AUDIT_QUEUE: usize = 10_000;

/// Records written to the store in one transaction at most.
const AUDIT_BATCH: usize = 500;

/// How long [`StoreLookup`] trusts what it read about a sandbox it found.
const HOLDERS_FRESH: Duration = Duration::from_secs(5);

/// How often at most [`StoreLookup`] reads the store again for a sandbox it did not find (a
/// pooled sandbox not claimed yet, or a credential of a sandbox that is gone).
const HOLDERS_REREAD: Duration = Duration::from_secs(1);

/// Checks the network policy a new session asks for against what the operator permits: the
/// session's policy in canonical form, or 422 with `invalid_egress_pattern`,
/// `invalid_egress_policy` or `egress_not_permitted`.
pub fn check_policy(
    settings: &EgressSettings,
    request: &NetworkRequest,
) -> Result<SessionNetwork, ServiceError> {
    let policy = settings.permitted().validate(request).map_err(|e| {
        let message = e.to_string();
        ServiceError::refused(e.code(), message.clone(), Some(FieldError::new("network", message)))
    })?;
    let canonical = NetworkRequest::from(policy);
    let mode = match canonical.mode {
        Mode::None => NetworkMode::None,
        Mode::Allowlist => NetworkMode::Allowlist,
    };
    Ok(SessionNetwork { mode, allow: canonical.allow })
}

/// A stored policy, read again (it was validated on create).
fn policy_of(network: &SessionNetwork) -> Result<SessionPolicy, PolicyError> {
    let mode = match network.mode {
        NetworkMode::None => Mode::None,
        NetworkMode::Allowlist => Mode::Allowlist,
    };
    SessionPolicy::parse(&NetworkRequest { mode, allow: network.allow.clone() })
}

/// A proxy listener: one identity and policy served on a Unix socket until it is dropped;
/// dropping it closes its connections and removes the socket.
pub struct EgressListener {
    task: AbortHandle,
    socket: PathBuf,
}

impl EgressListener {
    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether it still serves (its socket has not failed).
    pub fn is_serving(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for EgressListener {
    fn drop(&mut self) {
        self.task.abort();
        if let Err(e) = std::fs::remove_file(&self.socket)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %self.socket.display(), error = %e, "could not remove an egress socket");
        }
    }
}

/// The server's egress proxies and the sessions they serve.
pub struct Egress {
    proxy: Proxy,
    /// Serves package installers: bounded by each install's own list, which the server makes
    /// (the index and `dependencies.download_hosts`), not by `egress.permitted`.
    installs: Proxy,
    install_audit: Arc<InstallAudit>,
    serving: Mutex<HashMap<String, EgressListener>>,
}

impl Egress {
    /// The proxy for these settings, with the host's own addresses forbidden and every attempt
    /// audited to `store` and counted in `metrics`. Starts the task that writes the audit.
    pub fn new(
        settings: &EgressSettings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Egress, SettingsError> {
        let (queue, records) = mpsc::channel(AUDIT_QUEUE);
        tokio::spawn(write_audit(records, store));
        let sink = Arc::new(QueuedAudit { queue, metrics: metrics.clone() });
        let host = host_addresses();
        let proxy = Proxy::builder(settings.clone(), sink.clone())
            .host_addresses(host.clone())
            .metrics(metrics.clone())
            .build()?;
        let any: Pattern = "*:*".parse().expect("a valid pattern");
        let installs = EgressSettings { permitted: vec![any], ..settings.clone() };
        let install_audit = Arc::new(InstallAudit { store: sink, refusals: Mutex::default() });
        let installs =
            Proxy::builder(installs, install_audit.clone()).host_addresses(host).metrics(metrics).build()?;
        Ok(Egress { proxy, installs, install_audit, serving: Mutex::default() })
    }

    /// The first attempt of installer `installer` that the proxy refused or could not connect,
    /// as `host:port: decision`, if there was one; forgotten once asked. pip's own output
    /// cannot tell a denial from a failing index.
    pub fn install_refusal(&self, installer: &str) -> Option<String> {
        lock(&self.install_audit.refusals).remove(installer)
    }

    /// Serves session `id`'s proxy on `<dir>/proxy.sock` if its policy has an allow-list and it
    /// is not served already; otherwise does nothing. A socket that cannot be made is logged:
    /// the session then has no way out, which is the safe side.
    pub fn serve(&self, id: &str, network: &SessionNetwork, dir: &Path) {
        if !network.has_egress() {
            return;
        }
        let mut serving = self.serving();
        match serving.remove(id) {
            Some(running) if running.is_serving() => {
                serving.insert(id.to_owned(), running);
                return;
            }
            // A listener whose socket failed: it and its socket go before a new one is made.
            failed => drop(failed),
        }
        let policy = match policy_of(network) {
            Ok(policy) => policy,
            Err(e) => {
                tracing::error!(session_id = %id, error = %e, "the session's stored network policy does not read");
                return;
            }
        };
        match listen(&self.proxy, id, policy, dir) {
            Ok(listener) => {
                tracing::info!(session_id = %id, socket = %listener.socket.display(), "egress proxy serving");
                serving.insert(id.to_owned(), listener);
            }
            Err(e) => {
                tracing::error!(session_id = %id, dir = %dir.display(), error = %e, "could not open the session's egress socket")
            }
        }
    }

    /// Serves a package install of session `id` on a new socket `proxy.sock` in `dir` (made
    /// here, root-owned, mode 0755) until the returned listener is dropped: it reaches only
    /// `policy` (see [`install_policy`]), whatever the session's own list and `egress.permitted`
    /// say, and its attempts are audited as the session's.
    pub fn listen_install(
        &self,
        id: &str,
        policy: SessionPolicy,
        dir: &Path,
    ) -> std::io::Result<EgressListener> {
        prepare_dir(dir)?;
        listen(&self.installs, id, policy, dir)
    }

    /// Serves every sandbox that presents a credential made with `key` on `listener` (the
    /// Kubernetes proxy), each connection as the session that holds its sandbox in `store`
    /// ([`StoreLookup`]). Returns only when the listener fails.
    pub fn serve_shared(
        &self,
        listener: tokio::net::TcpListener,
        key: EgressKey,
        store: Arc<dyn Store>,
    ) -> impl std::future::Future<Output = std::io::Error> + Send + 'static {
        self.proxy.serve_shared(listener, key, Arc::new(StoreLookup::new(store)))
    }

    /// Stops session `id`'s proxy, if it runs: its connections close, and its socket goes.
    pub fn stop(&self, id: &str) {
        let stopped = self.serving().remove(id);
        if stopped.is_some() {
            tracing::info!(session_id = %id, "egress proxy stopped");
        }
    }

    /// Whether session `id`'s proxy is served by this process.
    pub fn is_serving(&self, id: &str) -> bool {
        self.serving().get(id).is_some_and(EgressListener::is_serving)
    }

    fn serving(&self) -> std::sync::MutexGuard<'_, HashMap<String, EgressListener>> {
        lock(&self.serving)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `policy` as `id` on a new socket `proxy.sock` in `dir`, a host directory only this
/// process writes, until the returned listener is dropped.
fn listen(proxy: &Proxy, id: &str, policy: SessionPolicy, dir: &Path) -> std::io::Result<EgressListener> {
    let socket = dir.join(EGRESS_SOCKET_NAME);
    let listener = sandbox_egress::bind_unix_socket(&socket)?;
    let accept = proxy.serve_session(id, policy, listener);
    let session = id.to_owned();
    let task = tokio::spawn(async move {
        let error = accept.await;
        tracing::error!(session_id = %session, %error, "egress proxy socket failed");
    });
    Ok(EgressListener { task: task.abort_handle(), socket })
}

/// Makes a directory for proxy sockets that a sandbox or an installer mounts: owned by this
/// process's user (root in production), mode 0755, so that only the control plane creates or
/// replaces what is in it.
pub fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// What a package install may reach: the host and port of its index (`index_url`, already
/// allowed by `dependencies.allowed_index_urls`), and the hosts the operator lets installers
/// download files from (`dependencies.download_hosts`: PyPI serves them from
/// `files.pythonhosted.org`).
pub fn install_policy(index_url: &str, download_hosts: &[Pattern]) -> Result<SessionPolicy, String> {
    let url = url::Url::parse(index_url).map_err(|e| format!("the index URL does not parse: {e}"))?;
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err("the index URL names no host and port".into());
    };
    let index: Pattern =
        format!("{host}:{port}").parse().map_err(|e| format!("the index's host cannot be allowed: {e}"))?;
    let allow = std::iter::once(index).chain(download_hosts.iter().cloned()).map(|p| p.to_string()).collect();
    SessionPolicy::parse(&NetworkRequest { mode: Mode::Allowlist, allow }).map_err(|e| e.to_string())
}

/// Which session holds a sandbox, from the store: the live sessions (creating or running) by
/// their sandbox's runtime id (`container_id`: the pod's name on Kubernetes). What it read is
/// trusted for [`HOLDERS_FRESH`]; a sandbox it does not know makes it read again, at most every
/// [`HOLDERS_REREAD`], so a pooled sandbox is found soon after its session claims it and
/// unknown credentials cannot make it hammer the store.
pub struct StoreLookup {
    store: Arc<dyn Store>,
    holders: tokio::sync::Mutex<Holders>,
}

/// What [`StoreLookup`] last read.
#[derive(Default)]
struct Holders {
    read_at: Option<Instant>,
    by_sandbox: HashMap<String, Grant>,
}

impl StoreLookup {
    /// A lookup in `store`.
    pub fn new(store: Arc<dyn Store>) -> StoreLookup {
        StoreLookup { store, holders: tokio::sync::Mutex::default() }
    }
}

#[async_trait::async_trait]
impl SessionLookup for StoreLookup {
    async fn session_of(&self, sandbox: &str) -> Result<Option<Grant>, LookupError> {
        let mut holders = self.holders.lock().await;
        let age = holders.read_at.map(|at| at.elapsed());
        let found = holders.by_sandbox.contains_key(sandbox);
        let stale = age.is_none_or(|age| age >= if found { HOLDERS_FRESH } else { HOLDERS_REREAD });
        if stale {
            let live = self
                .store
                .sessions_in_status(&[SessionStatus::Creating, SessionStatus::Running])
                .await
                .map_err(|e| LookupError(e.to_string()))?;
            holders.by_sandbox = live
                .into_iter()
                .filter_map(|s| {
                    let policy = policy_of(&s.network)
                        .inspect_err(|e| tracing::error!(session_id = %s.id, error = %e, "the session's stored network policy does not read"))
                        .ok()?;
                    Some((s.container_id?, Grant { session_id: s.id, policy }))
                })
                .collect();
            holders.read_at = Some(Instant::now());
        }
        Ok(holders.by_sandbox.get(sandbox).cloned())
    }
}

/// The host's own addresses (every interface's), which no session reaches unless the operator
/// allows them.
fn host_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that stays valid until freeifaddrs;
    // each sockaddr is read as the family it states.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not list the host's addresses for the egress proxy");
            return found;
        }
        let mut entry = list;
        while let Some(ifa) = entry.as_ref() {
            if let Some(addr) = ifa.ifa_addr.as_ref() {
                let ip = match i32::from(addr.sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::from(v6.sin6_addr.s6_addr))
                    }
                    _ => None,
                };
                if let Some(ip) = ip.filter(|ip| !found.contains(ip)) {
                    found.push(ip);
                }
            }
            entry = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// Queues audit records for the store without waiting: the proxy's tasks call it.
struct QueuedAudit {
    queue: mpsc::Sender<NetworkAttempt>,
    metrics: Arc<Metrics>,
}

impl AuditSink for QueuedAudit {
    fn record(&self, record: AuditRecord) {
        if self.queue.try_send(attempt_of(record)).is_err() {
            self.metrics.egress_audit_dropped();
        }
    }
}

/// Installers whose first refusal is kept at most (each is forgotten when its install ends).
const INSTALL_REFUSALS_KEPT: usize = 1024;

/// The audit of the installers' proxy: every record goes to the store's queue, and the first
/// refusal of each installer is kept for its install to explain its failure with.
struct InstallAudit {
    store: Arc<QueuedAudit>,
    refusals: Mutex<HashMap<String, String>>,
}

impl AuditSink for InstallAudit {
    fn record(&self, record: AuditRecord) {
        if record.decision != Decision::Allowed
            && let Some(installer) = &record.execution_id
        {
            let mut refusals = lock(&self.refusals);
            if refusals.len() < INSTALL_REFUSALS_KEPT && !refusals.contains_key(installer) {
                let port = record.port.map(|p| format!(":{p}")).unwrap_or_default();
                let refusal = format!("{}{port}: {}", record.host, record.decision);
                refusals.insert(installer.clone(), refusal);
            }
        }
        self.store.record(record);
    }
}

/// An audit record as the store keeps it.
fn attempt_of(r: AuditRecord) -> NetworkAttempt {
    NetworkAttempt {
        session_id: r.session_id,
        execution_id: r.execution_id,
        kind: r.kind.as_str().to_owned(),
        host: r.host,
        port: r.port,
        address: r.address.map(|a| a.to_string()),
        decision: r.decision.kind().as_str().to_owned(),
        reason: r.decision.reason().to_owned(),
        bytes_up: r.bytes_up,
        bytes_down: r.bytes_down,
        started_at: r.started_at,
        duration_ms: u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Writes queued records in batches, keeping each session's newest
/// [`AUDIT_KEEP_PER_SESSION`], until every sender is gone.
async fn write_audit(mut records: mpsc::Receiver<NetworkAttempt>, store: Arc<dyn Store>) {
    let mut batch = Vec::with_capacity(AUDIT_BATCH);
    while records.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
        if let Err(e) = store.insert_network_attempts(&batch, AUDIT_KEEP_PER_SESSION).await {
            tracing::error!(records = batch.len(), error = %e, "could not store egress audit records");
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_may_reach_its_index_and_the_download_hosts_only() {
        let downloads: Vec<Pattern> = vec!["files.pythonhosted.org:443".parse().unwrap()];
        let policy = install_policy("https://u:secret@PyPI.org/simple/", &downloads).unwrap();
        let allow = NetworkRequest::from(policy).allow;
        assert_eq!(allow, ["pypi.org:443", "files.pythonhosted.org:443"]);
        let policy = install_policy("http://127.0.0.1:8080/simple/", &[]).unwrap();
        assert_eq!(NetworkRequest::from(policy).allow, ["127.0.0.1:8080"]);
        let policy = install_policy("http://[::1]/simple/", &[]).unwrap();
        assert_eq!(NetworkRequest::from(policy).allow, ["[::1]:80"]);
        assert!(install_policy("not a url", &[]).is_err());
    }
}
