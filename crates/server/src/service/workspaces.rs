//! Durable workspaces. In `s3` mode a session's files also live in a bucket: a sandbox is
//! restored from it when it starts, every file an execution changed is written to it (and every
//! file it deleted removed) before the execution is reported finished, and the files API works
//! from it while the sandbox is not running. In `local` mode all of this is a no-op.

use crate::settings::{Storage, StorageMode};
use sandbox_core::WorkspacePath;
use sandbox_executor_client::{ClientError, ExecutorClient};
use sandbox_protocol::{FileChange, FileChangeKind, FileKind};
use sandbox_storage::{StorageError, StoredFile, WorkspaceBucket};
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

/// The durable copy of workspaces, if any.
#[derive(Clone, Default)]
pub struct Workspaces {
    bucket: Option<WorkspaceBucket>,
}

impl Workspaces {
    /// Connects the configured store; in `s3` mode fails at once if the bucket cannot be used
    /// (wrong credentials, unreachable endpoint, missing bucket) — there is no fallback.
    pub async fn connect(settings: &Storage) -> Result<Self, StorageError> {
        Ok(match settings.mode {
            StorageMode::Local => Workspaces { bucket: None },
            StorageMode::S3 => {
                Workspaces { bucket: Some(WorkspaceBucket::connect(settings.s3.clone()).await?) }
            }
        })
    }

    /// The bucket, in `s3` mode.
    pub fn bucket(&self) -> Option<&WorkspaceBucket> {
        self.bucket.as_ref()
    }

    /// Whether the bucket answers (`None` in `local` mode).
    pub async fn check(&self) -> Option<Result<(), StorageError>> {
        Some(self.bucket.as_ref()?.check().await)
    }

    /// Copies the session's stored files into its (new) sandbox; returns how many.
    pub async fn restore(&self, session: &str, client: &ExecutorClient) -> Result<usize, SyncError> {
        let Some(bucket) = &self.bucket else { return Ok(0) };
        let files = bucket.list(session).await?;
        for f in &files {
            let (_, content) = bucket.read(session, &f.path).await?;
            client.write_file(&f.path, content).await?;
        }
        Ok(files.len())
    }

    /// Writes what an execution changed to the bucket (retrying a failed attempt).
    pub async fn save_changes(
        &self,
        session: &str,
        client: &ExecutorClient,
        changes: &[FileChange],
    ) -> Result<(), SyncError> {
        let Some(bucket) = &self.bucket else { return Ok(()) };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match save(bucket, session, client, changes).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < SAVE_ATTEMPTS => {
                    tracing::warn!(session_id = session, attempt, error = %e, "saving workspace changes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one file of the sandbox's workspace to the bucket (after an upload).
    pub async fn save_file(
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

    /// Removes a path (a file, or everything below a directory) from the bucket.
    pub async fn delete_path(&self, session: &str, path: &WorkspacePath) -> Result<(), StorageError> {
        let Some(bucket) = &self.bucket else { return Ok(()) };
        let prefix = format!("{path}/");
        for f in bucket.list(session).await? {
            if f.path == *path || f.path.as_str().starts_with(&prefix) {
                bucket.delete(session, &f.path).await?;
            }
        }
        Ok(())
    }

    /// Removes all of a session's stored files.
    pub async fn delete_session(&self, session: &str) -> Result<(), StorageError> {
        match &self.bucket {
            Some(bucket) => bucket.delete_session(session).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Copies one session's stored files to another (resuming a workspace).
    pub async fn copy_session(&self, from: &str, to: &str) -> Result<(), StorageError> {
        match &self.bucket {
            Some(bucket) => bucket.copy_session(from, to).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// The stored files of a session under `dir`, for the files API of a stopped session.
    pub async fn list(
        &self,
        session: &str,
        dir: &WorkspacePath,
    ) -> Result<Option<Vec<StoredFile>>, StorageError> {
        let Some(bucket) = &self.bucket else { return Ok(None) };
        let prefix = if dir.is_root() { String::new() } else { format!("{dir}/") };
        Ok(Some(
            bucket
                .list(session)
                .await?
                .into_iter()
                .filter(|f| f.path.as_str().starts_with(&prefix))
                .collect(),
        ))
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
