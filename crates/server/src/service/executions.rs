//! Executions: recorded before they start, run in their own task through the session's
//! executor, and always stored with a terminal status.

use crate::caller::Caller;
use crate::ids;
use crate::metrics::Metrics;
use crate::service::error::ServiceError;
use crate::service::sessions::{ExecutionSlot, Sessions};
use crate::settings::Settings;
use chrono::Utc;
use futures_util::StreamExt;
use sandbox_core::model::{Artifact, Execution, ExecutionMetrics, Session, SessionStatus};
use sandbox_core::{ExecutionStatus, Language};
use sandbox_executor_client::{ClientError, ExecutorClient};
use sandbox_protocol::{ExecRequest, ExecResult, ExecutionRecord, StreamEvent};
use sandbox_store::{Page, Store};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// How long past its timeout an execution may go unfinished before the lifecycle leader treats
/// it as abandoned and collects or ends it.
const OVERDUE_GRACE: Duration = Duration::from_secs(60);

/// A validated request to run code.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// The program.
    pub code: String,
    /// Its language.
    pub language: Language,
    /// Timeout, seconds.
    pub timeout_sec: u32,
    /// A handler's event.
    pub event: Option<Value>,
}

/// An execution that has been recorded and started.
pub struct Submitted {
    /// The record as first stored (`pending`).
    pub execution: Execution,
    /// Resolves to the final record.
    pub done: tokio::task::JoinHandle<Execution>,
    /// Output chunks as they happen, when streaming was asked for.
    pub events: Option<mpsc::UnboundedReceiver<StreamEvent>>,
}

/// Executions.
pub struct Executions {
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    settings: Arc<Settings>,
    /// Every task running or collecting an execution, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Executions this process is running or collecting now.
    inflight: Mutex<HashSet<String>>,
}

/// When [`Executions::recover`] acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// At start-up: every unfinished execution (except one another replica may have just
    /// recorded and not yet handed to its executor).
    Startup,
    /// In the lifecycle loop: only executions past their timeout plus a grace.
    Overdue,
}

impl Executions {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Executions {
            store,
            sessions,
            metrics,
            settings,
            tasks: TaskTracker::new(),
            inflight: Mutex::new(HashSet::new()),
        }
    }

    /// Records an execution in a running session of the caller's and starts it.
    pub async fn submit(
        self: &Arc<Self>,
        caller: &Caller,
        session_id: &str,
        req: NewExecution,
        stream: bool,
    ) -> Result<Submitted, ServiceError> {
        let limits = &self.settings.limits;
        if req.code.len() > limits.max_code_bytes {
            return Err(ServiceError::too_large(
                "code_too_large",
                format!("code is {} bytes; the limit is {}", req.code.len(), limits.max_code_bytes),
            ));
        }
        if req.timeout_sec == 0 || req.timeout_sec > limits.max_execution_timeout_sec {
            return Err(ServiceError::invalid_field(
                "timeout",
                format!("must be between 1 and {} seconds", limits.max_execution_timeout_sec),
            ));
        }
        let session = self.sessions.get_running(caller, session_id).await?;
        let client = self.sessions.executor(&session).await?;
        let slot = self.sessions.begin_execution(&session.id)?;
        // Recorded as running before it starts (it is handed to the executor at once): whatever
        // happens next, there is a row to finish, and one write fewer on the way.
        let now = Utc::now();
        let execution = Execution {
            id: ids::execution_id(),
            session_id: session.id.clone(),
            status: ExecutionStatus::Running,
            language: req.language,
            code: req.code,
            event: req.event,
            timeout_sec: req.timeout_sec,
            exit_code: None,
            error_message: None,
            stdout: None,
            stderr: None,
            return_value: None,
            artifacts: Vec::new(),
            metrics: None,
            retry_count: 0,
            created_at: now,
            started_at: Some(now),
            completed_at: None,
            execution_time: None,
        };
        self.store.insert_execution(&execution).await?;
        let (tx, rx) = if stream {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let this = self.clone();
        let record = execution.clone();
        self.track(&execution.id);
        let done = self.tasks.spawn(async move { this.run(session, client, record, tx, slot).await });
        Ok(Submitted { execution, done, events: rx })
    }

    fn track(&self, id: &str) -> bool {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned())
    }

    fn untrack(&self, id: &str) {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Runs a recorded execution to its end and stores the outcome; `_slot` holds its place
    /// among the session's running executions until then.
    async fn run(
        &self,
        session: Session,
        client: ExecutorClient,
        mut e: Execution,
        events: Option<mpsc::UnboundedSender<StreamEvent>>,
        _slot: ExecutionSlot,
    ) -> Execution {
        let clock = Instant::now();
        let req = request_for(&e, &session);
        let outcome = match events {
            None => client.execute(&req).await,
            Some(tx) => stream_into(&client, &req, tx).await,
        };
        match outcome {
            Ok(r) => {
                let r = self.persist(&session.id, &client, r).await;
                apply_result(&mut e, r)
            }
            Err(err) => {
                tracing::warn!(execution_id = %e.id, session_id = %session.id, error = %err, "executor did not answer");
                crash(&mut e, format!("the sandbox did not answer: {err}"));
                e.execution_time = Some(clock.elapsed().as_secs_f64());
                if matches!(err, ClientError::Unreachable(_)) {
                    // Its sandbox may be gone: recreate it now rather than at the next pass.
                    let sessions = self.sessions.clone();
                    let id = session.id.clone();
                    tokio::spawn(async move { sessions.recover(&id).await });
                }
            }
        }
        self.finish(Some(&client), &e).await;
        // Activity is bookkeeping for the idle timeout (which never ends a session with an
        // execution in flight): it need not delay the answer.
        let (sessions, id) = (self.sessions.clone(), session.id.clone());
        tokio::spawn(async move { sessions.touch(&id).await });
        self.metrics.execution(e.language.as_str(), e.status.as_str(), clock.elapsed());
        tracing::info!(execution_id = %e.id, session_id = %session.id, status = %e.status, "execution finished");
        self.untrack(&e.id);
        e
    }

    /// Writes the files a finished execution changed to durable storage (in `s3` mode) before it
    /// is reported finished; when that fails, or the change list could not name every change,
    /// the execution ends `crashed`, saying so.
    async fn persist(&self, session_id: &str, client: &ExecutorClient, mut r: ExecResult) -> ExecResult {
        let workspaces = self.sessions.workspaces();
        let incomplete = match (r.files_truncated, r.files_skipped) {
            _ if workspaces.bucket().is_none() => None,
            (true, _) => Some("the workspace holds more entries than one change list can carry".to_owned()),
            (_, n) if n > 0 => Some(format!(
                "{n} entries have paths longer than {} bytes, which storage cannot name",
                sandbox_core::workspace_path::MAX_PATH_BYTES
            )),
            _ => None,
        };
        let saved = workspaces.save_changes(session_id, client, &r.files).await.map_err(|e| e.to_string());
        if let Some(err) = saved.err().or(incomplete) {
            tracing::error!(execution_id = %r.execution_id, error = %err, "could not save an execution's files");
            r.error_message = Some(format!(
                "the execution ended ({}) but the files it changed could not all be saved to storage: {err}",
                r.status
            ));
            r.status = ExecutionStatus::Crashed;
        }
        r
    }

    /// Stores a finished execution; once stored, the executor (if reachable) may drop its copy.
    async fn finish(&self, client: Option<&ExecutorClient>, e: &Execution) {
        match self.store.update_execution(e).await {
            Ok(_) => {
                if let Some(client) = client.cloned() {
                    // Stored: the executor's copy may go, after the answer.
                    let id = e.id.clone();
                    tokio::spawn(async move { client.forget(&id).await });
                }
                // The session's oldest results go past its retention, after the answer too.
                let (store, session) = (self.store.clone(), e.session_id.clone());
                let l = &self.settings.lifecycle;
                let (keep, keep_bytes) =
                    (l.kept_executions_per_session, l.kept_execution_mb_per_session << 20);
                tokio::spawn(async move {
                    match store.prune_executions(&session, keep, keep_bytes).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(session_id = %session, deleted = n, "pruned old executions"),
                        Err(err) => {
                            tracing::warn!(session_id = %session, error = %err, "could not prune old executions")
                        }
                    }
                });
            }
            Err(err) => {
                tracing::error!(execution_id = %e.id, error = %err, "could not store an execution result")
            }
        }
    }

    /// Finishes executions left unfinished by a process that stopped (or by one that lost its
    /// sandbox): a result the executor still holds is collected, one still running is awaited
    /// (submitting its id again never runs it twice), and one the executor does not know ends
    /// `crashed` with the reason. Returns how many were handled.
    pub async fn recover(self: &Arc<Self>, when: Recovery) -> Result<usize, ServiceError> {
        let now = Utc::now();
        let mut n = 0;
        for mut e in self.store.unfinished_executions().await? {
            if self.inflight.lock().unwrap_or_else(|p| p.into_inner()).contains(&e.id) {
                continue;
            }
            let since = e.started_at.unwrap_or(e.created_at);
            let allowed = Duration::from_secs(u64::from(e.timeout_sec)) + OVERDUE_GRACE;
            let overdue = now - since > chrono::Duration::from_std(allowed).unwrap_or(chrono::Duration::MAX);
            // Another replica may have just recorded or started it and not yet reached the
            // executor: such young executions are left alone unless the executor knows them.
            let recent = now - since < chrono::Duration::seconds(30);
            if (when == Recovery::Overdue && !overdue) || (e.status == ExecutionStatus::Pending && recent) {
                continue;
            }
            let Some(session) = self.store.session(&e.session_id).await? else { continue };
            let client = match self.sessions.executor(&session).await {
                Ok(c) => c,
                Err(_) if !overdue => continue,
                Err(err) => {
                    crash(&mut e, format!("lost: its sandbox cannot be reached ({})", err));
                    self.finish(None, &e).await;
                    n += 1;
                    continue;
                }
            };
            match client.execution(&e.id).await {
                Ok(Some(ExecutionRecord::Finished { result })) => {
                    let result = self.persist(&session.id, &client, *result).await;
                    apply_result(&mut e, result);
                    self.finish(Some(&client), &e).await;
                    tracing::info!(execution_id = %e.id, status = %e.status, "collected a result that finished while nobody waited");
                }
                Ok(Some(ExecutionRecord::Running { .. })) => {
                    if !self.track(&e.id) {
                        continue;
                    }
                    let this = self.clone();
                    self.tasks.spawn(async move {
                        match client.execute(&request_for(&e, &session)).await {
                            Ok(r) => {
                                let r = this.persist(&session.id, &client, r).await;
                                apply_result(&mut e, r)
                            }
                            Err(err) => crash(&mut e, format!("lost while collecting its result: {err}")),
                        }
                        this.finish(Some(&client), &e).await;
                        this.untrack(&e.id);
                    });
                }
                Ok(None) if recent => continue,
                Ok(None) => {
                    let why = match e.status {
                        ExecutionStatus::Pending => {
                            "never started: the control plane stopped before starting it"
                        }
                        _ => "lost: its sandbox stopped or was replaced while it ran",
                    };
                    crash(&mut e, why.into());
                    self.finish(Some(&client), &e).await;
                }
                Err(_) if !overdue && session.status == SessionStatus::Running => continue,
                Err(err) => {
                    crash(&mut e, format!("lost: its sandbox did not answer ({err})"));
                    self.finish(Some(&client), &e).await;
                }
            }
            n += 1;
        }
        Ok(n)
    }

    /// Stops taking work and waits up to `grace` for running executions to finish (those still
    /// running are collected after the next start).
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!(left = self.tasks.len(), "shutting down with executions still running");
        }
    }

    /// The execution `id` and its session, if the caller may see the session, else 404.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<(Execution, Session), ServiceError> {
        let not_found =
            || ServiceError::not_found("execution_not_found", format!("execution {id} does not exist"));
        let e = self.store.execution(id).await?.ok_or_else(not_found)?;
        let session = self.sessions.get(caller, &e.session_id).await.map_err(|_| not_found())?;
        Ok((e, session))
    }

    /// A session's executions, newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        session_id: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Page<Execution>, ServiceError> {
        let session = self.sessions.get(caller, session_id).await?;
        Ok(self.store.list_executions(&session.id, limit, offset).await?)
    }
}

/// Runs an execution in stream mode, forwarding output chunks to `tx`; the result comes last.
async fn stream_into(
    client: &ExecutorClient,
    req: &ExecRequest,
    tx: mpsc::UnboundedSender<StreamEvent>,
) -> Result<ExecResult, ClientError> {
    let mut stream = Box::pin(client.execute_stream(req).await?);
    let mut last = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(StreamEvent::Result { result }) => last = Some(Ok(*result)),
            Ok(chunk) => {
                let _ = tx.send(chunk);
            }
            Err(err) => last = Some(Err(err)),
        }
    }
    last.unwrap_or_else(|| Err(ClientError::Protocol("stream ended without a result".into())))
}

/// The executor request for a recorded execution.
fn request_for(e: &Execution, session: &Session) -> ExecRequest {
    ExecRequest {
        execution_id: e.id.clone(),
        language: e.language,
        code: e.code.clone(),
        event: e.event.clone(),
        timeout_ms: u64::from(e.timeout_sec) * 1000,
        env: session.env_vars.clone(),
        function_name: Some(session.id.clone()),
        mode: Default::default(),
    }
}

/// Ends a record as `crashed` with `why`.
fn crash(e: &mut Execution, why: String) {
    e.status = ExecutionStatus::Crashed;
    e.error_message = Some(why);
    e.completed_at = Some(Utc::now());
}

/// Copies an executor result into the record.
fn apply_result(e: &mut Execution, r: ExecResult) {
    e.status = r.status;
    e.exit_code = r.exit_code;
    e.error_message = r.error_message;
    e.stdout = Some(r.stdout);
    e.stderr = Some(r.stderr);
    e.return_value = r.return_value;
    e.started_at = Some(r.started_at);
    e.completed_at = Some(r.finished_at);
    e.execution_time = Some(r.metrics.duration_ms / 1000.0);
    e.metrics = Some(ExecutionMetrics {
        duration_ms: r.metrics.duration_ms,
        cpu_time_ms: Some(r.metrics.cpu_time_ms),
        peak_memory_mb: Some(r.metrics.peak_memory_mb),
    });
    e.artifacts = r
        .files
        .into_iter()
        .map(|f| Artifact {
            mime_type: mime_guess::from_path(f.path.as_str())
                .first_or_octet_stream()
                .essence_str()
                .to_owned(),
            path: f.path.into(),
            size: f.size,
            change: f.change,
            created_at: r.finished_at,
        })
        .collect();
}
