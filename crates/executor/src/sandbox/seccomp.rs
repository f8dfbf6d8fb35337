//! The seccomp policy applied to user code, kept as reviewed data, and a small compiler from that
//! policy to a classic-BPF program that bwrap loads (`--seccomp FD`) just before user code starts.
//!
//! The filter allows by default and denies a reviewed list of calls: the ones that create or
//! enter namespaces, mount filesystems, inspect other processes, load kernel code, or reach
//! kernel surfaces with a history of privilege escalations. The container's own profile has to
//! allow namespace creation and mounts (bwrap needs them to build the sandbox); this filter is
//! what takes them away again from the code that runs inside.
//!
//! Each rule is tested by trying the call under the compiled filter (see the tests below).

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// Fails with the policy's errno (`EPERM` in production).
    Errno,
    /// Fails with `ENOSYS`, as if the kernel lacked it (so libc falls back to an older call).
    NotImplemented,
}

/// When a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every call.
    Always,
    /// When any bit of `mask` is set in the low 32 bits of argument `arg`.
    ArgHasAnyBit {
        /// Argument index (0-based).
        arg: u8,
        /// Bits that make the call denied.
        mask: u32,
    },
    /// When the low 32 bits of argument `arg` equal `value`.
    ArgEquals {
        /// Argument index (0-based).
        arg: u8,
        /// The denied value.
        value: u32,
    },
}

/// One reviewed entry of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The call's name, for people.
    pub name: &'static str,
    /// The call's number on this architecture.
    pub nr: libc::c_long,
    /// When it is denied.
    pub when: When,
    /// How it is denied.
    pub deny: Deny,
    /// Why it is on the list.
    pub why: &'static str,
}

const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

macro_rules! rule {
    ($name:ident, $why:expr) => {
        Rule {
            name: stringify!($name),
            nr: paste_nr!($name),
            when: When::Always,
            deny: Deny::Errno,
            why: $why,
        }
    };
}

macro_rules! paste_nr {
    (ptrace) => {
        libc::SYS_ptrace
    };
    (process_vm_readv) => {
        libc::SYS_process_vm_readv
    };
    (process_vm_writev) => {
        libc::SYS_process_vm_writev
    };
    (mount) => {
        libc::SYS_mount
    };
    (umount2) => {
        libc::SYS_umount2
    };
    (pivot_root) => {
        libc::SYS_pivot_root
    };
    (chroot) => {
        libc::SYS_chroot
    };
    (unshare) => {
        libc::SYS_unshare
    };
    (setns) => {
        libc::SYS_setns
    };
    (fsopen) => {
        libc::SYS_fsopen
    };
    (fsconfig) => {
        libc::SYS_fsconfig
    };
    (fsmount) => {
        libc::SYS_fsmount
    };
    (fspick) => {
        libc::SYS_fspick
    };
    (move_mount) => {
        libc::SYS_move_mount
    };
    (open_tree) => {
        libc::SYS_open_tree
    };
    (mount_setattr) => {
        libc::SYS_mount_setattr
    };
    (bpf) => {
        libc::SYS_bpf
    };
    (perf_event_open) => {
        libc::SYS_perf_event_open
    };
    (userfaultfd) => {
        libc::SYS_userfaultfd
    };
    (io_uring_setup) => {
        libc::SYS_io_uring_setup
    };
    (io_uring_enter) => {
        libc::SYS_io_uring_enter
    };
    (io_uring_register) => {
        libc::SYS_io_uring_register
    };
    (keyctl) => {
        libc::SYS_keyctl
    };
    (add_key) => {
        libc::SYS_add_key
    };
    (request_key) => {
        libc::SYS_request_key
    };
    (kexec_load) => {
        libc::SYS_kexec_load
    };
    (kexec_file_load) => {
        libc::SYS_kexec_file_load
    };
    (init_module) => {
        libc::SYS_init_module
    };
    (finit_module) => {
        libc::SYS_finit_module
    };
    (delete_module) => {
        libc::SYS_delete_module
    };
    (reboot) => {
        libc::SYS_reboot
    };
    (swapon) => {
        libc::SYS_swapon
    };
    (swapoff) => {
        libc::SYS_swapoff
    };
    (acct) => {
        libc::SYS_acct
    };
    (quotactl) => {
        libc::SYS_quotactl
    };
    (quotactl_fd) => {
        libc::SYS_quotactl_fd
    };
    (open_by_handle_at) => {
        libc::SYS_open_by_handle_at
    };
    (name_to_handle_at) => {
        libc::SYS_name_to_handle_at
    };
    (kcmp) => {
        libc::SYS_kcmp
    };
    (pidfd_getfd) => {
        libc::SYS_pidfd_getfd
    };
    (process_madvise) => {
        libc::SYS_process_madvise
    };
    (syslog) => {
        libc::SYS_syslog
    };
    (vhangup) => {
        libc::SYS_vhangup
    };
    (lookup_dcookie) => {
        libc::SYS_lookup_dcookie
    };
    (settimeofday) => {
        libc::SYS_settimeofday
    };
    (clock_settime) => {
        libc::SYS_clock_settime
    };
    (clock_adjtime) => {
        libc::SYS_clock_adjtime
    };
    (adjtimex) => {
        libc::SYS_adjtimex
    };
    (sethostname) => {
        libc::SYS_sethostname
    };
    (setdomainname) => {
        libc::SYS_setdomainname
    };
}

/// The policy: every call user code may not make, with the reason.
pub const POLICY: &[Rule] = &[
    rule!(ptrace, "inspecting or controlling other processes"),
    rule!(process_vm_readv, "reading another process's memory"),
    rule!(process_vm_writev, "writing another process's memory"),
    rule!(kcmp, "comparing kernel objects of other processes"),
    rule!(pidfd_getfd, "stealing another process's file descriptors"),
    rule!(process_madvise, "advising on another process's memory"),
    rule!(mount, "mounting filesystems"),
    rule!(umount2, "unmounting filesystems (could reveal what bwrap covered)"),
    rule!(pivot_root, "changing the root filesystem"),
    rule!(chroot, "changing the root directory"),
    rule!(fsopen, "new mount API"),
    rule!(fsconfig, "new mount API"),
    rule!(fsmount, "new mount API"),
    rule!(fspick, "new mount API"),
    rule!(move_mount, "new mount API"),
    rule!(open_tree, "new mount API (cloning mounts)"),
    rule!(mount_setattr, "changing mount flags"),
    rule!(unshare, "creating namespaces (user namespaces are a large kernel attack surface)"),
    rule!(setns, "entering other namespaces"),
    Rule {
        name: "clone",
        nr: libc::SYS_clone,
        when: When::ArgHasAnyBit { arg: 0, mask: CLONE_NAMESPACE_FLAGS },
        deny: Deny::Errno,
        why: "creating namespaces through clone flags; plain fork and threads stay allowed",
    },
    Rule {
        name: "clone3",
        nr: libc::SYS_clone3,
        when: When::Always,
        deny: Deny::NotImplemented,
        why: "its flags live in memory a filter cannot read; ENOSYS makes libc fall back to clone",
    },
    rule!(bpf, "loading eBPF programs"),
    rule!(perf_event_open, "performance counters (side channels, kernel bugs)"),
    rule!(userfaultfd, "a classic tool for winning kernel races"),
    rule!(io_uring_setup, "io_uring bypasses this filter for the operations it performs"),
    rule!(io_uring_enter, "io_uring"),
    rule!(io_uring_register, "io_uring"),
    rule!(keyctl, "kernel keyrings are not namespaced"),
    rule!(add_key, "kernel keyrings are not namespaced"),
    rule!(request_key, "kernel keyrings are not namespaced"),
    rule!(kexec_load, "loading a new kernel"),
    rule!(kexec_file_load, "loading a new kernel"),
    rule!(init_module, "loading kernel modules"),
    rule!(finit_module, "loading kernel modules"),
    rule!(delete_module, "unloading kernel modules"),
    rule!(reboot, "rebooting"),
    rule!(swapon, "swap management"),
    rule!(swapoff, "swap management"),
    rule!(acct, "process accounting"),
    rule!(quotactl, "quota management"),
    rule!(quotactl_fd, "quota management"),
    rule!(open_by_handle_at, "opening files by handle bypasses path checks (the 'shocker' escape)"),
    rule!(name_to_handle_at, "pairs with open_by_handle_at"),
    rule!(syslog, "reading the kernel log"),
    rule!(vhangup, "terminal control"),
    rule!(lookup_dcookie, "kernel profiling interface"),
    rule!(settimeofday, "changing the system clock"),
    rule!(clock_settime, "changing the system clock"),
    rule!(clock_adjtime, "changing the system clock"),
    rule!(adjtimex, "changing the system clock"),
    rule!(sethostname, "changing the host name"),
    rule!(setdomainname, "changing the domain name"),
    Rule {
        name: "socket",
        nr: libc::SYS_socket,
        when: When::ArgEquals { arg: 0, value: libc::AF_VSOCK as u32 },
        deny: Deny::Errno,
        why: "AF_VSOCK reaches the hypervisor host, outside every network namespace",
    },
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// x32 system calls share x86_64's audit arch but set this bit in the call number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

// Offsets into `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_low(arg: u8) -> u32 {
    // args[] start at 16; each is a u64; the low half comes first on little-endian targets.
    16 + 8 * arg as u32
}

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const fn stmt(code: u16, k: u32) -> Instruction {
    Instruction { code, jt: 0, jf: 0, k }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// A compiled filter, ready to hand to bwrap or to `seccomp(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program(Vec<Instruction>);

impl Program {
    /// The instructions.
    pub fn instructions(&self) -> &[Instruction] {
        &self.0
    }

    /// The program in the byte layout bwrap reads from `--seccomp FD` (an array of
    /// `struct sock_filter` in native byte order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 8);
        for i in &self.0 {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }
}

/// Compiles `rules` into a filter whose `Errno` denials fail with `errno`.
///
/// Layout: a wrong architecture kills the process; x32 calls fail; each rule is a compare on
/// the call number followed by a block that always returns; anything else is allowed.
pub fn compile(rules: &[Rule], errno: u16) -> Program {
    let ret_errno = |e: u16| stmt(BPF_RET_K, SECCOMP_RET_ERRNO | u32::from(e));
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    p.extend([jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1), ret_errno(errno)]);

    for rule in rules {
        let deny = ret_errno(match rule.deny {
            Deny::Errno => errno,
            Deny::NotImplemented => libc::ENOSYS as u16,
        });
        let allow = stmt(BPF_RET_K, SECCOMP_RET_ALLOW);
        let body: Vec<Instruction> = match rule.when {
            When::Always => vec![deny],
            When::ArgHasAnyBit { arg, mask } => {
                vec![stmt(BPF_LD_W_ABS, off_arg_low(arg)), jump(BPF_JSET_K, mask, 0, 1), deny, allow]
            }
            When::ArgEquals { arg, value } => {
                vec![stmt(BPF_LD_W_ABS, off_arg_low(arg)), jump(BPF_JEQ_K, value, 0, 1), deny, allow]
            }
        };
        let skip = u8::try_from(body.len()).expect("rule body fits a BPF jump");
        p.push(jump(BPF_JEQ_K, rule.nr as u32, 0, skip));
        p.extend(body);
    }
    p.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    Program(p)
}

/// The production filter: [`POLICY`], denying with `EPERM`.
pub fn user_code_filter() -> Program {
    compile(POLICY, libc::EPERM as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An errno nothing else returns, so a test can tell the filter's denial from the kernel's.
    const MARK: u16 = 133; // EHWPOISON

    /// Installs `prog` in a forked child, runs `call` there, and returns what the child saw:
    /// `Ok(ret)` or `Err(errno)`.
    fn in_filtered_child(prog: &Program, call: impl FnOnce() -> libc::c_long) -> Result<i64, i32> {
        let fprog =
            libc::sock_fprog { len: prog.0.len() as u16, filter: prog.0.as_ptr() as *mut libc::sock_filter };
        let mut pipe = [0i32; 2];
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // Child: only async-signal-safe calls from here on.
            unsafe {
                libc::close(pipe[0]);
                // No controlling terminal, so a call that slipped through could not touch one.
                libc::setsid();
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog) != 0
                {
                    libc::_exit(99);
                }
                let r = call();
                let e = if r == -1 { *libc::__errno_location() } else { 0 };
                let msg = [r, e as i64];
                libc::write(pipe[1], msg.as_ptr().cast(), 16);
                libc::_exit(0);
            }
        }
        unsafe { libc::close(pipe[1]) };
        let mut msg = [0i64; 2];
        let n = unsafe { libc::read(pipe[0], msg.as_mut_ptr().cast(), 16) };
        unsafe { libc::close(pipe[0]) };
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
        assert_eq!(n, 16);
        if msg[0] == -1 { Err(msg[1] as i32) } else { Ok(msg[0]) }
    }

    /// Arguments that make every call on the list harmless should the filter ever let it
    /// through (bad pointers, bad fds, paths that do not exist, wrong magic numbers).
    fn harmless_call(rule: &Rule) -> libc::c_long {
        let missing = c"/nonexistent-seccomp-test".as_ptr();
        unsafe {
            match rule.name {
                "clone" => {
                    let r = libc::syscall(libc::SYS_clone, libc::CLONE_NEWUSER | libc::SIGCHLD, 0, 0, 0, 0);
                    if r == 0 {
                        libc::_exit(0);
                    }
                    r
                }
                "socket" => libc::syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0),
                "mount" => libc::syscall(libc::SYS_mount, missing, missing, c"tmpfs".as_ptr(), 0, 0),
                "umount2" | "chroot" | "swapon" | "swapoff" | "acct" => libc::syscall(rule.nr, missing, 0),
                "pivot_root" => libc::syscall(rule.nr, missing, missing),
                "unshare" => libc::syscall(rule.nr, libc::CLONE_NEWUSER),
                "reboot" => libc::syscall(rule.nr, 0, 0, 0, 0),
                "ptrace" => libc::syscall(rule.nr, libc::PTRACE_PEEKDATA, 1, 0, 0),
                "sethostname" | "setdomainname" => libc::syscall(rule.nr, 0, 100_000),
                "settimeofday" | "clock_settime" | "adjtimex" | "clock_adjtime" => {
                    libc::syscall(rule.nr, -1, 1)
                }
                // Everything else fails on -1 / NULL arguments before doing anything.
                _ => libc::syscall(rule.nr, -1, 0, 0, 0, 0, 0),
            }
        }
    }

    #[test]
    fn every_rule_is_denied_by_the_filter() {
        let prog = compile(POLICY, MARK);
        for rule in POLICY {
            let got = in_filtered_child(&prog, || harmless_call(rule));
            let want = match rule.deny {
                Deny::Errno => MARK as i32,
                Deny::NotImplemented => libc::ENOSYS,
            };
            assert_eq!(got, Err(want), "{} was not denied by the filter", rule.name);
        }
    }

    #[test]
    fn clone3_is_enosys_so_libc_falls_back() {
        let prog = user_code_filter();
        let got = in_filtered_child(&prog, || unsafe { libc::syscall(libc::SYS_clone3, 0, 0) });
        assert_eq!(got, Err(libc::ENOSYS));
    }

    #[test]
    fn ordinary_calls_still_work() {
        let prog = user_code_filter();
        assert!(in_filtered_child(&prog, || unsafe { libc::syscall(libc::SYS_getpid) }).is_ok());
        // A plain fork (clone without namespace flags) is allowed.
        let forked = in_filtered_child(&prog, || unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            pid as libc::c_long
        });
        assert!(matches!(forked, Ok(p) if p > 0), "{forked:?}");
        let unix = in_filtered_child(&prog, || unsafe {
            libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0)
        });
        assert!(unix.is_ok(), "{unix:?}");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn x32_calls_are_refused() {
        let prog = compile(POLICY, MARK);
        let got = in_filtered_child(&prog, || unsafe {
            libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long)
        });
        assert_eq!(got, Err(MARK as i32));
    }

    #[test]
    fn policy_has_no_duplicates_and_program_is_small() {
        let mut nrs: Vec<_> = POLICY.iter().map(|r| r.nr).collect();
        nrs.sort();
        nrs.dedup();
        assert_eq!(nrs.len(), POLICY.len());
        let prog = user_code_filter();
        assert!(prog.instructions().len() < 4096, "BPF_MAXINSNS");
        assert_eq!(prog.to_bytes().len(), prog.instructions().len() * 8);
    }
}
