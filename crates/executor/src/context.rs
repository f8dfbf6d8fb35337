//! Code contexts: long-lived interpreters that run executions as notebook cells.
//!
//! A context is an [`Instance`] kept for the context's life: its own bwrap sandbox (the same
//! namespaces, seccomp filter, rlimits and cleared environment as a stateless execution's), its
//! own `/tmp` and process table, the shared workspace. Cells run one at a time: a second
//! execution while one runs is refused with `context_busy`, never queued, so an execution's
//! timeout covers only its own run.
//!
//! A cell's code is written to the context's `/sandbox/cell.<ext>`, and the runner is told
//! `cell N`; it answers `done` for N on its result descriptor once the cell has ended and its
//! output is flushed. Output written before `done` is the cell's; what background threads or
//! processes write between cells counts for the next one. At its timeout a cell is interrupted
//! (through the supervisor: `SIGINT`); if the runner answers within the grace period the
//! context survives, else its sandbox is killed and the context is `lost`. A lost context
//! answers `context_lost` until it is restarted: never a silently fresh interpreter.

use crate::capture::{Captured, Output};
use crate::engine::{
    DRAIN_GRACE, Engine, Events, Pieces, Start, failed_to_start, oom_rose, result_of, timeval_ms,
    validate_env,
};
use crate::error::Error;
use crate::instance::{Instance, Killer, Supervisor};
use crate::lang::{self, Collected, Done, LineSplitter, Request};
use crate::outcome::{self, Exit, Verdict};
use crate::registry::Ticket;
use crate::supervisor::SupervisorReport;
use crate::usage::tree_usage;
use crate::workspace::Workspace;
use chrono::{DateTime, Utc};
use sandbox_core::{ExecutionStatus, Language, WorkspacePath};
use sandbox_protocol::{
    ContextInfo, ContextRequest, ContextStatus, ErrorCode, ExecEvent, ExecMetrics, ExecRequest, ExecResult,
    StreamEvent, WORKSPACE_DIR,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// How often a timed-out cell is interrupted again while its grace period runs.
const INTERRUPT_AGAIN: Duration = Duration::from_millis(250);
/// How long a context's interpreter may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Records of contexts without an interpreter (lost, expired) kept until deleted; past this
/// many the oldest are forgotten.
const MAX_DEAD: usize = 256;

/// Every context of the executor.
pub struct Contexts {
    table: Mutex<HashMap<String, Arc<Context>>>,
    max_live: usize,
    idle_timeout: Duration,
    grace: Duration,
}

/// One context.
pub struct Context {
    id: String,
    language: Language,
    cwd: String,
    env: BTreeMap<String, String>,
    created_at: DateTime<Utc>,
    state: Mutex<State>,
    /// The interpreter; held by the running cell (and by a start or restart).
    live: tokio::sync::Mutex<Option<Live>>,
}

struct State {
    status: ContextStatus,
    running: Option<String>,
    execution_count: u64,
    restarts: u32,
    message: Option<String>,
    last_active: Instant,
    last_active_at: DateTime<Utc>,
    /// How to reach the interpreter without holding it: to interrupt or kill it.
    handle: Option<Handle>,
    /// Set when the sandbox is ended from outside the running cell (deleted, restarted, shut
    /// down): the cell says so, and leaves the status to whoever ended it.
    ending: Option<&'static str>,
}

#[derive(Clone)]
struct Handle {
    killer: Killer,
    supervisor: Supervisor,
}

struct Live {
    instance: Instance,
    supervisor: Supervisor,
    lines: LineSplitter,
    next_seq: u64,
}

impl Live {
    fn handle(&self) -> Handle {
        Handle { killer: self.instance.process.killer(), supervisor: self.supervisor.clone() }
    }
}

impl State {
    fn touch(&mut self) {
        self.last_active = Instant::now();
        self.last_active_at = Utc::now();
    }
}

impl Context {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `GET /v1/contexts/{id}` answers.
    pub fn info(&self) -> ContextInfo {
        let s = self.state();
        ContextInfo {
            context_id: self.id.clone(),
            language: self.language,
            cwd: self.cwd.clone(),
            status: s.status,
            created_at: self.created_at,
            last_active_at: s.last_active_at,
            execution_count: s.execution_count,
            running_execution: s.running.clone(),
            restarts: s.restarts,
            message: s.message.clone(),
        }
    }

    /// Records the end of the running execution; `lost` says why the interpreter is gone.
    fn finish_execution(&self, lost: Option<String>) {
        let mut s = self.state();
        s.running = None;
        s.execution_count += 1;
        s.touch();
        if s.ending.is_some() {
            return;
        }
        match lost {
            None => s.status = ContextStatus::Idle,
            Some(why) => {
                s.status = ContextStatus::Lost;
                s.message = Some(why);
                s.handle = None;
            }
        }
    }

    /// Kills the interpreter from outside the running cell, saying why.
    fn end(&self, why: &'static str) {
        let mut s = self.state();
        s.ending = Some(why);
        if let Some(h) = s.handle.take() {
            h.killer.kill();
        }
    }
}

/// What [`Contexts::insert`] found.
enum Inserted {
    New(Arc<Context>),
    Existing(ContextInfo),
}

impl Contexts {
    /// An empty table with the configured limits.
    pub fn new(cfg: &crate::config::Interpreters) -> Self {
        Contexts {
            table: Mutex::new(HashMap::new()),
            max_live: cfg.max_contexts,
            idle_timeout: Duration::from_secs(cfg.context_idle_timeout_secs),
            grace: Duration::from_millis(cfg.interrupt_grace_ms),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Context>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn all(&self) -> Vec<Arc<Context>> {
        self.table().values().cloned().collect()
    }

    fn live_count(table: &HashMap<String, Arc<Context>>) -> usize {
        table.values().filter(|c| c.state().status.is_alive()).count()
    }

    fn get(&self, id: &str) -> Result<Arc<Context>, Error> {
        self.table()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("context {id} is not known")))
    }

    /// One context's description.
    pub fn info(&self, id: &str) -> Result<ContextInfo, Error> {
        Ok(self.get(id)?.info())
    }

    /// Every context, oldest first.
    pub fn list(&self) -> Vec<ContextInfo> {
        let mut out: Vec<_> = self.all().iter().map(|c| c.info()).collect();
        out.sort_by(|a, b| (a.created_at, &a.context_id).cmp(&(b.created_at, &b.context_id)));
        out
    }

    fn insert(&self, req: &ContextRequest, cwd: String) -> Result<Inserted, Error> {
        let mut table = self.table();
        if let Some(c) = table.get(&req.context_id) {
            return Ok(Inserted::Existing(c.info()));
        }
        if Self::live_count(&table) >= self.max_live {
            return Err(too_many(self.max_live));
        }
        let ctx = Arc::new(Context {
            id: req.context_id.clone(),
            language: req.language,
            cwd,
            env: req.env.clone(),
            created_at: Utc::now(),
            state: Mutex::new(State {
                status: ContextStatus::Starting,
                running: None,
                execution_count: 0,
                restarts: 0,
                message: None,
                last_active: Instant::now(),
                last_active_at: Utc::now(),
                handle: None,
                ending: None,
            }),
            live: tokio::sync::Mutex::new(None),
        });
        table.insert(ctx.id.clone(), ctx.clone());
        Ok(Inserted::New(ctx))
    }

    /// Reserves context `id` for execution `req`: it must be idle, of the request's language,
    /// and the request a plain cell (no handler event).
    pub fn acquire(&self, id: &str, req: &ExecRequest) -> Result<Arc<Context>, Error> {
        let ctx = self.get(id)?;
        if req.language != ctx.language {
            return Err(Error::bad_request(format!(
                "context {id} runs {}, not {}",
                ctx.language, req.language
            )));
        }
        if req.event.is_some() {
            return Err(Error::bad_request(
                "a context runs cells, not handlers: an execution in a context takes no event",
            ));
        }
        let mut s = ctx.state();
        match s.status {
            ContextStatus::Idle => {
                s.status = ContextStatus::Busy;
                s.running = Some(req.execution_id.clone());
                s.touch();
                drop(s);
                Ok(ctx)
            }
            ContextStatus::Busy => Err(Error::new(
                ErrorCode::ContextBusy,
                format!(
                    "context {id} is running execution {}; it runs one at a time",
                    s.running.as_deref().unwrap_or("?")
                ),
            )),
            ContextStatus::Starting => {
                Err(Error::new(ErrorCode::ContextBusy, format!("context {id} is starting its interpreter")))
            }
            ContextStatus::Lost | ContextStatus::Expired => Err(lost(id, s.status, s.message.as_deref())),
        }
    }

    /// Interrupts the running execution, if any (`KeyboardInterrupt` and the like).
    pub fn interrupt(&self, id: &str) -> Result<ContextInfo, Error> {
        let ctx = self.get(id)?;
        {
            let s = ctx.state();
            match (s.status, &s.handle) {
                (ContextStatus::Lost | ContextStatus::Expired, _) => {
                    return Err(lost(id, s.status, s.message.as_deref()));
                }
                (ContextStatus::Busy, Some(h)) => {
                    h.supervisor.interrupt().map_err(|e| Error::internal(e.to_string()))?
                }
                _ => {}
            }
        }
        Ok(ctx.info())
    }

    /// Reclaims contexts idle for longer than the idle timeout, and forgets the oldest records
    /// of dead contexts past [`MAX_DEAD`].
    pub fn tidy(&self, now: Instant) {
        for ctx in self.all() {
            let Ok(mut live) = ctx.live.try_lock() else { continue };
            let mut s = ctx.state();
            if s.status == ContextStatus::Idle
                && now.saturating_duration_since(s.last_active) >= self.idle_timeout
            {
                tracing::info!(context_id = %ctx.id, "reclaiming an idle context");
                s.status = ContextStatus::Expired;
                s.message =
                    Some(format!("reclaimed after {} s without an execution", self.idle_timeout.as_secs()));
                s.handle = None;
                drop(s);
                *live = None;
            }
        }
        let mut table = self.table();
        let mut dead: Vec<(Instant, String)> = table
            .values()
            .filter_map(|c| {
                let s = c.state();
                (!s.status.is_alive()).then(|| (s.last_active, c.id.clone()))
            })
            .collect();
        if dead.len() > MAX_DEAD {
            dead.sort();
            for (_, id) in &dead[..dead.len() - MAX_DEAD] {
                table.remove(id);
            }
        }
    }

    /// Kills every interpreter (shutdown).
    pub fn clear(&self) {
        for ctx in self.all() {
            ctx.end("shut down");
        }
    }
}

fn too_many(max: usize) -> Error {
    Error::new(
        ErrorCode::TooManyContexts,
        format!("this sandbox already has {max} live contexts; delete one first"),
    )
}

fn lost(id: &str, status: ContextStatus, why: Option<&str>) -> Error {
    let state = if status == ContextStatus::Expired { "expired" } else { "lost" };
    Error::new(
        ErrorCode::ContextLost,
        format!(
            "context {id} is {state} ({}): its state is gone; restart it or create another",
            why.unwrap_or("its interpreter ended")
        ),
    )
}

fn internal(e: std::io::Error) -> Error {
    Error::internal(e.to_string())
}

/// A context's working directory: `raw` relative to the workspace or absolute under
/// `/workspace`, naming an existing directory reached without leaving the workspace; as the
/// absolute path the interpreter sees.
pub fn resolve_cwd(ws: &Workspace, raw: Option<&str>) -> Result<String, Error> {
    let raw = raw.unwrap_or("");
    let relative = match raw.strip_prefix(WORKSPACE_DIR) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => raw,
    };
    if relative.chars().any(char::is_control) {
        return Err(Error::new(ErrorCode::InvalidPath, "cwd must not contain control characters"));
    }
    let path = WorkspacePath::parse(relative)?;
    ws.open_dir(&path)?;
    Ok(if path.is_root() { WORKSPACE_DIR.to_owned() } else { format!("{WORKSPACE_DIR}/{path}") })
}

/// How a cell ended.
enum CellEnd {
    /// The runner answered.
    Done(Done),
    /// The sandbox ended: bwrap's wait status and resource use, and the supervisor's report.
    Ended { wait_status: i32, usage: libc::rusage, report: Option<SupervisorReport> },
}

/// Everything one cell produced.
struct CellRun {
    end: CellEnd,
    stdout: Captured,
    stderr: Captured,
    collected: Collected,
    timed_out: bool,
    killed: bool,
}

/// What a cell's verdict depends on besides its ending.
struct Circumstances {
    timed_out: bool,
    killed: bool,
    oom_killed: bool,
    ending: Option<&'static str>,
    timeout_ms: u64,
    grace: Duration,
    memory_limit_mb: Option<u64>,
}

/// A cell's status and message, and why the context lost its interpreter, if it did.
fn cell_verdict(end: &CellEnd, c: &Circumstances) -> (Verdict, Option<String>) {
    match end {
        CellEnd::Done(done) => {
            let mut v = Verdict {
                status: ExecutionStatus::Completed,
                exit_code: Some(done.exit_code),
                signal: None,
                return_value: None,
                error_message: None,
                error: done.error.clone(),
            };
            if c.timed_out {
                v.status = ExecutionStatus::Timeout;
                v.error_message = Some(format!(
                    "execution timed out after {}: it was interrupted and the context kept its state",
                    outcome::seconds(c.timeout_ms)
                ));
            } else if let Some(e) = &done.error {
                v.status = ExecutionStatus::Failed;
                v.error_message = Some(if e.value.is_empty() {
                    e.name.clone()
                } else {
                    format!("{}: {}", e.name, e.value)
                });
            } else if done.exit_code != 0 {
                v.status = ExecutionStatus::Failed;
                v.error_message = Some(format!("exited with code {}", done.exit_code));
            }
            (v, None)
        }
        CellEnd::Ended { wait_status, report, .. } => {
            let mut v = outcome::classify(&outcome::Ended {
                exit: report.as_ref().and_then(Exit::from_report),
                sandbox_exit: Exit::from_wait_status(*wait_status),
                timed_out: c.timed_out,
                killed: c.killed,
                oom_killed: c.oom_killed,
                report: None,
                timeout_ms: c.timeout_ms,
                memory_limit_mb: c.memory_limit_mb,
            });
            let why = match (c.ending, v.error_message.take()) {
                (Some(ending), _) => {
                    v.status = ExecutionStatus::Crashed;
                    format!("the context was {ending}")
                }
                (None, Some(m)) if c.timed_out => format!(
                    "{m}, and it did not stop within {} of being interrupted: the interpreter was killed",
                    outcome::seconds(c.grace.as_millis() as u64)
                ),
                (None, Some(m)) => format!("the interpreter ended: {m}"),
                (None, None) => "the interpreter exited with code 0".to_owned(),
            };
            v.error_message = Some(format!("{why}; the context's state is lost"));
            (v, Some(why))
        }
    }
}

impl Engine {
    /// `POST /v1/contexts`: starts a context, or finds the one with that id (then `false`).
    pub async fn create_context(&self, req: ContextRequest) -> Result<(bool, ContextInfo), Error> {
        if !sandbox_protocol::contract::valid_id(&req.context_id) {
            return Err(Error::bad_request("context_id must be 1-64 characters of [A-Za-z0-9_-]"));
        }
        self.check_language(req.language)?;
        validate_env(&req.env)?;
        let cwd = resolve_cwd(self.workspace(), req.cwd.as_deref())?;
        let ctx = match self.contexts.insert(&req, cwd)? {
            Inserted::Existing(info) => return Ok((false, info)),
            Inserted::New(ctx) => ctx,
        };
        let mut live = ctx.live.lock().await;
        match self.start_live(&ctx).await {
            Ok(started) => {
                *live = Some(started);
                ctx.state().status = ContextStatus::Idle;
                drop(live);
                tracing::info!(context_id = %ctx.id, language = %ctx.language, "context started");
                Ok((true, ctx.info()))
            }
            Err(e) => {
                self.contexts.table().remove(&ctx.id);
                Err(e)
            }
        }
    }

    /// `DELETE /v1/contexts/{id}`: ends its interpreter (a running execution ends `crashed`)
    /// and forgets it.
    pub async fn delete_context(&self, id: &str) -> Result<(), Error> {
        let removed = self.contexts.table().remove(id);
        let ctx =
            removed.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("context {id} is not known")))?;
        ctx.end("deleted");
        *ctx.live.lock().await = None;
        Ok(())
    }

    /// `POST /v1/contexts/{id}/restart`: a fresh interpreter in place of the old one (killed,
    /// with a running execution), same settings.
    pub async fn restart_context(&self, id: &str) -> Result<ContextInfo, Error> {
        let ctx = self.contexts.get(id)?;
        let live_elsewhere = {
            let table = self.contexts.table();
            table.values().filter(|c| c.id != ctx.id && c.state().status.is_alive()).count()
        };
        {
            let mut s = ctx.state();
            if s.status == ContextStatus::Starting {
                return Err(Error::new(
                    ErrorCode::ContextBusy,
                    format!("context {id} is starting its interpreter"),
                ));
            }
            if live_elsewhere >= self.contexts.max_live {
                return Err(too_many(self.contexts.max_live));
            }
            s.status = ContextStatus::Starting;
            drop(s);
            ctx.end("restarted");
        }
        let mut live = ctx.live.lock().await;
        *live = None;
        let started = self.start_live(&ctx).await;
        let mut s = ctx.state();
        s.ending = None;
        s.touch();
        match started {
            Ok(started) => {
                s.status = ContextStatus::Idle;
                s.restarts += 1;
                s.execution_count = 0;
                s.message = None;
                *live = Some(started);
                drop(s);
                Ok(ctx.info())
            }
            Err(e) => {
                s.status = ContextStatus::Lost;
                s.message = Some(e.message.clone());
                Err(e)
            }
        }
    }

    /// Starts a context's interpreter (a spare when one fits) and has it settle in the
    /// context's directory.
    async fn start_live(&self, ctx: &Context) -> Result<Live, Error> {
        let mut instance = self.instance(Start::Spare, ctx.language, &ctx.env).map_err(internal)?;
        let supervisor = match instance.supervisor().await {
            Ok(s) => s,
            Err(e) => {
                return Err(Error::internal(format!(
                    "the sandbox did not start: {e}: {}",
                    instance.stderr_so_far()
                )));
            }
        };
        let mut live =
            Live { instance, supervisor, lines: LineSplitter::new(self.collected().max_line()), next_seq: 1 };
        ctx.state().handle = Some(live.handle());
        let run = self
            .drive(&mut live, Request::Context(&ctx.cwd), 0, START_TIMEOUT, None, &CancellationToken::new())
            .await
            .map_err(internal)?;
        self.spares().replenish(ctx.language);
        match run.end {
            CellEnd::Done(Done { exit_code: 0, error: None, .. }) => Ok(live),
            CellEnd::Done(done) => Err(Error::bad_request(format!(
                "the context cannot start in {}: {}",
                ctx.cwd,
                done.error.map(|e| e.value).unwrap_or_default()
            ))),
            CellEnd::Ended { .. } => Err(Error::internal(format!(
                "the context's interpreter ended before it was ready: {}",
                String::from_utf8_lossy(&run.stderr.bytes).trim()
            ))),
        }
    }

    /// Runs execution `req` (reserved by [`Contexts::acquire`]) as the context's next cell and
    /// records its result.
    pub async fn run_in_context(
        &self,
        ticket: Ticket,
        ctx: Arc<Context>,
        req: ExecRequest,
        events: Events,
    ) -> Arc<ExecResult> {
        let kill = ticket.kill_token();
        let started_at = Utc::now();
        let clock = Instant::now();
        let mut live = ctx.live.lock().await;
        // A restart that came between this execution's admission and now has replaced the
        // interpreter the execution was admitted to.
        let admitted = {
            let s = ctx.state();
            s.status == ContextStatus::Busy && s.running.as_deref() == Some(req.execution_id.as_str())
        };
        let (result, lost) = match live.as_mut() {
            _ if !admitted => {
                let why = "the context was restarted before the execution started".to_owned();
                (failed_to_start(&req, started_at, clock, why), None)
            }
            None => {
                let why = "the context has no interpreter".to_owned();
                (failed_to_start(&req, started_at, clock, why.clone()), Some(why))
            }
            Some(l) => match self.run_cell(&ctx, l, &req, events, &kill, started_at, clock).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(context_id = %ctx.id, error = %e, "a context's sandbox failed");
                    let why = format!("its sandbox failed: {e}");
                    (failed_to_start(&req, started_at, clock, why.clone()), Some(why))
                }
            },
        };
        if lost.is_some() {
            *live = None;
        }
        ctx.finish_execution(lost);
        drop(live);
        let mut result = result;
        result.context_id = Some(ctx.id.clone());
        tracing::info!(
            execution_id = %req.execution_id,
            context_id = %ctx.id,
            status = %result.status,
            duration_ms = result.metrics.duration_ms,
            "execution finished"
        );
        ticket.finish(&self.registry, result)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_cell(
        &self,
        ctx: &Context,
        live: &mut Live,
        req: &ExecRequest,
        events: Events,
        kill: &CancellationToken,
        started_at: DateTime<Utc>,
        clock: Instant,
    ) -> std::io::Result<(ExecResult, Option<String>)> {
        let seq = live.next_seq;
        live.next_seq += 1;
        let before = self.snapshot().await?;
        let usage_before = tree_usage(live.supervisor.pid);
        let oom_before = self.oom_kills();
        live.instance.name_execution(&req.execution_id)?;
        live.instance.write_file(lang::launch(ctx.language).cell_file, req.code.as_bytes())?;
        if let Some(tx) = &events {
            let _ =
                tx.send(StreamEvent::Started { execution_id: req.execution_id.clone(), started_at }.into());
        }
        let timeout = Duration::from_millis(req.timeout_ms);
        let run = self.drive(live, Request::Cell(seq), seq, timeout, events.as_ref(), kill).await?;
        let duration = clock.elapsed();
        let oom_killed = oom_rose(oom_before, self.oom_kills());
        let changes = before.diff(&self.snapshot().await?);
        let (cpu_ms, peak_memory_mb) = match &run.end {
            CellEnd::Done(_) => {
                let after = tree_usage(live.supervisor.pid);
                (after.cpu_ms - usage_before.cpu_ms, after.peak_memory_mb)
            }
            CellEnd::Ended { usage, .. } => (
                timeval_ms(usage.ru_utime) + timeval_ms(usage.ru_stime) - usage_before.cpu_ms,
                usage_before.peak_memory_mb.max(usage.ru_maxrss as f64 / 1024.0),
            ),
        };
        let circumstances = Circumstances {
            timed_out: run.timed_out,
            killed: run.killed,
            oom_killed,
            ending: ctx.state().ending,
            timeout_ms: req.timeout_ms,
            grace: self.contexts.grace,
            memory_limit_mb: self.memory_limit_mb(),
        };
        let (verdict, lost) = cell_verdict(&run.end, &circumstances);
        let metrics = ExecMetrics {
            duration_ms: duration.as_secs_f64() * 1000.0,
            cpu_time_ms: cpu_ms.max(0.0),
            peak_memory_mb,
        };
        let CellRun { stdout, stderr, collected, timed_out, .. } = run;
        let mut result = result_of(req, verdict, Pieces { stdout, stderr, changes, metrics, started_at });
        result.timed_out = timed_out;
        result.oom_killed = oom_killed;
        result.results = collected.results;
        result.results_truncated = collected.results_truncated;
        Ok((result, lost))
    }

    /// Sends `request` to the context's runner and follows it until the runner answers `done`
    /// for `seq` or the sandbox ends: output and display outputs collected (and streamed), the
    /// timeout turned into an interrupt and, after the grace period, a kill.
    async fn drive(
        &self,
        live: &mut Live,
        request: Request<'_>,
        seq: u64,
        timeout: Duration,
        events: Option<&UnboundedSender<ExecEvent>>,
        kill: &CancellationToken,
    ) -> std::io::Result<CellRun> {
        let cap = self.config().limits.max_output_bytes;
        let (mut out, mut err, mut collected) = (Output::stdout(cap), Output::stderr(cap), self.collected());
        let killer = live.instance.process.killer();
        if let Err(e) = live.instance.send(request) {
            tracing::warn!(error = %e, "a context's runner does not take requests: ending it");
            killer.kill();
        }
        let (mut obuf, mut ebuf, mut rbuf) =
            (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        let (mut out_open, mut err_open, mut results_open) = (true, true, true);
        let (mut timed_out, mut given_up, mut killed) = (false, false, false);
        let deadline = tokio::time::sleep(timeout);
        let nudge = tokio::time::sleep(timeout);
        tokio::pin!(deadline, nudge);
        let mut grace_over = tokio::time::Instant::now();
        let end = 'run: loop {
            while let Some(line) = live.lines.next_line() {
                match collected.take(line, events) {
                    Some(done) if done.seq == seq => break 'run CellEnd::Done(done),
                    Some(done) => {
                        tracing::debug!(seq = done.seq, expected = seq, "ignoring the end of another cell")
                    }
                    None => {}
                }
            }
            tokio::select! {
                r = live.instance.stdout.read(&mut obuf), if out_open => match r {
                    Ok(n) if n > 0 => out.push(&obuf[..n], events),
                    _ => out_open = false,
                },
                r = live.instance.stderr.read(&mut ebuf), if err_open => match r {
                    Ok(n) if n > 0 => err.push(&ebuf[..n], events),
                    _ => err_open = false,
                },
                r = live.instance.results.read(&mut rbuf), if results_open => match r {
                    Ok(n) if n > 0 => live.lines.push(&rbuf[..n]),
                    _ => results_open = false,
                },
                ended = live.instance.process.wait() => {
                    let (wait_status, usage) = ended?;
                    break 'run CellEnd::Ended { wait_status, usage, report: None };
                }
                _ = &mut deadline, if !timed_out && !killed => {
                    timed_out = true;
                    grace_over = tokio::time::Instant::now() + self.contexts.grace;
                    nudge.as_mut().reset(tokio::time::Instant::now());
                }
                // Interrupted again and again through the grace period (an interrupt that
                // lands while a shell is starting a command reaches neither), then killed.
                _ = &mut nudge, if timed_out && !given_up && !killed => {
                    let now = tokio::time::Instant::now();
                    if now >= grace_over || live.supervisor.interrupt().is_err() {
                        given_up = true;
                        killer.kill();
                    } else {
                        nudge.as_mut().reset((now + INTERRUPT_AGAIN).min(grace_over));
                    }
                }
                _ = kill.cancelled(), if !killed => {
                    killed = true;
                    killer.kill();
                }
            }
        };
        let end = match end {
            CellEnd::Done(done) => {
                // Everything the cell wrote before its runner answered is in the pipes now.
                for (rx, o) in [(&mut live.instance.stdout, &mut out), (&mut live.instance.stderr, &mut err)]
                {
                    while let Ok(n @ 1..) = rx.try_read(&mut obuf) {
                        o.push(&obuf[..n], events);
                    }
                }
                CellEnd::Done(done)
            }
            CellEnd::Ended { wait_status, usage, .. } => {
                // Everything in the sandbox is gone: read what is left to its end.
                let rest = async {
                    drain(&mut live.instance.stdout, &mut obuf, |b| out.push(b, events)).await;
                    drain(&mut live.instance.stderr, &mut ebuf, |b| err.push(b, events)).await;
                    drain(&mut live.instance.results, &mut rbuf, |b| live.lines.push(b)).await;
                    live.lines.finish();
                    while let Some(line) = live.lines.next_line() {
                        collected.take(line, events);
                    }
                    live.instance.status_report().await
                };
                let report = match tokio::time::timeout(DRAIN_GRACE, rest).await {
                    Ok(Ok((_, report))) => report,
                    _ => None,
                };
                CellEnd::Ended { wait_status, usage, report }
            }
        };
        Ok(CellRun {
            end,
            stdout: out.finish(events),
            stderr: err.finish(events),
            collected,
            timed_out,
            killed: killed || given_up,
        })
    }
}

/// Reads a pipe to its end, handing each chunk to `sink`.
async fn drain(rx: &mut tokio::net::unix::pipe::Receiver, buf: &mut [u8], mut sink: impl FnMut(&[u8])) {
    while let Ok(n @ 1..) = rx.read(buf).await {
        sink(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_protocol::ExecError;

    #[test]
    fn a_context_works_in_an_existing_directory_of_the_workspace() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data/raw")).unwrap();
        std::fs::write(d.path().join("file"), "").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        let ws = Workspace::open(d.path()).unwrap();
        for (raw, want) in [
            (None, "/workspace"),
            (Some(""), "/workspace"),
            (Some("/workspace"), "/workspace"),
            (Some("/workspace/"), "/workspace"),
            (Some("data/raw"), "/workspace/data/raw"),
            (Some("/workspace/data//raw/"), "/workspace/data/raw"),
        ] {
            assert_eq!(resolve_cwd(&ws, raw).unwrap(), want, "{raw:?}");
        }
        for (raw, code) in [
            ("missing", ErrorCode::NotFound),
            ("file", ErrorCode::NotADirectory),
            ("out", ErrorCode::InvalidPath),
            ("/etc", ErrorCode::InvalidPath),
            ("/workspacex", ErrorCode::InvalidPath),
            ("data/../..", ErrorCode::InvalidPath),
            ("data\nraw", ErrorCode::InvalidPath),
        ] {
            assert_eq!(resolve_cwd(&ws, Some(raw)).unwrap_err().code, code, "{raw:?}");
        }
    }

    fn circumstances() -> Circumstances {
        Circumstances {
            timed_out: false,
            killed: false,
            oom_killed: false,
            ending: None,
            timeout_ms: 2000,
            grace: Duration::from_secs(2),
            memory_limit_mb: Some(512),
        }
    }

    fn done(exit_code: i32, error: Option<&str>) -> CellEnd {
        let error =
            error.map(|name| ExecError { name: name.into(), value: "v".into(), traceback: "tb".into() });
        CellEnd::Done(Done { seq: 1, exit_code, error })
    }

    fn ended(exit_code: Option<i32>, signal: Option<i32>) -> CellEnd {
        let wait_status = match signal {
            Some(_) => 137 << 8,
            None => exit_code.unwrap_or(0) << 8,
        };
        let usage = unsafe { std::mem::zeroed() };
        CellEnd::Ended {
            wait_status,
            usage,
            report: Some(SupervisorReport { exit_code, signal, cpu_time_us: None, peak_memory_kb: None }),
        }
    }

    #[test]
    fn cells_that_end_keep_the_context() {
        let (v, lost) = cell_verdict(&done(0, None), &circumstances());
        assert_eq!(
            (v.status, v.exit_code, v.error_message, lost),
            (ExecutionStatus::Completed, Some(0), None, None)
        );
        let (v, lost) = cell_verdict(&done(1, Some("ZeroDivisionError")), &circumstances());
        assert_eq!(
            (v.status, v.error_message.as_deref()),
            (ExecutionStatus::Failed, Some("ZeroDivisionError: v"))
        );
        assert_eq!((v.error.unwrap().traceback, lost), ("tb".to_owned(), None));
        let (v, _) = cell_verdict(&done(3, None), &circumstances());
        assert_eq!(
            (v.status, v.error_message.as_deref()),
            (ExecutionStatus::Failed, Some("exited with code 3"))
        );
        let c = Circumstances { timed_out: true, ..circumstances() };
        let (v, lost) = cell_verdict(&done(1, Some("KeyboardInterrupt")), &c);
        assert_eq!((v.status, lost), (ExecutionStatus::Timeout, None));
        assert!(v.error_message.unwrap().contains("kept its state"));
        assert_eq!(v.error.unwrap().name, "KeyboardInterrupt");
    }

    #[test]
    fn cells_whose_interpreter_ends_lose_the_context() {
        // `exit 3` in a shell context.
        let (v, lost) = cell_verdict(&ended(Some(3), None), &circumstances());
        assert_eq!((v.status, v.exit_code), (ExecutionStatus::Failed, Some(3)));
        assert_eq!(lost.as_deref(), Some("the interpreter ended: exited with code 3"));
        assert!(v.error_message.unwrap().ends_with("the context's state is lost"));
        let (v, lost) = cell_verdict(&ended(Some(0), None), &circumstances());
        assert_eq!(
            (v.status, lost.as_deref()),
            (ExecutionStatus::Completed, Some("the interpreter exited with code 0"))
        );
        // Interrupted at the timeout, and killed when it did not stop.
        let c = Circumstances { timed_out: true, killed: true, ..circumstances() };
        let (v, lost) = cell_verdict(&ended(None, Some(9)), &c);
        assert_eq!(v.status, ExecutionStatus::Timeout);
        assert!(
            lost.unwrap().contains("did not stop within 2s of being interrupted"),
            "{:?}",
            v.error_message
        );
        let c = Circumstances { oom_killed: true, ..circumstances() };
        let (v, lost) = cell_verdict(&ended(None, Some(9)), &c);
        assert_eq!(v.status, ExecutionStatus::Crashed);
        assert!(lost.unwrap().contains("out of memory"));
        let c = Circumstances { killed: true, ending: Some("deleted"), ..circumstances() };
        let (v, lost) = cell_verdict(&ended(None, Some(9)), &c);
        assert_eq!((v.status, lost.as_deref()), (ExecutionStatus::Crashed, Some("the context was deleted")));
    }
}
