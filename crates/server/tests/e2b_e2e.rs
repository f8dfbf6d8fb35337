//! The E2B-compatible API of the real server against real sandboxes: the control plane's
//! shapes and auth (`X-API-KEY`, another key's sandboxes), idempotent creates, metadata lists
//! and paging, timeouts, kill; and the data plane's routing and access tokens: every
//! data-plane route refuses a request without the sandbox's own token.

mod common;

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An E2B control-plane call with `X-API-KEY` (lower case, as the JS SDK sends it).
async fn e2b(
    server: &Server,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = server.http.request(method, server.url(path)).header("x-api-key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

/// A new key (e2b-shaped); its secret.
async fn new_key(server: &Server, name: &str) -> String {
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/admin/keys",
            &server.key,
            Some(json!({"name": name, "e2b_format": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let key = b["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("e2b_") && key.len() == 44, "{key}");
    key
}

/// A data-plane request to sandbox `id` with `token` (if any).
fn data(
    server: &Server,
    method: Method,
    path: &str,
    id: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut req = server.http.request(method, server.url(path)).header("E2b-Sandbox-Id", id);
    if let Some(t) = token {
        req = req.header("X-Access-Token", t);
    }
    req
}

/// The control plane answers with E2B's shapes; the data plane works with the sandbox's token
/// and refuses everything else, on every route.
#[tokio::test]
async fn the_e2b_api_serves_its_own_and_refuses_others() {
    let server = Server::start(&[]).await;
    let alice = new_key(&server, "alice").await;
    let bob = new_key(&server, "bob").await;

    // Auth: no key, a wrong key.
    let (s, b, _) = e2b(&server, Method::GET, "/v2/sandboxes", "nope", None).await;
    assert_eq!((s, b["code"].as_u64()), (StatusCode::UNAUTHORIZED, Some(401)), "{b}");

    // Create (v2) with an idempotency key; a retry answers with the same sandbox.
    let body = json!({"templateID": "base", "timeout": 300, "metadata": {"owner": "alice"}, "envVars": {"FOO": "bar"}});
    let mut req = server.http.post(server.url("/v2/sandboxes")).header("X-API-KEY", &alice).json(&body);
    req = req.header("Idempotency-Key", "create-1");
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let sbx: Value = resp.json().await.unwrap();
    let id = sbx["sandboxID"].as_str().unwrap().to_owned();
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");
    assert_eq!((sbx["templateID"].as_str(), sbx["alias"].as_str()), (Some("base"), Some("base")));
    assert_eq!((sbx["envdVersion"].as_str(), sbx["domain"].as_str()), (Some("0.5.2"), Some("localhost")));
    assert!(sbx["clientID"].is_string());
    let token = sbx["envdAccessToken"].as_str().unwrap().to_owned();
    assert_eq!(sbx["trafficAccessToken"], token.as_str());
    let retry = server
        .http
        .post(server.url("/v2/sandboxes"))
        .header("X-API-KEY", &alice)
        .header("Idempotency-Key", "create-1")
        .json(&body);
    let again: Value = retry.send().await.unwrap().json().await.unwrap();
    assert_eq!(again["sandboxID"], sbx["sandboxID"], "the same sandbox");

    // Detail: every field the Python SDK requires.
    let (s, d, _) = e2b(&server, Method::GET, &format!("/sandboxes/{id}"), &alice, None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    for f in [
        "templateID",
        "sandboxID",
        "clientID",
        "startedAt",
        "endAt",
        "envdVersion",
        "cpuCount",
        "memoryMB",
        "diskSizeMB",
        "state",
    ] {
        assert!(!d[f].is_null(), "{f} missing: {d}");
    }
    assert_eq!((d["state"].as_str(), d["metadata"]["owner"].as_str()), (Some("running"), Some("alice")));
    assert_eq!(d["envdAccessToken"], token.as_str());

    // Another key sees nothing of it.
    for (m, p) in [
        (Method::GET, format!("/sandboxes/{id}")),
        (Method::DELETE, format!("/sandboxes/{id}")),
        (Method::POST, format!("/sandboxes/{id}/connect")),
    ] {
        let (s, _, _) = e2b(&server, m, &p, &bob, Some(json!({"timeout": 10}))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    }
    let (_, listed, _) = e2b(&server, Method::GET, "/v2/sandboxes", &bob, None).await;
    assert_eq!(listed, json!([]));

    // Lists: metadata filter (double-encoded), state filter, paging.
    let second = e2b(
        &server,
        Method::POST,
        "/sandboxes",
        &alice,
        Some(json!({"templateID": "python-basic", "metadata": {"owner": "alice", "n": "2"}})),
    )
    .await
    .1;
    let second_id = second["sandboxID"].as_str().unwrap().to_owned();
    let (_, l, _) =
        e2b(&server, Method::GET, "/v2/sandboxes?metadata=owner%3Dalice%26n%3D2", &alice, None).await;
    assert_eq!(
        l.as_array().unwrap().iter().map(|s| s["sandboxID"].clone()).collect::<Vec<_>>(),
        vec![json!(second_id)]
    );
    let (_, l, h) = e2b(&server, Method::GET, "/v2/sandboxes?limit=1", &alice, None).await;
    assert_eq!(l.as_array().unwrap().len(), 1);
    let next = h["x-next-token"].to_str().unwrap().to_owned();
    let (_, l2, h2) =
        e2b(&server, Method::GET, &format!("/v2/sandboxes?limit=1&nextToken={next}"), &alice, None).await;
    assert_eq!(l2.as_array().unwrap().len(), 1);
    assert_ne!(l2[0]["sandboxID"], l[0]["sandboxID"]);
    assert!(h2.get("x-next-token").is_none());
    let (_, paused, _) = e2b(&server, Method::GET, "/v2/sandboxes?state=paused", &alice, None).await;
    assert_eq!(paused, json!([]));
    for (query, code) in [
        ("state=frozen", "invalid_state"),
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("nextToken=made-up", "invalid_next_token"),
        ("limit=many", "invalid_query"),
    ] {
        let (s, b, _) = e2b(&server, Method::GET, &format!("/v2/sandboxes?{query}"), &alice, None).await;
        assert_eq!((s, b["error_code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{query}: {b}");
    }

    // Timeout, connect (extends only), pause/resume answer honestly, metrics.
    let (s, _, _) =
        e2b(&server, Method::POST, &format!("/sandboxes/{id}/timeout"), &alice, Some(json!({"timeout": 60})))
            .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, c, _) = e2b(
        &server,
        Method::POST,
        &format!("/v2/sandboxes/{id}/connect"),
        &alice,
        Some(json!({"timeout": 30})),
    )
    .await;
    assert_eq!((s, c["sandboxID"].as_str()), (StatusCode::OK, Some(id.as_str())));
    let (_, d2, _) = e2b(&server, Method::GET, &format!("/sandboxes/{id}"), &alice, None).await;
    let end = |d: &Value| chrono::DateTime::parse_from_rfc3339(d["endAt"].as_str().unwrap()).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(d2["startedAt"].as_str().unwrap()).unwrap();
    assert!((end(&d2) - start).num_seconds() < 300, "shortened to 60 s: {d2}");
    let (s, p, _) = e2b(&server, Method::POST, &format!("/sandboxes/{id}/pause"), &alice, None).await;
    assert_eq!((s, p["code"].as_u64()), (StatusCode::NOT_IMPLEMENTED, Some(501)));
    let (s, _, _) = e2b(&server, Method::POST, &format!("/sandboxes/{id}/resume"), &alice, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, m, _) = e2b(&server, Method::GET, &format!("/sandboxes/{id}/metrics"), &alice, None).await;
    assert_eq!((s, m), (StatusCode::OK, json!([])));

    // The data plane with the token: health, a file written and read, a Connect call, a cell.
    let resp =
        data(&server, Method::POST, "/files?path=/home/user/a.txt", &id, Some(&token))
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(b"alpha".to_vec()).file_name("/home/user/a.txt"),
            ))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"path": "/home/user/a.txt", "name": "a.txt", "type": "file"}])
    );
    let read = data(&server, Method::GET, "/files?path=a.txt", &id, Some(&token)).send().await.unwrap();
    assert_eq!(read.bytes().await.unwrap().as_ref(), b"alpha");
    let stat = data(&server, Method::POST, "/filesystem.Filesystem/Stat", &id, Some(&token))
        .json(&json!({"path": "a.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stat.status(), StatusCode::OK);
    let stat: Value = stat.json().await.unwrap();
    assert_eq!(
        (stat["entry"]["type"].as_str(), stat["entry"]["size"].as_str()),
        (Some("FILE_TYPE_FILE"), Some("5")),
        "{stat}"
    );
    let cell = data(&server, Method::POST, "/execute", &id, Some(&token))
        .header("E2b-Sandbox-Port", "49999")
        .json(&json!({"code": "import os\nprint(os.environ['FOO'])\n6 * 7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cell.status(), StatusCode::OK);
    let text = cell.text().await.unwrap();
    let lines: Vec<Value> = text.split_terminator('\n').map(|l| serde_json::from_str(l).unwrap()).collect();
    let stdout: String =
        lines.iter().filter(|l| l["type"] == "stdout").map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(stdout, "bar\n", "{text}");
    assert!(
        lines.iter().any(|l| l["type"] == "result" && l["text"] == "42" && l["is_main_result"] == true),
        "{text}"
    );
    assert_eq!(lines.last().unwrap()["type"], "end_of_execution", "{text}");
    assert!(!text.contains("\n\n"), "no blank line");

    // What this server does not offer is refused by name, before anything runs.
    for (body, code) in [
        (json!({"code": "1", "context_id": "c", "language": "python"}), "invalid_request"),
        (json!({"code": "1", "env_vars": {"A": "1"}}), "env_vars_unsupported"),
    ] {
        let resp =
            data(&server, Method::POST, "/execute", &id, Some(&token)).json(&body).send().await.unwrap();
        let status = resp.status();
        let b: Value = resp.json().await.unwrap();
        assert_eq!((status, b["error_code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{b}");
    }
    let gzip = data(&server, Method::POST, "/files?path=c.txt", &id, Some(&token))
        .header("content-encoding", "gzip")
        .body("not really gzip")
        .send()
        .await
        .unwrap();
    let status = gzip.status();
    let b: Value = gzip.json().await.unwrap();
    assert_eq!(
        (status, b["error_code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_encoding")),
        "{b}"
    );

    // A client that goes away interrupts its cell: the default context is free again at once.
    let gone = data(&server, Method::POST, "/execute", &id, Some(&token))
        .timeout(std::time::Duration::from_secs(2))
        .json(&json!({"code": "import time\nprint('sleeping', flush=True)\ntime.sleep(120)"}))
        .send()
        .await;
    if let Ok(resp) = gone {
        assert!(resp.text().await.is_err(), "the cell cannot have finished");
    }
    let next = common::eventually(std::time::Duration::from_secs(30), "the interrupted context", || async {
        let resp = data(&server, Method::POST, "/execute", &id, Some(&token))
            .json(&json!({"code": "'free'"}))
            .send()
            .await
            .ok()?;
        let text = resp.text().await.ok()?;
        text.contains(r#""text":"'free'""#).then_some(text)
    })
    .await;
    assert!(next.ends_with("{\"type\":\"end_of_execution\"}\n"), "{next}");

    // Without the token, with another sandbox's, with a made-up one: refused on every route.
    let other_token = second["envdAccessToken"].as_str().unwrap();
    let routes: [(Method, &str, Option<Value>); 9] = [
        (Method::GET, "/files?path=a.txt", None),
        (Method::POST, "/files?path=b.txt", None),
        (Method::POST, "/filesystem.Filesystem/Stat", Some(json!({"path": "a.txt"}))),
        (Method::POST, "/filesystem.Filesystem/ListDir", Some(json!({"path": "/home/user"}))),
        (Method::POST, "/process.Process/List", Some(json!({}))),
        (Method::POST, "/execute", Some(json!({"code": "1"}))),
        (Method::POST, "/contexts", Some(json!({}))),
        (Method::GET, "/contexts", None),
        (Method::POST, "/contexts/x/restart", None),
    ];
    for (m, p, b) in &routes {
        for t in [None, Some(other_token), Some("0000")] {
            let mut req = data(&server, m.clone(), p, &id, t);
            if let Some(b) = b {
                req = req.json(b);
            }
            let s = req.send().await.unwrap().status();
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {p} with {t:?}");
        }
    }
    // A token alone reaches its own sandbox only; a sandbox that does not exist is a 502.
    let own = server
        .http
        .get(server.url("/files?path=a.txt"))
        .header("X-Access-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(own.bytes().await.unwrap().as_ref(), b"alpha");
    let theirs = server
        .http
        .get(server.url("/files?path=a.txt"))
        .header("X-Access-Token", other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND, "the other sandbox has no a.txt");
    let gone =
        data(&server, Method::GET, "/files?path=a.txt", "doesnotexist", Some(&token)).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(gone.json::<Value>().await.unwrap()["message"], "The sandbox was not found");

    // Kill: 204, then 404; its data plane is gone.
    let (s, _, _) = e2b(&server, Method::DELETE, &format!("/sandboxes/{id}"), &alice, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = e2b(&server, Method::DELETE, &format!("/sandboxes/{id}"), &alice, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let health = data(&server, Method::GET, "/health", &id, None).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::BAD_GATEWAY);
    e2b(&server, Method::DELETE, &format!("/sandboxes/{second_id}"), &alice, None).await;
}
