//! The seccomp policy applied to user code, kept as reviewed data, and a small compiler from that
//! policy to a classic-BPF program that bwrap loads (`--seccomp FD`) just before user code starts.
//!
//! The filter allows by default and denies a reviewed list of calls: the ones that create or
//! enter namespaces, mount filesystems, inspect other processes, load kernel code, or reach
//! kernel surfaces with a history of privilege escalations. The container's own profile has to
//! allow namespace creation and mounts (bwrap needs them to build the sandbox); this filter is
//! what takes them away again from the code that runs inside.
//!
//! The filter stands on its own: it refuses everything Docker's default profile refuses to a
//! container without capabilities (a test in `sandbox-runtime` checks it against that list call
//! by call), so user code stays contained where the container runs under a weaker profile or
//! none. Calls newer than the reviewed table fail with `ENOSYS`, as runc answers for calls its
//! profile does not know, so libc falls back to older ones.
//!
//! Each rule is tested by trying the call under the compiled filter (see the tests below).

use syscalls::Sysno;

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// Fails with the policy's errno (`EPERM` in production).
    Errno,
    /// Fails with this errno, whatever the policy's: `ENOSYS` makes libc fall back to an older
    /// call, `EAFNOSUPPORT` makes a library treat a socket family as absent.
    With(u16),
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
    /// When the low 32 bits of argument `arg` are one of `values`.
    ArgIn {
        /// Argument index (0-based).
        arg: u8,
        /// The denied values.
        values: &'static [u32],
    },
    /// When the low 32 bits of argument `arg` are none of `values`.
    ArgNotIn {
        /// Argument index (0-based).
        arg: u8,
        /// The only values allowed.
        values: &'static [u32],
    },
}

/// One reviewed entry of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The call.
    pub call: Sysno,
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

/// The socket families user code may create: what Python, Node and glibc use in a network
/// namespace that has only a loopback interface. `AF_NETLINK` is for `getifaddrs`,
/// `if_nameindex` and the address-family checks of `getaddrinfo` (they read the interface list).
pub const SOCKET_FAMILIES: &[u32] =
    &[libc::AF_UNIX as u32, libc::AF_INET as u32, libc::AF_INET6 as u32, libc::AF_NETLINK as u32];

/// The execution domains `personality` may select: Linux's default, `PER_LINUX32`, `UNAME26`,
/// their combination, and the query `0xffffffff` (the five Docker's default profile allows).
pub const PERSONAS: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Terminal requests user code may not make: pushing input into a terminal (`TIOCSTI`), console
/// control (`TIOCLINUX`), and changing a terminal's line discipline (`TIOCSETD`, which loads and
/// enters little-used kernel code).
pub const DENIED_IOCTLS: &[u32] = &[libc::TIOCSTI as u32, libc::TIOCLINUX as u32, libc::TIOCSETD as u32];

/// The first call number newer than the reviewed table (`cachestat`, Linux 6.5): this call and
/// every later one fail with `ENOSYS`.
pub const FIRST_UNREVIEWED: Sysno = Sysno::cachestat;

macro_rules! rule {
    ($call:ident, $why:expr) => {
        Rule { call: Sysno::$call, when: When::Always, deny: Deny::Errno, why: $why }
    };
}

const OBSOLETE: &str = "obsolete or never implemented; Docker's default profile refuses it";
const NUMA: &str = "NUMA memory policy, which Docker allows only with CAP_SYS_NICE";

/// The policy on every architecture: every call user code may not make, with the reason.
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
        call: Sysno::clone,
        when: When::ArgHasAnyBit { arg: 0, mask: CLONE_NAMESPACE_FLAGS },
        deny: Deny::Errno,
        why: "creating namespaces through clone flags; plain fork and threads stay allowed",
    },
    Rule {
        call: Sysno::clone3,
        when: When::Always,
        deny: Deny::With(libc::ENOSYS as u16),
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
    rule!(fanotify_init, "filesystem-wide event monitoring"),
    rule!(syslog, "reading the kernel log"),
    rule!(vhangup, "terminal control"),
    rule!(lookup_dcookie, "kernel profiling interface"),
    rule!(nfsservctl, OBSOLETE),
    rule!(settimeofday, "changing the system clock"),
    rule!(clock_settime, "changing the system clock"),
    rule!(clock_adjtime, "changing the system clock"),
    rule!(adjtimex, "changing the system clock"),
    rule!(sethostname, "changing the host name"),
    rule!(setdomainname, "changing the domain name"),
    rule!(mbind, NUMA),
    rule!(set_mempolicy, NUMA),
    rule!(get_mempolicy, NUMA),
    rule!(set_mempolicy_home_node, NUMA),
    rule!(migrate_pages, "moving another process's memory between NUMA nodes"),
    rule!(move_pages, "moving another process's memory between NUMA nodes"),
    Rule {
        call: Sysno::personality,
        when: When::ArgNotIn { arg: 0, values: PERSONAS },
        deny: Deny::Errno,
        why: "other execution domains weaken the process (ADDR_NO_RANDOMIZE turns address \
              randomisation off, READ_IMPLIES_EXEC makes data executable)",
    },
    Rule {
        call: Sysno::socket,
        when: When::ArgNotIn { arg: 0, values: SOCKET_FAMILIES },
        deny: Deny::With(libc::EAFNOSUPPORT as u16),
        why: "every other family (packet, key, crypto, vsock, bluetooth, ...) reaches kernel code \
              no program here needs, and AF_VSOCK reaches the hypervisor host, outside every \
              network namespace; EAFNOSUPPORT makes libraries treat the family as absent",
    },
    Rule {
        call: Sysno::ioctl,
        when: When::ArgIn { arg: 1, values: DENIED_IOCTLS },
        deny: Deny::Errno,
        why: "injecting input into a terminal, console control, changing line disciplines",
    },
];

/// The policy's entries that exist on x86_64 only.
#[cfg(target_arch = "x86_64")]
pub const ARCH_POLICY: &[Rule] = &[
    rule!(iopl, "raw I/O port access"),
    rule!(ioperm, "raw I/O port access"),
    rule!(uselib, OBSOLETE),
    rule!(ustat, OBSOLETE),
    rule!(sysfs, OBSOLETE),
    rule!(_sysctl, OBSOLETE),
    rule!(create_module, OBSOLETE),
    rule!(get_kernel_syms, OBSOLETE),
    rule!(query_module, OBSOLETE),
    rule!(getpmsg, OBSOLETE),
    rule!(putpmsg, OBSOLETE),
    rule!(afs_syscall, OBSOLETE),
    rule!(tuxcall, OBSOLETE),
    rule!(security, OBSOLETE),
    rule!(vserver, OBSOLETE),
];

/// The policy's entries that exist on this architecture only.
#[cfg(not(target_arch = "x86_64"))]
pub const ARCH_POLICY: &[Rule] = &[];

/// Every rule that applies on this architecture.
pub fn policy() -> impl Iterator<Item = &'static Rule> {
    POLICY.iter().chain(ARCH_POLICY)
}

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

/// A jump offset; a filter that needs a longer one is a policy far beyond its design.
fn offset(n: usize) -> u8 {
    u8::try_from(n).expect("a BPF jump offset fits in a byte")
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

/// The instructions after a rule's call-number match: load the argument, test it, and return
/// `deny` or allow.
fn condition(when: When, deny: Instruction) -> Vec<Instruction> {
    let allow = stmt(BPF_RET_K, SECCOMP_RET_ALLOW);
    let mut body = Vec::new();
    match when {
        When::Always => return vec![deny],
        When::ArgHasAnyBit { arg, mask } => {
            body.push(stmt(BPF_LD_W_ABS, off_arg_low(arg)));
            body.push(jump(BPF_JSET_K, mask, 0, 1));
        }
        When::ArgIn { arg, values } => {
            // Each match jumps to the denial; the last miss skips it.
            body.push(stmt(BPF_LD_W_ABS, off_arg_low(arg)));
            let n = values.len();
            for (i, v) in values.iter().enumerate() {
                body.push(jump(BPF_JEQ_K, *v, offset(n - 1 - i), u8::from(i + 1 == n)));
            }
        }
        When::ArgNotIn { arg, values } => {
            // Each match jumps to the allowance; falling through all of them denies.
            body.push(stmt(BPF_LD_W_ABS, off_arg_low(arg)));
            let n = values.len();
            for (i, v) in values.iter().enumerate() {
                body.push(jump(BPF_JEQ_K, *v, offset(n - i), 0));
            }
        }
    }
    body.extend([deny, allow]);
    body
}

/// Compiles `rules` into a filter whose [`Deny::Errno`] denials fail with `errno`.
///
/// Layout: a wrong architecture kills the process; x32 calls fail; calls from
/// [`FIRST_UNREVIEWED`] on fail with `ENOSYS`; each rule with a condition or its own errno is a
/// compare on the call number followed by a block that always returns; the unconditional rules
/// come last, one compare each, all jumping to one shared denial; anything else is allowed.
pub fn compile<'a>(rules: impl IntoIterator<Item = &'a Rule>, errno: u16) -> Program {
    let ret_errno = |e: u16| stmt(BPF_RET_K, SECCOMP_RET_ERRNO | u32::from(e));
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    p.extend([jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1), ret_errno(errno)]);
    p.extend([jump(BPF_JGE_K, FIRST_UNREVIEWED.id() as u32, 0, 1), ret_errno(libc::ENOSYS as u16)]);

    let mut plain = Vec::new();
    for rule in rules {
        let deny = match rule.deny {
            Deny::Errno if rule.when == When::Always => {
                plain.push(rule.call.id() as u32);
                continue;
            }
            Deny::Errno => ret_errno(errno),
            Deny::With(e) => ret_errno(e),
        };
        let body = condition(rule.when, deny);
        p.push(jump(BPF_JEQ_K, rule.call.id() as u32, 0, offset(body.len())));
        p.extend(body);
    }
    let n = plain.len();
    for (i, nr) in plain.into_iter().enumerate() {
        // Past the remaining compares and the allowance, to the denial.
        p.push(jump(BPF_JEQ_K, nr, offset(n - i), 0));
    }
    p.extend([stmt(BPF_RET_K, SECCOMP_RET_ALLOW), ret_errno(errno)]);
    Program(p)
}

/// The production filter: [`policy`], denying with `EPERM`.
pub fn user_code_filter() -> Program {
    compile(policy(), libc::EPERM as u16)
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

    /// The policy with every denial failing with the policy's errno, so the test filter marks
    /// each one.
    fn marked_filter() -> Program {
        let rules: Vec<Rule> = policy().map(|r| Rule { deny: Deny::Errno, ..*r }).collect();
        compile(&rules, MARK)
    }

    /// Arguments that make every call on the list harmless should the filter ever let it
    /// through (bad pointers, bad fds, paths that do not exist, wrong magic numbers).
    fn harmless_call(rule: &Rule) -> libc::c_long {
        let missing = c"/nonexistent-seccomp-test".as_ptr();
        let nr = rule.call.id() as libc::c_long;
        unsafe {
            match rule.call {
                Sysno::clone => {
                    let r = libc::syscall(nr, libc::CLONE_NEWUSER | libc::SIGCHLD, 0, 0, 0, 0);
                    if r == 0 {
                        libc::_exit(0);
                    }
                    r
                }
                Sysno::socket => libc::syscall(nr, libc::AF_VSOCK, libc::SOCK_STREAM, 0),
                Sysno::ioctl => libc::syscall(nr, -1, libc::TIOCSTI, 0),
                Sysno::personality => libc::syscall(nr, libc::ADDR_NO_RANDOMIZE),
                Sysno::mount => libc::syscall(nr, missing, missing, c"tmpfs".as_ptr(), 0, 0),
                Sysno::umount2 | Sysno::chroot | Sysno::swapon | Sysno::swapoff | Sysno::acct => {
                    libc::syscall(nr, missing, 0)
                }
                Sysno::pivot_root => libc::syscall(nr, missing, missing),
                Sysno::unshare => libc::syscall(nr, libc::CLONE_NEWUSER),
                Sysno::reboot => libc::syscall(nr, 0, 0, 0, 0),
                Sysno::ptrace => libc::syscall(nr, libc::PTRACE_PEEKDATA, 1, 0, 0),
                Sysno::sethostname | Sysno::setdomainname => libc::syscall(nr, 0, 100_000),
                Sysno::settimeofday | Sysno::clock_settime | Sysno::adjtimex | Sysno::clock_adjtime => {
                    libc::syscall(nr, -1, 1)
                }
                // Everything else fails on -1 / NULL arguments before doing anything.
                _ => libc::syscall(nr, -1, 0, 0, 0, 0, 0),
            }
        }
    }

    #[test]
    fn every_rule_is_denied_by_the_filter() {
        let prog = marked_filter();
        for rule in policy() {
            let got = in_filtered_child(&prog, || harmless_call(rule));
            assert_eq!(got, Err(MARK as i32), "{} was not denied by the filter", rule.call);
        }
    }

    #[test]
    fn clone3_is_enosys_so_libc_falls_back() {
        let prog = user_code_filter();
        let got = in_filtered_child(&prog, || unsafe { libc::syscall(libc::SYS_clone3, 0, 0) });
        assert_eq!(got, Err(libc::ENOSYS));
    }

    #[test]
    fn only_the_reviewed_socket_families_are_allowed() {
        let socket =
            |family: i32| move || unsafe { libc::syscall(libc::SYS_socket, family, libc::SOCK_DGRAM, 0) };
        let (marked, prod) = (marked_filter(), user_code_filter());
        for family in [
            libc::AF_PACKET,
            libc::AF_KEY,
            libc::AF_ALG,
            libc::AF_VSOCK,
            libc::AF_BLUETOOTH,
            libc::AF_TIPC,
            libc::AF_RDS,
            libc::AF_XDP,
            libc::AF_APPLETALK,
            libc::AF_CAN,
            libc::AF_NFC,
            46, // one past the last family this kernel knows
        ] {
            assert_eq!(in_filtered_child(&marked, socket(family)), Err(MARK as i32), "family {family}");
            assert_eq!(in_filtered_child(&prod, socket(family)), Err(libc::EAFNOSUPPORT), "family {family}");
        }
        for family in SOCKET_FAMILIES {
            let got = in_filtered_child(&prod, socket(*family as i32));
            assert!(got.is_ok(), "family {family}: {got:?}");
        }
    }

    #[test]
    fn terminal_injection_and_line_discipline_ioctls_are_denied() {
        let prog = marked_filter();
        for request in DENIED_IOCTLS {
            let got = in_filtered_child(&prog, || unsafe { libc::syscall(libc::SYS_ioctl, -1, *request, 0) });
            assert_eq!(got, Err(MARK as i32), "ioctl {request:#x}");
        }
        // Other requests reach the kernel, which refuses the bad descriptor itself.
        let got = in_filtered_child(&prog, || unsafe { libc::syscall(libc::SYS_ioctl, -1, libc::TCGETS, 0) });
        assert_eq!(got, Err(libc::EBADF));
    }

    #[test]
    fn only_default_personas_are_allowed() {
        let prog = marked_filter();
        let personality = |p: u32| move || unsafe { libc::syscall(libc::SYS_personality, p) };
        for p in
            [libc::ADDR_NO_RANDOMIZE as u32, libc::READ_IMPLIES_EXEC as u32, 0x6 /* PER_BSD */, 0x10]
        {
            assert_eq!(in_filtered_child(&prog, personality(p)), Err(MARK as i32), "persona {p:#x}");
        }
        for p in PERSONAS {
            assert!(in_filtered_child(&prog, personality(*p)).is_ok(), "persona {p:#x}");
        }
    }

    #[test]
    fn calls_newer_than_the_reviewed_table_are_enosys() {
        let prog = marked_filter();
        let first = FIRST_UNREVIEWED.id() as libc::c_long;
        for nr in [first, first + 1, first + 11, 1000] {
            let got = in_filtered_child(&prog, || unsafe { libc::syscall(nr, -1, 0, 0, 0) });
            assert_eq!(got, Err(libc::ENOSYS), "call {nr}");
        }
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
        // The newest call of the reviewed table still reaches the kernel.
        let got = in_filtered_child(&prog, || unsafe { libc::syscall(libc::SYS_futex_waitv, 0, 0, 0, 0, 0) });
        assert_eq!(got, Err(libc::EINVAL));
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn x32_calls_are_refused() {
        let prog = marked_filter();
        let got = in_filtered_child(&prog, || unsafe {
            libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long)
        });
        assert_eq!(got, Err(MARK as i32));
    }

    #[test]
    fn policy_has_no_duplicates_and_program_is_small() {
        let mut nrs: Vec<_> = policy().map(|r| r.call.id()).collect();
        nrs.sort();
        nrs.dedup();
        assert_eq!(nrs.len(), policy().count());
        assert!(policy().all(|r| r.call.id() < FIRST_UNREVIEWED.id()), "a rule the range already covers");
        let prog = user_code_filter();
        // An unconditional rule costs one instruction; the whole program stays far below
        // BPF_MAXINSNS (4096).
        let conditional: usize = policy()
            .filter(|r| r.when != When::Always || r.deny != Deny::Errno)
            .map(|r| 1 + condition(r.when, stmt(BPF_RET_K, 0)).len())
            .sum();
        let plain = policy().filter(|r| r.when == When::Always && r.deny == Deny::Errno).count();
        let header = if cfg!(target_arch = "x86_64") { 8 } else { 6 };
        assert_eq!(prog.instructions().len(), header + conditional + plain + 2);
        assert!(prog.instructions().len() < 256, "{} instructions", prog.instructions().len());
        assert_eq!(prog.to_bytes().len(), prog.instructions().len() * 8);
    }
}
