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
    pub modified_at: DateTime<Utc>,
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
    /// Where the file was written.
    pub path: String,
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
