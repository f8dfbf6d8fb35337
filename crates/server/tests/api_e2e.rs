//! The real `sandbox-server` binary, on a real Docker daemon, driven only through HTTP.

mod common;

use common::{Server, sse_events};
use futures_util::StreamExt;
use reqwest::StatusCode;
use sandbox_e2e::conformance;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::process::Command;
use std::time::{Duration, Instant};

fn observed(r: &Value, seconds: f64) -> conformance::Observed {
    conformance::Observed {
        status: r["status"].as_str().unwrap_or_default().to_owned(),
        stdout: r["stdout"].as_str().unwrap_or_default().to_owned(),
        stderr: r["stderr"].as_str().unwrap_or_default().to_owned(),
        error_message: r["error_message"].as_str().map(str::to_owned),
        exit_code: r["exit_code"].as_i64(),
        return_value: r.get("return_value").cloned().filter(|v| !v.is_null()),
        seconds,
    }
}

#[tokio::test]
async fn conformance_corpus_passes_through_execute_sync() {
    let srv = Server::start(&[]).await;
    let mut session = srv.create_session(&srv.key, "multi-language").await;
    let cases = conformance::cases();
    let mut failures = Vec::new();
    for case in &cases {
        let mut body = json!({"code": case.code, "language": case.language, "timeout": case.timeout});
        if let Some(e) = &case.event {
            body["event"] = e.clone();
        }
        let (s, r, secs) = srv.execute(&srv.key, &session, body).await;
        assert_eq!(s, StatusCode::OK, "{}: {r}", case.name);
        let mut probs = conformance::check(case, &observed(&r, secs));
        // Every finished execution carries its timing and metrics.
        if r["started_at"].is_null()
            || r["completed_at"].is_null()
            || r["execution_time"].is_null()
            || r["metrics"]["duration_ms"].is_null()
        {
            probs.push(format!("missing timing fields: {r}"));
        }
        if r["status"] != "completed" && r["error_message"].is_null() {
            probs.push("no error_message".into());
        }
        if probs.is_empty() && case.then_healthy {
            let (_, h, _) =
                srv.execute(&srv.key, &session, json!({"code": "print('ok')", "language": "python"})).await;
            if h["status"] != "completed" {
                probs.push(format!("unhealthy afterwards: {h}"));
            }
        }
        println!(
            "{:<30} {:<10} {:>6.2}s {}",
            case.name,
            r["status"].as_str().unwrap_or("?"),
            secs,
            probs.join("; ")
        );
        if !probs.is_empty() {
            failures.push(format!("{}: {}", case.name, probs.join("; ")));
            session = srv.create_session(&srv.key, "multi-language").await;
        }
    }
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
    // The history is there, with a real total.
    let (_, page) = srv
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/executions/sessions/{session}/executions?limit=5&offset=2"),
            &srv.key,
            None,
        )
        .await;
    assert!(page["total"].as_u64().unwrap() >= 27, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
}

async fn upload(srv: &Server, session: &str, path: &str, data: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(data).file_name("upload.bin"));
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/sessions/{session}/files/upload?path={path}")))
        .bearer_auth(&srv.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn files_round_trip_byte_exactly_and_symlinks_lead_nowhere() {
    let srv = Server::start(&[("SANDBOX_LIMITS__MAX_UPLOAD_MB", "60")]).await;
    let session = srv.create_session(&srv.key, "python-basic").await;
    // 50 MiB of non-repeating bytes.
    let data: Vec<u8> = (0..50u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let digest = Sha256::digest(&data);
    let (s, body) = upload(&srv, &session, "data/big.bin", data).await;
    assert_eq!((s, body["size"].as_u64()), (StatusCode::OK, Some(50 << 20)), "{body}");
    let (_, r, _) = srv
        .execute(&srv.key, &session, json!({"code": "import hashlib\nprint(hashlib.sha256(open('data/big.bin','rb').read()).hexdigest())", "language": "python"}))
        .await;
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r["stdout"].as_str().unwrap().trim(), hex);
    let resp = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{session}/files/data/big.bin")))
        .bearer_auth(&srv.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], (50u64 << 20).to_string().as_str());
    let mut hasher = Sha256::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.unwrap());
    }
    assert_eq!(hasher.finalize(), digest);

    // Listing shows sizes and times; a text file comes back with its MIME type.
    let (s, up) = upload(&srv, &session, "notes/", b"hello".to_vec()).await;
    assert_eq!(
        (s, up["path"].as_str(), up["file_path"].as_str()),
        (StatusCode::OK, Some("notes/upload.bin"), Some("/workspace/notes/upload.bin")),
        "{up}"
    );
    let (_, listing) =
        srv.call(reqwest::Method::GET, &format!("/api/v1/sessions/{session}/files"), &srv.key, None).await;
    let big = listing["files"].as_array().unwrap().iter().find(|f| f["path"] == "data/big.bin").unwrap();
    assert_eq!(big["size"], 50u64 << 20);
    assert!(big["modified_at"].is_string());
    // The Python control plane's names too, for its clients.
    assert_eq!(
        (big["container_path"].as_str(), &big["modified_time"]),
        (Some("/workspace/data/big.bin"), &big["modified_at"])
    );
    assert!(big["etag"].as_str().is_some_and(|e| e.starts_with('"')), "{big}");
    assert_eq!(listing["count"], listing["total"]);
    let stamp = big["modified_at"].as_str().unwrap();
    assert_eq!((stamp.len(), &stamp[19..20], &stamp[23..]), (24, ".", "Z"), "milliseconds, always: {stamp}");
    assert!(listing["files"].as_array().unwrap().iter().any(|f| f["path"] == "notes/upload.bin"));

    // Symlinks planted by code cannot reach the container's or the host's files.
    let plant = "import os\nos.symlink('/etc/passwd', 'passwd')\nos.symlink('/run/sandbox', 'run')\nos.symlink('../../../../../../../../etc', 'up')";
    let (_, r, _) = srv.execute(&srv.key, &session, json!({"code": plant, "language": "python"})).await;
    assert_eq!(r["status"], "completed", "{r}");
    for path in ["passwd", "run/executor.sock", "up/hostname", "../etc/passwd", "%2Fetc%2Fpasswd"] {
        let resp = srv
            .http
            .get(srv.url(&format!("/api/v1/sessions/{session}/files/{path}")))
            .bearer_auth(&srv.key)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{path}: {status} {body}"
        );
        assert!(
            ["invalid_path", "file_not_found", "not_found"].contains(&body["code"].as_str().unwrap_or("")),
            "{path}: {body}"
        );
    }
    let (s, body) = upload(&srv, &session, "up/evil", b"x".to_vec()).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")), "{body}");
    for bad in ["../escape", "/abs", "a%00b"] {
        let (s, body) = upload(&srv, &session, bad, b"x".to_vec()).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_path")),
            "{bad}: {body}"
        );
    }

    // Past the limit: 413, and nothing is left behind.
    let (s, body) = upload(&srv, &session, "too-big.bin", vec![0u8; 61 << 20]).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
        "{body}"
    );
    let (_, listing) =
        srv.call(reqwest::Method::GET, &format!("/api/v1/sessions/{session}/files"), &srv.key, None).await;
    assert!(!listing.to_string().contains("too-big"), "{listing}");
}

#[tokio::test]
async fn keys_cannot_reach_each_others_sessions() {
    let srv = Server::start(&[]).await;
    let (_, a) =
        srv.call(reqwest::Method::POST, "/api/v1/admin/keys", &srv.key, Some(json!({"name": "a"}))).await;
    let (_, b) =
        srv.call(reqwest::Method::POST, "/api/v1/admin/keys", &srv.key, Some(json!({"name": "b"}))).await;
    let (a, b) = (a["key"].as_str().unwrap().to_owned(), b["key"].as_str().unwrap().to_owned());
    let session = srv.create_session(&a, "python-basic").await;
    // The longest client-chosen id works end to end (its socket path exceeds sun_path).
    let long_id = "L".repeat(64);
    let (s, body) = srv
        .call(
            reqwest::Method::POST,
            "/api/v1/sessions",
            &a,
            Some(json!({"template_id": "python-basic", "id": long_id})),
        )
        .await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::CREATED, Some("running")), "{body}");
    let (_, r, _) = srv.execute(&a, &long_id, json!({"code": "print('long')", "language": "python"})).await;
    assert_eq!(r["stdout"], "long\n");
    let (s, r, _) = srv.execute(&a, &session, json!({"code": "print(6*7)", "language": "python"})).await;
    assert_eq!((s, r["stdout"].as_str()), (StatusCode::OK, Some("42\n")));
    let exec_id = r["id"].as_str().unwrap().to_owned();
    let (s, _, _) = srv.execute(&b, &session, json!({"code": "print(1)", "language": "python"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for path in [
        format!("/api/v1/sessions/{session}"),
        format!("/api/v1/executions/{exec_id}/result"),
        format!("/api/v1/sessions/{session}/files"),
    ] {
        let (s, body) = srv.call(reqwest::Method::GET, &path, &b, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (_, list) = srv.call(reqwest::Method::GET, "/api/v1/sessions", &b, None).await;
    assert_eq!(list["total"], 0);
    let (s, _) =
        srv.call(reqwest::Method::GET, &format!("/api/v1/executions/{exec_id}/result"), &a, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn lifecycle_async_executions_and_streaming() {
    let srv = Server::start(&[]).await;
    let k = srv.key.clone();
    let (s, created) = srv
        .call(
            reqwest::Method::POST,
            "/api/v1/sessions?wait=false",
            &k,
            Some(json!({"template_id": "python-basic", "env_vars": {"GREETING": "hi"}, "timeout": 120})),
        )
        .await;
    assert_eq!((s, created["status"].as_str()), (StatusCode::CREATED, Some("creating")));
    let id = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = srv.call(reqwest::Method::GET, &format!("/api/v1/sessions/{id}"), &k, None).await;
        if s["status"] == "running" {
            assert_eq!(s["timeout"], 120);
            break;
        }
        assert!(Instant::now() < deadline && s["status"] == "creating", "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Asynchronous: 201 at once, then status until done, then the result.
    let (s, sub) = srv.call(reqwest::Method::POST, &format!("/api/v1/executions/sessions/{id}/execute"), &k,
        Some(json!({"code": "import os, time\ntime.sleep(1)\nprint(os.environ['GREETING'])", "language": "python"}))).await;
    assert_eq!((s, sub["status"].as_str()), (StatusCode::CREATED, Some("running")), "{sub}");
    let exec = sub["execution_id"].as_str().unwrap().to_owned();
    let (s, early) =
        srv.call(reqwest::Method::GET, &format!("/api/v1/executions/{exec}/result"), &k, None).await;
    assert_eq!(
        (s, early["status"].as_str()),
        (StatusCode::OK, Some("running")),
        "the current state: {early}"
    );
    let result = loop {
        let (_, st) =
            srv.call(reqwest::Method::GET, &format!("/api/v1/executions/{exec}/status"), &k, None).await;
        if st["status"] == "completed" {
            break st;
        }
        assert!(st["status"] == "running", "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(result["stdout"], "hi\n");

    // Streamed: chunks arrive before the result.
    let resp = srv.http.post(srv.url(&format!("/api/v1/executions/sessions/{id}/execute-sync?stream=true"))).bearer_auth(&k)
        .json(&json!({"code": "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(0.3)", "language": "python"}))
        .send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events.first(), Some(&"started"), "{text}");
    assert_eq!(events.last(), Some(&"result"), "{text}");
    assert!(events.iter().filter(|e| **e == "stdout").count() >= 2, "{text}");

    // Terminate keeps the record and refuses executions; delete removes everything.
    let (s, t) = srv.call(reqwest::Method::POST, &format!("/api/v1/sessions/{id}/terminate"), &k, None).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::OK, Some("terminated")));
    let container = t["container_id"].as_str().unwrap().to_owned();
    let gone = Command::new("docker").args(["inspect", &container]).output().unwrap();
    assert!(!gone.status.success(), "container still exists after terminate");
    let (s, _, _) = srv.execute(&k, &id, json!({"code": "print(1)", "language": "python"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let workspace = srv.dir.path().join("sessions").join(&id);
    assert!(workspace.exists());
    let resp =
        srv.http.delete(srv.url(&format!("/api/v1/sessions/{id}"))).bearer_auth(&k).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!workspace.exists(), "workspace removed");
    let (s, _) = srv.call(reqwest::Method::GET, &format!("/api/v1/executions/{exec}/status"), &k, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "executions removed with the session");
}

/// Cancelling a running execution kills its processes (a program that keeps appending to a
/// workspace file stops) and ends it `cancelled`; cancelling again, or cancelling a finished
/// execution, answers with it as it is. A cell of a context takes the interpreter with it.
#[tokio::test]
async fn cancel_kills_a_running_execution_once() {
    let srv = Server::start(&[]).await;
    let k = srv.key.clone();
    let id = srv.create_session(&k, "python-basic").await;
    let code = "import os, subprocess, time\n\
                subprocess.Popen(['sh', '-c', 'while true; do echo x >> /workspace/child.log; sleep 0.05; done'])\n\
                while True:\n    open('/workspace/parent.log', 'a').write('x')\n    time.sleep(0.05)";
    let (s, sub) = srv
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/executions/sessions/{id}/execute"),
            &k,
            Some(json!({"code": code, "language": "python", "timeout": 120})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let exec = sub["execution_id"].as_str().unwrap().to_owned();
    let size = |name: &str| {
        let path = srv.dir.path().join("sessions").join(&id).join("workspace").join(name);
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while size("child.log") == 0 || size("parent.log") == 0 {
        assert!(Instant::now() < deadline, "the program never started writing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = format!("/api/v1/executions/{exec}/cancel");
    let (s, e) = srv.call(reqwest::Method::POST, &path, &k, None).await;
    assert_eq!((s, e["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{e}");
    assert!(e["error_message"].as_str().unwrap().contains("cancelled"), "{e}");
    let (child, parent) = (size("child.log"), size("parent.log"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((size("child.log"), size("parent.log")), (child, parent), "nothing of it runs any more");
    let (s, again) = srv.call(reqwest::Method::POST, &path, &k, None).await;
    assert_eq!(
        (s, again["status"].as_str(), &again["completed_at"]),
        (StatusCode::OK, Some("cancelled"), &e["completed_at"])
    );

    let (_, done, _) = srv.execute(&k, &id, json!({"code": "print(1)", "language": "python"})).await;
    let (s, same) = srv
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/executions/{}/cancel", done["id"].as_str().unwrap()),
            &k,
            None,
        )
        .await;
    assert_eq!(
        (s, same["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "a finished execution stays as it ended"
    );
    let (s, _) = srv.call(reqwest::Method::POST, "/api/v1/executions/exec_nope/cancel", &k, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A request retried with the same `Idempotency-Key` answers with what the first one made and
/// never runs twice; the key cannot be reused for another request.
#[tokio::test]
async fn retried_requests_with_an_idempotency_key_run_once() {
    let srv = Server::start(&[]).await;
    let k = srv.key.clone();
    let post = |path: String, key: &'static str, body: Value| {
        let req = srv.http.post(srv.url(&path)).bearer_auth(&k).header("idempotency-key", key).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    let create = json!({"template_id": "python-basic"});
    let (s1, first) = post("/api/v1/sessions".into(), "create-1", create.clone()).await;
    let (s2, again) = post("/api/v1/sessions".into(), "create-1", create.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED), "{first} {again}");
    assert_eq!(first["id"], again["id"], "the same session");
    let (_, list) = srv.call(reqwest::Method::GET, "/api/v1/sessions", &k, None).await;
    assert_eq!(list["total"], 1, "one session made: {list}");
    let id = first["id"].as_str().unwrap().to_owned();

    let code =
        json!({"code": "open('/workspace/ran.txt', 'a').write('x')\nprint('done')", "language": "python"});
    let path = format!("/api/v1/executions/sessions/{id}/execute-sync");
    let (s1, e1) = post(path.clone(), "exec-1", code.clone()).await;
    let (s2, e2) = post(path.clone(), "exec-1", code.clone()).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!((e1["id"].clone(), e2["status"].as_str()), (e2["id"].clone(), Some("completed")), "{e1} {e2}");
    let (s3, e3) = post(format!("/api/v1/executions/sessions/{id}/execute"), "exec-2", code.clone()).await;
    let (s4, e4) = post(format!("/api/v1/executions/sessions/{id}/execute"), "exec-2", code.clone()).await;
    assert_eq!(
        (s3, s4, &e3["execution_id"]),
        (StatusCode::CREATED, StatusCode::CREATED, &e4["execution_id"])
    );
    let ran = srv.python(&id, "import time\ntime.sleep(1)\nprint(open('/workspace/ran.txt').read())").await;
    assert_eq!(ran["stdout"], "xx\n", "two keys, two runs, whatever the retries");

    let (s, reused) = post(path.clone(), "exec-1", json!({"code": "print(2)", "language": "python"})).await;
    assert_eq!(
        (s, reused["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")),
        "{reused}"
    );
    let (s, bad) = post(path, "has space", code).await;
    assert_eq!(
        (s, bad["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_idempotency_key")),
        "{bad}"
    );

    // What the key made is gone: doing it again would do it twice.
    let (s, _) = srv.call(reqwest::Method::DELETE, &format!("/api/v1/sessions/{id}"), &k, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, gone) = post("/api/v1/sessions".into(), "create-1", create).await;
    assert_eq!((s, gone["code"].as_str()), (StatusCode::CONFLICT, Some("idempotency_key_used")), "{gone}");
}

/// `GET /api/v1/executions/{exec}/stream`, from after event `last` when given.
async fn follow(srv: &Server, exec: &str, last: Option<u64>) -> Vec<(Option<u64>, String, Value)> {
    let mut req = srv.http.get(srv.url(&format!("/api/v1/executions/{exec}/stream"))).bearer_auth(&srv.key);
    if let Some(n) = last {
        req = req.header("last-event-id", n.to_string());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    sse_events(&resp.text().await.unwrap())
}

/// An execution's stream can be followed from anywhere: from the start, from after the last
/// event a dropped stream delivered (`Last-Event-ID`), and after a restart of the server (its
/// result at once).
#[tokio::test]
async fn streams_can_be_re_attached() {
    let mut srv = Server::start(&[]).await;
    let k = srv.key.clone();
    let id = srv.create_session(&k, "python-basic").await;
    let code = "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.3)";
    let (s, sub) = srv
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/executions/sessions/{id}/execute"),
            &k,
            Some(json!({"code": code, "language": "python"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let exec = sub["execution_id"].as_str().unwrap().to_owned();
    // Attached while it runs: everything from the start, numbered, ending with the result.
    let all = follow(&srv, &exec, None).await;
    let names: Vec<&str> = all.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!((names.first(), names.last()), (Some(&"started"), Some(&"result")), "{all:?}");
    let ids: Vec<u64> = all.iter().map(|(i, _, _)| i.expect("every event has an id")).collect();
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>(), "{all:?}");
    let out: String =
        all.iter().filter(|(_, n, _)| n == "stdout").map(|(_, _, d)| d["data"].as_str().unwrap()).collect();
    assert_eq!(out, "0\n1\n2\n3\n");
    assert_eq!(all.last().unwrap().2["status"], "completed");

    // Re-attached after event 2: only what followed it.
    let rest = follow(&srv, &exec, Some(2)).await;
    assert_eq!(rest.iter().map(|(i, _, _)| i.unwrap()).collect::<Vec<_>>(), ids[3..].to_vec(), "{rest:?}");
    // After a restart the output is history: the result, at once.
    srv.kill(libc::SIGTERM);
    srv.spawn().await;
    let after = follow(&srv, &exec, None).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!((after[0].1.as_str(), after[0].2["stdout"].as_str()), ("result", Some("0\n1\n2\n3\n")));
    let resp = srv
        .http
        .get(srv.url(&format!("/api/v1/executions/{exec}/stream")))
        .bearer_auth(&k)
        .header("last-event-id", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
