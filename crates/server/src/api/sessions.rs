//! `/api/v1/sessions`: create, list, get, terminate, delete.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::events::{OutputChunk, error_event, json_event};
use crate::api::extract::{Body, IdempotencyKey, PathParam, Query, page};
use crate::api::types::{
    CreateSessionQuery, CreateSessionRequest, InstallDependenciesQuery, InstallDependenciesRequest,
    ListSessionsQuery, NetworkAttemptResponse, Page, PageQuery, SessionResponse,
};
use crate::caller::Caller;
use crate::service::dependencies::InstallRequest;
use crate::service::error::ServiceError;
use crate::service::idempotency::{Claim, Idempotency};
use crate::service::sessions::NewSession;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sandbox_core::model::{Session, SessionStatus};
use sandbox_store::SessionFilter;
use std::collections::HashMap;

/// Renders sessions, looking up each template's runtime once.
pub async fn render(
    state: &AppState,
    caller: &Caller,
    sessions: Vec<Session>,
) -> Result<Vec<SessionResponse>, ApiError> {
    let mut runtimes: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(sessions.len());
    for s in sessions {
        if !runtimes.contains_key(&s.template_id) {
            let rt = state.templates.language_runtime(&s.template_id).await?;
            runtimes.insert(s.template_id.clone(), rt);
        }
        let rt = runtimes[&s.template_id].clone();
        out.push(SessionResponse::new(s, rt, caller, state.settings.executor.max_processes));
    }
    Ok(out)
}

async fn render_one(
    state: &AppState,
    caller: &Caller,
    s: Session,
) -> Result<Json<SessionResponse>, ApiError> {
    Ok(Json(render(state, caller, vec![s]).await?.remove(0)))
}

/// Creates a session and its sandbox.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", security(("bearer" = [])),
    params(CreateSessionQuery, ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key answers with what the first request made (kept 24 h, per API key)")), request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "Created (running, or creating with wait=false); packages asked for install in the background (dependency_install_status: installing, then completed or failed)", body = SessionResponse),
        (status = 400, description = "Malformed JSON, or an invalid Idempotency-Key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 409, description = "A session with this id exists; the template's image is still being pulled (`template_not_ready`) or could not be pulled (`template_pull_failed`); or the first request with this Idempotency-Key is still being carried out or made what no longer exists", body = ErrorBody),
        (status = 422, description = "Invalid field, unknown template, a template whose image is missing, a network policy that is invalid or not permitted (`invalid_egress_pattern`, `invalid_egress_policy`, `egress_not_permitted`), or an Idempotency-Key used for another request", body = ErrorBody),
        (status = 503, description = "The sandbox could not be started", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CreateSessionQuery>,
    IdempotencyKey(key): IdempotencyKey,
    Body(req): Body<CreateSessionRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let ticket = match key {
        None => None,
        Some(key) => match state.idempotency.claim(&caller, &key, "sessions.create", &req).await? {
            Claim::New(ticket) => Some(ticket),
            // The session the first request made, as it is now.
            Claim::Done(id) => {
                let session = state.sessions.get(&caller, &id).await.map_err(|e| match e {
                    ServiceError::NotFound { .. } => Idempotency::gone(&key, &id),
                    e => e,
                })?;
                return Ok((StatusCode::CREATED, render_one(&state, &caller, session).await?));
            }
        },
    };
    let new = NewSession {
        id: req.id,
        template_id: req.template_id,
        timeout: req.timeout,
        cpu: req.cpu,
        memory: req.memory,
        disk: req.disk,
        env_vars: req.env_vars,
        metadata: Default::default(),
        dependencies: req.dependencies.into_iter().map(Into::into).collect(),
        python_package_index_url: req.python_package_index_url,
        install_timeout: req.install_timeout,
        fail_on_dependency_error: req.fail_on_dependency_error.unwrap_or(true),
        allow_version_conflicts: req.allow_version_conflicts.unwrap_or(false),
        source_session_id: req.source_session_id,
        network: req.network.map(Into::into).unwrap_or_default(),
    };
    let created = state.sessions.create(&caller, new, q.wait).await;
    state.idempotency.settle(ticket, created.as_ref().ok().map(|s| s.id.as_str())).await;
    Ok((StatusCode::CREATED, render_one(&state, &caller, created?).await?))
}

/// Lists the caller's sessions (an admin key sees all), newest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", security(("bearer" = [])),
    params(ListSessionsQuery),
    responses(
        (status = 200, description = "A page of sessions", body = Page<SessionResponse>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 422, description = "Invalid filter or paging", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListSessionsQuery>,
) -> Result<Json<Page<SessionResponse>>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(SessionStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_field("status", "must be one of creating, running, terminated, failed")
        })?),
    };
    let filter = SessionFilter { owner_key_id: None, status, template_id: q.template_id, limit, offset };
    let page = state.sessions.list(&caller, filter).await?;
    Ok(Json(Page::new(render(&state, &caller, page.items).await?, page.total, limit, offset)))
}

/// One session.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}", tag = "sessions", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = SessionResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<SessionResponse>, ApiError> {
    let s = state.sessions.get(&caller, &id).await?;
    render_one(&state, &caller, s).await
}

/// Stops the session's sandbox and keeps the record (idempotent).
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/terminate", tag = "sessions", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The terminated session", body = SessionResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "The runtime could not stop the sandbox", body = ErrorBody)))]
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<SessionResponse>, ApiError> {
    let s = state.sessions.terminate(&caller, &id).await?;
    render_one(&state, &caller, s).await
}

/// Removes the session, its executions and its workspace (idempotent).
#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}", tag = "sessions", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Deleted (or already deleted)"),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "The runtime could not stop the sandbox", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    state.sessions.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The session's attempts to reach the network through the egress proxy, newest first: every
/// attempt, allowed or denied, with its destination, decision and bytes. A session keeps its
/// newest 10 000.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/network", tag = "sessions", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), PageQuery),
    responses(
        (status = 200, description = "A page of the attempts", body = Page<NetworkAttemptResponse>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 422, description = "Invalid paging", body = ErrorBody)))]
pub async fn network(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<NetworkAttemptResponse>>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let found = state.sessions.network_attempts(&caller, &id, limit, offset).await?;
    Ok(Json(Page::new(found.items.into_iter().map(Into::into).collect(), found.total, limit, offset)))
}

/// Lines of pip's output an install stream holds for a slow client; more are dropped.
const PROGRESS_LINES: usize = 1024;

/// Installs more Python packages into a running session and answers when they are in place
/// (or, with `stream=true`, streams pip's output as it runs): pip runs in a short-lived
/// installer container with network access (the sandbox keeps none), and executions see the
/// new packages from their next start. A failed install leaves the packages as they were; its
/// error is also kept in `dependency_install_error`.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/dependencies/install", tag = "sessions", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), InstallDependenciesQuery),
    request_body = InstallDependenciesRequest,
    responses(
        (status = 200, description = "Installed; the session with its packages. With stream=true, once the install started, Server-Sent Events with a JSON `data`: `output` (OutputChunk, one line pip printed), then `result` (SessionResponse) or `error` (ErrorBody, with the codes below)", content(
            (SessionResponse = "application/json"),
            (String = "text/event-stream"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not running, or is installing already", body = ErrorBody),
        (status = 422, description = "Invalid package, version or index URL (`validation_error`); no such package or version on the index (`package_not_found`); pip failed (`dependency_install_failed`)", body = ErrorBody),
        (status = 501, description = "The runtime cannot run installers (`dependencies_unsupported`)", body = ErrorBody),
        (status = 502, description = "The index could not be reached (`package_index_unreachable`)", body = ErrorBody),
        (status = 503, description = "The installer could not run (`installer_unavailable`)", body = ErrorBody),
        (status = 504, description = "The install took too long (`dependency_install_timeout`)", body = ErrorBody)))]
pub async fn install_dependencies(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Query(q): Query<InstallDependenciesQuery>,
    Body(req): Body<InstallDependenciesRequest>,
) -> Result<Response, ApiError> {
    if req.dependencies.is_empty() {
        return Err(ApiError::invalid_field("dependencies", "name at least one package"));
    }
    let request = InstallRequest {
        new: req.dependencies.into_iter().map(Into::into).collect(),
        index_url: req.python_package_index_url,
        allow_conflicts: req.allow_version_conflicts.unwrap_or(false),
    };
    let (progress, lines) = if q.stream {
        let (tx, rx) = tokio::sync::mpsc::channel(PROGRESS_LINES);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let installing = state.sessions.install_dependencies(&caller, &id, request, progress).await?;
    let Some(lines) = lines else {
        let session = installing.finish().await?;
        return Ok(render_one(&state, &caller, session).await?.into_response());
    };
    let output = futures_util::stream::unfold(lines, |mut lines| async move {
        let data = lines.recv().await?;
        Some((json_event("output", &OutputChunk { data }), lines))
    });
    let end = futures_util::stream::once(async move {
        let rendered = match installing.finish().await {
            Ok(session) => render_one(&state, &caller, session).await,
            Err(e) => Err(e.into()),
        };
        match rendered {
            Ok(Json(session)) => json_event("result", &session),
            Err(e) => error_event(e),
        }
    });
    let events = output.chain(end).map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}
