//! Refusals no other test needs, each provoked by name through the public API of the real
//! server with real sandboxes: what a workspace's entries refuse (a directory, a FIFO, an
//! unreadable file, a full disk), the limits on processes and directory watches, a process
//! asked for what it has not got, a retried request racing its first, an upload cut short, a
//! sandbox that does not answer, and package installs that cannot start or cannot finish. Every answer is also
//! checked against the OpenAPI document (see `common::spec`). Also: open streams do not hold a
//! stopping server past its grace.

mod common;

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The status and the error code of an answer.
fn refusal((status, body): (StatusCode, Value)) -> (StatusCode, String) {
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

fn is(status: StatusCode, code: &str) -> (StatusCode, String) {
    (status, code.to_owned())
}

#[tokio::test]
async fn workspace_entries_refuse_what_they_cannot_be() {
    let srv = Server::start(&[]).await;
    let id = srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "disk": "64Mi"})).await;
    let r = srv
        .python(
            &id,
            "import os\nos.makedirs('d/sub')\nopen('d/sub/f', 'w').write('x')\nos.mkfifo('pipe')\n\
             open('locked', 'w').write('s')\nos.chmod('locked', 0)",
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    let file = |p: &str| format!("/api/v1/sessions/{id}/files/{p}");
    for (path, status, code) in [
        ("d", StatusCode::CONFLICT, "is_a_directory"),
        ("pipe", StatusCode::UNPROCESSABLE_ENTITY, "not_a_regular_file"),
        ("locked", StatusCode::FORBIDDEN, "permission_denied"),
    ] {
        let answer = srv.call(Method::GET, &file(path), &srv.key, None).await;
        assert_eq!(refusal(answer), is(status, code), "{path}");
    }
    let delete = srv.call(Method::DELETE, &file("d"), &srv.key, None).await;
    assert_eq!(refusal(delete), is(StatusCode::CONFLICT, "directory_not_empty"));
    assert_eq!(srv.python(&id, "print(open('d/sub/f').read())").await["stdout"], "x\n");

    // 100 MiB into a 64 MiB disk: 507, and nothing of it is left.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(vec![7u8; 100 << 20]).file_name("big.bin"));
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/sessions/{id}/files/upload?path=big/")))
        .bearer_auth(&srv.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    common::spec::check("POST", &format!("/api/v1/sessions/{id}/files/upload"), status.as_u16(), &body);
    assert_eq!(refusal((status, body)), is(StatusCode::INSUFFICIENT_STORAGE, "workspace_full"));
    let left = srv.python(&id, "import os\nprint(os.listdir('big') if os.path.exists('big') else [])").await;
    assert_eq!(left["stdout"], "[]\n", "{left}");
}

#[tokio::test]
async fn processes_and_watches_are_limited_and_a_process_refuses_what_it_has_not_got() {
    let mut srv = Server::start(&[
        ("SANDBOX_EXECUTOR__MAX_RUNNING_PROCESSES", "2"),
        ("SANDBOX_LIFECYCLE__SHUTDOWN_GRACE_SEC", "2"),
    ])
    .await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let processes = format!("/api/v1/sessions/{id}/processes");
    let sleeper = json!({"cmd": "sleep", "args": ["120"]});
    let mut pids = Vec::new();
    for _ in 0..2 {
        let (s, p) = srv.call(Method::POST, &processes, &srv.key, Some(sleeper.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        pids.push(p["pid"].as_u64().unwrap());
    }
    let third = srv.call(Method::POST, &processes, &srv.key, Some(sleeper)).await;
    assert_eq!(refusal(third), is(StatusCode::TOO_MANY_REQUESTS, "too_many_processes"));
    // A process without a terminal cannot be resized.
    let resize = srv
        .call(
            Method::POST,
            &format!("{processes}/{}/pty", pids[0]),
            &srv.key,
            Some(json!({"cols": 80, "rows": 24})),
        )
        .await;
    assert_eq!(refusal(resize), is(StatusCode::CONFLICT, "process_conflict"));

    // Sixteen directory watches at once; the seventeenth is refused until one stops.
    let watch = || {
        srv.http
            .get(srv.url(&format!("/api/v1/sessions/{id}/files-watch?path=")))
            .bearer_auth(&srv.key)
            .send()
    };
    let mut open = Vec::new();
    for _ in 0..16 {
        let resp = watch().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    let refused = watch().await.unwrap();
    let status = refused.status();
    let body: Value = refused.json().await.unwrap();
    common::spec::check("GET", &format!("/api/v1/sessions/{id}/files-watch"), status.as_u16(), &body);
    assert_eq!(refusal((status, body)), is(StatusCode::TOO_MANY_REQUESTS, "too_many_watchers"));
    drop(open.pop());
    common::eventually(std::time::Duration::from_secs(30), "a watch slot to free", || async {
        let resp = watch().await.unwrap();
        (resp.status() == StatusCode::OK).then_some(())
    })
    .await;

    // Streams a client keeps open do not hold a stopping server past its grace (2 s here).
    let stopping = std::time::Instant::now();
    srv.kill(libc::SIGTERM);
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(20),
        "stopped after {:?}",
        stopping.elapsed()
    );
    drop(open);
}

#[tokio::test]
async fn a_retry_racing_its_first_request_is_told_to_wait() {
    let srv = Server::start(&[]).await;
    let create = |key: &'static str| {
        srv.http
            .post(srv.url("/api/v1/sessions"))
            .bearer_auth(&srv.key)
            .header("Idempotency-Key", key)
            .json(&json!({"template_id": "python-basic"}))
            .send()
    };
    // Starting a sandbox takes far longer than a request's round trip: the second request
    // arrives while the first is being carried out.
    let (first, second) = tokio::join!(create("race-1"), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        create("race-1").await
    });
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.status(), StatusCode::CREATED);
    let status = second.status();
    let body: Value = second.json().await.unwrap();
    common::spec::check("POST", "/api/v1/sessions", status.as_u16(), &body);
    assert_eq!(refusal((status, body)), is(StatusCode::CONFLICT, "idempotency_key_in_use"));
    // Once done, the retry answers what the first made.
    let created: Value = first.json().await.unwrap();
    let retried: Value = create("race-1").await.unwrap().json().await.unwrap();
    assert_eq!(retried["id"], created["id"]);
}

#[tokio::test]
async fn an_upload_cut_short_and_a_sandbox_that_does_not_answer_are_told_apart() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start(&[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;

    // The executor's socket is gone before the server first reached it (a sandbox that does not
    // answer): 503 with Retry-After, and the same request works again once it is back.
    let socket = srv.dir.path().join("sessions").join(&id).join("run/executor.sock");
    let moved = socket.with_file_name("elsewhere.sock");
    std::fs::rename(&socket, &moved).unwrap();
    let files = format!("/api/v1/sessions/{id}/files");
    let resp = srv.http.get(srv.url(&files)).bearer_auth(&srv.key).send().await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "5");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    common::spec::check("GET", &files, status.as_u16(), &body);
    assert_eq!(refusal((status, body)), is(StatusCode::SERVICE_UNAVAILABLE, "sandbox_unavailable"));
    std::fs::rename(&moved, &socket).unwrap();
    assert_eq!(srv.call(Method::GET, &files, &srv.key, None).await.0, StatusCode::OK);

    // The client says a megabyte is coming, sends a kilobyte and stops sending.
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/sessions/{id}/files/upload?path=cut.bin HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 1048576\r\n\r\n",
        srv.key
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&[b'x'; 1024]).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains(r#""code":"upload_interrupted""#), "{answer}");
    let listed = srv.call(Method::GET, &format!("/api/v1/sessions/{id}/files"), &srv.key, None).await;
    assert_eq!(listed.1["total"], 0, "nothing of the cut upload is left: {}", listed.1);
}

#[tokio::test]
async fn an_install_that_cannot_start_or_cannot_finish_says_which() {
    // An installer below Docker's smallest memory limit (6 MiB): the engine refuses to run it.
    let srv = Server::start(&[("SANDBOX_DEPENDENCIES__MEMORY", "4Mi")]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let install = format!("/api/v1/sessions/{id}/dependencies/install");
    let body = json!({"dependencies": [{"name": "sbx-hello"}]});
    let answer = srv.call(Method::POST, &install, &srv.key, Some(body.clone())).await;
    assert_eq!(refusal(answer), is(StatusCode::SERVICE_UNAVAILABLE, "installer_unavailable"));
    drop(srv);

    // An index slower than the longest install allowed (5 s here).
    let index = sandbox_e2e::pypi::TestIndex::start().await;
    index.publish("sbx-hello", "1.0.0", &[], "VERSION = '1.0.0'\n");
    index.set_delay(std::time::Duration::from_secs(60));
    let srv = Server::start(&[
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1"),
        ("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "http://127.0.0.1:*/"),
        ("SANDBOX_DEPENDENCIES__INSTALL_TIMEOUT_SEC", "5"),
        ("SANDBOX_DEPENDENCIES__MAX_INSTALL_TIMEOUT_SEC", "5"),
    ])
    .await;
    let id = srv
        .create_session_with(
            &srv.key,
            json!({"template_id": "python-basic", "python_package_index_url": index.url()}),
        )
        .await;
    let install = format!("/api/v1/sessions/{id}/dependencies/install");
    let answer = srv.call(Method::POST, &install, &srv.key, Some(body)).await;
    assert_eq!(refusal(answer), is(StatusCode::GATEWAY_TIMEOUT, "dependency_install_timeout"));
    let session = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await.1;
    assert_eq!(session["dependency_install_error_code"], "dependency_install_timeout", "{session}");
}
