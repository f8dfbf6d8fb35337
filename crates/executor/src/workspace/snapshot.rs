//! Before/after pictures of a workspace, and the change list between them (an execution's
//! `files`: what it created, modified or deleted).

use super::{Workspace, files};
use rustix::fs::Stat;
use sandbox_core::WorkspacePath;
use sandbox_protocol::{FileChange, FileChangeKind, FileKind};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;

/// Most entries looked at per picture; a bigger workspace gets a truncated change list.
pub const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    kind: FileKind,
    size: u64,
    mtime: (i64, i64),
    ino: u64,
}

/// The files (not directories) of a workspace at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    entries: HashMap<WorkspacePath, Meta>,
    truncated: bool,
    skipped: u64,
}

/// What changed between two snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The changes, sorted by path.
    pub files: Vec<FileChange>,
    /// Whether the list may be short (a snapshot stopped at its limit). Deletions are then not
    /// reported: an entry missing from a cut-short picture may simply not have been reached.
    pub truncated: bool,
    /// Entries neither snapshot could name (paths too long).
    pub skipped: u64,
}

impl Snapshot {
    /// Takes a picture of `ws`. A workspace that cannot be read gives an empty, truncated one.
    pub fn take(ws: &Workspace, limit: usize) -> Snapshot {
        let mut entries = HashMap::new();
        let record = |p: WorkspacePath, st: &Stat, _: BorrowedFd<'_>, _: &str| {
            let kind = files::kind_of(st);
            if kind != FileKind::Directory {
                let meta = Meta {
                    kind,
                    size: st.st_size as u64,
                    mtime: (st.st_mtime, st.st_mtime_nsec as i64),
                    ino: st.st_ino,
                };
                entries.insert(p, meta);
            }
        };
        let end = files::walk(ws, &WorkspacePath::root(), usize::MAX, 0, limit, record)
            .unwrap_or(files::WalkEnd { truncated: true, skipped: 0 });
        Snapshot { entries, truncated: end.truncated, skipped: end.skipped }
    }

    /// What changed from `self` to `after`.
    pub fn diff(&self, after: &Snapshot) -> Changes {
        let truncated = self.truncated || after.truncated;
        let mut out = Vec::new();
        for (path, now) in &after.entries {
            let change = match self.entries.get(path) {
                None => FileChangeKind::Created,
                Some(before) if before != now => FileChangeKind::Modified,
                Some(_) => continue,
            };
            out.push(FileChange { path: path.clone(), change, kind: now.kind, size: now.size });
        }
        for (path, before) in self.entries.iter().filter(|_| !truncated) {
            if !after.entries.contains_key(path) {
                out.push(FileChange {
                    path: path.clone(),
                    change: FileChangeKind::Deleted,
                    kind: before.kind,
                    size: 0,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Changes { files: out, truncated, skipped: self.skipped.max(after.skipped) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_created_modified_deleted() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("keep"), "k").unwrap();
        std::fs::write(d.path().join("change"), "1").unwrap();
        std::fs::write(d.path().join("gone"), "g").unwrap();
        let ws = Workspace::open(d.path()).unwrap();
        let before = Snapshot::take(&ws, MAX_ENTRIES);
        std::fs::write(d.path().join("change"), "22").unwrap();
        std::fs::remove_file(d.path().join("gone")).unwrap();
        std::fs::create_dir(d.path().join("new")).unwrap();
        std::fs::write(d.path().join("new/file"), "n").unwrap();
        let after = Snapshot::take(&ws, MAX_ENTRIES);
        let changes = before.diff(&after);
        let got: Vec<_> = changes.files.iter().map(|c| (c.path.as_str(), c.change)).collect();
        assert_eq!(
            got,
            [
                ("change", FileChangeKind::Modified),
                ("gone", FileChangeKind::Deleted),
                ("new/file", FileChangeKind::Created),
            ]
        );
        assert!(!changes.truncated);
        assert!(Snapshot::take(&ws, 1).truncated);
        // A cut-short picture reports no deletions: what it did not reach is not gone.
        assert!(
            before.diff(&Snapshot::take(&ws, 1)).files.iter().all(|c| c.change != FileChangeKind::Deleted)
        );
    }

    /// An entry whose path is too long to name is counted and passed over, and the walk goes on
    /// (it used to stop there, leaving everything after it out of the change list).
    #[test]
    fn a_path_too_long_to_name_is_counted_and_the_rest_still_seen() {
        use rustix::fs::{Mode, OFlags, mkdirat, openat};
        let d = tempfile::tempdir().unwrap();
        // Made one directory at a time, relative to the last: the whole path is longer than
        // any path a system call takes.
        std::fs::create_dir(d.path().join("a")).unwrap();
        let mut dir = rustix::fs::open(d.path().join("a"), OFlags::DIRECTORY, Mode::empty()).unwrap();
        let name = "d".repeat(250);
        for _ in 0..18 {
            mkdirat(&dir, name.as_str(), Mode::RWXU).unwrap();
            dir = openat(&dir, name.as_str(), OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        openat(&dir, "f", OFlags::CREATE | OFlags::WRONLY, Mode::RUSR).unwrap();
        let ws = Workspace::open(d.path()).unwrap();
        let before = Snapshot::take(&ws, MAX_ENTRIES);
        std::fs::write(d.path().join("z.txt"), "z").unwrap();
        let changes = before.diff(&Snapshot::take(&ws, MAX_ENTRIES));
        assert_eq!(changes.files.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), ["z.txt"]);
        assert_eq!(changes.skipped, 1);
        assert!(!changes.truncated);
    }
}
