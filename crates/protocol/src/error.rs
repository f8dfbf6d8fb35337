//! The one error body every executor endpoint answers with.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable, machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or query is malformed.
    BadRequest,
    /// Missing or wrong bearer token (TCP listener only).
    Unauthorized,
    /// A path is absolute, has `..`, a NUL byte, an over-long name, or leads out of the workspace.
    InvalidPath,
    /// No such file, directory or execution.
    NotFound,
    /// The target exists and the operation would replace it.
    AlreadyExists,
    /// A directory was given where a file is needed.
    IsADirectory,
    /// The path names something other than a regular file or directory (a FIFO, a socket, a
    /// device, a symbolic link) where file content is needed.
    NotARegularFile,
    /// A file was given where a directory is needed.
    NotADirectory,
    /// The executor may not touch the path (user code removed its permissions).
    PermissionDenied,
    /// A directory is not empty and `recursive` was not set.
    DirectoryNotEmpty,
    /// The body is larger than allowed.
    TooLarge,
    /// The workspace has no space left.
    NoSpace,
    /// The language's interpreter is not in this image.
    LanguageUnavailable,
    /// The execution is in the wrong state for the request (for example forgetting a running one).
    Conflict,
    /// Too many executions are running in this sandbox.
    Busy,
    /// The context has lost its interpreter (or was reclaimed when idle): its state is gone.
    /// Restart it, or create another.
    ContextLost,
    /// An execution is already running in the context (or it is starting); contexts run one
    /// execution at a time.
    ContextBusy,
    /// The sandbox has as many live contexts as it may.
    TooManyContexts,
    /// No process has this pid (or it ended long enough ago to be forgotten).
    ProcessNotFound,
    /// The sandbox has as many running processes as it may.
    TooManyProcesses,
    /// The process has exited: it takes no more input or signals.
    ProcessExited,
    /// The sandbox has as many directory watchers as it may.
    TooManyWatchers,
    /// Something failed inside the executor.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidPath => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound | ErrorCode::ProcessNotFound => 404,
            ErrorCode::AlreadyExists
            | ErrorCode::IsADirectory
            | ErrorCode::NotADirectory
            | ErrorCode::DirectoryNotEmpty
            | ErrorCode::Conflict
            | ErrorCode::ContextLost
            | ErrorCode::ContextBusy
            | ErrorCode::ProcessExited => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::LanguageUnavailable | ErrorCode::NotARegularFile => 422,
            ErrorCode::Busy
            | ErrorCode::TooManyContexts
            | ErrorCode::TooManyProcesses
            | ErrorCode::TooManyWatchers => 429,
            ErrorCode::NoSpace => 507,
            ErrorCode::Internal => 500,
        }
    }
}

/// `{"code": "...", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            serde_json::to_string(&self.code).unwrap_or_default().trim_matches('"'),
            self.message
        )
    }
}
