//! The workspace directory, and every way into it. Each path is resolved with `openat2` and
//! `RESOLVE_BENEATH` against a descriptor of the workspace root, so neither `..` nor a symlink
//! planted by user code can lead outside it, whatever happens to the tree meanwhile.

pub mod archive;
pub mod files;
pub mod snapshot;
pub mod watch;

use crate::error::Error;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use sandbox_core::WorkspacePath;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// A workspace root, held open.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: OwnedFd,
}

impl Workspace {
    /// Opens the workspace at `root`, which must be a directory.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Workspace { root: root.to_owned(), dir })
    }

    /// The workspace's path in the executor's filesystem.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens `path` beneath the root. Symlinks are followed only while they stay inside;
    /// `O_NOFOLLOW` in `flags` keeps a final symlink itself.
    pub fn open_at(&self, path: &WorkspacePath, flags: OFlags, mode: Mode) -> Result<OwnedFd, Error> {
        let target = if path.is_root() { "." } else { path.as_str() };
        sandbox_safefs::openat2_beneath(
            &self.dir,
            std::path::Path::new(target),
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| Error::from_errno(e, path.as_str()))
    }

    /// Opens the directory `path` for reading its entries.
    pub fn open_dir(&self, path: &WorkspacePath) -> Result<OwnedFd, Error> {
        self.open_at(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
    }

    /// The whole workspace as a tree that is walked without following any symlink.
    pub fn tree(&self) -> Result<sandbox_safefs::Tree, Error> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.dir, 0).map_err(|e| Error::from_errno(e, ""))?;
        sandbox_safefs::Tree::from_fd(fd).map_err(archive::error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_protocol::ErrorCode;

    #[test]
    fn symlinks_cannot_lead_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("inside.txt"), "in").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", d.path().join("rel")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("dirlink")).unwrap();
        std::os::unix::fs::symlink("inside.txt", d.path().join("ok")).unwrap();
        let ws = Workspace::open(d.path()).unwrap();
        let p = |s: &str| WorkspacePath::parse(s).unwrap();
        for escape in ["abs", "rel", "dirlink/secret"] {
            let err = ws.open_at(&p(escape), OFlags::RDONLY, Mode::empty()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPath, "{escape}: {err}");
        }
        // A link that stays inside works.
        assert!(ws.open_at(&p("ok"), OFlags::RDONLY, Mode::empty()).is_ok());
        let err = ws.open_at(&p("missing"), OFlags::RDONLY, Mode::empty()).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
    }
}
