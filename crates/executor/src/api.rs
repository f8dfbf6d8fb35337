//! The executor's HTTP API: typed requests in, [`Engine`] and workspace calls, typed answers
//! out. Every error leaves as an [`ErrorBody`](sandbox_protocol::ErrorBody).

use crate::engine::{Engine, Start};
use crate::error::Error;
use crate::process::Process;
use crate::registry::Begin;
use crate::workspace::watch::Watchers;
use crate::workspace::{Workspace, archive, files};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use sandbox_core::WorkspacePath;
use sandbox_protocol::{
    ContextInfo, ContextRequest, ErrorBody, ErrorCode, ExecEvent, ExecMode, ExecRequest, ExecResult,
    ExecutionRecord, Health, MoveRequest, PROTOCOL_VERSION, ProcessInfo, ProcessRequest, PtySize,
    SignalRequest, SpareInfo, StreamEvent, WatchEvent, WatchRequest, WatcherEvents, WatcherInfo, paths,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest execution request (code plus event), in bytes.
const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Default and largest number of entries a listing returns.
const DEFAULT_LIST_LIMIT: usize = 1000;
const MAX_LIST_LIMIT: usize = 10_000;
/// Most entries a listing skips (a page further in walks too much of the tree).
const MAX_LIST_OFFSET: usize = 100_000;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { code: self.code, message: self.message })).into_response()
    }
}

/// A JSON body whose rejection is an [`Error`].
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;
    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(Error::bad_request(e.body_text())),
        }
    }
}

/// A query string whose rejection is an [`Error`].
struct QueryArgs<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryArgs(v)),
            Err(e) => Err(Error::bad_request(e.body_text())),
        }
    }
}

/// The API on the Unix socket (no token: only the control plane can reach the socket).
pub fn router(engine: Arc<Engine>) -> Router {
    let upload_limit = engine.config().limits.max_upload_mb << 20;
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(
            paths::EXECUTIONS,
            post(submit).get(list_executions).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route("/v1/executions/{id}", get(get_execution).delete(forget_execution))
        .route("/v1/executions/{id}/kill", post(kill_execution))
        .route(paths::CONTEXTS, post(create_context).get(list_contexts))
        .route("/v1/contexts/{id}", get(get_context).delete(delete_context))
        .route("/v1/contexts/{id}/restart", post(restart_context))
        .route("/v1/contexts/{id}/interrupt", post(interrupt_context))
        .route(
            "/v1/contexts/{id}/executions",
            post(submit_in_context).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route(paths::PROCESSES, post(start_process).get(list_processes))
        .route("/v1/processes/{pid}", get(get_process))
        .route("/v1/processes/{pid}/stream", get(stream_process))
        .route("/v1/processes/{pid}/stdin", post(write_stdin))
        .route("/v1/processes/{pid}/stdin/close", post(close_stdin))
        .route("/v1/processes/{pid}/signal", post(signal_process))
        .route("/v1/processes/{pid}/pty", post(resize_pty))
        .route(paths::SPARES, get(list_spares))
        .route(paths::FILES, get(list_files).delete(delete_file))
        .route(paths::FILES_STAT, get(stat_file))
        .route(paths::FILES_MKDIR, post(make_dir))
        .route(paths::FILES_MOVE, post(move_file))
        .route(paths::FILES_WATCH, get(watch_stream))
        .route(paths::WATCHERS, post(create_watcher).get(list_watchers))
        .route("/v1/watchers/{id}", axum::routing::delete(delete_watcher))
        .route("/v1/watchers/{id}/events", get(watcher_events))
        .route(paths::FILES_CONTENT, get(read_file).put(write_file).layer(DefaultBodyLimit::disable()))
        .route(
            paths::WORKSPACE_ARCHIVE,
            get(read_archive).put(write_archive).layer(DefaultBodyLimit::disable()),
        )
        .fallback(|| async { Error::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(axum::Extension(UploadLimit(upload_limit)))
        .with_state(engine)
}

/// The API on TCP: the same routes behind a bearer token.
pub fn router_with_token(engine: Arc<Engine>, token: String) -> Router {
    router(engine).layer(middleware::from_fn_with_state(Arc::new(token), require_token))
}

async fn require_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if sandbox_protocol::contract::constant_time_eq(given.as_bytes(), token.as_bytes()) {
        next.run(req).await
    } else {
        Error::new(ErrorCode::Unauthorized, "missing or wrong bearer token").into_response()
    }
}

#[derive(Clone, Copy)]
struct UploadLimit(u64);

async fn health(State(engine): State<Arc<Engine>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        executor_version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
        languages: engine.config().languages.clone(),
        running_executions: engine.registry.running(),
        uptime_ms: engine.uptime().as_millis() as u64,
    })
}

async fn submit(
    State(engine): State<Arc<Engine>>,
    JsonBody(req): JsonBody<ExecRequest>,
) -> Result<Response, Error> {
    dispatch(engine, req, None).await
}

async fn submit_in_context(
    State(engine): State<Arc<Engine>>,
    Path(context_id): Path<String>,
    JsonBody(req): JsonBody<ExecRequest>,
) -> Result<Response, Error> {
    dispatch(engine, req, Some(context_id)).await
}

/// Runs an execution, stateless or in a context, and answers as its `mode` says.
async fn dispatch(engine: Arc<Engine>, req: ExecRequest, context: Option<String>) -> Result<Response, Error> {
    engine.validate(&req)?;
    let id = req.execution_id.clone();
    let mode = req.mode;
    let (events, stream) = match mode {
        ExecMode::Stream => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        ExecMode::Wait | ExecMode::Detach => (None, None),
    };
    // A new execution in a context reserves the context under the registry's lock; a retry of
    // a known one (whichever route it comes by) is answered from the registry.
    let begun = engine.registry.begin_with(&id, || match &context {
        Some(cid) => engine.contexts.acquire(cid, &req).map(Some),
        None => Ok(None),
    })?;
    // The execution runs in its own task: a client that hangs up does not stop it, and its
    // result stays collectable.
    let done = match begun {
        Begin::New(ticket, reserved) => {
            tracing::info!(execution_id = %id, language = %req.language, context_id = ?context, "execution started");
            let (engine, events) = (engine.clone(), events.clone());
            tokio::spawn(async move {
                match reserved {
                    Some(ctx) => engine.run_in_context(ticket, ctx, req, events).await,
                    None => engine.run(ticket, req, events, Start::Spare).await,
                }
            })
        }
        Begin::Running(rx) => tokio::spawn(wait_for(rx)),
        Begin::Finished(r) => tokio::spawn(async move { r }),
    };
    match (mode, events, stream) {
        (ExecMode::Stream, Some(tx), Some(rx)) => {
            tokio::spawn(async move {
                if let Ok(r) = done.await {
                    let _ = tx.send(StreamEvent::Result { result: Box::new((*r).clone()) }.into());
                }
            });
            Ok(ndjson(rx))
        }
        (ExecMode::Detach, ..) => {
            let record = engine.registry.get(&id).ok_or_else(|| Error::internal("execution vanished"))?;
            Ok((StatusCode::ACCEPTED, Json(record)).into_response())
        }
        _ => {
            let r = done.await.map_err(|e| Error::internal(format!("execution task failed: {e}")))?;
            Ok(Json(&*r).into_response())
        }
    }
}

async fn wait_for(mut rx: tokio::sync::watch::Receiver<Option<Arc<ExecResult>>>) -> Arc<ExecResult> {
    loop {
        if let Some(r) = rx.borrow_and_update().clone() {
            return r;
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone().expect("a finished execution has a result");
        }
    }
}

/// A response of one JSON event per line, ending when the channel closes.
fn ndjson(rx: mpsc::UnboundedReceiver<ExecEvent>) -> Response {
    ndjson_response(futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) }))
}

/// A response of one JSON object per line, one for each item of `items`.
fn ndjson_response<T: serde::Serialize>(
    items: impl futures_util::Stream<Item = T> + Send + 'static,
) -> Response {
    let lines = items.map(|item| {
        let mut line = serde_json::to_vec(&item).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp
}

async fn list_executions(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    Json(engine.registry.list())
}

fn unknown(id: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("execution {id} is not known"))
}

async fn get_execution(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionRecord>, Error> {
    engine.registry.get(&id).map(Json).ok_or_else(|| unknown(&id))
}

async fn forget_execution(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    engine.registry.forget(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill_execution(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    if engine.registry.kill(&id) {
        return Ok(StatusCode::ACCEPTED);
    }
    match engine.registry.get(&id) {
        Some(_) => Err(Error::new(ErrorCode::Conflict, format!("execution {id} has already finished"))),
        None => Err(unknown(&id)),
    }
}

async fn create_context(
    State(engine): State<Arc<Engine>>,
    JsonBody(req): JsonBody<ContextRequest>,
) -> Result<Response, Error> {
    let (new, info) = engine.create_context(req).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info)).into_response())
}

async fn list_contexts(State(engine): State<Arc<Engine>>) -> Json<Vec<ContextInfo>> {
    Json(engine.contexts.list())
}

async fn get_context(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<ContextInfo>, Error> {
    engine.contexts.info(&id).map(Json)
}

async fn delete_context(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    engine.delete_context(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart_context(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<ContextInfo>, Error> {
    engine.restart_context(&id).await.map(Json)
}

async fn interrupt_context(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<ContextInfo>, Error> {
    engine.contexts.interrupt(&id).map(Json)
}

/// Starts a process; answers its events, `start` first (it runs on if the stream is dropped).
async fn start_process(
    State(engine): State<Arc<Engine>>,
    JsonBody(req): JsonBody<ProcessRequest>,
) -> Result<Response, Error> {
    let (_, subscription) = engine.start_process(req).await?;
    Ok(ndjson_response(subscription.into_events()))
}

async fn list_processes(State(engine): State<Arc<Engine>>) -> Json<Vec<ProcessInfo>> {
    Json(engine.processes.list())
}

/// The process a path names.
fn process(engine: &Engine, pid: &str) -> Result<Arc<Process>, Error> {
    let pid = pid.parse().map_err(|_| Error::bad_request(format!("{pid:?} is not a process id")))?;
    engine.processes.get(pid)
}

async fn get_process(
    State(engine): State<Arc<Engine>>,
    Path(pid): Path<String>,
) -> Result<Json<ProcessInfo>, Error> {
    Ok(Json(process(&engine, &pid)?.info()))
}

/// The process's events from now on; an exited process's `end` at once.
async fn stream_process(
    State(engine): State<Arc<Engine>>,
    Path(pid): Path<String>,
) -> Result<Response, Error> {
    Ok(ndjson_response(process(&engine, &pid)?.subscribe().into_events()))
}

async fn write_stdin(
    State(engine): State<Arc<Engine>>,
    Path(pid): Path<String>,
    body: Bytes,
) -> Result<StatusCode, Error> {
    process(&engine, &pid)?.write_stdin(&body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn close_stdin(
    State(engine): State<Arc<Engine>>,
    Path(pid): Path<String>,
) -> Result<StatusCode, Error> {
    process(&engine, &pid)?.close_stdin().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn signal_process(
    State(engine): State<Arc<Engine>>,
    Path(pid): Path<String>,
    JsonBody(req): JsonBody<SignalRequest>,
) -> Result<StatusCode, Error> {
    process(&engine, &pid)?.signal(req.signal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resize_pty(
    State(engine): State<Arc<Engine>>,
    Path(pid): Path<String>,
    JsonBody(size): JsonBody<PtySize>,
) -> Result<StatusCode, Error> {
    process(&engine, &pid)?.resize(size)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_spares(State(engine): State<Arc<Engine>>) -> Json<Vec<SpareInfo>> {
    Json(engine.spares().list())
}

#[derive(Deserialize)]
struct FileArgs {
    #[serde(default)]
    path: String,
    #[serde(default)]
    recursive: bool,
    depth: Option<usize>,
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

/// How often a watch stream sends a `keepalive` line while nothing happens (so a client that
/// went away is noticed, and its watch stopped, within this time).
const WATCH_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs a blocking workspace operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    engine: &Engine,
    f: impl FnOnce(&Workspace) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let ws = engine.workspace().clone();
    tokio::task::spawn_blocking(move || f(&ws)).await.map_err(|e| Error::internal(e.to_string()))?
}

async fn list_files(
    State(engine): State<Arc<Engine>>,
    QueryArgs(a): QueryArgs<FileArgs>,
) -> Result<impl IntoResponse, Error> {
    let path = WorkspacePath::parse(&a.path)?;
    let limit = a.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(Error::bad_request(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
    }
    let offset = a.offset;
    if offset > MAX_LIST_OFFSET {
        return Err(Error::bad_request(format!("offset must be at most {MAX_LIST_OFFSET}")));
    }
    // `depth` 0 counts as 1 (as E2B's); `recursive` without a depth is every level.
    let depth = match a.depth {
        Some(d) => d.max(1),
        None if a.recursive => usize::MAX,
        None => 1,
    };
    Ok(Json(blocking(&engine, move |ws| files::list(ws, &path, depth, offset, limit)).await?))
}

async fn stat_file(
    State(engine): State<Arc<Engine>>,
    QueryArgs(a): QueryArgs<FileArgs>,
) -> Result<impl IntoResponse, Error> {
    let path = WorkspacePath::parse(&a.path)?;
    Ok(Json(blocking(&engine, move |ws| files::stat(ws, &path)).await?))
}

async fn make_dir(
    State(engine): State<Arc<Engine>>,
    QueryArgs(a): QueryArgs<FileArgs>,
) -> Result<impl IntoResponse, Error> {
    let path = WorkspacePath::parse_non_root(&a.path)?;
    Ok(Json(blocking(&engine, move |ws| files::mkdir(ws, &path)).await?))
}

async fn move_file(
    State(engine): State<Arc<Engine>>,
    JsonBody(m): JsonBody<MoveRequest>,
) -> Result<impl IntoResponse, Error> {
    if m.source.is_root() || m.destination.is_root() {
        return Err(sandbox_core::PathError::Root.into());
    }
    Ok(Json(blocking(&engine, move |ws| files::rename(ws, &m.source, &m.destination)).await?))
}

/// Runs a blocking call on the executor's watches.
async fn on_watchers<T: Send + 'static>(
    engine: &Engine,
    f: impl FnOnce(&Watchers) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let w = engine.watchers.clone();
    tokio::task::spawn_blocking(move || f(&w)).await.map_err(|e| Error::internal(e.to_string()))?
}

async fn watch_stream(
    State(engine): State<Arc<Engine>>,
    QueryArgs(req): QueryArgs<WatchRequest>,
) -> Result<Response, Error> {
    let watch = on_watchers(&engine, move |w| w.stream(&req)).await?;
    // `start` goes first: the watch is in place before the answer begins.
    let events = futures_util::stream::unfold((watch, true), |(watch, first)| async move {
        if first {
            return Some((vec![WatchEvent::Start], (watch, false)));
        }
        let batch = match tokio::time::timeout(WATCH_KEEPALIVE, watch.next_batch()).await {
            Ok(batch) if batch.is_empty() => return None,
            Ok(batch) => batch,
            Err(_) => vec![WatchEvent::Keepalive],
        };
        Some((batch, (watch, false)))
    });
    Ok(ndjson_response(events.flat_map(futures_util::stream::iter)))
}

async fn create_watcher(
    State(engine): State<Arc<Engine>>,
    JsonBody(req): JsonBody<WatchRequest>,
) -> Result<impl IntoResponse, Error> {
    let info: WatcherInfo = on_watchers(&engine, move |w| w.create(&req)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn list_watchers(State(engine): State<Arc<Engine>>) -> Json<Vec<WatcherInfo>> {
    Json(engine.watchers.list())
}

async fn watcher_events(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<WatcherEvents>, Error> {
    Ok(Json(WatcherEvents { events: engine.watchers.poll(&id)? }))
}

async fn delete_watcher(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    engine.watchers.remove(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_file(
    State(engine): State<Arc<Engine>>,
    QueryArgs(a): QueryArgs<FileArgs>,
) -> Result<StatusCode, Error> {
    let path = WorkspacePath::parse_non_root(&a.path)?;
    blocking(&engine, move |ws| files::delete(ws, &path, a.recursive)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn read_file(
    State(engine): State<Arc<Engine>>,
    QueryArgs(a): QueryArgs<FileArgs>,
) -> Result<Response, Error> {
    let path = WorkspacePath::parse_non_root(&a.path)?;
    let (file, size) = blocking(&engine, move |ws| files::open_read(ws, &path)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(resp)
}

async fn write_file(
    State(engine): State<Arc<Engine>>,
    axum::Extension(UploadLimit(limit)): axum::Extension<UploadLimit>,
    QueryArgs(a): QueryArgs<FileArgs>,
    body: Body,
) -> Result<impl IntoResponse, Error> {
    let path = WorkspacePath::parse_non_root(&a.path)?;
    let too_large = || Error::new(ErrorCode::TooLarge, format!("uploads are limited to {} MiB", limit >> 20));
    let mut pending = {
        let path = path.clone();
        blocking(&engine, move |ws| files::begin_write(ws, &path)).await?
    };
    let mut file = pending.take_file().ok_or_else(|| Error::internal("upload file missing"))?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::bad_request(format!("upload interrupted: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large());
        }
        file = tokio::task::spawn_blocking(move || file.write_all(&chunk).map(|_| file))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| io_error(e, &path))?;
    }
    drop(file);
    Ok(Json(blocking(&engine, move |ws| pending.commit(ws)).await?))
}

/// Streams the whole workspace as a tar archive. A failure part way breaks the response off, so
/// the reader cannot take a partial archive for a whole one.
async fn read_archive(State(engine): State<Arc<Engine>>) -> Result<Response, Error> {
    let tree = blocking(&engine, |ws| ws.tree()).await?;
    let stream = sandbox_safefs::archive::tar_stream(tree, archive::limits());
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(resp)
}

/// Extracts a tar archive into the workspace.
async fn write_archive(State(engine): State<Arc<Engine>>, body: Body) -> Result<impl IntoResponse, Error> {
    let stream = body.into_data_stream().map(|c| c.map_err(std::io::Error::other));
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    Ok(Json(blocking(&engine, move |ws| archive::extract(ws, reader)).await?))
}

fn io_error(e: std::io::Error, path: &WorkspacePath) -> Error {
    match e.raw_os_error() {
        Some(n) => Error::from_errno(rustix::io::Errno::from_raw_os_error(n), path.as_str()),
        None => Error::internal(format!("{path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// The TCP listener (Kubernetes) answers only requests with the sandbox's token.
    #[tokio::test]
    async fn tcp_listener_requires_the_token() {
        let app = Router::new().route(paths::HEALTH, get(|| async { "up" })).layer(
            middleware::from_fn_with_state(Arc::new("s3cret-token-0123456789".to_owned()), require_token),
        );
        for (header, want) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
            (Some("Bearer s3cret-token-012345678"), StatusCode::UNAUTHORIZED),
            (Some("s3cret-token-0123456789"), StatusCode::UNAUTHORIZED),
            (Some("Bearer s3cret-token-0123456789"), StatusCode::OK),
        ] {
            let mut req = Request::builder().uri(paths::HEALTH);
            if let Some(h) = header {
                req = req.header(header::AUTHORIZATION, h);
            }
            let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), want, "{header:?}");
        }
    }
}
