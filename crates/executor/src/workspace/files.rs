//! Workspace file operations for the files API: stat, list, read, write, mkdir, move, delete.
//! All are blocking; callers run them on the blocking pool.

use super::Workspace;
use crate::error::Error;
use chrono::{DateTime, Utc};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use sandbox_core::WorkspacePath;
use sandbox_protocol::{DirCreated, ErrorCode, FileEntry, FileKind, FileList};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Deepest directory nesting a recursive delete follows.
const MAX_DEPTH: usize = 256;

/// What a `stat` result says the entry is.
pub fn kind_of(st: &Stat) -> FileKind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Directory,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// The names of the sandbox's users (`/etc/passwd`) or groups (`/etc/group`) by id.
fn id_names(file: &str) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((id, name.to_owned()))
        })
        .collect()
}

/// The name of user `uid` (`users`) or group `gid`, read once; the id itself when unnamed.
fn name_of(ids: &'static OnceLock<HashMap<u32, String>>, file: &str, id: u32) -> String {
    ids.get_or_init(|| id_names(file)).get(&id).cloned().unwrap_or_else(|| id.to_string())
}

/// Describes `path` from its `lstat` and, for a symlink, its target (read from `dir`, the
/// directory holding it, by `name`; an empty name reads the link `dir` itself is open on).
fn to_entry(path: WorkspacePath, st: &Stat, dir: BorrowedFd<'_>, name: &str) -> FileEntry {
    static USERS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    static GROUPS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    let kind = kind_of(st);
    let symlink_target = (kind == FileKind::Symlink)
        .then(|| rustix::fs::readlinkat(dir, name, Vec::new()).ok())
        .flatten()
        .map(|t| t.to_string_lossy().into_owned());
    FileEntry {
        path,
        kind,
        size: if kind == FileKind::Directory { 0 } else { st.st_size as u64 },
        modified_at: DateTime::<Utc>::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
            .unwrap_or_default(),
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        owner: name_of(&USERS, "/etc/passwd", st.st_uid),
        group: name_of(&GROUPS, "/etc/group", st.st_gid),
        symlink_target,
    }
}

/// The entries of the directory open at `fd` (`path` names it, for errors): not `.`/`..`,
/// nor names that are not UTF-8 (no API path could name them), sorted, symlinks not followed.
fn read_entries(fd: OwnedFd, path: &WorkspacePath) -> Result<Vec<(String, Stat)>, Error> {
    let entries =
        sandbox_safefs::read_dir(fd, std::path::Path::new(path.as_str())).map_err(super::archive::error)?;
    Ok(entries.into_iter().filter_map(|(name, st)| Some((name.into_string().ok()?, st))).collect())
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkEnd {
    /// It stopped at its limit.
    pub truncated: bool,
    /// Entries passed over because their path is longer than any API path may be (their
    /// contents were not visited either).
    pub skipped: u64,
}

/// Visits the entries below `start` down to `depth` levels (1: its own entries only), after
/// the walk's first `skip` and at most `limit` of them, each with its `lstat`, the directory
/// holding it and its name. Only real directories are descended into, never symlinks. An entry
/// whose path is too long to name is counted and passed over; the walk goes on with the rest.
pub fn walk(
    ws: &Workspace,
    start: &WorkspacePath,
    depth: usize,
    skip: usize,
    limit: usize,
    mut visit: impl FnMut(WorkspacePath, &Stat, BorrowedFd<'_>, &str),
) -> Result<WalkEnd, Error> {
    let limit = skip.saturating_add(limit);
    let mut stack = vec![(start.clone(), 1usize)];
    let mut seen = 0usize;
    let mut end = WalkEnd::default();
    while let Some((dir, level)) = stack.pop() {
        let fd = match ws.open_dir(&dir) {
            Ok(fd) => fd,
            // A subdirectory that vanished or changed while walking is skipped.
            Err(_) if dir != *start => continue,
            Err(e) => return Err(e),
        };
        let held = rustix::io::fcntl_dupfd_cloexec(&fd, 0).map_err(|e| Error::from_errno(e, dir.as_str()))?;
        let mut subdirs = Vec::new();
        for (name, st) in read_entries(fd, &dir)? {
            if seen == limit {
                end.truncated = true;
                return Ok(end);
            }
            seen += 1;
            let Ok(path) = dir.join(&name) else {
                end.skipped += 1;
                continue;
            };
            if level < depth && kind_of(&st) == FileKind::Directory {
                subdirs.push((path.clone(), level + 1));
            }
            if seen > skip {
                visit(path, &st, held.as_fd(), &name);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(end)
}

/// One entry; a final symlink is described (with its target), not followed.
pub fn stat(ws: &Workspace, path: &WorkspacePath) -> Result<FileEntry, Error> {
    let fd = ws.open_at(path, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::from_errno(e, path.as_str()))?;
    Ok(to_entry(path.clone(), &st, fd.as_fd(), ""))
}

/// A page of the entries of a directory down to `depth` levels (1: its own entries): the walk's
/// entries after its first `offset`, at most `limit`, sorted by path. The walk's order is fixed
/// for a tree that does not change, so the pages of a listing hold every entry once.
pub fn list(
    ws: &Workspace,
    path: &WorkspacePath,
    depth: usize,
    offset: usize,
    limit: usize,
) -> Result<FileList, Error> {
    let mut entries = Vec::new();
    let end =
        walk(ws, path, depth, offset, limit, |p, st, dir, name| entries.push(to_entry(p, st, dir, name)))?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(FileList { entries, truncated: end.truncated, offset })
}

/// Opens a regular file for reading; returns it with its size.
///
/// The open never waits: user code may leave a FIFO (whose open would block until a writer
/// comes) or a socket where a file is expected, so the path is opened non-blocking and without
/// following a final symlink, the descriptor itself is inspected, and anything but a regular
/// file is refused with `not_a_regular_file` (a socket already fails to open, with `ENXIO`).
pub fn open_read(ws: &Workspace, path: &WorkspacePath) -> Result<(std::fs::File, u64), Error> {
    let fd = ws.open_at(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW, Mode::empty())?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::from_errno(e, path.as_str()))?;
    match kind_of(&st) {
        FileKind::File => Ok((fd.into(), st.st_size as u64)),
        FileKind::Directory => Err(Error::new(ErrorCode::IsADirectory, format!("{path} is a directory"))),
        _ => Err(Error::new(ErrorCode::NotARegularFile, format!("{path} is not a regular file"))),
    }
}

/// Opens directory `path`, creating it and its missing parents; says whether this call made
/// `path` itself.
fn ensure_dir(ws: &Workspace, path: &WorkspacePath) -> Result<(OwnedFd, bool), Error> {
    let open = || ws.open_at(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty());
    match open() {
        Ok(fd) => Ok((fd, false)),
        Err(e) if e.code == ErrorCode::NotFound => {
            let (parent, name) = path.split_last().ok_or(e)?;
            let (pfd, _) = ensure_dir(ws, &parent)?;
            match rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => Ok((open()?, true)),
                Err(rustix::io::Errno::EXIST) => Ok((open()?, false)),
                Err(e) => Err(Error::from_errno(e, path.as_str())),
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates directory `path` and its parents; an existing directory is fine (`created` is then
/// false), anything else in its place is refused with `not_a_directory`.
pub fn mkdir(ws: &Workspace, path: &WorkspacePath) -> Result<DirCreated, Error> {
    let created = match ensure_dir(ws, path) {
        Ok((_, created)) => created,
        Err(e) if e.code == ErrorCode::NotADirectory => {
            // Say which: the path itself, or one of its parents.
            let what = match stat(ws, path) {
                Ok(found) => format!("{path} exists and is a {}, not a directory", found.kind.as_str()),
                Err(_) => e.message,
            };
            return Err(Error::new(ErrorCode::NotADirectory, what));
        }
        Err(e) => return Err(e),
    };
    Ok(DirCreated { entry: stat(ws, path)?, created })
}

/// Renames `source` to `destination` (see [`MoveRequest`](sandbox_protocol::MoveRequest)):
/// neither last component is followed, the destination's parents are made, and a directory is
/// neither replaced nor replaces anything. Returns the moved entry.
pub fn rename(
    ws: &Workspace,
    source: &WorkspacePath,
    destination: &WorkspacePath,
) -> Result<FileEntry, Error> {
    let root = || Error::from(sandbox_core::PathError::Root);
    let (sparent, sname) = source.split_last().ok_or_else(root)?;
    let (dparent, dname) = destination.split_last().ok_or_else(root)?;
    let spfd = ws.open_at(&sparent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    let src = rustix::fs::statat(&spfd, sname, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::from_errno(e, source.as_str()))?;
    if kind_of(&src) == FileKind::Directory
        && destination.as_str().strip_prefix(source.as_str()).is_some_and(|rest| rest.starts_with('/'))
    {
        return Err(Error::new(
            ErrorCode::InvalidPath,
            format!("cannot move directory {source} into itself ({destination})"),
        ));
    }
    let (dpfd, _) = ensure_dir(ws, &dparent)?;
    match rustix::fs::statat(&dpfd, dname, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(dst) if (src.st_dev, src.st_ino) == (dst.st_dev, dst.st_ino) => {}
        Ok(dst) if kind_of(&dst) == FileKind::Directory || kind_of(&src) == FileKind::Directory => {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "{destination} exists and is not replaced by a move (a directory is never replaced, nor replaces anything)"
                ),
            ));
        }
        Ok(_) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(Error::from_errno(e, destination.as_str())),
    }
    rustix::fs::renameat(&spfd, sname, &dpfd, dname).map_err(|e| match e {
        // The kernel's own refusals, had the destination changed since it was checked.
        rustix::io::Errno::ISDIR | rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST => Error::new(
            ErrorCode::AlreadyExists,
            format!("{destination} is a directory, not replaced by a move"),
        ),
        rustix::io::Errno::INVAL => {
            Error::new(ErrorCode::InvalidPath, format!("cannot move {source} into itself ({destination})"))
        }
        e => Error::from_errno(e, destination.as_str()),
    })?;
    let st = rustix::fs::statat(&dpfd, dname, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::from_errno(e, destination.as_str()))?;
    Ok(to_entry(destination.clone(), &st, dpfd.as_fd(), dname))
}

/// An upload in progress: bytes go to a hidden temporary file beside the target, which
/// replaces the target in one rename on [`commit`](Self::commit) and is removed otherwise.
#[derive(Debug)]
pub struct PendingWrite {
    parent: OwnedFd,
    temp: String,
    name: String,
    path: WorkspacePath,
    file: Option<std::fs::File>,
}

/// Starts writing `path`, creating its parent directories.
pub fn begin_write(ws: &Workspace, path: &WorkspacePath) -> Result<PendingWrite, Error> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let (parent, name) = path.split_last().ok_or_else(|| Error::from(sandbox_core::PathError::Root))?;
    let (pfd, _) = ensure_dir(ws, &parent)?;
    let temp = format!(".{name}.{}-{}.part", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let temp =
        if temp.len() > 255 { format!(".upload.{}.part", SEQ.fetch_add(1, Ordering::Relaxed)) } else { temp };
    let fd = rustix::fs::openat(
        &pfd,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| Error::from_errno(e, path.as_str()))?;
    Ok(PendingWrite { parent: pfd, temp, name: name.to_owned(), path: path.clone(), file: Some(fd.into()) })
}

impl PendingWrite {
    /// The temporary file to write to.
    pub fn take_file(&mut self) -> Option<std::fs::File> {
        self.file.take()
    }

    /// Moves the written file into place and describes it.
    pub fn commit(mut self, ws: &Workspace) -> Result<FileEntry, Error> {
        self.file = None;
        rustix::fs::renameat(&self.parent, self.temp.as_str(), &self.parent, self.name.as_str())
            .map_err(|e| Error::from_errno(e, self.path.as_str()))?;
        self.temp.clear();
        stat(ws, &self.path)
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if !self.temp.is_empty() {
            let _ = rustix::fs::unlinkat(&self.parent, self.temp.as_str(), AtFlags::empty());
        }
    }
}

/// Removes a file, symlink or (empty, or any when `recursive`) directory.
pub fn delete(ws: &Workspace, path: &WorkspacePath, recursive: bool) -> Result<(), Error> {
    let (parent, name) = path.split_last().ok_or_else(|| Error::from(sandbox_core::PathError::Root))?;
    let pfd = ws.open_at(&parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    let err = |e| Error::from_errno(e, path.as_str());
    let st = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(err)?;
    if kind_of(&st) != FileKind::Directory {
        return rustix::fs::unlinkat(&pfd, name, AtFlags::empty()).map_err(err);
    }
    if recursive {
        remove_tree(pfd.as_fd(), name, 0).map_err(err)
    } else {
        rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR).map_err(err)
    }
}

/// Removes directory `name` under `parent` and everything in it, descriptor by descriptor,
/// never following a symlink.
fn remove_tree(parent: BorrowedFd<'_>, name: &str, depth: usize) -> Result<(), rustix::io::Errno> {
    if depth > MAX_DEPTH {
        return Err(rustix::io::Errno::LOOP);
    }
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut dir = Dir::new(fd)?;
    let mut children = Vec::new();
    for ent in &mut dir {
        let ent = ent?;
        let n = ent.file_name().to_owned();
        if n.as_bytes() != b"." && n.as_bytes() != b".." {
            children.push(n);
        }
    }
    let dirfd = dir.fd()?;
    for child in children {
        let st = rustix::fs::statat(dirfd, child.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let child = child.to_str().map_err(|_| rustix::io::Errno::ILSEQ)?;
            remove_tree(dirfd, child, depth + 1)?;
        } else {
            rustix::fs::unlinkat(dirfd, child.as_c_str(), AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn p(s: &str) -> WorkspacePath {
        WorkspacePath::parse(s).unwrap()
    }

    fn setup() -> (tempfile::TempDir, Workspace) {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::open(d.path()).unwrap();
        (d, ws)
    }

    fn write(ws: &Workspace, path: &str, data: &[u8]) -> FileEntry {
        let mut w = begin_write(ws, &p(path)).unwrap();
        w.take_file().unwrap().write_all(data).unwrap();
        w.commit(ws).unwrap()
    }

    #[test]
    fn write_read_list_delete() {
        let (d, ws) = setup();
        let e = write(&ws, "a/b/c.txt", b"hello");
        assert_eq!((e.kind, e.size), (FileKind::File, 5));
        let (mut f, size) = open_read(&ws, &p("a/b/c.txt")).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!((s.as_str(), size), ("hello", 5));
        // Overwrite replaces atomically; no temporary files are left behind.
        write(&ws, "a/b/c.txt", b"bye");
        let all = list(&ws, &WorkspacePath::root(), usize::MAX, 0, 100).unwrap();
        let paths: Vec<_> = all.entries.iter().map(|e| e.path.as_str().to_owned()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c.txt"]);
        assert!(!all.truncated);
        let top = list(&ws, &WorkspacePath::root(), 1, 0, 100).unwrap();
        assert_eq!(top.entries.len(), 1);
        assert!(list(&ws, &WorkspacePath::root(), usize::MAX, 0, 2).unwrap().truncated);
        // The next page holds the rest, after the walk's first two.
        let rest = list(&ws, &WorkspacePath::root(), usize::MAX, 2, 2).unwrap();
        assert_eq!((rest.entries.len(), rest.truncated, rest.offset), (1, false, 2));
        assert_eq!(list(&ws, &WorkspacePath::root(), 2, 0, 100).unwrap().entries.len(), 2);

        let err = delete(&ws, &p("a"), false).unwrap_err();
        assert_eq!(err.code, ErrorCode::DirectoryNotEmpty);
        delete(&ws, &p("a"), true).unwrap();
        assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
        assert_eq!(delete(&ws, &p("a"), true).unwrap_err().code, ErrorCode::NotFound);
    }

    #[test]
    fn rename_semantics() {
        let outside = tempfile::tempdir().unwrap();
        let (d, ws) = setup();
        write(&ws, "a.txt", b"a");
        write(&ws, "b.txt", b"bb");
        mkdir(&ws, &p("dir/sub")).unwrap();
        mkdir(&ws, &p("empty")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        // Parents are made; a file replaces a file.
        assert_eq!(rename(&ws, &p("a.txt"), &p("x/y/a.txt")).unwrap().size, 1);
        assert_eq!(rename(&ws, &p("b.txt"), &p("x/y/a.txt")).unwrap().size, 2);
        // Directories are never replaced and replace nothing.
        assert_eq!(rename(&ws, &p("x/y/a.txt"), &p("empty")).unwrap_err().code, ErrorCode::AlreadyExists);
        write(&ws, "c.txt", b"c");
        assert_eq!(rename(&ws, &p("dir"), &p("c.txt")).unwrap_err().code, ErrorCode::AlreadyExists);
        assert_eq!(rename(&ws, &p("dir"), &p("empty")).unwrap_err().code, ErrorCode::AlreadyExists);
        assert_eq!(rename(&ws, &p("dir"), &p("dir/sub/in")).unwrap_err().code, ErrorCode::InvalidPath);
        // Same path: nothing happens.
        assert_eq!(rename(&ws, &p("c.txt"), &p("c.txt")).unwrap().size, 1);
        // Never through a link out of the workspace, at either end; the link itself moves.
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        assert_eq!(rename(&ws, &p("out/secret"), &p("s")).unwrap_err().code, ErrorCode::InvalidPath);
        assert_eq!(rename(&ws, &p("c.txt"), &p("out/c.txt")).unwrap_err().code, ErrorCode::InvalidPath);
        assert!(!outside.path().join("c.txt").exists());
        let link = rename(&ws, &p("out"), &p("links/out")).unwrap();
        assert_eq!(link.kind, FileKind::Symlink);
        assert!(outside.path().join("secret").exists());
        assert_eq!(rename(&ws, &p("missing"), &p("m")).unwrap_err().code, ErrorCode::NotFound);
    }

    #[test]
    fn failed_upload_leaves_nothing() {
        let (d, ws) = setup();
        {
            let mut w = begin_write(&ws, &p("x.bin")).unwrap();
            w.take_file().unwrap().write_all(b"partial").unwrap();
        }
        assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
    }

    #[test]
    fn kinds_and_conflicts() {
        let (d, ws) = setup();
        mkdir(&ws, &p("dir/sub")).unwrap();
        let again = mkdir(&ws, &p("dir")).unwrap();
        assert_eq!((again.entry.kind, again.created), (FileKind::Directory, false));
        assert!(mkdir(&ws, &p("dir/other")).unwrap().created);
        write(&ws, "f", b"x");
        assert_eq!(mkdir(&ws, &p("f/g")).unwrap_err().code, ErrorCode::NotADirectory);
        let in_the_way = mkdir(&ws, &p("f")).unwrap_err();
        assert_eq!(in_the_way.code, ErrorCode::NotADirectory);
        assert!(in_the_way.message.contains("f exists and is a file"), "{in_the_way}");
        assert_eq!(open_read(&ws, &p("dir")).unwrap_err().code, ErrorCode::IsADirectory);
        let mut w = begin_write(&ws, &p("dir")).unwrap();
        w.take_file();
        assert_eq!(w.commit(&ws).unwrap_err().code, ErrorCode::IsADirectory);
        std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
        assert_eq!(stat(&ws, &p("etc")).unwrap().kind, FileKind::Symlink);
        assert_eq!(stat(&ws, &p("etc")).unwrap().symlink_target.as_deref(), Some("/etc"));
        assert_eq!(list(&ws, &p("etc"), 1, 0, 10).unwrap_err().code, ErrorCode::InvalidPath);
        // Deleting a symlink removes the link, never what it points to.
        delete(&ws, &p("etc"), true).unwrap();
        assert!(std::path::Path::new("/etc/passwd").exists());
    }

    /// User code can leave a FIFO (whose plain open waits for a writer forever) or a socket
    /// where the files API expects a file; reading either must fail at once.
    #[test]
    fn fifos_and_sockets_are_refused_without_blocking() {
        let (d, ws) = setup();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
        std::os::unix::fs::symlink("fifo", d.path().join("link")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for name in ["fifo", "sock", "link"] {
                let code = open_read(&ws, &p(name)).map(|_| ()).unwrap_err().code;
                tx.send((name, code)).unwrap();
            }
        });
        let want = [
            ("fifo", ErrorCode::NotARegularFile),
            ("sock", ErrorCode::NotARegularFile),
            // A final symlink is not followed, not even to a target inside.
            ("link", ErrorCode::InvalidPath),
        ];
        for w in want {
            let got = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("open_read returns at once");
            assert_eq!(got, w);
        }
    }

    #[test]
    fn recursive_delete_does_not_follow_links() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "k").unwrap();
        let (d, ws) = setup();
        std::fs::create_dir_all(d.path().join("t/u")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("t/u/out")).unwrap();
        delete(&ws, &p("t"), true).unwrap();
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn writes_cannot_escape_through_a_planted_directory_link() {
        let outside = tempfile::tempdir().unwrap();
        let (d, ws) = setup();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        let err = begin_write(&ws, &p("out/pwned")).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPath);
        assert!(!outside.path().join("pwned").exists());
    }
}
