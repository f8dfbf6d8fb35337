//! `/api/v1/sessions/{session_id}/processes`: commands started on their own in a session's
//! sandbox (each in a bwrap sandbox of its own) that outlive the request that started them:
//! their output streamed, their standard input written, signals sent.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::events::{OutputChunk, ProcessStarted, error_event, json_event};
use crate::api::extract::{Body, PathParam, Query, page};
use crate::api::types::{
    Page, PageQuery, ProcessEndResponse, ProcessResponse, SignalProcessRequest, StartProcessQuery,
    StartProcessRequest, StdinRequest, TerminalSize,
};
use crate::caller::Caller;
use crate::service::processes::NewProcess;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{StreamExt, stream};
use sandbox_executor_client::ProcessEvents;
use sandbox_protocol::{ProcessEvent, ProcessSignal};
use std::convert::Infallible;

/// Server-Sent Events of a process: `start` (`{"pid": N}`), then `stdout` / `stderr` / `pty` chunks
/// (`{"data": "<base64>"}`) as they happen, then `end` (a [`ProcessEndResponse`]); or `error`
/// (an [`ErrorBody`]) if the sandbox stopped answering.
fn sse(pid: u32, events: ProcessEvents) -> Response {
    let data =
        |name: &str, bytes: &[u8]| Some(json_event(name, &OutputChunk { data: STANDARD.encode(bytes) }));
    let rest = events.filter_map(move |ev| async move {
        match ev {
            Ok(ProcessEvent::Start { .. } | ProcessEvent::Keepalive) => None,
            Ok(ProcessEvent::Stdout { data: bytes }) => data("stdout", &bytes),
            Ok(ProcessEvent::Stderr { data: bytes }) => data("stderr", &bytes),
            Ok(ProcessEvent::Pty { data: bytes }) => data("pty", &bytes),
            Ok(ProcessEvent::End(end)) => Some(json_event("end", &ProcessEndResponse::from(end))),
            Err(e) => Some(error_event(ApiError::from(crate::service::error::ServiceError::from(e)))),
        }
    });
    let first = stream::once(async move { json_event("start", &ProcessStarted { pid }) });
    Sse::new(first.chain(rest).map(Ok::<_, Infallible>)).keep_alive(KeepAlive::default()).into_response()
}

/// Starts a process: a command in the session's sandbox, in a bwrap sandbox of its own, with
/// the session's limits and environment. It runs until it exits, is signalled, reaches its
/// timeout or the session ends; a client going away does not stop it.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/processes", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), StartProcessQuery),
    request_body = StartProcessRequest,
    responses(
        (status = 201, description = "Started; with stream=true, Server-Sent Events with a JSON `data`: `start` (ProcessStarted), `stdout`, `stderr` and `pty` (OutputChunk, base64), then `end` (ProcessEndResponse) or `error` (ErrorBody)", content(
            (ProcessResponse = "application/json"),
            (String = "text/event-stream"))),
        (status = 400, description = "Malformed JSON, or a request the sandbox refuses (invalid_process: a NUL byte, a terminal of no size, stdin with a terminal)", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not running, or the packages it was created with failed to install (dependencies_failed)", body = ErrorBody),
        (status = 422, description = "Invalid field (cmd, envs, cwd)", body = ErrorBody),
        (status = 429, description = "The session's sandbox runs as many processes as it may (too_many_processes)", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached, or its packages are still installing after the longest install allowed (dependencies_installing)", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<StartProcessQuery>,
    Body(req): Body<StartProcessRequest>,
) -> Result<Response, ApiError> {
    let new = NewProcess {
        cmd: req.cmd,
        args: req.args,
        envs: req.envs,
        cwd: req.cwd,
        timeout_ms: req.timeout_ms,
        stdin: req.stdin,
        pty: req.pty.map(Into::into),
        tag: req.tag,
    };
    let (info, events) = state.processes.start(&caller, &session_id, new).await?;
    if q.stream {
        let mut resp = sse(info.pid, events);
        *resp.status_mut() = StatusCode::CREATED;
        return Ok(resp);
    }
    Ok((StatusCode::CREATED, Json(ProcessResponse::new(info, session_id))).into_response())
}

/// A session's processes: running ones, and those that exited in the last 10 minutes.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/processes", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), PageQuery),
    responses(
        (status = 200, description = "A page of the processes, by pid", body = Page<ProcessResponse>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 422, description = "Invalid paging", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<ProcessResponse>>, ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let all = state.processes.list(&caller, &session_id).await?;
    Ok(Json(Page::of(all, limit, offset).map(|p| ProcessResponse::new(p, session_id.clone()))))
}

/// One process.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/processes/{pid}", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("pid" = u32, Path, description = "Process id")),
    responses(
        (status = 200, description = "The process", body = ProcessResponse),
        (status = 400, description = "The pid is not a number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or process (process_not_found)", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, pid)): PathParam<(String, u32)>,
) -> Result<Json<ProcessResponse>, ApiError> {
    let info = state.processes.get(&caller, &session_id, pid).await?;
    Ok(Json(ProcessResponse::new(info, session_id)))
}

/// Follows a process as Server-Sent Events: its output from the moment of the request (what
/// it wrote before is not kept), then its end; an exited process answers `start` and `end` at
/// once.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/processes/{pid}/stream", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("pid" = u32, Path, description = "Process id")),
    responses(
        (status = 200, description = "Server-Sent Events with a JSON `data`: `start` (ProcessStarted), `stdout`, `stderr` and `pty` (OutputChunk, base64), then `end` (ProcessEndResponse) or `error` (ErrorBody)", content_type = "text/event-stream"),
        (status = 400, description = "The pid is not a number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or process (process_not_found)", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, pid)): PathParam<(String, u32)>,
) -> Result<Response, ApiError> {
    let events = state.processes.events(&caller, &session_id, pid).await?;
    Ok(sse(pid, events))
}

/// Writes to a process's standard input: the body as it is, or with
/// `Content-Type: application/json`, the base64 `data` of a [`StdinRequest`].
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/processes/{pid}/stdin", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("pid" = u32, Path, description = "Process id")),
    request_body(content(
        (StdinRequest = "application/json"),
        (String = "application/octet-stream"))),
    responses(
        (status = 204, description = "Written"),
        (status = 422, description = "Invalid field (data)", body = ErrorBody),
        (status = 400, description = "data is not base64", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or process (process_not_found)", body = ErrorBody),
        (status = 409, description = "The session is not running; the process has exited (process_exited), or has no standard input open (process_conflict)", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn stdin(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, pid)): PathParam<(String, u32)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = match json {
        true => {
            let req: StdinRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))?;
            STANDARD
                .decode(req.data)
                .map_err(|e| ApiError::invalid_field("data", format!("not base64: {e}")))?
        }
        false => body.to_vec(),
    };
    state.processes.write_stdin(&caller, &session_id, pid, bytes).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes a process's standard input: it reads end-of-file. Closing it again does nothing.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/processes/{pid}/stdin/close", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("pid" = u32, Path, description = "Process id")),
    responses(
        (status = 204, description = "Closed"),
        (status = 400, description = "The pid is not a number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or process (process_not_found)", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn close_stdin(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, pid)): PathParam<(String, u32)>,
) -> Result<StatusCode, ApiError> {
    state.processes.close_stdin(&caller, &session_id, pid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a signal to a process and every process it started.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/processes/{pid}/signal", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("pid" = u32, Path, description = "Process id")),
    request_body = SignalProcessRequest,
    responses(
        (status = 204, description = "Sent"),
        (status = 400, description = "The pid is not a number, or malformed JSON", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or process (process_not_found)", body = ErrorBody),
        (status = 409, description = "The session is not running, or the process has exited (process_exited)", body = ErrorBody),
        (status = 422, description = "Not a signal this API sends", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, pid)): PathParam<(String, u32)>,
    Body(req): Body<SignalProcessRequest>,
) -> Result<StatusCode, ApiError> {
    let signal: ProcessSignal =
        serde_json::from_value(serde_json::Value::String(req.signal)).map_err(|_| {
            ApiError::invalid_field(
                "signal",
                "must be one of SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2",
            )
        })?;
    state.processes.signal(&caller, &session_id, pid, signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resizes a process's terminal.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/processes/{pid}/pty", tag = "processes",
    security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("pid" = u32, Path, description = "Process id")),
    request_body = TerminalSize,
    responses(
        (status = 204, description = "Resized"),
        (status = 400, description = "The pid is not a number, or malformed JSON", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field (cols, rows)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or process (process_not_found)", body = ErrorBody),
        (status = 409, description = "The session is not running, the process has exited (process_exited) or runs without a terminal (process_conflict)", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn resize(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, pid)): PathParam<(String, u32)>,
    Body(size): Body<TerminalSize>,
) -> Result<StatusCode, ApiError> {
    state.processes.resize(&caller, &session_id, pid, size.into()).await?;
    Ok(StatusCode::NO_CONTENT)
}
