//! Runs executions: prepares the sandbox's inputs, starts bwrap, captures output, enforces the
//! timeout, collects resource use, and turns the ending into an [`ExecResult`].

use crate::capture::{Captured, Utf8Chunks, capture};
use crate::config::Limits;
use crate::error::Error;
use crate::lang::{self, Launch, RESULT_FD};
use crate::outcome::{self, Ended, Exit};
use crate::reaper::Reaper;
use crate::registry::{Registry, Ticket};
use crate::sandbox::bwrap::{BwrapOptions, DataFile, ProcMask, SystemMount};
use crate::sandbox::cgroup::MemoryCgroup;
use crate::supervisor::{self, ENV_FILE, SUBCOMMAND, SupervisorArgs, SupervisorReport};
use crate::workspace::Workspace;
use crate::workspace::snapshot::{MAX_ENTRIES, Snapshot};
use chrono::Utc;
use rustix::fs::MemfdFlags;
use sandbox_core::{ExecutionStatus, Language};
use sandbox_protocol::{ErrorCode, ExecMetrics, ExecRequest, ExecResult, StreamEvent, contract};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// Where the supervisor (this executable) appears inside the sandbox.
const SUPERVISOR_PATH: &str = "/sandbox/supervisor";
/// Descriptor numbers inside bwrap's process.
const STATUS_FD: RawFd = 4;
const SECCOMP_FD: RawFd = 5;
const FIRST_DATA_FD: RawFd = 6;
/// Descriptors are first moved at or above this, clear of the numbers above.
const HIGH_FD: RawFd = 64;
/// How long output pipes may stay open after the process tree is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Most variables and bytes of environment an execution may add.
const MAX_ENV_VARS: usize = 256;
const MAX_ENV_BYTES: usize = 64 * 1024;

/// How the sandbox is built, fixed at start-up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The bwrap binary.
    pub bwrap: PathBuf,
    /// The workspace directory.
    pub workspace: PathBuf,
    /// Installed packages, if any.
    pub deps: Option<PathBuf>,
    /// Per-execution limits.
    pub limits: Limits,
    /// The system directories to expose.
    pub system: Vec<SystemMount>,
    /// What each sandbox's private `/proc` hides.
    pub proc_masks: Vec<ProcMask>,
    /// The executable run as each sandbox's supervisor (this binary).
    pub supervisor: PathBuf,
    /// Languages whose interpreters exist.
    pub languages: Vec<Language>,
    /// The container's memory cgroup, when readable.
    pub cgroup: Option<MemoryCgroup>,
}

/// The execution machinery and the table of executions.
pub struct Engine {
    cfg: EngineConfig,
    seccomp: Vec<u8>,
    workspace: Arc<Workspace>,
    /// Every known execution.
    pub registry: Registry,
    /// Collects the processes executions leave behind; knows the ones the engine waits for.
    pub reaper: Arc<Reaper>,
    started: Instant,
}

impl Engine {
    /// Builds the engine; fails if the workspace cannot be opened.
    pub fn new(cfg: EngineConfig, retention: usize) -> std::io::Result<Self> {
        let workspace = Arc::new(Workspace::open(&cfg.workspace)?);
        Ok(Engine {
            seccomp: crate::sandbox::seccomp::user_code_filter().to_bytes(),
            registry: Registry::new(retention, cfg.limits.max_concurrent),
            workspace,
            reaper: Arc::new(Reaper::default()),
            started: Instant::now(),
            cfg,
        })
    }

    /// The workspace.
    pub fn workspace(&self) -> &Arc<Workspace> {
        &self.workspace
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The memory limit handlers are told about: configured, or the container's cgroup limit
    /// as it is now (the control plane may change it on a running sandbox).
    fn memory_limit_mb(&self) -> Option<u64> {
        self.cfg.limits.memory_limit_mb.or_else(|| self.cfg.cgroup.as_ref()?.limit_mb())
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Checks a request before anything runs.
    pub fn validate(&self, req: &ExecRequest) -> Result<(), Error> {
        if !contract::valid_id(&req.execution_id) {
            return Err(Error::bad_request("execution_id must be 1-64 characters of [A-Za-z0-9_-]"));
        }
        if !self.cfg.languages.contains(&req.language) {
            return Err(Error::new(
                ErrorCode::LanguageUnavailable,
                format!("{} is not installed in this sandbox's image", req.language),
            ));
        }
        let max = self.cfg.limits.max_timeout_secs * 1000;
        if req.timeout_ms == 0 || req.timeout_ms > max {
            return Err(Error::bad_request(format!("timeout_ms must be between 1 and {max}")));
        }
        if req.env.len() > MAX_ENV_VARS
            || req.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_ENV_BYTES
        {
            return Err(Error::bad_request(format!(
                "at most {MAX_ENV_VARS} environment variables and {MAX_ENV_BYTES} bytes"
            )));
        }
        for (k, v) in &req.env {
            contract::check_env(k, v)
                .map_err(|e| Error::bad_request(format!("invalid environment variable: {e}")))?;
        }
        Ok(())
    }

    /// Runs the execution `ticket` stands for and records its result. Output chunks go to
    /// `events` as they arrive.
    pub async fn run(
        &self,
        ticket: Ticket,
        req: ExecRequest,
        events: Option<UnboundedSender<StreamEvent>>,
    ) -> Arc<ExecResult> {
        let kill = ticket.kill_token();
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = match self.run_sandboxed(&req, events, kill, started_at, clock).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(execution_id = %req.execution_id, error = %e, "sandbox failed");
                failed_to_start(&req, started_at, clock, e.to_string())
            }
        };
        tracing::info!(
            execution_id = %req.execution_id,
            status = %result.status,
            duration_ms = result.metrics.duration_ms,
            "execution finished"
        );
        ticket.finish(&self.registry, result)
    }

    /// The environment the sandbox starts with. The session's own variables are not part of it:
    /// the supervisor adds them for the user's program alone (see [`ENV_FILE`]).
    fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_owned(), lang::SANDBOX_PATH.to_owned()),
            ("HOME".to_owned(), "/tmp".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
        ];
        if self.cfg.deps.is_some() {
            env.push(("PYTHONPATH".to_owned(), sandbox_protocol::DEPS_PYTHONPATH.to_owned()));
        }
        env
    }

    async fn run_sandboxed(
        &self,
        req: &ExecRequest,
        events: Option<UnboundedSender<StreamEvent>>,
        kill: CancellationToken,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
    ) -> std::io::Result<ExecResult> {
        let ws = self.workspace.clone();
        let before = tokio::task::spawn_blocking(move || Snapshot::take(&ws, MAX_ENTRIES)).await?;
        let launch = lang::launch(req.language);
        let limits = &self.cfg.limits;
        let memory_limit_mb = self.memory_limit_mb();

        // Inputs, each in its own memory file that bwrap copies into the sandbox.
        let context = serde_json::json!({
            "aws_request_id": req.execution_id,
            "function_name": req.function_name.clone().unwrap_or_else(|| req.execution_id.clone()),
            "memory_limit_in_mb": memory_limit_mb,
            "deadline_ms": Utc::now().timestamp_millis() + req.timeout_ms as i64,
        });
        let event = req.event.clone().unwrap_or_else(|| serde_json::json!({}));
        let session_env: Vec<(&String, &String)> = req.env.iter().collect();
        let mut data: Vec<(&'static str, Vec<u8>)> = vec![
            (launch.code_path, req.code.clone().into_bytes()),
            ("/sandbox/event.json", serde_json::to_vec(&event)?),
            ("/sandbox/context.json", serde_json::to_vec(&context)?),
            (ENV_FILE, serde_json::to_vec(&session_env)?),
        ];
        if let Some((path, source)) = launch.runner {
            data.push((path, source.as_bytes().to_vec()));
        }
        let data_fds =
            data.iter().map(|(name, bytes)| memfd(name, bytes)).collect::<std::io::Result<Vec<_>>>()?;
        let seccomp_fd = memfd("seccomp", &self.seccomp)?;
        let (result_rx, result_tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (status_rx, status_tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;

        // Map each descriptor to its number in bwrap's process (moved high first, so no target
        // number can collide with a source).
        let mut keep: Vec<OwnedFd> = Vec::new();
        let mut map: Vec<(RawFd, RawFd)> = Vec::new();
        let mut place = |fd: &OwnedFd, target: RawFd| -> std::io::Result<()> {
            let high = rustix::io::fcntl_dupfd_cloexec(fd, HIGH_FD)?;
            map.push((high.as_raw_fd(), target));
            keep.push(high);
            Ok(())
        };
        place(&result_tx, RESULT_FD)?;
        place(&status_tx, STATUS_FD)?;
        place(&seccomp_fd, SECCOMP_FD)?;
        let mut files = Vec::new();
        for (i, ((dest, _), fd)) in data.iter().zip(&data_fds).enumerate() {
            let target = FIRST_DATA_FD + i as RawFd;
            place(fd, target)?;
            files.push(DataFile { fd: target, dest });
        }

        let (program, args) = self.bwrap_options(&launch, files).to_command_line();
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let fd_map = map.clone();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for &(from, to) in &fd_map {
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

        let oom_before = self.cfg.cgroup.as_ref().and_then(MemoryCgroup::oom_kills);
        if let Some(tx) = &events {
            let _ = tx.send(StreamEvent::Started { execution_id: req.execution_id.clone(), started_at });
        }
        let mut child = self.reaper.spawn_owned(|| cmd.spawn())?;
        // The child has its copies; ours must close so the pipes report end-of-file.
        drop((keep, data_fds, seccomp_fd, result_tx, status_tx));
        let pid = child.id() as libc::pid_t;
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_child(&child),
            rustix::process::PidfdFlags::empty(),
        )
        .inspect_err(|_| {
            // Nothing here will wait for it: leave it to the reaper.
            kill_tree(pid);
            self.reaper.release(pid);
        })?;
        // SAFETY: the OwnedFd is moved in and stays open, unchanged, for the AsyncFd's life.
        let exited = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;

        let out_cap = limits.max_output_bytes;
        let stdout = pipe::Receiver::from_owned_fd(child.stdout.take().expect("piped").into())?;
        let stderr = pipe::Receiver::from_owned_fd(child.stderr.take().expect("piped").into())?;
        let stdout_task =
            tokio::spawn(pump(stdout, out_cap, events.clone(), |data| StreamEvent::Stdout { data }));
        let stderr_task = tokio::spawn(pump(stderr, out_cap, events, |data| StreamEvent::Stderr { data }));
        let result_cap = limits.max_result_bytes;
        let result_task =
            tokio::spawn(capture(pipe::Receiver::from_owned_fd(result_rx)?, result_cap + 1, |_| {}));
        let status_task = tokio::spawn(capture(pipe::Receiver::from_owned_fd(status_rx)?, 4096, |_| {}));

        let deadline = tokio::time::sleep(Duration::from_millis(req.timeout_ms));
        tokio::pin!(deadline);
        let (mut timed_out, mut killed) = (false, false);
        // bwrap waits for the supervisor, the supervisor for every process of the sandbox: the
        // kernel's count of bwrap's resource use is the whole sandbox's, out of user code's reach.
        let (status, usage) = loop {
            tokio::select! {
                guard = exited.readable() => {
                    let mut guard = guard?;
                    let reaped = reap(pid);
                    if !matches!(reaped, Ok(None)) {
                        self.reaper.release(pid);
                    }
                    match reaped? {
                        Some(done) => break done,
                        None => guard.clear_ready(),
                    }
                }
                _ = &mut deadline, if !timed_out && !killed => {
                    timed_out = true;
                    kill_tree(pid);
                }
                _ = kill.cancelled(), if !timed_out && !killed => {
                    killed = true;
                    kill_tree(pid);
                }
            }
        };
        let duration = clock.elapsed();

        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            (stdout_task.await, stderr_task.await, result_task.await, status_task.await)
        })
        .await;
        let (stdout, stderr, report, status_bytes) = match drained {
            Ok((Ok(Ok(o)), Ok(Ok(e)), Ok(Ok(r)), Ok(Ok(s)))) => (o, e, r, s),
            _ => return Err(std::io::Error::other("output pipes stayed open after the sandbox ended")),
        };
        let oom_killed = match (oom_before, self.cfg.cgroup.as_ref().and_then(MemoryCgroup::oom_kills)) {
            (Some(a), Some(b)) => b > a,
            _ => false,
        };
        let ws = self.workspace.clone();
        let after = tokio::task::spawn_blocking(move || Snapshot::take(&ws, MAX_ENTRIES)).await?;
        let changes = before.diff(&after);

        // Only the supervisor saw how the program ended; without its report the outcome is
        // unknown (bwrap's status only tells how the supervisor ended).
        let (started, supervisor_report) = supervisor::parse_status(&status_bytes.bytes);
        let exit = supervisor_report.and_then(|r| match r {
            SupervisorReport { signal: Some(s), .. } => Some(Exit::Signal(s)),
            SupervisorReport { exit_code, .. } => exit_code.map(Exit::Code),
        });
        let sandbox_exit = if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        };
        let mut verdict = outcome::classify(&Ended {
            exit,
            sandbox_exit,
            timed_out,
            killed,
            oom_killed,
            report: lang::parse_report(&report.bytes, report.total, result_cap),
            timeout_ms: req.timeout_ms,
            memory_limit_mb,
        });
        if !started && !timed_out && !killed {
            // bwrap never reached the program: the sandbox itself could not be built.
            let why = String::from_utf8_lossy(&stderr.bytes).trim().to_owned();
            tracing::error!(execution_id = %req.execution_id, %why, "sandbox setup failed");
            verdict.status = ExecutionStatus::Crashed;
            verdict.error_message = Some(format!("the sandbox could not be started: {why}"));
        }
        Ok(ExecResult {
            execution_id: req.execution_id.clone(),
            status: verdict.status,
            exit_code: verdict.exit_code,
            signal: verdict.signal,
            stdout_truncated: stdout.truncated(),
            stderr_truncated: stderr.truncated(),
            stdout: String::from_utf8_lossy(&stdout.bytes).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.bytes).into_owned(),
            return_value: verdict.return_value,
            error_message: verdict.error_message,
            timed_out,
            oom_killed,
            started_at,
            finished_at: Utc::now(),
            metrics: ExecMetrics {
                duration_ms: duration.as_secs_f64() * 1000.0,
                cpu_time_ms: timeval_ms(usage.ru_utime) + timeval_ms(usage.ru_stime),
                peak_memory_mb: usage.ru_maxrss as f64 / 1024.0,
            },
            files: changes.files,
            files_truncated: changes.truncated,
            files_skipped: changes.skipped,
        })
    }

    fn bwrap_options(&self, launch: &Launch, files: Vec<DataFile>) -> BwrapOptions {
        let l = &self.cfg.limits;
        let supervisor = SupervisorArgs {
            processes: l.max_processes,
            open_files: l.max_open_files,
            file_size: l.max_file_size_mb << 20,
            status_fd: STATUS_FD,
        };
        let mut command: Vec<OsString> = vec![SUPERVISOR_PATH.into(), SUBCOMMAND.into()];
        command.extend(supervisor.to_args());
        command.push(launch.program.into());
        command.extend(launch.args.iter().map(OsString::from));
        let mut system = self.cfg.system.clone();
        system.push(SystemMount::ReadOnly { src: self.cfg.supervisor.clone(), dest: SUPERVISOR_PATH.into() });
        BwrapOptions {
            bwrap: self.cfg.bwrap.clone(),
            system,
            workspace: self.cfg.workspace.clone(),
            deps: self.cfg.deps.clone(),
            tmp_size_bytes: l.tmp_size_mb << 20,
            proc_masks: self.cfg.proc_masks.clone(),
            env: self.environment(),
            seccomp_fd: SECCOMP_FD,
            files,
            command,
        }
    }
}

/// A result for an execution whose sandbox could not even be prepared.
fn failed_to_start(
    req: &ExecRequest,
    started_at: chrono::DateTime<Utc>,
    clock: Instant,
    why: String,
) -> ExecResult {
    ExecResult {
        execution_id: req.execution_id.clone(),
        status: ExecutionStatus::Crashed,
        exit_code: None,
        signal: None,
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        return_value: None,
        error_message: Some(format!("the sandbox could not be started: {why}")),
        timed_out: false,
        oom_killed: false,
        started_at,
        finished_at: Utc::now(),
        metrics: ExecMetrics { duration_ms: clock.elapsed().as_secs_f64() * 1000.0, ..Default::default() },
        files: vec![],
        files_truncated: false,
        files_skipped: 0,
    }
}

/// Reads one output pipe to its end, forwarding kept chunks as stream events.
async fn pump(
    r: pipe::Receiver,
    cap: usize,
    events: Option<UnboundedSender<StreamEvent>>,
    wrap: fn(String) -> StreamEvent,
) -> std::io::Result<Captured> {
    let mut text = Utf8Chunks::default();
    let captured = capture(r, cap, |chunk| {
        if let Some(tx) = &events {
            let s = text.push(chunk);
            if !s.is_empty() {
                let _ = tx.send(wrap(s));
            }
        }
    })
    .await?;
    if let Some(tx) = &events {
        let rest = text.finish();
        if !rest.is_empty() {
            let _ = tx.send(wrap(rest));
        }
    }
    Ok(captured)
}

fn memfd(name: &str, bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    rustix::fs::seek(f.as_fd(), rustix::fs::SeekFrom::Start(0))?;
    Ok(f.into())
}

/// Kills bwrap and its process group; bwrap's `--die-with-parent` and the end of its PID
/// namespace take everything inside with it.
fn kill_tree(pid: libc::pid_t) {
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
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

fn timeval_ms(t: libc::timeval) -> f64 {
    t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0
}
