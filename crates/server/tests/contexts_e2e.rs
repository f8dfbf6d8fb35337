//! Code contexts and rich results through the REST API of the real server, against real
//! sandboxes: state between executions, main results and structured errors, one execution at a
//! time, interrupt, timeout and loss, a recreated sandbox, limits and bad input, isolation
//! between contexts, and display outputs on streams.

mod common;

use common::{Server, eventually, lose_sandbox};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// Starts a context; its body.
async fn context(server: &Server, session: &str, body: Value) -> Value {
    let (s, b) = server
        .call(Method::POST, &format!("/api/v1/sessions/{session}/contexts"), &server.key, Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

/// Runs `code` in context `ctx` with execute-sync: status and body.
async fn cell(server: &Server, session: &str, ctx: &str, code: &str) -> (StatusCode, Value) {
    let (s, b, _) = server.execute(&server.key, session, json!({"code": code, "context_id": ctx})).await;
    (s, b)
}

/// Runs `code` in context `ctx` and expects it to complete; the execution.
async fn ok_cell(server: &Server, session: &str, ctx: &str, code: &str) -> Value {
    let (s, b) = cell(server, session, ctx, code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "completed", "{b}");
    b
}

/// The `text/plain` of an execution's main result.
fn main_text(e: &Value) -> Option<&str> {
    e["results"].as_array()?.iter().find(|r| r["is_main_result"] == true)?["data"]["text/plain"].as_str()
}

async fn get_context(server: &Server, session: &str, ctx: &str) -> (StatusCode, Value) {
    server.call(Method::GET, &format!("/api/v1/sessions/{session}/contexts/{ctx}"), &server.key, None).await
}

/// How many executions a session has recorded.
async fn executions(server: &Server, session: &str) -> Value {
    let path = format!("/api/v1/executions/sessions/{session}/executions");
    server.call(Method::GET, &path, &server.key, None).await.1["total"].clone()
}

async fn post(server: &Server, path: &str) -> (StatusCode, Value) {
    server.call(Method::POST, path, &server.key, None).await
}

/// Variables, imports and functions persist; the last expression is the main result; an
/// exception is a structured error; the execution records name their context.
#[tokio::test]
async fn a_context_keeps_state_and_answers_like_a_notebook() {
    let server = Server::start(&[]).await;
    let session = server.create_session(&server.key, "python-basic").await;
    let ctx = context(&server, &session, json!({"language": "python"})).await;
    assert_eq!((ctx["language"].as_str(), ctx["cwd"].as_str()), (Some("python"), Some("/workspace")));
    assert!(matches!(ctx["status"].as_str(), Some("idle" | "starting")), "{ctx}");
    let id = ctx["id"].as_str().unwrap();
    assert!(id.starts_with("ctx_"), "{id}");

    let first = ok_cell(&server, &session, id, "import math\nx = 41\ndef f(v):\n    return v * 2").await;
    assert_eq!(first["context_id"], id);
    assert_eq!(first["results"], json!([]), "an assignment has no value");
    let second = ok_cell(&server, &session, id, "print('seen', math.pi > 3)\nf(x + 1) // 2").await;
    assert_eq!(main_text(&second), Some("42"), "{second}");
    assert_eq!(second["stdout"], "seen True\n");
    assert_eq!(second["language"], "python", "the context's language");

    let (s, failed) = cell(&server, &session, id, "y = 1\n1 / 0").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["name"], "ZeroDivisionError", "{failed}");
    assert_eq!(failed["error"]["value"], "division by zero");
    assert!(failed["error"]["traceback"].as_str().unwrap().contains("ZeroDivisionError"));
    assert!(failed["stderr"].as_str().unwrap().contains("ZeroDivisionError"), "the text stays on stderr");
    assert_eq!(
        main_text(&ok_cell(&server, &session, id, "y").await),
        Some("1"),
        "state before the error stays"
    );

    // The record keeps it all, and a stateless execution still has the structured error.
    let (_, stored) = server
        .call(
            Method::GET,
            &format!("/api/v1/executions/{}/result", second["id"].as_str().unwrap()),
            &server.key,
            None,
        )
        .await;
    assert_eq!((stored["context_id"].as_str(), main_text(&stored)), (Some(id), Some("42")), "{stored}");
    let (_, stateless, _) = server
        .execute(&server.key, &session, json!({"code": "raise ValueError('no')", "language": "python"}))
        .await;
    assert_eq!(
        (stateless["error"]["name"].as_str(), stateless["context_id"].as_str()),
        (Some("ValueError"), None)
    );

    let (_, listed) =
        server.call(Method::GET, &format!("/api/v1/sessions/{session}/contexts"), &server.key, None).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["execution_count"], 4, "the four cells: {listed}");
    assert_eq!(listed["items"][0]["status"], "idle");

    // Deleted: gone, and executions in it are 404.
    let (s, _) = server
        .call(Method::DELETE, &format!("/api/v1/sessions/{session}/contexts/{id}"), &server.key, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(get_context(&server, &session, id).await.0, StatusCode::NOT_FOUND);
    let (s, b) = cell(&server, &session, id, "x").await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("context_not_found")), "{b}");
}

/// A second execution while one runs is 409 `context_busy` and leaves no record; an interrupt
/// ends the running one `failed` with `KeyboardInterrupt` and the context keeps its state.
#[tokio::test]
async fn one_execution_at_a_time_and_an_interrupt_keeps_the_state() {
    let server = Server::start(&[]).await;
    let session = server.create_session(&server.key, "python-basic").await;
    let id =
        context(&server, &session, json!({"language": "python"})).await["id"].as_str().unwrap().to_owned();
    ok_cell(&server, &session, &id, "kept = 'yes'").await;
    let (s, started) = server
        .call(
            Method::POST,
            &format!("/api/v1/executions/sessions/{session}/execute"),
            &server.key,
            Some(json!({"code": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", "context_id": &id, "timeout": 120})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    let running = started["execution_id"].as_str().unwrap().to_owned();
    let before = executions(&server, &session).await;

    let (s, busy) = cell(&server, &session, &id, "1").await;
    assert_eq!((s, busy["code"].as_str()), (StatusCode::CONFLICT, Some("context_busy")), "{busy}");
    assert_eq!(executions(&server, &session).await, before, "a refused execution leaves no record");
    let (_, c) = get_context(&server, &session, &id).await;
    assert_eq!(
        (c["status"].as_str(), c["running_execution_id"].as_str()),
        (Some("busy"), Some(running.as_str()))
    );

    let (s, c) = post(&server, &format!("/api/v1/sessions/{session}/contexts/{id}/interrupt")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let ended = eventually(Duration::from_secs(30), "the interrupted execution ends", || async {
        let (_, e) = server
            .call(Method::GET, &format!("/api/v1/executions/{running}/status"), &server.key, None)
            .await;
        (e["status"] != "running").then_some(e)
    })
    .await;
    assert_eq!(
        (ended["status"].as_str(), ended["error"]["name"].as_str()),
        (Some("failed"), Some("KeyboardInterrupt")),
        "{ended}"
    );
    assert_eq!(main_text(&ok_cell(&server, &session, &id, "kept").await), Some("'yes'"));
}

/// A cell that ignores interrupts is killed at its timeout and the context is `lost`: the next
/// execution is 409 `context_lost`, never a fresh interpreter, until a restart gives it one.
#[tokio::test]
async fn a_stuck_cell_loses_its_context_until_restarted() {
    let server = Server::start(&[]).await;
    let session = server.create_session(&server.key, "python-basic").await;
    let id =
        context(&server, &session, json!({"language": "python"})).await["id"].as_str().unwrap().to_owned();
    ok_cell(&server, &session, &id, "x = 1").await;
    let (s, e, _) = server
        .execute(
            &server.key,
            &session,
            json!({"code": "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)",
                   "context_id": &id, "timeout": 1}),
        )
        .await;
    assert_eq!((s, e["status"].as_str()), (StatusCode::OK, Some("timeout")), "{e}");
    let (_, c) = get_context(&server, &session, &id).await;
    assert_eq!(c["status"], "lost", "{c}");
    assert!(c["message"].as_str().is_some_and(|m| !m.is_empty()), "{c}");
    let (s, b) = cell(&server, &session, &id, "x").await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("context_lost")), "{b}");

    let (s, c) = post(&server, &format!("/api/v1/sessions/{session}/contexts/{id}/restart")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (_, e) = cell(&server, &session, &id, "x").await;
    assert_eq!(
        (e["status"].as_str(), e["error"]["name"].as_str()),
        (Some("failed"), Some("NameError")),
        "fresh: {e}"
    );
    assert_eq!(main_text(&ok_cell(&server, &session, &id, "2 + 2").await), Some("4"));
}

/// Contexts of a sandbox that was recreated are `lost` (their state went with it); a restart
/// starts them again in the new sandbox, as they were created.
#[tokio::test]
async fn a_recreated_sandbox_leaves_its_contexts_lost() {
    let server = Server::start(&[("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1")]).await;
    let session = server.create_session(&server.key, "python-basic").await;
    server.python(&session, "import os\nos.makedirs('/workspace/data', exist_ok=True)").await;
    let id =
        context(&server, &session, json!({"language": "python", "cwd": "data", "env_vars": {"MODE": "ctx"}}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
    ok_cell(&server, &session, &id, "x = 1").await;
    lose_sandbox(&session);
    eventually(Duration::from_secs(90), "the sandbox is recreated and answers", || async {
        let (s, e, _) =
            server.execute(&server.key, &session, json!({"code": "print(1)", "language": "python"})).await;
        (s == StatusCode::OK && e["status"] == "completed").then_some(())
    })
    .await;
    let (_, c) = get_context(&server, &session, &id).await;
    assert_eq!(c["status"], "lost", "{c}");
    assert!(c["message"].as_str().unwrap().contains("recreated"), "{c}");
    let (s, b) = cell(&server, &session, &id, "x").await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("context_lost")), "{b}");
    let (s, c) = post(&server, &format!("/api/v1/sessions/{session}/contexts/{id}/restart")).await;
    assert_eq!((s, c["cwd"].as_str()), (StatusCode::OK, Some("/workspace/data")), "{c}");
    let e = ok_cell(&server, &session, &id, "import os\n(os.getcwd(), os.environ['MODE'])").await;
    assert_eq!(main_text(&e), Some("('/workspace/data', 'ctx')"), "as it was created: {e}");
}

/// Bad input of every kind is a clear error with a stable code and changes nothing; the
/// number of contexts per session is bounded.
#[tokio::test]
async fn bad_requests_and_limits() {
    let server = Server::start(&[("SANDBOX_EXECUTOR__MAX_CONTEXTS", "2")]).await;
    let session = server.create_session(&server.key, "python-basic").await;
    let path = format!("/api/v1/sessions/{session}/contexts");
    for (body, code, field) in [
        (json!({"language": "ruby"}), "validation_error", "language"),
        (json!({"language": "python", "cwd": "no/such/dir"}), "validation_error", "cwd"),
        (json!({"language": "python", "cwd": "../.."}), "validation_error", "cwd"),
        (json!({"language": "python", "env_vars": {"1BAD": "x"}}), "validation_error", "env_vars"),
        (json!({"language": "javascript"}), "language_unavailable", "language"),
    ] {
        let (s, b) = server.call(Method::POST, &path, &server.key, Some(body.clone())).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{body}: {b}");
        assert!(b.to_string().contains(field), "{body}: {b}");
    }
    let (s, b) =
        server.call(Method::POST, &path, &server.key, Some(json!({"language": "python", "extra": 1}))).await;
    assert!(s.is_client_error(), "{b}");
    let (_, listed) = server.call(Method::GET, &path, &server.key, None).await;
    assert_eq!(listed["total"], 0, "nothing was created: {listed}");

    let a =
        context(&server, &session, json!({"language": "python"})).await["id"].as_str().unwrap().to_owned();
    let _b = context(&server, &session, json!({"language": "shell"})).await;
    let (s, b) = server.call(Method::POST, &path, &server.key, Some(json!({"language": "python"}))).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_contexts")), "{b}");
    let (s, _) = server.call(Method::DELETE, &format!("{path}/{a}"), &server.key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let c =
        context(&server, &session, json!({"language": "python"})).await["id"].as_str().unwrap().to_owned();

    // Executions: an unknown context, another session's, a language that is not the context's,
    // an event (contexts have no handlers), no language without a context.
    let other = server.create_session(&server.key, "python-basic").await;
    for (session, body, status, code) in [
        (&session, json!({"code": "1", "context_id": "ctx_nope"}), 404, "context_not_found"),
        (&other, json!({"code": "1", "context_id": &c}), 404, "context_not_found"),
        (&session, json!({"code": "1", "context_id": &c, "language": "shell"}), 422, "validation_error"),
        (&session, json!({"code": "1", "context_id": &c, "event": {"a": 1}}), 422, "validation_error"),
        (&session, json!({"code": "1"}), 422, "validation_error"),
    ] {
        let (s, b, _) = server.execute(&server.key, session, body.clone()).await;
        assert_eq!((s.as_u16(), b["code"].as_str()), (status, Some(code)), "{body}: {b}");
    }
    assert_eq!(
        get_context(&server, &other, &c).await.0,
        StatusCode::NOT_FOUND,
        "contexts belong to their session"
    );

    // Another key sees neither the session nor its contexts.
    let (_, k) =
        server.call(Method::POST, "/api/v1/admin/keys", &server.key, Some(json!({"name": "other"}))).await;
    let other_key = k["key"].as_str().unwrap();
    let (s, _) = server.call(Method::GET, &path, other_key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = server.call(Method::DELETE, &format!("{path}/{c}"), other_key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(get_context(&server, &session, &c).await.0, StatusCode::OK, "still there");
}

/// Contexts share the workspace but not their processes, `/tmp` or variables; JavaScript and
/// shell contexts keep their state too.
#[tokio::test]
async fn contexts_are_isolated_from_each_other_and_every_language_keeps_state() {
    let server = Server::start(&[]).await;
    let session = server.create_session(&server.key, "multi-language").await;
    let a =
        context(&server, &session, json!({"language": "python"})).await["id"].as_str().unwrap().to_owned();
    let b =
        context(&server, &session, json!({"language": "python"})).await["id"].as_str().unwrap().to_owned();
    ok_cell(
        &server,
        &session,
        &a,
        "import subprocess\nsecret = 's3cr3t'\nopen('/tmp/mark', 'w').write('a')\n\
         open('/workspace/shared.txt', 'w').write('from a')\nsleeper = subprocess.Popen(['sleep', '4242'])",
    )
    .await;
    let seen = ok_cell(
        &server,
        &session,
        &b,
        "import os\n\
         def cmdlines():\n    for p in filter(str.isdigit, os.listdir('/proc')):\n        try:\n            yield open(f'/proc/{p}/cmdline').read()\n        except OSError:\n            pass\n\
         (os.path.exists('/tmp/mark'), any('4242' in c for c in cmdlines()), open('/workspace/shared.txt').read(), 'secret' in globals())",
    )
    .await;
    assert_eq!(main_text(&seen), Some("(False, False, 'from a', False)"), "{seen}");
    let own = ok_cell(&server, &session, &a, "sleeper.poll() is None, secret").await;
    assert_eq!(main_text(&own), Some("(True, 's3cr3t')"), "A's process and state are A's: {own}");

    let js = context(&server, &session, json!({"language": "javascript"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_cell(&server, &session, &js, "let n = 20; function twice(v) { return v * 2 }").await;
    let e = ok_cell(&server, &session, &js, "({total: twice(n) + 2})").await;
    assert!(main_text(&e).is_some_and(|t| t.contains("42")), "{e}");
    let sh =
        context(&server, &session, json!({"language": "shell"})).await["id"].as_str().unwrap().to_owned();
    ok_cell(&server, &session, &sh, "mkdir -p /workspace/d && cd /workspace/d && export V=kept").await;
    let e = ok_cell(&server, &session, &sh, "pwd; echo $V").await;
    assert_eq!(e["stdout"], "/workspace/d\nkept\n", "{e}");
}

/// Display outputs arrive as `display` events on a stream and in the result; pandas and
/// matplotlib give HTML and PNG without saving files.
#[tokio::test]
async fn rich_results_stream_and_come_back_in_the_result() {
    let server = Server::start(&[]).await;
    let session = server.create_session(&server.key, "python-datascience").await;
    let id =
        context(&server, &session, json!({"language": "python"})).await["id"].as_str().unwrap().to_owned();
    let code = "import pandas as pd, matplotlib.pyplot as plt\n\
                class H:\n    def _repr_html_(self):\n        return '<b>hi</b>'\n\
                display(H())\n\
                plt.plot([1, 2, 3])\nplt.show()\n\
                pd.DataFrame({'a': [1, 2]})";
    let resp = server
        .http
        .post(server.url(&format!("/api/v1/executions/sessions/{session}/execute-sync?stream=true")))
        .bearer_auth(&server.key)
        .json(&json!({"code": code, "context_id": &id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let events: Vec<(String, Value)> =
        common::sse_events(&text).into_iter().map(|(_, name, data)| (name, data)).collect();
    let displays: Vec<&Value> = events.iter().filter(|(n, _)| n == "display").map(|(_, v)| v).collect();
    assert!(displays.iter().any(|d| d["data"]["text/html"] == "<b>hi</b>"), "{text}");
    assert!(displays.iter().any(|d| d["data"]["image/png"].is_string()), "{text}");
    let (_, result) = events.last().unwrap().clone();
    assert_eq!(events.last().unwrap().0, "result", "{text}");
    assert_eq!(result["status"], "completed", "{result}");
    let results = result["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{result}");
    let main = results.iter().find(|r| r["is_main_result"] == true).unwrap();
    assert!(main["data"]["text/html"].as_str().unwrap().contains("<table"), "{main}");
    let png = results.iter().find_map(|r| r["data"]["image/png"].as_str()).unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(result["results_truncated"], false);
}
