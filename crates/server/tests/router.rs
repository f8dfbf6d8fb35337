//! The REST API in-process (`oneshot`), on a real SQLite store. The runtime is a stand-in that
//! refuses to create sandboxes: these tests cover authentication, validation, error envelopes,
//! ownership, paging, templates and keys, none of which needs a container. Sessions that need a
//! "running" state are written to the store directly.

#[path = "common/spec.rs"]
mod spec;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use http_body_util::BodyExt;
use sandbox_core::model::{ImagePull, InstallStatus, PullError, Session, SessionStatus, TemplateStatus};
use sandbox_runtime::{ExecutorClient, Runtime, RuntimeError, Sandbox, SandboxInfo, SandboxSpec};
use sandbox_server::api;
use sandbox_server::service::workspaces::HostOnly;
use sandbox_server::settings::Settings;
use sandbox_server::state::AppState;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

/// A runtime that has no containers and cannot make any; one not `reachable` does not answer at
/// all.
struct NoContainers {
    reachable: bool,
}

#[async_trait]
impl Runtime for NoContainers {
    fn name(&self) -> &'static str {
        "none"
    }
    async fn create(&self, _: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        Err(RuntimeError::Unavailable("router tests run without containers".into()))
    }
    async fn stop(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn remove(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn status(&self, _: &str) -> Result<Option<SandboxInfo>, RuntimeError> {
        Ok(None)
    }
    async fn list(&self, _: &[(&str, &str)]) -> Result<Vec<SandboxInfo>, RuntimeError> {
        if self.reachable {
            Ok(Vec::new())
        } else {
            Err(RuntimeError::Unavailable("the runtime does not answer".into()))
        }
    }
    async fn logs(&self, _: &str, _: usize) -> Result<String, RuntimeError> {
        Ok(String::new())
    }
    async fn image_available(&self, _: &str) -> Result<bool, RuntimeError> {
        match self.reachable {
            true => Ok(true),
            false => Err(RuntimeError::Unavailable("the runtime does not answer".into())),
        }
    }
    fn executor(&self, spec: &SandboxSpec) -> ExecutorClient {
        ExecutorClient::unix(spec.socket_path())
    }
}

struct App {
    state: AppState,
    admin: String,
    _dir: tempfile::TempDir,
}

impl App {
    async fn new() -> App {
        App::with_runtime(NoContainers { reachable: true }).await
    }

    async fn with_runtime(runtime: NoContainers) -> App {
        App::with(runtime, &[]).await
    }

    async fn with(runtime: NoContainers, extra: &[(&str, &str)]) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![("SANDBOX_DATA_DIR".to_string(), dir.path().display().to_string())];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load(None, env).unwrap();
        let (store, admin) = sandbox_server::prepare(&settings).await.unwrap();
        let state = AppState::new(settings, store, Arc::new(runtime), Arc::new(HostOnly));
        App { state, admin: admin.expect("first start makes an admin key"), _dir: dir }
    }

    async fn key(&self, admin: bool) -> (String, String) {
        let (k, secret) = self.state.keys.make("test", admin, false).await.unwrap();
        (k.id, secret)
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b.body(Body::from(body.unwrap_or("").to_owned())).unwrap();
        let resp = api::router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        spec::check(method, uri, status.as_u16(), &json);
        (status, json, headers)
    }

    /// The Prometheus text of `/metrics`, read with the admin key.
    async fn metrics(&self) -> String {
        let req = Request::builder()
            .uri("/metrics")
            .header("authorization", format!("Bearer {}", self.admin))
            .body(Body::empty())
            .unwrap();
        let resp = api::router(self.state.clone()).oneshot(req).await.unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    /// Writes a running session owned by `owner` straight into the store.
    async fn running_session(&self, id: &str, owner: &str) {
        let now = Utc::now();
        let s = Session {
            id: id.into(),
            client_id: None,
            owner_key_id: owner.into(),
            template_id: "python-basic".into(),
            status: SessionStatus::Running,
            cpu: "1".parse().unwrap(),
            memory: "512Mi".parse().unwrap(),
            disk: "1Gi".parse().unwrap(),
            timeout_sec: 300,
            env_vars: Default::default(),
            metadata: Default::default(),
            network: Default::default(),
            runtime_backend: "none".into(),
            sandbox_name: Some(format!("sandbox-{id}")),
            container_id: Some(format!("c-{id}")),
            runtime_node: None,
            workspace_path: None,
            error_message: None,
            python_package_index_url: "https://pypi.org/simple/".into(),
            requested_dependencies: vec![],
            installed_dependencies: vec![],
            dependency_install_status: InstallStatus::Completed,
            dependency_install_error: None,
            dependency_install_started_at: None,
            dependency_install_completed_at: None,
            dependency_install_error_code: None,
            fail_on_dependency_error: false,
            created_at: now,
            updated_at: now,
            completed_at: None,
            last_activity_at: Some(now),
        };
        self.state.store.insert_session(&s).await.unwrap();
    }

    async fn session_count(&self) -> u64 {
        let f = sandbox_store::SessionFilter { limit: 1, ..Default::default() };
        self.state.store.list_sessions(&f).await.unwrap().total
    }
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["message"], body["detail"]);
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
}

#[tokio::test]
async fn health_is_public_and_everything_else_needs_a_valid_key() {
    let app = App::new().await;
    let (s, body, _) = app.call("GET", "/api/v1/health", None, None).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("healthy")));
    for (method, uri) in [
        ("GET", "/api/v1/sessions"),
        ("POST", "/api/v1/sessions"),
        ("GET", "/api/v1/templates"),
        ("GET", "/api/v1/executions/exec_x/status"),
        ("GET", "/api/v1/sessions/s/files"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/health/detailed"),
        ("GET", "/api/v1/admin/keys"),
    ] {
        let (s, body, _) = app.call(method, uri, None, None).await;
        assert_error(s, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        let (s, body, _) = app.call(method, uri, Some("sk_wrong"), None).await;
        assert_error(s, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (s, _, _) = app.call("GET", "/api/v1/templates", Some(&app.admin), None).await;
    assert_eq!(s, StatusCode::OK);
}

/// Readiness needs no key and says whether the database and the runtime answer: 200, or 503
/// naming the one that does not (liveness does not depend on them).
#[tokio::test]
async fn readiness_is_public_and_reports_the_database_and_the_runtime() {
    let ready = json!({"status": "ready", "database": "up", "runtime": "up"});
    let app = App::new().await;
    let (s, body, _) = app.call("GET", "/api/v1/health/ready", None, None).await;
    assert_eq!((s, body), (StatusCode::OK, ready));

    let app = App::with_runtime(NoContainers { reachable: false }).await;
    let (s, body, _) = app.call("GET", "/api/v1/health/ready", None, None).await;
    let runtime_down = json!({"status": "not_ready", "database": "up", "runtime": "down"});
    assert_eq!((s, body), (StatusCode::SERVICE_UNAVAILABLE, runtime_down));
    let (s, _, _) = app.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(s, StatusCode::OK, "alive all the same");
    // What needs the runtime says so.
    let template = r#"{"id": "t1", "name": "t1", "image_url": "sandbox/python-basic:latest", "runtime_type": "python3.11"}"#;
    let (s, body, headers) = app.call("POST", "/api/v1/templates", Some(&app.admin), Some(template)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("runtime_unavailable")),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "5");
}

#[tokio::test]
async fn request_ids_are_propagated_or_made() {
    let app = App::new().await;
    let req = Request::builder()
        .uri("/api/v1/sessions/nope")
        .header("authorization", format!("Bearer {}", app.admin))
        .header("x-request-id", "trace-123")
        .body(Body::empty())
        .unwrap();
    let resp = api::router(app.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["request_id"], "trace-123");
    assert_eq!(body["code"], "session_not_found");
    let (_, _, headers) = app.call("GET", "/api/v1/health", None, None).await;
    assert!(headers["x-request-id"].to_str().unwrap().starts_with("req_"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_code_and_changes_nothing() {
    let app = App::new().await;
    let k = Some(app.admin.as_str());
    let cases: &[(&str, &str, Option<&str>, StatusCode, &str)] = &[
        ("POST", "/api/v1/sessions", Some("{not json"), StatusCode::BAD_REQUEST, "malformed_json"),
        ("POST", "/api/v1/sessions", Some("{}"), StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": 7}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": "nope"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_not_found",
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": "python-basic", "cpu": "lots"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": "python-basic", "cpu": "64"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": "python-basic", "memory": "-1Gi"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": "python-basic", "timeout": 0}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": "python-basic", "id": "../x"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some(r#"{"template_id": "python-basic", "env_vars": {"A=B": "x"}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        ("GET", "/api/v1/sessions?limit=0", None, StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
        ("GET", "/api/v1/sessions?offset=-1", None, StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
        ("GET", "/api/v1/sessions?limit=abc", None, StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
        ("GET", "/api/v1/sessions?status=bogus", None, StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
        ("GET", "/api/v1/sessions/sess_missing", None, StatusCode::NOT_FOUND, "session_not_found"),
        ("POST", "/api/v1/sessions/sess_missing/terminate", None, StatusCode::NOT_FOUND, "session_not_found"),
        ("DELETE", "/api/v1/sessions/sess_missing", None, StatusCode::NOT_FOUND, "session_not_found"),
        ("GET", "/api/v1/executions/exec_missing/status", None, StatusCode::NOT_FOUND, "execution_not_found"),
        ("GET", "/api/v1/executions/exec_missing/result", None, StatusCode::NOT_FOUND, "execution_not_found"),
        (
            "POST",
            "/api/v1/executions/sessions/sess_missing/execute",
            Some(r#"{"code": "print(1)", "language": "python"}"#),
            StatusCode::NOT_FOUND,
            "session_not_found",
        ),
        ("GET", "/api/v1/templates/nope", None, StatusCode::NOT_FOUND, "template_not_found"),
        ("GET", "/api/v1/nothing-here", None, StatusCode::NOT_FOUND, "not_found"),
        ("PATCH", "/api/v1/sessions", None, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (method, uri, body, status, code) in cases {
        let (s, b, _) = app.call(method, uri, k, *body).await;
        assert_error(s, &b, *status, code);
    }
    // Without a JSON content type.
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/sessions")
        .header("authorization", format!("Bearer {}", app.admin))
        .body(Body::from(r#"{"template_id": "python-basic"}"#))
        .unwrap();
    let resp = api::router(app.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.session_count().await, 0, "no bad request created a session");
}

#[tokio::test]
async fn executions_are_validated_before_anything_runs() {
    let app = App::new().await;
    app.running_session("sess_a", "key_env_none").await;
    let k = Some(app.admin.as_str());
    let big = json!({"code": "x".repeat(102_401), "language": "python"}).to_string();
    let cases = [
        (
            json!({"code": "print(1)", "language": "cobol"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            json!({"code": "", "language": "python"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            json!({"code": "print(1)", "language": "python", "timeout": 0}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            json!({"code": "print(1)", "language": "python", "timeout": 3601}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            json!({"code": "print(1)", "language": "python", "event": [1]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (big, StatusCode::PAYLOAD_TOO_LARGE, "code_too_large"),
    ];
    for (body, status, code) in cases {
        let (s, b, _) = app.call("POST", "/api/v1/executions/sessions/sess_a/execute", k, Some(&body)).await;
        assert_error(s, &b, status, code);
    }
    let (s, b, _) = app
        .call(
            "POST",
            "/api/v1/executions/sessions/sess_a/execute-sync?sync_timeout=5",
            k,
            Some(r#"{"code":"1","language":"python"}"#),
        )
        .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let page = app.state.store.list_executions("sess_a", 10, 0).await.unwrap();
    assert_eq!(page.total, 0, "nothing was recorded");
    // A terminated session takes no executions.
    app.call("POST", "/api/v1/sessions/sess_a/terminate", k, None).await;
    let (s, b, _) = app
        .call(
            "POST",
            "/api/v1/executions/sessions/sess_a/execute",
            k,
            Some(r#"{"code":"1","language":"python"}"#),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "session_not_running");
}

#[tokio::test]
async fn keys_see_only_their_own_sessions() {
    let app = App::new().await;
    let (a_id, a) = app.key(false).await;
    let (b_id, b) = app.key(false).await;
    app.running_session("sess_of_a", &a_id).await;
    app.running_session("sess_of_b", &b_id).await;
    let (s, _, _) = app.call("GET", "/api/v1/sessions/sess_of_a", Some(&a), None).await;
    assert_eq!(s, StatusCode::OK);
    for (method, uri) in [
        ("GET", "/api/v1/sessions/sess_of_a"),
        ("POST", "/api/v1/sessions/sess_of_a/terminate"),
        ("DELETE", "/api/v1/sessions/sess_of_a"),
        ("GET", "/api/v1/sessions/sess_of_a/files"),
        ("GET", "/api/v1/executions/sessions/sess_of_a/executions"),
    ] {
        let (s, body, _) = app.call(method, uri, Some(&b), None).await;
        assert_error(s, &body, StatusCode::NOT_FOUND, "session_not_found");
    }
    let (_, list_b, _) = app.call("GET", "/api/v1/sessions", Some(&b), None).await;
    assert_eq!(list_b["total"], 1);
    assert_eq!(list_b["items"][0]["id"], "sess_of_b");
    let (_, all, _) = app.call("GET", "/api/v1/sessions", Some(&app.admin), None).await;
    assert_eq!(all["total"], 2);
    // B's attempts changed nothing.
    let s = app.state.store.session("sess_of_a").await.unwrap().unwrap();
    assert_eq!(s.status, SessionStatus::Running);
    // Non-admin keys cannot manage keys or templates.
    let (s, body, _) = app.call("GET", "/api/v1/admin/keys", Some(&a), None).await;
    assert_error(s, &body, StatusCode::FORBIDDEN, "forbidden");
    let (s, body, _) = app.call("DELETE", "/api/v1/templates/python-basic", Some(&a), None).await;
    assert_error(s, &body, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn lists_report_a_real_total_and_honour_offset() {
    let app = App::new().await;
    for i in 0..7 {
        app.running_session(&format!("sess_{i}"), "key_x").await;
    }
    let k = Some(app.admin.as_str());
    let (_, p1, _) = app.call("GET", "/api/v1/sessions?limit=3", k, None).await;
    let (_, p3, _) = app.call("GET", "/api/v1/sessions?limit=3&offset=6", k, None).await;
    assert_eq!(
        (p1["total"].as_u64(), p1["items"].as_array().unwrap().len(), p1["has_more"].as_bool()),
        (Some(7), 3, Some(true))
    );
    assert_eq!(
        (p3["total"].as_u64(), p3["items"].as_array().unwrap().len(), p3["has_more"].as_bool()),
        (Some(7), 1, Some(false))
    );
    let (_, filtered, _) = app.call("GET", "/api/v1/sessions?status=terminated", k, None).await;
    assert_eq!(filtered["total"], 0);
    let (_, templates, headers) = app.call("GET", "/api/v1/templates?limit=2&offset=1", k, None).await;
    assert_eq!(templates.as_array().unwrap().len(), 2);
    assert_eq!(headers["x-total-count"], "3");
    // Every other list pages the same way.
    for name in ["a", "b"] {
        app.call("POST", "/api/v1/admin/keys", k, Some(&format!(r#"{{"name":"{name}"}}"#))).await;
    }
    let (_, keys, _) = app.call("GET", "/api/v1/admin/keys?limit=1&offset=1", k, None).await;
    assert_eq!(
        (keys["total"].as_u64(), keys["items"].as_array().unwrap().len(), keys["offset"].as_u64()),
        (Some(3), 1, Some(1))
    );
    assert_eq!(keys["has_more"], true);
    for uri in ["/api/v1/admin/keys?limit=0", "/api/v1/pools?offset=-1", "/api/v1/templates?limit=1001"] {
        let (s, body, _) = app.call("GET", uri, k, None).await;
        assert_error(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
}

#[tokio::test]
async fn terminate_and_delete_are_idempotent() {
    let app = App::new().await;
    app.running_session("sess_t", "key_env_x").await;
    let k = Some(app.admin.as_str());
    for _ in 0..2 {
        let (s, body, _) = app.call("POST", "/api/v1/sessions/sess_t/terminate", k, None).await;
        assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("terminated")));
    }
    for _ in 0..2 {
        let (s, _, _) = app.call("DELETE", "/api/v1/sessions/sess_t", k, None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (s, body, _) = app.call("GET", "/api/v1/sessions/sess_t", k, None).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "session_not_found");
    // A name a key chose cannot be reused by that key once deleted.
    let create = r#"{"template_id":"python-basic","id":"gone"}"#;
    let (s, _, _) = app.call("POST", "/api/v1/sessions?wait=false", k, Some(create)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, _) = app.call("DELETE", "/api/v1/sessions/gone", k, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body, _) = app.call("POST", "/api/v1/sessions?wait=false", k, Some(create)).await;
    assert_error(s, &body, StatusCode::CONFLICT, "session_exists");
}

/// Sessions of a template whose image is being pulled, or failed to pull, are refused with a
/// code saying which; the template shows its pull.
async fn template_image_states_gate_sessions(app: &App, k: Option<&str>) {
    let store = &app.state.store;
    let pull =
        ImagePull { bytes_done: 10, bytes_total: 100, layers_done: 1, layers_total: 3, ..Default::default() };
    assert!(
        store
            .set_template_image("custom", "example/custom:1", TemplateStatus::Pulling, Some(&pull))
            .await
            .unwrap()
    );
    let (_, t, _) = app.call("GET", "/api/v1/templates/custom", k, None).await;
    assert_eq!(
        (t["status"].as_str(), &t["image_pull"]["bytes_done"], &t["image_pull"]["bytes_total"]),
        (Some("pulling"), &json!(10), &json!(100)),
        "{t}"
    );
    let (s, body, _) = app.call("POST", "/api/v1/sessions", k, Some(r#"{"template_id":"custom"}"#)).await;
    assert_error(s, &body, StatusCode::CONFLICT, "template_not_ready");
    let error = PullError { code: "image_not_found".into(), message: "manifest unknown".into() };
    let failed = ImagePull { error: Some(error), ..pull };
    assert!(
        store
            .set_template_image("custom", "example/custom:1", TemplateStatus::Failed, Some(&failed))
            .await
            .unwrap()
    );
    let (s, body, _) = app.call("POST", "/api/v1/sessions", k, Some(r#"{"template_id":"custom"}"#)).await;
    assert_error(s, &body, StatusCode::CONFLICT, "template_pull_failed");
    assert!(body["message"].as_str().unwrap().contains("image_not_found: manifest unknown"), "{body}");
    // Giving the image again checks it again: this runtime has it, so the template is ready.
    let (s, t, _) =
        app.call("PUT", "/api/v1/templates/custom", k, Some(r#"{"image_url": "example/custom:1"}"#)).await;
    assert_eq!(
        (s, t["status"].as_str(), &t["image_pull"]),
        (StatusCode::OK, Some("ready"), &Value::Null),
        "{t}"
    );
    let (_, t, _) = app.call("GET", "/api/v1/templates/custom", k, None).await;
    assert_eq!(t["status"], "ready", "{t}");
}

#[tokio::test]
async fn templates_crud() {
    let app = App::new().await;
    let k = Some(app.admin.as_str());
    let (s, list, _) = app.call("GET", "/api/v1/templates", k, None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<_> = list.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["multi-language", "python-basic", "python-datascience"]);
    let new = r#"{"id":"custom","name":"Custom","image_url":"example/custom:1","runtime_type":"python3.11","default_memory_mb":1024}"#;
    let (s, t, _) = app.call("POST", "/api/v1/templates", k, Some(new)).await;
    assert_eq!(
        (s, t["default_memory_mb"].as_u64(), t["default_cpu_cores"].as_f64()),
        (StatusCode::CREATED, Some(1024), Some(0.5))
    );
    // A runtime that pulls by itself (as a cluster's nodes do) has every image: ready at once.
    assert_eq!((t["status"].as_str(), &t["image_pull"]), (Some("ready"), &Value::Null), "{t}");
    // An image reference Docker would not take is refused as a field.
    let bad_ref = r#"{"id":"y","name":"Y","image_url":"Example/Custom:1","runtime_type":"python3.11"}"#;
    let (s, body, _) = app.call("POST", "/api/v1/templates", k, Some(bad_ref)).await;
    assert_error(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(body["errors"][0]["field"], "image_url", "{body}");
    template_image_states_gate_sessions(&app, k).await;
    let (s, body, _) = app.call("POST", "/api/v1/templates", k, Some(new)).await;
    assert_error(s, &body, StatusCode::CONFLICT, "template_exists");
    let (s, body, _) = app
        .call(
            "POST",
            "/api/v1/templates",
            k,
            Some(r#"{"id":"x","name":"X","image_url":"i","runtime_type":"ruby"}"#),
        )
        .await;
    assert_error(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let (s, t, _) = app
        .call("PUT", "/api/v1/templates/custom", k, Some(r#"{"default_timeout": 600, "is_active": false}"#))
        .await;
    assert_eq!(
        (s, t["default_timeout_sec"].as_u64(), t["is_active"].as_bool()),
        (StatusCode::OK, Some(600), Some(false))
    );
    let (s, body, _) =
        app.call("PUT", "/api/v1/templates/custom", k, Some(r#"{"default_memory_mb": 1}"#)).await;
    assert_error(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let (s, body, _) = app.call("POST", "/api/v1/sessions", k, Some(r#"{"template_id":"custom"}"#)).await;
    assert_error(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.running_session("sess_uses_basic", "key_x").await;
    let (s, body, _) = app.call("DELETE", "/api/v1/templates/python-basic", k, None).await;
    assert_error(s, &body, StatusCode::CONFLICT, "template_in_use");
    let (s, body, _) = app.call("DELETE", "/api/v1/templates/custom", k, None).await;
    assert_eq!((s, body["deleted"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(body["message"], "template custom deleted", "the Python control plane's answer");
    let (s, _, _) = app.call("GET", "/api/v1/templates/custom", k, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_can_be_created_listed_and_revoked() {
    let app = App::new().await;
    let k = Some(app.admin.as_str());
    let (s, created, _) = app.call("POST", "/api/v1/admin/keys", k, Some(r#"{"name":"ci"}"#)).await;
    assert_eq!(s, StatusCode::CREATED);
    let secret = created["key"].as_str().unwrap().to_owned();
    let (s, _, _) = app.call("GET", "/api/v1/sessions", Some(&secret), None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list, _) = app.call("GET", "/api/v1/admin/keys", k, None).await;
    assert!(
        list["items"].as_array().unwrap().iter().all(|k| k.get("key").is_none()),
        "secrets are never listed"
    );
    let uri = format!("/api/v1/admin/keys/{}", created["id"].as_str().unwrap());
    let (s, _, _) = app.call("DELETE", &uri, k, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body, _) = app.call("GET", "/api/v1/sessions", Some(&secret), None).await;
    assert_error(s, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, body, _) = app.call("DELETE", "/api/v1/admin/keys/key_nope", k, None).await;
    assert_error(s, &body, StatusCode::NOT_FOUND, "key_not_found");
    // An admin cannot lock itself out.
    let own =
        list["items"].as_array().unwrap().iter().find(|k| k["name"] == "bootstrap admin").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let (s, body, _) = app.call("DELETE", &format!("/api/v1/admin/keys/{own}"), k, None).await;
    assert_error(s, &body, StatusCode::CONFLICT, "cannot_revoke_own_key");
}

#[tokio::test]
async fn failed_sandbox_start_is_a_clear_error_and_a_failed_session() {
    let app = App::new().await;
    let (s, body, headers) = app
        .call(
            "POST",
            "/api/v1/sessions",
            Some(&app.admin),
            Some(r#"{"template_id":"python-basic","id":"sess_f"}"#),
        )
        .await;
    assert_error(s, &body, StatusCode::SERVICE_UNAVAILABLE, "sandbox_start_failed");
    assert!(headers.contains_key("retry-after"));
    assert!(body["message"].as_str().unwrap().contains("router tests run without containers"));
    let filter = sandbox_store::SessionFilter { limit: 100, ..Default::default() };
    let all = app.state.store.list_sessions(&filter).await.unwrap().items;
    let stored = all.into_iter().find(|s| s.client_id.as_deref() == Some("sess_f")).unwrap();
    assert_eq!(stored.status, SessionStatus::Failed);
}

#[tokio::test]
async fn metrics_count_requests() {
    let app = App::new().await;
    app.call("GET", "/api/v1/templates", Some(&app.admin), None).await;
    let text = app.metrics().await;
    assert!(
        text.contains(
            r#"sandbox_http_requests_total{method="GET",route="/api/v1/templates",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"sandbox_sessions{status="running"} 0"#));
}

/// The committed `docs/openapi.json` is exactly what the code generates. Run with
/// `UPDATE_OPENAPI=1` to rewrite it.
#[test]
fn openapi_snapshot_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let want = api::openapi_json() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test -p sandbox-server --test router"
    );
    // Every path of the Python control plane's API but its internal callbacks is served
    // (docs/design.md).
    let upstream: Value = serde_json::from_str(include_str!("upstream-paths.json")).unwrap();
    let ours: Value = serde_json::from_str(&want).unwrap();
    for p in upstream.as_array().unwrap() {
        let p = p.as_str().unwrap();
        assert!(ours["paths"].get(p).is_some(), "{p} of the Python control plane's API is missing");
    }
}

/// Browsers on the configured origins get CORS headers, preflights included (answered before
/// authentication, as browsers send them without the key); other origins get none, and with no
/// origins configured `OPTIONS` is 405 as before.
#[tokio::test]
async fn cors_only_for_the_configured_origins() {
    let app = App::with(
        NoContainers { reachable: true },
        &[("SANDBOX_CORS_ALLOWED_ORIGINS", "http://127.0.0.1:3000")],
    )
    .await;
    let preflight = |origin: &'static str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/api/v1/sessions")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .body(Body::empty())
            .unwrap()
    };
    let resp = api::router(app.state.clone()).oneshot(preflight("http://127.0.0.1:3000")).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:3000");
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("authorization"), "{h:?}");
    let resp = api::router(app.state.clone()).oneshot(preflight("http://evil.example")).await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());

    let get = Request::builder()
        .uri("/api/v1/sessions")
        .header("origin", "http://127.0.0.1:3000")
        .header("authorization", format!("Bearer {}", app.admin))
        .body(Body::empty())
        .unwrap();
    let resp = api::router(app.state.clone()).oneshot(get).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["access-control-allow-origin"], "http://127.0.0.1:3000");
    assert!(resp.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));

    let plain = App::new().await;
    let resp = api::router(plain.state.clone()).oneshot(preflight("http://127.0.0.1:3000")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

/// The API reference is a page of its own, public, that needs nothing from elsewhere.
#[tokio::test]
async fn the_api_reference_is_served_and_self_contained() {
    let app = App::new().await;
    let req = Request::builder().uri("/docs").body(Body::empty()).unwrap();
    let resp = api::router(app.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for needle in [
        "/api/v1/sessions/{session_id}/contexts",
        "/api/v1/executions/{execution_id}/cancel",
        "id=\"schema-ExecutionResponse\"",
        "context_busy",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing fetched"
    );
}

/// The filesystem routes refuse bad paths and arguments before any sandbox is asked.
#[tokio::test]
async fn filesystem_routes_validate_before_reaching_the_sandbox() {
    let app = App::new().await;
    app.running_session("s1", "key_env_none").await;
    let k = Some(app.admin.as_str());
    let cases: &[(&str, &str, Option<&str>, StatusCode, &str)] = &[
        ("GET", "/api/v1/sessions/s1/files-stat?path=../etc", None, StatusCode::BAD_REQUEST, "invalid_path"),
        (
            "GET",
            "/api/v1/sessions/s1/files-stat?path=/etc/passwd",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "GET",
            "/api/v1/sessions/s1/files?depth=-1",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "GET",
            "/api/v1/sessions/s1/files?depth=x",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions/s1/directories",
            Some(r#"{"path": ""}"#),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "POST",
            "/api/v1/sessions/s1/directories",
            Some("{}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            "POST",
            "/api/v1/sessions/s1/files-move",
            Some(r#"{"source": "a", "destination": "../b"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "POST",
            "/api/v1/sessions/s1/files-move",
            Some(r#"{"source": "", "destination": "b"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        ("GET", "/api/v1/sessions/s1/files-watch?path=/tmp", None, StatusCode::BAD_REQUEST, "invalid_path"),
        (
            "POST",
            "/api/v1/sessions/s1/watchers",
            Some(r#"{"path": "a/../.."}"#),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        ("GET", "/api/v1/sessions/nope/files-stat?path=a", None, StatusCode::NOT_FOUND, "session_not_found"),
        ("DELETE", "/api/v1/sessions/nope/watchers/w1", None, StatusCode::NOT_FOUND, "session_not_found"),
    ];
    for (method, uri, body, want_status, want_code) in cases {
        let (s, b, _) = app.call(method, uri, k, *body).await;
        assert_error(s, &b, *want_status, want_code);
    }
}

impl App {
    /// A request with extra headers; status, JSON body (`Null` when not JSON) and headers.
    async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b.body(Body::from(body.unwrap_or("").to_owned())).unwrap();
        let resp = api::router(self.state.clone()).oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
    }
}

/// E2B's error body: the HTTP status as an integer `code` and a message.
fn assert_e2b_error(status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"].as_u64(), Some(u64::from(want.as_u16())), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// The E2B control plane: `X-API-KEY` in any case, E2B's shapes and error bodies, owners only,
/// metadata lists with paging, timeouts, honest pause/resume, kill then 404.
#[tokio::test]
async fn the_e2b_control_plane_answers_in_e2b_s_shapes() {
    let app = App::new().await;
    let (alice_id, alice) = app.key(false).await;
    let (_, bob) = app.key(false).await;
    let (s, b, _) = app.send("GET", "/v2/sandboxes", &[], None).await;
    assert_e2b_error(s, &b, StatusCode::UNAUTHORIZED);
    let (s, b, _) = app.send("GET", "/v2/sandboxes", &[("X-Api-Key", "wrong")], None).await;
    assert_e2b_error(s, &b, StatusCode::UNAUTHORIZED);

    for (n, owner) in
        [("aaaaaaaaaaaaaaaaaaa1", "t1"), ("aaaaaaaaaaaaaaaaaaa2", "t1"), ("aaaaaaaaaaaaaaaaaaa3", "t2")]
    {
        let id = format!("sess_{n}");
        app.running_session(&id, &alice_id).await;
        let mut s = app.state.store.session(&id).await.unwrap().unwrap();
        s.metadata = [("owner".to_owned(), owner.to_owned())].into();
        app.state.store.update_session(&s).await.unwrap();
    }
    let key = [("x-api-key", alice.as_str())];
    let (s, d, _) = app.send("GET", "/sandboxes/aaaaaaaaaaaaaaaaaaa1", &key, None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["sandboxID"], "aaaaaaaaaaaaaaaaaaa1");
    assert_eq!((d["templateID"].as_str(), d["state"].as_str()), (Some("python-basic"), Some("running")));
    assert_eq!(
        (d["cpuCount"].as_u64(), d["memoryMB"].as_u64(), d["diskSizeMB"].as_u64()),
        (Some(1), Some(512), Some(1024))
    );
    assert_eq!((d["envdVersion"].as_str(), d["domain"].as_str()), (Some("0.5.2"), Some("localhost")));
    assert_eq!(d["envdAccessToken"].as_str().map(str::len), Some(64));
    for f in ["clientID", "startedAt", "endAt"] {
        assert!(d[f].is_string(), "{f}: {d}");
    }
    let (s, b, _) =
        app.send("GET", "/sandboxes/aaaaaaaaaaaaaaaaaaa1", &[("X-API-KEY", bob.as_str())], None).await;
    assert_e2b_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b, _) = app.send("GET", "/sandboxes/sess_aaaaaaaaaaaaaaaaaaa1", &key, None).await;
    assert_e2b_error(s, &b, StatusCode::NOT_FOUND);

    let ids = |v: &Value| {
        v.as_array().unwrap().iter().map(|s| s["sandboxID"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (_, l, _) = app.send("GET", "/v2/sandboxes?metadata=owner%3Dt1", &key, None).await;
    let mut got = ids(&l);
    got.sort();
    assert_eq!(got, ["aaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaa2"]);
    let (_, l, h) = app.send("GET", "/v2/sandboxes?limit=2", &key, None).await;
    assert_eq!(ids(&l).len(), 2);
    let next = h["x-next-token"].to_str().unwrap().to_owned();
    let (_, l, h) = app.send("GET", &format!("/v2/sandboxes?limit=2&nextToken={next}"), &key, None).await;
    assert_eq!(ids(&l).len(), 1);
    assert!(h.get("x-next-token").is_none());
    let (_, l, _) = app.send("GET", "/sandboxes?metadata=owner%3Dt2", &key, None).await;
    assert_eq!(ids(&l), ["aaaaaaaaaaaaaaaaaaa3"]);
    let (s, b, _) = app.send("GET", "/v2/sandboxes?limit=500", &key, None).await;
    assert_e2b_error(s, &b, StatusCode::BAD_REQUEST);

    let (s, _, _) =
        app.send("POST", "/sandboxes/aaaaaaaaaaaaaaaaaaa1/timeout", &key, Some(r#"{"timeout": 30}"#)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, d, _) = app.send("GET", "/sandboxes/aaaaaaaaaaaaaaaaaaa1", &key, None).await;
    let t = |f: &str| chrono::DateTime::parse_from_rfc3339(d[f].as_str().unwrap()).unwrap();
    let left = (t("endAt") - Utc::now().fixed_offset()).num_seconds();
    assert!((25..=31).contains(&left), "{left}: {d}");
    let (s, b, _) =
        app.send("POST", "/sandboxes/aaaaaaaaaaaaaaaaaaa1/timeout", &key, Some(r#"{"timeout": 0}"#)).await;
    assert_e2b_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b, _) = app.send("POST", "/sandboxes/aaaaaaaaaaaaaaaaaaa1/timeout", &key, Some("{")).await;
    assert_e2b_error(s, &b, StatusCode::BAD_REQUEST);
    // Connect carrying the data plane's routing headers (as some SDK versions send it) is still
    // the control plane's.
    let with_routing = [
        ("X-API-KEY", alice.as_str()),
        ("E2b-Sandbox-Id", "aaaaaaaaaaaaaaaaaaa1"),
        ("E2b-Sandbox-Port", "49983"),
    ];
    let (s, c, _) = app
        .send("POST", "/sandboxes/aaaaaaaaaaaaaaaaaaa1/connect", &with_routing, Some(r#"{"timeout": 10}"#))
        .await;
    assert_eq!((s, c["sandboxID"].as_str()), (StatusCode::OK, Some("aaaaaaaaaaaaaaaaaaa1")), "{c}");
    assert_eq!(c["envdAccessToken"], d["envdAccessToken"]);
    let (_, d2, _) = app.send("GET", "/sandboxes/aaaaaaaaaaaaaaaaaaa1", &key, None).await;
    assert_eq!(d2["endAt"], d["endAt"], "connect with a shorter timeout does not shorten");
    let (s, b, _) = app.send("POST", "/sandboxes/aaaaaaaaaaaaaaaaaaa1/pause", &key, None).await;
    assert_e2b_error(s, &b, StatusCode::NOT_IMPLEMENTED);
    let (s, b, _) = app.send("POST", "/sandboxes/aaaaaaaaaaaaaaaaaaa1/resume", &key, None).await;
    assert_e2b_error(s, &b, StatusCode::CONFLICT);
    let (s, m, _) = app.send("GET", "/sandboxes/aaaaaaaaaaaaaaaaaaa1/metrics", &key, None).await;
    assert_eq!((s, m), (StatusCode::OK, json!([])));
    let (s, b, _) =
        app.send("POST", "/v2/sandboxes", &key, Some(r#"{"templateID": "base", "autoPause": true}"#)).await;
    assert_e2b_error(s, &b, StatusCode::BAD_REQUEST);
    let (s, b, _) = app.send("POST", "/v2/sandboxes", &key, Some(r#"{"templateID": "no-such"}"#)).await;
    assert_e2b_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, _, _) = app.send("DELETE", "/sandboxes/aaaaaaaaaaaaaaaaaaa2", &key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b, _) = app.send("DELETE", "/sandboxes/aaaaaaaaaaaaaaaaaaa2", &key, None).await;
    assert_e2b_error(s, &b, StatusCode::NOT_FOUND);
}

/// The data plane: found by header, host or token alone; the access token checked before
/// anything else; unknown sandboxes answer like E2B's proxy.
#[tokio::test]
async fn the_e2b_data_plane_is_routed_and_needs_the_sandbox_token() {
    let app = App::new().await;
    let (owner, _) = app.key(false).await;
    app.running_session("sess_bbbbbbbbbbbbbbbbbbb1", &owner).await;
    app.running_session("sess_bbbbbbbbbbbbbbbbbbb2", &owner).await;
    let token = app.state.access_tokens.token("sess_bbbbbbbbbbbbbbbbbbb1").unwrap();
    let other = app.state.access_tokens.token("sess_bbbbbbbbbbbbbbbbbbb2").unwrap();
    let stat = r#"{"path": "/home/user"}"#;
    let id = ("E2b-Sandbox-Id", "bbbbbbbbbbbbbbbbbbb1");

    let (s, _, _) = app.send("GET", "/health", &[], None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b, _) = app.send("GET", "/health", &[("E2b-Sandbox-Id", "nosuchsandbox")], None).await;
    assert_eq!((s, b["message"].as_str()), (StatusCode::BAD_GATEWAY, Some("The sandbox was not found")));
    assert_eq!(b["sandboxId"], "nosuchsandbox");
    let (s, _, _) = app.send("GET", "/health", &[id], None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    for headers in [vec![id], vec![id, ("X-Access-Token", other.as_str())], vec![id, ("X-Access-Token", "x")]]
    {
        let (s, b, _) = app.send("POST", "/filesystem.Filesystem/Stat", &headers, Some(stat)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")), "{b}");
        for (m, p) in
            [("GET", "/files?path=a"), ("POST", "/execute"), ("GET", "/contexts"), ("DELETE", "/contexts/c")]
        {
            let (s, b, _) = app.send(m, p, &headers, Some("{}")).await;
            assert_e2b_error(s, &b, StatusCode::UNAUTHORIZED);
        }
    }
    let (s, b, _) = app.send("POST", "/execute", &[], Some(r#"{"code": "1"}"#)).await;
    assert_e2b_error(s, &b, StatusCode::UNAUTHORIZED);

    // With its token, by header, by host, or by the token alone, a request reaches the sandbox
    // (whose executor these tests do not have: 503 `unavailable`).
    let by_host = [("Host", "49983-bbbbbbbbbbbbbbbbbbb1.localhost:8000"), ("X-Access-Token", token.as_str())];
    for headers in [
        vec![id, ("X-Access-Token", token.as_str())],
        by_host.to_vec(),
        vec![("X-Access-Token", token.as_str())],
    ] {
        let (s, b, _) = app.send("POST", "/filesystem.Filesystem/Stat", &headers, Some(stat)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")), "{b}");
    }
    let (s, b, _) = app
        .send("POST", "/filesystem.Filesystem/Compose", &[id, ("X-Access-Token", &token)], Some("{}"))
        .await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_IMPLEMENTED, Some("unimplemented")), "{b}");
    // A malformed message is refused before any sandbox is asked.
    let (s, b, _) =
        app.send("POST", "/filesystem.Filesystem/Move", &[id, ("X-Access-Token", &token)], Some("{}")).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_argument")), "{b}");
    let (s, b, _) = app
        .send(
            "POST",
            "/process.Process/SendSignal",
            &[id, ("X-Access-Token", &token)],
            Some(r#"{"process":{}}"#),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_argument")), "{b}");
    let (s, b, _) = app
        .send(
            "POST",
            "/filesystem.Filesystem/Stat",
            &[id, ("X-Access-Token", &token), ("E2b-Sandbox-Port", "8080")],
            Some(stat),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(b["message"].as_str().unwrap().contains("port is not open"));
    let (s, b, _) = app
        .send(
            "POST",
            "/filesystem.Filesystem/Stat",
            &[("E2b-Sandbox-Id", "nosuchsandbox"), ("X-Access-Token", &token)],
            Some(stat),
        )
        .await;
    assert_eq!((s, b["code"].as_u64()), (StatusCode::BAD_GATEWAY, Some(502)));
}

/// `e2b.domain` is never one of E2B's own, whose SDKs would send sandbox tokens there.
#[test]
fn e2b_domains_are_refused() {
    for d in ["e2b.app", "sandbox.e2b.dev", "E2B.APP"] {
        let env = vec![("SANDBOX_E2B__DOMAIN".to_string(), d.to_string())];
        let err = Settings::load(None, env).unwrap_err().to_string();
        assert!(err.contains("E2B's own domains"), "{d}: {err}");
    }
    let env = vec![("SANDBOX_E2B__DOMAIN".to_string(), "sbx.example.com".to_string())];
    assert_eq!(Settings::load(None, env).unwrap().e2b.domain, "sbx.example.com");
    let bad = vec![("SANDBOX_E2B__ENVD_VERSION".to_string(), "0.0.9".to_string())];
    assert!(Settings::load(None, bad).is_err());
}

#[test]
#[should_panic(expected = "a status its OpenAPI description does not list")]
fn an_undocumented_status_fails_the_test_that_provoked_it() {
    spec::check("GET", "/api/v1/sessions?limit=5", 418, &json!({}));
}

#[test]
#[should_panic(expected = "which the OpenAPI document does not list")]
fn an_unlisted_error_code_fails_the_test_that_provoked_it() {
    spec::check("GET", "/api/v1/sessions/sess_x", 404, &json!({"code": "no_such_code"}));
}

impl App {
    /// A JSON-RPC request to `/mcp`: the status and the JSON body.
    async fn mcp(&self, key: Option<&str>, method: &str, params: Value) -> (StatusCode, Value) {
        let mut b = Request::builder()
            .method("POST")
            .uri("/mcp")
            .header("host", "sandbox.example")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let req = b.body(Body::from(body.to_string())).unwrap();
        let resp = api::router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    }

    /// A tool call's result (a JSON-RPC success) through `/mcp`.
    async fn mcp_tool(&self, key: &str, name: &str, arguments: Value) -> Value {
        let (s, body) =
            self.mcp(Some(key), "tools/call", json!({"name": name, "arguments": arguments})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["result"].clone()
    }
}

fn initialize_params() -> Value {
    json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "router-test", "version": "1"}})
}

#[tokio::test]
async fn mcp_speaks_json_rpc_behind_the_api_keys() {
    let app = App::new().await;
    let (a_id, a) = app.key(false).await;
    let (_, b) = app.key(false).await;
    // No key, a wrong key: refused before any MCP, as the REST API refuses.
    let (s, body) = app.mcp(None, "initialize", initialize_params()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "unauthorized", "{body}");
    let (s, body) = app.mcp(Some("sk_not_a_key_at_all"), "tools/list", json!({})).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{body}");

    let (s, init) = app.mcp(Some(&a), "initialize", initialize_params()).await;
    assert_eq!(s, StatusCode::OK, "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "sandbox", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["result"]["instructions"].as_str().is_some_and(|i| i.contains("create_session")), "{init}");

    let (s, list) = app.mcp(Some(&a), "tools/list", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let tools = list["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "create_context",
            "create_session",
            "install_packages",
            "list_files",
            "list_sessions",
            "list_templates",
            "read_file",
            "run_code",
            "terminate_session",
            "write_file"
        ]
    );
    for t in tools {
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 60), "{t}");
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
    }
    let run = tools.iter().find(|t| t["name"] == "run_code").unwrap();
    let required: Vec<&str> =
        run["inputSchema"]["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(required, ["session_id", "code"], "{run}");
    let schema = run["inputSchema"].to_string();
    for word in ["javascript", "shell", "context_id", "timeout", "default context"] {
        assert!(schema.contains(word), "run_code's schema tells of {word}: {schema}");
    }

    // A tool that needs no sandbox answers; a refusal is a tool error with our code.
    let templates = app.mcp_tool(&a, "list_templates", json!({})).await;
    assert_eq!(templates["isError"], false, "{templates}");
    assert!(templates["content"][0]["text"].as_str().unwrap().contains("python-datascience"), "{templates}");
    app.running_session("sess_mcp_a", &a_id).await;
    let others = app.mcp_tool(&b, "run_code", json!({"session_id": "sess_mcp_a", "code": "1"})).await;
    assert_eq!(others["isError"], true, "{others}");
    let text = others["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("session_not_found: "), "{text}");
    let bad =
        app.mcp_tool(&a, "read_file", json!({"session_id": "sess_mcp_a", "path": "../etc/passwd"})).await;
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(bad["content"][0]["text"].as_str().unwrap().starts_with("invalid_path: "), "{bad}");
    let (_, sessions) =
        app.mcp(Some(&b), "tools/call", json!({"name": "list_sessions", "arguments": {}})).await;
    assert_eq!(sessions["result"]["content"][0]["text"], "no running sessions", "{sessions}");

    // An unknown tool is a JSON-RPC error; arguments that do not fit the schema are a tool error
    // (the model can correct them), as MCP asks.
    let (_, unknown) = app.mcp(Some(&a), "tools/call", json!({"name": "rm_rf", "arguments": {}})).await;
    assert!(unknown["error"]["code"].is_i64(), "{unknown}");
    let wrong = app.mcp_tool(&a, "run_code", json!({"session_id": 5})).await;
    assert_eq!(wrong["isError"], true, "{wrong}");
    assert!(wrong["content"][0]["text"].as_str().unwrap().contains("invalid type"), "{wrong}");
    // The session is as it was.
    let s = app.state.store.session("sess_mcp_a").await.unwrap().unwrap();
    assert_eq!(s.status, SessionStatus::Running);
    // Tool calls are counted by outcome, requests by route.
    let metrics = app.metrics().await;
    for line in [
        r#"sandbox_mcp_tool_calls_total{tool="list_templates",outcome="ok"} 1"#,
        r#"sandbox_mcp_tool_calls_total{tool="run_code",outcome="session_not_found"} 1"#,
        r#"sandbox_mcp_tool_calls_total{tool="read_file",outcome="invalid_path"} 1"#,
        r#"sandbox_http_requests_total{method="POST",route="/mcp",status="401"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // A revoked key is refused at once.
    let (s, _, _) = app.call("DELETE", &format!("/api/v1/admin/keys/{a_id}"), Some(&app.admin), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = app.mcp(Some(&a), "tools/list", json!({})).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{body}");
}

/// On Kubernetes an allow-list needs the egress proxy: refused without
/// `kubernetes.egress_proxy_service`, and past the policy check with it (the create then fails
/// only where every create here does, starting the sandbox).
#[tokio::test]
async fn allow_lists_on_kubernetes_need_the_egress_proxy() {
    let body = r#"{"template_id":"python-basic","network":{"mode":"allowlist","allow":["pypi.org:443"]}}"#;
    let on_kubernetes = [("SANDBOX_RUNTIME", "kubernetes"), ("SANDBOX_EGRESS__PERMITTED", "pypi.org:443")];
    let app = App::with(NoContainers { reachable: true }, &on_kubernetes).await;
    let (s, err, _) = app.call("POST", "/api/v1/sessions", Some(&app.admin), Some(body)).await;
    assert_error(s, &err, StatusCode::UNPROCESSABLE_ENTITY, "egress_not_permitted");
    assert!(err["message"].as_str().unwrap().contains("kubernetes.egress_proxy_service"), "{err}");

    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), [7u8; 32]).unwrap();
    let key_path = key.path().display().to_string();
    let with_proxy = [
        on_kubernetes[0],
        on_kubernetes[1],
        ("SANDBOX_KUBERNETES__EGRESS_PROXY_SERVICE", "sandbox-system/sandbox-egress"),
        ("SANDBOX_KUBERNETES__EGRESS_KEY_FILE", key_path.as_str()),
    ];
    let app = App::with(NoContainers { reachable: true }, &with_proxy).await;
    let (s, err, _) = app.call("POST", "/api/v1/sessions", Some(&app.admin), Some(body)).await;
    assert_error(s, &err, StatusCode::SERVICE_UNAVAILABLE, "sandbox_start_failed");
}
