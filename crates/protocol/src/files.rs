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

impl FileKind {
    /// `file`, `directory`, `symlink` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }
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
    /// The owner's user id.
    #[serde(default)]
    pub uid: u32,
    /// The owner's group id.
    #[serde(default)]
    pub gid: u32,
    /// The owner's name in the sandbox (its user id in decimal when it has none).
    #[serde(default)]
    pub owner: String,
    /// The group's name in the sandbox (its group id in decimal when it has none).
    #[serde(default)]
    pub group: String,
    /// What a symbolic link points to, as written in the link (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

/// `POST /v1/files/mkdir`: the directory, and whether this call made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirCreated {
    /// The directory.
    #[serde(flatten)]
    pub entry: FileEntry,
    /// False when the directory existed already (its missing parents are made either way).
    #[serde(default)]
    pub created: bool,
}

/// `POST /v1/files/move`: rename `source` to `destination`, both relative to the workspace.
///
/// The last component of either is never followed: moving a symlink moves the link. The
/// destination's missing parents are made. An existing destination is replaced only by an
/// entry of the same sort (a file or symlink by a file or symlink); a directory is never
/// replaced, and nothing replaces one (`already_exists`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    /// What to move.
    pub source: WorkspacePath,
    /// Its new path.
    pub destination: WorkspacePath,
}

/// What happened to an entry below a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchEventKind {
    /// It appeared (created, or moved in).
    Create,
    /// Its content was written.
    Write,
    /// It was deleted.
    Remove,
    /// It was moved away (or renamed: its new name comes as a `create`).
    Rename,
    /// Its permissions or other metadata changed.
    Chmod,
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WatchEvent {
    /// The first event of a stream: the watch is in place, changes from now on are seen.
    Start,
    /// A change.
    Change {
        /// The entry, relative to the watched directory.
        name: String,
        /// What happened.
        kind: WatchEventKind,
    },
    /// Events were lost (the buffer was full, or the kernel's queue overflowed).
    Overflow,
    /// The watched directory itself was deleted or moved away; no more events come.
    End,
    /// Nothing happened for a while (streams only).
    Keepalive,
}

/// `POST /v1/watchers` (and the query of `GET /v1/files/watch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// The directory to watch, relative to the workspace root (the root when left out).
    #[serde(default = "WorkspacePath::root")]
    pub path: WorkspacePath,
    /// Whether directories below it (including ones created later) are watched too.
    #[serde(default)]
    pub recursive: bool,
}

/// A polling watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherInfo {
    /// Its id.
    pub id: String,
    /// The watched directory.
    pub path: WorkspacePath,
    /// Whether directories below it are watched too.
    pub recursive: bool,
}

/// `GET /v1/watchers/{id}/events`: what happened since the previous poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherEvents {
    /// The changes, oldest first (repeats of the same change in a row are merged).
    pub events: Vec<WatchEvent>,
}

/// `GET /v1/files`: a page of a listing, cut at the requested limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileList {
    /// Entries in path order.
    pub entries: Vec<FileEntry>,
    /// True when more entries existed than the limit allowed.
    pub truncated: bool,
    /// Entries of the walk skipped before this page (`offset` of the request). The pages of a
    /// listing hold every entry once: the walk goes directory by directory, each page sorted.
    #[serde(default)]
    pub offset: usize,
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
