//! The executions this executor knows: running ones (with a way to kill them and to wait for
//! them) and finished ones, whose results are kept until the control plane forgets them.

use chrono::{DateTime, Utc};
use sandbox_core::ExecutionStatus;
use sandbox_protocol::{ErrorCode, ExecResult, ExecutionRecord, ExecutionSummary};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

struct Running {
    started_at: DateTime<Utc>,
    kill: CancellationToken,
    done: watch::Receiver<Option<Arc<ExecResult>>>,
}

#[derive(Default)]
struct Inner {
    running: HashMap<String, Running>,
    finished: HashMap<String, Arc<ExecResult>>,
    /// Finished ids, oldest first, for eviction past the retention.
    order: VecDeque<String>,
}

/// The table of executions.
pub struct Registry {
    inner: Mutex<Inner>,
    retention: usize,
    max_running: usize,
}

/// What [`Registry::begin`] found; `T` is what admitting a new execution reserved.
pub enum Begin<T = ()> {
    /// A new execution: run it and hand the result to the ticket.
    New(Ticket, T),
    /// Already running: wait on this for its result.
    Running(watch::Receiver<Option<Arc<ExecResult>>>),
    /// Already finished.
    Finished(Arc<ExecResult>),
}

/// The right and duty to finish one execution. Dropping it unfinished would leave waiters
/// hanging, so [`Ticket::finish`] must be called; the run loop always does.
pub struct Ticket {
    id: String,
    kill: CancellationToken,
    done: watch::Sender<Option<Arc<ExecResult>>>,
}

impl Ticket {
    /// The execution id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Cancelled when someone asks to kill the execution.
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// Records the result and wakes everyone waiting for it.
    pub fn finish(self, registry: &Registry, result: ExecResult) -> Arc<ExecResult> {
        let result = Arc::new(result);
        registry.store(&self.id, result.clone());
        let _ = self.done.send(Some(result.clone()));
        result
    }
}

impl Registry {
    /// A registry keeping up to `retention` uncollected results and refusing new executions
    /// past `max_running`.
    pub fn new(retention: usize, max_running: usize) -> Self {
        Registry { inner: Mutex::new(Inner::default()), retention: retention.max(1), max_running }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers execution `id`, or finds it if it is already known (retries are idempotent).
    pub fn begin(&self, id: &str) -> Result<Begin, Error> {
        self.begin_with(id, || Ok(()))
    }

    /// Like [`begin`](Self::begin), but a new execution is registered only if `admit` (run
    /// under the registry's lock, so no retry can slip in between) reserves what it needs.
    pub fn begin_with<T>(
        &self,
        id: &str,
        admit: impl FnOnce() -> Result<T, Error>,
    ) -> Result<Begin<T>, Error> {
        let mut inner = self.lock();
        if let Some(r) = inner.finished.get(id) {
            return Ok(Begin::Finished(r.clone()));
        }
        if let Some(r) = inner.running.get(id) {
            return Ok(Begin::Running(r.done.clone()));
        }
        if inner.running.len() >= self.max_running {
            return Err(Error::new(
                ErrorCode::Busy,
                format!("{} executions are already running in this sandbox", inner.running.len()),
            ));
        }
        let admitted = admit()?;
        let (tx, rx) = watch::channel(None);
        let kill = CancellationToken::new();
        inner.running.insert(id.to_owned(), Running { started_at: Utc::now(), kill: kill.clone(), done: rx });
        Ok(Begin::New(Ticket { id: id.to_owned(), kill, done: tx }, admitted))
    }

    fn store(&self, id: &str, result: Arc<ExecResult>) {
        let mut inner = self.lock();
        inner.running.remove(id);
        inner.finished.insert(id.to_owned(), result);
        inner.order.push_back(id.to_owned());
        while inner.order.len() > self.retention {
            if let Some(old) = inner.order.pop_front() {
                tracing::warn!(execution_id = %old, "dropping an uncollected result past the retention limit");
                inner.finished.remove(&old);
            }
        }
    }

    /// One execution's state.
    pub fn get(&self, id: &str) -> Option<ExecutionRecord> {
        let inner = self.lock();
        if let Some(r) = inner.finished.get(id) {
            return Some(ExecutionRecord::Finished { result: Box::new((**r).clone()) });
        }
        inner
            .running
            .get(id)
            .map(|r| ExecutionRecord::Running { execution_id: id.to_owned(), started_at: r.started_at })
    }

    /// Every known execution.
    pub fn list(&self) -> Vec<ExecutionSummary> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .running
            .keys()
            .map(|id| ExecutionSummary { execution_id: id.clone(), status: ExecutionStatus::Running })
            .chain(
                inner
                    .finished
                    .iter()
                    .map(|(id, r)| ExecutionSummary { execution_id: id.clone(), status: r.status }),
            )
            .collect();
        out.sort_by(|a, b| a.execution_id.cmp(&b.execution_id));
        out
    }

    /// Asks a running execution to die. `false` if it is not running.
    pub fn kill(&self, id: &str) -> bool {
        self.lock().running.get(id).map(|r| r.kill.cancel()).is_some()
    }

    /// Forgets a finished execution (its result has been stored elsewhere).
    pub fn forget(&self, id: &str) -> Result<(), Error> {
        let mut inner = self.lock();
        if inner.running.contains_key(id) {
            return Err(Error::new(ErrorCode::Conflict, format!("execution {id} is still running")));
        }
        if inner.finished.remove(id).is_none() {
            return Err(Error::new(ErrorCode::NotFound, format!("execution {id} is not known")));
        }
        inner.order.retain(|x| x != id);
        Ok(())
    }

    /// How many are running.
    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// Kills everything still running (shutdown).
    pub fn kill_all(&self) {
        for r in self.lock().running.values() {
            r.kill.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_protocol::ExecMetrics;

    fn result(id: &str) -> ExecResult {
        ExecResult {
            execution_id: id.into(),
            status: ExecutionStatus::Completed,
            exit_code: Some(0),
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            return_value: None,
            error_message: None,
            timed_out: false,
            oom_killed: false,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            metrics: ExecMetrics::default(),
            files: vec![],
            files_truncated: false,
            files_skipped: 0,
            context_id: None,
            results: vec![],
            results_truncated: false,
            error: None,
        }
    }

    /// A new execution is registered only when what it needs was reserved; a retry of a known
    /// one is answered without asking again.
    #[test]
    fn admission_is_asked_for_new_executions_only() {
        let reg = Registry::new(10, 4);
        let refused = reg.begin_with("a", || Err::<(), _>(Error::new(ErrorCode::ContextBusy, "busy")));
        assert_eq!(refused.err().unwrap().code, ErrorCode::ContextBusy);
        assert!(reg.get("a").is_none(), "nothing was registered");
        let Ok(Begin::New(t, 7)) = reg.begin_with("a", || Ok(7)) else { panic!() };
        let again = reg.begin_with("a", || -> Result<(), Error> { panic!("asked again") });
        assert!(matches!(again, Ok(Begin::Running(_))));
        t.finish(&reg, result("a"));
    }

    #[tokio::test]
    async fn lifecycle_is_idempotent() {
        let reg = Registry::new(10, 2);
        let Ok(Begin::New(t, ())) = reg.begin("a") else { panic!() };
        let Ok(Begin::Running(mut rx)) = reg.begin("a") else { panic!() };
        assert!(matches!(reg.get("a"), Some(ExecutionRecord::Running { .. })));
        assert_eq!(reg.forget("a").unwrap_err().code, ErrorCode::Conflict);
        assert!(reg.kill("a"));
        assert!(t.kill_token().is_cancelled());
        t.finish(&reg, result("a"));
        rx.changed().await.unwrap();
        assert!(rx.borrow().is_some());
        assert!(matches!(reg.begin("a"), Ok(Begin::Finished(_))));
        assert!(!reg.kill("a"));
        reg.forget("a").unwrap();
        assert_eq!(reg.forget("a").unwrap_err().code, ErrorCode::NotFound);
        assert!(reg.get("a").is_none());
    }

    #[test]
    fn refuses_past_the_concurrency_limit_and_evicts_past_retention() {
        let reg = Registry::new(2, 1);
        let Ok(Begin::New(t, ())) = reg.begin("a") else { panic!() };
        assert_eq!(reg.begin("b").err().unwrap().code, ErrorCode::Busy);
        t.finish(&reg, result("a"));
        for id in ["b", "c"] {
            let Ok(Begin::New(t, ())) = reg.begin(id) else { panic!() };
            t.finish(&reg, result(id));
        }
        let ids: Vec<_> = reg.list().into_iter().map(|s| s.execution_id).collect();
        assert_eq!(ids, ["b", "c"]);
    }
}
