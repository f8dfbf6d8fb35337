//! Code contexts: long-lived interpreters in a session's sandbox. The store keeps what each was
//! created with and that it belongs to the session; the session's executor holds the
//! interpreter and says how it is. A context the executor no longer knows (its sandbox was
//! recreated or restarted) is `lost`, never silently replaced.

use crate::caller::Caller;
use crate::ids;
use crate::service::error::{FieldError, ServiceError};
use crate::service::sessions::{Sessions, validate_env};
use crate::settings::Settings;
use chrono::Utc;
use sandbox_core::Language;
use sandbox_core::model::{Context, Session, SessionStatus};
use sandbox_executor_client::{ClientError, ExecutorClient};
use sandbox_protocol::{ContextInfo, ContextRequest, ContextStatus, ErrorCode};
use sandbox_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A validated request for a new context.
#[derive(Debug, Clone)]
pub struct NewContext {
    /// Its interpreter.
    pub language: Language,
    /// The directory it starts in, relative to the workspace or absolute under it.
    pub cwd: Option<String>,
    /// Its own environment variables, on top of the session's.
    pub env_vars: BTreeMap<String, String>,
}

/// A context as the API shows it: its record and how its interpreter is.
#[derive(Debug, Clone)]
pub struct ContextView {
    /// What it was created with.
    pub record: Context,
    /// Where it is in its life.
    pub status: ContextStatus,
    /// What its executor says of it, when it knows it.
    pub info: Option<ContextInfo>,
    /// Why it is lost or expired.
    pub message: Option<String>,
}

impl ContextView {
    fn new(record: Context, info: Option<ContextInfo>) -> Self {
        match info {
            Some(info) => {
                ContextView { status: info.status, message: info.message.clone(), info: Some(info), record }
            }
            None => ContextView {
                record,
                status: ContextStatus::Lost,
                info: None,
                message: Some(
                    "its interpreter is gone with the sandbox it ran in (the sandbox was recreated or \
                     restarted); restart the context for a fresh one"
                        .into(),
                ),
            },
        }
    }

    fn stopped(record: Context, session: &Session) -> Self {
        ContextView {
            record,
            status: ContextStatus::Lost,
            info: None,
            message: Some(format!("its session is {}", session.status)),
        }
    }
}

/// Code contexts.
pub struct Contexts {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    /// Records read lately, by id: they never change, and every execution in a context looks
    /// its record up. One deleted here is dropped; one deleted through another replica is
    /// dropped when its executor refuses it ([`forget`](Self::forget)).
    known: Mutex<HashMap<String, Context>>,
}

/// How many records [`Contexts::known`] holds before it starts again.
const KNOWN_MAX: usize = 4096;

/// 404 for a context id the session does not have.
fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("context_not_found", format!("context {id} does not exist in this session"))
}

/// What an executor's refusal to run something in context `id` means to the caller.
pub fn refusal(id: &str, err: ClientError) -> ServiceError {
    let code = err.api_error().map(|b| b.code);
    match code {
        Some(ErrorCode::ContextBusy) => ServiceError::conflict(
            "context_busy",
            format!("context {id} is running another execution; executions in one context run one at a time"),
        ),
        Some(ErrorCode::ContextLost | ErrorCode::NotFound) => ServiceError::conflict(
            "context_lost",
            format!(
                "context {id} has lost its interpreter and its state ({}); restart it or create another",
                err.api_error().map(|b| b.message.as_str()).unwrap_or("gone")
            ),
        ),
        Some(ErrorCode::TooManyContexts) => ServiceError::quota(
            "too_many_contexts",
            format!("the session's sandbox runs as many contexts as it may: {err}"),
            5,
        ),
        _ => ServiceError::Executor(err),
    }
}

impl Contexts {
    /// The service.
    pub fn new(settings: Arc<Settings>, store: Arc<dyn Store>, sessions: Arc<Sessions>) -> Self {
        Contexts { settings, store, sessions, known: Mutex::default() }
    }

    /// Starts a context in a running session of the caller's.
    pub async fn create(
        &self,
        caller: &Caller,
        session_id: &str,
        req: NewContext,
    ) -> Result<ContextView, ServiceError> {
        validate_env(&req.env_vars, self.settings.limits.max_env_vars)
            .map_err(|e| ServiceError::invalid_field("env_vars", e))?;
        if let Some(cwd) = &req.cwd
            && (cwd.is_empty() || cwd.len() > 4096 || cwd.contains('\0'))
        {
            return Err(ServiceError::invalid_field("cwd", "must be a workspace directory, 1-4096 bytes"));
        }
        let session = self.sessions.get_ready(caller, session_id).await?;
        let client = self.sessions.executor(&session).await?;
        let record = Context {
            id: ids::context_id(),
            session_id: session.id.clone(),
            language: req.language,
            cwd: req.cwd,
            env_vars: req.env_vars,
            created_at: Utc::now(),
        };
        let max = self.settings.executor.max_contexts;
        if !self.store.insert_context(&record, max).await? {
            return Err(ServiceError::quota(
                "too_many_contexts",
                format!("the session has {max} contexts, as many as it may; delete one first"),
                1,
            ));
        }
        match client.create_context(&request_for(&record, &session)).await {
            Ok(info) => Ok(ContextView::new(record, Some(info))),
            Err(err) => {
                if let Err(e) = self.store.delete_context(&record.id).await {
                    tracing::warn!(context_id = %record.id, error = %e, "could not forget a context that did not start");
                }
                Err(creation_error(err))
            }
        }
    }

    /// A session's contexts, oldest first.
    pub async fn list(&self, caller: &Caller, session_id: &str) -> Result<Vec<ContextView>, ServiceError> {
        let session = self.sessions.get(caller, session_id).await?;
        let records = self.store.list_contexts(&session.id).await?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if session.status != SessionStatus::Running {
            return Ok(records.into_iter().map(|r| ContextView::stopped(r, &session)).collect());
        }
        let mut live: BTreeMap<String, ContextInfo> = self
            .sessions
            .executor(&session)
            .await?
            .contexts()
            .await?
            .into_iter()
            .map(|c| (c.context_id.clone(), c))
            .collect();
        Ok(records
            .into_iter()
            .map(|r| {
                let info = live.remove(&r.id);
                ContextView::new(r, info)
            })
            .collect())
    }

    /// One context of a session, with its session and (when the session runs) its executor.
    async fn find(
        &self,
        caller: &Caller,
        session_id: &str,
        id: &str,
    ) -> Result<(Session, Context, Option<ExecutorClient>), ServiceError> {
        let session = self.sessions.get(caller, session_id).await?;
        let record = self
            .store
            .context(id)
            .await?
            .filter(|c| c.session_id == session.id)
            .ok_or_else(|| not_found(id))?;
        let client = match session.status {
            SessionStatus::Running => Some(self.sessions.executor(&session).await?),
            _ => None,
        };
        Ok((session, record, client))
    }

    /// One context of a running session, with the session and its executor.
    async fn find_running(
        &self,
        caller: &Caller,
        session_id: &str,
        id: &str,
    ) -> Result<(Session, Context, ExecutorClient), ServiceError> {
        let (session, record, client) = self.find(caller, session_id, id).await?;
        match client {
            Some(client) => Ok((session, record, client)),
            None => Err(ServiceError::conflict(
                "session_not_running",
                format!("session {} is {}, not running", session.id, session.status),
            )),
        }
    }

    /// One context of a session.
    pub async fn get(
        &self,
        caller: &Caller,
        session_id: &str,
        id: &str,
    ) -> Result<ContextView, ServiceError> {
        let (session, record, client) = self.find(caller, session_id, id).await?;
        match client {
            Some(client) => {
                let info = client.context(id).await?;
                Ok(ContextView::new(record, info))
            }
            None => Ok(ContextView::stopped(record, &session)),
        }
    }

    /// The context `id` of a session in the caller's, for running an execution in: 404 when
    /// the session has no such context.
    pub async fn of_session(&self, session: &Session, id: &str) -> Result<Context, ServiceError> {
        let cached = self.known().get(id).cloned();
        let record = match cached {
            Some(c) => Some(c),
            None => self.store.context(id).await?,
        };
        let record = record.filter(|c| c.session_id == session.id).ok_or_else(|| not_found(id))?;
        let mut known = self.known();
        if known.len() >= KNOWN_MAX {
            known.clear();
        }
        known.insert(record.id.clone(), record.clone());
        Ok(record)
    }

    /// Drops what is remembered of context `id` (its executor no longer knows it).
    pub fn forget(&self, id: &str) {
        self.known().remove(id);
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Context>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends a context's interpreter (a running execution in it ends `crashed`) and forgets it.
    pub async fn delete(&self, caller: &Caller, session_id: &str, id: &str) -> Result<(), ServiceError> {
        let (_, record, client) = self.find(caller, session_id, id).await?;
        if let Some(client) = client {
            match client.delete_context(&record.id).await {
                Ok(()) | Err(ClientError::Api { status: 404, .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        self.store.delete_context(&record.id).await?;
        self.forget(&record.id);
        Ok(())
    }

    /// Gives a context a fresh interpreter (ending a running execution in it), as it was
    /// created: lost and expired contexts come back this way.
    pub async fn restart(
        &self,
        caller: &Caller,
        session_id: &str,
        id: &str,
    ) -> Result<ContextView, ServiceError> {
        let (session, record, client) = self.find_running(caller, session_id, id).await?;
        let info = match client.restart_context(&record.id).await {
            Ok(info) => info,
            // Its sandbox was recreated: start it there again, as it was created.
            Err(ClientError::Api { status: 404, .. }) => {
                client.create_context(&request_for(&record, &session)).await.map_err(creation_error)?
            }
            Err(err) => return Err(refusal(&record.id, err)),
        };
        Ok(ContextView::new(record, Some(info)))
    }

    /// Interrupts the execution running in a context, if any (KeyboardInterrupt in Python,
    /// SIGINT elsewhere); the context survives if the code stops in time.
    pub async fn interrupt(
        &self,
        caller: &Caller,
        session_id: &str,
        id: &str,
    ) -> Result<ContextView, ServiceError> {
        let (_, record, client) = self.find_running(caller, session_id, id).await?;
        let info = client.interrupt_context(&record.id).await.map_err(|e| refusal(&record.id, e))?;
        Ok(ContextView::new(record, Some(info)))
    }
}

/// The executor's request that starts a context's interpreter: the session's environment with
/// the context's own on top.
fn request_for(c: &Context, session: &Session) -> ContextRequest {
    let mut env = session.env_vars.clone();
    env.extend(c.env_vars.clone());
    ContextRequest { context_id: c.id.clone(), language: c.language, cwd: c.cwd.clone(), env }
}

/// Why a context could not be started, for the caller.
fn creation_error(err: ClientError) -> ServiceError {
    let Some(body) = err.api_error() else { return ServiceError::Executor(err) };
    match body.code {
        ErrorCode::InvalidPath | ErrorCode::NotFound | ErrorCode::NotADirectory | ErrorCode::BadRequest => {
            ServiceError::Invalid(vec![FieldError::new("cwd", body.message.clone())])
        }
        ErrorCode::LanguageUnavailable => ServiceError::refused(
            "language_unavailable",
            body.message.clone(),
            Some(FieldError::new("language", "not installed in this session's image")),
        ),
        ErrorCode::TooManyContexts => ServiceError::quota("too_many_contexts", body.message.clone(), 5),
        _ => ServiceError::Executor(err),
    }
}
