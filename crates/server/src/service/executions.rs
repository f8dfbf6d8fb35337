//! Executions: recorded before they start, run in their own task through the session's
//! executor, and always stored with a terminal status.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::ids;
use crate::metrics::Metrics;
use crate::service::sessions::Sessions;
use crate::settings::Settings;
use chrono::Utc;
use futures_util::StreamExt;
use sandbox_core::model::{Artifact, Execution, ExecutionMetrics, Session};
use sandbox_core::{ExecutionStatus, Language};
use sandbox_protocol::{ExecRequest, ExecResult, FileChangeKind, StreamEvent};
use sandbox_store::{Page, Store};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

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
}

impl Executions {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Executions { store, sessions, metrics, settings }
    }

    /// Records an execution in a running session of the caller's and starts it.
    pub async fn submit(
        self: &Arc<Self>,
        caller: &Caller,
        session_id: &str,
        req: NewExecution,
        stream: bool,
    ) -> Result<Submitted, ApiError> {
        let limits = &self.settings.limits;
        if req.code.len() > limits.max_code_bytes {
            return Err(ApiError::too_large(
                "code_too_large",
                format!("code is {} bytes; the limit is {}", req.code.len(), limits.max_code_bytes),
            ));
        }
        if req.timeout_sec == 0 || req.timeout_sec > limits.max_execution_timeout_sec {
            return Err(ApiError::invalid_field(
                "timeout",
                format!("must be between 1 and {} seconds", limits.max_execution_timeout_sec),
            ));
        }
        let session = self.sessions.get_running(caller, session_id).await?;
        let execution = Execution {
            id: ids::execution_id(),
            session_id: session.id.clone(),
            status: ExecutionStatus::Pending,
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
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            execution_time: None,
        };
        // Recorded before it starts: whatever happens next, there is a row to finish.
        self.store.insert_execution(&execution).await?;
        let (tx, rx) = if stream {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let this = self.clone();
        let record = execution.clone();
        let done = tokio::spawn(async move { this.run(session, record, tx).await });
        Ok(Submitted { execution, done, events: rx })
    }

    /// Runs a recorded execution to its end and stores the outcome.
    async fn run(
        &self,
        session: Session,
        mut e: Execution,
        events: Option<mpsc::UnboundedSender<StreamEvent>>,
    ) -> Execution {
        let clock = Instant::now();
        e.status = ExecutionStatus::Running;
        e.started_at = Some(Utc::now());
        if let Err(err) = self.store.update_execution(&e).await {
            tracing::warn!(execution_id = %e.id, error = %err, "could not mark execution running");
        }
        let client = self.sessions.executor(&session);
        let req = ExecRequest {
            execution_id: e.id.clone(),
            language: e.language,
            code: e.code.clone(),
            event: e.event.clone(),
            timeout_ms: u64::from(e.timeout_sec) * 1000,
            env: session.env_vars.clone(),
            function_name: Some(session.id.clone()),
            mode: Default::default(),
        };
        let outcome = match events {
            None => client.execute(&req).await,
            Some(tx) => match client.execute_stream(&req).await {
                Ok(stream) => {
                    let mut stream = Box::pin(stream);
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
                    last.unwrap_or_else(|| {
                        Err(sandbox_executor_client::ClientError::Protocol(
                            "stream ended without a result".into(),
                        ))
                    })
                }
                Err(err) => Err(err),
            },
        };
        match outcome {
            Ok(r) => apply_result(&mut e, r),
            Err(err) => {
                tracing::warn!(execution_id = %e.id, session_id = %session.id, error = %err, "executor did not answer");
                e.status = ExecutionStatus::Crashed;
                e.error_message = Some(format!("the sandbox did not answer: {err}"));
                e.completed_at = Some(Utc::now());
                e.execution_time = Some(clock.elapsed().as_secs_f64());
            }
        }
        match self.store.update_execution(&e).await {
            // Stored: the executor may drop its copy.
            Ok(_) => {
                let _ = client.forget(&e.id).await;
            }
            Err(err) => {
                tracing::error!(execution_id = %e.id, error = %err, "could not store an execution result")
            }
        }
        self.sessions.touch(&session.id).await;
        self.metrics.execution(e.language.as_str(), e.status.as_str(), clock.elapsed());
        tracing::info!(execution_id = %e.id, session_id = %session.id, status = %e.status, "execution finished");
        e
    }

    /// The execution `id` if the caller may see its session, else 404.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Execution, ApiError> {
        let not_found =
            || ApiError::not_found("execution_not_found", format!("execution {id} does not exist"));
        let e = self.store.execution(id).await?.ok_or_else(not_found)?;
        self.sessions.get(caller, &e.session_id).await.map_err(|_| not_found())?;
        Ok(e)
    }

    /// A session's executions, newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        session_id: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Page<Execution>, ApiError> {
        self.sessions.get(caller, session_id).await?;
        Ok(self.store.list_executions(session_id, limit, offset).await?)
    }
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
            change: match f.change {
                FileChangeKind::Created => "created",
                FileChangeKind::Modified => "modified",
                FileChangeKind::Deleted => "deleted",
            }
            .into(),
            created_at: r.finished_at,
        })
        .collect();
}
