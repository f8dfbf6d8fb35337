//! Durable copies of session workspaces in S3-compatible object storage.
//!
//! The control plane keeps each session's workspace in one bucket, under
//! `{prefix}{session}/{path}`: it restores a workspace into a new sandbox from there, writes
//! back what each execution changed before reporting it finished, serves the files API from
//! the bucket while the sandbox is not running, copies a workspace to a new session and
//! deletes a session's objects. [`WorkspaceBucket`] does each of those over `object_store`'s
//! S3 client; [`S3Settings`] says where the bucket is.
//!
//! Session ids are checked (1-64 characters of `[A-Za-z0-9_-]`) and paths are
//! [`WorkspacePath`]s, so no key can leave its session's prefix; the session segment always
//! ends with `/`, so `sess_1` never sees `sess_10`'s files.

mod bucket;
mod error;
mod keys;
mod settings;
mod upload;

pub use bucket::WorkspaceBucket;
pub use error::StorageError;
pub use keys::{MAX_SESSION_LEN, validate_session};
pub use settings::S3Settings;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use sandbox_core::workspace_path::WorkspacePath;
use std::pin::Pin;

/// A stream of file content: the same type as `sandbox_executor_client::ByteStream`, so
/// content passes between the executor and the bucket without adapters.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// One file of a stored workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its path in the workspace.
    pub path: WorkspacePath,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written to the bucket (the object's `Last-Modified`, whole seconds).
    pub modified_at: DateTime<Utc>,
}
