//! The first program inside each sandbox (`sandbox-executor supervise`), and the init (PID 1)
//! of its PID namespace. It makes itself non-dumpable, applies the per-execution rlimits, tells
//! the executor the sandbox is up, runs the interpreter (the language's runner) as its child
//! with the session's environment variables (read from a data file: they never reach this
//! process's own environment, so `LD_PRELOAD` and its kind act on the user's program only),
//! forwards signals to it (how the executor interrupts a context's running cell and signals a
//! process's tree), reaps every
//! orphan, and when the program has ended kills and reaps whatever it left running, then
//! reports the program's exact exit code or signal on its status descriptor.
//!
//! When the sandbox may reach the egress proxy, it also binds the egress relay on loopback
//! before the program starts and serves it on a thread of its own ([`crate::egress`]).
//!
//! User code runs with the same uid, so everything it could do to this process is closed off:
//! a PID namespace's init cannot be signalled from inside the namespace except by signals it
//! handles, and the only ones this process handles ([`FORWARDED`]: `SIGINT`, `SIGTERM`,
//! `SIGHUP`, ...) it passes on to the program (code can signal itself, nothing more); the
//! executor, outside the namespace, signals a process's whole tree this way. A non-dumpable process's
//! `/proc/<pid>/fd`, `mem` and `environ` belong to root and refuse it, so it can neither kill
//! this process nor write a forged report into the status pipe or its memory. It keeps no
//! descriptor but its status pipe (and the egress relay's sockets, close-on-exec): those meant
//! for the program are closed here once the program has them. Should this process die anyway, the executor gets no report and
//! calls the execution `crashed`. The report, written once every other process of the sandbox
//! has been collected, also carries the sandbox's CPU time and peak memory as the kernel counts
//! them for this process and everything it collected (`getrusage`): the executor answers on it
//! without waiting for the namespaces to be torn down and bwrap to exit, and takes the same
//! figures from the kernel's count for bwrap (`wait4`) when bwrap ended without a report.
//!
//! The limits are set here, inside bwrap's user namespace, rather than before bwrap starts:
//! `RLIMIT_NPROC` counts every process of a user *in each user namespace up the chain*, and
//! every sandbox on a host runs as the same uid, so a limit set outside would count the whole
//! host's sandboxes. Lowered inside a fresh namespace it counts this execution alone.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicI32, Ordering};

/// The subcommand name bwrap is told to run.
pub const SUBCOMMAND: &str = "supervise";

/// The first byte on the status descriptor: the sandbox is built and the program starting.
pub const STARTED: u8 = b'S';

/// Where the session's environment variables are inside the sandbox: a read-only data file
/// holding a JSON list of `[name, value]` pairs.
pub const ENV_FILE: &str = "/sandbox/env.json";

/// The signals passed on to the program (see [`Interrupt`] for whom they reach).
pub const FORWARDED: [libc::c_int; 6] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// Whom a forwarded signal ([`FORWARDED`]) reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The program alone (Python and Node.js turn `SIGINT` into an exception in the running
    /// code).
    Program,
    /// The program's process group, as a terminal's Ctrl-C: a shell and its foreground command.
    Group,
    /// Every process of the sandbox but the supervisor: a process started on its own, whose
    /// whole tree a signal is meant for.
    All,
}

impl Interrupt {
    fn as_arg(self) -> &'static str {
        match self {
            Interrupt::Program => "program",
            Interrupt::Group => "group",
            Interrupt::All => "all",
        }
    }

    /// The target `kill` is given for the program `pid`.
    pub(crate) fn target(self, pid: libc::pid_t) -> libc::pid_t {
        match self {
            Interrupt::Program => pid,
            Interrupt::Group => -pid,
            Interrupt::All => -1,
        }
    }
}

/// What `supervise` is told, in argument order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorArgs {
    /// `RLIMIT_NPROC`.
    pub processes: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`, bytes.
    pub file_size: u64,
    /// The status descriptor.
    pub status_fd: i32,
    /// Whom a forwarded signal reaches.
    pub interrupt: Interrupt,
    /// Descriptors handed on to the program; every other one but the status descriptor is
    /// closed before the program starts.
    pub program_fds: Vec<i32>,
    /// A terminal (a pseudo-terminal's other side) the program gets as its standard input,
    /// output and error and as its controlling terminal, in a session of its own.
    pub terminal: Option<i32>,
    /// The egress proxy's Unix socket (as the sandbox sees it): when given, a relay listens on
    /// [`RELAY_ADDR`](crate::egress::RELAY_ADDR) before the program starts and passes every
    /// connection to it ([`crate::egress`]).
    pub egress: Option<String>,
}

/// The highest descriptor number the supervisor closes before starting the program.
const MAX_INHERITED_FD: i32 = 255;

/// How the program ended, as `supervise` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorReport {
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// CPU time of the whole sandbox, in µs: this process's and every process it collected,
    /// as the kernel counts them (`getrusage`), taken once every other process is collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_us: Option<u64>,
    /// The largest resident set of any process of the sandbox, in KiB, as the kernel counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_kb: Option<u64>,
}

impl SupervisorReport {
    /// A report of how the program ended, with the sandbox's resource use so far.
    fn of(exit_code: Option<i32>, signal: Option<i32>) -> Self {
        let (own, children) = (rusage(libc::RUSAGE_SELF), rusage(libc::RUSAGE_CHILDREN));
        let us = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
        let total = |u: &libc::rusage| us(u.ru_utime) + us(u.ru_stime);
        SupervisorReport {
            exit_code,
            signal,
            cpu_time_us: Some(total(&own) + total(&children)),
            peak_memory_kb: Some(own.ru_maxrss.max(children.ru_maxrss).max(0) as u64),
        }
    }
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    usage
}

/// Splits what arrived on the status descriptor: whether the program started, and the final
/// report if one came.
pub fn parse_status(bytes: &[u8]) -> (bool, Option<SupervisorReport>) {
    match bytes.split_first() {
        Some((&STARTED, rest)) => (true, serde_json::from_slice(rest).ok()),
        _ => (false, None),
    }
}

/// Whether what arrived on the status descriptor holds the whole final report (it ends with a
/// newline, written once every process of the sandbox but this one is gone).
pub fn report_complete(bytes: &[u8]) -> bool {
    bytes.first() == Some(&STARTED) && bytes.len() > 1 && bytes.ends_with(b"\n")
}

impl SupervisorArgs {
    /// The arguments after the subcommand name, up to and including `--`.
    pub fn to_args(&self) -> Vec<OsString> {
        let fds = self.program_fds.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        [
            self.processes.to_string(),
            self.open_files.to_string(),
            self.file_size.to_string(),
            self.status_fd.to_string(),
            self.interrupt.as_arg().to_owned(),
            fds,
            self.terminal.map_or_else(|| "-".to_owned(), |fd| fd.to_string()),
            self.egress.clone().unwrap_or_else(|| "-".to_owned()),
            "--".to_owned(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }

    fn parse(args: &[OsString]) -> Option<(SupervisorArgs, &[OsString])> {
        let text = |i: usize| args.get(i)?.to_str();
        let num = |i: usize| text(i)?.parse::<u64>().ok();
        let interrupt = match text(4)? {
            "program" => Interrupt::Program,
            "group" => Interrupt::Group,
            "all" => Interrupt::All,
            _ => return None,
        };
        let program_fds = match text(5)? {
            "" => Vec::new(),
            list => list.split(',').map(|f| f.parse().ok()).collect::<Option<Vec<i32>>>()?,
        };
        let terminal = match text(6)? {
            "-" => None,
            fd => Some(fd.parse().ok()?),
        };
        let egress = match text(7)? {
            "-" => None,
            socket => Some(socket.to_owned()),
        };
        let parsed = SupervisorArgs {
            processes: num(0)?,
            open_files: num(1)?,
            file_size: num(2)?,
            status_fd: i32::try_from(num(3)?).ok()?,
            interrupt,
            program_fds,
            terminal,
            egress,
        };
        (args.get(8)? == "--" && args.len() > 9).then_some((parsed, &args[9..]))
    }
}

/// Where a forwarded signal goes: the program's pid, its process group as `-pid`, or every
/// process but this one as -1; 0 before the program starts and once it has ended.
static INTERRUPT_TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(signal: libc::c_int) {
    let target = INTERRUPT_TARGET.load(Ordering::Relaxed);
    if target != 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(target, signal) };
    }
}

/// Makes the [`FORWARDED`] signals reach the program (see [`INTERRUPT_TARGET`]).
fn handle_interrupts() -> std::io::Result<()> {
    // SAFETY: a plain sigaction with a handler that only reads an atomic and calls kill.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in FORWARDED {
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
    if unsafe { libc::setrlimit(resource, &lim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn fail(msg: std::fmt::Arguments<'_>) -> ! {
    eprintln!("supervise: {msg}");
    std::process::exit(125);
}

/// Reads the session's environment variables from [`ENV_FILE`].
fn session_environment() -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read(ENV_FILE)?;
    serde_json::from_slice(&text).map_err(std::io::Error::other)
}

/// In the program's process before it starts: a session of its own whose controlling terminal
/// is `tty`, which becomes its standard input, output and error.
fn on_terminal(tty: i32) -> std::io::Result<()> {
    // SAFETY: plain system calls on a descriptor this process holds.
    unsafe {
        if libc::setsid() < 0 || libc::ioctl(tty, libc::TIOCSCTTY, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for target in 0..=2 {
            if libc::dup2(tty, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        libc::close(tty);
    }
    Ok(())
}

/// Writes the final report and exits with the program's status.
fn report(mut status: std::fs::File, r: &SupervisorReport) -> ! {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    let _ = status.write_all(&line);
    drop(status);
    std::process::exit(r.exit_code.unwrap_or_else(|| 128 + r.signal.unwrap_or(0)));
}

/// Runs `supervise` with the arguments after its name. Never returns.
pub fn main(args: &[OsString]) -> ! {
    // First of all, before any user code exists: nothing running as this uid may open this
    // process's descriptors or memory through /proc.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        fail(format_args!("cannot make the supervisor non-dumpable: {}", std::io::Error::last_os_error()));
    }
    let Some((a, command)) = SupervisorArgs::parse(args) else {
        fail(format_args!(
            "usage: supervise NPROC NOFILE FSIZE STATUS_FD program|group|all FD,... TTY_FD|- EGRESS_SOCKET|- -- PROGRAM [ARGS...]"
        ));
    };
    // SAFETY: the descriptor was handed to us for this; taking ownership closes it at exit and
    // CLOEXEC keeps it from the program.
    let mut status = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(a.status_fd) };
    unsafe { libc::fcntl(a.status_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let env = session_environment().unwrap_or_else(|e| fail(format_args!("cannot read {ENV_FILE}: {e}")));
    let applied = set_limit(libc::RLIMIT_NPROC, a.processes)
        .and_then(|_| set_limit(libc::RLIMIT_NOFILE, a.open_files))
        .and_then(|_| set_limit(libc::RLIMIT_FSIZE, a.file_size))
        .and_then(|_| set_limit(libc::RLIMIT_CORE, 0));
    if let Err(e) = applied {
        fail(format_args!("cannot set resource limits: {e}"));
    }
    if let Err(e) = handle_interrupts() {
        fail(format_args!("cannot forward interrupts: {e}"));
    }
    // Nothing but the program's own descriptors reaches it.
    let handed: Vec<i32> = a.program_fds.iter().copied().chain(a.terminal).collect();
    for fd in 3..=MAX_INHERITED_FD {
        if fd != a.status_fd && !handed.contains(&fd) {
            unsafe { libc::close(fd) };
        }
    }
    // The relay is listening before the program starts; its descriptors are all close-on-exec.
    if let Some(socket) = &a.egress {
        let started = crate::egress::bind(crate::egress::RELAY_ADDR).and_then(|listener| {
            let execution = crate::egress::Execution::File(crate::egress::EXECUTION_FILE.into());
            crate::egress::spawn_thread(listener, socket.into(), execution)
        });
        if let Err(e) = started {
            fail(format_args!("cannot start the egress relay on {}: {e}", crate::egress::RELAY_ADDR));
        }
    }
    let _ = status.write_all(&[STARTED]);
    let mut program = std::process::Command::new(&command[0]);
    program.args(&command[1..]).envs(env);
    match a.terminal {
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls.
        Some(tty) => unsafe {
            program.pre_exec(move || on_terminal(tty));
        },
        // The program leads a process group of its own, which a group interrupt reaches without
        // this process.
        None => {
            program.process_group(0);
        }
    }
    let spawned = program.spawn();
    for &fd in &handed {
        unsafe { libc::close(fd) };
    }
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sandbox: cannot start {}: {e}", command[0].to_string_lossy());
            report(status, &SupervisorReport::of(Some(127), None));
        }
    };
    let pid = child.id() as libc::pid_t;
    INTERRUPT_TARGET.store(a.interrupt.target(pid), Ordering::Relaxed);
    // As the namespace's init, every orphan is ours to reap; the program's status is kept.
    let mut program_status = None;
    loop {
        let mut st = 0;
        match unsafe { libc::waitpid(-1, &mut st, 0) } {
            r if r == pid => {
                INTERRUPT_TARGET.store(0, Ordering::Relaxed);
                program_status = Some(st);
            }
            r if r > 0 => {}
            _ => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                // Nothing left: the program has ended and everything it started with it.
                Some(libc::ECHILD) => break,
                _ => fail(format_args!("lost track of the program: {}", std::io::Error::last_os_error())),
            },
        }
        if program_status.is_some() {
            // What the program left running ends with it and is reaped here (so its CPU time is
            // counted) rather than thrown away with the namespace. Again after every reap, for
            // a child forked while the last sweep went on.
            unsafe { libc::kill(-1, libc::SIGKILL) };
        }
    }
    let Some(wstatus) = program_status else {
        fail(format_args!("lost track of the program"));
    };
    report(
        status,
        &SupervisorReport::of(
            libc::WIFEXITED(wstatus).then(|| libc::WEXITSTATUS(wstatus)),
            libc::WIFSIGNALED(wstatus).then(|| libc::WTERMSIG(wstatus)),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let l = SupervisorArgs {
            processes: 64,
            open_files: 1024,
            file_size: 1 << 30,
            status_fd: 4,
            interrupt: Interrupt::Group,
            program_fds: vec![3, 6],
            terminal: None,
            egress: Some("/run/sandbox-egress/proxy.sock".into()),
        };
        let mut args = l.to_args();
        args.push("python3".into());
        args.push("-u".into());
        let (parsed, cmd) = SupervisorArgs::parse(&args).unwrap();
        assert_eq!(parsed, l);
        assert_eq!(cmd, [OsString::from("python3"), OsString::from("-u")]);
        assert!(SupervisorArgs::parse(&args[..9]).is_none(), "no command");
        assert!(SupervisorArgs::parse(&[OsString::from("x")]).is_none());
        for interrupt in [Interrupt::Program, Interrupt::All] {
            let none = SupervisorArgs {
                program_fds: vec![],
                interrupt,
                terminal: Some(8),
                egress: None,
                ..l.clone()
            };
            let mut args = none.to_args();
            args.push("bash".into());
            assert_eq!(SupervisorArgs::parse(&args).unwrap().0, none);
        }
    }

    #[test]
    fn status_parses() {
        assert_eq!(parse_status(b""), (false, None));
        assert_eq!(parse_status(b"S"), (true, None));
        let (started, r) = parse_status(br#"S{"exit_code":null,"signal":9}"#);
        assert!(started);
        assert_eq!(r.unwrap().signal, Some(9));
        let line = b"S{\"exit_code\":0,\"signal\":null,\"cpu_time_us\":12500,\"peak_memory_kb\":9000}\n";
        assert!(report_complete(line));
        assert!(!report_complete(&line[..line.len() - 1]), "cut short");
        assert!(!report_complete(b"S"));
        let r = parse_status(line).1.unwrap();
        assert_eq!((r.exit_code, r.cpu_time_us, r.peak_memory_kb), (Some(0), Some(12500), Some(9000)));
    }
}
