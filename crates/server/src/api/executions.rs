//! `/api/v1/executions`: submit (async or sync, optionally streamed), status, result, cancel, list.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::events::{OutputChunk, error_event, json_event};
use crate::api::extract::{Body, IdempotencyKey, LastEventId, PathParam, Query, page};
use crate::api::types::{
    DisplayResult, ExecuteCodeRequest, ExecuteCodeResponse, ExecuteQuery, ExecuteSyncQuery,
    ExecutionResponse, Page, PageQuery, shown_session_id,
};
use crate::caller::Caller;
use crate::service::error::ServiceError;
use crate::service::executions::{Feed, FeedEvent, NewExecution, Submitted};
use crate::service::idempotency::{Claim, Idempotency, Ticket};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, stream};
use sandbox_core::Language;
use sandbox_core::model::Execution;
use sandbox_protocol::{ExecEvent, StreamEvent};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Default execution timeout, seconds (the Python control plane's).
const DEFAULT_TIMEOUT_SEC: u32 = 30;

fn parse_request(req: ExecuteCodeRequest) -> Result<NewExecution, ApiError> {
    let language = req
        .language
        .map(|l| l.parse::<Language>())
        .transpose()
        .map_err(|_| ApiError::invalid_field("language", "must be one of python, javascript, shell"))?;
    if req.code.is_empty() {
        return Err(ApiError::invalid_field("code", "must not be empty"));
    }
    Ok(NewExecution {
        code: req.code,
        language,
        context_id: req.context_id,
        timeout_sec: req.timeout.unwrap_or(DEFAULT_TIMEOUT_SEC),
        event: req.event.map(serde_json::Value::Object),
    })
}

/// What the caller calls the session: the id it used in the path.
fn accepted(e: &Execution, session_id: &str) -> ExecuteCodeResponse {
    ExecuteCodeResponse {
        execution_id: e.id.clone(),
        session_id: session_id.to_owned(),
        status: e.status.as_str().into(),
        created_at: Some(e.created_at),
    }
}

/// What an `Idempotency-Key` on an execute request says: run it (completing the ticket with the
/// new execution), or answer with the execution the key's first request started.
enum Once {
    Run(Option<Ticket>),
    Replay(Box<Execution>),
}

async fn once(
    state: &AppState,
    caller: &Caller,
    key: Option<String>,
    session_id: &str,
    req: &ExecuteCodeRequest,
    stream: bool,
) -> Result<Once, ApiError> {
    let Some(key) = key else { return Ok(Once::Run(None)) };
    if stream {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key is not taken with stream=true: retry without streaming to get the execution",
        ));
    }
    match state.idempotency.claim(caller, &key, &format!("execute:{session_id}"), req).await? {
        Claim::New(ticket) => Ok(Once::Run(Some(ticket))),
        Claim::Done(id) => match state.executions.get(caller, &id).await {
            Ok((e, _)) => Ok(Once::Replay(Box::new(e))),
            Err(ServiceError::NotFound { .. }) => Err(Idempotency::gone(&key, &id).into()),
            Err(e) => Err(e.into()),
        },
    }
}

/// Submits an execution, completing or releasing the request's idempotency ticket.
async fn submit(
    state: &AppState,
    caller: &Caller,
    session_id: &str,
    req: ExecuteCodeRequest,
    ticket: Option<Ticket>,
) -> Result<Submitted, ApiError> {
    let submitted = match parse_request(req) {
        Ok(new) => state.executions.submit(caller, session_id, new).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    state.idempotency.settle(ticket, submitted.as_ref().ok().map(|s| s.execution.id.as_str())).await;
    submitted
}

/// Server-Sent Events of an execution from its feed: `started` (id 0), then `stdout` /
/// `stderr` chunks (`{"data": "..."}`) and `display` outputs (a [`DisplayResult`]) as they
/// happen, then `result` with the stored execution (or `error` with an [`ErrorBody`] if it
/// could not be followed to its end). Every event has an id: a client that reconnects with
/// `Last-Event-ID: n` (`after`) gets the events after `n`.
fn sse(
    started: ExecuteCodeResponse,
    feed: Arc<Feed>,
    after: Option<u64>,
    session_id: String,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let first = match after {
        None => stream::once(async move { Ok(json_event("started", &started).id("0")) }).boxed(),
        Some(_) => stream::empty().boxed(),
    };
    // Feed entry i is event i + 1.
    let from = after.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let events = feed.follow(from).map(move |(i, e)| {
        let ev = match e {
            FeedEvent::Output(ExecEvent::Stream(StreamEvent::Stdout { data })) => {
                json_event("stdout", &OutputChunk { data })
            }
            FeedEvent::Output(ExecEvent::Stream(StreamEvent::Stderr { data })) => {
                json_event("stderr", &OutputChunk { data })
            }
            FeedEvent::Output(ExecEvent::Display { output }) => {
                json_event("display", &DisplayResult::from(output))
            }
            FeedEvent::Output(ExecEvent::Stream(
                StreamEvent::Started { .. } | StreamEvent::Result { .. },
            )) => Event::default().comment("progress"),
            FeedEvent::Done(e) => {
                json_event("result", &ExecutionResponse::from(*e).in_session(session_id.clone()))
            }
            // The error envelope every error response has.
            FeedEvent::Lost => {
                error_event(ApiError::internal("the task following an execution ended before storing it"))
            }
        };
        Ok(ev.id((i + 1).to_string()))
    });
    Sse::new(first.chain(events)).keep_alive(KeepAlive::default())
}

/// Starts an execution and answers at once (or streams it with `stream=true`).
#[utoipa::path(post, path = "/api/v1/executions/sessions/{session_id}/execute", tag = "executions",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ExecuteQuery, ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key answers with what the first request made (kept 24 h, per API key)")),
    request_body = ExecuteCodeRequest,
    responses(
        (status = 201, description = "Recorded and started; with stream=true, Server-Sent Events, each with an id and a JSON `data`: `started` (ExecuteCodeResponse), `stdout` and `stderr` (OutputChunk), `display` (DisplayResult), then `result` (ExecutionResponse) or `error` (ErrorBody)", content(
            (ExecuteCodeResponse = "application/json"),
            (String = "text/event-stream"))),
        (status = 400, description = "Malformed JSON, or an invalid Idempotency-Key (or one with stream=true)", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session, or no such context in it", body = ErrorBody),
        (status = 409, description = "The session is not running; or the packages it was created with failed to install (dependencies_failed); or the context runs another execution (context_busy) or has lost its interpreter (context_lost); or the first request with this Idempotency-Key is still being carried out (idempotency_key_in_use) or made what no longer exists (idempotency_key_used)", body = ErrorBody),
        (status = 413, description = "Code or body too large", body = ErrorBody),
        (status = 422, description = "Invalid field, or an Idempotency-Key used for another request (idempotency_key_reused)", body = ErrorBody),
        (status = 429, description = "The session runs as many executions as it may", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached, or its packages are still installing after the longest install allowed (dependencies_installing)", body = ErrorBody)))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<ExecuteQuery>,
    IdempotencyKey(key): IdempotencyKey,
    Body(req): Body<ExecuteCodeRequest>,
) -> Result<Response, ApiError> {
    let ticket = match once(&state, &caller, key, &session_id, &req, q.stream).await? {
        Once::Replay(e) => return Ok((StatusCode::CREATED, Json(accepted(&e, &session_id))).into_response()),
        Once::Run(ticket) => ticket,
    };
    let submitted = submit(&state, &caller, &session_id, req, ticket).await?;
    if q.stream {
        return Ok(sse(accepted(&submitted.execution, &session_id), submitted.feed, None, session_id)
            .into_response());
    }
    Ok((StatusCode::CREATED, Json(accepted(&submitted.execution, &session_id))).into_response())
}

/// Runs an execution and answers with its result (or streams it with `stream=true`).
#[utoipa::path(post, path = "/api/v1/executions/sessions/{session_id}/execute-sync", tag = "executions",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ExecuteSyncQuery, ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key answers with what the first request made (kept 24 h, per API key)")),
    request_body = ExecuteCodeRequest,
    responses(
        (status = 200, description = "The finished execution (or its state when sync_timeout passed first); with stream=true, Server-Sent Events, each with an id and a JSON `data`: `started` (ExecuteCodeResponse), `stdout` and `stderr` (OutputChunk), `display` (DisplayResult), then `result` (ExecutionResponse) or `error` (ErrorBody)", content(
            (ExecutionResponse = "application/json"),
            (String = "text/event-stream"))),
        (status = 400, description = "Malformed JSON, or an invalid Idempotency-Key (or one with stream=true)", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session, or no such context in it", body = ErrorBody),
        (status = 409, description = "The session is not running; or the packages it was created with failed to install (dependencies_failed); or the context runs another execution (context_busy) or has lost its interpreter (context_lost); or the first request with this Idempotency-Key is still being carried out (idempotency_key_in_use) or made what no longer exists (idempotency_key_used)", body = ErrorBody),
        (status = 413, description = "Code or body too large", body = ErrorBody),
        (status = 422, description = "Invalid field, or an Idempotency-Key used for another request (idempotency_key_reused)", body = ErrorBody),
        (status = 429, description = "The session runs as many executions as it may", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached, or its packages are still installing after the longest install allowed (dependencies_installing)", body = ErrorBody)))]
pub async fn execute_sync(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<ExecuteSyncQuery>,
    IdempotencyKey(key): IdempotencyKey,
    Body(req): Body<ExecuteCodeRequest>,
) -> Result<Response, ApiError> {
    if let Some(p) = q.poll_interval
        && !(0.1..=10.0).contains(&p)
    {
        return Err(ApiError::invalid_field("poll_interval", "must be between 0.1 and 10"));
    }
    let wait = q.sync_timeout.unwrap_or(300);
    if !(10..=3600).contains(&wait) {
        return Err(ApiError::invalid_field("sync_timeout", "must be between 10 and 3600"));
    }
    let ticket = match once(&state, &caller, key, &session_id, &req, q.stream).await? {
        // The first request's execution, once it has ended (or as it is when `wait` is over).
        Once::Replay(e) => {
            let (e, _) = state.executions.wait_for_end(&caller, &e.id, Duration::from_secs(wait)).await?;
            return Ok(Json(ExecutionResponse::from(e).in_session(session_id)).into_response());
        }
        Once::Run(ticket) => ticket,
    };
    let submitted = submit(&state, &caller, &session_id, req, ticket).await?;
    if q.stream {
        return Ok(sse(accepted(&submitted.execution, &session_id), submitted.feed, None, session_id)
            .into_response());
    }
    let id = submitted.execution.id.clone();
    let execution = match tokio::time::timeout(Duration::from_secs(wait), submitted.done).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return Err(ApiError::internal(e)),
        // Still running: answer with its current state; it finishes in the background.
        Err(_) => state.executions.get(&caller, &id).await?.0,
    };
    Ok(Json(ExecutionResponse::from(execution).in_session(session_id)).into_response())
}

/// Follows an execution as Server-Sent Events, from the start or, with `Last-Event-ID`, from
/// after the last event a dropped stream delivered: what was missed, then what follows. An
/// execution this server is not running ends the stream at once with its `result` when it has
/// ended (or when it ends, run by another replica).
#[utoipa::path(get, path = "/api/v1/executions/{execution_id}/stream", tag = "executions", security(("bearer" = [])),
    params(("execution_id" = String, Path, description = "Execution id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event received")),
    responses(
        (status = 200, description = "Server-Sent Events, each with an id and a JSON `data`: `started` (ExecuteCodeResponse), `stdout` and `stderr` (OutputChunk), `display` (DisplayResult), then `result` (ExecutionResponse) or `error` (ErrorBody); after Last-Event-ID, the events after it", content_type = "text/event-stream"),
        (status = 400, description = "Last-Event-ID is not a number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    LastEventId(after): LastEventId,
) -> Result<Response, ApiError> {
    let (e, session) = state.executions.get(&caller, &id).await?;
    let shown = shown_session_id(&caller, &session);
    if let Some(feed) = state.executions.feed(&id) {
        return Ok(sse(accepted(&e, &shown), feed, after, shown).into_response());
    }
    let limit = Duration::from_secs(u64::from(e.timeout_sec) + 120);
    let last = stream::once(async move {
        let ended = match e.status.is_terminal() {
            true => Ok(e),
            false => state.executions.wait_for_end(&caller, &id, limit).await.map(|(e, _)| e),
        };
        Ok::<_, Infallible>(match ended {
            Ok(e) => json_event("result", &ExecutionResponse::from(e).in_session(shown)),
            Err(err) => error_event(ApiError::from(err)),
        })
    });
    Ok(Sse::new(last).keep_alive(KeepAlive::default()).into_response())
}

/// An execution's current state.
#[utoipa::path(get, path = "/api/v1/executions/{execution_id}/status", tag = "executions", security(("bearer" = [])),
    params(("execution_id" = String, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The execution", body = ExecutionResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<ExecutionResponse>, ApiError> {
    let (e, session) = state.executions.get(&caller, &id).await?;
    Ok(Json(ExecutionResponse::from(e).in_session(shown_session_id(&caller, &session))))
}

/// An execution's result: the finished execution, or while it runs its current state (status
/// `running`, as the Python control plane answers; clients poll this to show progress).
#[utoipa::path(get, path = "/api/v1/executions/{execution_id}/result", tag = "executions", security(("bearer" = [])),
    params(("execution_id" = String, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The execution: finished, or its current state while it runs", body = ExecutionResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody)))]
pub async fn result(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<ExecutionResponse>, ApiError> {
    status(State(state), caller, PathParam(id)).await
}

/// Cancels a running execution: its processes are killed and it ends `cancelled` (a cell of a
/// code context takes the context's interpreter with it: the context is `lost`; to stop a cell
/// and keep the context's state, interrupt the context instead). Idempotent: an execution that
/// has ended is answered as it is.
#[utoipa::path(post, path = "/api/v1/executions/{execution_id}/cancel", tag = "executions", security(("bearer" = [])),
    params(("execution_id" = String, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The execution once it has ended (`cancelled`, or how it ended first), or its current state if it had not ended within 10 s", body = ExecutionResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<ExecutionResponse>, ApiError> {
    let (e, session) = state.executions.cancel(&caller, &id, Duration::from_secs(10)).await?;
    Ok(Json(ExecutionResponse::from(e).in_session(shown_session_id(&caller, &session))))
}

/// A session's executions, newest first.
#[utoipa::path(get, path = "/api/v1/executions/sessions/{session_id}/executions", tag = "executions",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), PageQuery),
    responses(
        (status = 200, description = "A page of executions", body = Page<ExecutionResponse>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 422, description = "Invalid paging", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<ExecutionResponse>>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let page = state.executions.list(&caller, &session_id, limit, offset).await?;
    Ok(Json(
        Page::new(page.items, page.total, limit, offset)
            .map(|e| ExecutionResponse::from(e).in_session(session_id.clone())),
    ))
}
