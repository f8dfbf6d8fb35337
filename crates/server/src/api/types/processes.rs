//! Bodies of the process routes.

use chrono::{DateTime, Utc};
use sandbox_protocol::{ProcessEnd, ProcessInfo, ProcessState, PtySize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// `POST /api/v1/sessions/{session_id}/processes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cmd": "/bin/bash", "args": ["-l", "-c", "python3 serve.py"], "cwd": "app", "envs": {"PORT": "8000"}, "timeout_ms": 0}))]
pub struct StartProcessRequest {
    /// The program, looked up on the sandbox's `PATH` (`/bin/bash`, `python3`).
    pub cmd: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment variables, on top of the session's.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// An existing directory of the workspace it starts in, relative to it or absolute under
    /// `/workspace` (default: the workspace root).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Its lifetime in milliseconds: it is killed when this elapses. 0 (the default): no
    /// limit but its session's.
    #[serde(default)]
    pub timeout_ms: u64,
    /// Keep its standard input open for `POST .../stdin` (closed with `.../stdin/close`);
    /// otherwise it reads end-of-file at once.
    #[serde(default)]
    pub stdin: bool,
    /// Run it on a pseudo-terminal of this size: its output comes as `pty` events, `stdin`
    /// types into it, `.../pty` resizes it.
    #[serde(default)]
    pub pty: Option<TerminalSize>,
    /// A label of yours, shown in listings.
    #[serde(default)]
    pub tag: Option<String>,
}

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminalSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl From<TerminalSize> for PtySize {
    fn from(s: TerminalSize) -> Self {
        PtySize { cols: s.cols, rows: s.rows }
    }
}

impl From<PtySize> for TerminalSize {
    fn from(s: PtySize) -> Self {
        TerminalSize { cols: s.cols, rows: s.rows }
    }
}

/// Query of `POST .../processes`.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct StartProcessQuery {
    /// Answer with Server-Sent Events (`start`, `stdout`, `stderr`, `end`) instead of the
    /// process once started.
    #[serde(default)]
    pub stream: bool,
}

/// How a process ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessEndResponse {
    /// Its exit code; -1 when a signal ended it.
    pub exit_code: i32,
    /// Whether it exited by itself (false when a signal ended it).
    pub exited: bool,
    /// The signal that ended it (9 when killed, also at its timeout).
    pub signal: Option<i32>,
    /// `exit status N` or `signal: NAME` (`signal: killed`, `signal: terminated`).
    pub status: String,
    /// Why it ended abnormally (its timeout, its sandbox failing).
    pub error: Option<String>,
    /// When it ended.
    #[serde(with = "crate::api::types::time::millis")]
    pub ended_at: DateTime<Utc>,
}

impl From<ProcessEnd> for ProcessEndResponse {
    fn from(e: ProcessEnd) -> Self {
        ProcessEndResponse {
            exit_code: e.exit_code,
            exited: e.exited,
            signal: e.signal,
            status: e.status,
            error: e.error,
            ended_at: e.ended_at,
        }
    }
}

/// A process.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessResponse {
    /// Its number in the session's sandbox (from 1; never a host pid).
    pub pid: u32,
    /// Its session (as the caller named it).
    pub session_id: String,
    /// Your label.
    pub tag: Option<String>,
    /// The program.
    pub cmd: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The names of its environment variables, the session's included (values are not
    /// shown).
    pub envs: Vec<String>,
    /// The absolute directory it started in.
    pub cwd: String,
    /// Whether its standard input is open.
    pub stdin: bool,
    /// Its terminal's size, when it runs on one.
    pub pty: Option<TerminalSize>,
    /// `running` or `exited` (an exited process is kept about 10 minutes).
    #[schema(pattern = "^(running|exited)$")]
    pub state: String,
    /// When it started.
    #[serde(with = "crate::api::types::time::millis")]
    pub started_at: DateTime<Utc>,
    /// How it ended, once it has.
    pub end: Option<ProcessEndResponse>,
}

impl ProcessResponse {
    /// Renders a process of the session the caller calls `session_id`.
    pub fn new(p: ProcessInfo, session_id: String) -> Self {
        ProcessResponse {
            pid: p.pid,
            session_id,
            tag: p.tag,
            cmd: p.cmd,
            args: p.args,
            envs: p.envs.into_keys().collect(),
            cwd: p.cwd,
            stdin: p.stdin,
            pty: p.pty.map(TerminalSize::from),
            state: match p.state {
                ProcessState::Running => "running",
                ProcessState::Exited => "exited",
            }
            .into(),
            started_at: p.started_at,
            end: p.end.map(ProcessEndResponse::from),
        }
    }
}

/// `POST .../processes/{pid}/signal`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"signal": "SIGTERM"}))]
pub struct SignalProcessRequest {
    /// `SIGTERM`, `SIGKILL`, `SIGINT`, `SIGHUP`, `SIGQUIT`, `SIGUSR1` or `SIGUSR2`; it reaches
    /// every process of the process's tree.
    #[schema(pattern = "^SIG(TERM|KILL|INT|HUP|QUIT|USR1|USR2)$")]
    pub signal: String,
}

/// `POST .../processes/{pid}/stdin` as JSON (a body of any other type is written as it is).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"data": "aGVsbG8K"}))]
pub struct StdinRequest {
    /// The bytes, base64.
    pub data: String,
}
