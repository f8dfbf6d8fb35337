//! The whole workspace as a tar archive, out and in: how a session's files move to a new
//! sandbox (resuming a workspace) without the control plane reading them on the host. Both ends
//! run here, as the sandbox user, through `sandbox-safefs`: no symlink is ever followed and
//! nothing outside the workspace is reached.

use super::Workspace;
use crate::error::Error;
use sandbox_protocol::{ArchiveSummary, ErrorCode};
use sandbox_safefs::archive::{self, Limits, Summary};

/// Most entries an archive of a workspace holds, either way.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// The limits used both ways.
pub fn limits() -> Limits {
    Limits { max_entries: MAX_ENTRIES }
}

/// The executor's error for a failed walk or extraction.
pub fn error(e: sandbox_safefs::Error) -> Error {
    match e {
        sandbox_safefs::Error::Io { path, source } => match source.raw_os_error() {
            Some(n) => Error::from_errno(rustix::io::Errno::from_raw_os_error(n), &path),
            None => Error::internal(format!("{path}: {source}")),
        },
        sandbox_safefs::Error::InvalidArchive(why) => Error::bad_request(format!("invalid archive: {why}")),
        sandbox_safefs::Error::Limit(what) => {
            Error::new(ErrorCode::TooLarge, format!("the archive exceeds {what}"))
        }
        other => Error::bad_request(other.to_string()),
    }
}

fn summary(s: Summary) -> ArchiveSummary {
    ArchiveSummary {
        files: s.files,
        directories: s.directories,
        symlinks: s.symlinks,
        bytes: s.bytes,
        skipped: s.skipped,
    }
}

/// Extracts a tar archive read from `input` into the workspace. Blocking.
pub fn extract(ws: &Workspace, input: impl std::io::Read) -> Result<ArchiveSummary, Error> {
    let tree = ws.tree()?;
    archive::extract_tar(input, &tree, limits()).map(summary).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_moves_whole_and_links_stay_links() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir(a.path().join("dir")).unwrap();
        std::fs::write(a.path().join("dir/f.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", a.path().join("link")).unwrap();
        let mut tar = Vec::new();
        let from = Workspace::open(a.path()).unwrap();
        archive::write_tar(&from.tree().unwrap(), &mut tar, limits()).unwrap();
        let to = Workspace::open(b.path()).unwrap();
        let s = extract(&to, &tar[..]).unwrap();
        assert_eq!((s.files, s.directories, s.symlinks), (1, 1, 1));
        assert_eq!(std::fs::read_to_string(b.path().join("dir/f.txt")).unwrap(), "hello");
        assert!(std::fs::symlink_metadata(b.path().join("link")).unwrap().file_type().is_symlink());
        let err = extract(&to, &b"not a tar archive at all, clearly"[..]).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{err}");
    }
}
