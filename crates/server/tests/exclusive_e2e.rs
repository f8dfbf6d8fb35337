//! Tests that disturb the whole machine — they kill dockerd, or load it with hundreds of
//! sandboxes, or measure latency next to a noisy neighbour — so they run alone, one at a time,
//! after every other test (scripts/test.sh runs this binary separately with one thread).

mod common;

use common::{Server, eventually};
use futures_util::{StreamExt, stream};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn docker_answers() -> bool {
    // `docker info` exits 0 even without a daemon (it prints the client part); ask the server.
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Starts dockerd again, through the same script that starts it on a new machine.
fn start_dockerd() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup.sh");
    let out = Command::new(script).arg("services").output().expect("setup.sh runs");
    assert!(out.status.success(), "setup.sh services: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn exclusive_sessions_recover_after_dockerd_is_killed() {
    let srv = Server::start(&[("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1")]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    srv.python(&id, "open('kept.txt', 'w').write('survived')").await;
    let pid = String::from_utf8(Command::new("pidof").arg("dockerd").output().unwrap().stdout).unwrap();
    let pid: i32 = pid.split_whitespace().next().expect("dockerd runs").parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // While the engine is gone the API answers with clear errors, not hangs.
    let (s, body) = srv
        .call(Method::POST, "/api/v1/sessions", &srv.key, Some(json!({"template_id": "python-basic"})))
        .await;
    assert!(s.is_client_error() || s.is_server_error(), "{s} {body}");
    assert!(body["code"].is_string(), "{body}");
    start_dockerd();
    assert!(docker_answers());
    let text = eventually(Duration::from_secs(120), "the session to run again", || async {
        let (s, r, _) = srv
            .execute(&srv.key, &id, json!({"code": "print(open('kept.txt').read())", "language": "python"}))
            .await;
        (s == StatusCode::OK && r["status"] == "completed").then(|| r["stdout"].as_str().unwrap().to_owned())
    })
    .await;
    assert_eq!(text, "survived\n");
}

#[tokio::test]
async fn exclusive_load_200_sessions_and_2000_executions_lose_nothing() {
    let dir = tempfile::Builder::new().prefix("sandbox-server-e2e-").tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[pools]\ndefault_size = 0\n[pools.sizes]\n\"python-basic\" = 20\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml").display().to_string();
    let srv = Server::start_in(
        dir,
        &[
            ("SANDBOX_CONFIG", config.as_str()),
            ("SANDBOX_CAPACITY__MAX_SESSIONS_PER_KEY", "1000"),
            // 200 sessions of the template's 1 GiB pass the default 100 GiB per key: this test
            // is about load, not quotas (those have tests of their own).
            ("SANDBOX_CAPACITY__MAX_DISK_PER_KEY", "0"),
            ("SANDBOX_LIMITS__SANDBOX_START_TIMEOUT_SEC", "600"),
        ],
    )
    .await;
    eventually(Duration::from_secs(180), "the pool to fill", || async {
        let (_, pools) = srv.call(Method::GET, "/api/v1/pools", &srv.key, None).await;
        let p = pools["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["template_id"] == "python-basic")
            .cloned()
            .unwrap();
        (p["ready"] == 20).then_some(())
    })
    .await;

    let t = Instant::now();
    let creates = (0..200).map(|_| {
        srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "memory": "512Mi"}))
    });
    let sessions: Vec<String> = futures_util::future::join_all(creates).await;
    let created_in = t.elapsed();
    assert_eq!(sessions.iter().collect::<std::collections::HashSet<_>>().len(), 200);

    let t = Instant::now();
    let jobs = (0..2000).map(|i| {
        let session = sessions[i % 200].clone();
        let srv = &srv;
        async move {
            let (s, r, _) = srv
                .execute(&srv.key, &session, json!({"code": format!("print({i} * 2)"), "language": "python"}))
                .await;
            (i, s, r)
        }
    });
    let results: Vec<_> = stream::iter(jobs).buffer_unordered(16).collect().await;
    let ran_in = t.elapsed();
    let mut wrong = Vec::new();
    for (i, s, r) in &results {
        if *s != StatusCode::OK || r["status"] != "completed" || r["stdout"] != format!("{}\n", i * 2) {
            wrong.push(format!("{i}: {s} {r}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 2000 executions went wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    // Nothing stuck: every execution each session recorded is finished.
    for s in &sessions {
        let (_, page) = srv
            .call(
                Method::GET,
                &format!("/api/v1/executions/sessions/{s}/executions?limit=100"),
                &srv.key,
                None,
            )
            .await;
        assert_eq!(page["total"], 10, "{page}");
        assert!(page["items"].as_array().unwrap().iter().all(|e| e["status"] == "completed"), "{page}");
    }
    let (_, pools) = srv.call(Method::GET, "/api/v1/pools", &srv.key, None).await;
    println!("200 sessions in {created_in:?}, 2000 executions in {ran_in:?}; pools: {pools}");

    // Nothing leaks: deleting the sessions removes every one of their sandboxes and mounts.
    let deletes = sessions
        .iter()
        .map(|s| srv.http.delete(srv.url(&format!("/api/v1/sessions/{s}"))).bearer_auth(&srv.key).send());
    for resp in futures_util::future::join_all(deletes).await {
        assert_eq!(resp.unwrap().status(), StatusCode::NO_CONTENT);
    }
    let names = String::from_utf8(
        Command::new("docker").args(["ps", "-a", "--format", "{{.Names}}"]).output().unwrap().stdout,
    )
    .unwrap();
    let leaked: Vec<_> =
        sessions.iter().filter(|s| names.lines().any(|n| n == format!("sandbox-{s}"))).collect();
    assert!(leaked.is_empty(), "containers left: {leaked:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!sessions.iter().any(|s| mounts.contains(s.as_str())), "workspace mounts left");
}

async fn median_latency(srv: &Server, session: &str, n: usize) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..n {
        let (s, r, secs) =
            srv.execute(&srv.key, session, json!({"code": "print(1)", "language": "python"})).await;
        assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("completed")), "{r}");
        samples.push(Duration::from_secs_f64(secs));
    }
    samples.sort();
    samples[n / 2]
}

#[tokio::test]
async fn exclusive_a_noisy_neighbour_does_not_slow_other_sessions_down() {
    let srv = Server::start(&[]).await;
    let noisy = srv
        .create_session_with(&srv.key, json!({"template_id": "python-basic", "cpu": "1", "memory": "512Mi"}))
        .await;
    let quiet = srv
        .create_session_with(&srv.key, json!({"template_id": "python-basic", "cpu": "1", "memory": "512Mi"}))
        .await;
    median_latency(&srv, &quiet, 5).await; // warm up
    let calm = median_latency(&srv, &quiet, 21).await;

    let path = format!("/api/v1/executions/sessions/{noisy}/execute");
    let body = |code: &str| Some(json!({"code": code, "language": "python", "timeout": 60}));
    let (hog, _) = srv.call(Method::POST, &path, &srv.key, body("while True:\n    pass")).await;
    let (bomb, _) = srv
        .call(
            Method::POST,
            &path,
            &srv.key,
            body("chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))"),
        )
        .await;
    assert_eq!((hog, bomb), (StatusCode::CREATED, StatusCode::CREATED));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loud = median_latency(&srv, &quiet, 21).await;
    println!(
        "median print(1) next to a quiet neighbour {calm:?}, next to a CPU hog and a memory bomb {loud:?}"
    );
    assert!(loud <= calm * 2, "latency went from {calm:?} to {loud:?}");
}
