//! envd's files on our executor: `GET|POST /files` and the Connect service
//! `filesystem.Filesystem` (Stat, MakeDir, ListDir, Move, Remove, WatchDir and the polling
//! watchers); `process.Process` is in [`super::process`]. E2B's home `/home/user` (and any
//! relative path) is the workspace; other absolute paths are refused as a permission problem.

use super::Target;
use super::connect::{self, ConnectError, int64};
use crate::api::error::{ApiError, E2bError};
use crate::api::files::{byte_channel, pump};
use crate::service::access::file_signature;
use crate::service::error::ServiceError;
use crate::service::files::{Download, UploadTarget, mime_type};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use futures_util::StreamExt;
use sandbox_core::WorkspacePath;
use sandbox_core::model::{Session, SessionStatus};
use sandbox_protocol::{ErrorCode, FileEntry, FileKind, WatchEvent, WatchEventKind};
use serde::{Deserialize, Serialize};

/// E2B's home directory, which is the workspace here.
pub const HOME: &str = "/home/user";
/// The workspace's own path in the sandbox.
const WORKSPACE: &str = "/workspace";
/// The most entries one `ListDir` answers with.
const MAX_LIST: usize = 10_000;

fn below<'a>(raw: &'a str, root: &str) -> Option<&'a str> {
    raw.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/')).map(|r| r.trim_start_matches('/'))
}

/// The workspace path an E2B path names: `/home/user/…`, `/workspace/…`, or relative to the
/// home. Anything else is outside what the sandbox lets a client reach (403).
pub fn workspace_path(raw: &str) -> Result<WorkspacePath, ApiError> {
    let rel = match (below(raw, HOME), below(raw, WORKSPACE)) {
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) if raw.starts_with('/') => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_denied",
                format!("{raw} is outside the sandbox's home ({HOME}); only paths below it can be reached"),
            ));
        }
        (None, None) => raw,
    };
    WorkspacePath::parse(rel).map_err(|e| ApiError::bad_request("invalid_path", format!("{raw}: {e}")))
}

/// The E2B path of a workspace path.
pub fn home_path(p: &WorkspacePath) -> String {
    if p.is_root() { HOME.to_owned() } else { format!("{HOME}/{}", p.as_str()) }
}

/// `/files` query.
#[derive(Debug, Default, Deserialize)]
pub struct FilesQuery {
    /// The file (for uploads: of a single file; else each part's file name is its path).
    path: Option<String>,
    /// The user to act as (everything runs as the sandbox's one user here).
    username: Option<String>,
    /// A signed URL's signature (`v1_…`).
    signature: Option<String>,
    /// When a signed URL expires (Unix seconds).
    signature_expiration: Option<i64>,
}

fn files_query(uri: &Uri) -> Result<FilesQuery, ApiError> {
    axum::extract::Query::<FilesQuery>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

fn operation(method: &Method) -> &'static str {
    if method == Method::GET { "read" } else { "write" }
}

/// Whether the query's signature is one made with `token` for this request (and unexpired).
fn signed(q: &FilesQuery, op: &str, token: &str) -> bool {
    let (Some(sig), Some(path)) = (q.signature.as_deref(), q.path.as_deref()) else { return false };
    if q.signature_expiration.is_some_and(|exp| exp < Utc::now().timestamp()) {
        return false;
    }
    let users: &[&str] = match q.username.as_deref() {
        Some(u) => &[u],
        None => &["", "user"],
    };
    users.iter().any(|u| {
        let expected = file_signature(path, op, u, token, q.signature_expiration);
        sandbox_protocol::contract::constant_time_eq(expected.as_bytes(), sig.as_bytes())
    })
}

/// The running session a signed `/files` URL (which names no sandbox) was signed for.
pub async fn by_signature(state: &AppState, method: &Method, uri: &Uri) -> Result<Option<Session>, ApiError> {
    let q = files_query(uri)?;
    if q.signature.is_none() {
        return Ok(None);
    }
    for s in state.store.sessions_in_status(&[SessionStatus::Running]).await? {
        if signed(&q, operation(method), &state.access_tokens.token(&s.id)?) {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Admits a `/files` request without the access token only with a valid signature.
fn check_signature(state: &AppState, t: &Target, method: &Method, q: &FilesQuery) -> Result<(), ApiError> {
    if t.token || signed(q, operation(method), &state.access_tokens.token(&t.session.id)?) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("send the sandbox's X-Access-Token, or a valid signature"))
    }
}

/// E2B answers 400 for a directory where a file was expected.
fn file_error(e: ServiceError) -> E2bError {
    let e = ApiError::from(e);
    match e.code {
        "is_a_directory" | "not_a_regular_file" => E2bError(ApiError::bad_request(e.code, e.message)),
        _ => E2bError(e),
    }
}

/// `GET /files?path=…`: the file's bytes.
pub async fn read_file(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    method: Method,
    uri: Uri,
) -> Result<Response, E2bError> {
    let q = files_query(&uri)?;
    check_signature(&state, &t, &method, &q)?;
    let raw =
        q.path.as_deref().ok_or_else(|| ApiError::bad_request("invalid_path", "give the file's path"))?;
    let path = workspace_path(raw)?;
    let (size, bytes) =
        match state.files.download(&t.caller, &t.session.id, &path).await.map_err(file_error)? {
            Download::Content { size, bytes } => (size, bytes),
            Download::Redirect(url) => {
                return Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response());
            }
        };
    let mut resp = Response::new(Body::from_stream(bytes));
    let mime = HeaderValue::from_str(&mime_type(path.as_str()))
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    resp.headers_mut().insert(header::CONTENT_TYPE, mime);
    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(resp)
}

/// One written file, as `POST /files` reports it.
#[derive(Debug, Serialize)]
pub struct WrittenFile {
    /// Its path (under the home).
    path: String,
    /// Its name.
    name: String,
    /// `file`.
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `POST /files`: writes each `file` part of a multipart form (to `?path`, or to the part's file
/// name), or the raw body to `?path`; parents are created.
pub async fn write_files(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    req: Request,
) -> Result<Json<Vec<WrittenFile>>, E2bError> {
    let q = files_query(req.uri())?;
    check_signature(&state, &t, req.method(), &q)?;
    if req.headers().get(header::CONTENT_ENCODING).is_some_and(|v| v != "identity") {
        return Err(
            ApiError::bad_request("unsupported_encoding", "compressed uploads are not supported").into()
        );
    }
    let dest = state.files.upload_target(&t.caller, &t.session.id).await?;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let mut written = Vec::new();
    if is_multipart {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request("malformed_upload", e.body_text()))?;
        while let Some(field) =
            form.next_field().await.map_err(|e| ApiError::bad_request("malformed_upload", e.body_text()))?
        {
            if field.name() != Some("file") {
                continue;
            }
            let target = match (&q.path, field.file_name()) {
                (Some(p), _) => p.clone(),
                (None, Some(name)) if !name.is_empty() => name.to_owned(),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_path",
                        "give ?path or a file name for each part",
                    )
                    .into());
                }
            };
            let chunks = field.map(|c| c.map_err(|e| e.to_string()));
            written.push(write_one(&state, &dest, &target, Box::pin(chunks)).await?);
        }
    } else {
        let raw = q
            .path
            .clone()
            .ok_or_else(|| ApiError::bad_request("invalid_path", "give ?path for a raw upload"))?;
        let chunks = req.into_body().into_data_stream().map(|c| c.map_err(|e| e.to_string()));
        written.push(write_one(&state, &dest, &raw, Box::pin(chunks)).await?);
    }
    if written.is_empty() {
        return Err(ApiError::bad_request("malformed_upload", "the form has no 'file' part").into());
    }
    Ok(Json(written))
}

/// Bytes of an upload, as they arrive.
type Chunks<'a> = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, String>> + Send + 'a>>;

/// Writes one uploaded file to `raw` (an E2B path) and makes it durable.
async fn write_one(
    state: &AppState,
    dest: &UploadTarget,
    raw: &str,
    chunks: Chunks<'_>,
) -> Result<WrittenFile, E2bError> {
    let limit = state.settings.limits.max_upload_mb << 20;
    let path = workspace_path(raw)?;
    if path.is_root() {
        return Err(ApiError::bad_request("invalid_path", "give a file path, not the home directory").into());
    }
    let (tx, stream) = byte_channel();
    let (sent, done) = tokio::join!(pump(chunks, tx, limit), state.files.write(dest, &path, stream));
    if sent?.is_none() {
        return Err(ApiError::too_large(
            "payload_too_large",
            format!("files are limited to {} MiB", limit >> 20),
        )
        .into());
    }
    done.map_err(file_error)?;
    state.files.commit(dest, &path).await?;
    let name = path.split_last().map(|(_, n)| n.to_owned()).unwrap_or_default();
    Ok(WrittenFile { path: home_path(&path), name, kind: FileKind::File.as_str() })
}

/// `filesystem.EntryInfo` in proto3 JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryInfo {
    /// The entry's name.
    pub name: String,
    /// `FILE_TYPE_FILE`, `FILE_TYPE_DIRECTORY`, `FILE_TYPE_SYMLINK` (or unspecified).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its path (under the home).
    pub path: String,
    /// Its size in bytes.
    #[serde(with = "int64")]
    pub size: i64,
    /// Its permission bits.
    pub mode: u32,
    /// Its permissions as `ls` shows them (`-rw-r--r--`).
    pub permissions: String,
    /// Its owner's name in the sandbox (its number when it has none).
    pub owner: String,
    /// Its group's name in the sandbox (its number when it has none).
    pub group: String,
    /// When it last changed (RFC 3339).
    pub modified_time: String,
    /// What a symlink points to (never followed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

fn permissions(kind: FileKind, mode: u32) -> String {
    let lead = match kind {
        FileKind::Directory => 'd',
        FileKind::Symlink => 'l',
        _ => '-',
    };
    let bits = (0..9).rev().map(|i| if mode & (1 << i) == 0 { '-' } else { ['x', 'w', 'r'][i % 3] });
    std::iter::once(lead).chain(bits).collect()
}

impl From<FileEntry> for EntryInfo {
    fn from(e: FileEntry) -> Self {
        EntryInfo {
            name: e.path.split_last().map(|(_, n)| n.to_owned()).unwrap_or_else(|| "user".into()),
            kind: match e.kind {
                FileKind::File => "FILE_TYPE_FILE",
                FileKind::Directory => "FILE_TYPE_DIRECTORY",
                FileKind::Symlink => "FILE_TYPE_SYMLINK",
                FileKind::Other => "FILE_TYPE_UNSPECIFIED",
            },
            path: home_path(&e.path),
            size: i64::try_from(e.size).unwrap_or(i64::MAX),
            mode: e.mode & 0o7777,
            permissions: permissions(e.kind, e.mode),
            owner: e.owner,
            group: e.group,
            modified_time: e.modified_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
            symlink_target: e.symlink_target,
        }
    }
}

/// A request naming one path (`Stat`, `MakeDir`, `Remove`).
#[derive(Debug, Deserialize)]
struct PathRequest {
    path: String,
}

/// `ListDir`'s request.
#[derive(Debug, Deserialize)]
struct ListDirRequest {
    path: String,
    #[serde(default)]
    depth: u32,
}

/// `{"entry": …}`.
#[derive(Debug, Serialize)]
struct EntryResponse {
    entry: EntryInfo,
}

/// `{"entries": […]}`.
#[derive(Debug, Serialize)]
struct ListDirResponse {
    entries: Vec<EntryInfo>,
}

/// An empty message.
#[derive(Debug, Serialize)]
pub(super) struct Empty {}

fn connect_path(raw: &str) -> Result<WorkspacePath, ConnectError> {
    workspace_path(raw).map_err(ConnectError::from)
}

async fn stat(state: &AppState, t: &Target, req: PathRequest) -> Result<EntryResponse, ConnectError> {
    let path = connect_path(&req.path)?;
    let entry = state.files.stat(&t.caller, &t.session.id, &path).await?;
    Ok(EntryResponse { entry: entry.into() })
}

async fn make_dir(state: &AppState, t: &Target, req: PathRequest) -> Result<EntryResponse, ConnectError> {
    let path = connect_path(&req.path)?;
    let made = state.files.make_dir(&t.caller, &t.session.id, &path).await.map_err(|e| match e {
        ServiceError::Executor(c) if c.api_error().is_some_and(|b| b.code == ErrorCode::NotADirectory) => {
            ConnectError::invalid(format!("{} exists and is not a directory", req.path))
        }
        e => e.into(),
    })?;
    if !made.created {
        return Err(ConnectError::new("already_exists", format!("directory {} already exists", req.path)));
    }
    Ok(EntryResponse { entry: made.entry.into() })
}

async fn list_dir(
    state: &AppState,
    t: &Target,
    req: ListDirRequest,
) -> Result<ListDirResponse, ConnectError> {
    let path = connect_path(&req.path)?;
    let depth = usize::try_from(req.depth.max(1)).unwrap_or(usize::MAX);
    let listing = state.files.list(&t.caller, &t.session.id, &path, Some(depth), 0, MAX_LIST).await?;
    // E2B's entries are files, directories and symlinks; others are left out, as envd does.
    let entries = listing.entries.into_iter().filter(|e| e.kind != FileKind::Other);
    Ok(ListDirResponse { entries: entries.map(EntryInfo::from).collect() })
}

async fn remove(state: &AppState, t: &Target, req: PathRequest) -> Result<Empty, ConnectError> {
    let path = connect_path(&req.path)?;
    if path.is_root() {
        return Err(ConnectError::invalid("the home directory cannot be removed"));
    }
    // As envd's RemoveAll: a missing path is not an error.
    state.files.remove_all(&t.caller, &t.session.id, &path).await?;
    Ok(Empty {})
}

/// `MoveRequest`.
#[derive(Debug, Deserialize)]
struct MoveRequest {
    source: String,
    destination: String,
}

async fn rename(state: &AppState, t: &Target, req: MoveRequest) -> Result<EntryResponse, ConnectError> {
    let (from, to) = (connect_path(&req.source)?, connect_path(&req.destination)?);
    let moved = state.files.rename(&t.caller, &t.session.id, &from, &to).await?;
    Ok(EntryResponse { entry: moved.into() })
}

/// `WatchDirRequest` / `CreateWatcherRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchDirRequest {
    path: String,
    #[serde(default)]
    recursive: bool,
}

/// A request naming a polling watcher.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatcherRequest {
    watcher_id: String,
}

/// `CreateWatcherResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WatcherCreated {
    watcher_id: String,
}

/// `FilesystemEvent`: a name relative to the watched directory and `EVENT_TYPE_*`.
#[derive(Debug, Serialize)]
struct FilesystemEvent {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `GetWatcherEventsResponse`.
#[derive(Debug, Serialize)]
struct WatcherEventsResponse {
    events: Vec<FilesystemEvent>,
}

/// `WatchDirResponse`, as proto3 JSON names its `oneof`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum WatchMessage {
    Start {},
    Filesystem(FilesystemEvent),
    Keepalive {},
}

/// A change as envd words it; `None` for what has no envd event.
fn filesystem_event(ev: WatchEvent) -> Option<FilesystemEvent> {
    let WatchEvent::Change { name, kind } = ev else { return None };
    let kind = match kind {
        WatchEventKind::Create => "EVENT_TYPE_CREATE",
        WatchEventKind::Write => "EVENT_TYPE_WRITE",
        WatchEventKind::Remove => "EVENT_TYPE_REMOVE",
        WatchEventKind::Rename => "EVENT_TYPE_RENAME",
        WatchEventKind::Chmod => "EVENT_TYPE_CHMOD",
    };
    Some(FilesystemEvent { name, kind })
}

/// `WatchDir`: `start` once the watch is in place, then each change; it ends when the
/// directory goes away.
async fn watch_dir(state: &AppState, t: &Target, headers: &HeaderMap, body: &[u8]) -> Response {
    let watching = async {
        let req: WatchDirRequest = connect::stream_request(headers, body)?;
        let path = connect_path(&req.path)?;
        Ok::<_, ConnectError>(state.files.watch(&t.caller, &t.session.id, &path, req.recursive).await?)
    };
    connect::stream_result(watching.await.map(|events| {
        events.take_while(|ev| std::future::ready(!matches!(ev, Ok(WatchEvent::End)))).filter_map(|ev| {
            std::future::ready(match ev {
                Ok(WatchEvent::Start) => Some(Ok(WatchMessage::Start {})),
                Ok(WatchEvent::Keepalive) => Some(Ok(WatchMessage::Keepalive {})),
                Ok(ev) => filesystem_event(ev).map(|e| Ok(WatchMessage::Filesystem(e))),
                Err(e) => Some(Err(ConnectError::new("unavailable", format!("the watch was lost: {e}")))),
            })
        })
    }))
}

async fn create_watcher(
    state: &AppState,
    t: &Target,
    req: WatchDirRequest,
) -> Result<WatcherCreated, ConnectError> {
    let path = connect_path(&req.path)?;
    let w = state.files.create_watcher(&t.caller, &t.session.id, &path, req.recursive).await?;
    Ok(WatcherCreated { watcher_id: w.id })
}

async fn watcher_events(
    state: &AppState,
    t: &Target,
    req: WatcherRequest,
) -> Result<WatcherEventsResponse, ConnectError> {
    let events = state.files.watcher_events(&t.caller, &t.session.id, &req.watcher_id).await?;
    Ok(WatcherEventsResponse { events: events.into_iter().filter_map(filesystem_event).collect() })
}

async fn remove_watcher(state: &AppState, t: &Target, req: WatcherRequest) -> Result<Empty, ConnectError> {
    state.files.remove_watcher(&t.caller, &t.session.id, &req.watcher_id).await?;
    Ok(Empty {})
}

/// `POST /filesystem.Filesystem/{method}`.
pub async fn filesystem(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = &state;
    match method.as_str() {
        "Stat" => unary(&headers, &body, async |r| stat(s, &t, r).await).await,
        "MakeDir" => unary(&headers, &body, async |r| make_dir(s, &t, r).await).await,
        "ListDir" => unary(&headers, &body, async |r| list_dir(s, &t, r).await).await,
        "Remove" => unary(&headers, &body, async |r| remove(s, &t, r).await).await,
        "Move" => unary(&headers, &body, async |r| rename(s, &t, r).await).await,
        "WatchDir" => watch_dir(s, &t, &headers, &body).await,
        "CreateWatcher" => unary(&headers, &body, async |r| create_watcher(s, &t, r).await).await,
        "GetWatcherEvents" => unary(&headers, &body, async |r| watcher_events(s, &t, r).await).await,
        "RemoveWatcher" => unary(&headers, &body, async |r| remove_watcher(s, &t, r).await).await,
        other => ConnectError::unimplemented(&format!("filesystem.Filesystem/{other}")).into_response(),
    }
}

/// A unary call: the request parsed, `handle` run, the response or error rendered.
pub(super) async fn unary<Req, Resp>(
    headers: &HeaderMap,
    body: &[u8],
    handle: impl AsyncFnOnce(Req) -> Result<Resp, ConnectError>,
) -> Response
where
    Req: serde::de::DeserializeOwned,
    Resp: Serialize,
{
    let result = match connect::unary_request::<Req>(headers, body) {
        Ok(req) => handle(req).await,
        Err(e) => Err(e),
    };
    connect::unary_response(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2b_paths_map_to_the_workspace() {
        assert_eq!(workspace_path("/home/user").unwrap(), WorkspacePath::root());
        assert_eq!(workspace_path("/home/user/a/b.txt").unwrap().as_str(), "a/b.txt");
        assert_eq!(workspace_path("a/b.txt").unwrap().as_str(), "a/b.txt");
        assert_eq!(workspace_path("/workspace/x").unwrap().as_str(), "x");
        assert_eq!(workspace_path("/etc/passwd").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(workspace_path("/home/username").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(workspace_path("/home/user/../x").unwrap_err().code, "invalid_path");
        assert_eq!(home_path(&WorkspacePath::parse("a/b").unwrap()), "/home/user/a/b");
    }

    #[test]
    fn entries_are_proto3_json() {
        let e = FileEntry {
            path: WorkspacePath::parse("d/f.txt").unwrap(),
            kind: FileKind::File,
            size: 12,
            modified_at: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc(),
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            owner: "user".into(),
            group: "user".into(),
            symlink_target: None,
        };
        let v = serde_json::to_value(EntryInfo::from(e)).unwrap();
        assert_eq!(v["name"], "f.txt");
        assert_eq!(v["type"], "FILE_TYPE_FILE");
        assert_eq!(v["path"], "/home/user/d/f.txt");
        assert_eq!(v["size"], "12");
        assert_eq!(v["mode"], 0o644);
        assert_eq!(v["permissions"], "-rw-r--r--");
        assert_eq!(v["modifiedTime"], "2026-01-01T00:00:00.000000000Z");
        assert_eq!(v["owner"], "user");
        assert!(v.get("symlinkTarget").is_none());
    }
}
