//! Session lifecycle under load and faults, on the real binary and a real Docker daemon: warm
//! pools, recovery of lost sandboxes, restarts of the control plane, limits and admission,
//! expiry. Tests named `exclusive_*` disturb the whole machine (they kill dockerd, or measure
//! latency under load) and run alone, after the others (see scripts/test.sh).

mod common;

use common::{Server, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

fn pools_config(dir: &std::path::Path, pools: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, format!("[pools]\ndefault_size = 0\n[pools.sizes]\n{pools}\n")).unwrap();
    path.display().to_string()
}

async fn pool(srv: &Server, template: &str) -> Value {
    let (_, pools) = srv.call(Method::GET, "/api/v1/pools", &srv.key, None).await;
    pools["items"].as_array().unwrap().iter().find(|p| p["template_id"] == template).cloned().unwrap()
}

async fn wait_pool_ready(srv: &Server, template: &str, ready: u64) {
    eventually(Duration::from_secs(90), "the pool to fill", || async {
        (pool(srv, template).await["ready"].as_u64() == Some(ready)).then_some(())
    })
    .await;
}

/// Creates `n` sessions of `template` on `srv`, one after another, each once the pool has a ready
/// sandbox again, and checks that every one was a pool hit (by this replica's counters) and that
/// the pool never holds more than `target` sandboxes. Returns the sessions.
async fn drain_pool(srv: &Server, template: &str, target: u64, n: usize) -> Vec<String> {
    let count = |p: &Value, field: &str| p[field].as_u64().unwrap();
    let mut sessions = Vec::new();
    for i in 0..n {
        eventually(Duration::from_secs(60), &format!("a ready pool sandbox for create {i}"), || async {
            let p = pool(srv, template).await;
            assert!(count(&p, "ready") + count(&p, "starting") <= target, "over-filled: {p}");
            (count(&p, "ready") > 0).then_some(())
        })
        .await;
        let before = pool(srv, template).await;
        sessions.push(srv.create_session(&srv.key, template).await);
        let after = pool(srv, template).await;
        assert_eq!(
            (count(&after, "hits"), count(&after, "misses")),
            (count(&before, "hits") + 1, count(&before, "misses")),
            "create {i} claimed a pool sandbox: {after}"
        );
    }
    sessions
}

#[tokio::test]
async fn warm_pool_claims_are_fresh_sandboxes_with_the_sessions_settings() {
    let dir = tempfile::Builder::new().prefix("sandbox-server-e2e-").tempdir().unwrap();
    let config = pools_config(dir.path(), "\"python-basic\" = 2");
    let srv = Server::start_in(dir, &[("SANDBOX_CONFIG", &config)]).await;
    wait_pool_ready(&srv, "python-basic", 2).await;
    assert_eq!(pool(&srv, "multi-language").await["ready"], 0, "pools are per template");
    // Each waits with its template's interpreter started for the first execution.
    let sockets: Vec<_> = std::fs::read_dir(srv.dir.path().join("sessions"))
        .unwrap()
        .map(|d| d.unwrap().path().join("run").join(sandbox_protocol::SOCKET_FILE_NAME))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(sockets.len(), 2, "{sockets:?}");
    for socket in &sockets {
        let client = sandbox_executor_client::ExecutorClient::unix(socket);
        eventually(Duration::from_secs(30), "a pre-started Python", || async {
            let spares = client.spares().await.unwrap();
            spares.iter().any(|s| s.language == sandbox_core::Language::Python).then_some(())
        })
        .await;
    }

    let mut claims = Vec::new();
    for memory in ["512Mi", "256Mi"] {
        let t = Instant::now();
        let body = json!({"template_id": "python-basic", "env_vars": {"CLAIMED": memory}, "memory": memory});
        let id = srv.create_session_with(&srv.key, body).await;
        claims.push(t.elapsed());
        // Fresh: an empty workspace; the session's own variables and memory limit apply.
        let r = srv.python(&id, "import os\ndef handler(e, c):\n    return [os.listdir('.'), os.environ['CLAIMED'], c.memory_limit_in_mb]").await;
        let mib: u64 = memory.trim_end_matches("Mi").parse().unwrap();
        assert_eq!(r["return_value"], json!([[], memory, mib]), "{r}");
    }
    let p = pool(&srv, "python-basic").await;
    assert_eq!((p["hits"].as_u64(), p["misses"].as_u64()), (Some(2), Some(0)), "{p}");
    println!("pool claims took {claims:?}");
    // A shape a pool sandbox cannot take (another disk size) starts a sandbox instead.
    srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "disk": "256Mi"})).await;
    assert_eq!(pool(&srv, "python-basic").await["misses"], 1);
    // The pool refills.
    wait_pool_ready(&srv, "python-basic", 2).await;
    let metrics =
        srv.http.get(srv.url("/metrics")).bearer_auth(&srv.key).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"sandbox_pool_claims_total{template="python-basic",result="hit"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("sandbox_pool_time_to_ready_seconds_bucket"));
}

#[tokio::test]
async fn a_killed_sandbox_is_recreated_with_its_workspace() {
    let srv = Server::start(&[("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1")]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let r = srv.python(&id, "open('kept.txt', 'w').write('still here')").await;
    assert_eq!(r["status"], "completed");
    let (_, before) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    let out = Command::new("docker").args(["kill", &format!("sandbox-{id}")]).output().unwrap();
    assert!(out.status.success());
    let text = eventually(Duration::from_secs(90), "the session to run again", || async {
        let (s, r, _) = srv
            .execute(&srv.key, &id, json!({"code": "print(open('kept.txt').read())", "language": "python"}))
            .await;
        (s == StatusCode::OK && r["status"] == "completed").then(|| r["stdout"].as_str().unwrap().to_owned())
    })
    .await;
    assert_eq!(text, "still here\n");
    let (_, after) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    assert_eq!(after["status"], "running");
    assert_ne!(after["container_id"], before["container_id"], "a new sandbox");
}

#[tokio::test]
async fn results_survive_a_killed_control_plane_and_nothing_runs_twice() {
    let mut srv = Server::start(&[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let code = "import time\nopen('runs.txt', 'a').write('run\\n')\ntime.sleep(3)\nprint('finished')";
    let path = format!("/api/v1/executions/sessions/{id}/execute");
    let (s, sub) =
        srv.call(Method::POST, &path, &srv.key, Some(json!({"code": code, "language": "python"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let exec = sub["execution_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(800)).await;
    srv.kill(libc::SIGKILL);
    // The execution finishes in its sandbox while no control plane is there.
    tokio::time::sleep(Duration::from_secs(4)).await;
    srv.spawn().await;
    let (_, r) = srv.call(Method::GET, &format!("/api/v1/executions/{exec}/result"), &srv.key, None).await;
    assert_eq!((r["status"].as_str(), r["stdout"].as_str()), (Some("completed"), Some("finished\n")), "{r}");
    let runs = srv.python(&id, "print(open('runs.txt').read().count('run'))").await;
    assert_eq!(runs["stdout"], "1\n", "the execution ran once");
}

#[tokio::test]
async fn sessions_left_creating_by_a_killed_control_plane_end_failed() {
    let mut srv = Server::start(&[
        ("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1"),
        ("SANDBOX_LIFECYCLE__CREATING_DEADLINE_SEC", "5"),
    ])
    .await;
    let (s, created) = srv
        .call(
            Method::POST,
            "/api/v1/sessions?wait=false",
            &srv.key,
            Some(json!({"template_id": "python-basic"})),
        )
        .await;
    assert_eq!((s, created["status"].as_str()), (StatusCode::CREATED, Some("creating")));
    let id = created["id"].as_str().unwrap().to_owned();
    srv.kill(libc::SIGKILL);
    srv.spawn().await;
    let (status, reason) = eventually(Duration::from_secs(60), "the session to leave creating", || async {
        let (_, s) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
        (s["status"] != "creating")
            .then(|| (s["status"].as_str().unwrap().to_owned(), s["error_message"].clone()))
    })
    .await;
    assert_eq!(status, "failed", "{reason}");
    // Its container, if the killed process made one, was removed.
    eventually(Duration::from_secs(30), "the abandoned container to go", || async {
        let out = Command::new("docker").args(["inspect", &format!("sandbox-{id}")]).output().unwrap();
        (!out.status.success()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_running_executions_finish() {
    let mut srv = Server::start(&[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let path = format!("/api/v1/executions/sessions/{id}/execute");
    let body = json!({"code": "import time\ntime.sleep(2)\nprint('drained')", "language": "python"});
    let (_, sub) = srv.call(Method::POST, &path, &srv.key, Some(body)).await;
    let exec = sub["execution_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    srv.kill(libc::SIGTERM);
    assert!(t.elapsed() > Duration::from_millis(1000), "the server waited for the execution");
    srv.spawn().await;
    let (_, r) = srv.call(Method::GET, &format!("/api/v1/executions/{exec}/status"), &srv.key, None).await;
    assert_eq!((r["status"].as_str(), r["stdout"].as_str()), (Some("completed"), Some("drained\n")), "{r}");
}

#[tokio::test]
async fn admission_limits_answer_429_and_503_with_retry_after() {
    let srv = Server::start(&[
        ("SANDBOX_CAPACITY__MAX_SESSIONS_PER_KEY", "2"),
        ("SANDBOX_CAPACITY__MAX_SESSIONS", "3"),
        ("SANDBOX_CAPACITY__MAX_EXECUTIONS_PER_SESSION", "1"),
    ])
    .await;
    let a = srv.create_session(&srv.key, "python-basic").await;
    srv.create_session(&srv.key, "python-basic").await;
    let check = |resp: reqwest::Response, status: StatusCode, code: &'static str| async move {
        assert_eq!(resp.status(), status);
        assert!(resp.headers().contains_key("retry-after"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
    };
    let create = |key: String| {
        srv.http
            .post(srv.url("/api/v1/sessions"))
            .bearer_auth(key)
            .json(&json!({"template_id": "python-basic"}))
            .send()
    };
    check(create(srv.key.clone()).await.unwrap(), StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    let (_, other) =
        srv.call(Method::POST, "/api/v1/admin/keys", &srv.key, Some(json!({"name": "other"}))).await;
    let other = other["key"].as_str().unwrap().to_owned();
    srv.create_session(&other, "python-basic").await;
    check(create(other).await.unwrap(), StatusCode::SERVICE_UNAVAILABLE, "capacity_exhausted").await;
    // A host this size cannot ever give a session 10 TiB.
    let (s, body) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            &srv.key,
            Some(json!({"template_id": "python-basic", "memory": "10Ti"})),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")),
        "{body}"
    );
    // One execution at a time in session `a`.
    let slow = srv.execute(&srv.key, &a, json!({"code": "import time; time.sleep(2)", "language": "python"}));
    let quick = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let url = srv.url(&format!("/api/v1/executions/sessions/{a}/execute-sync"));
        srv.http
            .post(url)
            .bearer_auth(&srv.key)
            .json(&json!({"code": "print(1)", "language": "python"}))
            .send()
            .await
            .unwrap()
    };
    let ((s, _, _), resp) = tokio::join!(slow, quick);
    assert_eq!(s, StatusCode::OK);
    check(resp, StatusCode::TOO_MANY_REQUESTS, "too_many_executions").await;
}

#[tokio::test]
async fn a_full_workspace_stops_at_the_sessions_disk_limit() {
    let srv = Server::start(&[]).await;
    let small =
        srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "disk": "64Mi"})).await;
    let other = srv.create_session(&srv.key, "python-basic").await;
    let fill = "n = 0\ntry:\n    with open('fill', 'wb') as f:\n        while n < 1024:\n            f.write(b'\\0' * (1 << 20)); f.flush(); n += 1\n    print('LEAK', n)\nexcept OSError as e:\n    print('LIMITED', n, e.errno)";
    let r = srv.python(&small, fill).await;
    let out = r["stdout"].as_str().unwrap();
    assert!(out.starts_with("LIMITED") && out.trim_end().ends_with(" 28"), "{r}");
    let written: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((40..=64).contains(&written), "stopped at {written} MiB of 64");
    // The other session's workspace is unaffected.
    let r = srv.python(&other, "open('x', 'wb').write(b'\\0' * (100 << 20)); print('ok')").await;
    assert_eq!(r["stdout"], "ok\n", "{r}");
}

#[tokio::test]
async fn idle_sessions_end_and_old_records_are_purged() {
    let srv = Server::start(&[
        ("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1"),
        ("SANDBOX_LIFECYCLE__RETENTION_SEC", "4"),
    ])
    .await;
    let idle = srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "timeout": 2})).await;
    let busy = srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "timeout": 2})).await;
    let working =
        srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "timeout": 2})).await;
    // So does a process running on its own, with no request or client about it.
    let (status, p) = srv
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{working}/processes"),
            &srv.key,
            Some(json!({"cmd": "sleep", "args": ["7"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    // An execution longer than the idle timeout keeps its session alive.
    let (_, r, _) = srv
        .execute(
            &srv.key,
            &busy,
            json!({"code": "import time; time.sleep(4); print('alive')", "language": "python"}),
        )
        .await;
    assert_eq!(r["stdout"], "alive\n", "{r}");
    let (_, s) = srv.call(Method::GET, &format!("/api/v1/sessions/{idle}"), &srv.key, None).await;
    assert_eq!(s["status"], "terminated", "{s}");
    assert!(s["error_message"].as_str().unwrap().starts_with("idle timeout"), "{s}");
    let (_, w) = srv.call(Method::GET, &format!("/api/v1/sessions/{working}"), &srv.key, None).await;
    assert_eq!(w["status"], "running", "a running process is activity: {w}");
    eventually(Duration::from_secs(30), "the session to end once its process has", || async {
        let (_, w) = srv.call(Method::GET, &format!("/api/v1/sessions/{working}"), &srv.key, None).await;
        (w["status"] == "terminated").then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "the record to be purged", || async {
        let (status, _) = srv.call(Method::GET, &format!("/api/v1/sessions/{idle}"), &srv.key, None).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(!srv.dir.path().join("sessions").join(&idle).exists(), "its files went with it");
}

/// A database of its own on the local MariaDB (scripts/mariadb.sh), dropped with the value (after
/// the servers declared later, which stop first).
struct MariaDb {
    name: String,
    url: String,
}

impl MariaDb {
    fn sql(sql: &str) -> bool {
        let out = Command::new("mariadb").args(["--socket=/run/mysqld/mysqld.sock", "-e", sql]).output();
        out.is_ok_and(|o| o.status.success())
    }

    fn create(purpose: &str) -> MariaDb {
        let name = format!("sandbox_{purpose}_{}", std::process::id());
        assert!(Self::sql(&format!("CREATE DATABASE `{name}`")), "MariaDB runs (scripts/mariadb.sh)");
        let url = format!("mysql://sandbox:sandbox@127.0.0.1:3306/{name}");
        MariaDb { name, url }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        Self::sql(&format!("DROP DATABASE `{}`", self.name));
    }
}

async fn health(srv: &Server) -> Value {
    srv.call(Method::GET, "/api/v1/health/detailed", &srv.key, None).await.1
}

async fn leads(srv: &Server) -> bool {
    health(srv).await["leader"].as_bool().unwrap_or(false)
}

#[tokio::test]
async fn two_replicas_on_one_database_elect_one_leader_and_hand_over() {
    let db = MariaDb::create("replicas");
    let env = [("SANDBOX_DATABASE_URL", db.url.as_str()), ("SANDBOX_LIFECYCLE__LEASE_TTL_SEC", "3")];
    let mut a = Server::start(&env).await;
    let b = Server::start(&env).await;
    // Over several lease periods, exactly one leads at every look.
    let started = Instant::now();
    let mut first = None;
    while started.elapsed() < Duration::from_secs(8) {
        let (la, lb) = (leads(&a).await, leads(&b).await);
        if la || lb {
            assert!(!(la && lb), "both replicas lead");
            first.get_or_insert(la);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(first, Some(true), "the first replica took the lease");
    // Killing the leader hands over within a lease period or two.
    a.kill(libc::SIGKILL);
    eventually(Duration::from_secs(15), "the other replica to lead", || async {
        leads(&b).await.then_some(())
    })
    .await;
}

/// A lease far longer than any test: nothing may wait for a lease to expire.
const LONG_LEASE: (&str, &str) = ("SANDBOX_LIFECYCLE__LEASE_TTL_SEC", "600");

#[tokio::test]
async fn pools_stay_warm_across_a_killed_control_plane() {
    let dir = tempfile::Builder::new().prefix("sandbox-server-e2e-").tempdir().unwrap();
    let config = pools_config(dir.path(), "\"python-basic\" = 2");
    let mut srv = Server::start_in(dir, &[("SANDBOX_CONFIG", &config), LONG_LEASE]).await;
    wait_pool_ready(&srv, "python-basic", 2).await;
    let before = health(&srv).await;
    assert_eq!(before["leader"], true);
    srv.kill(libc::SIGKILL);
    srv.spawn().await;
    assert_eq!(health(&srv).await["instance_id"], before["instance_id"], "the same replica");
    // More sessions than the pool holds: past the two sandboxes the killed process left, every
    // one is a sandbox the restarted process refilled.
    for id in drain_pool(&srv, "python-basic", 2, 6).await {
        assert_eq!(srv.python(&id, "print(1)").await["stdout"], "1\n");
    }
    assert!(leads(&srv).await, "the restarted process took its own lease back");
}

#[tokio::test]
async fn pools_stay_warm_when_the_leading_replica_is_killed() {
    let db = MariaDb::create("pools");
    let conf = tempfile::tempdir().unwrap();
    let config = pools_config(conf.path(), "\"python-basic\" = 2");
    let env = [("SANDBOX_DATABASE_URL", db.url.as_str()), ("SANDBOX_CONFIG", config.as_str()), LONG_LEASE];
    let mut a = Server::start(&env).await;
    let b = Server::start(&env).await;
    assert!(leads(&a).await && !leads(&b).await);
    wait_pool_ready(&b, "python-basic", 2).await;
    a.kill(libc::SIGKILL);
    // The leader's lease outlives the test: the survivor refills on its own claims.
    drain_pool(&b, "python-basic", 2, 6).await;
    assert!(!leads(&b).await);
    // The killed replica, started again, leads again at once; both keep the pool at its size.
    a.spawn().await;
    assert!(leads(&a).await, "the restarted replica took its own lease back");
    drain_pool(&b, "python-basic", 2, 3).await;
}
