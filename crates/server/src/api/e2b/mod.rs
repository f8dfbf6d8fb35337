//! The E2B-compatible API, so E2B's SDKs work unchanged against this server: the control plane
//! (`/sandboxes`, `/v2/sandboxes`, authenticated by `X-API-KEY`), and each sandbox's data plane
//! (envd's `/files`, `/health` and Connect services, the code interpreter's `/execute` and
//! `/contexts`), addressed by the `E2b-Sandbox-Id` header, by the host `<port>-<id>.<domain>`,
//! or by the access token alone, and authenticated by the sandbox's access token.

pub mod connect;
pub mod control;
pub mod envd;
pub mod interpreter;
pub mod process;
pub mod types;

use crate::api::error::{ApiError, E2bError};
use crate::caller::Caller;
use crate::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sandbox_core::model::{Session, SessionStatus};

/// The prefix of our session ids, which E2B's sandbox ids leave out (E2B's host routing allows
/// only `[a-z0-9]`).
const SESSION_PREFIX: &str = "sess_";
/// envd's port in E2B's sandboxes.
pub const ENVD_PORT: u16 = 49983;
/// The code interpreter's port in E2B's sandboxes.
pub const INTERPRETER_PORT: u16 = 49999;

/// The sandbox id of a session.
pub fn sandbox_id(session_id: &str) -> String {
    session_id.strip_prefix(SESSION_PREFIX).unwrap_or(session_id).to_owned()
}

/// The session a sandbox id names, if it is one (`[a-z0-9]`, 1-59 characters).
pub fn session_id(sandbox_id: &str) -> Option<String> {
    let valid = !sandbox_id.is_empty()
        && sandbox_id.len() <= 59
        && sandbox_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    valid.then(|| format!("{SESSION_PREFIX}{sandbox_id}"))
}

/// The control-plane routes (merged into the API's router; their paths are E2B's own).
pub fn control_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/sandboxes", post(control::create).get(control::list_v1))
        .route("/v2/sandboxes", post(control::create).get(control::list_v2))
        .route("/sandboxes/{id}", get(control::get).delete(control::kill))
        .route("/sandboxes/{id}/timeout", post(control::set_timeout))
        .route("/sandboxes/{id}/connect", post(control::connect))
        .route("/v2/sandboxes/{id}/connect", post(control::connect))
        .route("/sandboxes/{id}/pause", post(control::pause))
        .route("/sandboxes/{id}/resume", post(control::resume))
        .route("/sandboxes/{id}/metrics", get(control::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key))
}

/// The data-plane routes: served on the API's listener beside everything else (their paths
/// differ from the API's), or on a listener of their own.
pub fn data_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/files",
            get(envd::read_file).post(envd::write_files).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/filesystem.Filesystem/{method}", post(envd::filesystem))
        .route("/process.Process/{method}", post(process::process))
        .route("/execute", post(interpreter::execute))
        .route("/contexts", post(interpreter::create_context).get(interpreter::list_contexts))
        .route("/contexts/{id}", axum::routing::delete(interpreter::delete_context))
        .route("/contexts/{id}/restart", post(interpreter::restart_context))
        .route_layer(middleware::from_fn_with_state(state.clone(), resolve_sandbox))
        .route("/health", get(health))
}

/// `X-API-KEY` (any case) → the [`Caller`], or 401 with E2B's error body.
async fn require_api_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
    let Some(secret) = presented.filter(|s| !s.is_empty()) else {
        return E2bError(ApiError::unauthorized("send an API key in the X-API-KEY header")).into_response();
    };
    match state.keys.authenticate(secret).await {
        Ok(Some(caller)) => {
            tracing::Span::current().record("key_id", caller.key_id.as_str());
            req.extensions_mut().insert::<Caller>(caller);
            next.run(req).await
        }
        Ok(None) => E2bError(ApiError::unauthorized("the API key is not valid")).into_response(),
        Err(e) => E2bError::from(e).into_response(),
    }
}

/// The sandbox a data-plane request is for, checked against its access token.
#[derive(Clone)]
pub struct Target {
    /// Its session.
    pub session: Session,
    /// Its owner, as whom the services are asked.
    pub caller: Caller,
    /// The port it was addressed on.
    pub port: u16,
    /// Whether the request carried the sandbox's access token (else only a signed `/files`
    /// URL may pass).
    pub token: bool,
}

/// What a data-plane request names: a sandbox id and port (from the headers or the host).
fn addressed(headers: &HeaderMap, domain: &str) -> Option<(String, Option<u16>)> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(id) = text("e2b-sandbox-id").filter(|s| !s.is_empty()) {
        return Some((id.to_owned(), text("e2b-sandbox-port").and_then(|p| p.parse().ok())));
    }
    let host = text(header::HOST.as_str())?;
    let host =
        host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    let (port, id) = label.split_once('-')?;
    Some((id.to_owned(), Some(port.parse().ok()?)))
}

/// The answer E2B's proxy gives for a sandbox that does not exist (502; the SDKs read its
/// message).
fn not_found(id: &str) -> Response {
    let body = serde_json::json!({"sandboxId": id, "message": "The sandbox was not found", "code": 502});
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

/// A refused data-plane request: a Connect error for the Connect services, E2B's error body for
/// the rest.
pub fn refuse(path: &str, e: ApiError) -> Response {
    if is_connect(path) {
        connect::ConnectError::from(e).into_response()
    } else {
        E2bError(e).into_response()
    }
}

fn is_connect(path: &str) -> bool {
    path.starts_with("/filesystem.Filesystem/") || path.starts_with("/process.Process/")
}

/// The running session whose access token `token` is, if any.
async fn by_token(state: &AppState, token: &str) -> Result<Option<Session>, ApiError> {
    for s in state.store.sessions_in_status(&[SessionStatus::Running]).await? {
        if state.access_tokens.verify(&s.id, token)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Finds the sandbox a data-plane request is for (E2B's dispatch: routing headers, then the
/// host, then the access token alone), checks the access token, and passes the [`Target`]
/// on. The token comes in `X-Access-Token` or `E2B-Traffic-Access-Token`. A request with no
/// token reaches only `/files`, whose handler checks the URL's signature instead.
async fn resolve_sandbox(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    // The code interpreter SDKs send the traffic token (the same token here) instead on
    // everything but `/execute`.
    let presented = ["x-access-token", "e2b-traffic-access-token"]
        .iter()
        .find_map(|h| req.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let unauthorized = |m: &str| refuse(&path, ApiError::unauthorized(m.to_owned()));
    let (session, port) = match addressed(req.headers(), &state.settings.e2b.domain) {
        Some((id, port)) => {
            let found = match session_id(&id) {
                Some(sid) => match state.store.session(&sid).await {
                    Ok(s) => s.filter(|s| s.status == SessionStatus::Running),
                    Err(e) => return refuse(&path, e.into()),
                },
                None => None,
            };
            match found {
                Some(s) => (s, port),
                None => return not_found(&id),
            }
        }
        None => {
            let found = match presented.as_deref() {
                Some(t) => by_token(&state, t).await,
                None if path == "/files" => envd::by_signature(&state, req.method(), req.uri()).await,
                None => Ok(None),
            };
            match found {
                Ok(Some(s)) => (s, None),
                Ok(None) => {
                    return unauthorized(
                        "no sandbox is addressed: send E2b-Sandbox-Id or use <port>-<id>.<domain>, with the sandbox's X-Access-Token",
                    );
                }
                Err(e) => return refuse(&path, e),
            }
        }
    };
    let default_port =
        if path == "/execute" || path.starts_with("/contexts") { INTERPRETER_PORT } else { ENVD_PORT };
    let port = port.unwrap_or(default_port);
    if port != ENVD_PORT && port != INTERPRETER_PORT {
        let body = serde_json::json!({
            "sandboxId": sandbox_id(&session.id),
            "message": "The sandbox is running but port is not open",
            "port": port,
            "code": 502,
        });
        return (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response();
    }
    let token = match presented.as_deref() {
        Some(t) => match state.access_tokens.verify(&session.id, t) {
            Ok(true) => true,
            Ok(false) => return unauthorized("the access token is not this sandbox's"),
            Err(e) => return refuse(&path, e.into()),
        },
        None if path == "/files" => false,
        None => return unauthorized("send the sandbox's access token in X-Access-Token"),
    };
    let caller = Caller { key_id: session.owner_key_id.clone(), is_admin: false };
    req.extensions_mut().insert(Target { session, caller, port, token });
    next.run(req).await
}

/// `GET /health`: 204 (envd's and the code interpreter's health, and this server's); 502 for
/// a sandbox addressed that does not run (the SDKs' `is_running`).
async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((id, _)) = addressed(&headers, &state.settings.e2b.domain) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let running = match session_id(&id) {
        Some(sid) => match state.store.session(&sid).await {
            Ok(s) => s.is_some_and(|s| s.status == SessionStatus::Running),
            Err(e) => return E2bError::from(e).into_response(),
        },
        None => false,
    };
    if running { StatusCode::NO_CONTENT.into_response() } else { not_found(&id) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sandbox_ids_are_session_ids_without_the_prefix() {
        assert_eq!(sandbox_id("sess_abc123"), "abc123");
        assert_eq!(session_id("abc123").as_deref(), Some("sess_abc123"));
        assert_eq!(session_id("sess_abc"), None);
        assert_eq!(session_id("ABC"), None);
        assert_eq!(session_id(""), None);
        assert_eq!(session_id(&"a".repeat(60)), None);
    }

    #[test]
    fn sandboxes_are_addressed_by_header_or_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("49999-abc123.sbx.example.com:8000"));
        assert_eq!(addressed(&h, "sbx.example.com"), Some(("abc123".into(), Some(49999))));
        assert_eq!(addressed(&h, "example.org"), None);
        h.insert(header::HOST, HeaderValue::from_static("49983-abc.localhost"));
        assert_eq!(addressed(&h, "localhost"), Some(("abc".into(), Some(49983))));
        h.insert(header::HOST, HeaderValue::from_static("localhost:8000"));
        assert_eq!(addressed(&h, "localhost"), None);
        h.insert("E2b-Sandbox-Id", HeaderValue::from_static("xyz"));
        assert_eq!(addressed(&h, "localhost"), Some(("xyz".into(), None)));
        h.insert("E2b-Sandbox-Port", HeaderValue::from_static("49999"));
        assert_eq!(addressed(&h, "localhost"), Some(("xyz".into(), Some(49999))));
    }
}
