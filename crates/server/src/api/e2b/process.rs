//! envd's `process.Process` service on top of the session's processes: `Start` and `Connect`
//! (server streams: `start` first, output as it comes, `end` last), `List`, `SendSignal`,
//! `SendInput`, `CloseStdin` and `Update` (a terminal's size). A process outlives its stream,
//! as in envd; `Connect-Timeout-Ms` is its lifetime.

use super::Target;
use super::connect::{self, ConnectError};
use super::envd::{Empty, home_path, unary, workspace_path};
use crate::service::error::ServiceError;
use crate::service::processes::NewProcess;
use crate::state::AppState;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt;
use sandbox_protocol::{ProcessEnd, ProcessEvent, ProcessInfo, ProcessSignal, ProcessState, PtySize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `ProcessConfig`: what to run.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct ProcessConfig {
    cmd: String,
    args: Vec<String>,
    envs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<String>,
}

/// `PTY`: a terminal of `size`.
#[derive(Debug, Deserialize)]
struct Pty {
    size: Option<PtySizeJson>,
}

/// `PTY.Size`.
#[derive(Debug, Deserialize)]
struct PtySizeJson {
    cols: u16,
    rows: u16,
}

/// `StartRequest`.
#[derive(Debug, Deserialize)]
struct StartRequest {
    process: ProcessConfig,
    pty: Option<Pty>,
    tag: Option<String>,
    stdin: Option<bool>,
}

/// `ProcessSelector`: a pid or a tag.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Selector {
    pid: Option<u32>,
    tag: Option<String>,
}

/// A request naming one process (`Connect`, `CloseStdin`).
#[derive(Debug, Deserialize)]
struct SelectRequest {
    process: Selector,
}

/// `SendSignalRequest`.
#[derive(Debug, Deserialize)]
struct SignalRequest {
    process: Selector,
    signal: String,
}

/// `ProcessInput`: bytes for standard input or the terminal (base64).
#[derive(Debug, Deserialize)]
struct Input {
    stdin: Option<String>,
    pty: Option<String>,
}

/// `SendInputRequest`.
#[derive(Debug, Deserialize)]
struct InputRequest {
    process: Selector,
    input: Input,
}

/// `UpdateRequest`.
#[derive(Debug, Deserialize)]
struct UpdateRequest {
    process: Selector,
    pty: Option<Pty>,
}

/// `ProcessInfo` of `ListResponse`.
#[derive(Debug, Serialize)]
struct Listed {
    config: ProcessConfig,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

/// `ListResponse`.
#[derive(Debug, Serialize)]
struct ListResponse {
    processes: Vec<Listed>,
}

/// `StartResponse` / `ConnectResponse`: one `ProcessEvent`.
#[derive(Debug, Serialize)]
struct EventMessage {
    event: Event,
}

/// `ProcessEvent`, as proto3 JSON names its `oneof`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum Event {
    Start { pid: u32 },
    Data(Data),
    End(End),
    Keepalive {},
}

/// `ProcessEvent.DataEvent`: base64 bytes of one stream.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum Data {
    Stdout(String),
    Stderr(String),
    Pty(String),
}

/// `ProcessEvent.EndEvent`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct End {
    exit_code: i32,
    exited: bool,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<ProcessEnd> for End {
    fn from(e: ProcessEnd) -> Self {
        // envd reports a process ended by a signal with exit code -1.
        let exit_code = if e.exited { e.exit_code } else { -1 };
        End { exit_code, exited: e.exited, status: e.status, error: e.error }
    }
}

/// A process event as envd words it.
fn event(ev: ProcessEvent) -> Event {
    let b64 = |d: Vec<u8>| STANDARD.encode(d);
    match ev {
        ProcessEvent::Start { pid } => Event::Start { pid },
        ProcessEvent::Stdout { data } => Event::Data(Data::Stdout(b64(data))),
        ProcessEvent::Stderr { data } => Event::Data(Data::Stderr(b64(data))),
        ProcessEvent::Pty { data } => Event::Data(Data::Pty(b64(data))),
        ProcessEvent::Keepalive => Event::Keepalive {},
        ProcessEvent::End(end) => Event::End(end.into()),
    }
}

/// A process's events as a Connect server stream: `start` first, the end-of-stream after `end`.
fn event_stream(
    first: Option<u32>,
    events: sandbox_executor_client::ProcessEvents,
) -> impl futures_util::Stream<Item = Result<EventMessage, ConnectError>> + Send + 'static {
    let start = first.map(|pid| Ok(EventMessage { event: Event::Start { pid } }));
    let rest = events.map(|ev| match ev {
        Ok(ev) => Ok(EventMessage { event: event(ev) }),
        Err(e) => Err(ConnectError::new("unavailable", format!("the process's output was lost: {e}"))),
    });
    futures_util::stream::iter(start).chain(rest)
}

/// The terminal size a request asks for, if any.
fn pty_size(pty: Option<Pty>) -> Option<PtySize> {
    pty.and_then(|p| p.size).map(|s| PtySize { cols: s.cols, rows: s.rows })
}

/// `Connect-Timeout-Ms`: the process's lifetime (none without the header).
fn lifetime_ms(headers: &HeaderMap) -> Result<u64, ConnectError> {
    match headers.get("connect-timeout-ms") {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ConnectError::invalid("Connect-Timeout-Ms must be a number of milliseconds")),
    }
}

/// A process error as envd's: one that is gone or has ended is `not_found` (so the SDK's
/// `kill()` answers false).
fn process_error(e: ServiceError) -> ConnectError {
    match &e {
        ServiceError::NotFound { code: "process_not_found", .. } => {
            ConnectError::new("not_found", e.to_string())
        }
        ServiceError::Conflict { code: "process_exited", .. } => {
            ConnectError::new("not_found", e.to_string())
        }
        _ => e.into(),
    }
}

/// The pid a selector names: its pid, or the running process with its tag.
async fn select(state: &AppState, t: &Target, sel: Selector) -> Result<u32, ConnectError> {
    if let Some(pid) = sel.pid {
        return Ok(pid);
    }
    let Some(tag) = sel.tag else { return Err(ConnectError::invalid("the process needs a pid or a tag")) };
    let all = state.processes.list(&t.caller, &t.session.id).await.map_err(process_error)?;
    all.into_iter()
        .find(|p| p.state == ProcessState::Running && p.tag.as_deref() == Some(tag.as_str()))
        .map(|p| p.pid)
        .ok_or_else(|| ConnectError::new("not_found", format!("no running process has tag {tag:?}")))
}

/// `Start`.
async fn start(state: &AppState, t: &Target, headers: &HeaderMap, body: &[u8]) -> Response {
    let begun = async {
        let req: StartRequest = connect::stream_request(headers, body)?;
        let cwd = match req.process.cwd.as_deref() {
            Some(raw) => Some(workspace_path(raw).map_err(ConnectError::from)?.as_str().to_owned()),
            None => None,
        };
        let new = NewProcess {
            cmd: req.process.cmd,
            args: req.process.args,
            envs: req.process.envs,
            cwd,
            timeout_ms: lifetime_ms(headers)?,
            stdin: req.stdin.unwrap_or(false),
            pty: pty_size(req.pty),
            tag: req.tag,
        };
        let (info, events) =
            state.processes.start(&t.caller, &t.session.id, new).await.map_err(process_error)?;
        Ok::<_, ConnectError>(event_stream(Some(info.pid), events))
    };
    connect::stream_result(begun.await)
}

/// `Connect`: the process's events from now on.
async fn attach(state: &AppState, t: &Target, headers: &HeaderMap, body: &[u8]) -> Response {
    let attached = async {
        let req: SelectRequest = connect::stream_request(headers, body)?;
        let pid = select(state, t, req.process).await?;
        let events = state.processes.events(&t.caller, &t.session.id, pid).await.map_err(process_error)?;
        // The executor's stream begins with `start` itself.
        Ok::<_, ConnectError>(event_stream(None, events))
    };
    connect::stream_result(attached.await)
}

/// `List`: the running processes.
async fn list(state: &AppState, t: &Target) -> Result<ListResponse, ConnectError> {
    let all = state.processes.list(&t.caller, &t.session.id).await.map_err(process_error)?;
    let processes = all.into_iter().filter(|p| p.state == ProcessState::Running).map(listed).collect();
    Ok(ListResponse { processes })
}

fn listed(p: ProcessInfo) -> Listed {
    Listed {
        config: ProcessConfig {
            cmd: p.cmd,
            args: p.args,
            envs: p.envs,
            cwd: workspace_path(&p.cwd).ok().map(|w| home_path(&w)),
        },
        pid: p.pid,
        tag: p.tag,
    }
}

/// `SendSignal`: `SIGNAL_SIGKILL`, `SIGNAL_SIGTERM` (and the other signals by their names).
async fn send_signal(state: &AppState, t: &Target, req: SignalRequest) -> Result<Empty, ConnectError> {
    let name = req.signal.strip_prefix("SIGNAL_").unwrap_or(&req.signal);
    let signal: ProcessSignal = serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| ConnectError::invalid(format!("unknown signal {:?}", req.signal)))?;
    let pid = select(state, t, req.process).await?;
    state.processes.signal(&t.caller, &t.session.id, pid, signal).await.map_err(process_error)?;
    Ok(Empty {})
}

/// `SendInput`: bytes to standard input or to the terminal.
async fn send_input(state: &AppState, t: &Target, req: InputRequest) -> Result<Empty, ConnectError> {
    let data = req.input.stdin.or(req.input.pty).unwrap_or_default();
    let bytes =
        STANDARD.decode(data).map_err(|e| ConnectError::invalid(format!("input is not base64: {e}")))?;
    let pid = select(state, t, req.process).await?;
    state.processes.write_stdin(&t.caller, &t.session.id, pid, bytes).await.map_err(process_error)?;
    Ok(Empty {})
}

/// `CloseStdin`.
async fn close_stdin(state: &AppState, t: &Target, req: SelectRequest) -> Result<Empty, ConnectError> {
    let pid = select(state, t, req.process).await?;
    state.processes.close_stdin(&t.caller, &t.session.id, pid).await.map_err(process_error)?;
    Ok(Empty {})
}

/// `Update`: a new terminal size.
async fn update(state: &AppState, t: &Target, req: UpdateRequest) -> Result<Empty, ConnectError> {
    let pid = select(state, t, req.process).await?;
    if let Some(size) = pty_size(req.pty) {
        state.processes.resize(&t.caller, &t.session.id, pid, size).await.map_err(process_error)?;
    }
    Ok(Empty {})
}

/// `POST /process.Process/{method}`.
pub async fn process(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = &state;
    match method.as_str() {
        "Start" => start(s, &t, &headers, &body).await,
        "Connect" => attach(s, &t, &headers, &body).await,
        "List" => unary(&headers, &body, async |_: serde_json::Value| list(s, &t).await).await,
        "SendSignal" => unary(&headers, &body, async |r| send_signal(s, &t, r).await).await,
        "SendInput" => unary(&headers, &body, async |r| send_input(s, &t, r).await).await,
        "CloseStdin" => unary(&headers, &body, async |r| close_stdin(s, &t, r).await).await,
        "Update" => unary(&headers, &body, async |r| update(s, &t, r).await).await,
        other => ConnectError::unimplemented(&format!("process.Process/{other}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_envd_s_proto3_json() {
        let json = |ev| serde_json::to_value(EventMessage { event: event(ev) }).unwrap();
        assert_eq!(json(ProcessEvent::Start { pid: 7 }), serde_json::json!({"event": {"start": {"pid": 7}}}));
        assert_eq!(
            json(ProcessEvent::Stdout { data: b"hi\n".to_vec() }),
            serde_json::json!({"event": {"data": {"stdout": "aGkK"}}})
        );
        assert_eq!(json(ProcessEvent::Keepalive), serde_json::json!({"event": {"keepalive": {}}}));
        let end = |exited, exit_code, status: &str| {
            ProcessEvent::End(ProcessEnd {
                exit_code,
                exited,
                signal: (!exited).then_some(9),
                status: status.into(),
                error: None,
                ended_at: chrono::Utc::now(),
            })
        };
        assert_eq!(
            json(end(true, 3, "exit status 3")),
            serde_json::json!({"event": {"end": {"exitCode": 3, "exited": true, "status": "exit status 3"}}})
        );
        assert_eq!(
            json(end(false, 0, "signal: killed")),
            serde_json::json!({"event": {"end": {"exitCode": -1, "exited": false, "status": "signal: killed"}}})
        );
    }

    #[test]
    fn the_lifetime_is_the_connect_timeout() {
        let mut h = HeaderMap::new();
        assert_eq!(lifetime_ms(&h).unwrap(), 0);
        h.insert("connect-timeout-ms", "60000".parse().unwrap());
        assert_eq!(lifetime_ms(&h).unwrap(), 60_000);
        h.insert("connect-timeout-ms", "soon".parse().unwrap());
        assert_eq!(lifetime_ms(&h).unwrap_err().code, "invalid_argument");
    }
}
