//! Durable workspaces behind [`WorkspaceStore`]. In `s3` mode a session's files also live in a
//! bucket: a sandbox is restored from it when it starts, every file an execution changed is
//! written to it (and every file it deleted removed) before the execution is reported finished,
//! and the files API works from it while the sandbox is not running. In `local` mode all of this
//! has nothing to do.

use crate::settings::{Storage, StorageMode};
use async_trait::async_trait;
use sandbox_core::WorkspacePath;
use sandbox_executor_client::{ClientError, ExecutorClient};
use sandbox_protocol::{FileChange, FileChangeKind, FileKind};
use sandbox_storage::{StorageError, StoredFile, WorkspaceBucket};
use std::sync::Arc;
use std::time::Duration;

/// Attempts at writing an execution's changes before giving up on them.
const SAVE_ATTEMPTS: u32 = 3;

/// Why a workspace could not be restored or saved.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The bucket failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The sandbox failed.
    #[error("the sandbox failed: {0}")]
    Sandbox(#[from] ClientError),
}

/// Where workspaces are kept beyond their sandbox, chosen by `storage.mode` at start:
/// [`HostOnly`] (`local`) or [`Bucket`] (`s3`). A Kubernetes volume per session needs no copy
/// either, so it is `HostOnly` from the control plane's point of view.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// The bucket a stopped session's files are served from; `None` when a workspace lives only
    /// with its sandbox.
    fn bucket(&self) -> Option<&WorkspaceBucket>;

    /// Whether the store answers; `None` when there is nothing to ask.
    async fn check(&self) -> Option<Result<(), StorageError>>;

    /// Copies the session's stored files into its (new) sandbox; returns how many.
    async fn restore(&self, session: &str, client: &ExecutorClient) -> Result<usize, SyncError>;

    /// Writes what an execution changed (read from the sandbox) to the store.
    async fn save_changes(
        &self,
        session: &str,
        client: &ExecutorClient,
        changes: &[FileChange],
    ) -> Result<(), SyncError>;

    /// Removes a path (a file, or everything below a directory) from the store.
    async fn delete_path(&self, session: &str, path: &WorkspacePath) -> Result<(), StorageError>;

    /// Removes all of a session's stored files.
    async fn delete_session(&self, session: &str) -> Result<(), StorageError>;

    /// Copies one session's stored files to another (resuming a workspace).
    async fn copy_session(&self, from: &str, to: &str) -> Result<(), StorageError>;

    /// The stored files of a session under `dir`; `None` when nothing is stored outside sandboxes.
    async fn list(&self, session: &str, dir: &WorkspacePath)
    -> Result<Option<Vec<StoredFile>>, StorageError>;

    /// Writes one file of the sandbox's workspace to the store (after an upload).
    async fn save_file(
        &self,
        session: &str,
        client: &ExecutorClient,
        path: &WorkspacePath,
    ) -> Result<(), SyncError> {
        let change = FileChange {
            path: path.clone(),
            change: FileChangeKind::Modified,
            kind: FileKind::File,
            size: 0,
        };
        self.save_changes(session, client, &[change]).await
    }
}

/// Connects the configured store; in `s3` mode fails at once if the bucket cannot be used
/// (wrong credentials, unreachable endpoint, missing bucket): there is no fallback.
pub async fn connect(settings: &Storage) -> Result<Arc<dyn WorkspaceStore>, StorageError> {
    Ok(match settings.mode {
        StorageMode::Local => Arc::new(HostOnly),
        StorageMode::S3 => Arc::new(Bucket { bucket: WorkspaceBucket::connect(settings.s3.clone()).await? }),
    })
}

/// `local`: the workspace directory on the sandbox's host is the only copy; there is nothing to
/// restore, save or serve from elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostOnly;

#[async_trait]
impl WorkspaceStore for HostOnly {
    fn bucket(&self) -> Option<&WorkspaceBucket> {
        None
    }

    async fn check(&self) -> Option<Result<(), StorageError>> {
        None
    }

    async fn restore(&self, _: &str, _: &ExecutorClient) -> Result<usize, SyncError> {
        Ok(0)
    }

    async fn save_changes(&self, _: &str, _: &ExecutorClient, _: &[FileChange]) -> Result<(), SyncError> {
        Ok(())
    }

    async fn delete_path(&self, _: &str, _: &WorkspacePath) -> Result<(), StorageError> {
        Ok(())
    }

    async fn delete_session(&self, _: &str) -> Result<(), StorageError> {
        Ok(())
    }

    async fn copy_session(&self, _: &str, _: &str) -> Result<(), StorageError> {
        Ok(())
    }

    async fn list(&self, _: &str, _: &WorkspacePath) -> Result<Option<Vec<StoredFile>>, StorageError> {
        Ok(None)
    }
}

/// `s3`: every session's files also live in a bucket.
pub struct Bucket {
    bucket: WorkspaceBucket,
}

#[async_trait]
impl WorkspaceStore for Bucket {
    fn bucket(&self) -> Option<&WorkspaceBucket> {
        Some(&self.bucket)
    }

    async fn check(&self) -> Option<Result<(), StorageError>> {
        Some(self.bucket.check().await)
    }

    async fn restore(&self, session: &str, client: &ExecutorClient) -> Result<usize, SyncError> {
        let files = self.bucket.list(session).await?;
        for f in &files {
            let (_, content) = self.bucket.read(session, &f.path).await?;
            client.write_file(&f.path, content).await?;
        }
        Ok(files.len())
    }

    /// Retries a failed attempt a few times before giving up.
    async fn save_changes(
        &self,
        session: &str,
        client: &ExecutorClient,
        changes: &[FileChange],
    ) -> Result<(), SyncError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match save(&self.bucket, session, client, changes).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < SAVE_ATTEMPTS => {
                    tracing::warn!(session_id = session, attempt, error = %e, "saving workspace changes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn delete_path(&self, session: &str, path: &WorkspacePath) -> Result<(), StorageError> {
        let prefix = format!("{path}/");
        for f in self.bucket.list(session).await? {
            if f.path == *path || f.path.as_str().starts_with(&prefix) {
                self.bucket.delete(session, &f.path).await?;
            }
        }
        Ok(())
    }

    async fn delete_session(&self, session: &str) -> Result<(), StorageError> {
        self.bucket.delete_session(session).await.map(|_| ())
    }

    async fn copy_session(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.bucket.copy_session(from, to).await.map(|_| ())
    }

    async fn list(
        &self,
        session: &str,
        dir: &WorkspacePath,
    ) -> Result<Option<Vec<StoredFile>>, StorageError> {
        let prefix = if dir.is_root() { String::new() } else { format!("{dir}/") };
        let files = self.bucket.list(session).await?;
        Ok(Some(files.into_iter().filter(|f| f.path.as_str().starts_with(&prefix)).collect()))
    }
}

async fn save(
    bucket: &WorkspaceBucket,
    session: &str,
    client: &ExecutorClient,
    changes: &[FileChange],
) -> Result<(), SyncError> {
    for c in changes {
        match (c.change, c.kind) {
            (FileChangeKind::Deleted, _) => bucket.delete(session, &c.path).await?,
            (_, FileKind::File) => match client.read_file(&c.path).await {
                Ok((_, content)) => {
                    bucket.write(session, &c.path, content).await?;
                }
                // Gone again since (another execution removed it): nothing to keep.
                Err(ClientError::Api { status: 404, .. }) => bucket.delete(session, &c.path).await?,
                Err(e) => return Err(e.into()),
            },
            // Symlinks and special files have no object form; they stay in the sandbox only.
            _ => {}
        }
    }
    Ok(())
}
