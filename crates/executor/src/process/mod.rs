//! Processes started on their own (`POST /v1/processes`): each command runs in a sandbox of its
//! own, outlives the request that started it, and is known by a small number of the
//! executor's (its pid here, never a host pid) until a while after it ends.
//!
//! Output is not kept: each subscriber gets what the process writes from the moment it
//! attached ([`stream`]), and falls behind by at most [`BACKLOG_CHUNKS`] chunks before the
//! oldest are dropped for it. How a process ended is kept with it.

pub mod ending;
pub mod start;
pub mod stream;
pub mod terminal;

use crate::error::Error;
use crate::instance::Supervisor;
use sandbox_protocol::{
    ErrorCode, ProcessEnd, ProcessEvent, ProcessInfo, ProcessSignal, ProcessState, PtySize,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use terminal::Terminal;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How long an exited process is remembered (its end answered to a late reconnect).
pub const RETAIN_EXITED: Duration = Duration::from_secs(600);
/// Most exited processes remembered; the longest-ended go first past it.
pub const MAX_EXITED: usize = 256;
/// Output chunks (each at most 64 KiB) a subscriber may fall behind by before the oldest are
/// dropped for it.
pub const BACKLOG_CHUNKS: usize = 16;

/// One process.
pub struct Process {
    pid: u32,
    state: Mutex<State>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    terminal: Option<Arc<Terminal>>,
    supervisor: Supervisor,
    kill: CancellationToken,
}

struct State {
    info: ProcessInfo,
    /// Output goes here while it runs; `None` once it has ended (subscribers then see the
    /// channel close, after the last output).
    events: Option<broadcast::Sender<ProcessEvent>>,
    ended: Option<Instant>,
}

/// What a subscriber attached to: the process's output from now on, or its end.
pub struct Subscription {
    process: Arc<Process>,
    events: Option<broadcast::Receiver<ProcessEvent>>,
}

impl Process {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Its number.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What is known of it now.
    pub fn info(&self) -> ProcessInfo {
        self.state().info.clone()
    }

    /// How it ended, once it has.
    pub fn end(&self) -> Option<ProcessEnd> {
        self.state().info.end.clone()
    }

    fn running(&self) -> bool {
        self.state().info.state == ProcessState::Running
    }

    /// Attaches to its output from now on (or, once it has ended, to its end alone).
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let events = self.state().events.as_ref().map(broadcast::Sender::subscribe);
        Subscription { process: self.clone(), events }
    }

    /// Sends `signal` to every process of its tree: `SIGKILL` ends its sandbox; the others
    /// are passed on by the sandbox's supervisor.
    pub fn signal(&self, signal: ProcessSignal) -> Result<(), Error> {
        use rustix::process::Signal;
        if !self.running() {
            return Err(self.exited());
        }
        let forwarded = match signal {
            ProcessSignal::Kill => {
                self.kill.cancel();
                return Ok(());
            }
            ProcessSignal::Term => Signal::TERM,
            ProcessSignal::Int => Signal::INT,
            ProcessSignal::Hup => Signal::HUP,
            ProcessSignal::Quit => Signal::QUIT,
            ProcessSignal::Usr1 => Signal::USR1,
            ProcessSignal::Usr2 => Signal::USR2,
        };
        // A supervisor already gone has nothing left to signal.
        if let Err(e) = self.supervisor.forward(forwarded) {
            tracing::debug!(pid = self.pid, error = %e, "signal not delivered");
        }
        Ok(())
    }

    /// Writes `bytes` to its standard input (typed into its terminal, when it has one); waits
    /// while the pipe is full.
    pub async fn write_stdin(&self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(t) = &self.terminal {
            if !self.running() {
                return Err(self.exited());
            }
            return t
                .write_all(bytes)
                .await
                .map_err(|e| Error::internal(format!("typing into process {}: {e}", self.pid)));
        }
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(match self.running() {
                true => Error::new(
                    ErrorCode::Conflict,
                    format!("process {} has no standard input open (start it with stdin: true)", self.pid),
                ),
                false => self.exited(),
            });
        };
        pipe.write_all(bytes).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::new(
                ErrorCode::Conflict,
                format!("process {} no longer reads its standard input", self.pid),
            ),
            _ => Error::internal(format!("writing to process {}: {e}", self.pid)),
        })
    }

    /// Closes its standard input: it reads end-of-file. Closing it again does nothing; a
    /// terminal cannot be closed (Ctrl-D, byte 4, ends a line discipline's input instead).
    pub async fn close_stdin(&self) -> Result<(), Error> {
        if self.terminal.is_some() && self.running() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "process {} runs on a terminal, whose input cannot be closed: send Ctrl-D (byte 4)",
                    self.pid
                ),
            ));
        }
        self.stdin.lock().await.take();
        self.state().info.stdin = false;
        Ok(())
    }

    /// Resizes its terminal.
    pub fn resize(&self, size: PtySize) -> Result<(), Error> {
        let Some(t) = &self.terminal else {
            return Err(Error::new(ErrorCode::Conflict, format!("process {} has no terminal", self.pid)));
        };
        if !self.running() {
            return Err(self.exited());
        }
        t.resize(size)
            .map_err(|e| Error::internal(format!("resizing the terminal of process {}: {e}", self.pid)))?;
        self.state().info.pty = Some(size);
        Ok(())
    }

    fn exited(&self) -> Error {
        Error::new(ErrorCode::ProcessExited, format!("process {} has exited", self.pid))
    }

    /// Records how it ended: subscribers get the end once they have read its last output.
    async fn finish(&self, end: ProcessEnd) {
        self.stdin.lock().await.take();
        let mut state = self.state();
        state.info.state = ProcessState::Exited;
        state.info.stdin = false;
        state.info.end = Some(end);
        state.events = None;
        state.ended = Some(Instant::now());
    }
}

/// The table of processes.
pub struct Processes {
    table: Mutex<Table>,
    max_running: usize,
}

#[derive(Default)]
struct Table {
    next: u32,
    /// Pids handed out whose process is not in `all` yet.
    starting: usize,
    all: BTreeMap<u32, Arc<Process>>,
}

impl Table {
    /// Forgets exited processes past their retention.
    fn prune(&mut self, now: Instant) {
        let mut exited: Vec<(Instant, u32)> =
            self.all.values().filter_map(|p| Some((p.state().ended?, p.pid))).collect();
        exited.sort();
        let excess = exited.len().saturating_sub(MAX_EXITED);
        for (i, (ended, pid)) in exited.into_iter().enumerate() {
            if i < excess || now.duration_since(ended) >= RETAIN_EXITED {
                self.all.remove(&pid);
            }
        }
    }

    fn running(&self) -> usize {
        self.starting + self.all.values().filter(|p| p.running()).count()
    }
}

/// A pid handed out for a process being started; given back if it never starts.
pub struct Reservation<'a> {
    pid: u32,
    table: &'a Processes,
}

impl Reservation<'_> {
    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.table.table().starting -= 1;
    }
}

impl Processes {
    /// An empty table allowing `max_running` processes at once.
    pub fn new(max_running: usize) -> Self {
        Processes { table: Mutex::new(Table { next: 1, ..Default::default() }), max_running }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pid for a new process; refused with `too_many_processes` when as many run as may.
    pub fn reserve(&self) -> Result<Reservation<'_>, Error> {
        let mut t = self.table();
        t.prune(Instant::now());
        if t.running() >= self.max_running {
            return Err(Error::new(
                ErrorCode::TooManyProcesses,
                format!("this sandbox already runs {} processes, as many as it may", self.max_running),
            ));
        }
        let pid = t.next;
        t.next += 1;
        t.starting += 1;
        Ok(Reservation { pid, table: self })
    }

    /// Enters a started process under its reservation's pid.
    fn insert(&self, reservation: Reservation<'_>, process: Arc<Process>) {
        let mut t = self.table();
        t.all.insert(reservation.pid, process);
        drop(t);
        drop(reservation);
    }

    /// The process `pid`; `process_not_found` when there is none.
    pub fn get(&self, pid: u32) -> Result<Arc<Process>, Error> {
        let mut t = self.table();
        t.prune(Instant::now());
        t.all.get(&pid).cloned().ok_or_else(|| {
            Error::new(ErrorCode::ProcessNotFound, format!("process {pid} is not known (or ended long ago)"))
        })
    }

    /// Every process known, running or exited, by pid.
    pub fn list(&self) -> Vec<ProcessInfo> {
        let mut t = self.table();
        t.prune(Instant::now());
        t.all.values().map(|p| p.info()).collect()
    }

    /// Processes running now.
    pub fn running(&self) -> usize {
        self.table().running()
    }

    /// Kills every running process (the executor is ending).
    pub fn kill_all(&self) {
        for p in self.table().all.values() {
            p.kill.cancel();
        }
    }
}
