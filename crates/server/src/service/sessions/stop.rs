//! Ending a session: terminating it (its sandbox stops, its record stays) and deleting it (its
//! executions and workspace go too). Both are idempotent.

use super::Sessions;
use crate::caller::Caller;
use crate::service::error::ServiceError;
use chrono::Utc;
use sandbox_core::model::{Session, SessionStatus};

impl Sessions {
    /// Stops a session's sandbox and keeps its record; terminating again changes nothing.
    pub async fn terminate(&self, caller: &Caller, id: &str) -> Result<Session, ServiceError> {
        let s = self.get(caller, id).await?;
        self.stop(s, None).await
    }

    /// Stops the sandbox of `s` (unless already final) and records `reason`.
    pub async fn stop(&self, s: Session, reason: Option<String>) -> Result<Session, ServiceError> {
        let lock = self.lock_for(&s.id);
        let _guard = lock.lock().await;
        let mut s = self.store.session(&s.id).await?.unwrap_or(s);
        self.sandboxes.forget_client(&s.id);
        self.egress.stop(&s.id);
        if s.status.is_final() {
            return Ok(s);
        }
        if let Some(container) = &s.container_id {
            self.runtime.remove(container).await.map_err(|e| {
                ServiceError::unavailable(
                    "runtime_unavailable",
                    format!("could not stop the sandbox: {e}"),
                    5,
                )
            })?;
        }
        let now = Utc::now();
        s.status = SessionStatus::Terminated;
        s.completed_at = Some(now);
        s.updated_at = now;
        if reason.is_some() {
            s.error_message = reason;
        }
        self.store.update_session(&s).await?;
        tracing::info!(session_id = %s.id, reason = s.error_message.as_deref().unwrap_or("request"), "session terminated");
        Ok(s)
    }

    /// Removes a session, its executions and its workspace. Deleting a deleted session succeeds.
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let s = match self.get(caller, id).await {
            Ok(s) => s,
            Err(e) => {
                for candidate in Self::candidates(caller, id) {
                    if let Some(owner) = self.store.deleted_session_owner(&candidate).await?
                        && caller.can_see(&owner)
                    {
                        return Ok(());
                    }
                }
                return Err(e);
            }
        };
        self.remove(s).await
    }

    pub(super) async fn remove(&self, s: Session) -> Result<(), ServiceError> {
        let id = s.id.clone();
        self.stop(s, None).await?;
        self.sandboxes.release_files(&id).await.map_err(ServiceError::internal)?;
        self.sandboxes.workspaces().delete_session(&id).await.map_err(|e| {
            ServiceError::unavailable(
                "storage_unavailable",
                format!("could not delete the stored workspace: {e}"),
                5,
            )
        })?;
        self.store.delete_session(&id, Utc::now()).await?;
        tracing::info!(session_id = %id, "session deleted");
        Ok(())
    }
}
