//! `/api/v1/sessions/{id}/files`: list, upload (streamed, multipart or raw), download
//! (streamed), delete; and beside it stat (`files-stat`), move (`files-move`), mkdir
//! (`directories`) and watches (`files-watch`, `watchers`). Paths are validated here and
//! resolved by the executor inside the container, so a symlink in the workspace cannot reach
//! the host.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::events::{error_event, json_event};
use crate::api::extract::Body as JsonBody;
use crate::api::extract::{PathParam, Query};
use crate::api::types::{
    DirectoryResponse, FileEvent, FileInfo, FileListResponse, ListFilesQuery, MakeDirectoryRequest,
    MoveFileRequest, PathQuery, UploadForm, UploadQuery, UploadResponse, WatchQuery, WatcherEventsResponse,
    WatcherResponse, container_path,
};
use crate::caller::Caller;
use crate::service::error::ServiceError;
use crate::service::files::{Download, MAX_LIST_LIMIT, MAX_LIST_OFFSET, mime_type};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sandbox_core::WorkspacePath;
use sandbox_executor_client::ByteStream;
use serde::Deserialize;
use tokio::sync::mpsc;

/// A workspace path from the API (`invalid_path` when it is not one); the root only when
/// `allow_root`.
pub(crate) fn parse_path(raw: &str, allow_root: bool) -> Result<WorkspacePath, ApiError> {
    let parsed = if allow_root { WorkspacePath::parse(raw) } else { WorkspacePath::parse_non_root(raw) };
    parsed.map_err(|e| ApiError::bad_request("invalid_path", e.to_string()))
}

/// Lists the workspace (or one directory of it), recursively or down to `depth` levels.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/files", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ListFilesQuery),
    responses(
        (status = 200, description = "Entries in path order", body = FileListResponse),
        (status = 400, description = "Invalid path", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "An entry user code made unreadable or unwritable (`permission_denied`)", body = ErrorBody),
        (status = 404, description = "No such session or directory", body = ErrorBody),
        (status = 409, description = "With local workspaces the session is not running; or the path is not a directory; or the sandbox is too old to page (sandbox_outdated)", body = ErrorBody),
        (status = 422, description = "Invalid limit, offset or depth", body = ErrorBody),
        (status = 503, description = "The session's sandbox or the workspace store cannot be reached", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<ListFilesQuery>,
) -> Result<Json<FileListResponse>, ApiError> {
    let limit = q.limit.unwrap_or(1000);
    if !(1..=MAX_LIST_LIMIT as i64).contains(&limit) {
        return Err(ApiError::invalid_field("limit", format!("must be between 1 and {MAX_LIST_LIMIT}")));
    }
    let depth = match q.depth {
        Some(d) if !(0..=4096).contains(&d) => {
            return Err(ApiError::invalid_field("depth", "must be between 0 and 4096"));
        }
        d => d.map(|d| d as usize),
    };
    let offset = q.offset.unwrap_or(0);
    if !(0..=MAX_LIST_OFFSET as i64).contains(&offset) {
        return Err(ApiError::invalid_field("offset", format!("must be between 0 and {MAX_LIST_OFFSET}")));
    }
    let path = parse_path(q.path.as_deref().unwrap_or(""), true)?;
    let listing =
        state.files.list(&caller, &session_id, &path, depth, offset as usize, limit as usize).await?;
    let files: Vec<FileInfo> =
        listing.entries.into_iter().map(|e| FileInfo::from_entry(e, listing.live)).collect();
    let n = files.len() as u64;
    Ok(Json(FileListResponse {
        session_id,
        path: path.into(),
        total: n,
        count: n,
        files,
        limit: limit as u32,
        offset: offset as u64,
        has_more: listing.truncated,
        truncated: listing.truncated,
    }))
}

/// A channel whose receiving end is a stream the executor client can send: upload chunks go in
/// through [`pump`].
pub(crate) fn byte_channel() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, ByteStream) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (tx, Box::pin(stream))
}

/// Sends `chunks` into `tx`, stopping with an error past `limit` bytes (and then draining the
/// rest, up to twice the limit), or when the client's body breaks off. Returns the byte count, or
/// `None` when the limit was crossed.
pub(crate) async fn pump<E: std::fmt::Display>(
    mut chunks: impl Stream<Item = Result<Bytes, E>> + Unpin,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    limit: u64,
) -> Result<Option<u64>, ApiError> {
    let mut total = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                // Break the upload off, so the sandbox drops what it got rather than keeping a
                // truncated file.
                let _ = tx.send(Err(std::io::Error::other("the upload was interrupted"))).await;
                return Err(ApiError::bad_request(
                    "upload_interrupted",
                    format!("reading the upload failed: {e}"),
                ));
            }
        };
        total += chunk.len() as u64;
        if total > limit {
            let _ = tx.send(Err(std::io::Error::other("upload too large"))).await;
            drop(tx);
            drain(chunks, limit.saturating_mul(2).saturating_sub(total)).await;
            return Ok(None);
        }
        if tx.send(Ok(chunk)).await.is_err() {
            break;
        }
    }
    Ok(Some(total))
}

/// Reads and drops up to `budget` more bytes of a body (for at most a minute), so that a client
/// which sends its whole body before reading the answer receives the error instead of a broken
/// connection.
async fn drain<E>(mut chunks: impl Stream<Item = Result<Bytes, E>> + Unpin, budget: u64) {
    let mut left = budget;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while left > 0 {
            match chunks.next().await {
                Some(Ok(c)) => left = left.saturating_sub(c.len() as u64),
                _ => break,
            }
        }
    })
    .await;
}

/// The most bytes a multipart upload of a `limit`-byte file may take: the file and a little
/// framing.
pub(crate) fn form_limit(limit: u64) -> usize {
    usize::try_from(limit + (64 << 10)).unwrap_or(usize::MAX)
}

/// Where an upload goes: the `path` query, with the file's own name appended when the path is
/// empty or ends in `/`.
fn destination(path: Option<&str>, filename: Option<&str>) -> Result<WorkspacePath, ApiError> {
    let raw = path.unwrap_or("");
    let joined = if raw.is_empty() || raw.ends_with('/') {
        let name = filename.filter(|n| !n.is_empty()).ok_or_else(|| {
            ApiError::invalid_field("path", "give a destination path (or upload a file with a name)")
        })?;
        // Only the last component of a client-supplied file name counts.
        let name = name.rsplit(['/', '\\']).next().unwrap_or(name);
        format!("{raw}{name}")
    } else {
        raw.to_owned()
    };
    parse_path(&joined, false)
}

/// Uploads a file: `multipart/form-data` with a `file` field (as the Python control plane
/// takes it), or the raw bytes as the body. Streamed to the sandbox; the file appears only once complete.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/files/upload", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Written", body = UploadResponse),
        (status = 400, description = "Invalid path or malformed upload", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "An entry user code made unreadable or unwritable (`permission_denied`)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "With local workspaces the session is not running; or the path is a directory", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = ErrorBody),
        (status = 422, description = "No file in the form", body = ErrorBody),
        (status = 503, description = "The session's sandbox or the workspace store cannot be reached", body = ErrorBody),
        (status = 507, description = "The workspace is full (`workspace_full`)", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(target): Query<UploadQuery>,
    req: Request,
) -> Result<Json<UploadResponse>, ApiError> {
    let limit = state.settings.limits.max_upload_mb << 20;
    let too_large = || -> ApiError {
        ServiceError::too_large("payload_too_large", format!("uploads are limited to {} MiB", limit >> 20))
            .into()
    };
    let declared: Option<u64> =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    // Multipart framing adds a little; anything beyond that is refused before it reaches the
    // sandbox (and read and dropped when not too big, so the client gets the answer).
    if let Some(n) = declared.filter(|n| *n as usize > form_limit(limit)) {
        if n <= limit.saturating_mul(2) {
            drain(req.into_body().into_data_stream(), n).await;
        }
        return Err(too_large());
    }
    let dest = state.files.upload_target(&caller, &session_id).await?;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let (tx, stream) = byte_channel();
    let (path, sent, written) = if is_multipart {
        // The whole form is bounded, whatever its framing and whichever fields it has: parts
        // other than `file` are read through (and dropped) only up to the limit too.
        let (parts, body) = req.into_parts();
        let req =
            Request::from_parts(parts, Body::new(http_body_util::Limited::new(body, form_limit(limit))));
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request("malformed_upload", e.body_text()))?;
        let malformed = |e: axum::extract::multipart::MultipartError| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            _ => ApiError::bad_request("malformed_upload", e.body_text()),
        };
        let field = loop {
            match form.next_field().await.map_err(malformed)? {
                Some(f) if f.name() == Some("file") => break f,
                Some(_) => continue,
                None => return Err(ApiError::invalid_field("file", "the form has no 'file' field")),
            }
        };
        let path = destination(target.path.as_deref(), field.file_name())?;
        let (sent, written) = tokio::join!(pump(field, tx, limit), state.files.write(&dest, &path, stream));
        (path, sent, written)
    } else {
        let path = destination(target.path.as_deref(), None)?;
        let body = req.into_body().into_data_stream();
        let (sent, written) = tokio::join!(pump(body, tx, limit), state.files.write(&dest, &path, stream));
        (path, sent, written)
    };
    if sent?.is_none() {
        return Err(too_large());
    }
    let size = written?;
    state.files.commit(&dest, &path).await?;
    Ok(Json(UploadResponse {
        session_id,
        mime_type: mime_type(path.as_str()),
        file_path: container_path(path.as_str()),
        path: path.into(),
        size,
    }))
}

/// Downloads a file, streamed, with its MIME type.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/files/{file_path}", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"),
           ("file_path" = String, Path, description = "Path relative to the workspace")),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream"),
        (status = 307, description = "A large file of a stopped session, on a presigned URL of the public S3 endpoint (only if `storage.s3.public_endpoint` is set)"),
        (status = 400, description = "Invalid path", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "An entry user code made unreadable or unwritable (`permission_denied`)", body = ErrorBody),
        (status = 404, description = "No such session or file", body = ErrorBody),
        (status = 409, description = "With local workspaces the session is not running; or the path is a directory", body = ErrorBody),
        (status = 422, description = "Not a regular file: a FIFO, a socket or a device (`not_a_regular_file`)", body = ErrorBody),
        (status = 503, description = "The session's sandbox or the workspace store cannot be reached", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, file_path)): PathParam<(String, String)>,
) -> Result<Response, ApiError> {
    let path = parse_path(&file_path, false)?;
    let (size, bytes) = match state.files.download(&caller, &session_id, &path).await? {
        Download::Content { size, bytes } => (size, bytes),
        Download::Redirect(url) => {
            return Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response());
        }
    };
    let name = path.split_last().map(|(_, n)| n.to_owned()).unwrap_or_default();
    let mut resp = Response::new(Body::from_stream(bytes));
    let h = resp.headers_mut();
    let mime = mime_type(path.as_str());
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\r', '\n'], "_"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Query of a delete.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteFileQuery {
    /// Also delete a non-empty directory's contents.
    #[serde(default)]
    pub recursive: bool,
}

/// Deletes a file or directory.
#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}/files/{file_path}", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"),
           ("file_path" = String, Path, description = "Path relative to the workspace"), DeleteFileQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid path", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "An entry user code made unreadable or unwritable (`permission_denied`)", body = ErrorBody),
        (status = 404, description = "No such session or file", body = ErrorBody),
        (status = 409, description = "With local workspaces the session is not running; or the directory is not empty", body = ErrorBody),
        (status = 503, description = "The session's sandbox or the workspace store cannot be reached", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, file_path)): PathParam<(String, String)>,
    Query(q): Query<DeleteFileQuery>,
) -> Result<StatusCode, ApiError> {
    let path = parse_path(&file_path, false)?;
    state.files.delete(&caller, &session_id, &path, q.recursive).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Describes one entry: type, size, mode, owner, group, modification time; a symlink itself
/// with its target, never what it points to. Needs the running sandbox.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/files-stat", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), PathQuery),
    responses(
        (status = 200, description = "The entry", body = FileInfo),
        (status = 400, description = "Invalid path, or one leading outside the workspace", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "An entry user code made unreadable or unwritable (`permission_denied`)", body = ErrorBody),
        (status = 404, description = "No such session or file", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn stat(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<PathQuery>,
) -> Result<Json<FileInfo>, ApiError> {
    let path = parse_path(q.path.as_deref().unwrap_or(""), true)?;
    Ok(Json(FileInfo::from_entry(state.files.stat(&caller, &session_id, &path).await?, true)))
}

/// Makes a directory and its missing parents: 201 when made, 200 when it existed already.
/// Needs the running sandbox.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/directories", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    request_body = MakeDirectoryRequest,
    responses(
        (status = 201, description = "Made", body = DirectoryResponse),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field (path)", body = ErrorBody),
        (status = 200, description = "It existed already (`created` is false)", body = DirectoryResponse),
        (status = 400, description = "Invalid path, or one leading outside the workspace", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not running; or a file is in the way (`not_a_directory`)", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn make_directory(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    JsonBody(req): JsonBody<MakeDirectoryRequest>,
) -> Result<(StatusCode, Json<DirectoryResponse>), ApiError> {
    let path = parse_path(&req.path, false)?;
    let made = state.files.make_dir(&caller, &session_id, &path).await?;
    let status = if made.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(DirectoryResponse { created: made.created, directory: FileInfo::from_entry(made.entry, true) }),
    ))
}

/// Moves (renames) a file, directory or symlink; the destination's missing parents are made.
/// A file or symlink replaces a file or symlink; a directory is never replaced and never
/// replaces anything (`already_exists`). Symlinks are moved, not followed. Needs the running
/// sandbox.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/files-move", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    request_body = MoveFileRequest,
    responses(
        (status = 200, description = "Moved; the entry at its new path", body = FileInfo),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field (source, destination)", body = ErrorBody),
        (status = 400, description = "Invalid path, one leading outside the workspace, or a directory moved into itself", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "An entry user code made unreadable or unwritable (`permission_denied`)", body = ErrorBody),
        (status = 404, description = "No such session or source", body = ErrorBody),
        (status = 409, description = "The session is not running; or the destination may not be replaced (`already_exists`)", body = ErrorBody),
        (status = 503, description = "The session's sandbox or the workspace store cannot be reached", body = ErrorBody)))]
pub async fn move_file(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    JsonBody(req): JsonBody<MoveFileRequest>,
) -> Result<Json<FileInfo>, ApiError> {
    let source = parse_path(&req.source, false)?;
    let destination = parse_path(&req.destination, false)?;
    let moved = state.files.rename(&caller, &session_id, &source, &destination).await?;
    Ok(Json(FileInfo::from_entry(moved, true)))
}

/// Watches a directory as Server-Sent Events: `start` first (the watch is in place), then
/// `create`, `write`, `remove`, `rename` (the old name; the new one comes as `create`) and
/// `chmod` with `{"type", "name"}` (the name relative to the watched directory), `overflow`
/// when events were lost, `end` when the directory went away. Lasts until the client leaves.
/// Needs the running sandbox.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/files-watch", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), WatchQuery),
    responses(
        (status = 200, description = "Server-Sent Events with a JSON `data`: `start`, then `create`, `write`, `remove`, `rename`, `chmod`, `overflow` and `end` (FileEvent), or `error` (ErrorBody)", content_type = "text/event-stream"),
        (status = 400, description = "Invalid path, or one leading outside the workspace", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or directory", body = ErrorBody),
        (status = 409, description = "The session is not running; or the path is not a directory", body = ErrorBody),
        (status = 429, description = "The sandbox has as many watches as it may", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    Query(q): Query<WatchQuery>,
) -> Result<Response, ApiError> {
    let path = parse_path(q.path.as_deref().unwrap_or(""), true)?;
    let events = state.files.watch(&caller, &session_id, &path, q.recursive).await?;
    let events = events.filter_map(|e| async move {
        let ev = match e {
            Ok(e) => {
                let e = FileEvent::from_event(e)?;
                json_event(&e.kind.clone(), &e)
            }
            Err(e) => error_event(ApiError::from(ServiceError::from(e))),
        };
        Some(Ok::<_, std::convert::Infallible>(ev))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

fn watcher_response(session_id: String, w: sandbox_protocol::WatcherInfo) -> WatcherResponse {
    WatcherResponse { watcher_id: w.id, session_id, path: w.path.into(), recursive: w.recursive }
}

/// Starts a polling watcher of a directory; its events are kept (up to a bound; `overflow`
/// says when some were lost) until polled. A watcher not polled for 10 minutes is stopped.
/// Needs the running sandbox; watchers end with it.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/watchers", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    request_body = WatchQuery,
    responses(
        (status = 201, description = "Watching", body = WatcherResponse),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field (path, recursive)", body = ErrorBody),
        (status = 400, description = "Invalid path, or one leading outside the workspace", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or directory", body = ErrorBody),
        (status = 409, description = "The session is not running; or the path is not a directory", body = ErrorBody),
        (status = 429, description = "The sandbox has as many watches as it may", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn create_watcher(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(session_id): PathParam<String>,
    JsonBody(req): JsonBody<WatchQuery>,
) -> Result<(StatusCode, Json<WatcherResponse>), ApiError> {
    let path = parse_path(req.path.as_deref().unwrap_or(""), true)?;
    let w = state.files.create_watcher(&caller, &session_id, &path, req.recursive).await?;
    Ok((StatusCode::CREATED, Json(watcher_response(session_id, w))))
}

/// A polling watcher's events since its previous poll.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/watchers/{watcher_id}/events", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("watcher_id" = String, Path, description = "Watcher id")),
    responses(
        (status = 200, description = "The events, oldest first", body = WatcherEventsResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or watcher", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn watcher_events(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, watcher_id)): PathParam<(String, String)>,
) -> Result<Json<WatcherEventsResponse>, ApiError> {
    let events = state.files.watcher_events(&caller, &session_id, &watcher_id).await?;
    let events = events.into_iter().filter_map(FileEvent::from_event).collect();
    Ok(Json(WatcherEventsResponse { watcher_id, events }))
}

/// Stops a polling watcher.
#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}/watchers/{watcher_id}", tag = "files", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id"), ("watcher_id" = String, Path, description = "Watcher id")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such session or watcher", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 503, description = "The session's sandbox cannot be reached", body = ErrorBody)))]
pub async fn delete_watcher(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((session_id, watcher_id)): PathParam<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.files.remove_watcher(&caller, &session_id, &watcher_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
