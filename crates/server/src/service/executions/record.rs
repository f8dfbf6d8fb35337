//! From records to executor requests and back: the request for a recorded execution, an
//! executor's result copied into the record, a record ended as crashed.

use super::feed::{Feed, FeedEvent};
use crate::service::files::mime_type;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sandbox_core::ExecutionStatus;
use sandbox_core::model::{Artifact, Execution, ExecutionMetrics, Session};
use sandbox_executor_client::ClientError;
use sandbox_protocol::{ExecEvent, ExecRequest, ExecResult, StreamEvent};

/// An executor's stream of one execution's output chunks, display outputs and result.
pub(super) type Events = BoxStream<'static, Result<ExecEvent, ClientError>>;

/// Follows an execution's events to its result, adding output chunks and display outputs to
/// its feed.
pub(super) async fn follow(mut events: Events, feed: &Feed) -> Result<ExecResult, ClientError> {
    let mut last = None;
    while let Some(ev) = events.next().await {
        match ev {
            Ok(ExecEvent::Stream(StreamEvent::Result { result })) => last = Some(Ok(*result)),
            Ok(ExecEvent::Stream(StreamEvent::Started { .. })) => {}
            Ok(ev) => feed.push(FeedEvent::Output(ev)),
            Err(err) => last = Some(Err(err)),
        }
    }
    last.unwrap_or_else(|| Err(ClientError::Protocol("stream ended without a result".into())))
}

/// The executor request for a recorded execution.
pub(super) fn request_for(e: &Execution, session: &Session) -> ExecRequest {
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
pub(super) fn crash(e: &mut Execution, why: String) {
    e.status = ExecutionStatus::Crashed;
    e.error_message = Some(why);
    e.completed_at = Some(Utc::now());
}

/// Copies an executor result into the record.
pub(super) fn apply_result(e: &mut Execution, r: ExecResult) {
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
    e.results = r.results;
    e.results_truncated = r.results_truncated;
    e.error = r.error;
    e.artifacts = r
        .files
        .into_iter()
        .map(|f| Artifact {
            mime_type: mime_type(f.path.as_str()),
            path: f.path.into(),
            size: f.size,
            change: f.change,
            created_at: r.finished_at,
        })
        .collect();
}
