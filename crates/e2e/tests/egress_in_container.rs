//! Egress from real, hardened sandbox containers: the egress proxy (`sandbox-egress`) served
//! on a Unix socket in a host directory mounted at `/run/sandbox-egress`, as the control plane
//! does, and user code reaching a test server on the host's 127.0.0.1 through the relay in its
//! execution's network namespace, by a name the proxy's static table maps to loopback. The
//! container itself has no network: the socket is the only way out.
//!
//! Every byte stays on 127.0.0.1 and Unix sockets: names are mapped to loopback only, the
//! proxy's connector refuses anything else without opening a socket, and the "no way out"
//! checks aim at loopback ports (the sandbox's own loopback is not the host's).

use sandbox_core::{CpuQuantity, MemoryQuantity};
use sandbox_core::{ExecutionStatus, Language};
use sandbox_e2e::pypi::TestIndex;
use sandbox_e2e::{TestSandbox, exec_request, image};
use sandbox_egress::{
    Connector, Decision, EgressSettings, MemorySink, Mode, NetworkRequest, PolicyDenial, Proxy, RequestKind,
    StaticResolver,
};
use sandbox_protocol::contract::DEFAULT_SANDBOX_UID;
use sandbox_protocol::contract::{EGRESS_DIR, EGRESS_EXECUTION_HEADER, EGRESS_SOCKET_NAME};
use sandbox_protocol::{ContextRequest, ExecResult, ProcessEvent, ProcessRequest};
use sandbox_runtime::docker::{DockerConfig, DockerRuntime};
use sandbox_runtime::{InstallerSpec, Runtime};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// The name on the session's allow-list; the proxy's table maps it to the test server.
const ALLOWED: &str = "egress.test";
/// A name the table also maps to the test server, but not on the allow-list.
const OTHER: &str = "other.test";
/// The package index's name, for installs.
const INDEX: &str = "pypi.test";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One exchange the test server had: the request's path and the bytes each way.
#[derive(Debug, Clone)]
struct Exchange {
    path: String,
    bytes_in: u64,
    bytes_out: u64,
}

/// An HTTP/1.1 server on the host's 127.0.0.1 that answers every request with `hello <path>`
/// and closes, counting the bytes it read and wrote.
struct TestServer {
    port: u16,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let seen = exchanges.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    if let Ok(exchange) = answer(stream).await {
                        seen.lock().unwrap().push(exchange);
                    }
                });
            }
        });
        TestServer { port, exchanges, task }
    }

    fn exchange(&self, path: &str) -> Option<Exchange> {
        self.exchanges.lock().unwrap().iter().find(|e| e.path == path).cloned()
    }

    fn count(&self) -> usize {
        self.exchanges.lock().unwrap().len()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(mut stream: TcpStream) -> io::Result<Exchange> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let body = format!("hello {path}");
    let response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(Exchange { path, bytes_in: head.len() as u64, bytes_out: response.len() as u64 })
}

/// Connects inside 127.0.0.0/8 only; anything else is refused without opening a socket.
struct LoopbackOnly;

#[async_trait::async_trait]
impl Connector for LoopbackOnly {
    async fn connect(&self, address: SocketAddr) -> io::Result<TcpStream> {
        if !address.ip().is_loopback() {
            return Err(io::Error::other(format!("the test connector refuses {address}")));
        }
        TcpStream::connect(address).await
    }
}

/// The host side of a sandbox's egress: the directory mounted at `/run/sandbox-egress`, and,
/// once [`serve`](Self::serve) is called, the proxy on its socket for one session allowed to
/// reach [`ALLOWED`] on the test server's port.
struct Egress {
    dir: tempfile::TempDir,
    server: TestServer,
    audit: Arc<MemorySink>,
    proxy: Option<JoinHandle<io::Error>>,
}

impl Egress {
    async fn new() -> Egress {
        let dir = tempfile::Builder::new().prefix("sandbox-egress-").tempdir().unwrap();
        // The sandbox's uid must reach the socket inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Egress { dir, server: TestServer::start().await, audit: Arc::new(MemorySink::new()), proxy: None }
    }

    /// The bind that mounts the directory read-only where the executor looks for it.
    fn bind(&self) -> String {
        format!("{}:{EGRESS_DIR}:ro", self.dir.path().display())
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join(EGRESS_SOCKET_NAME)
    }

    /// Serves the proxy on the directory's socket for a session allowed to reach [`ALLOWED`] on
    /// the test server's port.
    fn serve(&mut self) {
        self.serve_allowing(vec![format!("{ALLOWED}:{}", self.server.port)]);
    }

    /// Serves the proxy on the directory's socket, mode 0666, as the control plane does, for a
    /// session allowed to reach `allow`.
    fn serve_allowing(&mut self, allow: Vec<String>) {
        let settings = EgressSettings {
            permitted: vec!["*.test:*".parse().unwrap()],
            allowed_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..EgressSettings::default()
        };
        let resolver = Arc::new(StaticResolver::new());
        resolver.insert(ALLOWED, vec![LOOPBACK]);
        resolver.insert(OTHER, vec![LOOPBACK]);
        resolver.insert(INDEX, vec![LOOPBACK]);
        let proxy = Proxy::builder(settings.clone(), self.audit.clone())
            .resolver(resolver)
            .connector(Arc::new(LoopbackOnly))
            .build()
            .unwrap();
        let request = NetworkRequest { mode: Mode::Allowlist, allow };
        let policy = settings.permitted().validate(&request).unwrap();
        let listener = tokio::net::UnixListener::bind(self.socket()).unwrap();
        std::fs::set_permissions(self.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
        self.proxy = Some(tokio::spawn(proxy.serve_session("sess-egress", policy, listener)));
    }

    /// The audit record of a `kind` request to `host` by `execution`, waiting for it (a record
    /// comes when its connection closes).
    async fn record(&self, host: &str, kind: RequestKind, execution: &str) -> sandbox_egress::AuditRecord {
        self.record_by(host, kind, Some(execution)).await
    }

    async fn record_by(
        &self,
        host: &str,
        kind: RequestKind,
        execution: Option<&str>,
    ) -> sandbox_egress::AuditRecord {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .audit
                .records()
                .into_iter()
                .find(|r| r.host == host && r.kind == kind && r.execution_id.as_deref() == execution);
            if let Some(r) = found {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind:?} record for {host} by {execution:?}: {:?}",
                self.audit.records()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            p.abort();
        }
    }
}

/// A sandbox of `template` with `egress`'s directory mounted, and `settings` for its executor.
async fn sandbox(template: &str, egress: &Egress, settings: &[(&str, &str)]) -> TestSandbox {
    let bind = egress.bind();
    let env: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TestSandbox::start_with(
        template,
        |spec| spec.executor_env.extend(env),
        |body| body.host_config.get_or_insert_default().binds.get_or_insert_default().push(bind),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot start a {template} sandbox: {e}"))
}

/// Runs Python `code` that prints one JSON object, and returns it.
async fn python(sb: &TestSandbox, code: &str) -> (String, serde_json::Value) {
    let req = exec_request(Language::Python, code, 60);
    let r = sb.executor.execute(&req).await.unwrap();
    (req.execution_id, json_out(&r))
}

fn json_out(r: &ExecResult) -> serde_json::Value {
    assert_eq!(r.status, ExecutionStatus::Completed, "stdout: {} stderr: {}", r.stdout, r.stderr);
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {:?} / {}", r.stdout, r.stderr))
}

/// Python that fetches `http://<name>:<port><path>` through the proxy variables and prints
/// `{"status", "body"}`; it refuses to run without `HTTP_PROXY` (urllib would otherwise look
/// the name up itself).
fn fetch_py(name: &str, port: u16, path: &str) -> String {
    format!(
        r#"
import json, os, urllib.request, urllib.error
assert os.environ.get("HTTP_PROXY") == "http://127.0.0.1:3128", os.environ.get("HTTP_PROXY")
try:
    r = urllib.request.urlopen("http://{name}:{port}{path}", timeout=30)
    print(json.dumps({{"status": r.status, "body": r.read().decode()}}))
except urllib.error.HTTPError as e:
    print(json.dumps({{"status": e.code, "body": e.read().decode()}}))
"#
    )
}

#[test]
fn the_relay_names_executions_with_the_header_the_proxy_reads() {
    assert!(EGRESS_EXECUTION_HEADER.eq_ignore_ascii_case(sandbox_egress::EXECUTION_HEADER));
}

#[tokio::test]
async fn python_reaches_what_the_list_allows_and_nothing_else() {
    let mut egress = Egress::new().await;
    egress.serve();
    let sb = sandbox("python-basic", &egress, &[]).await;
    let port = egress.server.port;
    let udp = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let udp_port = udp.local_addr().unwrap().port();

    // Plain HTTP through HTTP_PROXY, audited with the execution's id and exact byte counts.
    let (id, out) = python(&sb, &fetch_py(ALLOWED, port, "/hello")).await;
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "hello /hello");
    let record = egress.record(ALLOWED, RequestKind::Http, &id).await;
    assert_eq!(record.decision, Decision::Allowed);
    assert_eq!((record.port, record.address), (Some(port), Some(LOOPBACK)));
    let exchange = egress.server.exchange("/hello").expect("the server saw the request");
    assert_eq!((record.bytes_up, record.bytes_down), (exchange.bytes_in, exchange.bytes_out));

    // A CONNECT tunnel to the relay by hand.
    let tunnel = format!(
        r#"
import http.client, json
c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=30)
c.set_tunnel("{ALLOWED}", {port})
c.request("GET", "/tunnel")
r = c.getresponse()
print(json.dumps({{"status": r.status, "body": r.read().decode()}}))
"#
    );
    let (id, out) = python(&sb, &tunnel).await;
    assert_eq!((out["status"].as_u64(), out["body"].as_str()), (Some(200), Some("hello /tunnel")));
    let record = egress.record(ALLOWED, RequestKind::Connect, &id).await;
    let exchange = egress.server.exchange("/tunnel").unwrap();
    assert_eq!((record.bytes_up, record.bytes_down), (exchange.bytes_in, exchange.bytes_out));

    // A name the list does not hold: 403 from the proxy, which never connects.
    let before = egress.server.count();
    let (id, out) = python(&sb, &fetch_py(OTHER, port, "/other")).await;
    assert_eq!(out["status"], 403, "{out}");
    let record = egress.record(OTHER, RequestKind::Http, &id).await;
    assert_eq!(record.decision, Decision::DeniedPolicy(PolicyDenial::NotInAllowList));
    assert_eq!((record.bytes_up, record.bytes_down, record.address), (0, 0, None));

    // No other way out: the host's loopback is not the sandbox's, and no DNS server answers.
    let direct = format!(
        r#"
import json, os, socket
out = {{}}
links = []
for f in os.listdir("/proc/self/fd"):
    try:
        links.append(os.readlink("/proc/self/fd/" + f))
    except FileNotFoundError:  # the listing's own descriptor
        pass
out["inherited_sockets"] = [l for l in links if l.startswith("socket:")]
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", {port}))
    out["tcp"] = "connected"
except OSError as e:
    out["tcp"] = type(e).__name__
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"ping", ("127.0.0.1", {udp_port}))
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.settimeout(2)
d.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06egress\x04test\x00\x00\x01\x00\x01", ("127.0.0.1", 53))
try:
    d.recvfrom(512)
    out["dns"] = "answered"
except OSError as e:
    out["dns"] = type(e).__name__
print(json.dumps(out))
"#
    );
    let (_, out) = python(&sb, &direct).await;
    assert_eq!(
        out["inherited_sockets"],
        serde_json::json!([]),
        "the relay's descriptors stay in the supervisor"
    );
    assert_eq!(out["tcp"], "ConnectionRefusedError", "{out}");
    assert!(["ConnectionRefusedError", "TimeoutError"].contains(&out["dns"].as_str().unwrap()), "{out}");
    let mut buf = [0u8; 16];
    let got = tokio::time::timeout(Duration::from_secs(1), udp.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the host's UDP socket got a datagram from the sandbox");
    assert_eq!(egress.server.count(), before, "the server saw no connection but the proxy's");
}

#[tokio::test]
async fn without_the_socket_nothing_changes_until_it_appears() {
    let mut egress = Egress::new().await;
    // A pooled sandbox: a Python interpreter waits, started while there was no socket.
    let sb = sandbox("python-basic", &egress, &[("SANDBOX_EXECUTOR_PRESTART", "python")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sb.executor.spares().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no spare started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = r#"
import json, os, socket
s = socket.socket()
try:
    s.connect(("127.0.0.1", 3128))
    relay = "open"
except OSError as e:
    relay = type(e).__name__
names = [k for k in os.environ if "proxy" in k.lower()]
print(json.dumps({"relay": relay, "variables": names, "mounted": os.path.exists("/run/sandbox-egress")}))
"#;
    let (_, out) = python(&sb, probe).await;
    assert_eq!(
        out,
        serde_json::json!({"relay": "ConnectionRefusedError", "variables": [], "mounted": false})
    );

    // The session starts: the socket appears, and the next execution has the relay (the spare
    // started without one is not used).
    egress.serve();
    let (id, out) = python(&sb, &fetch_py(ALLOWED, egress.server.port, "/late")).await;
    assert_eq!(out["body"], "hello /late");
    assert_eq!(egress.record(ALLOWED, RequestKind::Http, &id).await.decision, Decision::Allowed);

    // The session ends: the socket goes, and so do the relay and the variables.
    drop(egress.proxy.take());
    std::fs::remove_file(egress.socket()).unwrap();
    let (_, out) = python(&sb, probe).await;
    assert_eq!(
        out,
        serde_json::json!({"relay": "ConnectionRefusedError", "variables": [], "mounted": false})
    );
}

#[tokio::test]
async fn contexts_and_processes_get_the_relay() {
    let mut egress = Egress::new().await;
    egress.serve();
    let sb = sandbox("python-basic", &egress, &[]).await;
    let port = egress.server.port;

    let ctx = ContextRequest {
        context_id: "ctx-egress".into(),
        language: Language::Python,
        cwd: None,
        env: Default::default(),
    };
    sb.executor.create_context(&ctx).await.unwrap();
    for cell in ["/cell-1", "/cell-2"] {
        let req = exec_request(Language::Python, &fetch_py(ALLOWED, port, cell), 60);
        let r = sb.executor.execute_in("ctx-egress", &req).await.unwrap();
        assert_eq!(json_out(&r)["body"], format!("hello {cell}"));
        // Each cell's connections carry that cell's execution id.
        egress.record(ALLOWED, RequestKind::Http, &req.execution_id).await;
    }

    let process = ProcessRequest {
        cmd: "python3".into(),
        args: vec!["-c".into(), fetch_py(ALLOWED, port, "/process")],
        ..Default::default()
    };
    let mut events = sb.executor.start_process(&process).await.unwrap();
    let (mut pid, mut stdout) = (None, Vec::new());
    while let Some(ev) = futures_util::StreamExt::next(&mut events).await {
        match ev.unwrap() {
            ProcessEvent::Start { pid: p } => pid = Some(p),
            ProcessEvent::Stdout { data } => stdout.extend_from_slice(&data),
            ProcessEvent::End(end) => {
                assert_eq!(end.exit_code, 0, "{}", String::from_utf8_lossy(&stdout));
                break;
            }
            _ => {}
        }
    }
    let out: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(out["body"], "hello /process");
    egress.record(ALLOWED, RequestKind::Http, &format!("process-{}", pid.unwrap())).await;

    // The relay subcommand (what a package installer's container runs), here inside a
    // process's sandbox, on another port and with an id of its own.
    let script = format!(
        "/sandbox/supervisor egress-relay --listen 127.0.0.1:3129 --socket {EGRESS_DIR}/{EGRESS_SOCKET_NAME} \
         --execution install-1 & sleep 1; HTTP_PROXY=http://127.0.0.1:3129 http_proxy=http://127.0.0.1:3129 \
         python3 -c '{}'",
        fetch_py(ALLOWED, port, "/install").replace("3128", "3129").replace('\'', "\"")
    );
    let process =
        ProcessRequest { cmd: "/bin/bash".into(), args: vec!["-c".into(), script], ..Default::default() };
    let mut events = sb.executor.start_process(&process).await.unwrap();
    while let Some(ev) = futures_util::StreamExt::next(&mut events).await {
        if let ProcessEvent::End(end) = ev.unwrap() {
            assert_eq!(end.exit_code, 0);
            break;
        }
    }
    assert_eq!(egress.record(ALLOWED, RequestKind::Http, "install-1").await.decision, Decision::Allowed);
}

#[tokio::test]
async fn node_fetch_goes_through_the_relay() {
    let mut egress = Egress::new().await;
    egress.serve();
    let sb = sandbox("multi-language", &egress, &[]).await;
    // The dispatcher is checked first: a fetch without it would look the name up itself.
    let code = format!(
        r#"
exports.handler = async () => {{
  const d = globalThis[Symbol.for('undici.globalDispatcher.1')];
  if (!d || d.constructor.name !== 'EnvProxy') throw new Error('fetch is not proxied');
  const local = await fetch('http://127.0.0.1:4000/').then(() => 'reached', (e) => String(e.cause?.code ?? e.cause ?? e));
  const r = await fetch('http://{ALLOWED}:{}/node');
  return {{status: r.status, body: await r.text(), local}};
}};
"#,
        egress.server.port
    );
    let req = exec_request(Language::Javascript, &code, 60);
    let r = sb.executor.execute(&req).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Completed, "stdout: {} stderr: {}", r.stdout, r.stderr);
    let out = r.return_value.clone().expect("the handler's value");
    assert_eq!(out["body"], "hello /node");
    // NO_PROXY: 127.0.0.1 is tried directly (and nothing listens there).
    assert_eq!(out["local"], "ECONNREFUSED");
    let record = egress.record(ALLOWED, RequestKind::Connect, &req.execution_id).await;
    assert_eq!(record.decision, Decision::Allowed);
}

#[tokio::test]
async fn an_installer_on_no_network_installs_through_the_proxy() {
    let mut egress = Egress::new().await;
    let index = TestIndex::start().await;
    index.publish("egresspkg", "1.0", &[], "VALUE = 42\n");
    let port = index.addr().port();
    egress.serve_allowing(vec![format!("{INDEX}:{port}")]);
    let work = tempfile::Builder::new().prefix("sandbox-egress-install-").tempdir().unwrap();
    let (target, scratch) = (work.path().join("target"), work.path().join("scratch"));
    for dir in [&target, &scratch] {
        std::fs::create_dir(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(DEFAULT_SANDBOX_UID), Some(DEFAULT_SANDBOX_UID)).unwrap();
    }
    let spec = InstallerSpec {
        name: format!("installer-egress-e2e-{}", std::process::id()),
        image: image("python-basic"),
        command: ["python3", "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir"]
            .into_iter()
            .chain(["--target", InstallerSpec::TARGET, "--trusted-host", INDEX, "--", "egresspkg"])
            .map(str::to_owned)
            .collect(),
        env: [("PIP_INDEX_URL".to_owned(), format!("http://{INDEX}:{port}/simple/"))].into(),
        target_dir: target.clone(),
        scratch_dir: scratch,
        egress_dir: egress.dir.path().to_owned(),
        cpu: CpuQuantity::from_millis(1000).unwrap(),
        memory: MemoryQuantity::from_mib(512).unwrap(),
        pids_limit: 256,
        timeout: Duration::from_secs(120),
        labels: Default::default(),
        uid: DEFAULT_SANDBOX_UID,
    };
    let runtime = DockerRuntime::connect(DockerConfig::default()).await.unwrap();
    let outcome = runtime.run_installer(&spec, None).await.unwrap();
    assert_eq!(outcome.exit_code, Some(0), "{}", outcome.output);
    assert!(target.join("egresspkg.py").exists() || target.join("egresspkg").exists(), "{}", outcome.output);
    // The relay names the installer in each request, so the audit tells installs apart.
    let record = egress.record_by(INDEX, RequestKind::Http, Some(&spec.name)).await;
    assert_eq!(record.decision, Decision::Allowed);
}
