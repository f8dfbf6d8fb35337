//! A directory held open, and what can be read from it without following links.

use crate::{Error, MAX_DEPTH};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What an entry of a directory is (as `lstat` sees it: a symlink is a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl EntryKind {
    pub(crate) fn of(st: &Stat) -> Self {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Directory,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

/// One entry of a directory.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name.
    pub name: OsString,
    /// What it is.
    pub kind: EntryKind,
    /// Its size in bytes (as `lstat` reported it).
    pub size: u64,
}

/// A directory held open by descriptor. Paths given to its methods are relative to it and are
/// resolved beneath it without following any symlink and without crossing into another mount;
/// the directory itself may be renamed or replaced meanwhile without changing what it refers to.
#[derive(Debug)]
pub struct Tree {
    fd: OwnedFd,
    dev: u64,
}

/// How every path inside a tree is resolved.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

fn relative(path: &Path) -> &Path {
    if path.as_os_str().is_empty() { Path::new(".") } else { path }
}

impl Tree {
    /// Opens the directory at `path`. The path itself is the caller's (a directory the
    /// untrusted writer cannot replace); a symlink in its last component is refused.
    pub fn open(path: &Path) -> Result<Tree, Error> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(path, e))?;
        Self::from_fd(fd)
    }

    /// A tree rooted at an open directory descriptor.
    pub fn from_fd(fd: OwnedFd) -> Result<Tree, Error> {
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(".", e))?;
        if EntryKind::of(&st) != EntryKind::Directory {
            return Err(Error::io(".", rustix::io::Errno::NOTDIR));
        }
        Ok(Tree { fd, dev: st.st_dev })
    }

    /// The root's descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The device the tree is on; nothing on another device is ever reached through it.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// Opens `path` beneath the root with `flags` (`O_CLOEXEC` and `O_NOFOLLOW` are added).
    pub fn open_at(&self, path: &Path, flags: OFlags) -> Result<OwnedFd, Error> {
        crate::openat2_beneath(
            &self.fd,
            relative(path),
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| Error::io(path, e))
    }

    /// The directory `path` beneath the root, as a tree of its own.
    pub fn subtree(&self, path: &Path) -> Result<Tree, Error> {
        let fd = self.open_at(path, OFlags::PATH | OFlags::DIRECTORY)?;
        Tree::from_fd(fd)
    }

    /// Opens the regular file `path` for reading: never a symlink, a FIFO or a device (the open
    /// does not block on them; the descriptor's own `fstat` decides). Returns it with its size.
    pub fn open_regular(&self, path: &Path) -> Result<(std::fs::File, u64), Error> {
        let fd = self.open_at(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(path, e))?;
        if EntryKind::of(&st) != EntryKind::File {
            return Err(Error::NotRegular { path: path.display().to_string() });
        }
        Ok((std::fs::File::from(fd), st.st_size as u64))
    }

    /// The whole content of the regular file `path`, if it holds at most `cap` bytes.
    pub fn read_capped(&self, path: &Path, cap: u64) -> Result<Vec<u8>, Error> {
        let (file, size) = self.open_regular(path)?;
        let too_large = || Error::TooLarge { path: path.display().to_string(), limit: cap };
        if size > cap {
            return Err(too_large());
        }
        let mut out = Vec::with_capacity(size as usize);
        // The file may grow after the fstat: read one byte past the cap to notice.
        file.take(cap + 1).read_to_end(&mut out).map_err(|e| Error::io(path, e))?;
        if out.len() as u64 > cap {
            return Err(too_large());
        }
        Ok(out)
    }

    /// The entries of the directory `path`, sorted by name, each as `lstat` sees it; entries
    /// that vanish while being listed are left out.
    pub fn entries(&self, path: &Path) -> Result<Vec<Entry>, Error> {
        let fd = self.open_at(path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        read_dir(fd, path).map(|list| {
            list.into_iter()
                .map(|(name, st)| Entry { kind: EntryKind::of(&st), size: st.st_size as u64, name })
                .collect()
        })
    }

    /// Bytes of disk the tree uses (allocated blocks), each inode counted once, without
    /// following symlinks or leaving the tree's filesystem.
    pub fn disk_usage(&self) -> Result<u64, Error> {
        let mut seen = HashSet::new();
        let mut total = 0u64;
        self.walk(|_, st, _| {
            if st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino)) {
                total += st.st_blocks as u64 * 512;
            }
        })?;
        Ok(total)
    }

    /// Gives the root and every entry below it (symlinks themselves, never what they point to)
    /// to `uid`:`gid`.
    pub fn chown_all(&self, uid: u32, gid: u32) -> Result<(), Error> {
        let (uid, gid) = (rustix::process::Uid::from_raw(uid), rustix::process::Gid::from_raw(gid));
        rustix::fs::chownat(&self.fd, "", Some(uid), Some(gid), AtFlags::EMPTY_PATH)
            .map_err(|e| Error::io(".", e))?;
        let mut failed = None;
        self.walk(|path, _, dir| {
            let name = path.file_name().unwrap_or_default();
            if let Err(e) = rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW) {
                failed.get_or_insert(Error::io(path, e));
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Visits every entry below the root, directories before their contents, with its path, its
    /// `lstat` and the descriptor of the directory holding it. Only real directories on the
    /// tree's device are descended into.
    pub(crate) fn walk(&self, mut visit: impl FnMut(&Path, &Stat, BorrowedFd<'_>)) -> Result<(), Error> {
        let root = self.open_at(Path::new("."), OFlags::RDONLY | OFlags::DIRECTORY)?;
        self.walk_dir(root, PathBuf::new(), 0, &mut visit)
    }

    fn walk_dir(
        &self,
        dir: OwnedFd,
        path: PathBuf,
        depth: usize,
        visit: &mut impl FnMut(&Path, &Stat, BorrowedFd<'_>),
    ) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Limit(format!("{MAX_DEPTH} directory levels at {}", path.display())));
        }
        for (name, st) in read_dir(dir.try_clone().map_err(|e| Error::io(&path, e))?, &path)? {
            let child = path.join(&name);
            visit(&child, &st, dir.as_fd());
            if EntryKind::of(&st) == EntryKind::Directory && st.st_dev == self.dev {
                // Swapped for something else since the listing: not descended into.
                if let Some(fd) = open_dir_in(dir.as_fd(), &name, &st) {
                    self.walk_dir(fd, child, depth + 1, visit)?;
                }
            }
        }
        Ok(())
    }
}

/// Opens directory `name` in `parent` if it is still the directory `expected` described.
pub(crate) fn open_dir_in(parent: BorrowedFd<'_>, name: &OsStr, expected: &Stat) -> Option<OwnedFd> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    (st.st_dev == expected.st_dev && st.st_ino == expected.st_ino).then_some(fd)
}

/// The entries of an open directory (not `.` and `..`), sorted by name, each with its `lstat`
/// (`path` names the directory in errors); an entry removed between reading and stat-ing it is
/// simply gone.
pub fn read_dir(fd: OwnedFd, path: &Path) -> Result<Vec<(OsString, Stat)>, Error> {
    let err = |e| Error::io(path, e);
    let mut dir = Dir::new(fd).map_err(err)?;
    let mut names = Vec::new();
    for ent in &mut dir {
        let ent = ent.map_err(err)?;
        match ent.file_name().to_bytes() {
            b"." | b".." => {}
            name => names.push(OsStr::from_bytes(name).to_owned()),
        }
    }
    names.sort();
    let dirfd = dir.fd().map_err(err)?;
    Ok(names
        .into_iter()
        .filter_map(|n| {
            let st = rustix::fs::statat(dirfd, n.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
            Some((n, st))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn secret() -> tempfile::TempDir {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "SECRET").unwrap();
        outside
    }

    /// A rename anywhere on the host during a `..` step makes the kernel answer `EAGAIN`; a
    /// lookup that stays beneath the root must still succeed and one that leaves it must still
    /// be refused as leaving, never fail with a spurious error.
    #[test]
    fn lookups_with_dot_dot_hold_while_the_host_renames() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/ok"), "fine").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamer = {
            let (stop, a) = (stop.clone(), tempfile::tempdir().unwrap());
            std::thread::spawn(move || {
                let (x, y) = (a.path().join("x"), a.path().join("y"));
                std::fs::write(&x, "").unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(&x, &y).unwrap();
                    std::fs::rename(&y, &x).unwrap();
                }
            })
        };
        let t = Tree::open(d.path()).unwrap();
        let mut escapes = Vec::new();
        for _ in 0..20_000 {
            assert_eq!(t.read_capped(Path::new("sub/../sub/ok"), 100).unwrap(), b"fine");
            escapes.push(t.open_at(Path::new("sub/../../x"), OFlags::PATH).unwrap_err().raw_os_error());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renamer.join().unwrap();
        escapes.dedup();
        assert_eq!(escapes, [Some(libc::EXDEV)]);
    }

    #[test]
    fn reads_refuse_links_fifos_and_oversized_files() {
        let outside = secret();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/ok"), "fine").unwrap();
        symlink(outside.path().join("secret"), d.path().join("abs")).unwrap();
        symlink("sub/ok", d.path().join("inside-link")).unwrap();
        symlink(outside.path(), d.path().join("dirlink")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let t = Tree::open(d.path()).unwrap();
        assert_eq!(t.read_capped(Path::new("sub/ok"), 100).unwrap(), b"fine");
        for link in ["abs", "inside-link", "dirlink/secret", "../x", "/etc/passwd"] {
            assert!(matches!(t.read_capped(Path::new(link), 100), Err(Error::Io { .. })), "{link}");
        }
        // Returns at once instead of waiting for a writer.
        assert!(matches!(t.read_capped(Path::new("fifo"), 100), Err(Error::NotRegular { .. })));
        assert!(matches!(t.read_capped(Path::new("sub"), 100), Err(Error::NotRegular { .. })));
        assert!(matches!(t.read_capped(Path::new("sub/ok"), 3), Err(Error::TooLarge { limit: 3, .. })));
        assert!(Tree::open(&d.path().join("dirlink")).is_err(), "the root itself is not followed");
    }

    #[test]
    fn disk_usage_counts_the_tree_only() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1u8; 1 << 20]).unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 64 << 10]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("a2")).unwrap();
        symlink(outside.path(), d.path().join("out")).unwrap();
        symlink(outside.path().join("big"), d.path().join("big")).unwrap();
        let used = Tree::open(d.path()).unwrap().disk_usage().unwrap();
        assert!((64 << 10..(1 << 20)).contains(&used), "{used}");
        let names: Vec<_> = Tree::open(d.path())
            .unwrap()
            .entries(Path::new(""))
            .unwrap()
            .into_iter()
            .map(|e| (e.name.into_string().unwrap(), e.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("a".into(), EntryKind::File),
                ("a2".into(), EntryKind::File),
                ("big".into(), EntryKind::Symlink),
                ("out".into(), EntryKind::Symlink)
            ]
        );
    }

    #[test]
    fn chown_all_gives_away_the_tree_but_not_what_links_point_to() {
        use std::os::unix::fs::MetadataExt;
        let outside = secret();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), "x").unwrap();
        symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        Tree::open(d.path()).unwrap().chown_all(61_000, 61_001).unwrap();
        for p in ["", "sub", "sub/f"] {
            let m = std::fs::metadata(d.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (61_000, 61_001), "{p}");
        }
        assert_eq!(std::fs::symlink_metadata(d.path().join("link")).unwrap().uid(), 61_000);
        assert_eq!(
            std::fs::metadata(outside.path().join("secret")).unwrap().uid(),
            0,
            "the target is untouched"
        );
    }
}
