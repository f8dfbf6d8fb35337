//! Ending sessions by time: idle past their timeout, older than the longest lifetime; and
//! removing the records of sessions that ended long ago.

use super::Sessions;
use crate::service::error::ServiceError;
use chrono::Utc;
use sandbox_core::model::{InstallStatus, Session, SessionStatus};
use sandbox_protocol::ProcessState;

impl Sessions {
    /// Terminates running sessions idle past their timeout (none with an execution in flight, a
    /// process running or packages installing) or older than the maximum lifetime; returns how
    /// many.
    pub async fn expire(&self) -> Result<usize, ServiceError> {
        let now = Utc::now();
        let max_life = self.settings.lifecycle.max_session_lifetime_sec as i64;
        let mut n = 0;
        for s in self.store.sessions_in_status(&[SessionStatus::Running]).await? {
            let idle = (now - s.last_activity_at.unwrap_or(s.created_at)).num_seconds();
            let age = (now - s.created_at).num_seconds();
            let reason = if max_life > 0 && age > max_life {
                format!("maximum lifetime reached: {age}s (limit {max_life}s)")
            } else if idle > i64::from(s.timeout_sec)
                && s.dependency_install_status != InstallStatus::Installing
                && !self.store.session_has_unfinished_executions(&s.id).await?
                && !self.runs_processes(&s).await
            {
                format!("idle timeout: no activity for {idle}s (timeout {}s)", s.timeout_sec)
            } else {
                continue;
            };
            match self.stop(s, Some(reason)).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(error = %e, "could not terminate an expired session"),
            }
        }
        Ok(n)
    }

    /// Whether session `s`'s sandbox runs a process started on its own, as its executor says
    /// (asked only of sessions otherwise idle; one that cannot be reached runs none).
    async fn runs_processes(&self, s: &Session) -> bool {
        let Ok(client) = self.executor(s).await else { return false };
        client.processes().await.is_ok_and(|all| all.iter().any(|p| p.state == ProcessState::Running))
    }

    /// Deletes terminated and failed sessions that ended longer ago than the retention; returns
    /// how many.
    pub async fn purge(&self) -> Result<usize, ServiceError> {
        let keep = chrono::Duration::seconds(self.settings.lifecycle.retention_sec as i64);
        let now = Utc::now();
        let mut n = 0;
        for s in self.store.sessions_in_status(&[SessionStatus::Terminated, SessionStatus::Failed]).await? {
            if s.completed_at.unwrap_or(s.updated_at) + keep < now {
                self.remove(s).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}
