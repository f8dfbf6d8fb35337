//! The executor's one error type: a stable code and a message, sent as the HTTP error body.

use sandbox_protocol::ErrorCode;

/// An error a request ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The stable code (and, through it, the HTTP status).
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }

    /// The request was malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// Something broke inside the executor.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Maps a failed filesystem call on `path` (relative to the workspace) to an error.
    pub fn from_errno(e: rustix::io::Errno, path: &str) -> Self {
        use rustix::io::Errno;
        let shown = if path.is_empty() { "the workspace root" } else { path };
        let (code, msg) = match e {
            Errno::NOENT => (ErrorCode::NotFound, format!("{shown} does not exist")),
            Errno::XDEV => (ErrorCode::InvalidPath, format!("{shown} leads outside the workspace")),
            Errno::LOOP => (ErrorCode::InvalidPath, format!("{shown} has too many symbolic links")),
            Errno::NAMETOOLONG => (ErrorCode::InvalidPath, format!("{shown} is too long")),
            Errno::NOTDIR => (ErrorCode::NotADirectory, format!("a component of {shown} is not a directory")),
            // Opening a socket, or a device nothing drives.
            Errno::NXIO => (ErrorCode::NotARegularFile, format!("{shown} is not a regular file")),
            Errno::ISDIR => (ErrorCode::IsADirectory, format!("{shown} is a directory")),
            Errno::EXIST => (ErrorCode::AlreadyExists, format!("{shown} already exists")),
            Errno::NOTEMPTY => {
                (ErrorCode::DirectoryNotEmpty, format!("{shown} is a directory that is not empty"))
            }
            Errno::NOSPC | Errno::DQUOT => (ErrorCode::NoSpace, "the workspace is full".to_owned()),
            Errno::FBIG => {
                (ErrorCode::TooLarge, format!("{shown} would exceed the largest allowed file size"))
            }
            Errno::ACCESS | Errno::PERM | Errno::ROFS => {
                (ErrorCode::PermissionDenied, format!("permission denied on {shown}"))
            }
            other => (ErrorCode::Internal, format!("{shown}: {other}")),
        };
        Error::new(code, msg)
    }
}

impl From<sandbox_core::PathError> for Error {
    fn from(e: sandbox_core::PathError) -> Self {
        Error::new(ErrorCode::InvalidPath, e.to_string())
    }
}
