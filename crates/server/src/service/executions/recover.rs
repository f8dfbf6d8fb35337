//! Collecting executions a control plane left unfinished: at start-up, and in the lifecycle
//! loop for those past their timeout.

use super::Executions;
use super::record::{apply_result, crash, request_for};
use crate::service::error::ServiceError;
use chrono::Utc;
use sandbox_core::ExecutionStatus;
use sandbox_core::model::SessionStatus;
use sandbox_protocol::ExecutionRecord;
use std::sync::Arc;
use std::time::Duration;

/// How long past its timeout an execution may go unfinished before the lifecycle leader treats
/// it as abandoned and collects or ends it.
const OVERDUE_GRACE: Duration = Duration::from_secs(60);

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
}
