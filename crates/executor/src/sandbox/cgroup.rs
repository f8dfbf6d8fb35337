//! What the container's memory cgroup tells: its limit, and how many processes the kernel's
//! out-of-memory killer has ended (so a SIGKILL can be told apart from an OOM kill).

use std::path::{Path, PathBuf};

/// The container's memory cgroup, as seen from inside it.
#[derive(Debug, Clone)]
pub struct MemoryCgroup {
    events: PathBuf,
    limit: PathBuf,
}

impl MemoryCgroup {
    /// Finds the cgroup files under `root` (normally `/sys/fs/cgroup`): cgroup v2's
    /// `memory.events`, or v1's `memory/memory.oom_control`. `None` when neither is readable.
    pub fn detect(root: &Path) -> Option<Self> {
        let v2 = MemoryCgroup { events: root.join("memory.events"), limit: root.join("memory.max") };
        let v1 = MemoryCgroup {
            events: root.join("memory/memory.oom_control"),
            limit: root.join("memory/memory.limit_in_bytes"),
        };
        [v2, v1].into_iter().find(|c| c.oom_kills().is_some())
    }

    /// Processes killed by the OOM killer in this cgroup so far.
    pub fn oom_kills(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.events).ok()?;
        parse_counter(&text, "oom_kill")
    }

    /// The memory limit in MiB, `None` when unlimited or unreadable.
    pub fn limit_mb(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.limit).ok()?;
        let bytes: u64 = text.trim().parse().ok()?;
        // cgroup v1 reports "unlimited" as a huge page-aligned number.
        (bytes < (1 << 60)).then_some(bytes >> 20)
    }
}

fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_layouts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("memory")).unwrap();
        std::fs::write(
            d.path().join("memory/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "536870912\n").unwrap();
        let c = MemoryCgroup::detect(d.path()).unwrap();
        assert_eq!(c.oom_kills(), Some(3));
        assert_eq!(c.limit_mb(), Some(512));

        std::fs::write(d.path().join("memory.events"), "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n").unwrap();
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        let c = MemoryCgroup::detect(d.path()).unwrap();
        assert_eq!(c.oom_kills(), Some(1));
        assert_eq!(c.limit_mb(), None);
        assert!(MemoryCgroup::detect(&d.path().join("nothing")).is_none());
    }
}
