//! Builds bwrap's argument vector from typed options, so the exact sandbox is testable without
//! running anything.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

/// How one top-level system path appears inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMount {
    /// Bind `src` read-only at `dest`.
    ReadOnly {
        /// The path in the executor's filesystem.
        src: PathBuf,
        /// Where it appears inside the sandbox.
        dest: PathBuf,
    },
    /// Recreate a symlink (merged-`/usr` systems link `/bin` to `usr/bin`).
    Symlink {
        /// Where the link points.
        target: PathBuf,
        /// The link itself.
        link: PathBuf,
    },
}

/// The top-level paths considered for the sandbox's read-only system view. Anything else of the
/// container (`/run`, `/home`, `/var`, `/root`, `/opt`, the executor's socket) stays invisible.
pub const SYSTEM_PATHS: &[&str] = &["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Inspects [`SYSTEM_PATHS`] under `root` and describes how each present one is recreated.
pub fn discover_system_mounts(root: &Path) -> std::io::Result<Vec<SystemMount>> {
    let mut out = Vec::new();
    for p in SYSTEM_PATHS {
        let host = root.join(p.trim_start_matches('/'));
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            out.push(SystemMount::Symlink { target: std::fs::read_link(&host)?, link: p.into() });
        } else if meta.is_dir() {
            out.push(SystemMount::ReadOnly { src: host, dest: p.into() });
        }
    }
    Ok(out)
}

/// What the private `/proc` hides, as Docker's default `MaskedPaths` does (and, since the
/// container itself runs with unmasked paths so that bwrap can mount a fresh `/proc`, nothing
/// else hides): files that reveal kernel memory, keys, timers, interrupts and scheduler state,
/// the magic SysRq trigger, and hardware directories.
pub const MASKED_PROC_PATHS: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/interrupts",
    "/proc/sysrq-trigger",
    "/proc/acpi",
    "/proc/asound",
    "/proc/scsi",
];

/// How one path of the private `/proc` is hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcMask {
    /// A file: `/dev/null` is bound over it read-only (and without device access, so opening it
    /// fails).
    File(PathBuf),
    /// A directory: an empty read-only tmpfs covers it.
    Dir(PathBuf),
}

/// Inspects [`MASKED_PROC_PATHS`] in `proc` (the executor's own `/proc`, which shows the same
/// kernel's entries as the sandbox's fresh one) and describes how each present one is hidden;
/// bwrap cannot cover a path the kernel does not have.
pub fn discover_proc_masks(proc: &Path) -> std::io::Result<Vec<ProcMask>> {
    let mut out = Vec::new();
    for p in MASKED_PROC_PATHS {
        let entry = proc.join(p.trim_start_matches("/proc/"));
        match std::fs::symlink_metadata(&entry) {
            Ok(m) if m.is_dir() => out.push(ProcMask::Dir(p.into())),
            Ok(_) => out.push(ProcMask::File(p.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Everything that shapes one sandbox.
#[derive(Debug, Clone)]
pub struct BwrapOptions {
    /// The bwrap binary.
    pub bwrap: PathBuf,
    /// System directories and links.
    pub system: Vec<SystemMount>,
    /// The workspace directory, mounted read-write at `/workspace`.
    pub workspace: PathBuf,
    /// Installed packages, mounted read-only at [`DEPS_MOUNT`].
    pub deps: Option<PathBuf>,
    /// The container's egress directory (holding the proxy's socket), mounted read-only at
    /// [`EGRESS_MOUNT`] while the sandbox may reach the proxy.
    pub egress: Option<PathBuf>,
    /// Size of the private `/tmp` and `/dev/shm`, in bytes.
    pub tmp_size_bytes: u64,
    /// What the private `/proc` hides.
    pub proc_masks: Vec<ProcMask>,
    /// The environment the sandbox's first program starts with (never the session's own
    /// variables, which reach only the user's program, through a data file).
    pub env: Vec<(String, String)>,
    /// Descriptor holding the compiled seccomp program.
    pub seccomp_fd: RawFd,
    /// Descriptor bwrap writes `{"child-pid": N, ...}` to: the pid, outside, of the sandbox's
    /// first process (its supervisor).
    pub info_fd: RawFd,
    /// A directory of the executor's, bound read-only at [`SANDBOX_DIR`](crate::lang::SANDBOX_DIR):
    /// the runner, the code and its inputs, written there by the executor alone.
    pub sandbox_dir: PathBuf,
    /// The supervisor's executable, bound read-only at [`SUPERVISOR_PATH`] (over an empty file
    /// of `sandbox_dir`).
    pub supervisor: PathBuf,
    /// The directory the command starts in (inside the sandbox: the workspace or below it).
    pub chdir: String,
    /// The command to run, first element the program.
    pub command: Vec<OsString>,
}

/// Where the supervisor (the executor's own executable) appears inside the sandbox.
pub const SUPERVISOR_PATH: &str = "/sandbox/supervisor";

/// Where installed packages appear inside the sandbox.
pub const DEPS_MOUNT: &str = sandbox_protocol::DEPS_DIR;

/// Where the egress directory appears inside the sandbox: where the container has it.
pub const EGRESS_MOUNT: &str = sandbox_protocol::contract::EGRESS_DIR;

impl BwrapOptions {
    /// The program and arguments to spawn.
    pub fn to_command_line(&self) -> (PathBuf, Vec<OsString>) {
        let mut a = ArgList::default();
        // Namespaces: everything but the network gets a fresh instance; the network namespace is
        // new and empty too (only a loopback interface), so nothing is reachable.
        a.flags(&[
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--unshare-cgroup",
            // Code inside cannot make user namespaces of its own (the seccomp filter also
            // refuses the calls; this closes it at the kernel's counter too).
            "--disable-userns",
            // The command (the supervisor) is the PID namespace's init, which nothing inside can
            // signal; bwrap waits for it, so nothing is left for the executor to collect.
            "--as-pid-1",
        ]);
        for m in &self.system {
            match m {
                SystemMount::ReadOnly { src, dest } => a.pair("--ro-bind", src, dest),
                SystemMount::Symlink { target, link } => a.pair("--symlink", target, link),
            }
        }
        a.one("--proc", "/proc");
        for m in &self.proc_masks {
            match m {
                ProcMask::File(p) => a.pair("--ro-bind", "/dev/null", p),
                ProcMask::Dir(p) => {
                    a.one("--tmpfs", p);
                    a.one("--remount-ro", p);
                }
            }
        }
        a.one("--dev", "/dev");
        let size = self.tmp_size_bytes.to_string();
        a.one("--size", &size);
        a.one("--tmpfs", "/dev/shm");
        a.one("--size", &size);
        a.one("--tmpfs", "/tmp");
        a.pair("--bind", &self.workspace, sandbox_protocol::WORKSPACE_DIR);
        if let Some(deps) = &self.deps {
            a.pair("--ro-bind", deps, DEPS_MOUNT);
        }
        // The directory, not the socket: a socket the control plane makes anew (its restart)
        // is still the one the relay reaches.
        if let Some(egress) = &self.egress {
            a.pair("--ro-bind", egress, EGRESS_MOUNT);
        }
        a.pair("--ro-bind", &self.sandbox_dir, crate::lang::SANDBOX_DIR);
        a.pair("--ro-bind", &self.supervisor, SUPERVISOR_PATH);
        // The root itself (a tmpfs bwrap made) becomes read-only once everything is in place.
        a.one("--remount-ro", "/");
        a.one("--chdir", &self.chdir);
        a.flags(&["--die-with-parent", "--new-session"]);
        a.one("--cap-drop", "ALL");
        a.flags(&["--clearenv"]);
        for (k, v) in &self.env {
            a.pair("--setenv", k, v);
        }
        a.one("--seccomp", self.seccomp_fd.to_string());
        a.one("--info-fd", self.info_fd.to_string());
        a.flags(&["--"]);
        a.0.extend(self.command.iter().cloned());
        (self.bwrap.clone(), a.0)
    }
}

#[derive(Default)]
struct ArgList(Vec<OsString>);

impl ArgList {
    fn flags(&mut self, f: &[&str]) {
        self.0.extend(f.iter().map(OsString::from));
    }
    fn one(&mut self, flag: &str, v: impl AsRef<std::ffi::OsStr>) {
        self.0.push(flag.into());
        self.0.push(v.as_ref().to_owned());
    }
    fn pair(&mut self, flag: &str, a: impl AsRef<std::ffi::OsStr>, b: impl AsRef<std::ffi::OsStr>) {
        self.0.push(flag.into());
        self.0.push(a.as_ref().to_owned());
        self.0.push(b.as_ref().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> BwrapOptions {
        BwrapOptions {
            bwrap: "bwrap".into(),
            system: vec![
                SystemMount::ReadOnly { src: "/usr".into(), dest: "/usr".into() },
                SystemMount::Symlink { target: "usr/bin".into(), link: "/bin".into() },
            ],
            workspace: "/workspace".into(),
            deps: Some("/opt/deps".into()),
            egress: Some("/run/sandbox-egress".into()),
            tmp_size_bytes: 64 << 20,
            proc_masks: vec![ProcMask::File("/proc/keys".into()), ProcMask::Dir("/proc/acpi".into())],
            env: vec![("PATH".into(), "/usr/bin".into()), ("X".into(), "a b;$(c)".into())],
            seccomp_fd: 9,
            info_fd: 10,
            sandbox_dir: "/tmp/executor/sb-1".into(),
            supervisor: "/usr/local/bin/sandbox-executor".into(),
            chdir: "/workspace".into(),
            command: vec!["python3".into(), "/sandbox/runner.py".into()],
        }
    }

    fn argv() -> Vec<String> {
        options().to_command_line().1.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    fn has_seq(v: &[String], seq: &[&str]) -> bool {
        v.windows(seq.len()).any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    }

    #[test]
    fn isolates_every_namespace() {
        let v = argv();
        for f in [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--unshare-cgroup",
            "--disable-userns",
            "--as-pid-1",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ] {
            assert!(v.contains(&f.to_string()), "{f} missing");
        }
        assert!(has_seq(&v, &["--cap-drop", "ALL"]));
        assert!(has_seq(&v, &["--seccomp", "9"]));
        assert!(has_seq(&v, &["--info-fd", "10"]));
    }

    #[test]
    fn private_proc_hides_what_docker_masks() {
        let v = argv();
        assert!(has_seq(&v, &["--ro-bind", "/dev/null", "/proc/keys"]));
        assert!(has_seq(&v, &["--tmpfs", "/proc/acpi", "--remount-ro", "/proc/acpi"]));
        // Masks go on the fresh /proc, so after it is mounted.
        let proc = v.iter().position(|a| a == "--proc").unwrap();
        let first_mask = v.iter().position(|a| a.starts_with("/proc/")).unwrap();
        assert!(proc < first_mask);
    }

    #[test]
    fn discovers_the_masks_this_kernel_needs() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::write(proc.path().join("keys"), "").unwrap();
        std::fs::create_dir(proc.path().join("acpi")).unwrap();
        std::fs::write(proc.path().join("meminfo"), "").unwrap();
        let m = discover_proc_masks(proc.path()).unwrap();
        assert_eq!(m, vec![ProcMask::File("/proc/keys".into()), ProcMask::Dir("/proc/acpi".into())]);
    }

    #[test]
    fn mounts_system_read_only_and_workspace_read_write() {
        let v = argv();
        assert!(has_seq(&v, &["--ro-bind", "/usr", "/usr"]));
        assert!(has_seq(&v, &["--symlink", "usr/bin", "/bin"]));
        assert!(has_seq(&v, &["--bind", "/workspace", "/workspace"]));
        assert!(has_seq(&v, &["--ro-bind", "/opt/deps", DEPS_MOUNT]));
        assert!(has_seq(&v, &["--ro-bind", "/run/sandbox-egress", "/run/sandbox-egress"]));
        let mut without = options();
        without.egress = None;
        let v2: Vec<_> = without.to_command_line().1.into_iter().map(|s| s.into_string().unwrap()).collect();
        assert!(!v2.iter().any(|a| a.contains("egress")), "no egress directory without a proxy");
        assert!(has_seq(&v, &["--size", "67108864", "--tmpfs", "/tmp"]));
        assert!(has_seq(&v, &["--size", "67108864", "--tmpfs", "/dev/shm"]));
        // The executor's directory, then the supervisor over the empty file waiting for it there.
        assert!(has_seq(
            &v,
            &[
                "--ro-bind",
                "/tmp/executor/sb-1",
                "/sandbox",
                "--ro-bind",
                "/usr/local/bin/sandbox-executor",
                SUPERVISOR_PATH
            ]
        ));
        assert!(has_seq(&v, &["--chdir", "/workspace"]));
        // The root is made read-only after every mount that needs to create a directory in it.
        let ro = v.windows(2).position(|w| w[0] == "--remount-ro" && w[1] == "/").unwrap();
        let last_mount = v.iter().rposition(|a| a.starts_with("--ro-bind") || a == "--bind").unwrap();
        assert!(ro > last_mount);
    }

    #[test]
    fn environment_and_command_are_passed_verbatim() {
        let v = argv();
        // No shell anywhere: values with shell syntax are single argv elements.
        assert!(has_seq(&v, &["--setenv", "X", "a b;$(c)"]));
        let sep = v.iter().position(|a| a == "--").unwrap();
        assert_eq!(&v[sep + 1..], ["python3", "/sandbox/runner.py"]);
    }

    #[test]
    fn discovers_merged_usr_links() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("usr")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.path().join("lib")).unwrap();
        let m = discover_system_mounts(root.path()).unwrap();
        assert_eq!(
            m,
            vec![
                SystemMount::ReadOnly { src: root.path().join("usr"), dest: "/usr".into() },
                SystemMount::Symlink { target: "usr/lib".into(), link: "/lib".into() },
            ]
        );
    }
}
