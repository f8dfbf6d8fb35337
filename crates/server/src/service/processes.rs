//! Processes: commands started on their own in a running session's sandbox, each in a bwrap
//! sandbox of its own, outliving the request that started them. The session's executor holds
//! them (nothing is stored); a process never outlives its session's sandbox.

use crate::caller::Caller;
use crate::service::error::ServiceError;
use crate::service::sessions::{Sessions, validate_env};
use crate::settings::Settings;
use futures_util::StreamExt;
use sandbox_core::model::Session;
use sandbox_executor_client::{ClientError, ExecutorClient, ProcessEvents};
use sandbox_protocol::{ErrorCode, ProcessEvent, ProcessInfo, ProcessRequest, ProcessSignal, PtySize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A validated request for a new process.
#[derive(Debug, Clone, Default)]
pub struct NewProcess {
    /// The program.
    pub cmd: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its own environment variables, on top of the session's.
    pub envs: BTreeMap<String, String>,
    /// The directory it starts in, relative to the workspace or absolute under it.
    pub cwd: Option<String>,
    /// Its lifetime in milliseconds; 0 for none.
    pub timeout_ms: u64,
    /// Keep its standard input open.
    pub stdin: bool,
    /// Run it on a terminal of this size.
    pub pty: Option<PtySize>,
    /// A label of the caller's.
    pub tag: Option<String>,
}

/// Processes.
pub struct Processes {
    settings: Arc<Settings>,
    sessions: Arc<Sessions>,
}

/// What an executor's refusal about process `pid` (or a new one) means to the caller.
pub fn refusal(pid: Option<u32>, err: ClientError) -> ServiceError {
    let Some(body) = err.api_error() else { return ServiceError::Executor(err) };
    let message = body.message.clone();
    match body.code {
        ErrorCode::ProcessNotFound => ServiceError::not_found(
            "process_not_found",
            format!("process {} does not exist in this session", pid.unwrap_or_default()),
        ),
        ErrorCode::ProcessExited => ServiceError::conflict("process_exited", message),
        ErrorCode::Conflict => ServiceError::conflict("process_conflict", message),
        ErrorCode::TooManyProcesses => ServiceError::quota("too_many_processes", message, 5),
        ErrorCode::InvalidPath | ErrorCode::NotFound | ErrorCode::NotADirectory => {
            ServiceError::invalid_field("cwd", message)
        }
        ErrorCode::BadRequest => ServiceError::bad_request("invalid_process", message),
        _ => ServiceError::Executor(err),
    }
}

impl Processes {
    /// The service.
    pub fn new(settings: Arc<Settings>, sessions: Arc<Sessions>) -> Self {
        Processes { settings, sessions }
    }

    /// A running session of the caller's and its executor.
    async fn running(
        &self,
        caller: &Caller,
        session_id: &str,
    ) -> Result<(Session, ExecutorClient), ServiceError> {
        let session = self.sessions.get_running(caller, session_id).await?;
        let client = self.sessions.executor(&session).await?;
        Ok((session, client))
    }

    /// Starts a process in a running session of the caller's: its info, and its events from
    /// its start (dropping them leaves it running).
    pub async fn start(
        &self,
        caller: &Caller,
        session_id: &str,
        req: NewProcess,
    ) -> Result<(ProcessInfo, ProcessEvents), ServiceError> {
        validate_env(&req.envs, self.settings.limits.max_env_vars)
            .map_err(|e| ServiceError::invalid_field("envs", e))?;
        if req.cmd.is_empty() {
            return Err(ServiceError::invalid_field("cmd", "must not be empty"));
        }
        let session = self.sessions.get_ready(caller, session_id).await?;
        let client = self.sessions.executor(&session).await?;
        let mut envs = session.env_vars.clone();
        envs.extend(req.envs);
        let request = ProcessRequest {
            cmd: req.cmd,
            args: req.args,
            envs,
            cwd: req.cwd,
            timeout_ms: req.timeout_ms,
            stdin: req.stdin,
            pty: req.pty,
            tag: req.tag,
        };
        let mut events = client.start_process(&request).await.map_err(|e| refusal(None, e))?;
        self.sessions.touch(&session.id).await;
        let pid = match events.next().await {
            Some(Ok(ProcessEvent::Start { pid })) => pid,
            Some(Ok(other)) => {
                return Err(ServiceError::internal(format!("a process stream began with {other:?}")));
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ServiceError::internal("a process stream ended before its start")),
        };
        let info = client.process(pid).await.map_err(|e| refusal(Some(pid), e))?;
        Ok((info, events))
    }

    /// A running session's processes, running or recently exited, by pid.
    pub async fn list(&self, caller: &Caller, session_id: &str) -> Result<Vec<ProcessInfo>, ServiceError> {
        let (_, client) = self.running(caller, session_id).await?;
        Ok(client.processes().await?)
    }

    /// One process.
    pub async fn get(
        &self,
        caller: &Caller,
        session_id: &str,
        pid: u32,
    ) -> Result<ProcessInfo, ServiceError> {
        let (_, client) = self.running(caller, session_id).await?;
        client.process(pid).await.map_err(|e| refusal(Some(pid), e))
    }

    /// A process's events from now on: `start`, its output from now, `end` (at once for an
    /// exited one).
    pub async fn events(
        &self,
        caller: &Caller,
        session_id: &str,
        pid: u32,
    ) -> Result<ProcessEvents, ServiceError> {
        let (_, client) = self.running(caller, session_id).await?;
        client.process_events(pid).await.map_err(|e| refusal(Some(pid), e))
    }

    /// Writes to a process's standard input.
    pub async fn write_stdin(
        &self,
        caller: &Caller,
        session_id: &str,
        pid: u32,
        bytes: Vec<u8>,
    ) -> Result<(), ServiceError> {
        let (session, client) = self.running(caller, session_id).await?;
        client.write_stdin(pid, bytes).await.map_err(|e| refusal(Some(pid), e))?;
        self.sessions.touch(&session.id).await;
        Ok(())
    }

    /// Closes a process's standard input.
    pub async fn close_stdin(&self, caller: &Caller, session_id: &str, pid: u32) -> Result<(), ServiceError> {
        let (_, client) = self.running(caller, session_id).await?;
        client.close_stdin(pid).await.map_err(|e| refusal(Some(pid), e))
    }

    /// Sends a signal to a process's whole tree.
    pub async fn signal(
        &self,
        caller: &Caller,
        session_id: &str,
        pid: u32,
        signal: ProcessSignal,
    ) -> Result<(), ServiceError> {
        let (_, client) = self.running(caller, session_id).await?;
        client.signal_process(pid, signal).await.map_err(|e| refusal(Some(pid), e))
    }

    /// Resizes a process's terminal.
    pub async fn resize(
        &self,
        caller: &Caller,
        session_id: &str,
        pid: u32,
        size: PtySize,
    ) -> Result<(), ServiceError> {
        let (_, client) = self.running(caller, session_id).await?;
        client.resize_pty(pid, size).await.map_err(|e| refusal(Some(pid), e))
    }
}
