//! The schema migrations of each dialect, applied in order on open and recorded in `schema_migrations`.

use crate::records::Cols;
use crate::{Result, StoreError, db};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

/// The two SQL dialects the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite.
    Sqlite,
    /// MySQL or MariaDB.
    Mysql,
}

/// One migration: its version and its statements.
struct Migration {
    version: i64,
    sql: &'static str,
}

const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: include_str!("../migrations/sqlite/0001_initial.sql") },
    Migration { version: 2, sql: include_str!("../migrations/sqlite/0002_pools.sql") },
    Migration { version: 3, sql: include_str!("../migrations/sqlite/0003_pool_slots.sql") },
    Migration { version: 4, sql: include_str!("../migrations/sqlite/0004_client_ids.sql") },
];

const MYSQL_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: include_str!("../migrations/mysql/0001_initial.sql") },
    Migration { version: 2, sql: include_str!("../migrations/mysql/0002_pools.sql") },
    Migration { version: 3, sql: include_str!("../migrations/mysql/0003_pool_slots.sql") },
    Migration { version: 4, sql: include_str!("../migrations/mysql/0004_client_ids.sql") },
];

/// The MySQL named lock that keeps two processes from migrating the same database at once.
const MYSQL_LOCK: &str = "sandbox_store_migrate";

impl Dialect {
    /// `sqlite` or `mysql`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Mysql => "mysql",
        }
    }

    fn migrations(self) -> &'static [Migration] {
        match self {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Mysql => MYSQL_MIGRATIONS,
        }
    }

    fn migrations_table(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version INTEGER NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL)"
            }
            Dialect::Mysql => {
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL) ENGINE=InnoDB"
            }
        }
    }
}

/// Applies the migrations `schema_migrations` does not list yet, holding off other processes
/// meanwhile: SQLite by a write transaction taken up front (`BEGIN IMMEDIATE`, so the whole
/// migration commits or nothing does), MySQL by a named lock (its DDL commits on its own, so a
/// migration failing halfway there leaves its first statements applied, to undo by hand).
pub(crate) async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(db)?;
    match dialect {
        Dialect::Sqlite => {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            apply(&mut tx, dialect).await?;
            tx.commit().await.map_err(db)
        }
        Dialect::Mysql => {
            let row = sqlx::query("SELECT GET_LOCK(?, 30) AS locked")
                .bind(MYSQL_LOCK)
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?;
            let locked = Cols { row: &row, table: "schema_migrations" }.opt_int::<i64>("locked")?;
            if locked != Some(1) {
                return Err(StoreError::Database(format!("timed out waiting for the lock {MYSQL_LOCK}")));
            }
            let applied = apply(&mut conn, dialect).await;
            let released = sqlx::query("SELECT RELEASE_LOCK(?)").bind(MYSQL_LOCK).execute(&mut *conn).await;
            applied?;
            released.map_err(db)?;
            Ok(())
        }
    }
}

/// Creates `schema_migrations` if needed and applies what it does not list, in order.
async fn apply(conn: &mut AnyConnection, dialect: Dialect) -> Result<()> {
    conn.execute(dialect.migrations_table()).await.map_err(db)?;
    let rows =
        sqlx::query("SELECT version FROM schema_migrations").fetch_all(&mut *conn).await.map_err(db)?;
    let applied = rows
        .iter()
        .map(|row| Cols { row, table: "schema_migrations" }.int::<i64>("version"))
        .collect::<Result<Vec<_>>>()?;
    for m in dialect.migrations().iter().filter(|m| !applied.contains(&m.version)) {
        conn.execute(sqlx::raw_sql(m.sql)).await.map_err(db)?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .bind(m.version)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        tracing::info!(dialect = dialect.name(), version = m.version, "applied store migration");
    }
    Ok(())
}
