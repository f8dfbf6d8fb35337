//! Which replica this process is: the name it holds the lifecycle lease under.
//!
//! Names are files in `<data_dir>/instances/`, each holding the boot id of the kernel it was made
//! under. A process takes the first name whose file it can lock (`flock`, held until the process
//! ends, however it ends) and that was made under the running kernel, or else makes a new one. So
//! a process started again on the same host and data directory is the same replica and renews its
//! own lease at once, while two live processes never hold one name: a lock proves the name's last
//! holder gone only on the kernel that held it, hence the boot id. Names made under another boot
//! are removed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// The directory of names inside the data directory.
const DIR: &str = "instances";

/// The running kernel's boot id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// A replica name, held for as long as the value lives.
#[derive(Debug)]
pub struct Identity {
    name: String,
    _lock: File,
}

impl Identity {
    /// Takes a name in `data_dir` that no live process holds, or makes one.
    pub fn take(data_dir: &Path) -> io::Result<Identity> {
        let boot = fs::read_to_string(BOOT_ID)?;
        Self::take_under(&data_dir.join(DIR), boot.trim())
    }

    /// [`Identity::take`] in the directory `dir`, for a kernel booted as `boot`.
    fn take_under(dir: &Path, boot: &str) -> io::Result<Identity> {
        fs::create_dir_all(dir)?;
        let mut names: Vec<String> = fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            // Gone meanwhile, or held by a live process.
            let Ok(file) = File::open(&path) else { continue };
            if file.try_lock().is_err() {
                continue;
            }
            if fs::read_to_string(&path)? == boot {
                return Ok(Identity { name, _lock: file });
            }
            let _ = fs::remove_file(&path);
        }
        // Made and locked under a hidden name, then moved into place: nobody can take it first.
        let name = Self::one_off();
        let hidden = dir.join(format!(".{name}"));
        let mut file = File::create_new(&hidden)?;
        file.lock()?;
        file.write_all(boot.as_bytes())?;
        fs::rename(&hidden, dir.join(&name))?;
        Ok(Identity { name, _lock: file })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new name, kept nowhere: this process's alone, and never again after it.
    pub fn one_off() -> String {
        format!("{}-{}", hostname(), crate::ids::key_id().trim_start_matches("key_"))
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_by_one_process_and_taken_again_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::take_under(dir.path(), "boot-1").unwrap();
        let b = Identity::take_under(dir.path(), "boot-1").unwrap();
        assert_ne!(a.name(), b.name(), "two live holders never share a name");
        let (a_name, b_name) = (a.name().to_owned(), b.name().to_owned());
        drop(a);
        assert_eq!(
            Identity::take_under(dir.path(), "boot-1").unwrap().name(),
            a_name,
            "a's name is free again"
        );
        drop(b);
        // After a reboot no lock proves anything: old names are dropped, a new one is made.
        let c = Identity::take_under(dir.path(), "boot-2").unwrap();
        assert!(c.name() != a_name && c.name() != b_name);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "only c's name is left");
    }
}
