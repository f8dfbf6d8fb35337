//! A session's files: listed, written, read and deleted in its running sandbox (where its
//! executor resolves every path, so no symlink reaches the host), or, in `s3` mode while the
//! sandbox does not run, in the bucket.

use crate::caller::Caller;
use crate::service::error::{Result, ServiceError};
use crate::service::sessions::Sessions;
use crate::settings::Storage;
use chrono::{DateTime, Utc};
use sandbox_core::WorkspacePath;
use sandbox_core::model::{Session, SessionStatus};
use sandbox_executor_client::{ByteStream, ExecutorClient};
use sandbox_protocol::{FileEntry, FileKind};
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

/// One entry of a listing.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its path in the workspace.
    pub path: WorkspacePath,
    /// What it is.
    pub kind: FileKind,
    /// Its size in bytes.
    pub size: u64,
    /// When it last changed.
    pub modified_at: DateTime<Utc>,
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

    /// The entries below `dir`, recursively, at most `limit`; and whether there were more.
    pub async fn list(
        &self,
        caller: &Caller,
        session_id: &str,
        dir: &WorkspacePath,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool)> {
        let (session, location) = self.locate(caller, session_id).await?;
        match location {
            Location::Sandbox(client) => {
                let listing = client.list_files(dir, true, Some(limit)).await?;
                self.sessions.touch(&session.id).await;
                let entries = listing
                    .entries
                    .into_iter()
                    .map(|e| Entry { path: e.path, kind: e.kind, size: e.size, modified_at: e.modified_at })
                    .collect();
                Ok((entries, listing.truncated))
            }
            Location::Bucket(_) => {
                let stored = self.sessions.workspaces().list(&session.id, dir).await?.unwrap_or_default();
                let truncated = stored.len() > limit;
                let entries = stored
                    .into_iter()
                    .take(limit)
                    .map(|f| Entry {
                        path: f.path,
                        kind: FileKind::File,
                        size: f.size,
                        modified_at: f.modified_at,
                    })
                    .collect();
                Ok((entries, truncated))
            }
        }
    }

    /// The executor of the caller's running session `session_id`, for what only a running
    /// sandbox can answer.
    async fn running(&self, caller: &Caller, session_id: &str) -> Result<(Session, Box<ExecutorClient>)> {
        match self.locate(caller, session_id).await? {
            (s, Location::Sandbox(client)) => Ok((s, client)),
            (s, Location::Bucket(_)) => Err(ServiceError::conflict(
                "session_not_running",
                format!("session {session_id} is {}, not running", s.status),
            )),
        }
    }

    /// The entries directly in `dir` of a running session, at most `limit`; and whether there
    /// were more.
    pub async fn list_dir(
        &self,
        caller: &Caller,
        session_id: &str,
        dir: &WorkspacePath,
        limit: usize,
    ) -> Result<(Vec<FileEntry>, bool)> {
        let (session, client) = self.running(caller, session_id).await?;
        let listing = client.list_files(dir, false, Some(limit)).await?;
        self.sessions.touch(&session.id).await;
        Ok((listing.entries, listing.truncated))
    }

    /// One entry of a running session's workspace.
    pub async fn stat(&self, caller: &Caller, session_id: &str, path: &WorkspacePath) -> Result<FileEntry> {
        let (session, client) = self.running(caller, session_id).await?;
        let entry = client.stat(path).await?;
        self.sessions.touch(&session.id).await;
        Ok(entry)
    }

    /// Makes a directory (and its parents) in a running session's workspace; an existing
    /// directory is not an error.
    pub async fn make_dir(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &WorkspacePath,
    ) -> Result<FileEntry> {
        let (session, client) = self.running(caller, session_id).await?;
        let entry = client.mkdir(path).await?;
        self.sessions.touch(&session.id).await;
        Ok(entry)
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
