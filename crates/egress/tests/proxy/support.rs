//! What the proxy's tests share: a proxy with a name table and a connector that refuses any
//! address outside 127.0.0.0/8, test servers (HTTP and TLS) on 127.0.0.1 that count the bytes
//! they exchange, and raw clients.

use sandbox_egress::{
    Connector, Decision, DecisionKind, EgressMetrics, EgressSettings, MemorySink, Mode, NetworkRequest,
    Proxy, SessionPolicy, StaticResolver,
};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// How long any single step of a test may take before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// The loopback address every test server listens on.
pub const LOOPBACK: &str = "127.0.0.1";

/// Runs `future`, failing the test if it takes longer than [`STEP`].
pub async fn step<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future).await.unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// Settings that permit any `*.test` name on any port and make 127.0.0.1 reachable.
pub fn loopback_settings() -> EgressSettings {
    settings(&["*.test:*"], &[LOOPBACK])
}

/// Settings with these permitted patterns and allowed addresses, other settings at their
/// defaults.
pub fn settings(permitted: &[&str], allowed_addresses: &[&str]) -> EgressSettings {
    EgressSettings {
        permitted: permitted.iter().map(|p| p.parse().unwrap()).collect(),
        allowed_addresses: allowed_addresses.iter().map(|a| a.parse().unwrap()).collect(),
        ..EgressSettings::default()
    }
}

/// An allow-list policy, not checked against any operator bound.
pub fn allowlist(entries: &[String]) -> SessionPolicy {
    SessionPolicy::parse(&NetworkRequest { mode: Mode::Allowlist, allow: entries.to_vec() }).unwrap()
}

/// Connects only inside 127.0.0.0/8, and records every address it is asked for; anything else
/// is refused without opening a socket. With `hang`, it never connects at all.
#[derive(Default)]
pub struct LoopbackOnly {
    asked: Mutex<Vec<SocketAddr>>,
    hang: bool,
}

impl LoopbackOnly {
    /// A connector that never completes a connection.
    pub fn hanging() -> LoopbackOnly {
        LoopbackOnly { hang: true, ..LoopbackOnly::default() }
    }

    /// Every address the proxy asked for, in order.
    pub fn asked(&self) -> Vec<SocketAddr> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Connector for LoopbackOnly {
    async fn connect(&self, address: SocketAddr) -> io::Result<TcpStream> {
        self.asked.lock().unwrap().push(address);
        if !address.ip().is_loopback() {
            return Err(io::Error::other(format!("the test connector refuses {address}")));
        }
        if self.hang {
            std::future::pending::<()>().await;
        }
        TcpStream::connect(address).await
    }
}

/// Counts decisions by kind and the bytes of finished connections.
#[derive(Default)]
pub struct Counters {
    decided: Mutex<HashMap<&'static str, u64>>,
    bytes: AtomicU64,
}

impl Counters {
    /// How many attempts were decided as `kind`.
    pub fn decided(&self, kind: DecisionKind) -> u64 {
        self.decided.lock().unwrap().get(kind.as_str()).copied().unwrap_or(0)
    }

    /// Bytes moved by finished connections, both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl EgressMetrics for Counters {
    fn decided(&self, decision: &Decision) {
        *self.decided.lock().unwrap().entry(decision.kind().as_str()).or_default() += 1;
    }

    fn transferred(&self, bytes_up: u64, bytes_down: u64) {
        self.bytes.fetch_add(bytes_up + bytes_down, Ordering::Relaxed);
    }
}

/// A proxy wired to a static name table, a [`LoopbackOnly`] connector, a memory audit sink and
/// [`Counters`].
pub struct Harness {
    pub proxy: Proxy,
    pub resolver: Arc<StaticResolver>,
    pub connector: Arc<LoopbackOnly>,
    pub audit: Arc<MemorySink>,
    pub counters: Arc<Counters>,
}

impl Harness {
    pub fn new(settings: EgressSettings) -> Harness {
        Harness::with_connector(settings, LoopbackOnly::default())
    }

    /// A harness whose name table maps `web.test` and `tls.test` to 127.0.0.1.
    pub fn with_connector(settings: EgressSettings, connector: LoopbackOnly) -> Harness {
        let resolver = Arc::new(StaticResolver::new());
        let connector = Arc::new(connector);
        let audit = Arc::new(MemorySink::new());
        let counters = Arc::new(Counters::default());
        let proxy = Proxy::builder(settings, audit.clone())
            .resolver(resolver.clone())
            .connector(connector.clone())
            .metrics(counters.clone())
            .build()
            .unwrap();
        let harness = Harness { proxy, resolver, connector, audit, counters };
        harness.map("web.test", &[LOOPBACK]);
        harness.map("tls.test", &[LOOPBACK]);
        harness
    }

    /// Maps `name` to these addresses.
    pub fn map(&self, name: &str, addresses: &[&str]) {
        self.resolver.insert(name, addresses.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect());
    }

    /// Serves session `id` on a fresh TCP listener on 127.0.0.1; stops when the result drops.
    pub async fn serve(&self, id: &str, policy: SessionPolicy) -> Served {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(self.proxy.serve_session(id, policy, listener));
        Served { address, _task: AbortOnDrop(task) }
    }

    /// Waits for the `count`th audit record and returns it.
    pub async fn record(&self, count: usize) -> sandbox_egress::AuditRecord {
        step("the audit record", self.audit.wait_for(count)).await.swap_remove(count - 1)
    }
}

/// A harness with `settings`, an HTTP test server, and the session `sess_web` allowed
/// `web.test` on the server's port.
pub async fn web_with(settings: EgressSettings) -> (Harness, TestServer, Served) {
    let harness = Harness::new(settings);
    let server = TestServer::http().await;
    let served = harness.serve("sess_web", allowlist(&[server.at("web.test")])).await;
    (harness, server, served)
}

/// [`web_with`] the [`loopback_settings`].
pub async fn web() -> (Harness, TestServer, Served) {
    web_with(loopback_settings()).await
}

/// A session's proxy being served; dropping it stops the session.
pub struct Served {
    pub address: SocketAddr,
    _task: AbortOnDrop<io::Error>,
}

/// Aborts a task when dropped.
pub struct AbortOnDrop<T = ()>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request a test server answered, with the exact bytes it read and wrote on the TCP
/// connection (under TLS, for the TLS server).
#[derive(Debug)]
pub struct Exchange {
    pub request: String,
    pub received: u64,
    pub sent: u64,
}

/// A test server on 127.0.0.1. `GET /bytes/N` answers N bytes of `x`, `/forever` streams until
/// the client goes, anything else answers `hello\n`; every response also carries a
/// `Keep-Alive` and a `Proxy-Authenticate` header a proxy must not pass on.
pub struct TestServer {
    pub port: u16,
    exchanges: mpsc::UnboundedReceiver<Exchange>,
    _task: AbortOnDrop,
}

impl TestServer {
    /// A plain HTTP server.
    pub async fn http() -> TestServer {
        TestServer::start(None).await
    }

    /// An HTTPS server with a self-signed certificate for `name`; returns the certificate too.
    pub async fn tls(name: &str) -> (TestServer, CertificateDer<'static>) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let cert = certified.cert.der().clone();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        (TestServer::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await, cert)
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, exchanges) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (sender, tls) = (sender.clone(), tls.clone());
                tokio::spawn(async move {
                    let counted = Counted::new(stream);
                    let (received, sent) = (counted.received.clone(), counted.sent.clone());
                    let request = match tls {
                        Some(acceptor) => match acceptor.accept(counted).await {
                            Ok(stream) => answer(stream).await,
                            Err(_) => return,
                        },
                        None => answer(counted).await,
                    };
                    let _ = sender.send(Exchange {
                        request,
                        received: received.load(Ordering::Relaxed),
                        sent: sent.load(Ordering::Relaxed),
                    });
                });
            }
        });
        TestServer { port, exchanges, _task: AbortOnDrop(task) }
    }

    /// `name:port` for this server.
    pub fn at(&self, name: &str) -> String {
        format!("{name}:{}", self.port)
    }

    /// The next request the server finished with.
    pub async fn exchange(&mut self) -> Exchange {
        step("the server's exchange", self.exchanges.recv()).await.unwrap()
    }
}

/// The response head a test server sends for a body of `length` bytes.
pub fn response_head(length: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Authenticate: Basic realm=x\r\nConnection: close\r\n\r\n"
    )
}

/// Reads one request, answers it, closes, and reads whatever else the client sends; returns
/// the request as text.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> String {
    let Ok(head) = read_head(&mut stream).await else { return String::new() };
    let mut body = vec![0; content_length(&head)];
    if stream.read_exact(&mut body).await.is_err() {
        return head;
    }
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or_default().to_owned();
    if path == "/forever" {
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        let chunk = vec![b'x'; 64 * 1024];
        if stream.write_all(head.as_bytes()).await.is_ok() {
            while stream.write_all(&chunk).await.is_ok() {}
        }
    } else {
        let body = match path.strip_prefix("/bytes/") {
            Some(n) => vec![b'x'; n.parse().unwrap()],
            None => b"hello\n".to_vec(),
        };
        let _ = stream.write_all(response_head(body.len()).as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout(STEP, tokio::io::copy(&mut stream, &mut tokio::io::sink())).await;
    }
    head + &String::from_utf8_lossy(&body)
}

/// Reads up to and including the blank line that ends an HTTP head.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The `Content-Length` of a head, or 0.
pub fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, value)| value.trim().parse().unwrap())
}

/// The status code of a response head.
pub fn status(head: &str) -> u16 {
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// A stream that counts the bytes read from and written to it.
struct Counted<S> {
    inner: S,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Counted<S> {
        Counted { inner, received: Arc::default(), sent: Arc::default() }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.received.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = polled {
            this.sent.fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The crypto provider of both ends of the TLS tests.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client that trusts `cert` alone.
pub fn tls_client(cert: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The server name for a TLS client.
pub fn server_name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

/// What the proxy answered a CONNECT with.
pub enum Connected<S> {
    /// 200: the stream is now the tunnel.
    Tunnel(S),
    /// Anything else, with the response's body.
    Refused(u16, String),
}

impl<S> Connected<S> {
    /// The tunnel, or a test failure naming the refusal.
    pub fn tunnel(self) -> S {
        match self {
            Connected::Tunnel(stream) => stream,
            Connected::Refused(status, body) => panic!("refused with {status}: {body}"),
        }
    }

    /// The refusal's status and body, or a test failure if the tunnel opened.
    pub fn refused(self) -> (u16, String) {
        match self {
            Connected::Tunnel(_) => panic!("the tunnel opened"),
            Connected::Refused(status, body) => (status, body),
        }
    }
}

/// Sends `CONNECT target` with `headers` on `stream` (a connection to a proxy).
pub async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &str,
    headers: &[(&str, &str)],
) -> Connected<S> {
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n");
    step("CONNECT", async {
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await.unwrap();
        match status(&head) {
            200 => Connected::Tunnel(stream),
            code => {
                let mut body = vec![0; content_length(&head)];
                stream.read_exact(&mut body).await.unwrap();
                Connected::Refused(code, String::from_utf8(body).unwrap())
            }
        }
    })
    .await
}

/// Sends `CONNECT target` to the proxy at `proxy`.
pub async fn connect(proxy: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Connected<TcpStream> {
    connect_over(TcpStream::connect(proxy).await.unwrap(), target, headers).await
}

/// Sends `request` as it is on a new connection to the proxy and reads the whole response:
/// its head and body.
pub async fn raw_request(proxy: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

/// `GET path` with `Connection: close` on a tunnel (or any stream), read to its end.
pub async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> (String, Vec<u8>) {
    stream.write_all(get_request(host, path).as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

/// Reads a response to its end: the head, and the body as far as the connection goes.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> (String, Vec<u8>) {
    step("the response", async {
        let head = read_head(stream).await.unwrap();
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await.unwrap();
        (head, body)
    })
    .await
}

/// The exact request [`get_over`] sends.
pub fn get_request(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}
