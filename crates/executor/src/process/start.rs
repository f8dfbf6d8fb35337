//! Starting a process in a sandbox of its own, and following it to its end: output to its
//! subscribers, its timeout and kill, how it ended.

use super::ending::{Circumstances, end_of};
use super::terminal::Terminal;
use super::{BACKLOG_CHUNKS, Process, State, Subscription};
use crate::context::resolve_cwd;
use crate::engine::{DRAIN_GRACE, Engine, TEARDOWN_GRACE, read_or_drain, read_status, validate_env};
use crate::error::Error;
use crate::instance::{Instance, Program};
use crate::supervisor::{self, Interrupt};
use chrono::Utc;
use sandbox_protocol::{ProcessEvent, ProcessInfo, ProcessRequest, ProcessState};
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::unix::pipe;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The longest tag, in bytes.
const MAX_TAG_BYTES: usize = 256;
/// Most arguments, and most bytes of command and arguments together.
const MAX_ARGS: usize = 4096;
const MAX_COMMAND_BYTES: usize = 256 * 1024;

/// Checks a request before anything starts.
fn validate(req: &ProcessRequest) -> Result<(), Error> {
    if req.cmd.is_empty() {
        return Err(Error::bad_request("cmd must not be empty"));
    }
    let words = std::iter::once(&req.cmd).chain(&req.args);
    if words.clone().any(|w| w.contains('\0')) {
        return Err(Error::bad_request("cmd and args must not contain NUL bytes"));
    }
    if req.args.len() > MAX_ARGS || words.map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
        return Err(Error::bad_request(format!(
            "at most {MAX_ARGS} arguments and {MAX_COMMAND_BYTES} bytes of command line"
        )));
    }
    if req.tag.as_ref().is_some_and(|t| t.len() > MAX_TAG_BYTES) {
        return Err(Error::bad_request(format!("tag must be at most {MAX_TAG_BYTES} bytes")));
    }
    if req.pty.is_some_and(|p| p.cols == 0 || p.rows == 0) {
        return Err(Error::bad_request("a terminal needs at least one column and one row"));
    }
    if req.pty.is_some() && req.stdin {
        return Err(Error::bad_request("a process on a terminal reads the terminal: stdin must be false"));
    }
    validate_env(&req.envs)
}

impl Engine {
    /// Starts `req`'s command in a sandbox of its own and answers its info with a subscription
    /// taken before it could write anything. The process runs on in a task of its own.
    pub async fn start_process(&self, req: ProcessRequest) -> Result<(ProcessInfo, Subscription), Error> {
        validate(&req)?;
        let cwd = resolve_cwd(self.workspace(), req.cwd.as_deref())?;
        let reservation = self.processes.reserve()?;
        let pid = reservation.pid();
        let internal = |what: &str, e: std::io::Error| Error::internal(format!("{what}: {e}"));

        let (stdin_rx, stdin_tx) = match req.stdin {
            true => {
                let (rx, tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| internal("cannot make a stdin pipe", e.into()))?;
                (Some(rx), Some(pipe::Sender::from_owned_fd(tx).map_err(|e| internal("stdin pipe", e))?))
            }
            false => (None, None),
        };
        let (terminal, program_side) = match req.pty {
            Some(size) => {
                let (t, program_side) =
                    Terminal::open(size).map_err(|e| internal("cannot open a terminal", e))?;
                (Some(Arc::new(t)), Some(program_side))
            }
            None => (None, None),
        };
        let mut command = vec![OsString::from(&req.cmd)];
        command.extend(req.args.iter().map(OsString::from));
        let program = Program {
            command,
            files: &[],
            interrupt: Interrupt::All,
            runner: false,
            cwd: cwd.clone(),
            stdin: stdin_rx,
            terminal: program_side,
            execution: Some(format!("process-{pid}")),
        };
        let mut instance =
            self.launcher().spawn(program, &req.envs).map_err(|e| internal("cannot start its sandbox", e))?;
        let supervisor = match instance.supervisor().await {
            Ok(s) => s,
            Err(e) => {
                let why = instance.stderr_so_far();
                tracing::error!(pid, error = %e, %why, "process sandbox failed");
                return Err(Error::internal(format!("its sandbox could not be started: {why}")));
            }
        };

        let info = ProcessInfo {
            pid,
            tag: req.tag,
            cmd: req.cmd,
            args: req.args,
            envs: req.envs,
            cwd,
            stdin: stdin_tx.is_some(),
            pty: req.pty,
            started_at: Utc::now(),
            state: ProcessState::Running,
            end: None,
        };
        let (events, _) = broadcast::channel(BACKLOG_CHUNKS);
        let process = Arc::new(Process {
            pid,
            state: Mutex::new(State { info: info.clone(), events: Some(events.clone()), ended: None }),
            stdin: tokio::sync::Mutex::new(stdin_tx),
            terminal: terminal.clone(),
            supervisor,
            kill: CancellationToken::new(),
        });
        let subscription = process.subscribe();
        self.processes.insert(reservation, process.clone());
        tracing::info!(pid, "process started");
        let timeout = (req.timeout_ms > 0).then_some(req.timeout_ms);
        tokio::spawn(follow(process, instance, terminal, events, timeout));
        Ok((info, subscription))
    }
}

/// Follows a process to its end: forwards its output, kills it at its timeout or on request,
/// then records how it ended.
async fn follow(
    process: Arc<Process>,
    instance: Instance,
    terminal: Option<Arc<Terminal>>,
    events: broadcast::Sender<ProcessEvent>,
    timeout: Option<u64>,
) {
    let Instance { stdout, stderr, mut status, process: mut sandbox, .. } = instance;
    // Cancelled once the supervisor has reported: every process that could write to the pipes
    // is gone, so what they hold is all there will be.
    let gone = CancellationToken::new();
    let stdout_task =
        tokio::spawn(pump(stdout, events.clone(), |data| ProcessEvent::Stdout { data }, gone.clone()));
    let stderr_task =
        tokio::spawn(pump(stderr, events.clone(), |data| ProcessEvent::Stderr { data }, gone.clone()));
    let terminal_task = tokio::spawn(pump_terminal(terminal, events, gone.clone()));
    let pumps = [stdout_task.abort_handle(), stderr_task.abort_handle(), terminal_task.abort_handle()];
    let mut status_task = tokio::spawn(async move { read_status(&mut status).await });
    let mut status_bytes: Option<Vec<u8>> = None;

    let deadline = async {
        match timeout {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let killer = sandbox.killer();
    let mut c = Circumstances::default();
    let reaped = loop {
        tokio::select! {
            done = sandbox.wait() => break done.is_ok(),
            read = &mut status_task, if status_bytes.is_none() => {
                let bytes = read.ok().and_then(Result::ok).unwrap_or_default();
                let whole = supervisor::report_complete(&bytes);
                status_bytes = Some(bytes);
                if whole {
                    break false;
                }
            }
            _ = &mut deadline, if c.timed_out.is_none() && !c.killed => {
                c.timed_out = timeout;
                killer.kill();
            }
            _ = process.kill.cancelled(), if c.timed_out.is_none() && !c.killed => {
                c.killed = true;
                killer.kill();
            }
        }
    };
    if !reaped {
        gone.cancel();
    }
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        let status = match status_bytes {
            Some(bytes) => bytes,
            None => status_task.await.ok().and_then(Result::ok).unwrap_or_default(),
        };
        let _ = (stdout_task.await, stderr_task.await, terminal_task.await);
        status
    })
    .await;
    let status_bytes = match drained {
        Ok(bytes) => bytes,
        Err(_) => {
            pumps.iter().for_each(tokio::task::AbortHandle::abort);
            c.undrained = true;
            Vec::new()
        }
    };
    let (started, report) = supervisor::parse_status(&status_bytes);
    c.started = started;
    let end = end_of(report.as_ref(), c);
    tracing::info!(pid = process.pid, status = %end.status, "process ended");
    process.finish(end).await;
    if !reaped && tokio::time::timeout(TEARDOWN_GRACE, sandbox.wait()).await.is_err() {
        tracing::warn!(pid = process.pid, "a process's sandbox did not end after it did; killing it");
    }
    // Killed and left to the reaper if not reaped above.
    drop(sandbox);
}

/// Reads one output pipe to its end (see [`read_or_drain`] for `gone`), sending each chunk to
/// the subscribers there are.
async fn pump(
    mut r: pipe::Receiver,
    events: broadcast::Sender<ProcessEvent>,
    wrap: fn(Vec<u8>) -> ProcessEvent,
    gone: CancellationToken,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_or_drain(&mut r, &mut buf, &gone).await?;
        if n == 0 {
            return Ok(());
        }
        // No subscriber: the output is dropped (a reconnect gets output from then on).
        let _ = events.send(wrap(buf[..n].to_vec()));
    }
}

/// Reads what the program writes to its terminal, if it has one, as [`pump`] reads a pipe.
async fn pump_terminal(
    terminal: Option<Arc<Terminal>>,
    events: broadcast::Sender<ProcessEvent>,
    gone: CancellationToken,
) -> std::io::Result<()> {
    let Some(t) = terminal else { return Ok(()) };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match gone.is_cancelled() {
            false => tokio::select! {
                biased;
                n = t.read(&mut buf) => n?,
                _ = gone.cancelled() => continue,
            },
            true => t.drain(&mut buf)?,
        };
        if n == 0 {
            return Ok(());
        }
        let _ = events.send(ProcessEvent::Pty { data: buf[..n].to_vec() });
    }
}
