//! This machine: bare-bwrap and plain-file baselines, memory from `/proc` and cgroups.

use anyhow::{Context, Result, anyhow, ensure};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tokio::process::Command;

/// The unprivileged user (and group) the bwrap baseline runs as: bwrap behaves differently
/// as root.
pub const NOBODY: u32 = 65534;

/// The bwrap baseline's command line (after `setpriv`), as docs/design.md states it.
pub fn bwrap_argv() -> Vec<String> {
    let args = "bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/bin /bin \
                --symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc --dev /dev -- \
                python3 -c";
    let mut v: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    v.push("print(1)".into());
    v
}

/// Times `print(1)` in bare bwrap, as `nobody`, with a minimal environment.
pub async fn bwrap_print_1() -> Result<f64> {
    let mut cmd = Command::new("setpriv");
    cmd.args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into()])
        .args(bwrap_argv())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let t = Instant::now();
    let out = cmd.output().await.context("starting setpriv/bwrap")?;
    let ms = crate::docker::ms_since(t);
    ensure!(
        out.status.success() && out.stdout == b"1\n",
        "bwrap baseline failed ({}): stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(ms)
}

/// Seconds to write `data` to `path` (created or truncated; page cache, no fsync: the upload
/// path does not sync either).
pub fn time_write(path: &Path, data: &[u8]) -> Result<f64> {
    let t = Instant::now();
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds to read `path` whole, checking it holds `expected`.
pub fn time_read(path: &Path, expected: &[u8]) -> Result<f64> {
    let t = Instant::now();
    let got = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let s = t.elapsed().as_secs_f64();
    ensure!(got == expected, "{} does not hold what was written", path.display());
    Ok(s)
}

/// A field of `/proc/<pid>/status` (`VmRSS`, `PPid`, `Name`), its first word.
pub fn status_field(pid: u32, field: &str) -> Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_status_field(&text, field).ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

fn parse_status_field(text: &str, field: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .map(str::to_owned)
}

/// Resident memory of a process, MiB (`VmRSS`).
pub fn rss_mib(pid: u32) -> Result<f64> {
    let kb: f64 = status_field(pid, "VmRSS")?.parse().context("VmRSS")?;
    Ok(kb / 1024.0)
}

/// Used memory of the host, MiB: `MemTotal − MemAvailable`.
pub fn used_memory_mib() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    let kb = |f: &str| -> Result<f64> {
        parse_status_field(&text, f)
            .ok_or_else(|| anyhow!("no {f} in /proc/meminfo"))?
            .parse()
            .context("meminfo")
    };
    Ok((kb("MemTotal")? - kb("MemAvailable")?) / 1024.0)
}

/// `MemTotal`, MiB.
pub fn total_memory_mib() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    let kb: u64 = parse_status_field(&text, "MemTotal").ok_or_else(|| anyhow!("no MemTotal"))?.parse()?;
    Ok(kb / 1024)
}

/// The memory cgroup directory of a Docker container (cgroup v1 with the cgroupfs or systemd
/// driver, or cgroup v2).
pub fn container_cgroup(id: &str) -> Result<PathBuf> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{id}"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/docker/{id}"),
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists())
        .ok_or_else(|| anyhow!("no cgroup found for container {id} (tried {candidates:?})"))
}

/// The pids in a cgroup.
pub fn cgroup_pids(cgroup: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .with_context(|| format!("reading {}/cgroup.procs", cgroup.display()))?;
    text.lines().map(|l| l.trim().parse().with_context(|| format!("pid {l:?}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tsandbox-executo\nPPid:\t4242\nVmRSS:\t    6120 kB\nVmRSSX:\t1 kB\n";
        assert_eq!(parse_status_field(text, "VmRSS").as_deref(), Some("6120"));
        assert_eq!(parse_status_field(text, "PPid").as_deref(), Some("4242"));
        assert_eq!(parse_status_field(text, "Name").as_deref(), Some("sandbox-executo"));
        assert_eq!(parse_status_field(text, "VmSwap"), None);
    }

    #[test]
    fn bwrap_baseline_is_the_documented_command() {
        let argv = bwrap_argv().join(" ");
        assert!(argv.starts_with("bwrap --unshare-all --die-with-parent --ro-bind /usr /usr"), "{argv}");
        assert!(argv.ends_with("--proc /proc --dev /dev -- python3 -c print(1)"), "{argv}");
    }
}
