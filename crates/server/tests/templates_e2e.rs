//! Templates whose image the Docker host lacks, against the real server, real Docker and a
//! small registry (HTTP API v2) on 127.0.0.1 serving a local image: the image is pulled with
//! its progress shown, sessions wait for it, a pull that fails says why, a pull a restart
//! interrupts starts again, and with pulling off such a template is refused.

mod common;

use common::{Server, eventually};
use reqwest::StatusCode;
use sandbox_e2e::registry::{PulledImages, Registry, source_image};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn template(srv: &Server, id: &str) -> Value {
    let (s, t) = srv.call(reqwest::Method::GET, &format!("/api/v1/templates/{id}"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t
}

/// Polls template `id` until it leaves `pulling`; the template then, and whether a `pulling`
/// answer showed bytes to download.
async fn until_pulled(srv: &Server, id: &str) -> (Value, bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut progress_seen = false;
    loop {
        let t = template(srv, id).await;
        if t["status"] != "pulling" {
            return (t, progress_seen);
        }
        progress_seen |= t["image_pull"]["bytes_total"].as_u64() > Some(0);
        assert!(std::time::Instant::now() < deadline, "template {id} is still pulling: {t}\n{}", srv.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn new_template(id: &str, image: &str) -> Value {
    json!({"id": id, "name": id, "image_url": image, "runtime_type": "python3.11"})
}

async fn create_template(srv: &Server, id: &str, image: &str) -> (StatusCode, Value) {
    srv.call(reqwest::Method::POST, "/api/v1/templates", &srv.key, Some(new_template(id, image))).await
}

async fn session_refused(srv: &Server, template: &str) -> (StatusCode, String, String) {
    let (s, b) = srv
        .call(reqwest::Method::POST, "/api/v1/sessions", &srv.key, Some(json!({"template_id": template})))
        .await;
    (
        s,
        b["code"].as_str().unwrap_or_default().to_owned(),
        b["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_missing_image_is_pulled_with_progress_and_sessions_wait_for_it() {
    let registry = Registry::start(true, &["a", "b"]).await;
    let _cleanup = PulledImages(vec![registry.image("a"), registry.image("b")]);
    let mut srv = Server::start(&[]).await;

    // An invalid reference is refused before anything is stored or pulled.
    let (s, body) = create_template(&srv, "bad-ref", "127.0.0.1:5000/UPPER/x:1").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "image_url", "{body}");

    // Created while the registry holds its blobs back: 202, pulling.
    let (s, t) = create_template(&srv, "pulled", &registry.image("a")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    assert!(t["image_pull"]["started_at"].is_string(), "{t}");
    eventually(Duration::from_secs(60), "Docker asks for a blob", || async {
        (registry.blob_requests.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert_eq!(template(&srv, "pulled").await["status"], "pulling");
    let (s, code, message) = session_refused(&srv, "pulled").await;
    assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "template_not_ready"), "{message}");

    // Let it through: the template becomes ready, with what was pulled.
    registry.open();
    let (done, progress_seen) = until_pulled(&srv, "pulled").await;
    assert_eq!(done["status"], "ready", "{done}\n{}", srv.log());
    let pull = &done["image_pull"];
    let total = pull["bytes_total"].as_u64().unwrap();
    assert!(total >= 8 << 20, "the bytes of the layer the host lacked are recorded: {done}");
    assert_eq!(pull["bytes_done"].as_u64(), Some(total), "{done}");
    assert!(pull["layers_total"].as_u64() > Some(0), "{done}");
    assert_eq!(pull["layers_done"], pull["layers_total"], "{done}");
    assert!(pull["finished_at"].is_string() && pull["error"].is_null(), "{done}");
    println!("progress seen while pulling: {progress_seen}; {pull}");

    // A session of the pulled template runs code.
    let session = srv.create_session(&srv.key.clone(), "pulled").await;
    let r = srv.python(&session, "print(6 * 7)").await;
    assert_eq!(r["stdout"], "42\n", "{r}");
    let (s, _) =
        srv.call(reqwest::Method::DELETE, &format!("/api/v1/sessions/{session}"), &srv.key, None).await;
    assert!(s.is_success(), "{s}");

    // An image the registry does not have: failed, with a code; sessions are told why.
    let (s, t) = create_template(&srv, "ghost", &registry.image("nope")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    let (failed, _) = until_pulled(&srv, "ghost").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["image_pull"]["error"]["code"], "image_not_found", "{failed}");
    assert!(failed["image_pull"]["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{failed}");
    let (s, code, message) = session_refused(&srv, "ghost").await;
    assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "template_pull_failed"), "{message}");
    assert!(message.contains("image_not_found"), "{message}");

    // A restart in the middle of a pull: the pull starts again and ends; nothing stays pulling.
    registry.close();
    let before = registry.blob_requests.load(Ordering::SeqCst);
    let (s, t) = create_template(&srv, "restarted", &registry.image("b")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    eventually(Duration::from_secs(60), "Docker asks for a blob of the second image", || async {
        (registry.blob_requests.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;
    srv.kill(libc::SIGKILL);
    registry.open();
    srv.spawn().await;
    let (after, _) = until_pulled(&srv, "restarted").await;
    assert_eq!(after["status"], "ready", "{after}\n{}", srv.log());
    assert!(srv.log().contains("pulling the image again after a restart"), "{}", srv.log());
    let listed = srv.call(reqwest::Method::GET, "/api/v1/templates", &srv.key, None).await.1;
    let statuses: HashMap<&str, &str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        (statuses["pulled"], statuses["ghost"], statuses["restarted"], statuses["python-basic"]),
        ("ready", "failed", "ready", "ready")
    );
}

#[tokio::test]
async fn with_pulling_off_a_missing_image_is_refused() {
    let srv = Server::start(&[("SANDBOX_TEMPLATES__PULL_IMAGES", "false")]).await;
    // Port 9 on loopback: nothing is asked of it, pulling being off.
    let (s, body) = create_template(&srv, "absent", "127.0.0.1:9/tpl-e2e/absent:1").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("template_image_missing")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "image_url", "{body}");
    let (s, _) = srv.call(reqwest::Method::GET, "/api/v1/templates/absent", &srv.key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was stored");
    // An image the host has is ready at once: 201.
    let (s, t) = create_template(&srv, "present", &source_image()).await;
    assert_eq!(
        (s, t["status"].as_str(), &t["image_pull"]),
        (StatusCode::CREATED, Some("ready"), &Value::Null),
        "{t}"
    );
}

#[tokio::test]
async fn a_pull_that_stalls_fails_at_its_timeout() {
    // The registry never sends a blob.
    let registry = Registry::start(false, &["stalled"]).await;
    let _cleanup = PulledImages(vec![registry.image("stalled")]);
    let srv = Server::start(&[("SANDBOX_TEMPLATES__PULL_TIMEOUT_SEC", "3")]).await;
    let (s, t) = create_template(&srv, "stalled", &registry.image("stalled")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    let (failed, _) = until_pulled(&srv, "stalled").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["image_pull"]["error"]["code"], "pull_timed_out", "{failed}");
    assert!(registry.blob_requests.load(Ordering::SeqCst) > 0, "the pull reached the registry");
    let (s, code, _) = session_refused(&srv, "stalled").await;
    assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "template_pull_failed"));
}
