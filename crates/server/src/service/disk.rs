//! Size-limited workspaces on one host: each session's workspace is a sparse ext4 image of the
//! session's `disk` size, loop-mounted at `sessions/<id>/workspace`. A program that fills its
//! workspace gets `ENOSPC` at the limit, and neither the host nor other sessions lose space.
//! The image is made once and survives restarts of the sandbox and the control plane; it is
//! removed with the session. Mounting needs root (the server's user when it manages Docker).

use crate::settings::DiskEnforcement;
use sandbox_core::MemoryQuantity;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a workspace could not be prepared or released.
#[derive(Debug, thiserror::Error)]
#[error("workspace disk {path}: {message}")]
pub struct DiskError {
    path: PathBuf,
    message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> DiskError {
    DiskError { path: path.to_owned(), message: message.to_string() }
}

/// Prepares and releases workspaces according to the configured enforcement.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceDisks {
    enforcement: DiskEnforcement,
}

fn image_of(workspace: &Path) -> PathBuf {
    workspace.with_extension("img")
}

/// Whether `dir` is a mount point (another device than its parent).
fn is_mounted(dir: &Path) -> bool {
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

fn run(cmd: &mut Command, what: &Path) -> Result<(), DiskError> {
    let out = cmd.output().map_err(|e| err(what, format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(err(what, format!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr).trim())))
}

impl WorkspaceDisks {
    /// Disks enforced as configured.
    pub fn new(enforcement: DiskEnforcement) -> Self {
        WorkspaceDisks { enforcement }
    }

    /// Makes sure `workspace` exists and, with enforcement, is a mounted filesystem of `size`
    /// whose root belongs to `owner` (uid and gid). Blocking (runs `mkfs.ext4` and `mount` the
    /// first time).
    pub fn prepare(&self, workspace: &Path, size: MemoryQuantity, owner: u32) -> Result<(), DiskError> {
        std::fs::create_dir_all(workspace).map_err(|e| err(workspace, e))?;
        if self.enforcement == DiskEnforcement::None || is_mounted(workspace) {
            return Ok(());
        }
        let image = image_of(workspace);
        if !image.exists() {
            let file = std::fs::File::create(&image).map_err(|e| err(&image, e))?;
            file.set_len(size.bytes()).map_err(|e| err(&image, e))?;
            drop(file);
            let made = run(
                Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
                    .arg(&image),
                &image,
            );
            if let Err(e) = made {
                let _ = std::fs::remove_file(&image);
                return Err(e);
            }
        }
        run(Command::new("mount").args(["-o", "loop,nosuid,nodev"]).arg(&image).arg(workspace), workspace)?;
        std::os::unix::fs::chown(workspace, Some(owner), Some(owner)).map_err(|e| err(workspace, e))?;
        // mkfs leaves lost+found, which is not the user's; fsck recreates it when needed.
        let _ = std::fs::remove_dir(workspace.join("lost+found"));
        Ok(())
    }

    /// Unmounts the workspace and removes its image (the session is being deleted).
    pub fn release(&self, workspace: &Path) -> Result<(), DiskError> {
        if is_mounted(workspace) {
            run(Command::new("umount").arg(workspace), workspace)?;
        }
        match std::fs::remove_file(image_of(workspace)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(workspace, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_enforcement_a_plain_directory() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("s/workspace");
        let disks = WorkspaceDisks::new(DiskEnforcement::None);
        disks.prepare(&ws, "1Gi".parse().unwrap(), 61_000).unwrap();
        assert!(ws.is_dir() && !is_mounted(&ws) && !image_of(&ws).exists());
        disks.release(&ws).unwrap();
    }

    /// Needs root (tests run as root in CI): a real loop mount that fills up at its size.
    #[test]
    fn loop_mounted_workspace_fills_up_at_its_limit() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("s/workspace");
        let disks = WorkspaceDisks::new(DiskEnforcement::Loop);
        disks.prepare(&ws, "16Mi".parse().unwrap(), 61_000).unwrap();
        assert!(is_mounted(&ws));
        assert_eq!(std::fs::metadata(&ws).unwrap().uid(), 61_000);
        assert!(std::fs::read_dir(&ws).unwrap().next().is_none(), "empty, no lost+found");
        // Preparing again (a restarted sandbox) keeps what is there.
        std::fs::write(ws.join("kept"), "k").unwrap();
        disks.prepare(&ws, "16Mi".parse().unwrap(), 61_000).unwrap();
        assert!(ws.join("kept").exists());
        let chunk = vec![0u8; 1 << 20];
        let mut f = std::fs::File::create(ws.join("fill")).unwrap();
        let mut written = 0;
        let full = loop {
            match std::io::Write::write_all(&mut f, &chunk) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 64, "wrote {written} MiB into a 16 MiB workspace");
        };
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
        drop(f);
        disks.release(&ws).unwrap();
        assert!(!is_mounted(&ws) && !image_of(&ws).exists());
    }
}
