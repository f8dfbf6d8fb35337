//! Shared pieces: a representative spec, snapshots, kubernetes-validate, a mock API server that
//! asserts each request, and a fake executor that checks the bearer token.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::api::core::v1::{Pod, Secret};
use sandbox_runtime::kubernetes::objects::TOKEN_KEY;
use sandbox_runtime::kubernetes::{KubernetesConfig, KubernetesRuntime};
use sandbox_runtime::{SandboxSpec, labels};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The namespace of every test.
pub const NS: &str = "sandbox-test";

/// A representative sandbox: a session id that is no DNS label, resources, labels, settings.
pub fn spec() -> SandboxSpec {
    session_spec("sess_Abc123")
}

/// The sandbox of session `id`, named and labelled as the server does, otherwise like [`spec`].
pub fn session_spec(id: &str) -> SandboxSpec {
    let mut s = SandboxSpec::new(
        format!("sandbox-{id}"),
        "registry.example/sandbox/python-basic:1.0",
        "/unused/workspace".into(),
        "/unused/run".into(),
    );
    s.cpu = "0.5".parse().unwrap();
    s.memory = "256Mi".parse().unwrap();
    s.tmp_size = "64Mi".parse().unwrap();
    s.labels.insert(labels::SESSION.into(), id.into());
    s.labels.insert(labels::TEMPLATE.into(), "python-basic".into());
    s.labels.insert(labels::DEPLOYMENT.into(), "0123456789ab".into());
    s.executor_env.insert("SANDBOX_EXECUTOR_MAX_PROCESSES".into(), "64".into());
    s
}

/// The test namespace, the given executor port, a short ready timeout.
pub fn config(executor_port: u16) -> KubernetesConfig {
    KubernetesConfig { namespace: NS.into(), executor_port, ready_timeout_secs: 10, ..Default::default() }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    manifest_dir().join("../..")
}

/// Compares `value` as pretty JSON with `tests/snapshots/NAME.json`; `UPDATE_SNAPSHOTS=1`
/// rewrites the file first.
pub fn assert_snapshot(name: &str, value: &impl Serialize) {
    let path = manifest_dir().join("tests/snapshots").join(format!("{name}.json"));
    let mut want = serde_json::to_string_pretty(value).unwrap();
    want.push('\n');
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "snapshot {} is stale or missing; review the change and rewrite it with \
         UPDATE_SNAPSHOTS=1 cargo nextest run -p sandbox-runtime --features kubernetes\n--- new ---\n{want}",
        path.display()
    );
}

/// The Kubernetes versions objects are validated against: the API this crate is built for
/// (k8s-openapi `v1_34`) and the newest kubernetes-validate knows.
pub const VALIDATE_VERSIONS: [&str; 2] = ["1.34.0", "1.37.0"];

/// Validates every object in `files` (JSON or YAML, one or more documents each; `count` objects
/// in all) with `kubernetes-validate --strict` against [`VALIDATE_VERSIONS`]; fails on any error
/// or warning (an unknown kind is only a warning there).
pub fn kubernetes_validate(files: &[PathBuf], count: usize) {
    let tool = std::env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/sandbox-tools/venv/bin/kubernetes-validate"));
    assert!(
        tool.exists(),
        "kubernetes-validate is missing at {}: run scripts/test-tools.sh (it installs kubernetes-validate into \
         /var/cache/sandbox-tools/venv), or set KUBERNETES_VALIDATE to the binary",
        tool.display()
    );
    let mut cmd = std::process::Command::new(&tool);
    cmd.arg("--strict");
    for v in VALIDATE_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.args(files).output().expect("kubernetes-validate runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = text.lines().filter(|l| !l.starts_with("INFO")).collect();
    assert!(out.status.success() && problems.is_empty(), "kubernetes-validate failed:\n{text}");
    let passed = text.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, count * VALIDATE_VERSIONS.len(), "every object validated once per version:\n{text}");
}

/// A response body: whole, or streamed (a watch).
pub type Body = BoxBody<Bytes, std::io::Error>;
type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<Body>>;
type Send = tower_test::mock::SendResponse<Response<Body>>;

/// A backend on a mock API server, and the server.
pub fn mock_runtime(cfg: KubernetesConfig) -> (Arc<KubernetesRuntime>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
    let client = kube::Client::new(service, NS);
    let rt = KubernetesRuntime::with_client(client, cfg).unwrap();
    (Arc::new(rt), ApiServer { handle: Box::pin(handle) })
}

/// The API server's side of the mock: each request in turn.
pub struct ApiServer {
    handle: Pin<Box<Handle>>,
}

/// One request the backend made, to answer.
pub struct Call {
    /// Method, URI, headers.
    pub parts: http::request::Parts,
    /// The body.
    pub body: Vec<u8>,
    send: Send,
}

/// The path of a collection in the test namespace (`pods`, `secrets`, ...).
pub fn path(resource: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{resource}")
}

impl ApiServer {
    /// The next request; fails the test if none comes within 5 seconds.
    pub async fn next(&mut self) -> Call {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), self.handle.as_mut().next_request())
            .await
            .expect("the backend made no further request")
            .expect("the client is gone");
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Call { parts, body, send }
    }

    /// The next request, which must be `method path` (the query is not compared).
    pub async fn expect(&mut self, method: &str, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (call.parts.method.as_str(), call.parts.uri.path()),
            (method, path),
            "unexpected request {} {}",
            call.parts.method,
            call.parts.uri
        );
        call
    }

    /// The next request, which must delete `name` in `resource` on the condition that it still
    /// is the object with the uid [`uid_of`] gives it.
    pub async fn expect_delete(&mut self, resource: &str, name: &str) -> Call {
        let call = self.expect("DELETE", &format!("{}/{name}", path(resource))).await;
        let body: Value = call.json();
        assert_eq!(
            body["preconditions"]["uid"],
            json!(uid_of(name)),
            "{resource}/{name} deleted by uid: {body}"
        );
        call
    }

    /// Asserts the backend makes no request for a while.
    pub async fn expect_silence(&mut self) {
        let next =
            tokio::time::timeout(Duration::from_millis(300), self.handle.as_mut().next_request()).await;
        assert!(next.is_err(), "unexpected request {:?}", next.unwrap().map(|(r, _)| r.uri().clone()));
    }
}

impl Call {
    /// The body, parsed.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The query string.
    pub fn query(&self) -> &str {
        self.parts.uri.query().unwrap_or_default()
    }

    /// Answers with `status` and a JSON body.
    pub fn respond(self, status: u16, body: Value) {
        self.respond_bytes(status, serde_json::to_vec(&body).unwrap());
    }

    /// Answers with `status` and raw bytes.
    pub fn respond_bytes(self, status: u16, body: Vec<u8>) {
        let body = Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed();
        self.send.send_response(Response::builder().status(status).body(body).unwrap());
    }

    /// Answers with a Kubernetes `Status` error.
    pub fn fail(self, code: u16, reason: &str) {
        self.respond(
            code,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                   "message": format!("{reason} (test)"), "code": code}),
        );
    }

    /// Answers a watch with a stream the test feeds.
    pub fn watch(self) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel::<Result<Frame<Bytes>, std::io::Error>>();
        let frames =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        self.send.send_response(Response::new(StreamBody::new(frames).boxed()));
        Watch { tx }
    }
}

/// An open watch response.
pub struct Watch {
    tx: mpsc::UnboundedSender<Result<Frame<Bytes>, std::io::Error>>,
}

impl Watch {
    /// Sends one watch event.
    pub fn event(&self, type_: &str, object: Value) {
        let line = format!("{}\n", json!({"type": type_, "object": object}));
        let _ = self.tx.send(Ok(Frame::data(Bytes::from(line))));
    }
}

/// The uid the mock API server gives the object `name`.
pub fn uid_of(name: &str) -> String {
    format!("uid-{name}")
}

/// `object` as the API server would return it: with a uid ([`uid_of`]), a resource version and a
/// creation time.
pub fn stored(object: &impl Serialize, resource_version: &str) -> Value {
    let mut v = serde_json::to_value(object).unwrap();
    let name = v["metadata"]["name"].as_str().expect("a named object").to_owned();
    v["metadata"]["uid"] = json!(uid_of(&name));
    v["metadata"]["resourceVersion"] = json!(resource_version);
    v["metadata"]["creationTimestamp"] = json!("2026-11-28T10:00:00Z");
    v
}

/// `pod` as the API server would return it, with `status`.
pub fn with_status(pod: &Pod, resource_version: &str, status: Value) -> Value {
    let mut v = stored(pod, resource_version);
    v["status"] = status;
    v
}

/// A container status of the executor in `state`.
fn executor_status(state: Value) -> Value {
    json!([{"name": "executor", "image": "img", "imageID": "", "ready": false, "restartCount": 0, "state": state}])
}

/// Scheduled, image being pulled.
pub fn pending() -> Value {
    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
           "containerStatuses": executor_status(json!({"waiting": {"reason": "ContainerCreating"}}))})
}

/// Waiting for `reason`.
pub fn waiting(reason: &str, message: &str) -> Value {
    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
           "containerStatuses": executor_status(json!({"waiting": {"reason": reason, "message": message}}))})
}

/// Running and Ready at `ip`.
pub fn ready(ip: &str) -> Value {
    json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
           "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
           "containerStatuses": executor_status(json!({"running": {"startedAt": "2026-11-28T10:00:01Z"}}))})
}

/// What the backend created for a sandbox, as the mock saw it.
pub struct Created {
    /// The token from the Secret.
    pub token: String,
    /// The pod it posted.
    pub pod: Pod,
    /// `(resource, name)` of each object made, in order.
    pub made: Vec<(&'static str, String)>,
}

/// Answers the Secret, optional claim and pod creation of one sandbox.
pub async fn serve_creation(server: &mut ApiServer, with_pvc: bool) -> Created {
    let mut made = Vec::new();
    let call = server.expect("POST", &path("secrets")).await;
    let secret: Secret = call.json();
    let token = String::from_utf8(secret.data.as_ref().unwrap()[TOKEN_KEY].0.clone()).unwrap();
    made.push(("secrets", secret.metadata.name.clone().unwrap()));
    call.respond(201, stored(&secret, "8"));
    if with_pvc {
        let call = server.expect("POST", &path("persistentvolumeclaims")).await;
        let pvc: Value = call.json();
        made.push(("persistentvolumeclaims", pvc["metadata"]["name"].as_str().unwrap().to_owned()));
        call.respond(201, stored(&pvc, "9"));
    }
    let call = server.expect("POST", &path("pods")).await;
    let pod: Pod = call.json();
    made.push(("pods", pod.metadata.name.clone().unwrap()));
    call.respond(201, with_status(&pod, "10", json!({"phase": "Pending"})));
    Created { token, pod, made }
}

/// Answers the watcher's initial list of the pod with `items`.
pub async fn serve_list(server: &mut ApiServer, pod_name: &str, resource_version: &str, items: Vec<Value>) {
    let call = server.expect("GET", &path("pods")).await;
    assert!(
        call.query().contains(&format!("fieldSelector=metadata.name%3D{pod_name}"))
            && !call.query().contains("watch"),
        "not the pod's list: {}",
        call.query()
    );
    call.respond(
        200,
        json!({"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": resource_version}, "items": items}),
    );
}

/// Takes the next watch request of the pod, from `resource_version`.
pub async fn serve_watch(server: &mut ApiServer, pod_name: &str, resource_version: &str) -> Call {
    let call = server.expect("GET", &path("pods")).await;
    let q = call.query();
    assert!(q.contains("watch=true"), "not a watch: {q}");
    assert!(q.contains(&format!("fieldSelector=metadata.name%3D{pod_name}")), "{q}");
    assert!(q.contains(&format!("resourceVersion={resource_version}")), "watch from {resource_version}: {q}");
    call
}

/// Answers the deletions that undo a failed create: what it made, pod first, each naming the
/// uid it was made with; the `missing` resources answer 404.
pub async fn serve_undo(server: &mut ApiServer, created: &Created, missing: &[&str]) {
    for resource in ["pods", "secrets", "persistentvolumeclaims"] {
        for (_, name) in created.made.iter().filter(|(r, _)| *r == resource) {
            let call = server.expect_delete(resource, name).await;
            if missing.contains(&resource) {
                call.fail(404, "NotFound");
            } else {
                call.respond(200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
            }
        }
    }
}

/// Answers the read of `name` in `resource` with `found` (404 when `None`), then, when
/// `deleted`, the deletion that must follow it.
pub async fn serve_read_then_delete(
    server: &mut ApiServer,
    resource: &str,
    name: &str,
    found: Option<&Value>,
    deleted: bool,
) {
    let call = server.expect("GET", &format!("{}/{name}", path(resource))).await;
    match found {
        Some(object) => call.respond(200, object.clone()),
        None => call.fail(404, "NotFound"),
    }
    if deleted {
        server
            .expect_delete(resource, name)
            .await
            .respond(200, json!({"kind": "Status", "status": "Success"}));
    }
}

/// A stand-in executor on 127.0.0.1: answers `GET /v1/health` when the bearer token matches.
pub struct FakeExecutor {
    /// Where it listens.
    pub addr: SocketAddr,
    token: Arc<Mutex<Option<String>>>,
    /// Requests that carried the right token.
    pub authorized: Arc<AtomicUsize>,
}

impl FakeExecutor {
    /// Starts listening.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeExecutor {
            addr: listener.local_addr().unwrap(),
            token: Arc::default(),
            authorized: Arc::default(),
        };
        let (token, authorized) = (fake.token.clone(), fake.authorized.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_connection(conn, token.clone(), authorized.clone()));
            }
        });
        fake
    }

    /// The token it accepts from now on.
    pub fn accept_token(&self, token: &str) {
        *self.token.lock().unwrap() = Some(token.to_owned());
    }

    /// How many requests carried the right token so far.
    pub fn authorized(&self) -> usize {
        self.authorized.load(Ordering::SeqCst)
    }
}

async fn serve_connection(
    conn: tokio::net::TcpStream,
    token: Arc<Mutex<Option<String>>>,
    authorized: Arc<AtomicUsize>,
) {
    let mut conn = BufReader::new(conn);
    loop {
        let mut auth = None;
        let mut line = String::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                auth = Some(v.trim().to_owned());
            }
        }
        let expected = token.lock().unwrap().clone().map(|t| format!("Bearer {t}"));
        let (status, body) = if expected.is_some() && auth == expected {
            authorized.fetch_add(1, Ordering::SeqCst);
            let health = sandbox_protocol::Health {
                status: "ok".into(),
                executor_version: "fake".into(),
                protocol_version: sandbox_protocol::PROTOCOL_VERSION,
                languages: vec![],
                running_executions: 0,
                uptime_ms: 1,
            };
            ("200 OK", serde_json::to_string(&health).unwrap())
        } else {
            let body = sandbox_protocol::ErrorBody {
                code: sandbox_protocol::ErrorCode::Unauthorized,
                message: "bad token".into(),
            };
            ("401 Unauthorized", serde_json::to_string(&body).unwrap())
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
