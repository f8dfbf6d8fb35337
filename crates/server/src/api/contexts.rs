//! `/api/v1/sessions/{session_id}/contexts`: code contexts, long-lived interpreters whose state
//! persists between executions (`context_id` on the execute routes).

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{Body, PathParam, Query, page};
use crate::api::types::{ContextResponse, CreateContextRequest, Page, PageQuery};
use crate::caller::Caller;
use crate::service::contexts::NewContext;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sandbox_core::Language;

/// Starts a code context: a long-lived interpreter in the session's sandbox, in a bwrap sandbox
/// of its own.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/contexts", tag = "contexts",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    request_body = CreateContextRequest,
    responses(
        (status = 201, description = "Started", body = ContextResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not running, or the packages it was created with failed to install (dependencies_failed)", body = ErrorBody),
        (status = 422, description = "Invalid field (language, cwd, env_vars), or the language is not installed in the session's image (language_unavailable)", body = ErrorBody),
        (status = 429, description = "The session has as many contexts as it may (too_many_contexts)", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached, or its packages are still installing after the longest install allowed (dependencies_installing)", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Body(req): Body<CreateContextRequest>,
) -> Result<(StatusCode, Json<ContextResponse>), ApiError> {
    let language: Language = req
        .language
        .parse()
        .map_err(|_| ApiError::invalid_field("language", "must be one of python, javascript, shell"))?;
    let new = NewContext { language, cwd: req.cwd, env_vars: req.env_vars };
    let view = state.contexts.create(&caller, &session_id, new).await?;
    Ok((StatusCode::CREATED, Json(ContextResponse::new(view, session_id))))
}

/// A session's code contexts, oldest first.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/contexts", tag = "contexts",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), PageQuery),
    responses(
        (status = 200, description = "A page of the contexts", body = Page<ContextResponse>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 422, description = "Invalid paging", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<ContextResponse>>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let all = state.contexts.list(&caller, &session_id).await?;
    Ok(Json(Page::of(all, limit, offset).map(|v| ContextResponse::new(v, session_id.clone()))))
}

/// One code context.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/contexts/{context_id}", tag = "contexts",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("context_id" = String, Path, description = "Context id")),
    responses(
        (status = 200, description = "The context", body = ContextResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or context", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, id)): PathParam<(String, String)>,
) -> Result<Json<ContextResponse>, ApiError> {
    let view = state.contexts.get(&caller, &session_id, &id).await?;
    Ok(Json(ContextResponse::new(view, session_id)))
}

/// Ends a code context's interpreter (an execution running in it ends `crashed`) and forgets
/// the context.
#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}/contexts/{context_id}", tag = "contexts",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("context_id" = String, Path, description = "Context id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or context", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, id)): PathParam<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.contexts.delete(&caller, &session_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a code context a fresh interpreter, as it was created (an execution running in it ends
/// `crashed`): how a `lost` or `expired` context comes back, empty.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/contexts/{context_id}/restart", tag = "contexts",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("context_id" = String, Path, description = "Context id")),
    responses(
        (status = 200, description = "Restarted", body = ContextResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or context", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 422, description = "Its directory no longer exists", body = ErrorBody),
        (status = 429, description = "The sandbox runs as many contexts as it may", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, id)): PathParam<(String, String)>,
) -> Result<Json<ContextResponse>, ApiError> {
    let view = state.contexts.restart(&caller, &session_id, &id).await?;
    Ok(Json(ContextResponse::new(view, session_id)))
}

/// Interrupts the execution running in a code context, if any (`KeyboardInterrupt` in Python,
/// `SIGINT` in JavaScript and shell): the execution ends `failed` and the context keeps its
/// state if the code stops within the grace period, else its interpreter is killed and the
/// context is `lost`.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/contexts/{context_id}/interrupt", tag = "contexts",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("context_id" = String, Path, description = "Context id")),
    responses(
        (status = 200, description = "Interrupted (or nothing was running)", body = ContextResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or context", body = ErrorBody),
        (status = 409, description = "The session is not running, or the context has lost its interpreter (context_lost)", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn interrupt(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, id)): PathParam<(String, String)>,
) -> Result<Json<ContextResponse>, ApiError> {
    let view = state.contexts.interrupt(&caller, &session_id, &id).await?;
    Ok(Json(ContextResponse::new(view, session_id)))
}
