//! The real `sandbox-server` binary as a test fixture: started on a free port with its own data
//! directory, driven through HTTP, killable and restartable on the same data, stopped (and its
//! sandboxes removed) when dropped. Each test binary uses part of it.
#![allow(dead_code)]

pub mod spec;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `sandbox-server`.
pub struct Server {
    child: Option<Child>,
    env: Vec<(String, String)>,
    /// The base URL.
    pub base: String,
    /// The admin key.
    pub key: String,
    /// An HTTP client.
    pub http: Client,
    /// The data directory.
    pub dir: tempfile::TempDir,
}

/// Installs never leave this host: a test that names no index of its own installs from a
/// loopback port nothing listens on, with no download hosts, rather than from PyPI.
const LOOPBACK_INSTALLS: [(&str, &str); 2] = [
    ("SANDBOX_DEPENDENCIES__DEFAULT_INDEX_URL", "http://127.0.0.1:9/simple/"),
    ("SANDBOX_DEPENDENCIES__DOWNLOAD_HOSTS", ""),
];

impl Server {
    /// Starts a server with pools off unless `env` says otherwise.
    pub async fn start(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new().prefix("sandbox-server-e2e-").tempdir().unwrap();
        Self::start_in(dir, env).await
    }

    /// Starts a server on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let key = format!("test-admin-key-{}", std::process::id());
        let mut all: Vec<(String, String)> = vec![
            ("SANDBOX_DATA_DIR".into(), dir.path().display().to_string()),
            ("SANDBOX_POOLS__DEFAULT_SIZE".into(), "0".into()),
            ("SANDBOX_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("SANDBOX_API_KEY".into(), key.clone()),
            ("SANDBOX_LOG_FORMAT".into(), "text".into()),
        ];
        all.extend(LOOPBACK_INSTALLS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // A second set of images (`IMAGE_PREFIX=x- images/build.sh`) when the tests name one.
        if let Ok(prefix) = std::env::var("IMAGE_PREFIX") {
            all.push(("SANDBOX_IMAGE_PREFIX".into(), prefix));
        }
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut server = Server {
            child: None,
            env: all,
            base: format!("http://127.0.0.1:{port}"),
            key,
            http: Client::new(),
            dir,
        };
        server.spawn().await;
        server
    }

    /// Starts the process (again) and waits until it answers.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        // SANDBOX_TEST_SERVER_BIN runs the tests against another build (an older one, to see
        // an attack succeed there).
        let bin = std::env::var("SANDBOX_TEST_SERVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sandbox-server").to_owned());
        let mut cmd = Command::new(bin);
        cmd.arg("serve").stdout(Stdio::null()).stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("sandbox-server starts"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http.get(self.url("/api/v1/health")).send().await.is_err() {
            assert!(Instant::now() < deadline, "server did not come up: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` and waits for the process to end.
    pub fn kill(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
        }
    }

    /// The PID of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A JSON call with `key`; the body of the answer, `Null` when not JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method.clone(), self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.json().await.unwrap_or(Value::Null);
        spec::check(method.as_str(), path, status.as_u16(), &body);
        (status, body)
    }

    /// Creates a running session of `template`.
    pub async fn create_session(&self, key: &str, template: &str) -> String {
        self.create_session_with(key, json!({ "template_id": template })).await
    }

    /// Creates a running session from a request body.
    pub async fn create_session_with(&self, key: &str, body: Value) -> String {
        let (s, body) = self.call(Method::POST, "/api/v1/sessions", key, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{body}\n{}", self.log());
        assert_eq!(body["status"], "running");
        body["id"].as_str().unwrap().to_owned()
    }

    /// A session once the install of its packages has ended (`completed` or `failed`).
    pub async fn settled(&self, session: &str) -> Value {
        let path = format!("/api/v1/sessions/{session}");
        eventually(Duration::from_secs(180), "the install ends", || async {
            let s = self.call(Method::GET, &path, &self.key, None).await.1;
            (s["dependency_install_status"] != "installing").then_some(s)
        })
        .await
    }

    /// Runs code with `execute-sync`; the answer and the call's wall time in seconds.
    pub async fn execute(&self, key: &str, session: &str, body: Value) -> (StatusCode, Value, f64) {
        let t = Instant::now();
        let path = format!("/api/v1/executions/sessions/{session}/execute-sync");
        let (s, b) = self.call(Method::POST, &path, key, Some(body)).await;
        (s, b, t.elapsed().as_secs_f64())
    }

    /// Runs Python code and returns the execution.
    pub async fn python(&self, session: &str, code: &str) -> Value {
        let (s, r, _) = self.execute(&self.key, session, json!({"code": code, "language": "python"})).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        r
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill(libc::SIGTERM);
        let log = self.log();
        if std::thread::panicking() {
            // The test failed: what the server did is the first thing to read.
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!("--- the server's log, last {} lines ---", tail.len());
            tail.iter().rev().for_each(|l| eprintln!("{l}"));
        }
        spec::record_from_log(&log);
        sandbox_e2e::clean_data_dir(self.dir.path());
    }
}

/// Removes a session's sandbox container behind the server's back (a lost node, a crash).
pub fn lose_sandbox(session_id: &str) {
    let status = Command::new("docker")
        .args(["rm", "-f", &format!("sandbox-{session_id}")])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "docker rm of the sandbox of {session_id}");
}

/// Polls `check` every 200 ms until it yields a value, failing after `limit` with `what`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The events of an SSE answer: (id, name, data).
pub fn sse_events(text: &str) -> Vec<(Option<u64>, String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
            let event = field("event: ")?;
            let data = serde_json::from_str(&field("data: ")?).ok()?;
            Some((field("id: ").and_then(|i| i.parse().ok()), event, data))
        })
        .collect()
}
