//! A tree to a tar stream ([`write_tar`]) and a tar stream into a tree ([`extract_tar`]).
//!
//! Writing reads each entry through the descriptor of the directory holding it: a regular file
//! is opened with `O_NOFOLLOW | O_NONBLOCK` and archived only if the opened descriptor is a
//! regular file, with exactly the size its `fstat` gave (a file swapped or changed meanwhile
//! cannot smuggle in anything else); a symlink is archived as a link with its target, never
//! followed; FIFOs, sockets and devices are skipped; a second name of a hard-linked file is
//! archived as a link to the first name, so only content inside the tree is ever read.
//!
//! Extracting accepts only relative paths of normal components, creates every entry with
//! `O_EXCL`/`O_NOFOLLOW` in a parent directory reached without symlinks, drops set-id bits,
//! skips devices and FIFOs, and links hard links only to names already inside the tree.

use crate::tree::{EntryKind, Tree, open_dir_in, read_dir};
use crate::{Error, MAX_DEPTH};
use rustix::fs::{AtFlags, Mode, OFlags, Stat, Timespec, Timestamps};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Bounds on an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries written or extracted.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_entries: 1_000_000 }
    }
}

/// What an archive held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries left out (FIFOs, sockets, devices, entries that changed kind while read).
    pub skipped: u64,
}

impl Summary {
    fn count(&mut self, limits: &Limits) -> Result<(), Error> {
        let n = self.files + self.directories + self.symlinks + self.skipped;
        if n >= limits.max_entries {
            return Err(Error::Limit(format!("{} entries", limits.max_entries)));
        }
        Ok(())
    }
}

fn header(kind: tar::EntryType, st: &Stat, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o777);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(size);
    h
}

/// Writes every entry of `tree` to `out` as a tar stream (paths relative to the tree's root).
pub fn write_tar<W: Write>(tree: &Tree, out: W, limits: Limits) -> Result<Summary, Error> {
    let mut builder = tar::Builder::new(out);
    let mut summary = Summary::default();
    let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let root = tree.open_at(Path::new("."), OFlags::RDONLY | OFlags::DIRECTORY)?;
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root, PathBuf::new())];
    while let Some((dir, path)) = stack.pop() {
        if path.components().count() > MAX_DEPTH {
            return Err(Error::Limit(format!("{MAX_DEPTH} directory levels at {}", path.display())));
        }
        let entries = read_dir(dir.try_clone().map_err(|e| Error::io(&path, e))?, &path)?;
        let mut subdirs = Vec::new();
        for (name, st) in entries {
            summary.count(&limits)?;
            let child = path.join(&name);
            let io = |e: std::io::Error| Error::io(&child, e);
            match EntryKind::of(&st) {
                EntryKind::Directory if st.st_dev == tree.dev() => {
                    match open_dir_in(dir.as_fd(), &name, &st) {
                        Some(fd) => {
                            let mut h = header(tar::EntryType::Directory, &st, 0);
                            builder.append_data(&mut h, &child, std::io::empty()).map_err(io)?;
                            summary.directories += 1;
                            subdirs.push((fd, child));
                        }
                        None => summary.skipped += 1,
                    }
                }
                EntryKind::Symlink => match rustix::fs::readlinkat(dir.as_fd(), name.as_os_str(), Vec::new())
                {
                    Ok(target) => {
                        let mut h = header(tar::EntryType::Symlink, &st, 0);
                        let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                        builder.append_link(&mut h, &child, target).map_err(io)?;
                        summary.symlinks += 1;
                    }
                    // Replaced by something else meanwhile.
                    Err(_) => summary.skipped += 1,
                },
                EntryKind::File => {
                    let Some((file, st)) = open_file_in(dir.as_fd(), &name) else {
                        summary.skipped += 1;
                        continue;
                    };
                    let key = (st.st_dev, st.st_ino);
                    if st.st_nlink > 1
                        && let Some(first) = first_names.get(&key)
                    {
                        let mut h = header(tar::EntryType::Link, &st, 0);
                        builder.append_link(&mut h, &child, first).map_err(io)?;
                        summary.files += 1;
                        continue;
                    }
                    if st.st_nlink > 1 {
                        first_names.insert(key, child.clone());
                    }
                    let size = st.st_size as u64;
                    let mut h = header(tar::EntryType::Regular, &st, size);
                    // Exactly `size` bytes, whatever happens to the file meanwhile: the header
                    // promised that many.
                    let content = file.take(size).chain(std::io::repeat(0)).take(size);
                    builder.append_data(&mut h, &child, content).map_err(io)?;
                    summary.files += 1;
                    summary.bytes += size;
                }
                _ => summary.skipped += 1,
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    builder.finish().map_err(|e| Error::io("", e))?;
    Ok(summary)
}

/// Opens regular file `name` in `dir` for reading, if it still is one.
fn open_file_in(dir: BorrowedFd<'_>, name: &OsStr) -> Option<(std::fs::File, Stat)> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    (EntryKind::of(&st) == EntryKind::File).then(|| (std::fs::File::from(fd), st))
}

/// A path inside the tree: relative, only normal components, not empty.
fn checked(path: &Path) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(Error::InvalidArchive(format!("{} leaves the tree", path.display()))),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::InvalidArchive("an entry without a name".into()));
    }
    if out.components().count() > MAX_DEPTH {
        return Err(Error::Limit(format!("{MAX_DEPTH} directory levels")));
    }
    Ok(out)
}

/// The directory holding `path` (created with its missing parents) and `path`'s last name.
fn parent_of<'p>(tree: &Tree, path: &'p Path) -> Result<(OwnedFd, &'p OsStr), Error> {
    let name = path.file_name().ok_or_else(|| Error::InvalidArchive(format!("{}", path.display())))?;
    let mut dir = tree.open_at(Path::new("."), OFlags::PATH | OFlags::DIRECTORY)?;
    if let Some(parent) = path.parent() {
        for part in parent.components() {
            let part = part.as_os_str();
            match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(Error::io(path, e)),
            }
            dir = rustix::fs::openat(
                &dir,
                part,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io(path, e))?;
        }
    }
    Ok((dir, name))
}

/// Removes whatever non-directory `name` in `dir` is, so a new entry can take its place.
fn clear(dir: BorrowedFd<'_>, name: &OsStr) {
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
}

/// Extracts the tar stream `input` into `tree`, which is normally empty (an existing file of
/// the same name is replaced; an existing directory is kept).
pub fn extract_tar<R: Read>(input: R, tree: &Tree, limits: Limits) -> Result<Summary, Error> {
    let mut archive = tar::Archive::new(input);
    let mut summary = Summary::default();
    let entries = archive.entries().map_err(|e| Error::InvalidArchive(e.to_string()))?;
    for entry in entries {
        summary.count(&limits)?;
        let mut entry = entry.map_err(|e| Error::InvalidArchive(e.to_string()))?;
        let raw = entry.path().map_err(|e| Error::InvalidArchive(e.to_string()))?.into_owned();
        let path = checked(&raw)?;
        let h = entry.header();
        let mode = Mode::from_raw_mode(h.mode().unwrap_or(0o644) & 0o777);
        let mtime = h.mtime().unwrap_or(0) as i64;
        let kind = h.entry_type();
        let (dir, name) = parent_of(tree, &path)?;
        let io = |e: rustix::io::Errno| Error::io(&path, e);
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&dir, name, mode | Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {
                        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
                        if EntryKind::of(&st) != EntryKind::Directory {
                            return Err(Error::InvalidArchive(format!(
                                "{} is a directory and something else",
                                path.display()
                            )));
                        }
                    }
                    Err(e) => return Err(io(e)),
                }
                summary.directories += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(dir.as_fd(), name);
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io)?;
                let mut file = std::fs::File::from(fd);
                let n = std::io::copy(&mut entry, &mut file).map_err(|e| Error::io(&path, e))?;
                rustix::fs::fchmod(&file, mode).map_err(io)?;
                let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
                let _ = rustix::fs::futimens(&file, &Timestamps { last_access: t, last_modification: t });
                summary.files += 1;
                summary.bytes += n;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::InvalidArchive(e.to_string()))?
                    .ok_or_else(|| {
                        Error::InvalidArchive(format!("{}: a link without a target", path.display()))
                    })?
                    .into_owned();
                clear(dir.as_fd(), name);
                rustix::fs::symlinkat(target.as_os_str(), &dir, name).map_err(io)?;
                summary.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target =
                    entry.link_name().map_err(|e| Error::InvalidArchive(e.to_string()))?.ok_or_else(
                        || Error::InvalidArchive(format!("{}: a link without a target", path.display())),
                    )?;
                let target = checked(&target)?;
                let target_dir = match target.parent() {
                    Some(p) => tree.open_at(p, OFlags::PATH | OFlags::DIRECTORY)?,
                    None => tree.open_at(Path::new("."), OFlags::PATH | OFlags::DIRECTORY)?,
                };
                let target_name = target.file_name().unwrap_or_default();
                let st =
                    rustix::fs::statat(&target_dir, target_name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
                if EntryKind::of(&st) != EntryKind::File {
                    return Err(Error::InvalidArchive(format!(
                        "{} links to {}, which is not a regular file",
                        path.display(),
                        target.display()
                    )));
                }
                clear(dir.as_fd(), name);
                rustix::fs::linkat(&target_dir, target_name, &dir, name, AtFlags::empty()).map_err(io)?;
                summary.files += 1;
            }
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink | tar::EntryType::XHeader => {}
            _ => summary.skipped += 1,
        }
    }
    Ok(summary)
}

/// Chunks of a stream being written.
const CHUNK: usize = 256 << 10;

/// Sends what is written, in chunks, to a channel; an error ends the stream with that error.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// [`write_tar`] on the blocking pool, as a stream of chunks. A failure part way ends the stream
/// with an error item, so a reader never mistakes a partial archive for a whole one. Needs a
/// Tokio runtime.
pub fn tar_stream(
    tree: Tree,
    limits: Limits,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        let written =
            write_tar(&tree, &mut out, limits).and_then(|_| out.flush().map_err(|e| Error::io("", e)));
        if let Err(e) = written {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn archive(dir: &Path) -> (Vec<u8>, Summary) {
        let mut out = Vec::new();
        let s = write_tar(&Tree::open(dir).unwrap(), &mut out, Limits::default()).unwrap();
        (out, s)
    }

    fn extract(bytes: &[u8]) -> (tempfile::TempDir, Result<Summary, Error>) {
        let d = tempfile::tempdir().unwrap();
        let r = extract_tar(bytes, &Tree::open(d.path()).unwrap(), Limits::default());
        (d, r)
    }

    #[test]
    fn round_trip_keeps_files_directories_links_and_modes() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "SECRET").unwrap();
        let src = tempfile::tempdir().unwrap();
        let p = src.path();
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join("a/b/c.txt"), "hello").unwrap();
        std::fs::write(p.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p.join("run.sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(p.join("a/b/c.txt"), p.join("hard")).unwrap();
        symlink(outside.path().join("secret"), p.join("abs-link")).unwrap();
        symlink("a/b/c.txt", p.join("rel-link")).unwrap();
        symlink(outside.path(), p.join("dir-link")).unwrap();
        let long = "n".repeat(200);
        std::fs::create_dir_all(p.join(&long).join(&long)).unwrap();
        std::fs::write(p.join(&long).join(&long).join("deep"), "deep").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();

        let (bytes, s) = archive(p);
        assert_eq!((s.files, s.symlinks, s.skipped), (4, 3, 1), "{s:?}");
        assert!(!String::from_utf8_lossy(&bytes).contains("SECRET"));
        let (d, r) = extract(&bytes);
        r.unwrap();
        let q = d.path();
        assert_eq!(std::fs::read_to_string(q.join("a/b/c.txt")).unwrap(), "hello");
        assert_eq!(std::fs::read_to_string(q.join(&long).join(&long).join("deep")).unwrap(), "deep");
        assert_eq!(std::fs::read_link(q.join("abs-link")).unwrap(), outside.path().join("secret"));
        assert_eq!(std::fs::read_link(q.join("rel-link")).unwrap(), Path::new("a/b/c.txt"));
        assert!(std::fs::symlink_metadata(q.join("dir-link")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(q.join("run.sh")).unwrap().mode() & 0o7777, 0o755, "no set-id");
        let (m1, m2) =
            (std::fs::metadata(q.join("hard")).unwrap(), std::fs::metadata(q.join("a/b/c.txt")).unwrap());
        assert_eq!((m1.ino(), m1.nlink()), (m2.ino(), 2), "a hard link stays one file");
        assert!(!q.join("fifo").exists());
    }

    /// The attack on the control plane: while the tree is archived, its writer swaps files and
    /// directories with symlinks to a secret outside, as fast as it can. Nothing from outside
    /// may ever end up in an archive.
    #[test]
    fn a_tree_swapped_under_the_writer_never_yields_what_is_outside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "OUTSIDE-SECRET").unwrap();
        let src = tempfile::tempdir().unwrap();
        let p = src.path().to_owned();
        std::fs::create_dir(p.join("d")).unwrap();
        std::fs::write(p.join("d/inner"), "inner").unwrap();
        std::fs::write(p.join("f"), "innocent").unwrap();
        symlink(outside.path().join("secret"), p.join("l")).unwrap();
        symlink(outside.path(), p.join("ld")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, p) = (stop.clone(), p.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (a, b) in [("f", "l"), ("d", "ld")] {
                        let _ = rustix::fs::renameat_with(
                            rustix::fs::CWD,
                            p.join(a),
                            rustix::fs::CWD,
                            p.join(b),
                            rustix::fs::RenameFlags::EXCHANGE,
                        );
                    }
                    n += 1;
                }
                n
            })
        };
        let mut saw_file = 0;
        for _ in 0..300 {
            let (bytes, _) = archive(&p);
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("OUTSIDE-SECRET"), "a secret from outside was archived");
            saw_file += text.contains("innocent") as u32;
        }
        stop.store(true, Ordering::Relaxed);
        assert!(swapper.join().unwrap() > 300, "the swapper ran");
        assert!(saw_file > 0, "the regular file was archived at least once");
    }

    fn tar_of(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            // Bypass the builder's own path checks: this is a hostile archive.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_archives_cannot_write_outside() {
        let outside = tempfile::tempdir().unwrap();
        let o = outside.path().display().to_string();
        let reg = tar::EntryType::Regular;
        for (what, bytes) in [
            ("parent", tar_of(&[("../escape", reg, None, b"x")])),
            ("absolute", tar_of(&[(&format!("{o}/escape"), reg, None, b"x")])),
            (
                "through a symlink",
                tar_of(&[("link", tar::EntryType::Symlink, Some(&o), b""), ("link/escape", reg, None, b"x")]),
            ),
            ("hard link out", tar_of(&[("h", tar::EntryType::Link, Some("/etc/passwd"), b"")])),
            (
                "hard link through a symlink",
                tar_of(&[
                    ("link", tar::EntryType::Symlink, Some("/etc"), b""),
                    ("h", tar::EntryType::Link, Some("link/passwd"), b""),
                ]),
            ),
        ] {
            let (d, r) = extract(&bytes);
            assert!(r.is_err(), "{what}: {r:?}");
            assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "{what}");
            assert!(!d.path().join("h").exists(), "{what}");
        }
        // Devices are skipped, not made.
        let (d, r) = extract(&tar_of(&[("dev", tar::EntryType::Char, None, b"")]));
        assert_eq!(r.unwrap().skipped, 1);
        assert!(!d.path().join("dev").exists());
        // A file over a planted symlink replaces the link, never writes through it.
        std::fs::write(outside.path().join("target"), "keep").unwrap();
        let d = tempfile::tempdir().unwrap();
        symlink(outside.path().join("target"), d.path().join("f")).unwrap();
        extract_tar(
            &tar_of(&[("f", reg, None, b"new")])[..],
            &Tree::open(d.path()).unwrap(),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(outside.path().join("target")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(d.path().join("f")).unwrap(), "new");
    }

    #[test]
    fn limits_hold() {
        let src = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(src.path().join(i.to_string()), "x").unwrap();
        }
        let small = Limits { max_entries: 5 };
        let r = write_tar(&Tree::open(src.path()).unwrap(), Vec::new(), small);
        assert!(matches!(r, Err(Error::Limit(_))), "{r:?}");
        let (bytes, _) = archive(src.path());
        let d = tempfile::tempdir().unwrap();
        let r = extract_tar(&bytes[..], &Tree::open(d.path()).unwrap(), small);
        assert!(matches!(r, Err(Error::Limit(_))), "{r:?}");
    }

    #[tokio::test]
    async fn the_stream_carries_the_archive_or_ends_in_an_error() {
        use futures_util::StreamExt;
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("big"), vec![7u8; 1 << 20]).unwrap();
        let chunks: Vec<_> = tar_stream(Tree::open(src.path()).unwrap(), Limits::default()).collect().await;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
        let (d, r) = extract(&bytes);
        assert_eq!(r.unwrap().bytes, 1 << 20);
        assert_eq!(std::fs::read(d.path().join("big")).unwrap(), vec![7u8; 1 << 20]);
        let small = Limits { max_entries: 0 };
        let items: Vec<_> = tar_stream(Tree::open(src.path()).unwrap(), small).collect().await;
        assert!(items.last().unwrap().is_err(), "a failed walk ends in an error item");
    }
}
