//! Executions: recorded before they start, run in their own task through the session's
//! executor, and always stored with a terminal status. Collecting what a stopped control plane
//! left unfinished is in `recover`; turning executor results into records in `record`; the
//! per-session limit of running executions in `slots`.

mod feed;
mod record;
mod recover;
mod slots;

pub use feed::{Feed, FeedEvent, Feeds};
pub use recover::Recovery;
pub use slots::ExecutionSlot;

use crate::caller::Caller;
use crate::ids;
use crate::metrics::Metrics;
use crate::service::contexts::{Contexts, refusal};
use crate::service::error::ServiceError;
use crate::service::sessions::Sessions;
use crate::settings::Settings;
use chrono::Utc;
use futures_util::StreamExt;
use record::{Events, apply_result, crash, follow, request_for};
use sandbox_core::model::{Execution, Session};
use sandbox_core::{ExecutionStatus, Language};
use sandbox_executor_client::{ClientError, ExecutorClient};
use sandbox_protocol::ExecResult;
use sandbox_store::{Page, Store};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::task::TaskTracker;

/// A validated request to run code.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// The program.
    pub code: String,
    /// Its language; the context's when not given and it runs in one.
    pub language: Option<Language>,
    /// The code context to run it in, as a cell; stateless when `None`.
    pub context_id: Option<String>,
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
    /// Its output chunks and display outputs as they happen, then the final record.
    pub feed: Arc<Feed>,
}

/// Executions.
pub struct Executions {
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    contexts: Arc<Contexts>,
    metrics: Arc<Metrics>,
    settings: Arc<Settings>,
    /// Every task running or collecting an execution, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Executions this process is running or collecting now.
    inflight: Mutex<HashSet<String>>,
    /// Live feeds of the executions running here.
    feeds: Arc<Feeds>,
    /// Executions running per session, in this process.
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl Executions {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        sessions: Arc<Sessions>,
        contexts: Arc<Contexts>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Executions {
            store,
            sessions,
            contexts,
            metrics,
            settings,
            tasks: TaskTracker::new(),
            inflight: Mutex::new(HashSet::new()),
            feeds: Arc::default(),
            running: Arc::default(),
        }
    }

    /// Records an execution in a running session of the caller's and starts it.
    pub async fn submit(
        self: &Arc<Self>,
        caller: &Caller,
        session_id: &str,
        req: NewExecution,
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
        let session = self.sessions.get_ready(caller, session_id).await?;
        let context = match &req.context_id {
            Some(id) => Some(self.contexts.of_session(&session, id).await?),
            None => None,
        };
        let language = match (req.language, &context) {
            (Some(l), Some(c)) if l != c.language => {
                return Err(ServiceError::invalid_field(
                    "language",
                    format!("context {} runs {}; leave language out or make it match", c.id, c.language),
                ));
            }
            (Some(l), _) => l,
            (None, Some(c)) => c.language,
            (None, None) => return Err(ServiceError::invalid_field("language", "required")),
        };
        if context.is_some() && req.event.is_some() {
            return Err(ServiceError::invalid_field(
                "event",
                "code in a context runs as a notebook cell, not a handler: it takes no event",
            ));
        }
        let client = self.sessions.executor(&session).await?;
        let slot = self.begin(&session.id)?;
        // Recorded as running before it starts (it is handed to the executor at once): whatever
        // happens next, there is a row to finish, and one write fewer on the way.
        let now = Utc::now();
        let execution = Execution {
            id: ids::execution_id(),
            session_id: session.id.clone(),
            status: ExecutionStatus::Running,
            language,
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
            context_id: req.context_id,
            results: Vec::new(),
            results_truncated: false,
            error: None,
        };
        self.store.insert_execution(&execution).await?;
        // A cell is admitted (or refused: busy, lost) before the answer; the refused one was
        // never run and leaves no record.
        let admitted = match &context {
            None => None,
            Some(c) => match client.execute_events_in(&c.id, &request_for(&execution, &session)).await {
                Ok(events) => Some(events.boxed()),
                Err(err) => {
                    if let Err(e) = self.store.delete_execution(&execution.id).await {
                        tracing::warn!(execution_id = %execution.id, error = %e, "could not forget a refused execution");
                    }
                    self.contexts.forget(&c.id);
                    return Err(refusal(&c.id, err));
                }
            },
        };
        let feed = self.feeds.open(&execution.id);
        let this = self.clone();
        let record = execution.clone();
        self.track(&execution.id);
        let output = feed.clone();
        let done =
            self.tasks.spawn(async move { this.run(session, client, record, admitted, output, slot).await });
        Ok(Submitted { execution, done, feed })
    }

    fn track(&self, id: &str) -> bool {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned())
    }

    fn untrack(&self, id: &str) {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Runs a recorded execution to its end (or follows a cell its context admitted) and
    /// stores the outcome; `_slot` holds its place among the session's running executions until
    /// then.
    async fn run(
        &self,
        session: Session,
        client: ExecutorClient,
        mut e: Execution,
        admitted: Option<Events>,
        feed: Arc<Feed>,
        _slot: ExecutionSlot,
    ) -> Execution {
        let clock = Instant::now();
        // Whatever happens to this task, the feed's followers hear that it ended.
        let _guard = feed::EndsFeed(feed.clone());
        let req = request_for(&e, &session);
        // Followed as a stream whether or not the caller streams: anyone may attach to it.
        let events = match admitted {
            Some(events) => Ok(events),
            None => client.execute_events(&req).await.map(|s| s.boxed()),
        };
        let outcome = match events {
            Ok(events) => follow(events, &feed).await,
            Err(err) => Err(err),
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
        self.feeds.close(&e.id, &e);
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

    /// The live feed of execution `id`, if it runs (or ended in the last minute) in this
    /// process.
    pub fn feed(&self, id: &str) -> Option<Arc<Feed>> {
        self.feeds.get(id)
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

    /// Cancels a running execution: its sandbox's processes are killed and it ends `cancelled`
    /// (a cell of a code context takes the context's interpreter with it: the context is
    /// `lost`). Waits up to `wait` for the end and answers with the execution as it then is; an
    /// execution that has already ended is answered as it is (cancelling is idempotent).
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
        wait: Duration,
    ) -> Result<(Execution, Session), ServiceError> {
        let (e, session) = self.get(caller, id).await?;
        if e.status.is_terminal() {
            return Ok((e, session));
        }
        let client = self.sessions.executor(&session).await?;
        match client.kill(id).await {
            // Not running there (any more): it is ending, or its sandbox is gone and recovery
            // will end it.
            Ok(()) | Err(ClientError::Api { status: 404, .. }) => {}
            Err(err) => return Err(err.into()),
        }
        self.wait_for_end(caller, id, wait).await
    }

    /// The execution `id` once it has ended, or as it is after `wait`.
    pub async fn wait_for_end(
        &self,
        caller: &Caller,
        id: &str,
        wait: Duration,
    ) -> Result<(Execution, Session), ServiceError> {
        let deadline = Instant::now() + wait;
        loop {
            let (e, session) = self.get(caller, id).await?;
            if e.status.is_terminal() || Instant::now() >= deadline {
                return Ok((e, session));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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
