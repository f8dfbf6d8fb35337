//! The proxy: an accept loop per session listener; every request decided, relayed and audited.

use crate::address::AddressRules;
use crate::audit::{Attempt, AuditSink, EgressMetrics, Reporter, RequestKind};
use crate::connect::{Connector, Dialer, TcpConnector};
use crate::credential::{CREDENTIAL_SCHEME, EgressKey, Grant, SessionLookup};
use crate::decision::{Decision, Failure, PolicyDenial};
use crate::destination::Destination;
use crate::limits::{
    CLIENT_CONNECTIONS_PER_CONNECTION, Limits, REQUEST_HEAD_TIMEOUT, SHARED_CLIENT_CONNECTIONS, TokenBucket,
};
use crate::metered::{Metered, Traffic};
use crate::policy::{Permitted, SessionPolicy};
use crate::resolve::Resolver;
use crate::settings::{EgressSettings, SettingsError};
use crate::{http_forward, tunnel};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The request header a relay may set to name the execution a connection belongs to. The proxy
/// records it, if it looks like an id, as untrusted metadata, and never forwards it.
pub const EXECUTION_HEADER: &str = "x-sandbox-execution";

/// Longest execution id recorded from [`EXECUTION_HEADER`].
const MAX_EXECUTION_ID_LEN: usize = 64;

/// Largest request head a client may send (hyper's smallest read buffer is 8 KiB).
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// How often a shared listener asks again whether the sandboxes of the sessions it serves are
/// still theirs ([`Proxy::serve_shared`]).
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// How long the accept loop pauses after an error such as running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The body of every response the proxy gives.
pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Something that accepts client connections: a Unix socket per session (Docker), one TCP
/// listener for every sandbox's credential ([`Proxy::serve_shared`], Kubernetes).
pub trait Listener: Send + 'static {
    /// A client connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next client connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// What every session of one proxy shares.
struct Shared {
    permitted: Permitted,
    rules: AddressRules,
    limits: Limits,
    resolver: Arc<dyn Resolver>,
    connector: Arc<dyn Connector>,
    reporter: Reporter,
}

/// The egress proxy. Cheap to clone; serves any number of sessions, each on its own listener.
///
/// A session's identity is the listener its connections arrive on, never anything the client
/// sends: the server creates one listener (a Unix socket) per session and hands it to
/// [`Proxy::serve_session`] with that session's id and policy.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

/// Builds a [`Proxy`]: the settings and the audit sink are required, the rest has defaults
/// (no host addresses, the system resolver, plain TCP, no metrics).
pub struct ProxyBuilder {
    settings: EgressSettings,
    audit: Arc<dyn AuditSink>,
    host_addresses: Vec<IpAddr>,
    resolver: Arc<dyn Resolver>,
    connector: Arc<dyn Connector>,
    metrics: Arc<dyn EgressMetrics>,
}

impl ProxyBuilder {
    /// The host's own addresses, never reachable unless the settings list them.
    pub fn host_addresses(mut self, addresses: Vec<IpAddr>) -> Self {
        self.host_addresses = addresses;
        self
    }

    /// Resolves names (default: the settings' `hosts`, then [`crate::SystemResolver`]).
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Opens connections to checked addresses (default: [`TcpConnector`]).
    pub fn connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connector = connector;
        self
    }

    /// Counts decisions and bytes (default: nothing).
    pub fn metrics(mut self, metrics: Arc<dyn EgressMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The proxy, once the settings are valid.
    pub fn build(self) -> Result<Proxy, SettingsError> {
        self.settings.validate()?;
        let shared = Shared {
            permitted: self.settings.permitted(),
            rules: self.settings.address_rules(self.host_addresses),
            limits: self.settings.limits(),
            resolver: self.resolver,
            connector: self.connector,
            reporter: Reporter { audit: self.audit, metrics: self.metrics },
        };
        Ok(Proxy { shared: Arc::new(shared) })
    }
}

impl Proxy {
    /// Starts building a proxy with these settings, reporting every attempt to `audit`. Names
    /// resolve through the settings' `hosts`, then the system's resolver.
    pub fn builder(settings: EgressSettings, audit: Arc<dyn AuditSink>) -> ProxyBuilder {
        ProxyBuilder {
            resolver: settings.resolver(),
            settings,
            audit,
            host_addresses: Vec::new(),
            connector: Arc::new(TcpConnector),
            metrics: Arc::new(()),
        }
    }

    /// Serves one session: every connection accepted on `listener` is the session `session_id`'s
    /// and is held to `policy` and to the session's own limits (connections, bandwidth).
    ///
    /// Runs until the returned future is dropped, or until the listener fails (it then returns
    /// the listener's error); either way every connection of the session is closed, and audited
    /// as it closes. Transient accept errors (out of descriptors, an aborted connection) only
    /// pause it.
    pub fn serve_session<L: Listener>(
        &self,
        session_id: &str,
        policy: SessionPolicy,
        listener: L,
    ) -> impl Future<Output = io::Error> + Send + 'static {
        let session = Session::new(self.shared.clone(), session_id, policy, CancellationToken::new());
        async move {
            let _stop_all = session.stop.clone().drop_guard();
            accept_loop(listener, session.clients.clone(), &session.id, |io| {
                session.spawn(session.clone().serve_client(io));
            })
            .await
        }
    }

    /// Serves every sandbox that presents a credential made with `key`, on one listener (TCP,
    /// on Kubernetes): each connection's first request must carry `Proxy-Authorization: Bearer
    /// <credential>` ([`crate::credential`]); the connection is then the session's that
    /// `lookup` says holds that sandbox, held to its policy and to its own limits, shared by
    /// all the session's connections. Without a valid credential the answer is 407, for a
    /// sandbox no session holds 403, when the lookup fails 503, and the connection is closed;
    /// none of these is audited (there is no session to record it for), each is logged. Every
    /// few seconds the sandboxes of the sessions served are looked up again: a session that no
    /// longer holds any of them is stopped, which closes its connections.
    ///
    /// Runs until the returned future is dropped, or until the listener fails, like
    /// [`Proxy::serve_session`].
    pub fn serve_shared<L: Listener>(
        &self,
        listener: L,
        key: EgressKey,
        lookup: Arc<dyn SessionLookup>,
    ) -> impl Future<Output = io::Error> + Send + 'static {
        let gate = Arc::new(Gate {
            shared: self.shared.clone(),
            key,
            lookup,
            sessions: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });
        async move {
            let _stop_all = gate.stop.clone().drop_guard();
            let clients = Arc::new(Semaphore::new(SHARED_CLIENT_CONNECTIONS));
            let accept = accept_loop(listener, clients, "(shared)", |io| {
                tokio::spawn(gate.stop.clone().run_until_cancelled_owned(gate.clone().serve_client(io)));
            });
            tokio::select! {
                error = accept => error,
                never = gate.clone().sweep() => match never {},
            }
        }
    }
}

/// Accepts connections on `listener` (the session `session`'s, for the log) while `clients` has
/// room, handing each to `serve` (which spawns its task); a connection's permit goes with it.
/// Returns the listener's error; transient ones only pause it.
async fn accept_loop<L: Listener>(
    mut listener: L,
    clients: Arc<Semaphore>,
    session: &str,
    mut serve: impl FnMut(ClientIo<L::Io>) + Send,
) -> io::Error {
    loop {
        let permit = clients.clone().acquire_owned().await.expect("the semaphore is never closed");
        match listener.accept().await {
            Ok(io) => serve(ClientIo { io, _permit: permit }),
            Err(error) if is_transient(&error) => {
                tracing::warn!(session, %error, "egress proxy accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            Err(error) => return error,
        }
    }
}

/// A client connection holding a permit of its listener's client limit while it lives.
struct ClientIo<I> {
    io: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for ClientIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The front of a shared listener: checks credentials and keeps one [`Session`] per session
/// while any of its connections is open, so that its limits cover all of them.
struct Gate {
    shared: Arc<Shared>,
    key: EgressKey,
    lookup: Arc<dyn SessionLookup>,
    sessions: Mutex<HashMap<String, Held>>,
    /// Cancelled when the listener's loop is dropped: ends every session served through it.
    stop: CancellationToken,
}

/// A session a shared listener serves, and the sandboxes its connections came from.
struct Held {
    session: Arc<Session>,
    sandboxes: HashSet<String>,
}

/// A connection of a shared listener: its session is known from its first request on.
struct GateConnection {
    gate: Arc<Gate>,
    session: Mutex<Option<(Arc<Session>, OwnedSemaphorePermit)>>,
    named: Named,
}

/// The execution a client connection's first request named: a relay names it there only, and
/// the requests that follow on the same connection (keep-alive) are the same execution's.
type Named = Arc<OnceLock<String>>;

impl Gate {
    async fn serve_client<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self: Arc<Self>, io: I) {
        let connection =
            Arc::new(GateConnection { gate: self, session: Mutex::new(None), named: Named::default() });
        serve_connection(io, move |request| connection.clone().handle(request)).await;
    }

    /// The sandbox `request`'s credential names and the session holding it, or the answer for a
    /// client without one.
    async fn authenticate(
        &self,
        request: &Request<Incoming>,
    ) -> Result<(String, Grant), Response<ProxyBody>> {
        let credential = request
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(CREDENTIAL_SCHEME)?.strip_prefix(' '));
        let Some(sandbox) = credential.and_then(|c| self.key.verify(c.trim())) else {
            tracing::warn!("egress proxy: a connection without a valid credential");
            let mut response =
                text(StatusCode::PROXY_AUTHENTICATION_REQUIRED, "egress: no valid credential\n".into());
            response.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sandbox-egress\""),
            );
            return Err(response);
        };
        match self.lookup.session_of(sandbox).await {
            Ok(Some(grant)) => Ok((sandbox.to_owned(), grant)),
            Ok(None) => {
                tracing::warn!(sandbox, "egress proxy: a sandbox no session holds");
                Err(unheld())
            }
            Err(error) => {
                tracing::error!(sandbox, %error, "egress proxy: session lookup failed");
                Err(text(StatusCode::SERVICE_UNAVAILABLE, "egress: session lookup failed\n".into()))
            }
        }
    }

    /// The session of `grant` (the live one, or a new one) with a permit of its client
    /// connections, noting that `sandbox` is one of its; `Err` with the session when it has no
    /// room for another connection.
    ///
    /// Sessions are kept while any client connection or connection to a destination of theirs
    /// is open, so their limits hold across all of them; permits of client connections are
    /// only taken here, under the lock, so a session found idle stays idle while it is dropped.
    fn session(
        &self,
        sandbox: String,
        grant: Grant,
    ) -> Result<(Arc<Session>, OwnedSemaphorePermit), Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("never poisoned");
        if !sessions.contains_key(&grant.session_id) {
            sessions.retain(|_, held| !held.session.idle());
            let session =
                Session::new(self.shared.clone(), &grant.session_id, grant.policy, self.stop.child_token());
            sessions.insert(grant.session_id.clone(), Held { session, sandboxes: HashSet::new() });
        }
        let held = sessions.get_mut(&grant.session_id).expect("just made");
        held.sandboxes.insert(sandbox);
        match held.session.clients.clone().try_acquire_owned() {
            Ok(permit) => Ok((held.session.clone(), permit)),
            Err(_) => Err(held.session.clone()),
        }
    }

    /// Every [`SWEEP_INTERVAL`], asks the lookup again about the sandboxes of the sessions it
    /// serves, and stops a session none of whose sandboxes it holds any more (the session
    /// ended): its connections close, as when a session's own listener stops. A lookup that
    /// fails changes nothing.
    async fn sweep(self: Arc<Self>) -> Infallible {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            let held: Vec<(String, Vec<String>)> = self
                .sessions
                .lock()
                .expect("never poisoned")
                .iter()
                .map(|(id, held)| (id.clone(), held.sandboxes.iter().cloned().collect()))
                .collect();
            for (id, sandboxes) in held {
                for sandbox in sandboxes {
                    match self.lookup.session_of(&sandbox).await {
                        Ok(Some(grant)) if grant.session_id == id => {}
                        Ok(_) => self.release(&id, &sandbox),
                        Err(error) => tracing::warn!(sandbox, %error, "egress proxy: session lookup failed"),
                    }
                }
            }
        }
    }

    /// Notes that session `id` no longer holds `sandbox`; stops the session when it was its last.
    fn release(&self, id: &str, sandbox: &str) {
        let mut sessions = self.sessions.lock().expect("never poisoned");
        let Some(held) = sessions.get_mut(id) else { return };
        held.sandboxes.remove(sandbox);
        if held.sandboxes.is_empty() {
            tracing::info!(session_id = id, "egress proxy: the session ended; its connections close");
            held.session.stop.cancel();
            sessions.remove(id);
        }
    }
}

impl GateConnection {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<ProxyBody> {
        let known = self.session.lock().expect("never poisoned").as_ref().map(|(s, _)| s.clone());
        let session = match known {
            Some(session) if session.stop.is_cancelled() => return close(unheld()),
            Some(session) => session,
            None => match self.gate.authenticate(&request).await {
                Ok((sandbox, grant)) => match self.gate.session(sandbox, grant) {
                    Ok((session, permit)) => {
                        *self.session.lock().expect("never poisoned") = Some((session.clone(), permit));
                        session
                    }
                    // The session's client connections are bounded across all its pods.
                    Err(session) => {
                        return close(refuse(session.attempt(&request, &self.named), Decision::DeniedLimit));
                    }
                },
                Err(response) => return close(response),
            },
        };
        session.handle(request, self.named.clone()).await
    }
}

/// The answer for a sandbox no session holds.
fn unheld() -> Response<ProxyBody> {
    text(StatusCode::FORBIDDEN, "egress: the sandbox serves no session\n".into())
}

/// `response`, closing the connection after it.
fn close(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves HTTP/1.1 on a client connection, each request answered by `handle`.
async fn serve_connection<I, F, R>(io: I, handle: F)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> R + Send + 'static,
    R: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let response = handle(request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_HEAD_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "egress client connection ended");
    }
}

/// Binds a session's Unix socket at `path`, replacing a socket left there by an earlier
/// process, and opens it to every local user (mode 0666): the sandbox's uid must connect. The
/// directory holding it must be writable by the caller alone, so that nobody else can swap the
/// path between the bind and the chmod.
pub fn bind_unix_socket(path: &std::path::Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Accept errors that concern one connection or a passing shortage, not the listener.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// One session's proxy: its identity, policy and limits.
pub(crate) struct Session {
    id: String,
    policy: SessionPolicy,
    shared: Arc<Shared>,
    /// Connections to destinations open at once.
    connections: Arc<Semaphore>,
    /// Client connections open at once.
    clients: Arc<Semaphore>,
    bucket: Option<Arc<TokenBucket>>,
    /// Cancelled when the session's accept loop is dropped: ends every task of the session.
    stop: CancellationToken,
}

/// A connection to a destination, counted against the session's limit while it lives.
pub(crate) struct Upstream {
    pub(crate) io: Metered<TcpStream>,
    pub(crate) traffic: Arc<Traffic>,
    pub(crate) permit: OwnedSemaphorePermit,
}

impl Session {
    /// Runs `task` until it ends or the session stops.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(self.stop.clone().run_until_cancelled_owned(task));
    }

    /// How long a connection to a destination may idle.
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.shared.limits.idle_timeout
    }

    /// A session with its own limits, stopped with `stop`.
    fn new(shared: Arc<Shared>, id: &str, policy: SessionPolicy, stop: CancellationToken) -> Arc<Session> {
        let limits = shared.limits;
        Arc::new(Session {
            id: id.to_owned(),
            policy,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            clients: Arc::new(Semaphore::new(limits.max_connections * CLIENT_CONNECTIONS_PER_CONNECTION)),
            bucket: limits.bandwidth.map(|rate| Arc::new(TokenBucket::new(rate))),
            shared,
            stop,
        })
    }

    /// Whether no connection of the session is open, client or destination.
    fn idle(&self) -> bool {
        let limits = self.shared.limits;
        self.clients.available_permits() == limits.max_connections * CLIENT_CONNECTIONS_PER_CONNECTION
            && self.connections.available_permits() == limits.max_connections
    }

    async fn serve_client<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self: Arc<Self>, io: I) {
        let named = Named::default();
        serve_connection(io, move |request| self.clone().handle(request, named.clone())).await;
    }

    /// The attempt `request` makes, before anything is decided, on a connection whose
    /// execution is `named`.
    fn attempt(&self, request: &Request<Incoming>, named: &Named) -> Attempt {
        let kind = match request.method() == Method::CONNECT {
            true => RequestKind::Connect,
            false => RequestKind::Http,
        };
        // Until the destination is read, the record names the authority as sent, without
        // credentials (never a path or query, which may hold secrets).
        let authority = request.uri().authority().map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""));
        let execution = match execution_id(request.headers()) {
            Some(id) => Some(named.get_or_init(|| id).clone()),
            None => named.get().cloned(),
        };
        Attempt::new(self.shared.reporter.clone(), &self.id, execution, kind, authority)
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>, named: Named) -> Response<ProxyBody> {
        let attempt = self.attempt(&request, &named);
        match request.method() == Method::CONNECT {
            true => tunnel::open(&self, attempt, request).await,
            false => http_forward::forward(&self, attempt, request).await,
        }
    }

    /// Judges `destination` for this session and connects to it: the session's list, the
    /// operator's bound, the connection limit, then resolution, the address rules and the
    /// connection itself, within the connect timeout. A connection decides the attempt as
    /// allowed; a refusal is for the caller to answer (and decide) with [`refuse`].
    pub(crate) async fn open(
        &self,
        attempt: &mut Attempt,
        destination: &Destination,
    ) -> Result<Upstream, Decision> {
        attempt.destination(destination);
        if !self.policy.allows(destination) {
            return Err(Decision::DeniedPolicy(PolicyDenial::NotInAllowList));
        }
        if !self.shared.permitted.permits(destination) {
            return Err(Decision::DeniedPolicy(PolicyDenial::NotPermittedByOperator));
        }
        let permit = self.connections.clone().try_acquire_owned().map_err(|_| Decision::DeniedLimit)?;
        let dialer = Dialer {
            resolver: self.shared.resolver.as_ref(),
            connector: self.shared.connector.as_ref(),
            rules: &self.shared.rules,
        };
        let mut address = None;
        let dialed =
            tokio::time::timeout(self.shared.limits.connect_timeout, dialer.dial(destination, &mut address))
                .await
                .unwrap_or(Err(Decision::Error(Failure::ConnectTimeout)));
        if let Some(address) = address {
            attempt.address(address);
        }
        let stream = dialed?;
        let traffic = Arc::new(Traffic::new());
        attempt.traffic(traffic.clone());
        attempt.decide(Decision::Allowed);
        Ok(Upstream { io: Metered::new(stream, traffic.clone(), self.bucket.clone()), traffic, permit })
    }
}

/// The execution id a relay named, if it looks like one: 1 to 64 ASCII letters, digits, `_`
/// or `-`.
fn execution_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(EXECUTION_HEADER)?.to_str().ok()?;
    let plausible = (1..=MAX_EXECUTION_ID_LEN).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    plausible.then(|| value.to_owned())
}

/// A short plain-text response.
pub(crate) fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Decides `attempt` as refused with `decision` and answers the client so.
pub(crate) fn refuse(mut attempt: Attempt, decision: Decision) -> Response<ProxyBody> {
    attempt.decide(decision);
    text(decision.status(), format!("egress {decision}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_taken_only_when_plausible() {
        let id = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(EXECUTION_HEADER, HeaderValue::from_str(value).unwrap());
            execution_id(&headers)
        };
        assert_eq!(id("exec_abc-123").as_deref(), Some("exec_abc-123"));
        assert_eq!(id(""), None);
        assert_eq!(id("exec abc"), None);
        assert_eq!(id("exec/../x"), None);
        assert_eq!(id(&"a".repeat(65)), None);
        assert_eq!(id(&"a".repeat(64)).map(|s| s.len()), Some(64));
        assert_eq!(execution_id(&HeaderMap::new()), None);
    }
}
