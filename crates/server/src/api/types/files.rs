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
    /// How many entries are returned.
    pub total: u64,
    /// The same (the Python control plane's name).
    pub count: u64,
    /// Whether the listing stopped at `limit`.
    pub truncated: bool,
}

/// Query of the file listing.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListFilesQuery {
    /// A directory relative to the workspace root; the whole workspace when left out.
    pub path: Option<String>,
    /// Most entries (1-10000, default 1000).
    pub limit: Option<i64>,
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
