//! Processes through the REST API of the real server, against real sandboxes: a streamed
//! start, a background process listed, followed and signalled, standard input, bad input, and
//! another key's session refused.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Server, eventually};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// `bash -l -c <script>` as a start request.
fn bash(script: &str) -> Value {
    json!({"cmd": "/bin/bash", "args": ["-l", "-c", script]})
}

/// An SSE response read until its `end` event or until `stop` holds for the events so far:
/// (name, data) pairs, with `stdout`/`stderr` data decoded to text.
async fn events(resp: reqwest::Response, stop: impl Fn(&[(String, Value)]) -> bool) -> Vec<(String, Value)> {
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut seen: Vec<(String, Value)> = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(i) = text.find("\n\n") {
                let block: String = text.drain(..i + 2).collect();
                let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
                let (Some(name), Some(data)) = (field("event: "), field("data: ")) else { continue };
                let mut data: Value = serde_json::from_str(&data).unwrap();
                if name == "stdout" || name == "stderr" {
                    let bytes = STANDARD.decode(data["data"].as_str().unwrap()).unwrap();
                    data = Value::String(String::from_utf8(bytes).unwrap());
                }
                let end = name == "end";
                seen.push((name, data));
                if end || stop(&seen) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("the stream answers within a minute");
    seen
}

fn text_of(events: &[(String, Value)], name: &str) -> String {
    events.iter().filter(|(n, _)| n == name).map(|(_, d)| d.as_str().unwrap().to_owned()).collect()
}

async fn start_stream(server: &Server, session: &str, body: Value) -> reqwest::Response {
    let resp = server
        .http
        .post(server.url(&format!("/api/v1/sessions/{session}/processes?stream=true")))
        .bearer_auth(&server.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp
}

async fn follow(server: &Server, session: &str, pid: u64) -> reqwest::Response {
    let path = format!("/api/v1/sessions/{session}/processes/{pid}/stream");
    let resp = server.http.get(server.url(&path)).bearer_auth(&server.key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

#[tokio::test]
async fn processes_run_stream_take_input_and_take_signals() {
    let server = Server::start(&[]).await;
    let session = server
        .create_session_with(
            &server.key,
            json!({"template_id": "python-basic", "env_vars": {"FROM_SESSION": "s"}}),
        )
        .await;
    let base = format!("/api/v1/sessions/{session}/processes");

    // Streamed from its start: start, output, end.
    let mut req = bash("echo \"hi $FROM_SESSION $OWN\"; pwd; echo oops >&2; exit 4");
    req["envs"] = json!({"OWN": "o"});
    let seen = events(start_stream(&server, &session, req).await, |_| false).await;
    assert_eq!(seen[0].0, "start", "{seen:?}");
    let pid = seen[0].1["pid"].as_u64().unwrap();
    assert_eq!(text_of(&seen, "stdout"), "hi s o\n/workspace\n");
    assert_eq!(text_of(&seen, "stderr"), "oops\n");
    let end = &seen.last().unwrap().1;
    assert_eq!(
        (end["exit_code"].as_i64(), end["status"].as_str()),
        (Some(4), Some("exit status 4")),
        "{end}"
    );
    let (s, info) = server.call(Method::GET, &format!("{base}/{pid}"), &server.key, None).await;
    assert_eq!(
        (s, info["state"].as_str(), info["end"]["exit_code"].as_i64()),
        (StatusCode::OK, Some("exited"), Some(4))
    );

    // In the background: listed, followed from a later moment, killed.
    let (s, bg) = server
        .call(Method::POST, &base, &server.key, Some(json!({"cmd": "bash", "args": ["-c", "while true; do echo tick; sleep 0.2; done"], "tag": "ticker"})))
        .await;
    assert_eq!(
        (s, bg["state"].as_str(), bg["tag"].as_str()),
        (StatusCode::CREATED, Some("running"), Some("ticker")),
        "{bg}"
    );
    let bg_pid = bg["pid"].as_u64().unwrap();
    let (_, listed) = server.call(Method::GET, &base, &server.key, None).await;
    assert_eq!(listed["total"], 2, "{listed}");
    let follower = follow(&server, &session, bg_pid).await;
    let ticks = events(follower, |e| text_of(e, "stdout").matches("tick").count() >= 2).await;
    assert_eq!(ticks[0], ("start".to_owned(), json!({"pid": bg_pid})));
    let follower = follow(&server, &session, bg_pid).await;
    let (s, _) = server
        .call(
            Method::POST,
            &format!("{base}/{bg_pid}/signal"),
            &server.key,
            Some(json!({"signal": "SIGKILL"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let rest = events(follower, |_| false).await;
    assert_eq!(rest.last().unwrap().1["status"], "signal: killed", "{rest:?}");
    let (s, b) = server
        .call(
            Method::POST,
            &format!("{base}/{bg_pid}/signal"),
            &server.key,
            Some(json!({"signal": "SIGTERM"})),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("process_exited")), "{b}");

    // Standard input, raw and as JSON, then closed.
    let (s, cat) = server
        .call(
            Method::POST,
            &base,
            &server.key,
            Some(json!({"cmd": "cat", "stdin": true, "timeout_ms": 60000})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{cat}");
    let cat_pid = cat["pid"].as_u64().unwrap();
    let follower = follow(&server, &session, cat_pid).await;
    let raw = server
        .http
        .post(server.url(&format!("{base}/{cat_pid}/stdin")))
        .bearer_auth(&server.key)
        .body("raw line\n")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::NO_CONTENT);
    let (s, _) = server
        .call(
            Method::POST,
            &format!("{base}/{cat_pid}/stdin"),
            &server.key,
            Some(json!({"data": STANDARD.encode("json line\n")})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = server.call(Method::POST, &format!("{base}/{cat_pid}/stdin/close"), &server.key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let seen = events(follower, |_| false).await;
    assert_eq!(text_of(&seen, "stdout"), "raw line\njson line\n");
    assert_eq!(seen.last().unwrap().1["exit_code"], 0);

    // Bad input changes nothing.
    for (body, status, code) in [
        (json!({"cmd": ""}), StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
        (json!({"cmd": "ls", "cwd": "/etc"}), StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
        (json!({"cmd": "ls", "pty": {"cols": 0, "rows": 24}}), StatusCode::BAD_REQUEST, "invalid_process"),
    ] {
        let (s, b) = server.call(Method::POST, &base, &server.key, Some(body.clone())).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{body}: {b}");
    }
    let (s, b) = server
        .call(
            Method::POST,
            &format!("{base}/{cat_pid}/signal"),
            &server.key,
            Some(json!({"signal": "SIGSTOP"})),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")), "{b}");
    let (s, b) = server.call(Method::GET, &format!("{base}/999"), &server.key, None).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("process_not_found")), "{b}");
    let (_, listed) = server.call(Method::GET, &base, &server.key, None).await;
    assert_eq!(listed["total"], 3, "{listed}");

    // Another key sees no such session, on every route.
    let (_, k) =
        server.call(Method::POST, "/api/v1/admin/keys", &server.key, Some(json!({"name": "other"}))).await;
    let other = k["key"].as_str().unwrap();
    for (method, path, body) in [
        (Method::POST, base.clone(), Some(bash("echo no"))),
        (Method::GET, base.clone(), None),
        (Method::GET, format!("{base}/{cat_pid}"), None),
        (Method::GET, format!("{base}/{cat_pid}/stream"), None),
        (Method::POST, format!("{base}/{cat_pid}/stdin/close"), None),
        (Method::POST, format!("{base}/{cat_pid}/signal"), Some(json!({"signal": "SIGKILL"}))),
    ] {
        let (s, b) = server.call(method, &path, other, body).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("session_not_found")),
            "{path}: {b}"
        );
    }

    // A process ends with its session.
    let (_, sleeper) = server.call(Method::POST, &base, &server.key, Some(bash("sleep 600"))).await;
    let follower = follow(&server, &session, sleeper["pid"].as_u64().unwrap()).await;
    let (s, _) =
        server.call(Method::POST, &format!("/api/v1/sessions/{session}/terminate"), &server.key, None).await;
    assert_eq!(s, StatusCode::OK);
    let seen = events(follower, |_| false).await;
    assert_ne!(seen.last().map(|e| e.0.as_str()), Some("stdout"), "{seen:?}");
    let (s, b) = server.call(Method::GET, &base, &server.key, None).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("session_not_running")), "{b}");
    eventually(Duration::from_secs(30), "the sandbox is gone", || async {
        let out = std::process::Command::new("docker")
            .args(["ps", "-q", "--filter", &format!("name=sandbox-{session}")])
            .output()
            .unwrap();
        out.stdout.is_empty().then_some(())
    })
    .await;
}
