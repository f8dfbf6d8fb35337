//! The schema migrations of each dialect (`migrations/<dialect>/<version>_<description>.sql`),
//! embedded in the binary and applied on open by sqlx's migrator, which records every applied
//! version with the SHA-384 checksum of its file in `_sqlx_migrations`: a migration already
//! applied whose file has changed since stops the store from opening.
//!
//! Earlier releases applied the same files with a runner of their own that listed the applied
//! versions in `schema_migrations` (version and time, no checksum). Opening such a database
//! adopts them first: each version listed there is recorded in `_sqlx_migrations` with its
//! file's checksum (`execution_time` -1: not run by the migrator), then the migrator applies what
//! is still missing. `schema_migrations` keeps the times its versions were applied, and the
//! versions the migrator applies are added to it, so a replica of an earlier release that starts
//! during a rolling upgrade finds every migration applied and runs none again. A database created
//! by this release has no `schema_migrations`.

use crate::records::Cols;
use crate::{Result, StoreError, db};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, Connection};
use std::pin::Pin;

/// The two SQL dialects the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite.
    Sqlite,
    /// MySQL or MariaDB.
    Mysql,
}

/// The migration files of a dialect's directory, by file name, with their contents.
macro_rules! migration_files {
    ($dialect:literal: $($file:literal),+ $(,)?) => {
        &[$(($file, include_str!(concat!("../migrations/", $dialect, "/", $file)))),+]
    };
}

const SQLITE_MIGRATIONS: &[(&str, &str)] = migration_files!("sqlite":
    "0001_initial.sql", "0002_pools.sql", "0003_pool_slots.sql", "0004_client_ids.sql", "0005_contexts.sql",
    "0006_idempotency_keys.sql", "0007_session_metadata.sql", "0008_dependency_install_code.sql",
    "0009_template_images.sql", "0010_egress.sql");

const MYSQL_MIGRATIONS: &[(&str, &str)] = migration_files!("mysql":
    "0001_initial.sql", "0002_pools.sql", "0003_pool_slots.sql", "0004_client_ids.sql", "0005_contexts.sql",
    "0006_idempotency_keys.sql", "0007_session_metadata.sql", "0008_dependency_install_code.sql",
    "0009_template_images.sql", "0010_egress.sql");

/// The MySQL named lock that keeps two processes from migrating the same database at once: the
/// one the earlier runner took, so replicas of an earlier release take turns with this one too.
const MYSQL_LOCK: &str = "sandbox_store_migrate";

/// The table in which releases before the migrator listed the versions they had applied.
const LEGACY_TABLE: &str = "schema_migrations";

impl Dialect {
    /// `sqlite` or `mysql`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Mysql => "mysql",
        }
    }

    /// Whether the legacy table exists: `n` is 1 or 0.
    fn legacy_table_exists(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
            Dialect::Mysql => {
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?"
            }
        }
    }
}

/// A dialect's migration files, embedded in the binary, as sqlx's migrator takes them.
#[derive(Debug)]
pub(crate) struct Embedded(pub(crate) Dialect);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Vec<Migration>, BoxDynError>> + Send>> {
        let files = match self.0 {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Mysql => MYSQL_MIGRATIONS,
        };
        Box::pin(async move { files.iter().map(|&(file, sql)| migration(file, sql)).collect() })
    }
}

/// A migration from its file, named as sqlx names them: `<version>_<description>.sql`, the
/// description's underscores read as spaces.
fn migration(file: &str, sql: &'static str) -> std::result::Result<Migration, BoxDynError> {
    let (version, description) = file
        .strip_suffix(".sql")
        .and_then(|stem| stem.split_once('_'))
        .ok_or_else(|| format!("migration file {file:?} is not named <version>_<description>.sql"))?;
    let version = version.parse().map_err(|e| format!("migration file {file:?}: {e}"))?;
    let description = description.replace('_', " ").into();
    Ok(Migration::new(version, description, MigrationType::Simple, sql.into(), false))
}

/// A migration failure as a [`StoreError`].
fn failed(dialect: Dialect) -> impl Fn(MigrateError) -> StoreError {
    move |e| StoreError::Database(format!("migrating the {} store: {e}", dialect.name()))
}

/// Adopts the legacy table's versions, then applies the migrations the database lacks, holding
/// off other processes meanwhile: SQLite by a write transaction taken up front (`BEGIN
/// IMMEDIATE`, so everything commits at once or nothing does; sqlx's migrator takes no lock on
/// SQLite), MySQL by a named lock. MySQL commits each DDL statement on its own: a migration that
/// fails halfway there leaves its first statements applied and its version marked unfinished
/// (`success = 0`), and the store refuses to open until that is put right by hand.
pub(crate) async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<()> {
    let migrator = Migrator::new(Embedded(dialect)).await.map_err(failed(dialect))?;
    let mut conn = pool.acquire().await.map_err(db)?;
    match dialect {
        Dialect::Sqlite => {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            apply(&mut tx, dialect, &migrator).await?;
            tx.commit().await.map_err(db)
        }
        Dialect::Mysql => {
            let row = sqlx::query("SELECT GET_LOCK(?, 30) AS locked")
                .bind(MYSQL_LOCK)
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?;
            let locked = Cols { row: &row, table: "the migration lock" }.opt_int::<i64>("locked")?;
            if locked != Some(1) {
                return Err(StoreError::Database(format!("timed out waiting for the lock {MYSQL_LOCK}")));
            }
            let applied = apply(&mut conn, dialect, &migrator).await;
            let released = sqlx::query("SELECT RELEASE_LOCK(?)").bind(MYSQL_LOCK).execute(&mut *conn).await;
            applied?;
            released.map_err(db)?;
            Ok(())
        }
    }
}

/// Adopts the legacy table's versions, runs the migrator and lists what it applied in the legacy
/// table too, on a connection that holds off other processes.
async fn apply(conn: &mut AnyConnection, dialect: Dialect, migrator: &Migrator) -> Result<()> {
    conn.ensure_migrations_table().await.map_err(failed(dialect))?;
    let legacy = legacy_versions(conn, dialect).await?;
    if let Some(versions) = &legacy {
        adopt(conn, dialect, migrator, versions).await?;
    }
    let recorded = conn.list_applied_migrations().await.map_err(failed(dialect))?;
    let pending: Vec<i64> =
        migrator.iter().map(|m| m.version).filter(|v| !recorded.iter().any(|r| r.version == *v)).collect();
    // `run_direct`, not `run`: `run`'s future is not `Send` for a borrowed connection (the
    // `Acquire` bound; `open_future_is_send` fails to compile with it), which sqlx added
    // `run_direct` for.
    migrator.run_direct(conn).await.map_err(failed(dialect))?;
    if pending.is_empty() {
        return Ok(());
    }
    tracing::info!(dialect = dialect.name(), versions = ?pending, "applied store migrations");
    if legacy.is_some() {
        // A replica of an earlier release reads only this table: it must not apply these again.
        let now = chrono::Utc::now().timestamp_millis();
        for version in pending {
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
    }
    Ok(())
}

/// The versions the legacy table lists, or `None` when there is no such table.
async fn legacy_versions(conn: &mut AnyConnection, dialect: Dialect) -> Result<Option<Vec<i64>>> {
    let row = sqlx::query(dialect.legacy_table_exists())
        .bind(LEGACY_TABLE)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let tables: i64 = Cols { row: &row, table: LEGACY_TABLE }.int("n")?;
    if tables == 0 {
        return Ok(None);
    }
    let rows = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    rows.iter().map(|row| Cols { row, table: LEGACY_TABLE }.int("version")).collect::<Result<_>>().map(Some)
}

/// Records in `_sqlx_migrations` each of the legacy table's `versions` it does not list yet, with
/// its file's checksum, in one transaction. A version this release has no file for (a database a
/// later release migrated) is an error, and nothing is recorded.
async fn adopt(
    conn: &mut AnyConnection,
    dialect: Dialect,
    migrator: &Migrator,
    versions: &[i64],
) -> Result<()> {
    let recorded = conn.list_applied_migrations().await.map_err(failed(dialect))?;
    let mut tx = conn.begin().await.map_err(db)?;
    let mut adopted = Vec::new();
    for &version in versions.iter().filter(|v| !recorded.iter().any(|r| r.version == **v)) {
        let m = migrator.iter().find(|m| m.version == version).ok_or_else(|| {
            StoreError::Database(format!(
                "{LEGACY_TABLE} lists migration {version}, which this release does not have \
                 (was the database migrated by a later release?)"
            ))
        })?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, ?, TRUE, ?, -1)",
        )
        .bind(version)
        .bind(m.description.as_ref())
        .bind(m.checksum.as_ref())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        adopted.push(version);
    }
    tx.commit().await.map_err(db)?;
    if !adopted.is_empty() {
        tracing::info!(dialect = dialect.name(), versions = ?adopted, "adopted the migrations schema_migrations lists");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Dialect, Embedded};
    use sqlx::migrate::Migrator;
    use std::path::Path;

    /// The embedded migrations are exactly the dialect's directory as sqlx reads it: no file
    /// left out, the same versions, descriptions and checksums.
    #[tokio::test]
    async fn embedded_migrations_are_the_directory() {
        for dialect in [Dialect::Sqlite, Dialect::Mysql] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect.name());
            let from_dir = Migrator::new(dir).await.expect("the directory");
            let embedded = Migrator::new(Embedded(dialect)).await.expect("the embedded files");
            let fields = |m: &Migrator| {
                m.iter()
                    .map(|m| (m.version, m.description.to_string(), m.checksum.to_vec()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(fields(&embedded), fields(&from_dir), "{}", dialect.name());
            assert!(fields(&embedded).len() >= 4, "{}", dialect.name());
        }
    }
}
