//! Bodies of the file routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One entry of a workspace listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    /// Path relative to the workspace.
    pub path: String,
    /// The last component.
    pub name: String,
    /// `file`, `directory`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type from the extension (files only).
    pub mime_type: Option<String>,
    /// Last modification.
    #[serde(with = "crate::api::types::time::millis")]
    pub modified_at: DateTime<Utc>,
    /// The same (the Python control plane's name).
    #[serde(with = "crate::api::types::time::millis")]
    pub modified_time: DateTime<Utc>,
    /// The path inside the sandbox (`/workspace/...`).
    pub container_path: String,
    /// Changes when the entry's size or modification time does (quoted, as in an `ETag`).
    pub etag: String,
    /// Permission bits as a number (`420` is `0o644`); from a running sandbox only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The same as `rwxr-xr-x`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// The owner's name in the sandbox (its id when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The group's name in the sandbox (its id when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A symbolic link's target, as written in the link (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

/// `rwxr-xr-x` for `0o755`.
fn permissions(mode: u32) -> String {
    (0..9).rev().map(|bit| if mode & (1 << bit) != 0 { ['x', 'w', 'r'][bit % 3] } else { '-' }).collect()
}

impl FileInfo {
    /// An entry at `path` (relative to the workspace).
    pub fn new(
        path: String,
        kind: &str,
        size: u64,
        mime_type: Option<String>,
        modified_at: DateTime<Utc>,
    ) -> Self {
        FileInfo {
            name: path.rsplit('/').next().unwrap_or_default().to_owned(),
            container_path: container_path(&path),
            etag: format!("\"{size:x}-{:x}\"", modified_at.timestamp_nanos_opt().unwrap_or_default()),
            kind: kind.to_owned(),
            path,
            size,
            mime_type,
            modified_time: modified_at,
            modified_at,
            mode: None,
            permissions: None,
            owner: None,
            group: None,
            symlink_target: None,
        }
    }

    /// An entry as the sandbox describes it; with `live`, its mode, owner and link target too
    /// (a stopped session's bucket knows none of them).
    pub fn from_entry(e: sandbox_protocol::FileEntry, live: bool) -> Self {
        let mime = (e.kind == sandbox_protocol::FileKind::File)
            .then(|| crate::service::files::mime_type(e.path.as_str()));
        let info = FileInfo::new(e.path.into(), e.kind.as_str(), e.size, mime, e.modified_at);
        if !live {
            return info;
        }
        FileInfo {
            mode: Some(e.mode),
            permissions: Some(permissions(e.mode)),
            owner: Some(e.owner),
            group: Some(e.group),
            symlink_target: e.symlink_target,
            ..info
        }
    }
}

/// Where a workspace path is inside the sandbox.
pub fn container_path(path: &str) -> String {
    match path {
        "" => sandbox_protocol::WORKSPACE_DIR.to_owned(),
        p => format!("{}/{p}", sandbox_protocol::WORKSPACE_DIR),
    }
}

/// `GET /api/v1/sessions/{id}/files`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileListResponse {
    /// The session.
    pub session_id: String,
    /// The directory listed (`""` for the workspace root).
    pub path: String,
    /// Entries below it, in path order.
    pub files: Vec<FileInfo>,
    /// How many entries are returned (a listing does not walk the whole tree to count the
    /// rest: `has_more` says whether there is more).
    pub total: u64,
    /// The same (the Python control plane's name).
    pub count: u64,
    /// Page size.
    pub limit: u32,
    /// Entries skipped before this page.
    pub offset: u64,
    /// Whether more entries follow: ask again with `offset` + `limit`.
    pub has_more: bool,
    /// The same as `has_more` (its earlier name).
    pub truncated: bool,
}

/// Query of the file listing.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListFilesQuery {
    /// A directory relative to the workspace root; the whole workspace when left out.
    pub path: Option<String>,
    /// Most entries (1-10000, default 1000).
    pub limit: Option<i64>,
    /// Entries to skip, in path order (0-100000, default 0): the next page of a listing that
    /// has more.
    pub offset: Option<i64>,
    /// Levels to list: `1` (or `0`) the directory's own entries, `2` theirs too, and so on;
    /// every level when left out.
    pub depth: Option<i64>,
}

/// Query naming one path.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PathQuery {
    /// A path relative to the workspace root (the root itself when left out).
    pub path: Option<String>,
}

/// `POST /api/v1/sessions/{id}/directories`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MakeDirectoryRequest {
    /// The directory to make, relative to the workspace; missing parents are made too.
    pub path: String,
}

/// Answer of a mkdir: the directory, and whether this request made it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DirectoryResponse {
    /// False when it existed already.
    pub created: bool,
    /// The directory.
    #[serde(flatten)]
    pub directory: FileInfo,
}

/// `POST /api/v1/sessions/{id}/files-move`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MoveFileRequest {
    /// What to move, relative to the workspace.
    pub source: String,
    /// Its new path, relative to the workspace; missing parents are made.
    pub destination: String,
}

/// A directory to watch: the query of `GET .../files-watch` and the body of `POST .../watchers`.
#[derive(Debug, Serialize, Deserialize, ToSchema, IntoParams)]
pub struct WatchQuery {
    /// The directory, relative to the workspace (the root when left out).
    pub path: Option<String>,
    /// Whether directories below it, including ones made later, are watched too.
    #[serde(default)]
    pub recursive: bool,
}

/// A polling watcher.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WatcherResponse {
    /// Its id, unique within the session.
    pub watcher_id: String,
    /// The session.
    pub session_id: String,
    /// The watched directory.
    pub path: String,
    /// Whether directories below it are watched too.
    pub recursive: bool,
}

/// One event of a watch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileEvent {
    /// `create` (also the new name of a rename), `write`, `remove`, `rename` (the old name),
    /// `chmod`; `overflow` when events were lost, `end` when the watched directory went away
    /// (the stream also starts with `start`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The entry, relative to the watched directory (change events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl FileEvent {
    /// The API form of a watch event; `None` for a keepalive.
    pub fn from_event(e: sandbox_protocol::WatchEvent) -> Option<Self> {
        use sandbox_protocol::{WatchEvent as W, WatchEventKind as K};
        let plain = |kind: &str| Some(FileEvent { kind: kind.to_owned(), name: None });
        match e {
            W::Start => plain("start"),
            W::Overflow => plain("overflow"),
            W::End => plain("end"),
            W::Keepalive => None,
            W::Change { name, kind } => {
                let kind = match kind {
                    K::Create => "create",
                    K::Write => "write",
                    K::Remove => "remove",
                    K::Rename => "rename",
                    K::Chmod => "chmod",
                };
                Some(FileEvent { kind: kind.to_owned(), name: Some(name) })
            }
        }
    }
}

/// `GET .../watchers/{id}/events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WatcherEventsResponse {
    /// The watcher.
    pub watcher_id: String,
    /// What happened since the previous poll, oldest first (repeats in a row merged).
    pub events: Vec<FileEvent>,
}

/// Query of the upload.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UploadQuery {
    /// Destination path relative to the workspace; ending in `/` (or naming a directory), the
    /// uploaded file's name is appended.
    pub path: Option<String>,
}

/// Answer of an upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadResponse {
    /// The session.
    pub session_id: String,
    /// Where the file was written, relative to the workspace.
    pub path: String,
    /// The same inside the sandbox (`/workspace/...`; the Python control plane's field).
    pub file_path: String,
    /// Its size in bytes.
    pub size: u64,
    /// MIME type from the extension.
    pub mime_type: String,
}

/// Multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}
