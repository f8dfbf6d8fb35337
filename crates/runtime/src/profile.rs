//! The container-level seccomp profile, kept here as reviewed data and written out as
//! `images/seccomp/sandbox.json` (a test keeps the file and this code in step).
//!
//! It is Docker's usual default allow-list for a container without capabilities (without
//! `io_uring_*`, which Docker's default refuses since 25.0: io_uring performs operations this
//! filter never sees), plus exactly the five calls bubblewrap needs to build its sandbox. Each of
//! the five was measured: remove any one and bwrap fails to start.
//!
//! | call | why bwrap needs it |
//! |---|---|
//! | `clone` (with namespace flags) | creates the sandbox's user, PID, network, IPC, UTS and cgroup namespaces; Docker's profile allows clone only *without* namespace flags unless the container has `CAP_SYS_ADMIN` |
//! | `unshare` | enters a new user namespace (`unshare user ns`) and mount namespace |
//! | `mount` | makes `/` a slave mount, mounts the sandbox's tmpfs root, `/proc`, `/dev`, bind mounts |
//! | `umount2` | detaches the old root after `pivot_root` |
//! | `pivot_root` | switches into the sandbox's new root |
//!
//! These calls are dangerous in user code, which is why the executor's own seccomp filter (applied
//! by bwrap just before user code starts) denies them again; the container profile only has to let
//! bwrap itself use them. Because bwrap also mounts a fresh `/proc`, the container must run with
//! unmasked system paths (Docker: `MaskedPaths` and `ReadonlyPaths` empty, the CLI's
//! `--security-opt systempaths=unconfined`): the kernel refuses a new procfs mount where parts of
//! the existing one are covered. User code never sees the container's `/proc`, only bwrap's.

use serde_json::{Value, json};

/// Docker's default allow-list (moby `profiles/seccomp/default.json`, the entries that need no
/// capability, `io_uring_*` removed as Docker has). Names a kernel or architecture lacks are
/// skipped by the runtime.
pub const DOCKER_DEFAULT_ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // Allowed by Docker on kernels from 4.8, where seccomp runs before ptrace checks.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
];

/// The calls added for bubblewrap (see the module documentation for each one's reason).
pub const BWRAP_EXTRA: &[&str] = &["clone", "unshare", "mount", "umount2", "pivot_root"];

const AF_VSOCK: u64 = 40;

/// The profile as Docker's JSON structure.
pub fn container_profile() -> Value {
    let personality = [0u64, 8, 0x20000, 0x20008, 0xffff_ffff].map(|v| {
        json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]})
    });
    let mut syscalls = vec![
        json!({"names": DOCKER_DEFAULT_ALLOWED, "action": "SCMP_ACT_ALLOW"}),
        json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]}),
    ];
    syscalls.extend(personality);
    syscalls.extend([
        json!({"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}}),
        json!({"names": ["modify_ldt"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32", "x86"]}}),
        json!({"names": ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"],
               "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
               "comment": "ENOSYS: libc falls back to clone, whose flags a filter can see"}),
        json!({"names": BWRAP_EXTRA, "action": "SCMP_ACT_ALLOW",
               "comment": "bubblewrap builds its sandbox with these; the executor's own filter denies them to user code"}),
    ]);
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
        ],
        "syscalls": syscalls,
    })
}

/// The profile as the JSON text Docker's `SecurityOpt` takes (and the committed file holds).
pub fn container_profile_json() -> String {
    let mut s = serde_json::to_string_pretty(&container_profile()).expect("profile serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed file is what operators (and the Kubernetes chart) use; it must be exactly
    /// what this code generates. Run with `UPDATE_SECCOMP_PROFILE=1` to rewrite it.
    #[test]
    fn committed_profile_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/seccomp/sandbox.json");
        let want = container_profile_json();
        if std::env::var_os("UPDATE_SECCOMP_PROFILE").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).expect("images/seccomp/sandbox.json exists");
        assert!(
            have == want,
            "images/seccomp/sandbox.json is stale: run UPDATE_SECCOMP_PROFILE=1 cargo test -p sandbox-runtime"
        );
    }

    #[test]
    fn adds_exactly_what_bwrap_needs() {
        for call in BWRAP_EXTRA {
            assert!(!DOCKER_DEFAULT_ALLOWED.contains(call), "{call} is not in Docker's cap-free set");
        }
        let p = container_profile();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        let text = p.to_string();
        for denied in [
            "\"bpf\"",
            "\"setns\"",
            "\"keyctl\"",
            "\"kexec_load\"",
            "\"init_module\"",
            "\"io_uring_setup\"",
            "\"io_uring_enter\"",
            "\"io_uring_register\"",
        ] {
            assert!(!text.contains(denied), "{denied} must stay denied at the container level");
        }
    }

    /// Where the container's profile is the runtime's default or absent (Kubernetes), the
    /// executor's filter alone stands between user code and the kernel: it must refuse every
    /// call Docker's default refuses to a container without capabilities.
    #[test]
    fn the_user_code_filter_alone_refuses_whatever_docker_refuses() {
        use sandbox_executor::sandbox::seccomp::{self, FIRST_UNREVIEWED};
        let refused_inside: std::collections::HashSet<i32> = seccomp::policy().map(|r| r.call.id()).collect();
        // Allowed by Docker on some arguments (the filter checks the same ones) or per
        // architecture, and the two calls seccomp does not filter at all (only the kernel's
        // uprobe trampolines make them; from anywhere else they fail or kill the caller).
        let conditional =
            ["clone", "clone3", "socket", "personality", "arch_prctl", "modify_ldt", "uretprobe", "uprobe"];
        let missing: Vec<&str> = syscalls::Sysno::iter()
            // Calls from FIRST_UNREVIEWED on fail with ENOSYS.
            .filter(|call| call.id() < FIRST_UNREVIEWED.id())
            .map(|call| (call, call.name()))
            .filter(|(_, name)| !DOCKER_DEFAULT_ALLOWED.contains(name) && !conditional.contains(name))
            .filter(|(call, _)| !refused_inside.contains(&call.id()))
            .map(|(_, name)| name)
            .collect();
        assert!(missing.is_empty(), "Docker refuses these, the user-code filter does not: {missing:?}");
        for name in ["clone", "clone3", "socket", "personality"] {
            assert!(seccomp::policy().any(|r| r.call.name() == name), "{name} has no rule");
        }
    }
}
