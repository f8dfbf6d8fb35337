//! Before/after pictures of a workspace, and the change list between them (an execution's
//! `files`: what it created, modified or deleted).

use super::{Workspace, files};
use rustix::fs::Stat;
use sandbox_core::WorkspacePath;
use sandbox_protocol::{FileChange, FileChangeKind, FileKind};
use std::collections::HashMap;

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
}

impl Snapshot {
    /// Takes a picture of `ws`. A workspace that cannot be read gives an empty, truncated one.
    pub fn take(ws: &Workspace, limit: usize) -> Snapshot {
        let mut entries = HashMap::new();
        let record = |p: WorkspacePath, st: &Stat| {
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
        let truncated = files::walk(ws, &WorkspacePath::root(), true, limit, record).unwrap_or(true);
        Snapshot { entries, truncated }
    }

    /// What changed from `self` to `after`, sorted by path, and whether the list may be short.
    pub fn diff(&self, after: &Snapshot) -> (Vec<FileChange>, bool) {
        let mut out = Vec::new();
        for (path, now) in &after.entries {
            let change = match self.entries.get(path) {
                None => FileChangeKind::Created,
                Some(before) if before != now => FileChangeKind::Modified,
                Some(_) => continue,
            };
            out.push(FileChange { path: path.clone(), change, kind: now.kind, size: now.size });
        }
        for (path, before) in &self.entries {
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
        (out, self.truncated || after.truncated)
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
        let (changes, truncated) = before.diff(&after);
        let got: Vec<_> = changes.iter().map(|c| (c.path.as_str(), c.change)).collect();
        assert_eq!(
            got,
            [
                ("change", FileChangeKind::Modified),
                ("gone", FileChangeKind::Deleted),
                ("new/file", FileChangeKind::Created),
            ]
        );
        assert!(!truncated);
        assert!(Snapshot::take(&ws, 1).truncated);
    }
}
