//! A session's running executions in this process, and the limit on them
//! (`capacity.max_executions_per_session`): a slot is taken before an execution starts and
//! freed, whatever happens, when it is dropped.

use super::Executions;
use crate::service::error::ServiceError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A place among a session's running executions; the place frees itself when dropped.
pub struct ExecutionSlot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    session_id: String,
}

impl Drop for ExecutionSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.session_id) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.session_id);
            }
        }
    }
}

impl Executions {
    /// Takes a place among the session's running executions: 429 when all are taken.
    pub(super) fn begin(&self, session_id: &str) -> Result<ExecutionSlot, ServiceError> {
        let max = self.settings.capacity.max_executions_per_session;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.entry(session_id.to_owned()).or_default();
        if max > 0 && *n >= max {
            return Err(ServiceError::quota(
                "too_many_executions",
                format!("session {session_id} already runs {max} executions, its limit"),
                1,
            ));
        }
        *n += 1;
        Ok(ExecutionSlot { running: self.running.clone(), session_id: session_id.to_owned() })
    }
}
