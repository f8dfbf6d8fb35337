//! Runs stateless executions: takes a sandbox with its runner already started (a spare, or a
//! new one), hands it the code, captures output and display outputs, enforces the timeout,
//! collects resource use, and turns the ending into an [`ExecResult`]. Contexts are in
//! [`crate::context`].

use crate::capture::{Captured, Output};
use crate::config::{Interpreters, Limits};
use crate::context::Contexts;
use crate::error::Error;
use crate::instance::{Instance, Launcher, SandboxProcess};
use crate::lang::{self, Collected, LineSplitter, Request};
use crate::outcome::{self, Ended, Exit};
use crate::process::Processes;
use crate::reaper::Reaper;
use crate::registry::{Registry, Ticket};
use crate::sandbox::bwrap::{ProcMask, SystemMount};
use crate::sandbox::cgroup::MemoryCgroup;
use crate::spares::Spares;
use crate::supervisor;
use crate::workspace::Workspace;
use crate::workspace::snapshot::{Changes, MAX_ENTRIES, Snapshot};
use crate::workspace::watch::Watchers;
use chrono::Utc;
use sandbox_core::{ExecutionStatus, Language};
use sandbox_protocol::{ErrorCode, ExecEvent, ExecMetrics, ExecRequest, ExecResult, StreamEvent, contract};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long output pipes may stay open after the process tree is gone.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How long a sandbox whose execution has been answered may take to end before it is killed.
pub const TEARDOWN_GRACE: Duration = Duration::from_secs(5);
/// Most variables and bytes of environment an execution may add.
const MAX_ENV_VARS: usize = 256;
const MAX_ENV_BYTES: usize = 64 * 1024;

/// Where an execution's events go, when someone streams them.
pub type Events = Option<UnboundedSender<ExecEvent>>;

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
    /// Contexts and spares.
    pub interpreters: Interpreters,
    /// The system directories to expose.
    pub system: Vec<SystemMount>,
    /// What each sandbox's private `/proc` hides.
    pub proc_masks: Vec<ProcMask>,
    /// The executable run as each sandbox's supervisor (this binary).
    pub supervisor: PathBuf,
    /// The executor's own directory of per-sandbox directories.
    pub scratch: PathBuf,
    /// Languages whose interpreters exist.
    pub languages: Vec<Language>,
    /// The container's memory cgroup, when readable.
    pub cgroup: Option<MemoryCgroup>,
    /// The container's egress directory: a sandbox started while it holds the proxy's socket
    /// gets the egress relay.
    pub egress_dir: PathBuf,
}

/// Where a stateless execution's sandbox comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A spare when one fits (and the language counts as used, so spares follow).
    Spare,
    /// A new one, leaving the spares alone (the start-up probe).
    Fresh,
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The workspace directory cannot be opened.
    #[error("the workspace cannot be opened: {0}")]
    Workspace(std::io::Error),
    /// The scratch directory cannot be emptied or made.
    #[error("the scratch directory cannot be prepared: {0}")]
    Scratch(std::io::Error),
}

/// The execution machinery and the tables of executions and contexts.
pub struct Engine {
    launcher: Arc<Launcher>,
    spares: Arc<Spares>,
    workspace: Arc<Workspace>,
    /// Every known execution.
    pub registry: Registry,
    /// Every context.
    pub contexts: Contexts,
    /// Every process started on its own, running or recently exited.
    pub processes: Processes,
    /// Directory watches.
    pub watchers: Arc<Watchers>,
    /// One per `--max-concurrent`: a stateless execution holds one from before its sandbox is
    /// taken until that sandbox has been reaped, after its answer.
    slots: Arc<Semaphore>,
    started: Instant,
}

impl Engine {
    /// Builds the engine; fails if the workspace or the scratch directory cannot be opened.
    pub fn new(cfg: EngineConfig, retention: usize) -> Result<Self, BuildError> {
        let workspace = Arc::new(Workspace::open(&cfg.workspace).map_err(BuildError::Workspace)?);
        let registry = Registry::new(retention, cfg.limits.max_concurrent);
        let cfg_max_concurrent = cfg.limits.max_concurrent.max(1);
        let contexts = Contexts::new(&cfg.interpreters);
        let processes = Processes::new(cfg.limits.max_running_processes);
        let spare_idle = Duration::from_secs(cfg.interpreters.spare_idle_secs);
        let launcher =
            Arc::new(Launcher::new(cfg, Arc::new(Reaper::default())).map_err(BuildError::Scratch)?);
        Ok(Engine {
            spares: Arc::new(Spares::new(launcher.clone(), spare_idle)),
            launcher,
            registry,
            contexts,
            processes,
            watchers: Arc::new(Watchers::new(workspace.clone())),
            workspace,
            slots: Arc::new(Semaphore::new(cfg_max_concurrent)),
            started: Instant::now(),
        })
    }

    /// The workspace.
    pub fn workspace(&self) -> &Arc<Workspace> {
        &self.workspace
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        self.launcher.config()
    }

    /// Starts sandboxes.
    pub fn launcher(&self) -> &Launcher {
        &self.launcher
    }

    /// Collects the processes executions leave behind; knows the ones the engine waits for.
    pub fn reaper(&self) -> &Arc<Reaper> {
        self.launcher.reaper()
    }

    /// The spare interpreters.
    pub fn spares(&self) -> &Arc<Spares> {
        &self.spares
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The memory limit handlers are told about: configured, or the container's cgroup limit
    /// as it is now (the control plane may change it on a running sandbox).
    pub fn memory_limit_mb(&self) -> Option<u64> {
        let cfg = self.config();
        cfg.limits.memory_limit_mb.or_else(|| cfg.cgroup.as_ref()?.limit_mb())
    }

    /// Processes the container's OOM killer has ended so far.
    pub fn oom_kills(&self) -> Option<u64> {
        self.config().cgroup.as_ref().and_then(MemoryCgroup::oom_kills)
    }

    /// A picture of the workspace, taken off the async runtime.
    pub async fn snapshot(&self) -> std::io::Result<Snapshot> {
        let ws = self.workspace.clone();
        Ok(tokio::task::spawn_blocking(move || Snapshot::take(&ws, MAX_ENTRIES)).await?)
    }

    /// What the runner's messages of one execution may hold.
    pub fn collected(&self) -> Collected {
        let l = &self.config().limits;
        Collected::new(l.max_display_bytes, l.max_result_bytes)
    }

    /// Checks a request before anything runs.
    pub fn validate(&self, req: &ExecRequest) -> Result<(), Error> {
        if !contract::valid_id(&req.execution_id) {
            return Err(Error::bad_request("execution_id must be 1-64 characters of [A-Za-z0-9_-]"));
        }
        self.check_language(req.language)?;
        let max = self.config().limits.max_timeout_secs * 1000;
        if req.timeout_ms == 0 || req.timeout_ms > max {
            return Err(Error::bad_request(format!("timeout_ms must be between 1 and {max}")));
        }
        validate_env(&req.env)
    }

    /// Fails unless `language`'s interpreter is installed.
    pub fn check_language(&self, language: Language) -> Result<(), Error> {
        if self.config().languages.contains(&language) {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::LanguageUnavailable,
            format!("{language} is not installed in this sandbox's image"),
        ))
    }

    /// Starts spares for the languages the executor was told to pre-start.
    pub fn prestart(&self) {
        let languages: Vec<_> = self
            .config()
            .interpreters
            .prestart
            .iter()
            .copied()
            .filter(|l| self.config().languages.contains(l))
            .collect();
        self.spares.prestart(&languages);
    }

    /// Releases idle spares and reclaims idle contexts.
    pub fn tidy(&self) {
        let now = Instant::now();
        self.spares.tidy(now);
        self.contexts.tidy(now);
    }

    /// How often [`tidy`](Self::tidy) is worth calling.
    pub fn tidy_interval(&self) -> Duration {
        let i = &self.config().interpreters;
        let shortest = match i.spare_idle_secs {
            0 => i.context_idle_timeout_secs,
            s => s.min(i.context_idle_timeout_secs),
        };
        (Duration::from_secs(shortest) / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
    }

    /// Ends everything still running: executions (each still gets its result), processes,
    /// contexts and spares.
    pub fn shutdown(&self) {
        self.registry.kill_all();
        self.processes.kill_all();
        self.contexts.clear();
        self.spares.clear();
    }

    /// A sandbox for a stateless execution or a context (a spare's taker then calls
    /// [`Spares::replenish`]).
    pub fn instance(
        &self,
        start: Start,
        language: Language,
        env: &BTreeMap<String, String>,
    ) -> std::io::Result<Instance> {
        match start {
            Start::Spare => self.spares.take(language, env),
            Start::Fresh => self.launcher.start(language, env),
        }
    }

    /// Runs the execution `ticket` stands for and records its result. Output chunks and
    /// display outputs go to `events` as they arrive.
    pub async fn run(
        &self,
        ticket: Ticket,
        req: ExecRequest,
        events: Events,
        start: Start,
    ) -> Arc<ExecResult> {
        let kill = ticket.kill_token();
        // Free at once unless a sandbox of an execution already answered is still ending.
        let slot = self.slots.clone().acquire_owned().await.expect("the slots are never closed");
        let started_at = Utc::now();
        let clock = Instant::now();
        let (result, ending) = match self.run_sandboxed(&req, events, kill, started_at, clock, start).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(execution_id = %req.execution_id, error = %e, "sandbox failed");
                (failed_to_start(&req, started_at, clock, e.to_string()), None)
            }
        };
        self.end_sandbox(ending, slot, (start == Start::Spare).then_some(req.language));
        tracing::info!(
            execution_id = %req.execution_id,
            status = %result.status,
            duration_ms = result.metrics.duration_ms,
            "execution finished"
        );
        ticket.finish(&self.registry, result)
    }

    /// Lets a sandbox whose execution is answered finish ending, off the request path: its
    /// supervisor has collected every other process and reported, so what is left is the
    /// supervisor's exit, the kernel tearing its namespaces down and bwrap's exit. The slot is
    /// given back, and the next spare started, once bwrap is reaped (a sandbox that takes longer
    /// than [`TEARDOWN_GRACE`] is killed and left to the reaper).
    fn end_sandbox(
        &self,
        ending: Option<SandboxProcess>,
        slot: OwnedSemaphorePermit,
        spare: Option<Language>,
    ) {
        let spares = self.spares.clone();
        let finish = move || {
            drop(slot);
            if let Some(language) = spare {
                spares.replenish(language);
            }
        };
        let Some(mut process) = ending else {
            finish();
            return;
        };
        tokio::spawn(async move {
            if tokio::time::timeout(TEARDOWN_GRACE, process.wait()).await.is_err() {
                tracing::warn!("a sandbox did not end after its execution was answered; killing it");
            }
            // Killed and left to the reaper if not reaped above.
            drop(process);
            finish();
        });
    }

    /// Runs the execution; with its result comes the sandbox still ending, when the answer was
    /// known before bwrap exited.
    async fn run_sandboxed(
        &self,
        req: &ExecRequest,
        events: Events,
        kill: CancellationToken,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
        start: Start,
    ) -> std::io::Result<(ExecResult, Option<SandboxProcess>)> {
        let mut instance = self.instance(start, req.language, &req.env)?;
        // Taken now, when the code is about to run, not when the interpreter started: the
        // change list is exactly this execution's.
        let before = self.snapshot().await?;
        let launch = lang::launch(req.language);
        let memory_limit_mb = self.memory_limit_mb();
        let context = serde_json::json!({
            "aws_request_id": req.execution_id,
            "function_name": req.function_name.clone().unwrap_or_else(|| req.execution_id.clone()),
            "memory_limit_in_mb": memory_limit_mb,
            "deadline_ms": Utc::now().timestamp_millis() + req.timeout_ms as i64,
        });
        let event = req.event.clone().unwrap_or_else(|| serde_json::json!({}));
        instance.name_execution(&req.execution_id)?;
        instance.write_file(launch.main_file, req.code.as_bytes())?;
        instance.write_file("event.json", &serde_json::to_vec(&event)?)?;
        instance.write_file("context.json", &serde_json::to_vec(&context)?)?;

        let oom_before = self.oom_kills();
        if let Some(tx) = &events {
            let _ =
                tx.send(StreamEvent::Started { execution_id: req.execution_id.clone(), started_at }.into());
        }
        // A runner that is gone cannot take the request: how the sandbox ended tells why.
        let _ = instance.send(Request::Run);
        instance.close_requests();
        let Instance { stdout, stderr, results, mut status, mut process, .. } = instance;

        let cap = self.config().limits.max_output_bytes;
        // Cancelled once the supervisor has reported: every process that could write to the
        // pipes is gone, so what they hold is all there will be.
        let gone = CancellationToken::new();
        let stdout_task = tokio::spawn(pump(stdout, Output::stdout(cap), events.clone(), gone.clone()));
        let stderr_task = tokio::spawn(pump(stderr, Output::stderr(cap), events.clone(), gone.clone()));
        let results_task = tokio::spawn(collect(results, self.collected(), events, gone.clone()));
        let mut status_task = tokio::spawn(async move { read_status(&mut status).await });
        let mut status_bytes: Option<Vec<u8>> = None;

        let deadline = tokio::time::sleep(Duration::from_millis(req.timeout_ms));
        tokio::pin!(deadline);
        let killer = process.killer();
        let (mut timed_out, mut killed) = (false, false);
        let handed = Instant::now();
        // The answer is known when the supervisor's report is whole (it writes it once the
        // program has ended and it has killed and collected every other process of the
        // sandbox), or when bwrap has ended without one.
        let reaped = loop {
            tokio::select! {
                done = process.wait() => break Some(done?),
                read = &mut status_task, if status_bytes.is_none() => {
                    let bytes = read??;
                    let whole = supervisor::report_complete(&bytes);
                    status_bytes = Some(bytes);
                    if whole {
                        break None;
                    }
                }
                _ = &mut deadline, if !timed_out && !killed => {
                    timed_out = true;
                    killer.kill();
                }
                _ = kill.cancelled(), if !timed_out && !killed => {
                    killed = true;
                    killer.kill();
                }
            }
        };
        let duration = clock.elapsed();
        let exited_after = handed.elapsed();
        if reaped.is_none() {
            gone.cancel();
        }

        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            let status = match status_bytes {
                Some(bytes) => Ok(Ok(bytes)),
                None => status_task.await,
            };
            (stdout_task.await, stderr_task.await, results_task.await, status)
        })
        .await;
        let (stdout, stderr, collected, status_bytes) = match drained {
            Ok((Ok(Ok(o)), Ok(Ok(e)), Ok(Ok(r)), Ok(Ok(s)))) => (o, e, r, s),
            _ => return Err(std::io::Error::other("output pipes stayed open after the sandbox ended")),
        };
        let oom_killed = oom_rose(oom_before, self.oom_kills());
        let changes = before.diff(&self.snapshot().await?);
        tracing::debug!(
            execution_id = %req.execution_id,
            prepared_ms = (handed - clock).as_secs_f64() * 1000.0,
            exited_ms = exited_after.as_secs_f64() * 1000.0,
            finished_ms = clock.elapsed().as_secs_f64() * 1000.0,
            before_teardown = reaped.is_none(),
            "stateless execution phases"
        );

        // Only the supervisor saw how the program ended; without its report the outcome is
        // unknown (bwrap's status only tells how the supervisor ended).
        let (started, supervisor_report) = supervisor::parse_status(&status_bytes);
        let Collected { results, results_truncated, report, .. } = collected;
        let mut verdict = outcome::classify(&Ended {
            exit: supervisor_report.as_ref().and_then(Exit::from_report),
            // Without bwrap's status (the answer came first), the supervisor's own: it exits with
            // the program's status.
            sandbox_exit: match &reaped {
                Some((wstatus, _)) => Exit::from_wait_status(*wstatus),
                None => Exit::Code(
                    supervisor_report
                        .as_ref()
                        .map_or(0, |r| r.exit_code.unwrap_or_else(|| 128 + r.signal.unwrap_or(0))),
                ),
            },
            timed_out,
            killed,
            oom_killed,
            report,
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
        // The kernel's count for bwrap when it was reaped; else the supervisor's reading of the
        // kernel's count for itself and every process it collected (all of them but itself).
        let (cpu_time_ms, peak_kb) = match (&reaped, &supervisor_report) {
            (Some((_, usage)), _) => {
                (timeval_ms(usage.ru_utime) + timeval_ms(usage.ru_stime), usage.ru_maxrss as f64)
            }
            (None, Some(r)) => {
                (r.cpu_time_us.unwrap_or(0) as f64 / 1000.0, r.peak_memory_kb.unwrap_or(0) as f64)
            }
            (None, None) => (0.0, 0.0),
        };
        let metrics = ExecMetrics {
            duration_ms: duration.as_secs_f64() * 1000.0,
            cpu_time_ms,
            peak_memory_mb: peak_kb / 1024.0,
        };
        let mut result = result_of(req, verdict, Pieces { stdout, stderr, changes, metrics, started_at });
        result.timed_out = timed_out;
        result.oom_killed = oom_killed;
        result.results = results;
        result.results_truncated = results_truncated;
        Ok((result, reaped.is_none().then_some(process)))
    }
}

/// Checks an execution's or a context's environment variables.
pub fn validate_env(env: &BTreeMap<String, String>) -> Result<(), Error> {
    if env.len() > MAX_ENV_VARS || env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_ENV_BYTES {
        return Err(Error::bad_request(format!(
            "at most {MAX_ENV_VARS} environment variables and {MAX_ENV_BYTES} bytes"
        )));
    }
    for (k, v) in env {
        contract::check_env(k, v)
            .map_err(|e| Error::bad_request(format!("invalid environment variable: {e}")))?;
    }
    Ok(())
}

/// What every result is made of besides its verdict.
pub struct Pieces {
    /// Standard output as kept.
    pub stdout: Captured,
    /// Standard error as kept.
    pub stderr: Captured,
    /// What changed in the workspace.
    pub changes: Changes,
    /// Resource use.
    pub metrics: ExecMetrics,
    /// When the execution started.
    pub started_at: chrono::DateTime<Utc>,
}

/// A result from its verdict and pieces (display outputs, flags and the context to be added by
/// the caller).
pub fn result_of(req: &ExecRequest, verdict: outcome::Verdict, p: Pieces) -> ExecResult {
    ExecResult {
        execution_id: req.execution_id.clone(),
        status: verdict.status,
        exit_code: verdict.exit_code,
        signal: verdict.signal,
        stdout_truncated: p.stdout.truncated(),
        stderr_truncated: p.stderr.truncated(),
        stdout: String::from_utf8_lossy(&p.stdout.bytes).into_owned(),
        stderr: String::from_utf8_lossy(&p.stderr.bytes).into_owned(),
        return_value: verdict.return_value,
        error_message: verdict.error_message,
        timed_out: false,
        oom_killed: false,
        started_at: p.started_at,
        finished_at: Utc::now(),
        metrics: p.metrics,
        files: p.changes.files,
        files_truncated: p.changes.truncated,
        files_skipped: p.changes.skipped,
        context_id: None,
        results: Vec::new(),
        results_truncated: false,
        error: verdict.error,
    }
}

/// Whether the container's OOM killer acted between two readings.
pub fn oom_rose(before: Option<u64>, after: Option<u64>) -> bool {
    matches!((before, after), (Some(a), Some(b)) if b > a)
}

/// A result for an execution whose sandbox could not even be prepared.
pub fn failed_to_start(
    req: &ExecRequest,
    started_at: chrono::DateTime<Utc>,
    clock: Instant,
    why: String,
) -> ExecResult {
    let verdict = outcome::Verdict {
        status: ExecutionStatus::Crashed,
        exit_code: None,
        signal: None,
        return_value: None,
        error_message: Some(format!("the sandbox could not be started: {why}")),
        error: None,
    };
    let metrics = ExecMetrics { duration_ms: clock.elapsed().as_secs_f64() * 1000.0, ..Default::default() };
    let p = Pieces {
        stdout: Captured::default(),
        stderr: Captured::default(),
        changes: Changes::default(),
        metrics,
        started_at,
    };
    result_of(req, verdict, p)
}

/// Reads one output pipe to its end, or once `gone` is cancelled to what it holds, forwarding
/// kept chunks as stream events.
async fn pump(
    mut r: pipe::Receiver,
    mut out: Output,
    events: Events,
    gone: CancellationToken,
) -> std::io::Result<Captured> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_or_drain(&mut r, &mut buf, &gone).await?;
        if n == 0 {
            return Ok(out.finish(events.as_ref()));
        }
        out.push(&buf[..n], events.as_ref());
    }
}

/// The next bytes of `r`: waited for until `gone` is cancelled; after that only what the pipe
/// holds (0 once it is empty), as no process is left to write more. `read` is cancel-safe.
pub(crate) async fn read_or_drain(
    r: &mut pipe::Receiver,
    buf: &mut [u8],
    gone: &CancellationToken,
) -> std::io::Result<usize> {
    if !gone.is_cancelled() {
        tokio::select! {
            biased;
            n = r.read(buf) => return n,
            _ = gone.cancelled() => {}
        }
    }
    // Straight from the descriptor (non-blocking), not tokio's idea of its readiness.
    loop {
        match rustix::io::read(unsafe { std::os::fd::BorrowedFd::borrow_raw(r.as_raw_fd()) }, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::AGAIN) => return Ok(0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the supervisor's status descriptor until its final report is whole, or to its end.
pub(crate) async fn read_status(r: &mut pipe::Receiver) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while bytes.len() < 4096 && !supervisor::report_complete(&bytes) {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    Ok(bytes)
}

/// Reads the runner's messages to their end (see [`pump`] for `gone`).
async fn collect(
    mut r: pipe::Receiver,
    mut collected: Collected,
    events: Events,
    gone: CancellationToken,
) -> std::io::Result<Collected> {
    let mut lines = LineSplitter::new(collected.max_line());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_or_drain(&mut r, &mut buf, &gone).await?;
        if n == 0 {
            lines.finish();
        } else {
            lines.push(&buf[..n]);
        }
        while let Some(line) = lines.next_line() {
            collected.take(line, events.as_ref());
        }
        if n == 0 {
            return Ok(collected);
        }
    }
}

/// Milliseconds in a `timeval`.
pub fn timeval_ms(t: libc::timeval) -> f64 {
    t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0
}
