//! A session's files: listed, written, read and deleted in its running sandbox (where its
//! executor resolves every path, so no symlink reaches the host), or, in `s3` mode while the
//! sandbox does not run, in the bucket. Stat, mkdir, move and watches need the running sandbox.

use crate::caller::Caller;
use crate::service::error::{Result, ServiceError};
use crate::service::sessions::Sessions;
use crate::settings::Storage;
use chrono::{DateTime, Utc};
use sandbox_core::WorkspacePath;
use sandbox_core::model::{Session, SessionStatus};
use sandbox_executor_client::{ByteStream, ClientError, ExecutorClient, WatchStream};
use sandbox_protocol::{
    DirCreated, ErrorCode, FileChange, FileChangeKind, FileEntry, FileKind, WatchEvent, WatcherInfo,
};
use sandbox_storage::WorkspaceBucket;
use std::sync::Arc;
use std::time::Duration;

/// The MIME type of a path, from its extension.
pub fn mime_type(path: &str) -> String {
    mime_guess::from_path(path).first_or_octet_stream().essence_str().to_owned()
}

/// Where a session's files are.
enum Location {
    /// Its running sandbox.
    Sandbox(Box<ExecutorClient>),
    /// The bucket (`s3` mode, the sandbox not running).
    Bucket(WorkspaceBucket),
}

/// A listing.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The entries, in path order.
    pub entries: Vec<FileEntry>,
    /// Whether the listing stopped at its limit.
    pub truncated: bool,
    /// Whether the entries come from the running sandbox (with modes, owners and symlink
    /// targets) rather than from the bucket (files only, without them).
    pub live: bool,
}

/// Most entries a listing gives.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// Most entries a listing skips: a page further in walks too much of the tree; list a
/// subdirectory instead.
pub const MAX_LIST_OFFSET: usize = 100_000;

/// An entry of the bucket, described as well as the bucket can.
fn stored_entry(path: WorkspacePath, size: u64, modified_at: DateTime<Utc>) -> FileEntry {
    FileEntry {
        path,
        kind: FileKind::File,
        size,
        modified_at,
        mode: 0o644,
        uid: 0,
        gid: 0,
        owner: String::new(),
        group: String::new(),
        symlink_target: None,
    }
}

/// A file's content, or where to fetch it.
pub enum Download {
    /// The bytes, streamed.
    Content {
        /// Their number.
        size: u64,
        /// The bytes.
        bytes: ByteStream,
    },
    /// A presigned URL of the bucket (a large file of a stopped session).
    Redirect(String),
}

/// A session an upload goes to, resolved before its body is read.
pub struct UploadTarget {
    session: Session,
    location: Location,
}

/// A watcher the sandbox does not know is `watcher_not_found`.
fn watcher_error(e: ClientError, id: &str) -> ServiceError {
    match e.api_error() {
        Some(b) if b.code == ErrorCode::NotFound => ServiceError::not_found(
            "watcher_not_found",
            format!("watcher {id} does not exist in this session"),
        ),
        _ => e.into(),
    }
}

/// Files.
pub struct Files {
    sessions: Arc<Sessions>,
    storage: Storage,
}

impl Files {
    /// The service.
    pub fn new(sessions: Arc<Sessions>, storage: Storage) -> Self {
        Files { sessions, storage }
    }

    async fn locate(&self, caller: &Caller, session_id: &str) -> Result<(Session, Location)> {
        let s = self.sessions.get(caller, session_id).await?;
        if s.status == SessionStatus::Running {
            let client = self.sessions.executor(&s).await?;
            return Ok((s, Location::Sandbox(Box::new(client))));
        }
        match self.sessions.workspaces().bucket() {
            Some(bucket) => Ok((s, Location::Bucket(bucket.clone()))),
            None => Err(ServiceError::conflict(
                "session_not_running",
                format!(
                    "session {session_id} is {}, not running, and workspaces are kept only in sandboxes",
                    s.status
                ),
            )),
        }
    }

    /// The caller's session `session_id` with its running sandbox; `session_not_running`
    /// otherwise.
    async fn running(&self, caller: &Caller, session_id: &str) -> Result<(Session, ExecutorClient)> {
        let s = self.sessions.get(caller, session_id).await?;
        if s.status != SessionStatus::Running {
            return Err(ServiceError::conflict(
                "session_not_running",
                format!("session {session_id} is {}; this needs its sandbox running", s.status),
            ));
        }
        let client = self.sessions.executor(&s).await?;
        self.sessions.touch(&s.id).await;
        Ok((s, client))
    }

    /// The entries below `dir` down to `depth` levels (every level when `None`; 0 and 1 mean
    /// its own entries), in path order, skipping the first `offset` (up to [`MAX_LIST_OFFSET`])
    /// and giving at most `limit` (up to [`MAX_LIST_LIMIT`]). A missing directory is
    /// `file_not_found`, something else than a directory `not_a_directory` (from the running
    /// sandbox; a stopped session's bucket holds files only, so a missing directory lists empty).
    pub async fn list(
        &self,
        caller: &Caller,
        session_id: &str,
        dir: &WorkspacePath,
        depth: Option<usize>,
        offset: usize,
        limit: usize,
    ) -> Result<Listing> {
        let (session, location) = self.locate(caller, session_id).await?;
        match location {
            Location::Sandbox(client) => {
                let listing = client.list_dir(dir, depth.unwrap_or(usize::MAX), offset, Some(limit)).await?;
                if listing.offset != offset {
                    // An executor older than paged listings answered from the start.
                    return Err(ServiceError::conflict(
                        "sandbox_outdated",
                        "this session's sandbox is older than paged file listings: list without offset, or list a subdirectory",
                    ));
                }
                self.sessions.touch(&session.id).await;
                Ok(Listing { entries: listing.entries, truncated: listing.truncated, live: true })
            }
            Location::Bucket(_) => {
                let stored = self.sessions.workspaces().list(&session.id, dir).await?.unwrap_or_default();
                let base = dir.components().count();
                let within =
                    |p: &WorkspacePath| depth.is_none_or(|d| p.components().count() - base <= d.max(1));
                let mut entries = stored
                    .into_iter()
                    .filter(|f| within(&f.path))
                    .map(|f| stored_entry(f.path, f.size, f.modified_at));
                let listed: Vec<FileEntry> = entries.by_ref().skip(offset).take(limit).collect();
                let truncated = entries.next().is_some();
                Ok(Listing { entries: listed, truncated, live: false })
            }
        }
    }

    /// One entry of the running sandbox's workspace (a symlink itself, with its target).
    pub async fn stat(&self, caller: &Caller, session_id: &str, path: &WorkspacePath) -> Result<FileEntry> {
        let (_, client) = self.running(caller, session_id).await?;
        Ok(client.stat(path).await?)
    }

    /// Makes directory `path` and its parents in the running sandbox; says whether it existed
    /// already (`created: false`). A file in its place is `not_a_directory`.
    pub async fn make_dir(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &WorkspacePath,
    ) -> Result<DirCreated> {
        let (_, client) = self.running(caller, session_id).await?;
        Ok(client.mkdir(path).await?)
    }

    /// Renames `source` to `destination` in the running sandbox (the destination's parents
    /// are made; a file replaces a file, a directory replaces nothing and is never replaced:
    /// `already_exists`). In `s3` mode the bucket follows.
    pub async fn rename(
        &self,
        caller: &Caller,
        session_id: &str,
        source: &WorkspacePath,
        destination: &WorkspacePath,
    ) -> Result<FileEntry> {
        let (session, client) = self.running(caller, session_id).await?;
        let moved = client.rename(source, destination).await?;
        if self.sessions.workspaces().bucket().is_some() {
            self.store_moved(&session.id, &client, source, &moved).await?;
        }
        Ok(moved)
    }

    /// Writes a moved entry's files to the bucket under their new paths and drops the old ones.
    async fn store_moved(
        &self,
        session_id: &str,
        client: &ExecutorClient,
        source: &WorkspacePath,
        moved: &FileEntry,
    ) -> Result<()> {
        let workspaces = self.sessions.workspaces();
        let files = match moved.kind {
            FileKind::Directory => client.list_files(&moved.path, true, Some(MAX_LIST_LIMIT)).await?.entries,
            _ => vec![moved.clone()],
        };
        let changes: Vec<FileChange> = files
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| FileChange { path: e.path, change: FileChangeKind::Created, kind: e.kind, size: e.size })
            .collect();
        workspaces.save_changes(session_id, client, &changes).await.map_err(|e| {
            ServiceError::unavailable(
                "storage_unavailable",
                format!("the move could not be saved to storage: {e}"),
                5,
            )
        })?;
        Ok(workspaces.delete_path(session_id, source).await?)
    }

    /// Removes a file or a directory with everything in it; a missing path is not an error.
    /// Says whether something was removed.
    pub async fn remove_all(&self, caller: &Caller, session_id: &str, path: &WorkspacePath) -> Result<bool> {
        match self.delete(caller, session_id, path, true).await {
            Ok(()) => Ok(true),
            Err(ServiceError::Executor(e))
                if e.api_error().is_some_and(|b| b.code == ErrorCode::NotFound) =>
            {
                Ok(false)
            }
            Err(ServiceError::NotFound { code: "file_not_found", .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Watches directory `path` of the running sandbox (and the directories below it when
    /// `recursive`). Returns once the watch is in place; the stream's first event is `start`.
    /// Dropping the stream stops the watch.
    pub async fn watch(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &WorkspacePath,
        recursive: bool,
    ) -> Result<WatchStream> {
        let (_, client) = self.running(caller, session_id).await?;
        Ok(client.watch(path, recursive).await?)
    }

    /// Starts a polling watcher of directory `path` in the running sandbox.
    pub async fn create_watcher(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &WorkspacePath,
        recursive: bool,
    ) -> Result<WatcherInfo> {
        let (_, client) = self.running(caller, session_id).await?;
        Ok(client.create_watcher(path, recursive).await?)
    }

    /// A polling watcher's events since its previous poll.
    pub async fn watcher_events(
        &self,
        caller: &Caller,
        session_id: &str,
        watcher_id: &str,
    ) -> Result<Vec<WatchEvent>> {
        let (_, client) = self.running(caller, session_id).await?;
        client.watcher_events(watcher_id).await.map_err(|e| watcher_error(e, watcher_id))
    }

    /// Stops a polling watcher.
    pub async fn remove_watcher(&self, caller: &Caller, session_id: &str, watcher_id: &str) -> Result<()> {
        let (_, client) = self.running(caller, session_id).await?;
        client.remove_watcher(watcher_id).await.map_err(|e| watcher_error(e, watcher_id))
    }

    /// Where an upload to the caller's session `session_id` goes.
    pub async fn upload_target(&self, caller: &Caller, session_id: &str) -> Result<UploadTarget> {
        let (session, location) = self.locate(caller, session_id).await?;
        Ok(UploadTarget { session, location })
    }

    /// Writes `content` to `path` of an upload's session; the file appears only once complete.
    /// Returns its size.
    pub async fn write(
        &self,
        target: &UploadTarget,
        path: &WorkspacePath,
        content: ByteStream,
    ) -> Result<u64> {
        Ok(match &target.location {
            Location::Sandbox(client) => client.write_file(path, content).await?.size,
            Location::Bucket(bucket) => bucket.write(&target.session.id, path, content).await?,
        })
    }

    /// Makes a written upload durable (in `s3` mode) before it is acknowledged.
    pub async fn commit(&self, target: &UploadTarget, path: &WorkspacePath) -> Result<()> {
        if let Location::Sandbox(client) = &target.location {
            let id = &target.session.id;
            self.sessions.workspaces().save_file(id, client, path).await.map_err(|e| {
                ServiceError::unavailable(
                    "storage_unavailable",
                    format!("the file could not be saved to storage: {e}"),
                    5,
                )
            })?;
            self.sessions.touch(id).await;
        }
        Ok(())
    }

    /// A file's content (or, for a large file of a stopped session with a public endpoint
    /// configured, a presigned URL to it).
    pub async fn download(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &WorkspacePath,
    ) -> Result<Download> {
        let (session, location) = self.locate(caller, session_id).await?;
        match location {
            Location::Sandbox(client) => {
                let (size, bytes) = client.read_file(path).await?;
                self.sessions.touch(&session.id).await;
                Ok(Download::Content { size, bytes })
            }
            Location::Bucket(bucket) => {
                let (size, bytes) = bucket.read(&session.id, path).await?;
                if size >= self.storage.presign_min_mb << 20 {
                    let ttl = Duration::from_secs(self.storage.presign_ttl_secs);
                    if let Some(url) = bucket.presigned_download(&session.id, path, ttl) {
                        return Ok(Download::Redirect(url?));
                    }
                }
                Ok(Download::Content { size, bytes })
            }
        }
    }

    /// Deletes a file, or a directory (a non-empty one only when `recursive`).
    pub async fn delete(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &WorkspacePath,
        recursive: bool,
    ) -> Result<()> {
        let (session, location) = self.locate(caller, session_id).await?;
        let workspaces = self.sessions.workspaces();
        match location {
            Location::Sandbox(client) => {
                client.delete(path, recursive).await?;
                self.sessions.touch(&session.id).await;
            }
            Location::Bucket(_) => {
                let below = workspaces.list(&session.id, path).await?.unwrap_or_default();
                let exact = workspaces
                    .list(&session.id, &WorkspacePath::root())
                    .await?
                    .unwrap_or_default()
                    .iter()
                    .any(|f| f.path == *path);
                if !exact && below.is_empty() {
                    return Err(ServiceError::not_found("file_not_found", format!("{path} does not exist")));
                }
                if !exact && !recursive {
                    return Err(ServiceError::conflict(
                        "directory_not_empty",
                        format!("{path} is a directory that is not empty"),
                    ));
                }
            }
        }
        Ok(workspaces.delete_path(&session.id, path).await?)
    }
}
