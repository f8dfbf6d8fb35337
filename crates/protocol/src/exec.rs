//! Running code: the request, the result, and the stream of events in between.

use crate::files::FileChange;
use chrono::{DateTime, Utc};
pub use sandbox_core::display::{DisplayOutput, ExecError};
use sandbox_core::{ExecutionStatus, Language};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How the executor answers `POST /v1/executions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// Answer with the [`ExecResult`] once the execution has ended.
    #[default]
    Wait,
    /// Answer at once with `application/x-ndjson`: one [`StreamEvent`] per line, output chunks
    /// as they happen, the result last.
    Stream,
    /// Answer at once with [`ExecutionRecord::Running`]; fetch the result later.
    Detach,
}

/// `POST /v1/executions` (stateless: a sandbox of its own), or `POST /v1/contexts/{id}/executions`
/// (a cell in a persistent context, see [`crate::context`]).
///
/// Submitting an `execution_id` the executor already knows does not run the code again: the
/// executor answers with that execution (so a control plane can retry safely).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Chosen by the control plane; unique per sandbox; `[A-Za-z0-9_-]{1,64}`.
    pub execution_id: String,
    /// The interpreter to use.
    pub language: Language,
    /// The program. Passed to the interpreter as a file, never through a shell.
    pub code: String,
    /// Passed to a handler as its first argument, and readable at `/sandbox/event.json`.
    /// Contexts have no handlers: an execution in a context must not carry one.
    #[serde(default)]
    pub event: Option<Value>,
    /// Wall-clock limit in milliseconds.
    pub timeout_ms: u64,
    /// Extra environment variables for this execution (the session's variables). A context's
    /// interpreter keeps the environment it was created with; there this is not used.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `context.function_name` for handlers; defaults to the execution id.
    #[serde(default)]
    pub function_name: Option<String>,
    /// How to answer.
    #[serde(default)]
    pub mode: ExecMode,
}

/// Resource use of one execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecMetrics {
    /// Wall-clock time from start to end.
    pub duration_ms: f64,
    /// User plus system CPU time of the whole process tree.
    pub cpu_time_ms: f64,
    /// Peak resident memory of the largest process in the tree.
    pub peak_memory_mb: f64,
}

/// The outcome of an execution. Every execution gets exactly one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The id from the request.
    pub execution_id: String,
    /// `completed`, `failed`, `timeout` or `crashed`.
    pub status: ExecutionStatus,
    /// The exit code, when the program exited rather than being killed.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when it was killed.
    pub signal: Option<i32>,
    /// Standard output (invalid UTF-8 replaced), cut at the executor's cap.
    pub stdout: String,
    /// Standard error, likewise.
    pub stderr: String,
    /// Whether stdout was longer than the cap.
    pub stdout_truncated: bool,
    /// Whether stderr was longer than the cap.
    pub stderr_truncated: bool,
    /// What a handler returned (`None` for plain scripts).
    pub return_value: Option<Value>,
    /// Why the execution did not complete; `None` when it did.
    pub error_message: Option<String>,
    /// Whether the wall-clock limit ended it.
    pub timed_out: bool,
    /// Whether the kernel's out-of-memory killer ended it.
    pub oom_killed: bool,
    /// When the process started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Resource use.
    pub metrics: ExecMetrics,
    /// Workspace files created, changed or deleted while it ran.
    pub files: Vec<FileChange>,
    /// Whether the change list was cut short (very large workspaces).
    pub files_truncated: bool,
    /// Workspace entries left out of `files` because no API path can name them (paths longer
    /// than 4096 bytes).
    #[serde(default)]
    pub files_skipped: u64,
    /// The context it ran in; `None` for a stateless execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Rich display outputs in the order they were produced: `display()` calls, figures, and
    /// (in a context) the value of the cell's last expression, the one marked
    /// [`is_main_result`](DisplayOutput::is_main_result).
    #[serde(default)]
    pub results: Vec<DisplayOutput>,
    /// Whether display outputs were left out because together they passed the executor's cap.
    #[serde(default)]
    pub results_truncated: bool,
    /// The uncaught exception that ended the code, when one did (Python and JavaScript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExecError>,
}

/// `GET /v1/executions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ExecutionRecord {
    /// Still running.
    Running {
        /// The id.
        execution_id: String,
        /// When it started.
        started_at: DateTime<Utc>,
    },
    /// Ended; the result is kept until the control plane forgets it.
    Finished {
        /// The result.
        result: Box<ExecResult>,
    },
}

/// One line of `GET /v1/executions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// The id.
    pub execution_id: String,
    /// `running` or a terminal status.
    pub status: ExecutionStatus,
}

/// One line of a streamed execution (`mode: stream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamEvent {
    /// The process has started.
    Started {
        /// The id.
        execution_id: String,
        /// When.
        started_at: DateTime<Utc>,
    },
    /// A chunk of standard output.
    Stdout {
        /// The text.
        data: String,
    },
    /// A chunk of standard error.
    Stderr {
        /// The text.
        data: String,
    },
    /// The final result; always the last line.
    Result {
        /// The result.
        result: Box<ExecResult>,
    },
}

/// One line of a streamed execution as this executor sends it: a [`StreamEvent`], or a display
/// output as soon as the code produced it (`{"type": "display", "output": {...}}`). The result's
/// [`results`](ExecResult::results) repeats every display output, so a reader that knows only
/// [`StreamEvent`] loses nothing but the timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExecEvent {
    /// A display output (see [`ExecResult::results`]).
    Display {
        /// The output.
        output: DisplayOutput,
    },
    /// Everything else.
    #[serde(untagged)]
    Stream(StreamEvent),
}

impl From<StreamEvent> for ExecEvent {
    fn from(e: StreamEvent) -> Self {
        ExecEvent::Stream(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_defaults() {
        let r: ExecRequest = serde_json::from_str(
            r#"{"execution_id":"e1","language":"python","code":"print(1)","timeout_ms":1000}"#,
        )
        .unwrap();
        assert_eq!(r.mode, ExecMode::Wait);
        assert!(r.env.is_empty() && r.event.is_none());
    }

    #[test]
    fn stream_event_tags() {
        let e = StreamEvent::Stdout { data: "hi".into() };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"type":"stdout","data":"hi"}"#);
    }

    /// Display lines carry their own tag; every other line reads as the [`StreamEvent`] it was,
    /// both ways.
    #[test]
    fn exec_events_extend_stream_events() {
        let stdout = ExecEvent::from(StreamEvent::Stdout { data: "hi".into() });
        let line = serde_json::to_string(&stdout).unwrap();
        assert_eq!(line, r#"{"type":"stdout","data":"hi"}"#);
        assert_eq!(serde_json::from_str::<ExecEvent>(&line).unwrap(), stdout);
        let output = DisplayOutput {
            data: [("text/plain".to_owned(), Value::from("2"))].into(),
            is_main_result: true,
            ..Default::default()
        };
        let display = ExecEvent::Display { output };
        let line = serde_json::to_string(&display).unwrap();
        assert_eq!(line, r#"{"type":"display","output":{"data":{"text/plain":"2"},"is_main_result":true}}"#);
        assert_eq!(serde_json::from_str::<ExecEvent>(&line).unwrap(), display);
        assert!(serde_json::from_str::<StreamEvent>(&line).is_err(), "older readers skip it");
    }

    /// A result from an executor that predates contexts and display outputs still reads.
    #[test]
    fn results_without_the_newer_fields_read() {
        let r: ExecResult = serde_json::from_value(serde_json::json!({
            "execution_id": "e1", "status": "completed", "exit_code": 0, "signal": null,
            "stdout": "", "stderr": "", "stdout_truncated": false, "stderr_truncated": false,
            "return_value": null, "error_message": null, "timed_out": false, "oom_killed": false,
            "started_at": "2026-12-01T00:00:00Z", "finished_at": "2026-12-01T00:00:01Z",
            "metrics": {"duration_ms": 1.0, "cpu_time_ms": 1.0, "peak_memory_mb": 1.0},
            "files": [], "files_truncated": false
        }))
        .unwrap();
        assert!(r.results.is_empty() && r.error.is_none() && r.context_id.is_none());
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("context_id").is_none() && json.get("error").is_none(), "{json}");
    }
}
