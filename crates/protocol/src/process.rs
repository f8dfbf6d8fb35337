//! Long-running processes: a command started in a sandbox of its own that outlives the request
//! that started it, with its output streamed to whoever attaches, its standard input written
//! to, and signals sent to it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/processes`: start a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRequest {
    /// The program, looked up on the sandbox's `PATH` (`/bin/bash`, `python3`).
    pub cmd: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment variables (the control plane merges the request's over the session's).
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// The directory it starts in: an existing directory of the workspace, relative to it or
    /// absolute under `/workspace`; the workspace root when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Wall-clock lifetime in milliseconds; the process is killed when it elapses. 0 means no
    /// limit (it still ends with its sandbox).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Keep a pipe to its standard input open (written with `stdin`, closed with
    /// `stdin/close`); otherwise its standard input is empty.
    #[serde(default)]
    pub stdin: bool,
    /// Run it on a pseudo-terminal of this size.
    #[serde(default)]
    pub pty: Option<PtySize>,
    /// A label of the caller's, shown in listings.
    #[serde(default)]
    pub tag: Option<String>,
}

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// Whether a process is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    /// It runs.
    Running,
    /// It has ended (kept for a while so its end can still be read).
    Exited,
}

/// One process as the executor knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The executor's number for it (a counter from 1, never a host pid).
    pub pid: u32,
    /// The caller's label.
    pub tag: Option<String>,
    /// The program.
    pub cmd: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment variables as requested.
    pub envs: BTreeMap<String, String>,
    /// Its working directory, as the absolute path it sees.
    pub cwd: String,
    /// Whether it has a standard input pipe still open.
    pub stdin: bool,
    /// Its terminal's size, when it runs on one.
    pub pty: Option<PtySize>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Running or exited.
    pub state: ProcessState,
    /// How it ended, once it has.
    pub end: Option<ProcessEnd>,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEnd {
    /// Its exit code; -1 when a signal ended it.
    pub exit_code: i32,
    /// Whether it exited by itself (false when a signal ended it).
    pub exited: bool,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// `exit status N` or `signal: NAME` (`signal: killed`, `signal: terminated`).
    pub status: String,
    /// Why it ended abnormally: its timeout, its sandbox failing.
    pub error: Option<String>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
}

/// One line of a process's event stream (`application/x-ndjson`): `start` first, then output
/// and keepalives, `end` last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProcessEvent {
    /// The stream is attached to process `pid`.
    Start {
        /// The process.
        pid: u32,
    },
    /// Bytes it wrote to standard output (base64 in JSON).
    Stdout {
        /// The bytes.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Bytes it wrote to standard error.
    Stderr {
        /// The bytes.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Bytes it wrote to its terminal.
    Pty {
        /// The bytes.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Nothing happened for a while; the stream is alive.
    Keepalive,
    /// It ended; the stream ends after this.
    End(ProcessEnd),
}

/// A signal a caller may send to a process; it reaches every process of its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessSignal {
    /// Ask it to stop.
    #[serde(rename = "SIGTERM")]
    Term,
    /// End it at once.
    #[serde(rename = "SIGKILL")]
    Kill,
    /// Interrupt it (Ctrl-C).
    #[serde(rename = "SIGINT")]
    Int,
    /// Its terminal hung up.
    #[serde(rename = "SIGHUP")]
    Hup,
    /// Quit (Ctrl-\).
    #[serde(rename = "SIGQUIT")]
    Quit,
    /// User-defined signal 1.
    #[serde(rename = "SIGUSR1")]
    Usr1,
    /// User-defined signal 2.
    #[serde(rename = "SIGUSR2")]
    Usr2,
}

impl ProcessSignal {
    /// Its number on Linux.
    pub fn number(self) -> i32 {
        match self {
            ProcessSignal::Hup => 1,
            ProcessSignal::Int => 2,
            ProcessSignal::Quit => 3,
            ProcessSignal::Kill => 9,
            ProcessSignal::Usr1 => 10,
            ProcessSignal::Usr2 => 12,
            ProcessSignal::Term => 15,
        }
    }
}

/// `POST /v1/processes/{pid}/signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    /// The signal (`"SIGTERM"`, `"SIGKILL"`, ...).
    pub signal: ProcessSignal,
}

/// The text Go's `os.ProcessState` gives for an exit (`exit status 3`) or a signal
/// (`signal: killed`), which E2B clients show.
pub fn status_text(exit_code: Option<i32>, signal: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(s), _) => format!("signal: {}", signal_name(s)),
        (None, Some(c)) => format!("exit status {c}"),
        (None, None) => "signal: killed".to_owned(),
    }
}

/// The name Go gives signal `n`.
fn signal_name(n: i32) -> String {
    let name = match n {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        10 => "user defined signal 1",
        11 => "segmentation fault",
        12 => "user defined signal 2",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        24 => "CPU time limit exceeded",
        25 => "file size limit exceeded",
        31 => "bad system call",
        _ => return format!("signal {n}"),
    };
    name.to_owned()
}

/// Bytes as standard base64 text in JSON.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_lines_with_base64_data() {
        let ev = ProcessEvent::Stdout { data: b"hi\n\xff".to_vec() };
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(text, r#"{"type":"stdout","data":"aGkK/w=="}"#);
        assert_eq!(serde_json::from_str::<ProcessEvent>(&text).unwrap(), ev);
        assert_eq!(
            serde_json::to_string(&ProcessEvent::Start { pid: 3 }).unwrap(),
            r#"{"type":"start","pid":3}"#
        );
        assert_eq!(serde_json::to_string(&ProcessEvent::Keepalive).unwrap(), r#"{"type":"keepalive"}"#);
        let end = ProcessEvent::End(ProcessEnd {
            exit_code: -1,
            exited: false,
            signal: Some(9),
            status: "signal: killed".into(),
            error: None,
            ended_at: Utc::now(),
        });
        let v = serde_json::to_value(&end).unwrap();
        assert_eq!((v["type"].as_str(), v["exit_code"].as_i64()), (Some("end"), Some(-1)));
        assert_eq!(serde_json::from_value::<ProcessEvent>(v).unwrap(), end);
        assert!(serde_json::from_str::<ProcessEvent>(r#"{"type":"stdout","data":"!"}"#).is_err());
    }

    #[test]
    fn requests_default_and_signals_parse() {
        let r: ProcessRequest = serde_json::from_str(r#"{"cmd":"ls"}"#).unwrap();
        assert_eq!(r, ProcessRequest { cmd: "ls".into(), ..Default::default() });
        let s: SignalRequest = serde_json::from_str(r#"{"signal":"SIGKILL"}"#).unwrap();
        assert_eq!((s.signal, s.signal.number()), (ProcessSignal::Kill, 9));
        assert!(serde_json::from_str::<SignalRequest>(r#"{"signal":"SIGSTOP"}"#).is_err());
    }

    #[test]
    fn status_text_is_go_s() {
        assert_eq!(status_text(Some(0), None), "exit status 0");
        assert_eq!(status_text(Some(3), None), "exit status 3");
        assert_eq!(status_text(None, Some(9)), "signal: killed");
        assert_eq!(status_text(None, Some(15)), "signal: terminated");
        assert_eq!(status_text(None, Some(2)), "signal: interrupt");
        assert_eq!(status_text(None, Some(40)), "signal: signal 40");
        assert_eq!(status_text(None, None), "signal: killed");
    }
}
