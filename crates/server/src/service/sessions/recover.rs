//! Keeping sessions and the runtime in step: a running session whose sandbox is gone gets a new
//! one (or fails, saying why), a session stuck creating fails, and sandboxes nobody owns go.

use super::{Sessions, shape_of};
use crate::service::error::ServiceError;
use crate::service::sandboxes::Sandboxes;
use chrono::Utc;
use sandbox_core::model::SessionStatus;
use sandbox_runtime::{RuntimeError, SandboxState, labels};
use std::collections::HashSet;

/// What a reconciliation pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Sessions whose lost sandbox was recreated.
    pub sessions_recovered: u64,
    /// Sessions marked failed (sandbox lost and not recreatable, or stuck creating).
    pub sessions_failed: u64,
    /// Sandboxes nobody owns, removed.
    pub orphans_removed: u64,
    /// Pool sandboxes that were dead, stuck or abandoned, removed.
    pub pool_discarded: u64,
    /// Dependency installs whose control plane stopped during them, failed.
    pub installs_failed: u64,
}

impl Sessions {
    /// Recreates the sandbox of a running session whose sandbox is gone, from the session's own
    /// template, with its workspace as it was; or marks the session failed with the reason.
    /// Returns whether the session runs again.
    pub async fn recover(&self, id: &str) -> Result<bool, ServiceError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let Some(mut s) = self.store.session(id).await? else { return Ok(false) };
        if s.status != SessionStatus::Running {
            return Ok(false);
        }
        if let Some(c) = &s.container_id
            && self.runtime.is_running(c).await
        {
            self.serve_egress(&s);
            return Ok(true);
        }
        if let Some(c) = &s.container_id {
            let _ = self.runtime.remove(c).await;
        }
        let now = Utc::now();
        s.updated_at = now;
        let started = match self.store.template(&s.template_id).await? {
            None => Err(format!("its template {} no longer exists", s.template_id)),
            Some(t) => {
                let shape = shape_of(&s, &t);
                if let Some(restored) = self.dependencies.restore(&s, &t).await {
                    s = restored;
                }
                self.sandboxes.start(&s.id, &shape, None).await.map_err(|e| e.to_string())
            }
        };
        let recovered = match started {
            Ok(sb) => {
                tracing::warn!(session_id = %s.id, container = %sb.id, "recreated the session's lost sandbox");
                s.container_id = Some(sb.id);
                self.serve_egress(&s);
                true
            }
            Err(why) => {
                tracing::warn!(session_id = %s.id, error = %why, "session lost its sandbox");
                self.egress.stop(&s.id);
                s.status = SessionStatus::Failed;
                s.completed_at = Some(now);
                s.error_message =
                    Some(format!("the session's sandbox stopped and could not be recreated: {why}"));
                false
            }
        };
        self.store.update_session(&s).await?;
        Ok(recovered)
    }

    /// Compares the store with what the runtime runs: running sessions whose sandbox is gone are
    /// recovered (or failed), sessions stuck creating are failed, pool sandboxes that died or
    /// were abandoned are removed, and sandboxes no session or pool owns are removed.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ServiceError> {
        let unavailable =
            |e: RuntimeError| ServiceError::unavailable("runtime_unavailable", e.to_string(), 5);
        let mut report = ReconcileReport::default();
        let sandboxes = self
            .runtime
            .list(&[(labels::DEPLOYMENT, self.sandboxes.deployment())])
            .await
            .map_err(unavailable)?;
        let running: HashSet<&str> =
            sandboxes.iter().filter(|b| b.state == SandboxState::Running).map(|b| b.id.as_str()).collect();
        let now = Utc::now();
        let deadline = chrono::Duration::seconds(self.settings.lifecycle.creating_deadline_sec as i64);
        for s in self.store.sessions_in_status(&[SessionStatus::Running, SessionStatus::Creating]).await? {
            match s.status {
                SessionStatus::Running if !s.container_id.as_deref().is_some_and(|c| running.contains(c)) => {
                    if self.recover(&s.id).await? {
                        report.sessions_recovered += 1;
                    } else {
                        report.sessions_failed += 1;
                    }
                }
                SessionStatus::Creating if now - s.created_at > deadline => {
                    let lock = self.lock_for(&s.id);
                    let _guard = lock.lock().await;
                    let Some(mut current) = self.store.session(&s.id).await? else { continue };
                    if current.status == SessionStatus::Creating {
                        let _ = self.runtime.remove(&Sandboxes::sandbox_name(&s.id)).await;
                        current.status = SessionStatus::Failed;
                        current.completed_at = Some(now);
                        current.updated_at = now;
                        current.error_message =
                            Some(format!("still creating after {}s; given up", deadline.num_seconds()));
                        self.store.update_session(&current).await?;
                        report.sessions_failed += 1;
                    }
                }
                _ => {}
            }
        }
        report.pool_discarded = self.pools.collect(&running, now, deadline).await?;
        // Owners are read again: sessions may have been created while the list above was made.
        let live: HashSet<String> = self
            .store
            .sessions_in_status(&[SessionStatus::Running, SessionStatus::Creating])
            .await?
            .into_iter()
            .map(|s| s.id)
            .chain(self.store.list_pool_sandboxes().await?.into_iter().map(|p| p.id))
            .collect();
        report.installs_failed = self.dependencies.fail_interrupted(&sandboxes).await?;
        for b in sandboxes.iter().filter(|b| !b.labels.contains_key(labels::ROLE)) {
            let owner = b.labels.get(labels::SESSION);
            if !owner.is_some_and(|id| live.contains(id)) {
                tracing::info!(container = %b.id, session = owner.map(String::as_str).unwrap_or("-"), "removing orphan sandbox");
                self.runtime.remove(&b.id).await.map_err(unavailable)?;
                report.orphans_removed += 1;
            }
        }
        Ok(report)
    }
}
