//! The server under test (started here or given by URL) and a checking client for its REST API.

use anyhow::{Context, Result, anyhow, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The program every execution sample runs.
pub const PRINT_1: &str = "print(1)";
/// The template every sample uses.
pub const TEMPLATE: &str = "python-basic";

/// A REST client for one server. It remembers the sessions it created and has not deleted.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    live: Arc<Mutex<BTreeSet<String>>>,
}

/// A create refused by admission (the caller's quota or the host's capacity): the bound a
/// density run reports rather than a failure.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The error code (`quota_exceeded`, `capacity_exhausted`).
    pub code: String,
    /// The server's message.
    pub message: String,
}

/// A finished `print(1)`.
#[derive(Debug, Clone, Copy)]
pub struct Executed {
    /// What the executor reported as the execution's duration, ms.
    pub executor_ms: f64,
}

/// One warm pool as `GET /api/v1/pools` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Ready sandboxes wanted.
    pub target: u64,
    /// Ready now.
    pub ready: u64,
    /// Being started.
    pub starting: u64,
    /// Claims that got a sandbox.
    pub hits: u64,
}

fn brief(body: &Value) -> String {
    let s = body.to_string();
    if s.len() > 600 { format!("{}…", &s[..s.floor_char_boundary(600)]) } else { s }
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:PORT`) with `key`. It never uses a proxy.
    pub fn new(base: &str, key: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .build()
            .context("building the HTTP client")?;
        Ok(Api { http, base: base.trim_end_matches('/').into(), key: key.into(), live: Arc::default() })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Value)> {
        let mut req =
            self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.with_context(|| format!("reading the answer to {method} {path}"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// `GET /api/v1/health` answers.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/api/v1/health", self.base);
        matches!(self.http.get(url).timeout(Duration::from_secs(2)).send().await, Ok(r) if r.status().is_success())
    }

    /// Creates a session from `body`; `Ok(Err(_))` when admission refuses it.
    pub async fn try_create_session(&self, body: Value) -> Result<std::result::Result<String, Refusal>> {
        let (status, answer) = self.call(Method::POST, "/api/v1/sessions", Some(body)).await?;
        let code = answer["code"].as_str().unwrap_or_default();
        if matches!(
            (status, code),
            (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
                | (StatusCode::SERVICE_UNAVAILABLE, "capacity_exhausted")
        ) {
            let message = answer["message"].as_str().unwrap_or_default().to_owned();
            return Ok(Err(Refusal { code: code.into(), message }));
        }
        ensure!(status == StatusCode::CREATED, "creating a session: {status} {}", brief(&answer));
        let id = answer["id"].as_str().ok_or_else(|| anyhow!("no session id in {}", brief(&answer)))?;
        self.live().insert(id.to_owned());
        ensure!(
            answer["status"] == "running",
            "session {id} is {} after create: {}",
            answer["status"],
            brief(&answer)
        );
        Ok(Ok(id.to_owned()))
    }

    /// Creates a running session of the benchmark's template.
    pub async fn create_session(&self) -> Result<String> {
        match self.try_create_session(json!({"template_id": TEMPLATE})).await? {
            Ok(id) => Ok(id),
            Err(r) => bail!("creating a session was refused: {} ({})", r.code, r.message),
        }
    }

    /// Runs `print(1)` with `execute-sync` and checks it completed with output `1`.
    pub async fn print_1(&self, session: &str) -> Result<Executed> {
        let path = format!("/api/v1/executions/sessions/{session}/execute-sync");
        let body = json!({"code": PRINT_1, "language": "python"});
        let (status, e) = self.call(Method::POST, &path, Some(body)).await?;
        ensure!(status == StatusCode::OK, "execute-sync in {session}: {status} {}", brief(&e));
        ensure!(
            e["status"] == "completed" && e["stdout"] == "1\n",
            "print(1) in {session} did not complete with output 1: status {}, error_message {}, stdout {}, \
             stderr {} (execution {})",
            e["status"],
            e["error_message"],
            e["stdout"],
            e["stderr"],
            e["id"]
        );
        let executor_ms = e["metrics"]["duration_ms"]
            .as_f64()
            .ok_or_else(|| anyhow!("no metrics.duration_ms in {}", brief(&e)))?;
        Ok(Executed { executor_ms })
    }

    /// Runs Python `code` with `execute-sync` (`timeout` seconds at most) and checks it
    /// completed; its stdout.
    pub async fn run_python(&self, session: &str, code: &str, timeout: u64) -> Result<String> {
        let path = format!("/api/v1/executions/sessions/{session}/execute-sync");
        let body = json!({"code": code, "language": "python", "timeout": timeout});
        let (status, e) = self.call(Method::POST, &path, Some(body)).await?;
        ensure!(status == StatusCode::OK, "execute-sync in {session}: {status} {}", brief(&e));
        ensure!(
            e["status"] == "completed",
            "code in {session} did not complete: status {}, error_message {}, stderr {}",
            e["status"],
            e["error_message"],
            e["stderr"]
        );
        e["stdout"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no stdout in {}", brief(&e)))
    }

    /// Starts a Python code context in a session; its id.
    pub async fn create_context(&self, session: &str) -> Result<String> {
        let path = format!("/api/v1/sessions/{session}/contexts");
        let (status, c) = self.call(Method::POST, &path, Some(json!({"language": "python"}))).await?;
        ensure!(status == StatusCode::CREATED, "creating a context in {session}: {status} {}", brief(&c));
        c["id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no context id in {}", brief(&c)))
    }

    /// Runs `1+1` in a context with `execute-sync` and checks its main result is `2`.
    pub async fn one_plus_one(&self, session: &str, context: &str) -> Result<()> {
        let path = format!("/api/v1/executions/sessions/{session}/execute-sync");
        let body = json!({"code": "1+1", "context_id": context});
        let (status, e) = self.call(Method::POST, &path, Some(body)).await?;
        ensure!(status == StatusCode::OK, "1+1 in context {context}: {status} {}", brief(&e));
        let main = e["results"].as_array().and_then(|r| r.iter().find(|r| r["is_main_result"] == true));
        ensure!(
            e["status"] == "completed" && main.is_some_and(|m| m["data"]["text/plain"] == "2"),
            "1+1 in context {context} did not give 2: {}",
            brief(&e)
        );
        Ok(())
    }

    /// Deletes a session (204 expected).
    pub async fn delete_session(&self, id: &str) -> Result<()> {
        let (status, body) = self.call(Method::DELETE, &format!("/api/v1/sessions/{id}"), None).await?;
        ensure!(status == StatusCode::NO_CONTENT, "deleting session {id}: {status} {}", brief(&body));
        self.live().remove(id);
        Ok(())
    }

    /// Deletes every session this client created and has not deleted; returns the first error
    /// after trying them all.
    pub async fn delete_leftovers(&self) -> Result<usize> {
        let ids: Vec<String> = self.live().iter().cloned().collect();
        let mut first_error = None;
        for id in &ids {
            if let Err(e) = self.delete_session(id).await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(ids.len()),
        }
    }

    /// How many sessions the server lists as `running`.
    pub async fn running_sessions(&self) -> Result<u64> {
        let (status, body) = self.call(Method::GET, "/api/v1/sessions?status=running&limit=1", None).await?;
        ensure!(status == StatusCode::OK, "listing sessions: {status} {}", brief(&body));
        body["total"].as_u64().ok_or_else(|| anyhow!("no total in {}", brief(&body)))
    }

    /// The warm pool of the benchmark's template.
    pub async fn pool(&self) -> Result<Pool> {
        let (status, body) = self.call(Method::GET, "/api/v1/pools", None).await?;
        ensure!(status == StatusCode::OK, "GET /api/v1/pools: {status} {}", brief(&body));
        let p = body["items"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["template_id"] == TEMPLATE))
            .ok_or_else(|| anyhow!("no {TEMPLATE} pool in {}", brief(&body)))?;
        let n = |k: &str| p[k].as_u64().ok_or_else(|| anyhow!("no {k} in {}", brief(p)));
        Ok(Pool { target: n("target_size")?, ready: n("ready")?, starting: n("starting")?, hits: n("hits")? })
    }

    /// Waits (up to `limit`) until the pool is full and nothing is starting.
    pub async fn wait_pool_full(&self, limit: Duration) -> Result<Pool> {
        let deadline = Instant::now() + limit;
        loop {
            let p = self.pool().await?;
            if p.target > 0 && p.ready >= p.target && p.starting == 0 {
                return Ok(p);
            }
            ensure!(Instant::now() < deadline, "the {TEMPLATE} pool did not fill within {limit:?}: {p:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Uploads `data` as the raw body to `path` in the session's workspace.
    pub async fn upload(&self, session: &str, path: &str, data: bytes::Bytes) -> Result<()> {
        let len = data.len() as u64;
        let url = format!("{}/api/v1/sessions/{session}/files/upload?path={path}", self.base);
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data)
            .send()
            .await
            .with_context(|| format!("uploading {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        ensure!(status == StatusCode::OK, "uploading {path}: {status} {}", brief(&body));
        ensure!(
            body["size"].as_u64() == Some(len),
            "uploaded {len} bytes to {path}, the server says {}",
            body
        );
        Ok(())
    }

    /// Downloads `path` from the session's workspace.
    pub async fn download(&self, session: &str, path: &str) -> Result<bytes::Bytes> {
        let url = format!("{}/api/v1/sessions/{session}/files/{path}", self.base);
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("downloading {path}"))?;
        let status = resp.status();
        ensure!(status == StatusCode::OK, "downloading {path}: {status}");
        resp.bytes().await.with_context(|| format!("reading {path}"))
    }
}

/// A `sandbox-server` process started by this tool. Dropping it stops the process and removes
/// whatever its deployment left on Docker and the host.
pub struct ServerProcess {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    deployment: String,
    /// The REST client, with the admin key.
    pub api: Api,
}

/// How to start a server.
pub struct ServerConfig<'a> {
    /// The binary.
    pub bin: &'a Path,
    /// A label for the data directory and deployment id (`main`, `pool`, `s3`).
    pub role: &'a str,
    /// The run's id (part of the deployment id).
    pub run_id: &'a str,
    /// TOML settings written to a file and passed as `SANDBOX_CONFIG`.
    pub toml: Option<String>,
    /// `SANDBOX_*` variables, after the defaults (later ones win).
    pub env: Vec<(String, String)>,
}

impl ServerProcess {
    /// Starts the server and waits (up to 60 s) until `/api/v1/health` answers.
    pub async fn start(cfg: ServerConfig<'_>) -> Result<ServerProcess> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sandbox-bench-{}-", cfg.role))
            .tempdir()
            .context("creating a data directory")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let key = format!("bench-admin-key-{}", cfg.run_id);
        let deployment = format!("bench-{}-{}", cfg.run_id, cfg.role);
        let mut env: Vec<(String, String)> = vec![
            ("SANDBOX_DATA_DIR".into(), dir.path().display().to_string()),
            ("SANDBOX_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("SANDBOX_API_KEY".into(), key.clone()),
            ("SANDBOX_LOG_FORMAT".into(), "text".into()),
            ("SANDBOX_DEPLOYMENT_ID".into(), deployment.clone()),
            ("SANDBOX_LIFECYCLE__SHUTDOWN_GRACE_SEC".into(), "5".into()),
        ];
        // Plain text in the log file (tracing's text format colours by default).
        let colours = ("NO_COLOR".to_owned(), "1".to_owned());
        env.extend(cfg.env);
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).context("creating the server log")?;
        let mut cmd = Command::new(cfg.bin);
        cmd.arg("serve").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        // Only what this tool sets: no SANDBOX_* from the caller's environment leaks in.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SANDBOX_")) {
            cmd.env_remove(k);
        }
        if let Some(toml) = &cfg.toml {
            let file = dir.path().join("bench.toml");
            std::fs::write(&file, toml)?;
            cmd.env("SANDBOX_CONFIG", file);
        }
        cmd.envs(env).envs([colours]);
        let child = cmd.spawn().with_context(|| format!("starting {}", cfg.bin.display()))?;
        let mut server = ServerProcess {
            child: Some(child),
            dir: Some(dir),
            deployment,
            api: Api::new(&format!("http://127.0.0.1:{port}"), &key)?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.api.healthy().await {
            if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("sandbox-server exited at start ({status}):\n{}", server.log_tail(30));
            }
            ensure!(
                Instant::now() < deadline,
                "sandbox-server did not answer within 60 s:\n{}",
                server.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    /// The process id (for its RSS).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn data_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().to_owned())
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.data_dir().and_then(|d| std::fs::read_to_string(d.join("server.log")).ok()).unwrap_or_default()
    }

    /// Deletes the sessions its client created, then stops the process and cleans up.
    pub async fn shutdown(mut self) -> Result<()> {
        let deleted = self.api.delete_leftovers().await;
        self.stop_and_sweep();
        deleted.map(|_| ())
    }

    /// SIGTERM (SIGKILL after 20 s), then removes the deployment's containers (pool sandboxes
    /// included) and unmounts workspaces still mounted under the data directory.
    fn stop_and_sweep(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child this process spawned and has not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        crate::docker::remove_labelled_blocking(&format!("io.sandbox.deployment={}", self.deployment));
        if let Some(dir) = self.data_dir()
            && let Ok(entries) = std::fs::read_dir(dir.join("sessions"))
        {
            for e in entries.flatten() {
                let ws = e.path().join("workspace");
                let _ = Command::new("umount").arg(&ws).stderr(Stdio::null()).status();
            }
        }
        self.dir.take();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop_and_sweep();
    }
}
