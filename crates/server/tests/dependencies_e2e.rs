//! Python packages for sessions, end to end: the real server binary, real installer containers
//! running the template's pip on no network, and a real package index on loopback serving wheels
//! this test builds, reached through the server's egress proxy (the operator lists 127.0.0.1 in
//! `egress.allowed_addresses`; sandboxes never reach it).

mod common;

use common::{Server, eventually};
use reqwest::{Method, StatusCode};
use sandbox_e2e::pypi::TestIndex;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// An index with `sbx-hello` 1.0.0 and `sbx-greeter` 1.0.0 (which needs `sbx-hello>=1`).
async fn index() -> TestIndex {
    let index = TestIndex::start().await;
    index.publish("sbx-hello", "1.0.0", &[], "VERSION = '1.0.0'\ndef greet():\n    return 'hello 1'\n");
    index.publish(
        "sbx-greeter",
        "1.0.0",
        &["sbx-hello>=1"],
        "import sbx_hello\ndef greet():\n    return 'greeter: ' + sbx_hello.greet()\n",
    );
    index
}

async fn server() -> Server {
    Server::start(&[
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1"),
        ("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "http://127.0.0.1:*/"),
        ("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1"),
    ])
    .await
}

fn installed(session: &Value) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> = session["installed_dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["version"].as_str().unwrap().to_owned(),
                d["is_from_template"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn own(names: &[(&str, &str)]) -> Vec<(String, String, bool)> {
    names.iter().map(|(n, v)| (n.to_string(), v.to_string(), false)).collect()
}

/// A running `python-basic` session that installs from `index`.
async fn session_on(srv: &Server, index: &TestIndex) -> String {
    let body = json!({"template_id": "python-basic", "python_package_index_url": index.url()});
    srv.create_session_with(&srv.key, body).await
}

async fn install(srv: &Server, id: &str, body: Value) -> (StatusCode, Value) {
    srv.call(Method::POST, &format!("/api/v1/sessions/{id}/dependencies/install"), &srv.key, Some(body)).await
}

/// Installs with `stream=true`: the answer's status and its events (name, data).
async fn install_streamed(srv: &Server, id: &str, body: Value) -> (StatusCode, Vec<(String, Value)>) {
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/sessions/{id}/dependencies/install?stream=true")))
        .bearer_auth(&srv.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    if status != StatusCode::OK {
        let body: Value = resp.json().await.unwrap();
        return (status, vec![("response".to_owned(), body)]);
    }
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = common::sse_events(&resp.text().await.unwrap());
    (status, events.into_iter().map(|(_, name, data)| (name, data)).collect())
}

/// The line of pip's output an `output` event carries.
fn pip_line<'a>(name: &str, data: &'a Value) -> &'a str {
    assert_eq!(name, "output", "{data}");
    data["data"].as_str().unwrap()
}

async fn session(srv: &Server, id: &str) -> Value {
    srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await.1
}

/// Creates a session: the answer's status and body.
async fn create(srv: &Server, body: Value) -> (StatusCode, Value) {
    srv.call(Method::POST, "/api/v1/sessions", &srv.key, Some(body)).await
}

#[tokio::test]
async fn packages_install_at_creation_and_later_without_giving_the_sandbox_a_network() {
    let index = index().await;
    let srv = server().await;
    let (s, created) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            &srv.key,
            Some(json!({
                "template_id": "python-basic",
                "dependencies": [{"name": "sbx-hello", "version": "==1.0.0"}],
                "python_package_index_url": index.url(),
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}\n{}", srv.log());
    assert_eq!(created["status"], "running", "{created}");
    let id = created["id"].as_str().unwrap();
    // Code sent while the packages may still be installing waits for them.
    let r = srv.python(id, "import sbx_hello, sys\nprint(sbx_hello.greet(), sbx_hello.__file__)").await;
    assert_eq!(r["stdout"], "hello 1 /opt/sandbox/deps/site/sbx_hello/__init__.py\n", "{r}");
    let done = session(&srv, id).await;
    assert_eq!(done["dependency_install_status"], "completed", "{done}");
    assert_eq!(installed(&done), own(&[("sbx-hello", "1.0.0")]));
    // The packages are read-only for user code, and the sandbox still has no network.
    let r = srv.python(id, "open('/opt/sandbox/deps/site/sbx_hello/__init__.py','a').write('x')").await;
    let stderr = r["stderr"].as_str().unwrap();
    assert!(stderr.contains("Read-only file system") || stderr.contains("Permission denied"), "{r}");
    let port = index.url().split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    let r = srv.python(id, &format!("import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('reached')\nexcept OSError as e:\n    print('blocked', e.errno)")).await;
    assert!(r["stdout"].as_str().unwrap().starts_with("blocked"), "{r}");

    // More packages later, with pip's output streamed as it runs: dependencies come along and
    // are recorded with exact versions.
    let (s, events) = install_streamed(&srv, id, json!({"dependencies": [{"name": "sbx-greeter"}]})).await;
    assert_eq!(s, StatusCode::OK);
    let (last, output) = events.split_last().unwrap();
    let lines: Vec<&str> = output.iter().map(|(name, data)| pip_line(name, data)).collect();
    assert!(lines.iter().any(|l| l.starts_with("Collecting sbx-greeter")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("Successfully installed") && l.contains("sbx-greeter-1.0.0")),
        "{lines:?}"
    );
    assert_eq!(last.0, "result", "{events:?}");
    let after = last.1.clone();
    assert_eq!(installed(&after), own(&[("sbx-greeter", "1.0.0"), ("sbx-hello", "1.0.0")]));
    let requested: Vec<&str> = after["requested_dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(requested, ["sbx-hello", "sbx-greeter"]);
    let r = srv.python(id, "import sbx_greeter\nprint(sbx_greeter.greet())").await;
    assert_eq!(r["stdout"], "greeter: hello 1\n");

    // A new version replaces the old one; the other package keeps its version.
    index.publish("sbx-hello", "2.0.0", &[], "VERSION = '2.0.0'\ndef greet():\n    return 'hello 2'\n");
    let (s, after) =
        install(&srv, id, json!({"dependencies": [{"name": "sbx-hello", "version": ">=2"}]})).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(installed(&after), own(&[("sbx-greeter", "1.0.0"), ("sbx-hello", "2.0.0")]));
    let r = srv.python(id, "import sbx_greeter\nprint(sbx_greeter.greet())").await;
    assert_eq!(r["stdout"], "greeter: hello 2\n");
}

#[tokio::test]
async fn bad_requests_unknown_packages_and_unreachable_indexes_fail_clearly_and_change_nothing() {
    let index = index().await;
    let srv = server().await;
    let id = srv
        .create_session_with(&srv.key, json!({"template_id": "python-basic", "python_package_index_url": index.url(), "dependencies": [{"name": "sbx-hello"}]}))
        .await;
    let before = srv.settled(&id).await;
    assert_eq!(before["dependency_install_status"], "completed", "{before}");

    for (body, field) in [
        (json!({"dependencies": [{"name": "--index-url=http://evil"}]}), "dependencies.0.name"),
        (json!({"dependencies": [{"name": "sbx-hello", "version": "latest"}]}), "dependencies.0.version"),
        (
            json!({"dependencies": [{"name": "sbx-hello", "version": ">=1; os_name=='nt'"}]}),
            "dependencies.0.version",
        ),
        (json!({"dependencies": [{"name": "a"}, {"name": "A"}]}), "dependencies.1.name"),
        (
            json!({"dependencies": [{"name": "a"}], "python_package_index_url": "file:///etc/passwd"}),
            "python_package_index_url",
        ),
        (json!({"dependencies": []}), "dependencies"),
    ] {
        let (s, body) = install(&srv, &id, body).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")),
            "{body}"
        );
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    assert_eq!(session(&srv, &id).await, before, "validation errors change nothing");

    let (s, body) = install(&srv, &id, json!({"dependencies": [{"name": "sbx-no-such-package"}]})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("package_not_found")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("sbx-no-such-package"), "{body}");
    // Streamed: a request that cannot start is refused as such; pip's failure ends the stream.
    let (s, events) =
        install_streamed(&srv, &id, json!({"dependencies": [{"name": "a"}, {"name": "A"}]})).await;
    assert_eq!(
        (s, events[0].1["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error"))
    );
    let (s, events) =
        install_streamed(&srv, &id, json!({"dependencies": [{"name": "sbx-no-such-package"}]})).await;
    assert_eq!(s, StatusCode::OK);
    let (last, output) = events.split_last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1["code"].as_str()),
        ("error", Some("package_not_found")),
        "{events:?}"
    );
    let lines: Vec<&str> = output.iter().map(|(name, data)| pip_line(name, data)).collect();
    assert!(
        lines.iter().any(|l| l.contains("No matching distribution found for sbx-no-such-package")),
        "{lines:?}"
    );
    let (s, body) =
        install(&srv, &id, json!({"dependencies": [{"name": "sbx-hello", "version": "==9.9"}]})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("package_not_found")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("from versions: 1.0.0"), "{body}");
    let (s, body) = install(&srv, &id, json!({"dependencies": [{"name": "sbx-greeter"}], "python_package_index_url": "http://127.0.0.1:1/simple/"})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("package_index_unreachable")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("127.0.0.1:1: error: connect_failed"), "{body}");

    // The failure is on record; the packages and the requests are as before.
    let after = session(&srv, &id).await;
    assert_eq!(after["dependency_install_status"], "failed");
    assert!(after["dependency_install_error"].as_str().unwrap().contains("could not be reached"), "{after}");
    assert_eq!(
        (&after["installed_dependencies"], &after["requested_dependencies"]),
        (&before["installed_dependencies"], &before["requested_dependencies"])
    );
    let r = srv.python(&id, "import sbx_hello\nprint(sbx_hello.VERSION)").await;
    assert_eq!(r["stdout"], "1.0.0\n");

    // At creation the session answers at once and runs; the failure is on the session, and
    // code is refused with the install's code, or runs without the packages if asked to.
    let (s, body) = create(&srv, json!({"template_id": "python-basic", "python_package_index_url": index.url(), "dependencies": [{"name": "sbx-nope"}]})).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::CREATED, Some("running")), "{body}");
    assert!(body["fail_on_dependency_error"].as_bool().unwrap(), "{body}");
    let refused = body["id"].as_str().unwrap();
    let failed = srv.settled(refused).await;
    assert_eq!(
        (failed["status"].as_str(), failed["dependency_install_status"].as_str()),
        (Some("running"), Some("failed")),
        "{failed}"
    );
    assert_eq!(failed["dependency_install_error_code"], "package_not_found", "{failed}");
    assert!(failed["dependency_install_error"].as_str().unwrap().contains("sbx-nope"), "{failed}");
    assert!(failed["dependency_install_completed_at"].is_string(), "{failed}");
    let (s, r, _) = srv.execute(&srv.key, refused, json!({"code": "print(1)", "language": "python"})).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::CONFLICT, Some("dependencies_failed")), "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("package_not_found") && message.contains("sbx-nope"), "{r}");
    for (path, body) in [
        ("contexts", json!({"language": "python"})),
        ("processes", json!({"cmd": "python3", "args": ["-c", "print(1)"]})),
    ] {
        let (s, r) =
            srv.call(Method::POST, &format!("/api/v1/sessions/{refused}/{path}"), &srv.key, Some(body)).await;
        assert_eq!(
            (s, r["code"].as_str()),
            (StatusCode::CONFLICT, Some("dependencies_failed")),
            "{path}: {r}"
        );
    }
    // The session is still there to look into and to end.
    let (s, files) =
        srv.call(Method::GET, &format!("/api/v1/sessions/{refused}/files"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK, "{files}");
    let (s, _) = srv.call(Method::DELETE, &format!("/api/v1/sessions/{refused}"), &srv.key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (s, body) = create(&srv, json!({"template_id": "python-basic", "python_package_index_url": index.url(), "dependencies": [{"name": "sbx-nope"}], "fail_on_dependency_error": false})).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::CREATED, Some("running")), "{body}");
    let without = body["id"].as_str().unwrap();
    assert_eq!(srv.settled(without).await["dependency_install_error_code"], "package_not_found");
    let r = srv.python(without, "print('runs without them')").await;
    assert_eq!(r["stdout"], "runs without them\n", "{r}");
    // A template package in a version the request refuses is a conflict unless allowed.
    let (s, body) = srv
        .call(Method::POST, "/api/v1/sessions", &srv.key, Some(json!({"template_id": "python-datascience", "dependencies": [{"name": "numpy", "version": ">=2"}]})))
        .await;
    assert_eq!(
        (s, body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("dependencies.0.version")),
        "{body}"
    );
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("numpy 1.24.2"), "{body}");
}

#[tokio::test]
async fn template_packages_are_reported_and_satisfy_requests_without_an_install() {
    let srv = server().await;
    // No index is reachable at all: a request the template satisfies needs none.
    let (s, body) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            &srv.key,
            Some(json!({
                "template_id": "python-datascience",
                "dependencies": [{"name": "NumPy", "version": ">=1.20,<2"}],
                "python_package_index_url": "http://127.0.0.1:1/simple/",
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["dependency_install_status"], "completed");
    let template: Vec<(String, String, bool)> =
        [("matplotlib", "3.6.3"), ("numpy", "1.24.2"), ("pandas", "1.5.3"), ("scipy", "1.10.1")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string(), true))
            .collect();
    assert_eq!(installed(&body), template);
    let r = srv
        .python(
            body["id"].as_str().unwrap(),
            "import numpy, pandas\nprint(numpy.__version__, pandas.__version__)",
        )
        .await;
    assert_eq!(r["stdout"], "1.24.2 1.5.3\n");
}

#[tokio::test]
async fn one_install_at_a_time_and_packages_survive_sandbox_recreation() {
    let index = index().await;
    let srv = server().await;
    let id = session_on(&srv, &index).await;

    // A slow index keeps the first install busy: a second request for the session is a 409.
    index.set_delay(Duration::from_secs(3));
    let first = install(&srv, &id, json!({"dependencies": [{"name": "sbx-hello"}]}));
    let second = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        install(&srv, &id, json!({"dependencies": [{"name": "sbx-greeter"}]})).await
    };
    let ((s1, b1), (s2, b2)) = tokio::join!(first, second);
    assert_eq!(s1, StatusCode::OK, "{b1}");
    assert_eq!(
        (s2, b2["code"].as_str()),
        (StatusCode::CONFLICT, Some("dependency_install_in_progress")),
        "{b2}"
    );
    index.set_delay(Duration::ZERO);
    assert_eq!(installed(&session(&srv, &id).await), own(&[("sbx-hello", "1.0.0")]));

    // The sandbox dies: the new one mounts the same packages, nothing is installed again.
    let requests = index.requests();
    common::lose_sandbox(&id);
    let out = recovered_output(&srv, &id).await;
    assert_eq!(out, "1.0.0\n");
    assert_eq!(index.requests(), requests, "no reinstall where the packages still are");

    // On a host without the packages (they are wiped here), the recorded versions are
    // installed again, even though a newer one has been published since.
    index.publish("sbx-hello", "2.0.0", &[], "VERSION = '2.0.0'\n");
    std::fs::remove_dir_all(srv.dir.path().join("sessions").join(&id).join("deps")).unwrap();
    common::lose_sandbox(&id);
    let out = recovered_output(&srv, &id).await;
    assert_eq!(out, "1.0.0\n");
    assert!(index.requests() > requests, "reinstalled from the index");
    assert_eq!(session(&srv, &id).await["dependency_install_status"], "completed");
}

async fn recovered_output(srv: &Server, id: &str) -> String {
    eventually(Duration::from_secs(120), "the recreated sandbox runs the package", || async {
        let code = json!({"code": "import sbx_hello\nprint(sbx_hello.VERSION)", "language": "python"});
        let (s, r, _) = srv.execute(&srv.key, id, code).await;
        (s == StatusCode::OK && r["status"] == "completed").then(|| r["stdout"].as_str().unwrap().to_owned())
    })
    .await
}

#[tokio::test]
async fn an_install_cut_short_by_a_control_plane_crash_ends_failed_not_installing() {
    let index = index().await;
    let mut srv = server().await;
    let id = session_on(&srv, &index).await;
    index.set_delay(Duration::from_secs(4));
    let url = srv.url(&format!("/api/v1/sessions/{id}/dependencies/install"));
    let pending = srv
        .http
        .post(url)
        .bearer_auth(&srv.key)
        .json(&json!({"dependencies": [{"name": "sbx-hello"}]}))
        .send();
    let _ = tokio::time::timeout(Duration::from_secs(2), pending).await;
    assert_eq!(session(&srv, &id).await["dependency_install_status"], "installing");
    srv.kill(libc::SIGKILL);
    srv.spawn().await;
    let status = eventually(Duration::from_secs(120), "the interrupted install is failed", || async {
        let s = session(&srv, &id).await;
        (s["dependency_install_status"] != "installing").then_some(s)
    })
    .await;
    assert_eq!(status["dependency_install_status"], "failed", "{status}");
    assert!(status["dependency_install_error"].as_str().unwrap().contains("interrupted"), "{status}");
    // Nothing is left running, and the session installs normally again.
    index.set_delay(Duration::ZERO);
    let (s, body) = install(&srv, &id, json!({"dependencies": [{"name": "sbx-hello"}]})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=installer-{id}-")])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "installer containers left: {}", String::from_utf8_lossy(&left.stdout));
}

#[tokio::test]
async fn create_answers_before_a_slow_install_and_code_sent_meanwhile_waits_for_the_packages() {
    let index = index().await;
    let srv = server().await;
    // Every answer of the index takes 3 s: pip needs several, so the install takes longer
    // than that.
    index.set_delay(Duration::from_secs(3));
    let body = json!({
        "template_id": "python-basic",
        "dependencies": [{"name": "sbx-greeter"}],
        "python_package_index_url": index.url(),
    });
    let post = |key: &'static str| {
        srv.http
            .post(srv.url("/api/v1/sessions"))
            .bearer_auth(&srv.key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let clock = std::time::Instant::now();
    let resp = post("create-with-packages").await.unwrap();
    let answered = clock.elapsed();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(
        (created["status"].as_str(), created["dependency_install_status"].as_str()),
        (Some("running"), Some("installing")),
        "{created}"
    );
    assert!(created["dependency_install_started_at"].is_string(), "{created}");
    assert!(created["dependency_install_completed_at"].is_null(), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(session(&srv, &id).await["dependency_install_status"], "installing");

    // A retry with the same key answers with the same session; nothing else is created.
    let retried: Value = post("create-with-packages").await.unwrap().json().await.unwrap();
    assert_eq!(retried["id"], created["id"], "{retried}");
    let (_, all) = srv.call(Method::GET, "/api/v1/sessions", &srv.key, None).await;
    assert_eq!(all["total"], 1, "{all}");

    // Code sent now — an execution, a new code context, a process — waits for the install,
    // then finds the packages: each is answered only once the install has ended.
    let started = |path: &'static str, body: Value| {
        let (srv, id) = (&srv, &id);
        async move {
            let (s, r) =
                srv.call(Method::POST, &format!("/api/v1/sessions/{id}/{path}"), &srv.key, Some(body)).await;
            assert_eq!(s, StatusCode::CREATED, "{path}: {r}");
            session(srv, id).await["dependency_install_status"].as_str().unwrap().to_owned()
        }
    };
    let (r, context, process) = tokio::join!(
        srv.python(&id, "import sbx_greeter\nprint(sbx_greeter.greet())"),
        started("contexts", json!({"language": "python"})),
        started("processes", json!({"cmd": "python3", "args": ["-c", "import sbx_greeter"]})),
    );
    let ran = clock.elapsed();
    assert_eq!(r["stdout"], "greeter: hello 1\n", "{r}");
    assert_eq!((context.as_str(), process.as_str()), ("completed", "completed"));
    let done = session(&srv, &id).await;
    assert_eq!(done["dependency_install_status"], "completed", "{done}");
    assert!(done["dependency_install_error_code"].is_null(), "{done}");
    assert_eq!(installed(&done), own(&[("sbx-greeter", "1.0.0"), ("sbx-hello", "1.0.0")]));
    let took = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(done[field].as_str().unwrap()).unwrap().timestamp_millis()
    };
    let install_ms = took("dependency_install_completed_at") - took("dependency_install_started_at");
    assert!(
        answered.as_millis() < install_ms as u128 && install_ms >= 6000,
        "answered after {answered:?}; the install took {install_ms} ms (code ran after {ran:?})"
    );
    index.set_delay(Duration::ZERO);
}

#[tokio::test]
async fn a_restart_during_the_install_of_a_new_session_leaves_it_failed_and_code_refused_not_waiting() {
    let index = index().await;
    let mut srv = server().await;
    index.set_delay(Duration::from_secs(5));
    let (s, created) = create(
        &srv,
        json!({"template_id": "python-basic", "dependencies": [{"name": "sbx-hello"}], "python_package_index_url": index.url()}),
    )
    .await;
    assert_eq!((s, created["dependency_install_status"].as_str()), (StatusCode::CREATED, Some("installing")));
    let id = created["id"].as_str().unwrap().to_owned();
    srv.kill(libc::SIGKILL);
    srv.spawn().await;
    let after = srv.settled(&id).await;
    assert_eq!(
        (
            after["status"].as_str(),
            after["dependency_install_status"].as_str(),
            after["dependency_install_error_code"].as_str()
        ),
        (Some("running"), Some("failed"), Some("dependency_install_interrupted")),
        "{after}"
    );
    let (s, r, _) = srv.execute(&srv.key, &id, json!({"code": "print(1)", "language": "python"})).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::CONFLICT, Some("dependencies_failed")), "{r}");
    assert!(r["message"].as_str().unwrap().contains("dependency_install_interrupted"), "{r}");

    // Installing the packages again makes the session whole.
    index.set_delay(Duration::ZERO);
    let (s, body) = install(&srv, &id, json!({"dependencies": [{"name": "sbx-hello"}]})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let r = srv.python(&id, "import sbx_hello\nprint(sbx_hello.VERSION)").await;
    assert_eq!(r["stdout"], "1.0.0\n", "{r}");
}

/// An installer joins no network: it reaches its index, and the operator's download hosts,
/// through the egress proxy and nothing else, and every attempt is audited under its name.
#[tokio::test]
async fn an_install_reaches_only_its_index_and_the_download_hosts_through_the_proxy() {
    // The index links its files on another server, as PyPI does.
    let files = TestIndex::start().await;
    let index = TestIndex::start().await;
    for on in [&files, &index] {
        on.publish("sbx-elsewhere", "1.0.0", &[], "WHERE = 'files host'\n");
    }
    index.link_files_on(&files);

    // Not a download host: the proxy refuses the file, which is never fetched, and says so.
    let srv = server().await;
    let id = session_on(&srv, &index).await;
    let (s, body) = install(&srv, &id, json!({"dependencies": [{"name": "sbx-elsewhere"}]})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("package_index_unreachable")),
        "{body}"
    );
    let refused = format!("the egress proxy answered {}: denied_policy: not_in_allow_list", files.addr());
    assert!(body["message"].as_str().unwrap().contains(&refused), "{body}");
    assert_eq!(files.connections(), 0, "the files host was contacted");
    let audit = eventually(Duration::from_secs(20), "the install's attempts audited", || async {
        let path = format!("/api/v1/sessions/{id}/network?limit=100");
        let (_, page) = srv.call(Method::GET, &path, &srv.key, None).await;
        let items = page["items"].as_array().unwrap().clone();
        items.iter().any(|a| a["decision"] == "denied_policy").then_some(items)
    })
    .await;
    let attempt = |port: u16, decision: &str| {
        audit.iter().any(|a| {
            a["port"] == port
                && a["decision"] == decision
                && a["execution_id"].as_str().is_some_and(|e| e.starts_with(&format!("installer-{id}-")))
        })
    };
    assert!(attempt(index.addr().port(), "allowed"), "{audit:?}");
    assert!(attempt(files.addr().port(), "denied_policy"), "{audit:?}");
    drop(srv);

    // Listed as a download host: the same install succeeds from there.
    let download_host = files.addr().to_string();
    let srv = Server::start(&[
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1"),
        ("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "http://127.0.0.1:*/"),
        ("SANDBOX_DEPENDENCIES__DOWNLOAD_HOSTS", &download_host),
    ])
    .await;
    let id = session_on(&srv, &index).await;
    let (s, body) = install(&srv, &id, json!({"dependencies": [{"name": "sbx-elsewhere"}]})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(files.connections() > 0, "the file came from the download host");
    let r = srv.python(&id, "import sbx_elsewhere\nprint(sbx_elsewhere.WHERE)").await;
    assert_eq!(r["stdout"], "files host\n", "{r}");
}
