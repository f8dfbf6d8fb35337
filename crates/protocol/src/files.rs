//! Workspace file listings and per-execution change lists.

use chrono::{DateTime, Utc};
use sandbox_core::WorkspacePath;
use serde::{Deserialize, Serialize};

/// What a directory entry is. Symlinks are reported, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (its target is not followed).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// One file or directory in a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the workspace root.
    pub path: WorkspacePath,
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification time.
    pub modified_at: DateTime<Utc>,
    /// Permission bits (`0o644` and so on).
    pub mode: u32,
}

/// `GET /v1/files`: a listing, cut at the requested limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileList {
    /// Entries in path order.
    pub entries: Vec<FileEntry>,
    /// True when more entries existed than the limit allowed.
    pub truncated: bool,
}

pub use sandbox_core::model::FileChangeKind;

/// A file the execution created, changed or deleted in the workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileChange {
    /// Path relative to the workspace root.
    pub path: WorkspacePath,
    /// What happened to it.
    pub change: FileChangeKind,
    /// What it is now (or was, when deleted).
    pub kind: FileKind,
    /// Its size now (0 when deleted).
    pub size: u64,
}

/// `PUT /v1/workspace/archive`: what an extracted tar archive held. `GET` on the same route
/// streams the workspace as a tar archive (symlinks as symlinks, special files left out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSummary {
    /// Regular files written (hard links included).
    pub files: u64,
    /// Directories made.
    pub directories: u64,
    /// Symbolic links made.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries left out (devices, FIFOs).
    pub skipped: u64,
}
