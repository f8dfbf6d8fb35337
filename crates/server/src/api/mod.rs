//! The REST API (and MCP at `/mcp`): routes, middleware (request ids, logging, metrics, authentication) and the
//! OpenAPI document generated from the handlers.

pub mod auth;
pub mod contexts;
pub mod e2b;
pub mod error;
pub mod events;
pub mod executions;
pub mod extract;
pub mod files;
pub mod health;
pub mod keys;
pub mod mcp;
pub mod pools;
pub mod processes;
pub mod reference;
pub mod sessions;
pub mod templates;
pub mod types;

use crate::api::error::{AnsweredCode, ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::time::Instant;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The request id header, accepted from clients and always answered.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sandbox Control Plane", description = "Runs untrusted code in hardened sandboxes."),
    paths(
        health::root, health::health, health::ready, health::detailed, health::sync, health::metrics,
        pools::list,
        sessions::create, sessions::list, sessions::get, sessions::terminate, sessions::delete,
        sessions::install_dependencies, sessions::network,
        contexts::create, contexts::list, contexts::get, contexts::delete, contexts::restart,
        contexts::interrupt,
        processes::start, processes::list, processes::get, processes::stream, processes::stdin,
        processes::close_stdin, processes::signal, processes::resize,
        executions::execute, executions::execute_sync, executions::status, executions::result, executions::cancel, executions::stream,
        executions::list,
        templates::create, templates::list, templates::get, templates::update, templates::delete,
        files::list, files::upload, files::download, files::delete, files::stat, files::make_directory,
        files::move_file, files::watch, files::create_watcher, files::watcher_events, files::delete_watcher,
        keys::create, keys::list, keys::revoke,
    ),
    components(schemas(ErrorBody, events::OutputChunk, events::ProcessStarted)),
    modifiers(&BearerAuth),
    tags(
        (name = "sessions", description = "Sessions and their sandboxes"),
        (name = "executions", description = "Running code"),
        (name = "contexts", description = "Code contexts: interpreters whose state persists between executions"),
        (name = "processes", description = "Processes: commands that run on their own, with streamed output, standard input and signals"),
        (name = "templates", description = "Sandbox images and their defaults"),
        (name = "files", description = "Workspace files"),
        (name = "admin", description = "API keys"),
        (name = "health", description = "Health, metrics, state sync"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("API key").build(),
            ),
        );
        openapi.info.version = health::VERSION.to_owned();
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises")
}

/// Serves the API on `listener` until `shutdown` resolves, then lets requests in flight finish
/// within `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let (signalled, stopping) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = signalled.send(());
    };
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown);
    // Streams a client keeps open (a directory watch, a process's output) never end by
    // themselves: past the grace they are cut off.
    let cut_off = async move {
        if stopping.await.is_err() {
            return std::future::pending().await;
        }
        tokio::time::sleep(grace).await;
        tracing::warn!(
            grace_s = grace.as_secs(),
            "connections still open after the shutdown grace; closing them"
        );
    };
    tokio::select! {
        served = server.into_future() => served,
        () = cut_off => Ok(()),
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let limits = &state.settings.limits;
    let authenticated = Router::new()
        .route("/api/v1/health/detailed", get(health::detailed))
        .route("/api/v1/health/sync", post(health::sync))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/pools", get(pools::list))
        .route("/api/v1/sessions", post(sessions::create).get(sessions::list))
        .route("/api/v1/sessions/{session_id}", get(sessions::get).delete(sessions::delete))
        .route("/api/v1/sessions/{session_id}/terminate", post(sessions::terminate))
        .route("/api/v1/sessions/{session_id}/network", get(sessions::network))
        .route("/api/v1/sessions/{session_id}/dependencies/install", post(sessions::install_dependencies))
        .route("/api/v1/sessions/{session_id}/contexts", post(contexts::create).get(contexts::list))
        .route(
            "/api/v1/sessions/{session_id}/contexts/{context_id}",
            get(contexts::get).delete(contexts::delete),
        )
        .route("/api/v1/sessions/{session_id}/contexts/{context_id}/restart", post(contexts::restart))
        .route("/api/v1/sessions/{session_id}/contexts/{context_id}/interrupt", post(contexts::interrupt))
        .route("/api/v1/sessions/{session_id}/processes", post(processes::start).get(processes::list))
        .route("/api/v1/sessions/{session_id}/processes/{pid}", get(processes::get))
        .route("/api/v1/sessions/{session_id}/processes/{pid}/stream", get(processes::stream))
        .route("/api/v1/sessions/{session_id}/processes/{pid}/stdin", post(processes::stdin))
        .route("/api/v1/sessions/{session_id}/processes/{pid}/stdin/close", post(processes::close_stdin))
        .route("/api/v1/sessions/{session_id}/processes/{pid}/signal", post(processes::signal))
        .route("/api/v1/sessions/{session_id}/processes/{pid}/pty", post(processes::resize))
        .route("/api/v1/executions/sessions/{session_id}/execute", post(executions::execute))
        .route("/api/v1/executions/sessions/{session_id}/execute-sync", post(executions::execute_sync))
        .route("/api/v1/executions/sessions/{session_id}/executions", get(executions::list))
        .route("/api/v1/executions/{execution_id}/status", get(executions::status))
        .route("/api/v1/executions/{execution_id}/result", get(executions::result))
        .route("/api/v1/executions/{execution_id}/cancel", post(executions::cancel))
        .route("/api/v1/executions/{execution_id}/stream", get(executions::stream))
        .route("/api/v1/templates", post(templates::create).get(templates::list))
        .route(
            "/api/v1/templates/{template_id}",
            get(templates::get).put(templates::update).delete(templates::delete),
        )
        .route("/api/v1/sessions/{session_id}/files", get(files::list))
        .route(
            "/api/v1/sessions/{session_id}/files/upload",
            post(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/sessions/{session_id}/files/{*file_path}", get(files::download).delete(files::delete))
        .route("/api/v1/sessions/{session_id}/files-stat", get(files::stat))
        .route("/api/v1/sessions/{session_id}/files-move", post(files::move_file))
        .route("/api/v1/sessions/{session_id}/files-watch", get(files::watch))
        .route("/api/v1/sessions/{session_id}/directories", post(files::make_directory))
        .route("/api/v1/sessions/{session_id}/watchers", post(files::create_watcher))
        .route("/api/v1/sessions/{session_id}/watchers/{watcher_id}", delete(files::delete_watcher))
        .route("/api/v1/sessions/{session_id}/watchers/{watcher_id}/events", get(files::watcher_events))
        .route("/api/v1/admin/keys", post(keys::create).get(keys::list))
        .route("/api/v1/admin/keys/{key_id}", delete(keys::revoke))
        .route_service("/mcp", mcp::service(state.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    let e2b = &state.settings.e2b;
    let mut app = Router::new();
    if e2b.enabled {
        app = app.merge(e2b::control_routes(&state));
        if e2b.data_plane_listen.is_none() {
            app = app.merge(e2b::data_routes(&state));
        }
    }
    app.route("/", get(health::root))
        .route("/api/v1/health", get(health::health))
        .route("/api/v1/health/ready", get(health::ready))
        .route("/openapi.json", get(|| async { ([("content-type", "application/json")], openapi_json()) }))
        .route("/docs", get(|| async { axum::response::Html(reference::page()) }))
        .merge(authenticated)
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_request_bytes))
        .route_layer(middleware::from_fn(remember_route))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .layer(tower::util::option_layer(cors(&state.settings.cors_allowed_origins)))
        .with_state(state)
}

/// The E2B data plane alone, for its own listener (`e2b.data_plane_listen`).
pub fn data_plane_router(state: AppState) -> Router {
    let limit = state.settings.limits.max_request_bytes;
    e2b::data_routes(&state)
        .layer(DefaultBodyLimit::max(limit))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

/// Cross-origin requests from the configured origins' web pages (a console served on its own
/// port): preflights are answered before authentication, as browsers send them without the
/// key. No origins, no layer: no CORS headers, and `OPTIONS` stays 405.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let h = |s: &'static str| HeaderName::from_static(s);
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            REQUEST_ID.clone(),
            h("idempotency-key"),
            h("last-event-id"),
        ])
        .expose_headers([REQUEST_ID.clone(), axum::http::header::RETRY_AFTER, h("x-total-count")])
        .max_age(std::time::Duration::from_secs(600));
    Some(layer)
}

/// The matched route pattern, carried to the outer middleware for metrics and logs.
#[derive(Clone)]
struct RoutePattern(String);

async fn remember_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let mut resp = next.run(req).await;
    if let Some(r) = route {
        resp.extensions_mut().insert(RoutePattern(r));
    }
    resp
}

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

/// Outermost middleware: assigns the request id (the client's `X-Request-ID` when valid), runs
/// the request in a span carrying it, puts it in every error body and in the response headers,
/// and records metrics and an access log line. Never logs the `Authorization` header.
async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(|| crate::ids::execution_id().replacen("exec_", "req_", 1));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path, key_id = tracing::field::Empty);
    let mut resp = next.run(req).instrument(span.clone()).await;
    if let Some(mut body) = resp.extensions_mut().remove::<ErrorBody>() {
        body.request_id = Some(id.clone());
        let (mut parts, _) = resp.into_parts();
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        let rendered = Json(body).into_response();
        resp = Response::from_parts(parts, rendered.into_body());
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let route =
        resp.extensions().get::<RoutePattern>().map(|r| r.0.clone()).unwrap_or_else(|| "unmatched".into());
    let status = resp.status().as_u16();
    state.metrics.http(method.as_str(), &route, status, start.elapsed());
    if method != Method::GET || status >= 400 {
        let elapsed_ms = start.elapsed().as_millis() as u64;
        span.in_scope(|| match resp.extensions().get::<AnsweredCode>() {
            Some(AnsweredCode(code)) => tracing::info!(status, error_code = code, elapsed_ms, "request"),
            None => tracing::info!(status, elapsed_ms, "request"),
        });
    }
    resp
}
