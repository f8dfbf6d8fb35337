//! A session's package directory on the host: the sets of installed packages, the link naming
//! the current one, and the staging area an installer writes into.
//!
//! An installer (pip from an index the session chose, as the sandbox user) writes into a fresh
//! staging filesystem of a bounded size (a sparse ext4 image, loop-mounted like a workspace), so
//! it cannot fill the host's disk while it runs. Once it succeeded, the control plane copies the
//! staged packages into a new set directory that only root can write, reading the staging tree
//! through `sandbox-safefs` (no link the installer planted is followed, FIFOs and devices are
//! skipped, every file is read with exactly the size its descriptor reports), then moves the
//! `current` link. The sandbox mounts the package directory read-only.

use crate::service::disk::{DiskError, WorkspaceDisks};
use sandbox_core::MemoryQuantity;
use sandbox_core::packages;
use sandbox_protocol::DEPS_CURRENT;
use sandbox_safefs::Tree;
use sandbox_safefs::archive::{self, Limits};
use std::path::{Path, PathBuf};

/// Largest `METADATA` file read from an installed package.
const MAX_METADATA_BYTES: u64 = 1 << 20;
/// Room an install gets for pip's downloads and unpacking, besides twice the packages' limit.
const SCRATCH_EXTRA_MB: u64 = 64;

/// Bytes of disk the staging filesystems of one install take at most, when packages may take
/// `max_mb`.
pub fn staging_bytes(max_mb: u64) -> u64 {
    (max_mb + 2 * max_mb + SCRATCH_EXTRA_MB) << 20
}

/// Why the package directory could not be prepared, read or changed.
#[derive(Debug, thiserror::Error)]
pub enum PackageSetError {
    /// A filesystem operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The staging filesystem could not be made or released.
    #[error("{0}")]
    Disk(#[from] DiskError),
    /// Reading the staged packages failed (or found something not allowed).
    #[error("the staged packages: {0}")]
    Tree(#[from] sandbox_safefs::Error),
}

/// Where an installer writes: `target` (the packages, a filesystem of the size limit) and `tmp`
/// (pip's downloads and unpacking, a filesystem of twice that and a little more).
#[derive(Debug, Clone)]
pub struct Staging {
    /// The mounted staging filesystem.
    pub root: PathBuf,
    /// Mounted at the installer's target directory.
    pub target: PathBuf,
    /// Mounted at the installer's `/tmp`.
    pub scratch: PathBuf,
}

/// One session's package directory.
#[derive(Debug, Clone)]
pub struct PackageSets {
    dir: PathBuf,
    disks: WorkspaceDisks,
    owner: u32,
}

impl PackageSets {
    /// The package directory `dir` (`<session dir>/deps`); staging filesystems are made with
    /// `disks` and handed to the installer's user `owner`.
    pub fn new(dir: PathBuf, disks: WorkspaceDisks, owner: u32) -> Self {
        PackageSets { dir, disks, owner }
    }

    /// Makes the empty staging filesystems for set `set`, whose packages may take at most
    /// `max_mb`. Blocking.
    pub fn stage(&self, set: &str, max_mb: u64) -> Result<Staging, PackageSetError> {
        std::fs::create_dir_all(&self.dir)?;
        let root = self.staging_root(set);
        std::fs::create_dir(&root)?;
        let staging = Staging { target: root.join("target"), scratch: root.join("tmp"), root };
        let mib = |n: u64| MemoryQuantity::from_mib(n).map_err(std::io::Error::other);
        let (target_size, scratch_size) = (mib(max_mb)?, mib(2 * max_mb + SCRATCH_EXTRA_MB)?);
        let made = self
            .disks
            .prepare(&staging.target, target_size, self.owner)
            .and_then(|_| self.disks.prepare(&staging.scratch, scratch_size, self.owner));
        if let Err(e) = made {
            let _ = self.release(&staging);
            return Err(e.into());
        }
        for d in [&staging.target, &staging.scratch] {
            std::os::unix::fs::chown(d, Some(self.owner), Some(self.owner))?;
        }
        Ok(staging)
    }

    /// Removes the staging filesystems of an install (whatever its outcome), or what a crash left
    /// of them under `root`. Blocking.
    pub fn release(&self, staging: &Staging) -> Result<(), PackageSetError> {
        self.disks.release(&staging.target)?;
        self.disks.release(&staging.scratch)?;
        match std::fs::remove_dir_all(&staging.root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn staging_root(&self, set: &str) -> PathBuf {
        self.dir.with_file_name(format!("install-{set}"))
    }

    /// Bytes of disk the staged packages use.
    pub fn staged_size(&self, staging: &Staging) -> Result<u64, PackageSetError> {
        Ok(Tree::open(&staging.target)?.disk_usage()?)
    }

    /// Copies the staged packages into a new set `set`, makes it current, removes every other
    /// set but the one current until now (executions running may still import from it), and
    /// returns the name and version of each package in it. Blocking.
    pub fn commit(&self, staging: &Staging, set: &str) -> Result<Vec<(String, String)>, PackageSetError> {
        let keep = self.current();
        let dest = self.dir.join(set);
        std::fs::create_dir(&dest)?;
        let copied = copy_tree(&Tree::open(&staging.target)?, &Tree::open(&dest)?);
        if let Err(e) = copied {
            let _ = std::fs::remove_dir_all(&dest);
            return Err(e);
        }
        let installed = installed_in(&Tree::open(&dest)?)?;
        make_current(&self.dir, set, keep.as_deref())?;
        Ok(installed)
    }

    /// The set the `current` link names now, if any.
    pub fn current(&self) -> Option<String> {
        current_set(&self.dir)
    }
}

/// Copies every entry of `from` into the empty `to` (links as links, nothing followed).
fn copy_tree(from: &Tree, to: &Tree) -> Result<(), PackageSetError> {
    let (read, write) = std::io::pipe()?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || archive::write_tar(from, write, Limits::default()));
        let extracted = archive::extract_tar(read, to, Limits::default());
        let written = writer.join().map_err(|_| std::io::Error::other("the copying thread panicked"))?;
        written?;
        extracted?;
        Ok(())
    })
}

/// The packages in a set: name and version of each `*.dist-info/METADATA`, read without
/// following links and at most [`MAX_METADATA_BYTES`] each.
fn installed_in(set: &Tree) -> Result<Vec<(String, String)>, PackageSetError> {
    let mut found = Vec::new();
    for entry in set.entries(Path::new(""))? {
        let name = entry.name.to_string_lossy();
        if entry.kind != sandbox_safefs::EntryKind::Directory || !name.ends_with(".dist-info") {
            continue;
        }
        let Ok(metadata) = set.read_capped(&Path::new(&entry.name).join("METADATA"), MAX_METADATA_BYTES)
        else {
            continue;
        };
        let metadata = String::from_utf8_lossy(&metadata);
        let header = metadata.split("\n\n").next().unwrap_or_default();
        let field = |key: &str| header.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned());
        if let (Some(n), Some(v)) = (field("Name:"), field("Version:")) {
            found.push((n, v));
        }
    }
    found.sort_by_key(|(n, _)| packages::normalize(n));
    Ok(found)
}

/// Makes `set` (a directory name in `dir`) the current packages, then removes every other set
/// but `keep`.
fn make_current(dir: &Path, set: &str, keep: Option<&str>) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{DEPS_CURRENT}.new"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(set, &tmp)?;
    std::fs::rename(&tmp, dir.join(DEPS_CURRENT))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("set-") && name != set && Some(name.as_str()) != keep {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// The set the link names now, if any.
fn current_set(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir.join(DEPS_CURRENT)).ok()?;
    dir.join(&target).is_dir().then(|| target.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DiskEnforcement;
    use std::os::unix::fs::symlink;

    fn sets(dir: &Path) -> PackageSets {
        PackageSets::new(dir.join("deps"), WorkspaceDisks::new(DiskEnforcement::None), 1000)
    }

    #[test]
    fn a_new_set_becomes_current_by_moving_the_link_and_old_sets_go() {
        let d = tempfile::tempdir().unwrap();
        let p = sets(d.path());
        for set in ["set-1", "set-2", "set-3"] {
            let s = p.stage(set, 16).unwrap();
            let info = s.target.join(format!("pkg{}-1.0.dist-info", &set[4..]));
            std::fs::create_dir(&info).unwrap();
            std::fs::write(
                info.join("METADATA"),
                format!("Metadata-Version: 2.1\nName: Pkg{}\nVersion: 1.0\n\nName: not-this\n", &set[4..]),
            )
            .unwrap();
            assert_eq!(p.commit(&s, set).unwrap(), [(format!("Pkg{}", &set[4..]), "1.0".to_owned())]);
            p.release(&s).unwrap();
            assert!(!s.root.exists());
            assert_eq!(p.current().as_deref(), Some(set));
        }
        let mut left: Vec<String> = std::fs::read_dir(d.path().join("deps"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["set-2", "set-3", DEPS_CURRENT]);
    }

    /// An installer that planted links, FIFOs and huge metadata in its output gets none of it
    /// followed or read by the control plane.
    #[test]
    fn what_an_installer_planted_is_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "Name: leaked\nVersion: SECRET\n").unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = sets(d.path());
        let s = p.stage("set-1", 16).unwrap();
        std::fs::create_dir(s.target.join("evil-1.0.dist-info")).unwrap();
        symlink(outside.path().join("secret"), s.target.join("evil-1.0.dist-info/METADATA")).unwrap();
        symlink(outside.path(), s.target.join("linked-1.0.dist-info")).unwrap();
        std::fs::create_dir(s.target.join("fifo-1.0.dist-info")).unwrap();
        let fifo = std::ffi::CString::new(
            s.target.join("fifo-1.0.dist-info/METADATA").into_os_string().into_encoded_bytes(),
        )
        .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::fs::create_dir(s.target.join("huge-1.0.dist-info")).unwrap();
        let mut big = b"Name: huge\nVersion: 1\n".to_vec();
        big.resize(2 << 20, b'x');
        std::fs::write(s.target.join("huge-1.0.dist-info/METADATA"), big).unwrap();
        let installed = p.commit(&s, "set-1").unwrap();
        assert_eq!(installed, [], "nothing planted was read");
        let set = d.path().join("deps/set-1");
        assert!(
            std::fs::symlink_metadata(set.join("evil-1.0.dist-info/METADATA"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!set.join("fifo-1.0.dist-info/METADATA").exists(), "FIFOs are not copied");
        p.release(&s).unwrap();
    }
}
