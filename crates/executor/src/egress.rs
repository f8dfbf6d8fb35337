//! Egress from inside a sandbox: the relay on `127.0.0.1:3128` in each execution's network
//! namespace that passes every connection to the session's egress proxy (a Unix socket the
//! control plane mounts into the container), naming the execution in the first request's head,
//! and the environment that points HTTP clients at it.
//!
//! The relay decides nothing: the proxy, outside the sandbox, decides and audits every attempt.
//! Bytes pass untouched in both directions except for one header line,
//! [`EGRESS_EXECUTION_HEADER`], inserted after the request line of a connection's first
//! request when that line reads as HTTP; anything else is forwarded as it came.

use sandbox_protocol::contract::{EGRESS_EXECUTION_HEADER, EGRESS_RELAY_PORT, EGRESS_SOCKET_NAME, valid_id};
use std::borrow::Cow;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

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
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let socket = socket.clone();
                let id = execution.current();
                tokio::spawn(async move {
                    let _ = relay(client, &socket, id.as_deref()).await;
                });
            }
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

/// Relays one connection: its first bytes (up to the end of the request line) with the
/// execution header, then everything else both ways, until both sides have closed.
async fn relay(mut client: TcpStream, socket: &Path, id: Option<&str>) -> io::Result<()> {
    let mut upstream = UnixStream::connect(socket).await?;
    let mut head = Vec::new();
    let first = tokio::select! {
        read = read_request_line(&mut client, &mut head) => {
            read?;
            match id {
                Some(id) => with_execution(&head, id),
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
async fn read_request_line(client: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<()> {
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

/// `head` with the execution header after its request line, when it starts with one; else
/// `head` as it is.
fn with_execution<'a>(head: &'a [u8], id: &str) -> Cow<'a, [u8]> {
    match request_line(head) {
        Line::Request(end) => {
            let header = format!("{EGRESS_EXECUTION_HEADER}: {id}\r\n");
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
