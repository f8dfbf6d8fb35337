//! Access to directory trees that untrusted code can write: a sandbox's workspace, a package
//! set an installer filled. Whoever reads such a tree with more privileges than its writer (the
//! control plane runs as root) must never follow a link the writer planted, nor be fooled by an
//! entry swapped under it between a check and a use. Everything here therefore works through
//! file descriptors: every path is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV)` against a descriptor of the tree's root, every type check is an `fstat` of
//! the descriptor actually used, and files are opened non-blocking so a FIFO cannot stall the
//! reader.
//!
//! - [`Tree`]: a directory held open; bounded reads of regular files, listings, disk usage.
//! - [`archive`]: a tree to a tar stream and back (symlinks stay symlinks, special files are
//!   skipped, hard links are kept only between names inside the tree).

pub mod archive;
mod tree;

pub use tree::{Entry, EntryKind, Tree, read_dir};

/// Why an operation on a tree failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed on `path` (relative to the tree's root).
    #[error("{path}: {source}")]
    Io {
        /// The entry concerned.
        path: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A file is larger than the caller allows.
    #[error("{path} is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// Something other than a regular file where one was expected (a FIFO, a device, a
    /// directory, a symlink).
    #[error("{path} is not a regular file")]
    NotRegular {
        /// The entry.
        path: String,
    },
    /// An archive entry that cannot be extracted safely (an absolute path, `..`, a device).
    #[error("the archive is invalid: {0}")]
    InvalidArchive(String),
    /// More entries, or deeper nesting, than the caller allows.
    #[error("the tree exceeds {0}")]
    Limit(String),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: impl Into<std::io::Error>) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source: source.into() }
    }

    /// The OS error number behind the failure, if there is one (`ENOSPC`, `ENOENT`, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// `openat2(2)` of `path` beneath `dir`, retried while the kernel answers `EAGAIN`. With
/// `RESOLVE_BENEATH` it answers so whenever a rename or a mount anywhere on the host races a
/// `..` step of the lookup (it cannot then prove the step stayed beneath `dir`); on a busy host
/// that is one lookup in ten. The retries are bounded, so a host renaming without pause still
/// gets an answer.
pub fn openat2_beneath(
    dir: impl std::os::fd::AsFd,
    path: &std::path::Path,
    flags: rustix::fs::OFlags,
    mode: rustix::fs::Mode,
    resolve: rustix::fs::ResolveFlags,
) -> rustix::io::Result<std::os::fd::OwnedFd> {
    const ATTEMPTS: usize = 256;
    let dir = dir.as_fd();
    let mut result = rustix::fs::openat2(dir, path, flags, mode, resolve);
    for _ in 1..ATTEMPTS {
        if !matches!(result, Err(rustix::io::Errno::AGAIN)) {
            break;
        }
        result = rustix::fs::openat2(dir, path, flags, mode, resolve);
    }
    result
}

/// Most directory levels a walk descends.
pub const MAX_DEPTH: usize = 256;
