//! The control plane's metadata store. [`Store`] is what the server uses; [`open`] picks the
//! implementation from a database URL: SQLite (`sqlite://path`, the embedded default) or
//! MySQL/MariaDB (`mysql://user:pass@host/db`, what the Helm chart deploys). Each dialect has its own
//! migrations, applied on open.
//!
//! Timestamps are stored as epoch milliseconds: they read back truncated to the millisecond.

mod migrate;
mod records;
mod sql;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use migrate::Dialect;
use sandbox_core::model::{
    ApiKey, Context, Execution, IdempotencyRecord, ImagePull, NetworkAttempt, PoolSandbox, Session,
    SessionStatus, Template, TemplateStatus,
};
use std::sync::Arc;
use std::time::Duration;

/// Opens the store `url` names and applies the migrations it lacks.
///
/// - `sqlite://PATH` (`sqlite:///abs/path` or `sqlite://relative/path`): the file is created if
///   missing (not its directory) and put in WAL mode; connections wait up to 5 s for a busy
///   database and enforce foreign keys.
/// - `mysql://USER:PASS@HOST:PORT/DB`: MySQL or MariaDB; the database must exist. Two processes
///   opening it at once take turns migrating.
///
/// Anything else is [`StoreError::UnsupportedUrl`]. This installs sqlx's default `Any` drivers,
/// so nothing else in the process may install other ones.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let (dialect, connect_url) = match url.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => {
            let separator = if path.contains('?') { '&' } else { '?' };
            (Dialect::Sqlite, format!("{url}{separator}mode=rwc"))
        }
        None if url.starts_with("mysql://") => (Dialect::Mysql, url.to_owned()),
        _ => return Err(StoreError::UnsupportedUrl(redact_credentials(url))),
    };
    Ok(Arc::new(sql::SqlStore::connect(dialect, &connect_url).await?))
}

/// A database failure as a [`StoreError`].
fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// `scheme://user:pass@host/db` without `user:pass@`, for messages and logs.
pub fn redact_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with that id (or unique value) already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The URL names no supported database.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or mysql://USER:PASS@HOST/DB")]
    UnsupportedUrl(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(String),
    /// A stored row could not be read back.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// A shorthand for store results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One page of a list, with the total number of matching rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// How many rows match in all.
    pub total: u64,
}

/// Which sessions to list. Sessions come newest first.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only sessions of this key (`None`: all, for admins).
    pub owner_key_id: Option<String>,
    /// Only sessions in this status.
    pub status: Option<SessionStatus>,
    /// Only sessions of this template.
    pub template_id: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
}

/// Everything the control plane keeps.
#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `mysql`.
    fn dialect(&self) -> &'static str;

    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;

    /// Stores a new key; `Conflict` if its id or hash exists.
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()>;
    /// The key with this secret hash (revoked ones too; the caller checks).
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    /// Every key, oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Marks a key revoked; `false` if there is no such key.
    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;

    /// Stores a new template; `Conflict` if the id exists.
    async fn insert_template(&self, t: &Template) -> Result<()>;
    /// One template.
    async fn template(&self, id: &str) -> Result<Option<Template>>;
    /// Templates ordered by id.
    async fn list_templates(&self, limit: u32, offset: u64) -> Result<Page<Template>>;
    /// Replaces a template's fields but its image status and pull; `false` if it does not exist.
    async fn update_template(&self, t: &Template) -> Result<bool>;
    /// Sets the status and pull record of template `id`'s image, provided the template still
    /// names `image_url` (a pull of an image the template no longer uses changes nothing);
    /// `false` if no such template names it.
    async fn set_template_image(
        &self,
        id: &str,
        image_url: &str,
        status: TemplateStatus,
        pull: Option<&ImagePull>,
    ) -> Result<bool>;
    /// Removes a template; `false` if it does not exist.
    async fn delete_template(&self, id: &str) -> Result<bool>;

    /// Stores a new session; `Conflict` if the id exists (or existed and was deleted).
    async fn insert_session(&self, s: &Session) -> Result<()>;
    /// One session.
    async fn session(&self, id: &str) -> Result<Option<Session>>;
    /// The sessions of these ids that exist, in one query, in no particular order.
    async fn sessions_by_id(&self, ids: &[&str]) -> Result<Vec<Session>>;
    /// Sessions matching the filter, newest first.
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Page<Session>>;
    /// Sessions in any of these statuses (for the background loops), oldest first.
    async fn sessions_in_status(&self, statuses: &[SessionStatus]) -> Result<Vec<Session>>;
    /// Replaces a session's mutable fields; `false` if it does not exist.
    async fn update_session(&self, s: &Session) -> Result<bool>;
    /// Marks the start (at `at`) of a dependency install for a session, unless one is in
    /// progress; `false` then, or if the session does not exist. Atomic across replicas.
    async fn begin_dependency_install(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Records the end of the dependency install that started at `started_at`: writes the
    /// session's dependency fields only (index URL, requested and installed packages, install
    /// status, error and its code, and times). `false` if that install is no longer the one in progress.
    async fn finish_dependency_install(&self, s: &Session, started_at: DateTime<Utc>) -> Result<bool>;
    /// Sessions with a dependency install in progress, oldest first.
    async fn sessions_installing_dependencies(&self) -> Result<Vec<Session>>;
    /// Sets `last_activity_at` (and `updated_at`) only.
    async fn touch_session(&self, id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Removes a session and its executions, and leaves a tombstone recording its owner;
    /// `false` if it does not exist.
    async fn delete_session(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// The owner of a deleted session, if `id` names one.
    async fn deleted_session_owner(&self, id: &str) -> Result<Option<String>>;
    /// How many sessions not yet final use a template.
    async fn count_live_sessions_of_template(&self, template_id: &str) -> Result<u64>;

    /// Sessions in `creating` or `running`, of one owner or of all.
    async fn count_live_sessions(&self, owner_key_id: Option<&str>) -> Result<u64>;

    /// Records audited network attempts (of any sessions), then deletes the oldest of each
    /// session concerned until at most `keep` remain; returns how many were deleted.
    async fn insert_network_attempts(&self, attempts: &[NetworkAttempt], keep: u64) -> Result<u64>;
    /// A session's audited network attempts, newest first.
    async fn list_network_attempts(
        &self,
        session_id: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Page<NetworkAttempt>>;

    /// Stores a new code context unless its session already has `max` of them; `false` then.
    /// `Conflict` if the id exists.
    async fn insert_context(&self, c: &Context, max: u32) -> Result<bool>;
    /// One code context.
    async fn context(&self, id: &str) -> Result<Option<Context>>;
    /// A session's code contexts, oldest first.
    async fn list_contexts(&self, session_id: &str) -> Result<Vec<Context>>;
    /// Forgets a code context (its executions keep naming it); `false` if it does not exist.
    async fn delete_context(&self, id: &str) -> Result<bool>;

    /// Claims an idempotency key for a request unless it is held: `None` when claimed now,
    /// else the record that holds it. A record created before `expired_before` is replaced.
    async fn claim_idempotency_key(
        &self,
        r: &IdempotencyRecord,
        expired_before: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>>;
    /// Records what the request holding an idempotency key made.
    async fn complete_idempotency_key(&self, owner_key_id: &str, key: &str, resource_id: &str) -> Result<()>;
    /// Gives up an idempotency key whose request failed (a retry may try again).
    async fn release_idempotency_key(&self, owner_key_id: &str, key: &str) -> Result<()>;
    /// Forgets idempotency keys first used before `before`; how many.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Stores a new execution; `Conflict` if the id exists.
    async fn insert_execution(&self, e: &Execution) -> Result<()>;
    /// Forgets an execution that never started; `false` if it does not exist.
    async fn delete_execution(&self, id: &str) -> Result<bool>;
    /// One execution.
    async fn execution(&self, id: &str) -> Result<Option<Execution>>;
    /// Replaces an execution's mutable fields; `false` if it does not exist.
    async fn update_execution(&self, e: &Execution) -> Result<bool>;
    /// A session's executions, newest first.
    async fn list_executions(&self, session_id: &str, limit: u32, offset: u64) -> Result<Page<Execution>>;
    /// Deletes a session's oldest finished executions until at most `keep` remain and their
    /// stored text (code, event, output, return value) takes at most `keep_bytes`; returns how
    /// many went. Unfinished executions are never deleted and do not count.
    async fn prune_executions(&self, session_id: &str, keep: u64, keep_bytes: u64) -> Result<u64>;
    /// Whether the session has an execution still `pending` or `running`.
    async fn session_has_unfinished_executions(&self, session_id: &str) -> Result<bool>;
    /// Executions still `pending` or `running` (to finish after a restart), oldest first.
    async fn unfinished_executions(&self) -> Result<Vec<Execution>>;

    /// Records a new warm-pool sandbox in one of its template's `size` places: `false`, recording
    /// nothing, when sandboxes of the template not yet claimed hold all of them; otherwise
    /// `Conflict` if the id exists. A claim or a delete frees a place. Concurrent inserts (from
    /// any replica) never place more than `size`.
    async fn insert_pool_sandbox(&self, p: &PoolSandbox, size: u32) -> Result<bool>;
    /// Replaces a pool sandbox's mutable fields; `false` if it does not exist.
    async fn update_pool_sandbox(&self, p: &PoolSandbox) -> Result<bool>;
    /// Every pool sandbox, oldest first.
    async fn list_pool_sandboxes(&self) -> Result<Vec<PoolSandbox>>;
    /// Atomically moves one `ready` sandbox of the template to `claimed`, freeing its place, and
    /// returns it; `None` when the pool is empty. Concurrent claims (from any replica) never get
    /// the same one.
    async fn claim_pool_sandbox(&self, template_id: &str, at: DateTime<Utc>) -> Result<Option<PoolSandbox>>;
    /// Forgets a pool sandbox; `false` if it does not exist.
    async fn delete_pool_sandbox(&self, id: &str) -> Result<bool>;

    /// Takes or renews the lease `name` for `holder` for `ttl`; `true` if `holder` holds it now.
    /// Another holder's lease is taken over only once it has expired.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives up a lease held by `holder`.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    /// The server spawns tasks that open stores: `open`'s future must be `Send` (sqlx's generic
    /// executors easily make it not). This fails to compile otherwise.
    #[test]
    fn open_future_is_send() {
        fn is_send<T: Send>(_: &T) {}
        is_send(&super::open("sqlite://never-polled.db"));
    }
}
