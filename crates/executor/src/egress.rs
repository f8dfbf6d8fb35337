//! Egress from inside a sandbox: the relay on `127.0.0.1:3128` in each execution's network
//! namespace that passes every connection to the session's egress proxy (a Unix socket the
//! control plane mounts into the container), naming the execution in the first request's head,
//! and the environment that points HTTP clients at it.
//!
//! The relay decides nothing: the proxy, outside the sandbox, decides and audits every attempt.
//! Bytes pass untouched in both directions except for one header line,
//! [`EGRESS_EXECUTION_HEADER`], inserted after the request line of a connection's first
//! request when that line reads as HTTP; anything else is forwarded as it came.
//!
//! On Kubernetes the proxy is a service on the network, not a socket the control plane can
//! mount: there the executor serves the socket itself ([`serve_bridge`]) and relays each
//! connection to the proxy over TCP the same way, with this sandbox's credential as the header.

use sandbox_protocol::contract::{
    EGRESS_CREDENTIAL_SCHEME, EGRESS_EXECUTION_HEADER, EGRESS_RELAY_PORT, EGRESS_SOCKET_NAME, valid_id,
};
use std::borrow::Cow;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Where the relay listens inside each execution's network namespace.
pub const RELAY_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), EGRESS_RELAY_PORT);

/// Where a sandbox reads the id of the execution it runs (a file of `/sandbox`, written by the
/// executor before it hands the code over; a context's changes with every cell).
pub const EXECUTION_FILE: &str = "/sandbox/execution";

/// The Node.js preload that makes `fetch` use the proxy variables (Node.js before 24 ignores
/// them), a file of `/sandbox` while egress is on.
pub const NODE_PRELOAD: &str = "/sandbox/egress-proxy.js";

/// The preload's source.
pub const NODE_PRELOAD_SOURCE: &str = include_str!("lang/egress-proxy.js");

/// The longest request line the relay reads before it gives up looking for one and forwards
/// the bytes as they are: the proxy's own limit for a whole request head.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// How long the relay waits after an accept error such as running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The proxy's socket in `dir` (the container's egress directory), if one is there now.
pub fn socket_in(dir: &Path) -> Option<PathBuf> {
    let path = dir.join(EGRESS_SOCKET_NAME);
    let meta = std::fs::metadata(&path).ok()?;
    meta.file_type().is_socket().then_some(path)
}

/// The variables HTTP clients (`curl`, pip, `requests`, `urllib`, git, npm) read to use a
/// relay on `addr`: `HTTP_PROXY`, `HTTPS_PROXY`, their lower-case forms, and `NO_PROXY` (and
/// `no_proxy`) for loopback.
pub fn proxy_variables(addr: SocketAddr) -> Vec<(String, String)> {
    let proxy = format!("http://{addr}");
    let no_proxy = "localhost,127.0.0.1,::1";
    let mut env: Vec<(String, String)> = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
        .into_iter()
        .map(|k| (k.to_owned(), proxy.clone()))
        .collect();
    env.extend(["NO_PROXY", "no_proxy"].map(|k| (k.to_owned(), no_proxy.to_owned())));
    env
}

/// The variables that point user code at the relay: the [`proxy_variables`], and for Node.js
/// `NODE_USE_ENV_PROXY` (read by 24 and later) and the [`NODE_PRELOAD`] (for earlier versions'
/// `fetch`).
pub fn environment() -> Vec<(String, String)> {
    let mut env = proxy_variables(RELAY_ADDR);
    env.extend([
        ("NODE_USE_ENV_PROXY".to_owned(), "1".to_owned()),
        ("NODE_OPTIONS".to_owned(), format!("--require {NODE_PRELOAD}")),
    ]);
    env
}

/// Whose connections the relay serves: the execution id it names in each connection's first
/// request.
#[derive(Debug, Clone)]
pub enum Execution {
    /// This id, or none.
    Fixed(Option<String>),
    /// The id in this file when the connection is accepted (see [`EXECUTION_FILE`]).
    File(PathBuf),
}

impl Execution {
    /// The id now, when it is a valid id.
    fn current(&self) -> Option<String> {
        let id = match self {
            Execution::Fixed(id) => id.clone()?,
            Execution::File(path) => {
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(std::fs::File::open(path).ok()?, 64),
                    &mut text,
                )
                .ok()?;
                text
            }
        };
        valid_id(&id).then_some(id)
    }
}

/// Binds the relay's listener on `addr` (before user code starts, so nothing else can).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Runs the relay on a thread of its own, with a single-threaded runtime, until the process
/// exits. Every descriptor it opens is close-on-exec, so none reaches a program started later.
pub fn spawn_thread(
    listener: std::net::TcpListener,
    socket: PathBuf,
    execution: Execution,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("egress-relay".into()).spawn(move || {
        let error = runtime.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, socket, execution).await,
                Err(e) => e,
            }
        });
        eprintln!("sandbox: the egress relay stopped: {error}");
    })?;
    Ok(())
}

/// Accepts connections on `listener` and relays each to the Unix socket `socket`. Returns only
/// when the listener fails.
pub async fn serve(listener: TcpListener, socket: PathBuf, execution: Execution) -> io::Error {
    accept_loop(
        || async { listener.accept().await.map(|(client, _)| client) },
        |client| {
            let socket = socket.clone();
            let header = execution.current().map(|id| format!("{EGRESS_EXECUTION_HEADER}: {id}\r\n"));
            tokio::spawn(async move {
                let _ = relay(client, UnixStream::connect(&socket).await?, header).await;
                io::Result::Ok(())
            });
        },
    )
    .await
}

/// Binds the egress socket in `dir` (the executor's own directory, bound read-only into each
/// sandbox), replacing one left by an earlier run, open to the sandbox's uid (mode 0666).
pub fn bind_bridge(dir: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(EGRESS_SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// The egress credential in `path` (a mounted Secret), trimmed; it must be one header value's
/// worth of visible ASCII.
pub fn read_credential(path: &Path) -> io::Result<String> {
    let credential = std::fs::read_to_string(path)?.trim().to_owned();
    let valid =
        !credential.is_empty() && credential.len() <= 512 && credential.bytes().all(|b| b.is_ascii_graphic());
    match valid {
        true => Ok(credential),
        false => Err(io::Error::new(io::ErrorKind::InvalidData, "not a credential")),
    }
}

/// Accepts connections on the egress socket `listener` (Kubernetes) and relays each to the
/// proxy at `proxy` over TCP, presenting `credential` as `Proxy-Authorization` in the
/// connection's first request, after its request line (before the relay's execution header and
/// anything the client sent). Returns only when the listener fails.
pub async fn serve_bridge(listener: UnixListener, proxy: SocketAddr, credential: String) -> io::Error {
    let header = format!("Proxy-Authorization: {EGRESS_CREDENTIAL_SCHEME} {credential}\r\n");
    accept_loop(
        || async { listener.accept().await.map(|(client, _)| client) },
        |client| {
            let header = header.clone();
            tokio::spawn(async move {
                let _ = relay(client, TcpStream::connect(proxy).await?, Some(header)).await;
                io::Result::Ok(())
            });
        },
    )
    .await
}

/// Takes connections from `accept` and hands each to `handle` (which spawns), until `accept`
/// fails for good.
async fn accept_loop<S, F: Future<Output = io::Result<S>>>(
    accept: impl Fn() -> F,
    mut handle: impl FnMut(S),
) -> io::Error {
    loop {
        match accept().await {
            Ok(client) => handle(client),
            Err(e) if is_transient(&e) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            Err(e) => return e,
        }
    }
}

/// Accept errors that concern one connection or a passing shortage, not the listener.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// A stream the relay sends connections to.
trait Upstream: AsyncRead + AsyncWrite + Unpin {
    /// Resolves once the stream can be read (or has closed).
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
}

impl Upstream for UnixStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        UnixStream::readable(self)
    }
}

impl Upstream for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        TcpStream::readable(self)
    }
}

/// Relays one connection to `upstream`: its first bytes (up to the end of the request line)
/// with `header` (a whole header line) after the request line, then everything else both ways,
/// until both sides have closed.
async fn relay(
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    mut upstream: impl Upstream,
    header: Option<String>,
) -> io::Result<()> {
    let mut head = Vec::new();
    let first = tokio::select! {
        read = read_request_line(&mut client, &mut head) => {
            read?;
            match &header {
                Some(header) => with_header(&head, header),
                None => Cow::Borrowed(&head[..]),
            }
        }
        // The proxy closed (its head timeout, or it stopped) before the client said anything.
        _ = upstream.readable() => return Ok(()),
    };
    upstream.write_all(&first).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Reads from `client` into `head` until it holds a whole request line, cannot start one, the
/// client stopped sending, or [`MAX_REQUEST_LINE`] bytes came without a line end.
async fn read_request_line(client: &mut (impl AsyncRead + Unpin), head: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    while matches!(request_line(head), Line::Incomplete) && head.len() < MAX_REQUEST_LINE {
        let room = (MAX_REQUEST_LINE - head.len()).min(buf.len());
        let n = client.read(&mut buf[..room]).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// What the start of a connection's bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// A whole HTTP/1 request line, ending (after its `\n`) at this index.
    Request(usize),
    /// The start of one: more bytes are needed.
    Incomplete,
    /// Not an HTTP request line.
    NotHttp,
}

/// Reads `bytes` as the start of `method SP target SP HTTP/d.d CRLF` (or LF).
fn request_line(bytes: &[u8]) -> Line {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let method = bytes.iter().take_while(|b| tchar(b)).count();
    let target = bytes.iter().skip(method + 1).take_while(|b| b.is_ascii_graphic()).count();
    let version = method + 1 + target + 1;
    let parts = [(method, bytes.get(method)), (target, bytes.get(method + 1 + target))];
    for (len, after) in parts {
        match after {
            None => return Line::Incomplete,
            Some(b' ') if len > 0 => {}
            Some(_) => return Line::NotHttp,
        }
    }
    // `HTTP/` digit `.` digit, then CR LF or LF.
    let rest = &bytes[version..];
    for (i, want) in b"HTTP/0.0\r\n".iter().enumerate() {
        let Some(&got) = rest.get(i) else { return Line::Incomplete };
        let fits = match want {
            b'0' => got.is_ascii_digit(),
            b'\r' => got == b'\r' || got == b'\n',
            _ => got == *want,
        };
        if !fits {
            return Line::NotHttp;
        }
        if got == b'\n' {
            return Line::Request(version + i + 1);
        }
    }
    Line::NotHttp
}

/// `head` with the header line `header` after its request line, when it starts with one; else
/// `head` as it is.
fn with_header<'a>(head: &'a [u8], header: &str) -> Cow<'a, [u8]> {
    match request_line(head) {
        Line::Request(end) => {
            let mut out = Vec::with_capacity(head.len() + header.len());
            out.extend_from_slice(&head[..end]);
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(&head[end..]);
            Cow::Owned(out)
        }
        Line::Incomplete | Line::NotHttp => Cow::Borrowed(head),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn request_lines_are_recognised() {
        let line = b"CONNECT pypi.org:443 HTTP/1.1\r\n";
        assert_eq!(request_line(line), Line::Request(line.len()));
        assert_eq!(request_line(b"GET http://a/ HTTP/1.0\nHost: a\n\n"), Line::Request(23));
        for cut in 0..line.len() {
            assert_eq!(request_line(&line[..cut]), Line::Incomplete, "{cut}");
        }
        for bad in [
            &b" GET / HTTP/1.1\r\n"[..],
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1 \r\n",
            b"GET / HTTP/x.1\r\n",
            b"GET / HTTP/1.1\rX",
            b"GET / http/1.1\r\n",
            b"G\x00T / HTTP/1.1\r\n",
            b"GET /\xff HTTP/1.1\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"\r\nGET / HTTP/1.1\r\n",
        ] {
            assert_eq!(request_line(bad), Line::NotHttp, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// [`with_header`] with the execution header naming `id`.
    fn with_execution<'a>(head: &'a [u8], id: &str) -> Cow<'a, [u8]> {
        with_header(head, &format!("{EGRESS_EXECUTION_HEADER}: {id}\r\n"))
    }

    #[test]
    fn the_header_goes_after_the_request_line() {
        let head = b"GET http://t:80/x HTTP/1.1\r\nHost: t\r\n\r\nbody";
        let out = with_execution(head, "exec_1");
        assert_eq!(
            &out[..],
            b"GET http://t:80/x HTTP/1.1\r\nX-Sandbox-Execution: exec_1\r\nHost: t\r\n\r\nbody"
        );
        let connect = b"CONNECT t:443 HTTP/1.1\r\n";
        assert_eq!(
            &with_execution(connect, "e")[..],
            b"CONNECT t:443 HTTP/1.1\r\nX-Sandbox-Execution: e\r\n"
        );
    }

    #[test]
    fn anything_else_passes_unchanged() {
        for bytes in
            [&b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"[..], b"GET / HTTP/1.1", b"hello\n", b""]
        {
            assert!(matches!(with_execution(bytes, "e"), Cow::Borrowed(b) if b == bytes));
        }
    }

    /// A client on loopback, the relay, and a Unix socket standing for the proxy: returns what
    /// the proxy side received once the client closed.
    async fn through_relay(pieces: Vec<Vec<u8>>, execution: Execution) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join(EGRESS_SOCKET_NAME);
        let proxy = tokio::net::UnixListener::bind(&socket).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = tokio::spawn(serve(listener, socket, execution));
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut upstream, _) = proxy.accept().await.unwrap();
        for piece in pieces {
            client.write_all(&piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        upstream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        drop(upstream);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\n", "the answer comes back unchanged");
        relay.abort();
        got
    }

    #[tokio::test]
    async fn a_head_split_anywhere_gets_the_header_once() {
        let head = b"GET http://t/ HTTP/1.1\r\nHost: t\r\n\r\nGET http://t/2 HTTP/1.1\r\n\r\n".to_vec();
        let want = b"GET http://t/ HTTP/1.1\r\nX-Sandbox-Execution: ex-9\r\nHost: t\r\n\r\nGET http://t/2 HTTP/1.1\r\n\r\n";
        for cut in [1, 3, 4, 13, 20, 22, 23, 30] {
            let pieces = vec![head[..cut].to_vec(), head[cut..].to_vec()];
            let got = through_relay(pieces, Execution::Fixed(Some("ex-9".into()))).await;
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn an_oversized_line_or_garbage_passes_unchanged() {
        let long =
            [b"GET http://t/".to_vec(), vec![b'a'; MAX_REQUEST_LINE + 10], b" HTTP/1.1\r\n\r\n".to_vec()];
        let long = long.concat();
        let got = through_relay(vec![long.clone()], Execution::Fixed(Some("e".into()))).await;
        assert_eq!(got, long);
        let garbage: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let got = through_relay(vec![garbage.clone()], Execution::Fixed(Some("e".into()))).await;
        assert_eq!(got, garbage);
    }

    #[tokio::test]
    async fn the_id_comes_from_the_file_when_valid() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("execution");
        let head = b"CONNECT t:443 HTTP/1.1\r\n\r\n".to_vec();
        let got = through_relay(vec![head.clone()], Execution::File(file.clone())).await;
        assert_eq!(got, head, "no file: no header");
        std::fs::write(&file, "cell_2").unwrap();
        let got = through_relay(vec![head.clone()], Execution::File(file.clone())).await;
        assert_eq!(got, b"CONNECT t:443 HTTP/1.1\r\nX-Sandbox-Execution: cell_2\r\n\r\n");
        std::fs::write(&file, "a b\r\nEvil: 1").unwrap();
        let got = through_relay(vec![head.clone()], Execution::File(file)).await;
        assert_eq!(got, head, "an invalid id is not sent");
    }

    #[tokio::test]
    async fn the_bridge_adds_the_credential_first_and_reaches_the_proxy_over_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let bridge =
            tokio::spawn(serve_bridge(bind_bridge(dir.path()).unwrap(), proxy_addr, "sbx-a.00ff".into()));
        let mode = std::fs::metadata(dir.path().join(EGRESS_SOCKET_NAME)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o666);
        // The relay of an execution, in front of the bridge's socket, as inside a sandbox.
        let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay_listener.local_addr().unwrap();
        let socket = dir.path().join(EGRESS_SOCKET_NAME);
        let relay = tokio::spawn(serve(relay_listener, socket, Execution::Fixed(Some("ex-1".into()))));

        let mut client = TcpStream::connect(relay_addr).await.unwrap();
        client
            .write_all(b"CONNECT t:443 HTTP/1.1\r\nProxy-Authorization: Bearer mine\r\n\r\n")
            .await
            .unwrap();
        let (mut upstream, _) = proxy.accept().await.unwrap();
        let want = b"CONNECT t:443 HTTP/1.1\r\nProxy-Authorization: Bearer sbx-a.00ff\r\n\
                     X-Sandbox-Execution: ex-1\r\nProxy-Authorization: Bearer mine\r\n\r\n";
        let mut got = vec![0; want.len()];
        upstream.read_exact(&mut got).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
        upstream.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.unwrap();
        let mut answer = [0; 39];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200 Connection Established\r\n\r\n");

        // Bytes after the first line pass untouched; a second connection gets the credential too.
        client.write_all(b"\x16\x03\x01").await.unwrap();
        let mut tls = [0; 3];
        upstream.read_exact(&mut tls).await.unwrap();
        assert_eq!(&tls, b"\x16\x03\x01");
        let mut second = UnixStream::connect(dir.path().join(EGRESS_SOCKET_NAME)).await.unwrap();
        second.write_all(b"GET http://t/ HTTP/1.1\r\n\r\n").await.unwrap();
        second.shutdown().await.unwrap();
        let (mut upstream, _) = proxy.accept().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"GET http://t/ HTTP/1.1\r\nProxy-Authorization: Bearer sbx-a.00ff\r\n\r\n");
        bridge.abort();
        relay.abort();
    }

    /// The sandbox `sbx-a` held by session `sess_a`, allowed `web.test` on `port`.
    struct OneSandbox(u16);

    #[async_trait::async_trait]
    impl sandbox_egress::SessionLookup for OneSandbox {
        async fn session_of(
            &self,
            sandbox: &str,
        ) -> Result<Option<sandbox_egress::Grant>, sandbox_egress::LookupError> {
            let request = sandbox_egress::NetworkRequest {
                mode: sandbox_egress::Mode::Allowlist,
                allow: vec![format!("web.test:{}", self.0)],
            };
            let policy = sandbox_egress::SessionPolicy::parse(&request).unwrap();
            Ok((sandbox == "sbx-a").then(|| sandbox_egress::Grant { session_id: "sess_a".into(), policy }))
        }
    }

    /// The whole path inside a pod, on loopback: a client of an execution's relay, the relay,
    /// the bridge on the egress socket, the shared proxy over TCP, a web server. The proxy
    /// takes the bridge's credential, not one the client sends.
    #[tokio::test]
    async fn relay_bridge_and_shared_proxy_together() {
        let web = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web_port = web.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = web.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(stream.read_u8().await.unwrap());
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let settings = sandbox_egress::EgressSettings {
            permitted: vec!["*.test:*".parse().unwrap()],
            allowed_addresses: vec!["127.0.0.1".parse().unwrap()],
            hosts: [("web.test".to_owned(), vec!["127.0.0.1".parse().unwrap()])].into(),
            ..Default::default()
        };
        let audit = Arc::new(sandbox_egress::MemorySink::new());
        let proxy = sandbox_egress::Proxy::builder(settings, audit.clone()).build().unwrap();
        let key = sandbox_egress::EgressKey::new(&[3; 32]).unwrap();
        let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy_listener.local_addr().unwrap();
        let served =
            tokio::spawn(proxy.serve_shared(proxy_listener, key.clone(), Arc::new(OneSandbox(web_port))));

        let dir = tempfile::tempdir().unwrap();
        let bridge =
            tokio::spawn(serve_bridge(bind_bridge(dir.path()).unwrap(), proxy_addr, key.credential("sbx-a")));
        let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay_listener.local_addr().unwrap();
        let socket = dir.path().join(EGRESS_SOCKET_NAME);
        let relay = tokio::spawn(serve(relay_listener, socket, Execution::Fixed(Some("exec_k".into()))));

        let mut client = TcpStream::connect(relay_addr).await.unwrap();
        let other = key.credential("sbx-b");
        let ask = format!(
            "GET http://web.test:{web_port}/x HTTP/1.1\r\nHost: web.test\r\nProxy-Authorization: Bearer {other}\r\nConnection: close\r\n\r\n"
        );
        client.write_all(ask.as_bytes()).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi\n"), "{answer}");
        let forwarded = server.await.unwrap().to_ascii_lowercase();
        assert!(
            !forwarded.contains("proxy-authorization") && !forwarded.contains("x-sandbox-execution"),
            "{forwarded}"
        );
        let record = audit.wait_for(1).await.swap_remove(0);
        assert_eq!((record.session_id.as_str(), record.execution_id.as_deref()), ("sess_a", Some("exec_k")));
        assert_eq!(record.decision, sandbox_egress::Decision::Allowed);
        for task in [bridge, relay, served] {
            task.abort();
        }
    }

    #[test]
    fn credentials_are_read_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egress");
        std::fs::write(&path, "sbx-a.00ff\n").unwrap();
        assert_eq!(read_credential(&path).unwrap(), "sbx-a.00ff");
        for bad in ["", "\n", "a b", "a\r\nEvil: 1"] {
            std::fs::write(&path, bad).unwrap();
            assert!(read_credential(&path).is_err(), "{bad:?}");
        }
        assert!(read_credential(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_environment_points_at_the_relay() {
        let env = environment();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
        assert_eq!(get("http_proxy"), Some("http://127.0.0.1:3128"));
        assert_eq!(get("no_proxy"), Some("localhost,127.0.0.1,::1"));
        assert_eq!(get("NODE_OPTIONS"), Some("--require /sandbox/egress-proxy.js"));
    }

    #[test]
    fn only_a_socket_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(socket_in(dir.path()), None);
        std::fs::write(dir.path().join(EGRESS_SOCKET_NAME), "").unwrap();
        assert_eq!(socket_in(dir.path()), None, "a plain file is not the proxy");
        std::fs::remove_file(dir.path().join(EGRESS_SOCKET_NAME)).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(dir.path().join(EGRESS_SOCKET_NAME)).unwrap();
        assert_eq!(socket_in(dir.path()), Some(dir.path().join(EGRESS_SOCKET_NAME)));
    }
}
