//! One sandbox, started before the work it will do: bwrap (namespaces, mounts, seccomp filter),
//! the supervisor as its PID 1 (rlimits, reaping, the exact exit status), and the language's
//! runner with its imports done, waiting on its request descriptor.
//!
//! The executor gives each instance a directory of its own, bound read-only at `/sandbox`: the
//! runner and the environment file are written there before bwrap starts, the code and its
//! inputs when the work comes (user code can read them, never change them). A stateless
//! execution uses an instance once and lets it end; a context keeps one for its life. Nothing
//! is shared between two instances but the workspace.

use crate::config::Limits;
use crate::engine::EngineConfig;
use crate::lang::{self, REQUEST_FD, RESULT_FD, Request};
use crate::reaper::Reaper;
use crate::sandbox::bwrap::{BwrapOptions, EGRESS_MOUNT, SUPERVISOR_PATH};
use crate::supervisor::{self, ENV_FILE, Interrupt, SUBCOMMAND, SupervisorArgs};
use rustix::fs::MemfdFlags;
use sandbox_core::Language;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// Descriptor numbers inside bwrap's process (besides [`RESULT_FD`] and [`REQUEST_FD`]).
const STATUS_FD: RawFd = 4;
const SECCOMP_FD: RawFd = 5;
const INFO_FD: RawFd = 7;
const TERMINAL_FD: RawFd = 8;
/// Descriptors are first moved at or above this, clear of the numbers above.
const HIGH_FD: RawFd = 64;

/// Starts instances; one per executor, shared by executions, contexts and the spare pool.
pub struct Launcher {
    cfg: EngineConfig,
    seccomp: Vec<u8>,
    reaper: Arc<Reaper>,
    next: AtomicU64,
}

impl Launcher {
    /// A launcher for sandboxes as `cfg` describes them; empties the scratch directory.
    pub fn new(cfg: EngineConfig, reaper: Arc<Reaper>) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(&cfg.scratch) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&cfg.scratch)?;
        Ok(Launcher {
            seccomp: crate::sandbox::seccomp::user_code_filter().to_bytes(),
            cfg,
            reaper,
            next: AtomicU64::new(1),
        })
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The collector of processes nobody waits for.
    pub fn reaper(&self) -> &Arc<Reaper> {
        &self.reaper
    }

    /// Which set of installed packages `PYTHONPATH` leads to now (the target of the `site`
    /// link an install moves); an interpreter started before an install would miss the new
    /// set's `.pth` files.
    pub fn packages(&self) -> Option<PathBuf> {
        std::fs::read_link(self.cfg.deps.as_ref()?.join(sandbox_protocol::DEPS_CURRENT)).ok()
    }

    /// The egress proxy's socket, when the container has one now: a sandbox started now gets
    /// the relay ([`crate::egress`]), one started without it never does.
    pub fn egress(&self) -> Option<PathBuf> {
        crate::egress::socket_in(&self.cfg.egress_dir)
    }

    /// The environment the sandbox starts with. The session's own variables are not part of
    /// it: the supervisor adds them for the runner alone (see [`ENV_FILE`]), over these.
    fn environment(&self, egress: bool) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_owned(), lang::SANDBOX_PATH.to_owned()),
            ("HOME".to_owned(), "/tmp".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
        ];
        if self.cfg.deps.is_some() {
            env.push(("PYTHONPATH".to_owned(), sandbox_protocol::DEPS_PYTHONPATH.to_owned()));
        }
        if egress {
            env.extend(crate::egress::environment());
        }
        env
    }

    fn bwrap_options(&self, program: &Program, dir: &Path, egress: Option<&Path>) -> BwrapOptions {
        let l: &Limits = &self.cfg.limits;
        let supervisor = SupervisorArgs {
            processes: l.max_processes,
            open_files: l.max_open_files,
            file_size: l.max_file_size_mb << 20,
            status_fd: STATUS_FD,
            interrupt: program.interrupt,
            program_fds: if program.runner { vec![RESULT_FD, REQUEST_FD] } else { Vec::new() },
            terminal: program.terminal.is_some().then_some(TERMINAL_FD),
            egress: egress.map(|socket| {
                let name = socket.file_name().unwrap_or_default().to_string_lossy();
                format!("{EGRESS_MOUNT}/{name}")
            }),
        };
        let mut command: Vec<OsString> = vec![SUPERVISOR_PATH.into(), SUBCOMMAND.into()];
        command.extend(supervisor.to_args());
        command.extend(program.command.iter().cloned());
        BwrapOptions {
            bwrap: self.cfg.bwrap.clone(),
            system: self.cfg.system.clone(),
            workspace: self.cfg.workspace.clone(),
            deps: self.cfg.deps.clone(),
            egress: egress.map(|_| self.cfg.egress_dir.clone()),
            tmp_size_bytes: l.tmp_size_mb << 20,
            proc_masks: self.cfg.proc_masks.clone(),
            env: self.environment(egress.is_some()),
            seccomp_fd: SECCOMP_FD,
            info_fd: INFO_FD,
            sandbox_dir: dir.to_owned(),
            supervisor: self.cfg.supervisor.clone(),
            chdir: program.cwd.clone(),
            command,
        }
    }

    /// Starts a sandbox for `language` whose runner gets `env`. It returns as soon as bwrap is
    /// spawned; the runner reads its request whenever it is ready.
    pub fn start(&self, language: Language, env: &BTreeMap<String, String>) -> std::io::Result<Instance> {
        let launch = lang::launch(language);
        let mut command = vec![OsString::from(launch.program)];
        command.extend(launch.args.iter().map(OsString::from));
        let program = Program {
            command,
            files: launch.files,
            interrupt: launch.interrupt,
            runner: true,
            cwd: sandbox_protocol::WORKSPACE_DIR.to_owned(),
            stdin: None,
            terminal: None,
            execution: None,
        };
        self.spawn(program, env)
    }

    /// Starts a sandbox running `program` with `env` (the supervisor hands the variables to
    /// the program alone). It returns as soon as bwrap is spawned.
    pub fn spawn(&self, program: Program, env: &BTreeMap<String, String>) -> std::io::Result<Instance> {
        let dir = ScratchDir::create(
            self.cfg.scratch.join(format!("sb-{}", self.next.fetch_add(1, Ordering::Relaxed))),
        )?;
        for (name, source) in program.files {
            dir.write(name, source.as_bytes())?;
        }
        let egress = self.egress();
        if egress.is_some() {
            dir.write(
                in_sandbox_dir(crate::egress::NODE_PRELOAD),
                crate::egress::NODE_PRELOAD_SOURCE.as_bytes(),
            )?;
        }
        if let Some(id) = &program.execution {
            dir.write(in_sandbox_dir(crate::egress::EXECUTION_FILE), id.as_bytes())?;
        }
        let session_env: Vec<(&String, &String)> = env.iter().collect();
        dir.write(in_sandbox_dir(ENV_FILE), &serde_json::to_vec(&session_env)?)?;
        // The mount point of the supervisor's executable.
        dir.write(in_sandbox_dir(SUPERVISOR_PATH), b"")?;

        let seccomp = memfd("seccomp", &self.seccomp)?;
        let cloexec = rustix::pipe::PipeFlags::CLOEXEC;
        let (results_rx, results_tx) = rustix::pipe::pipe_with(cloexec)?;
        let (status_rx, status_tx) = rustix::pipe::pipe_with(cloexec)?;
        let (requests_rx, requests_tx) = rustix::pipe::pipe_with(cloexec)?;
        let (info_rx, info_tx) = rustix::pipe::pipe_with(cloexec)?;

        // Map each descriptor to its number in bwrap's process (moved high first, so no target
        // number can collide with a source).
        let mut keep: Vec<OwnedFd> = Vec::new();
        let mut map: Vec<(RawFd, RawFd)> = Vec::new();
        for (fd, target) in [
            (&results_tx, RESULT_FD),
            (&status_tx, STATUS_FD),
            (&seccomp, SECCOMP_FD),
            (&requests_rx, REQUEST_FD),
            (&info_tx, INFO_FD),
        ]
        .into_iter()
        .chain(program.terminal.as_ref().map(|t| (t, TERMINAL_FD)))
        {
            let high = rustix::io::fcntl_dupfd_cloexec(fd, HIGH_FD)?;
            map.push((high.as_raw_fd(), target));
            keep.push(high);
        }

        let (bwrap, args) = self.bwrap_options(&program, dir.path(), egress.as_deref()).to_command_line();
        let stdin = match program.stdin {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        };
        let mut cmd = std::process::Command::new(bwrap);
        cmd.args(args)
            .env_clear()
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for &(from, to) in &map {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // User code is the first choice of the OOM killer, never the executor.
                let f = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if f >= 0 {
                    libc::write(f, b"1000".as_ptr().cast(), 4);
                    libc::close(f);
                }
                Ok(())
            });
        }
        let mut child = self.reaper.spawn_owned(cmd)?;
        // The child has its copies; ours must close so the pipes report end-of-file.
        drop((keep, seccomp, results_tx, status_tx, requests_rx, info_tx, program.terminal));
        let pid = child.id() as libc::pid_t;
        let process = SandboxProcess::watch(&child, pid, self.reaper.clone(), dir)?;
        rustix::io::ioctl_fionbio(&requests_tx, true)?;
        Ok(Instance {
            env: env.clone(),
            packages: self.packages(),
            egress: egress.is_some(),
            started: Instant::now(),
            stdout: pipe::Receiver::from_owned_fd(child.stdout.take().expect("piped").into())?,
            stderr: pipe::Receiver::from_owned_fd(child.stderr.take().expect("piped").into())?,
            results: pipe::Receiver::from_owned_fd(results_rx)?,
            status: pipe::Receiver::from_owned_fd(status_rx)?,
            requests: Some(requests_tx),
            info: Some(pipe::Receiver::from_owned_fd(info_rx)?),
            process,
        })
    }
}

/// What a sandbox runs under its supervisor.
pub struct Program {
    /// The executable, looked up on the sandbox's `PATH`, and its arguments.
    pub command: Vec<OsString>,
    /// Files written to the instance's directory before it starts (a runner's sources).
    pub files: &'static [(&'static str, &'static str)],
    /// Whom the signals the supervisor forwards reach.
    pub interrupt: Interrupt,
    /// Whether it is a language runner, handed the request and result descriptors.
    pub runner: bool,
    /// The directory it starts in, as the sandbox sees it.
    pub cwd: String,
    /// Its standard input (bwrap's, handed on); empty when `None`.
    pub stdin: Option<OwnedFd>,
    /// A terminal (a pseudo-terminal's other side) to run it on, as its standard input,
    /// output and error.
    pub terminal: Option<OwnedFd>,
    /// The id the egress relay names its connections by, when known before the sandbox starts
    /// (a runner's is given with its work: [`Instance::name_execution`]).
    pub execution: Option<String>,
}

/// A sandbox with its program (a language's runner, waiting for work or doing it, or a
/// process).
pub struct Instance {
    env: BTreeMap<String, String>,
    packages: Option<PathBuf>,
    egress: bool,
    started: Instant,
    /// The sandbox's standard output.
    pub stdout: pipe::Receiver,
    /// Its standard error.
    pub stderr: pipe::Receiver,
    /// The runner's messages ([`lang::messages`]).
    pub results: pipe::Receiver,
    /// The supervisor's status: [`supervisor::STARTED`], then its report.
    pub status: pipe::Receiver,
    requests: Option<OwnedFd>,
    info: Option<pipe::Receiver>,
    /// bwrap's process.
    pub process: SandboxProcess,
}

impl Instance {
    /// Whether it can serve work for `env` when `packages` are installed and the egress proxy
    /// is there (`egress`) or not: its runner has that environment, those packages and a relay
    /// exactly when the proxy is there, and it is still alive.
    pub fn serves(&self, env: &BTreeMap<String, String>, packages: &Option<PathBuf>, egress: bool) -> bool {
        self.env == *env && self.packages == *packages && self.egress == egress && !self.process.has_exited()
    }

    /// Names the execution it is about to run, for the egress relay's header.
    pub fn name_execution(&self, id: &str) -> std::io::Result<()> {
        self.write_file(in_sandbox_dir(crate::egress::EXECUTION_FILE), id.as_bytes())
    }

    /// How long ago it was started.
    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Writes a file into its `/sandbox` (the code, its inputs).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.process.dir.write(name, bytes)
    }

    /// Sends the runner a request. Fails when the runner is gone or not reading (the request
    /// pipe is full), which the caller then sees as the sandbox ending.
    pub fn send(&self, request: Request<'_>) -> std::io::Result<()> {
        let fd = self.requests.as_ref().ok_or_else(|| std::io::Error::other("requests are closed"))?;
        let line = request.line();
        let n = rustix::io::write(fd, line.as_bytes())?;
        if n < line.len() {
            return Err(std::io::Error::other("the runner is not reading its requests"));
        }
        Ok(())
    }

    /// Closes the request descriptor: the runner reads end-of-file.
    pub fn close_requests(&mut self) {
        self.requests = None;
    }

    /// The sandbox's supervisor, as bwrap reported it. Waits for bwrap's report the first time.
    pub async fn supervisor(&mut self) -> std::io::Result<Supervisor> {
        let mut info = self.info.take().ok_or_else(|| std::io::Error::other("already asked"))?;
        let mut text = Vec::new();
        (&mut info).take(64 * 1024).read_to_end(&mut text).await?;
        let pid = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("child-pid")?.as_i64())
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "bwrap did not report its child: {:?}",
                    String::from_utf8_lossy(&text)
                ))
            })?;
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?,
            rustix::process::PidfdFlags::empty(),
        )?;
        Ok(Supervisor { pid, pidfd: Arc::new(pidfd) })
    }

    /// What the sandbox wrote on standard error so far, without waiting for more.
    pub fn stderr_so_far(&mut self) -> String {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.stderr.try_read(&mut buf) {
            bytes.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// What the supervisor reported, once the sandbox has ended: whether the program started,
    /// and how it ended.
    pub async fn status_report(&mut self) -> std::io::Result<(bool, Option<supervisor::SupervisorReport>)> {
        let mut bytes = Vec::new();
        (&mut self.status).take(4096).read_to_end(&mut bytes).await?;
        Ok(supervisor::parse_status(&bytes))
    }
}

/// The sandbox's first process, the PID 1 of its namespace.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// Its pid, as the executor sees it.
    pub pid: libc::pid_t,
    pidfd: Arc<OwnedFd>,
}

impl Supervisor {
    /// Has it pass `SIGINT` on to the program (the runner): an interrupt.
    pub fn interrupt(&self) -> std::io::Result<()> {
        self.forward(rustix::process::Signal::INT)
    }

    /// Has it pass `signal` (one of [`supervisor::FORWARDED`]) on to whom its program's
    /// [`Interrupt`] names.
    pub fn forward(&self, signal: rustix::process::Signal) -> std::io::Result<()> {
        Ok(rustix::process::pidfd_send_signal(&*self.pidfd, signal)?)
    }
}

/// bwrap's process: waited for by its owner, killed and left to the reaper when dropped
/// before that. Its scratch directory goes with it.
pub struct SandboxProcess {
    pid: libc::pid_t,
    exited: AsyncFd<OwnedFd>,
    reaped: bool,
    reaper: Arc<Reaper>,
    dir: ScratchDir,
}

/// A way to kill a sandbox that does not borrow it.
#[derive(Debug, Clone, Copy)]
pub struct Killer(libc::pid_t);

impl Killer {
    /// Kills bwrap and its process group; bwrap's `--die-with-parent` and the end of its PID
    /// namespace take everything inside with it.
    pub fn kill(self) {
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

impl SandboxProcess {
    fn watch(
        child: &std::process::Child,
        pid: libc::pid_t,
        reaper: Arc<Reaper>,
        dir: ScratchDir,
    ) -> std::io::Result<Self> {
        let opened = rustix::process::pidfd_open(
            rustix::process::Pid::from_child(child),
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(std::io::Error::from)
        // SAFETY: the OwnedFd is moved in and stays open, unchanged, for the AsyncFd's life.
        .and_then(|fd| {
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
        match opened {
            Ok(exited) => Ok(SandboxProcess { pid, exited, reaped: false, reaper, dir }),
            Err(e) => {
                // Nothing here will wait for it: leave it to the reaper.
                reaper.release(pid);
                Killer(pid).kill();
                Err(e)
            }
        }
    }

    /// The handle that kills it.
    pub fn killer(&self) -> Killer {
        Killer(self.pid)
    }

    /// Whether bwrap has ended (without collecting it).
    pub fn has_exited(&self) -> bool {
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        matches!(waitid(WaitId::PidFd(self.exited.get_ref().as_fd()), options), Ok(Some(_)))
    }

    /// Waits for bwrap to end and collects its exit status and resource use. bwrap waits for
    /// the supervisor, the supervisor for every process of the sandbox: the kernel's count of
    /// bwrap's use is the whole sandbox's, out of user code's reach. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<(i32, libc::rusage)> {
        loop {
            let mut guard = self.exited.readable().await?;
            let reaped = reap(self.pid);
            if !matches!(reaped, Ok(None)) {
                self.reaped = true;
                self.reaper.release(self.pid);
            }
            match reaped? {
                Some(done) => return Ok(done),
                None => guard.clear_ready(),
            }
        }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        if !self.reaped {
            self.reaper.release(self.pid);
            Killer(self.pid).kill();
            // Collected now if it is already gone, else by the reaper when it goes.
            let _ = reap(self.pid);
        }
    }
}

/// Collects the exit status and resource use of `pid` if it has ended.
fn reap(pid: libc::pid_t) -> std::io::Result<Option<(i32, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    match unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } {
        0 => Ok(None),
        p if p == pid => Ok(Some((status, usage))),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The name, in the instance's directory, of a file the sandbox sees at `path` under `/sandbox`.
fn in_sandbox_dir(path: &str) -> &str {
    path.strip_prefix(lang::SANDBOX_DIR).and_then(|p| p.strip_prefix('/')).expect("a path under /sandbox")
}

/// An instance's directory in the scratch directory, removed with it.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(path: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir(&path)?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` whole, then renames it into place: the runner never reads half a file.
    fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.0.join(format!(".{name}.new"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, self.0.join(name))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn memfd(name: &str, bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    rustix::fs::seek(f.as_fd(), rustix::fs::SeekFrom::Start(0))?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_files_are_named_in_the_instance_directory() {
        assert_eq!(in_sandbox_dir(ENV_FILE), "env.json");
        assert_eq!(in_sandbox_dir(SUPERVISOR_PATH), "supervisor");
        assert_eq!(in_sandbox_dir(crate::egress::EXECUTION_FILE), "execution");
        assert_eq!(in_sandbox_dir(crate::egress::NODE_PRELOAD), "egress-proxy.js");
    }

    #[test]
    fn scratch_files_appear_whole_and_go_with_their_directory() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("sb-1");
        let dir = ScratchDir::create(path.clone()).unwrap();
        dir.write("main.py", b"print(1)").unwrap();
        dir.write("main.py", b"print(2)").unwrap();
        let names: Vec<_> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["main.py"], "no temporary file is left");
        assert_eq!(std::fs::read(path.join("main.py")).unwrap(), b"print(2)");
        assert!(ScratchDir::create(path.clone()).is_err(), "a directory is never shared");
        drop(dir);
        assert!(!path.exists());
    }
}
