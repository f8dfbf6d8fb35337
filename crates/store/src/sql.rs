//! [`Store`] over sqlx's `Any` driver: one set of queries, with `?` placeholders, for both dialects.

use crate::migrate::{Dialect, migrate};
use crate::records::{
    API_KEYS, Arg, CONTEXTS, Cols, EXECUTIONS, Fields, NETWORK_ATTEMPTS, POOL_SANDBOXES, SESSIONS, TEMPLATES,
    Table, api_key_fields, api_key_from_row, context_fields, context_from_row, execution_fields,
    execution_from_row, idempotency_from_row, network_attempt_fields, network_attempt_from_row,
    pool_sandbox_fields, pool_sandbox_from_row, session_fields, session_from_row, template_fields,
    template_from_row, template_image_fields,
};
use crate::{Page, Result, SessionFilter, Store, StoreError, db};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sandbox_core::model::{
    ApiKey, Context, Execution, IdempotencyRecord, ImagePull, NetworkAttempt, PoolSandbox, PoolState,
    Session, SessionStatus, Template, TemplateStatus,
};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor};
use std::time::Duration;

/// A query with its arguments bound as it is built.
type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments<'q>>;

/// A [`Store`] in a SQLite or MySQL database.
pub(crate) struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

/// How long opening a SQLite store keeps trying to switch it to WAL while others hold it.
const WAL_SWITCH_WAIT: Duration = Duration::from_secs(10);

/// Switches a SQLite database to WAL (the mode is kept in the file). The switch needs the database
/// to itself, and SQLite answers `SQLITE_BUSY` at once, without waiting, while another connection
/// is switching or migrating it too (waiting could deadlock): two stores opening a new file at the
/// same moment. Tried again until [`WAL_SWITCH_WAIT`] has passed. sqlx already turns foreign keys
/// on and waits 5 s on a busy database for everything else.
async fn use_wal(pool: &AnyPool) -> Result<()> {
    let deadline = std::time::Instant::now() + WAL_SWITCH_WAIT;
    loop {
        match pool.execute("PRAGMA journal_mode = WAL").await {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(db(e)),
        }
    }
}

/// Whether SQLite answered `SQLITE_BUSY` (or one of its extended codes).
fn is_busy(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code()).and_then(|c| c.parse::<i32>().ok());
    code.is_some_and(|c| c & 0xff == 5)
}

impl SqlStore {
    /// Connects to `url` (which `open` has checked names `dialect`) and migrates the schema.
    pub(crate) async fn connect(dialect: Dialect, url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new();
        if dialect == Dialect::Sqlite {
            // In WAL mode `NORMAL` syncs at checkpoints rather than at every commit: the database
            // stays consistent through any crash, and a power cut can lose only the last commits
            // before it. Per connection, so set on each.
            options = options.after_connect(|conn, _| {
                Box::pin(async move { conn.execute("PRAGMA synchronous = NORMAL").await.map(|_| ()) })
            });
        }
        let pool = options.connect(url).await.map_err(db)?;
        if dialect == Dialect::Sqlite {
            use_wal(&pool).await?;
        }
        migrate(&pool, dialect).await?;
        Ok(Self { pool, dialect })
    }

    /// Rewrites every column of the row `id` but the table's fixed ones; `false` if no row matched.
    async fn update(&self, table: &Table, id: &str, mut fields: Fields) -> Result<bool> {
        fields.retain(|(c, _)| !table.fixed.contains(c));
        let sets = fields.iter().map(|(c, _)| format!("{c} = ?")).collect::<Vec<_>>().join(", ");
        let sql = format!("UPDATE {} SET {sets} WHERE id = ?", table.name);
        // MySQL counts matched rows, not changed ones: sqlx connects with CLIENT_FOUND_ROWS.
        let done = self.affected(bind(sqlx::query(&sql), fields).bind(id)).await?;
        Ok(done > 0)
    }

    /// The rows a query returns, each read by `read`.
    async fn fetch<T>(&self, query: Query<'_>, read: fn(&AnyRow) -> Result<T>) -> Result<Vec<T>> {
        query.fetch_all(&self.pool).await.map_err(db)?.iter().map(read).collect()
    }

    /// The row a query returns, if any, read by `read`.
    async fn fetch_one<T>(&self, query: Query<'_>, read: fn(&AnyRow) -> Result<T>) -> Result<Option<T>> {
        query.fetch_optional(&self.pool).await.map_err(db)?.as_ref().map(read).transpose()
    }

    /// Runs a statement; how many rows it matched.
    async fn affected(&self, query: Query<'_>) -> Result<u64> {
        Ok(query.execute(&self.pool).await.map_err(db)?.rows_affected())
    }

    /// Whether a pool sandbox `id` is recorded.
    async fn pool_sandbox_exists(&self, id: &str) -> Result<bool> {
        let q = sqlx::query("SELECT COUNT(*) AS n FROM pool_sandboxes WHERE id = ?").bind(id);
        Ok(self.count(POOL_SANDBOXES.name, q).await? > 0)
    }

    /// The `n` column of the one row a `COUNT(*) AS n` query returns.
    async fn count(&self, table: &'static str, query: Query<'_>) -> Result<u64> {
        let row = query.fetch_one(&self.pool).await.map_err(db)?;
        Cols { row: &row, table }.int("n")
    }
}

/// Inserts a record; a taken id (or unique value) is `Conflict`.
async fn insert<'c>(
    conn: impl Executor<'c, Database = Any>,
    table: &Table,
    id: &str,
    fields: Fields,
) -> Result<()> {
    let columns = fields.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let sql = format!("INSERT INTO {} ({columns}) VALUES ({})", table.name, marks(fields.len()));
    bind(sqlx::query(&sql), fields).execute(conn).await.map_err(conflict_or_db(table.record, id))?;
    Ok(())
}

/// Maps a unique-key violation to `Conflict` naming the record, anything else to `Database`.
fn conflict_or_db(record: &str, id: &str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(format!("{record} {id}")),
        _ => db(e),
    }
}

/// Binds `fields`' values in order.
fn bind(query: Query<'_>, fields: Fields) -> Query<'_> {
    fields.into_iter().fold(query, |q, (_, arg)| match arg {
        Arg::Text(v) => q.bind(v),
        Arg::Int(v) => q.bind(v),
        Arg::Real(v) => q.bind(v),
    })
}

/// A count as SQL takes it, saturating.
fn sql_int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// `?, ?, ?` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[async_trait]
impl Store for SqlStore {
    fn dialect(&self) -> &'static str {
        self.dialect.name()
    }

    async fn ping(&self) -> Result<()> {
        self.pool.execute("SELECT 1").await.map_err(db)?;
        Ok(())
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        insert(&self.pool, &API_KEYS, &key.id, api_key_fields(key)).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let q = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?").bind(key_hash);
        self.fetch_one(q, api_key_from_row).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.fetch(sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id"), api_key_from_row).await
    }

    async fn revoke_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let done = self
            .affected(
                sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
                    .bind(at.timestamp_millis())
                    .bind(id),
            )
            .await?;
        Ok(done > 0)
    }

    async fn insert_template(&self, t: &Template) -> Result<()> {
        insert(&self.pool, &TEMPLATES, &t.id, template_fields(t)?).await
    }

    async fn template(&self, id: &str) -> Result<Option<Template>> {
        self.fetch_one(sqlx::query("SELECT * FROM templates WHERE id = ?").bind(id), template_from_row).await
    }

    async fn list_templates(&self, limit: u32, offset: u64) -> Result<Page<Template>> {
        let q = sqlx::query("SELECT * FROM templates ORDER BY id LIMIT ? OFFSET ?")
            .bind(sql_int(limit))
            .bind(sql_int(offset));
        let items = self.fetch(q, template_from_row).await?;
        let total = self.count(TEMPLATES.name, sqlx::query("SELECT COUNT(*) AS n FROM templates")).await?;
        Ok(Page { items, total })
    }

    async fn update_template(&self, t: &Template) -> Result<bool> {
        self.update(&TEMPLATES, &t.id, template_fields(t)?).await
    }

    async fn set_template_image(
        &self,
        id: &str,
        image_url: &str,
        status: TemplateStatus,
        pull: Option<&ImagePull>,
    ) -> Result<bool> {
        let fields = template_image_fields(status, pull)?;
        let sql = "UPDATE templates SET status = ?, image_pull = ? WHERE id = ? AND image_url = ?";
        Ok(self.affected(bind(sqlx::query(sql), fields).bind(id).bind(image_url)).await? > 0)
    }

    async fn delete_template(&self, id: &str) -> Result<bool> {
        Ok(self.affected(sqlx::query("DELETE FROM templates WHERE id = ?").bind(id)).await? > 0)
    }

    async fn insert_session(&self, s: &Session) -> Result<()> {
        // Insert first, so that SQLite takes its write lock at once, then look for a tombstone.
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert(&mut *tx, &SESSIONS, &s.id, session_fields(s)?).await?;
        let tombstone = sqlx::query("SELECT id FROM deleted_sessions WHERE id = ?")
            .bind(&s.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if tombstone.is_some() {
            return Err(StoreError::Conflict(format!("deleted session {}", s.id)));
        }
        tx.commit().await.map_err(db)
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        self.fetch_one(sqlx::query("SELECT * FROM sessions WHERE id = ?").bind(id), session_from_row).await
    }

    async fn sessions_by_id(&self, ids: &[&str]) -> Result<Vec<Session>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT * FROM sessions WHERE id IN ({})", marks(ids.len()));
        self.fetch(ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id)), session_from_row).await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Page<Session>> {
        let conditions = [
            ("owner_key_id", filter.owner_key_id.as_deref()),
            ("status", filter.status.map(SessionStatus::as_str)),
            ("template_id", filter.template_id.as_deref()),
        ];
        let (columns, values): (Vec<_>, Vec<_>) =
            conditions.into_iter().filter_map(|(c, v)| Some((c, v?))).unzip();
        let mut clause = columns.iter().map(|c| format!("{c} = ?")).collect::<Vec<_>>().join(" AND ");
        if !clause.is_empty() {
            clause.insert_str(0, " WHERE ");
        }
        let page_sql =
            format!("SELECT * FROM sessions{clause} ORDER BY created_at DESC, id LIMIT ? OFFSET ?");
        let count_sql = format!("SELECT COUNT(*) AS n FROM sessions{clause}");
        let (mut page, mut count) = (sqlx::query(&page_sql), sqlx::query(&count_sql));
        for v in values {
            page = page.bind(v);
            count = count.bind(v);
        }
        let items =
            self.fetch(page.bind(i64::from(filter.limit)).bind(sql_int(filter.offset)), session_from_row);
        Ok(Page { items: items.await?, total: self.count(SESSIONS.name, count).await? })
    }

    async fn sessions_in_status(&self, statuses: &[SessionStatus]) -> Result<Vec<Session>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT * FROM sessions WHERE status IN ({}) ORDER BY created_at, id",
            marks(statuses.len())
        );
        let q = statuses.iter().fold(sqlx::query(&sql), |q, s| q.bind(s.as_str()));
        self.fetch(q, session_from_row).await
    }

    async fn update_session(&self, s: &Session) -> Result<bool> {
        self.update(&SESSIONS, &s.id, session_fields(s)?).await
    }

    async fn begin_dependency_install(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let q = sqlx::query(
            "UPDATE sessions SET dependency_install_status = 'installing', dependency_install_started_at = ?, \
             dependency_install_error = NULL, dependency_install_error_code = NULL, updated_at = ? \
             WHERE id = ? AND dependency_install_status <> 'installing'",
        )
        .bind(at.timestamp_millis())
        .bind(at.timestamp_millis())
        .bind(id);
        Ok(self.affected(q).await? > 0)
    }

    async fn finish_dependency_install(&self, s: &Session, started_at: DateTime<Utc>) -> Result<bool> {
        const COLUMNS: [&str; 9] = [
            "python_package_index_url",
            "requested_dependencies",
            "installed_dependencies",
            "dependency_install_status",
            "dependency_install_error",
            "dependency_install_error_code",
            "dependency_install_started_at",
            "dependency_install_completed_at",
            "updated_at",
        ];
        let mut fields = session_fields(s)?;
        fields.retain(|(c, _)| COLUMNS.contains(c));
        let sets = fields.iter().map(|(c, _)| format!("{c} = ?")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "UPDATE sessions SET {sets} WHERE id = ? AND dependency_install_status = 'installing' \
             AND dependency_install_started_at = ?"
        );
        let done = self
            .affected(bind(sqlx::query(&sql), fields).bind(&s.id).bind(started_at.timestamp_millis()))
            .await?;
        Ok(done > 0)
    }

    async fn sessions_installing_dependencies(&self) -> Result<Vec<Session>> {
        let q = sqlx::query(
            "SELECT * FROM sessions WHERE dependency_install_status = 'installing' ORDER BY created_at, id",
        );
        self.fetch(q, session_from_row).await
    }

    async fn touch_session(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        self.affected(
            sqlx::query("UPDATE sessions SET last_activity_at = ?, updated_at = ? WHERE id = ?")
                .bind(at.timestamp_millis())
                .bind(at.timestamp_millis())
                .bind(id),
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        // The tombstone first: it copies the owner, tells whether the session exists, and is a
        // write, so SQLite takes its write lock at once.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let tombstone = sqlx::query(
            "INSERT INTO deleted_sessions (id, owner_key_id, deleted_at) \
             SELECT id, owner_key_id, ? FROM sessions WHERE id = ?",
        )
        .bind(at.timestamp_millis())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if tombstone.rows_affected() == 0 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM executions WHERE session_id = ?",
            "DELETE FROM contexts WHERE session_id = ?",
            "DELETE FROM network_attempts WHERE session_id = ?",
            "DELETE FROM sessions WHERE id = ?",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn deleted_session_owner(&self, id: &str) -> Result<Option<String>> {
        let q = sqlx::query("SELECT owner_key_id FROM deleted_sessions WHERE id = ?").bind(id);
        self.fetch_one(q, |row| Cols { row, table: "deleted_sessions" }.text("owner_key_id")).await
    }

    async fn count_live_sessions_of_template(&self, template_id: &str) -> Result<u64> {
        let q = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE template_id = ? AND status IN (?, ?)")
            .bind(template_id)
            .bind(SessionStatus::Creating.as_str())
            .bind(SessionStatus::Running.as_str());
        self.count(SESSIONS.name, q).await
    }

    async fn count_live_sessions(&self, owner_key_id: Option<&str>) -> Result<u64> {
        let mut sql = "SELECT COUNT(*) AS n FROM sessions WHERE status IN (?, ?)".to_owned();
        if owner_key_id.is_some() {
            sql.push_str(" AND owner_key_id = ?");
        }
        let q =
            sqlx::query(&sql).bind(SessionStatus::Creating.as_str()).bind(SessionStatus::Running.as_str());
        let q = match owner_key_id {
            Some(owner) => q.bind(owner),
            None => q,
        };
        self.count(SESSIONS.name, q).await
    }

    async fn insert_context(&self, c: &Context, max: u32) -> Result<bool> {
        // One statement, so the count and the insert cannot be split by another create.
        let fields = context_fields(c)?;
        let columns = fields.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "INSERT INTO contexts ({columns}) SELECT {} FROM (SELECT COUNT(*) AS n FROM contexts \
             WHERE session_id = ?) AS taken WHERE taken.n < ?",
            marks(fields.len())
        );
        let q = bind(sqlx::query(&sql), fields).bind(&c.session_id).bind(i64::from(max));
        let done = q.execute(&self.pool).await.map_err(conflict_or_db(CONTEXTS.record, &c.id))?;
        Ok(done.rows_affected() > 0)
    }

    async fn context(&self, id: &str) -> Result<Option<Context>> {
        self.fetch_one(sqlx::query("SELECT * FROM contexts WHERE id = ?").bind(id), context_from_row).await
    }

    async fn list_contexts(&self, session_id: &str) -> Result<Vec<Context>> {
        let q = sqlx::query("SELECT * FROM contexts WHERE session_id = ? ORDER BY created_at, id")
            .bind(session_id);
        self.fetch(q, context_from_row).await
    }

    async fn delete_context(&self, id: &str) -> Result<bool> {
        Ok(self.affected(sqlx::query("DELETE FROM contexts WHERE id = ?").bind(id)).await? > 0)
    }

    async fn claim_idempotency_key(
        &self,
        r: &IdempotencyRecord,
        expired_before: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let expired = sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner_key_id = ? AND idem_key = ? AND created_at < ?",
        )
        .bind(&r.owner_key_id)
        .bind(&r.key)
        .bind(expired_before.timestamp_millis());
        self.affected(expired).await?;
        // A key released between a refused insert and the read is free again: one more try.
        for _ in 0..2 {
            let insert = sqlx::query(
                "INSERT INTO idempotency_keys (owner_key_id, idem_key, operation, fingerprint, resource_id, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&r.owner_key_id)
            .bind(&r.key)
            .bind(&r.operation)
            .bind(&r.fingerprint)
            .bind(&r.resource_id)
            .bind(r.created_at.timestamp_millis());
            match insert.execute(&self.pool).await {
                Ok(_) => return Ok(None),
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {}
                Err(e) => return Err(db(e)),
            }
            let q = sqlx::query("SELECT * FROM idempotency_keys WHERE owner_key_id = ? AND idem_key = ?")
                .bind(&r.owner_key_id)
                .bind(&r.key);
            if let Some(held) = self.fetch_one(q, idempotency_from_row).await? {
                return Ok(Some(held));
            }
        }
        Err(StoreError::Conflict(format!("idempotency key {}", r.key)))
    }

    async fn complete_idempotency_key(&self, owner_key_id: &str, key: &str, resource_id: &str) -> Result<()> {
        let q = sqlx::query(
            "UPDATE idempotency_keys SET resource_id = ? WHERE owner_key_id = ? AND idem_key = ?",
        )
        .bind(resource_id)
        .bind(owner_key_id)
        .bind(key);
        self.affected(q).await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, owner_key_id: &str, key: &str) -> Result<()> {
        let q = sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner_key_id = ? AND idem_key = ? AND resource_id IS NULL",
        )
        .bind(owner_key_id)
        .bind(key);
        self.affected(q).await?;
        Ok(())
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        let q =
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?").bind(before.timestamp_millis());
        self.affected(q).await
    }

    async fn insert_network_attempts(&self, attempts: &[NetworkAttempt], keep: u64) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for a in attempts {
            insert(&mut *tx, &NETWORK_ATTEMPTS, &a.session_id, network_attempt_fields(a)).await?;
        }
        let mut sessions: Vec<&str> = attempts.iter().map(|a| a.session_id.as_str()).collect();
        sessions.sort_unstable();
        sessions.dedup();
        let mut deleted = 0;
        for session in sessions {
            // The id of the newest attempt past `keep`, if any: it and everything older go.
            let q = sqlx::query(
                "SELECT id FROM network_attempts WHERE session_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            )
            .bind(session)
            .bind(sql_int(keep));
            let cut = q.fetch_optional(&mut *tx).await.map_err(db)?;
            if let Some(row) = cut {
                let id: i64 = Cols { row: &row, table: NETWORK_ATTEMPTS.name }.int("id")?;
                deleted += sqlx::query("DELETE FROM network_attempts WHERE session_id = ? AND id <= ?")
                    .bind(session)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn list_network_attempts(
        &self,
        session_id: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Page<NetworkAttempt>> {
        let q = sqlx::query(
            "SELECT * FROM network_attempts WHERE session_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        )
        .bind(session_id)
        .bind(i64::from(limit))
        .bind(sql_int(offset));
        let items = self.fetch(q, network_attempt_from_row).await?;
        let count =
            sqlx::query("SELECT COUNT(*) AS n FROM network_attempts WHERE session_id = ?").bind(session_id);
        Ok(Page { items, total: self.count(NETWORK_ATTEMPTS.name, count).await? })
    }

    async fn insert_execution(&self, e: &Execution) -> Result<()> {
        insert(&self.pool, &EXECUTIONS, &e.id, execution_fields(e)?).await
    }

    async fn delete_execution(&self, id: &str) -> Result<bool> {
        Ok(self.affected(sqlx::query("DELETE FROM executions WHERE id = ?").bind(id)).await? > 0)
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        self.fetch_one(sqlx::query("SELECT * FROM executions WHERE id = ?").bind(id), execution_from_row)
            .await
    }

    async fn update_execution(&self, e: &Execution) -> Result<bool> {
        self.update(&EXECUTIONS, &e.id, execution_fields(e)?).await
    }

    async fn list_executions(&self, session_id: &str, limit: u32, offset: u64) -> Result<Page<Execution>> {
        let q = sqlx::query(
            "SELECT * FROM executions WHERE session_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
        )
        .bind(session_id)
        .bind(i64::from(limit))
        .bind(sql_int(offset));
        let items = self.fetch(q, execution_from_row).await?;
        let count = sqlx::query("SELECT COUNT(*) AS n FROM executions WHERE session_id = ?").bind(session_id);
        Ok(Page { items, total: self.count(EXECUTIONS.name, count).await? })
    }

    async fn prune_executions(&self, session_id: &str, keep: u64, keep_bytes: u64) -> Result<u64> {
        // Bytes, not characters, in both dialects.
        let len = |c: &str| match self.dialect {
            Dialect::Sqlite => format!("COALESCE(LENGTH(CAST({c} AS BLOB)), 0)"),
            Dialect::Mysql => format!("COALESCE(LENGTH({c}), 0)"),
        };
        let size = ["code", "event", "stdout", "stderr", "return_value", "error_message", "results", "error"]
            .map(len)
            .join(" + ");
        let sql = format!(
            "SELECT id, {size} AS n FROM executions WHERE session_id = ? AND status NOT IN (?, ?) \
             ORDER BY created_at DESC, id DESC"
        );
        let q = sqlx::query(&sql)
            .bind(session_id)
            .bind(sandbox_core::ExecutionStatus::Pending.as_str())
            .bind(sandbox_core::ExecutionStatus::Running.as_str());
        let rows = self
            .fetch(q, |row| {
                let c = Cols { row, table: EXECUTIONS.name };
                Ok((c.text("id")?, c.int::<u64>("n")?))
            })
            .await?;
        // Newest first: everything from the first execution past either limit on goes.
        let (mut kept, mut bytes) = (0u64, 0u64);
        let cut = rows
            .iter()
            .position(|(_, n)| {
                kept += 1;
                bytes += n;
                kept > keep || bytes > keep_bytes
            })
            .unwrap_or(rows.len());
        let doomed: Vec<String> = rows.into_iter().skip(cut).map(|(id, _)| id).collect();
        let mut deleted = 0;
        for chunk in doomed.chunks(200) {
            let sql = format!("DELETE FROM executions WHERE id IN ({})", vec!["?"; chunk.len()].join(", "));
            let q = chunk.iter().fold(sqlx::query(&sql), |q, id| q.bind(id.as_str()));
            deleted += self.affected(q).await?;
        }
        Ok(deleted)
    }

    async fn session_has_unfinished_executions(&self, session_id: &str) -> Result<bool> {
        let q = sqlx::query("SELECT COUNT(*) AS n FROM executions WHERE session_id = ? AND status IN (?, ?)")
            .bind(session_id)
            .bind(sandbox_core::ExecutionStatus::Pending.as_str())
            .bind(sandbox_core::ExecutionStatus::Running.as_str());
        Ok(self.count(EXECUTIONS.name, q).await? > 0)
    }

    async fn unfinished_executions(&self) -> Result<Vec<Execution>> {
        let q = sqlx::query("SELECT * FROM executions WHERE status IN (?, ?) ORDER BY created_at, id")
            .bind(sandbox_core::ExecutionStatus::Pending.as_str())
            .bind(sandbox_core::ExecutionStatus::Running.as_str());
        self.fetch(q, execution_from_row).await
    }

    async fn insert_pool_sandbox(&self, p: &PoolSandbox, size: u32) -> Result<bool> {
        // The lowest free place; the unique index on (template_id, slot) decides who gets it, so a
        // place lost to another insert means looking again.
        loop {
            let q = sqlx::query("SELECT slot FROM pool_sandboxes WHERE template_id = ? AND slot IS NOT NULL")
                .bind(&p.template_id);
            let taken: Vec<u32> =
                self.fetch(q, |row| Cols { row, table: POOL_SANDBOXES.name }.int("slot")).await?;
            let Some(slot) = (0..size).find(|s| !taken.contains(s)) else { return Ok(false) };
            let mut fields = pool_sandbox_fields(p);
            fields.push(("slot", slot.into()));
            match insert(&self.pool, &POOL_SANDBOXES, &p.id, fields).await {
                Err(StoreError::Conflict(_)) if !self.pool_sandbox_exists(&p.id).await? => continue,
                placed => return placed.map(|()| true),
            }
        }
    }

    async fn update_pool_sandbox(&self, p: &PoolSandbox) -> Result<bool> {
        self.update(&POOL_SANDBOXES, &p.id, pool_sandbox_fields(p)).await
    }

    async fn list_pool_sandboxes(&self) -> Result<Vec<PoolSandbox>> {
        let q = sqlx::query("SELECT * FROM pool_sandboxes ORDER BY created_at, id");
        self.fetch(q, pool_sandbox_from_row).await
    }

    async fn claim_pool_sandbox(&self, template_id: &str, at: DateTime<Utc>) -> Result<Option<PoolSandbox>> {
        // A few candidates, oldest first; the conditional update decides who wins each one, so two
        // replicas claiming at once never get the same sandbox. Candidates lost to other claims
        // are looked for again until none is ready.
        loop {
            let q = sqlx::query(
                "SELECT * FROM pool_sandboxes WHERE template_id = ? AND state = ? ORDER BY ready_at, id LIMIT 8",
            )
            .bind(template_id)
            .bind(PoolState::Ready.as_str());
            let candidates = self.fetch(q, pool_sandbox_from_row).await?;
            if candidates.is_empty() {
                return Ok(None);
            }
            for mut candidate in candidates {
                let won = self
                    .affected(
                        sqlx::query(
                            "UPDATE pool_sandboxes SET state = ?, claimed_at = ?, slot = NULL \
                             WHERE id = ? AND state = ?",
                        )
                        .bind(PoolState::Claimed.as_str())
                        .bind(at.timestamp_millis())
                        .bind(&candidate.id)
                        .bind(PoolState::Ready.as_str()),
                    )
                    .await?;
                if won == 1 {
                    candidate.state = PoolState::Claimed;
                    candidate.claimed_at = Some(at);
                    return Ok(Some(candidate));
                }
            }
        }
    }

    async fn delete_pool_sandbox(&self, id: &str) -> Result<bool> {
        Ok(self.affected(sqlx::query("DELETE FROM pool_sandboxes WHERE id = ?").bind(id)).await? > 0)
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = Utc::now().timestamp_millis();
        let expires_at = now.saturating_add(sql_int(ttl.as_millis()));
        // Renew our lease or take over an expired one. MySQL reports matched rows (sqlx connects
        // with CLIENT_FOUND_ROWS), so a renewal that changes nothing still counts.
        let taken = self.affected(sqlx::query(
            "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at < ?)",
        )
        .bind(holder)
        .bind(expires_at)
        .bind(name)
        .bind(holder)
        .bind(now)).await?;
        if taken > 0 {
            return Ok(true);
        }
        // No row, or another holder's live lease: only creating the row can still win.
        let created = sqlx::query("INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(holder)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_or_db("lease", name));
        match created {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.affected(
            sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?").bind(name).bind(holder),
        )
        .await?;
        Ok(())
    }
}
