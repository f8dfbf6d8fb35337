//! The store against real databases: SQLite in a temp dir and a real MariaDB (`scripts/mariadb.sh`).

mod conformance;
mod upgrade;

use sandbox_store::{StoreError, open};
use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row, ValueRef};
use std::hash::{BuildHasher, RandomState};
use std::path::Path;

/// The admin connection the MySQL tests use when `SANDBOX_TEST_MYSQL_URL` is unset.
const DEFAULT_MYSQL_URL: &str = "mysql://sandbox:sandbox@127.0.0.1:3306/mysql";

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("store.db").display())
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.db");
    assert!(!file.exists());
    conformance::exercise(&sqlite_url(&dir), "sqlite").await;
    assert!(file.exists(), "open created the file");
}

#[tokio::test]
async fn sqlite_places_of_earlier_pool_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    conformance::places_of_earlier_pool_sandboxes(&sqlite_url(&dir), "sqlite").await;
}

#[tokio::test]
async fn sqlite_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    open(&url).await.expect("open");
    let pool = AnyPool::connect(&url).await.expect("connect");
    let row = pool.fetch_one("PRAGMA journal_mode").await.expect("journal_mode");
    assert_eq!(row.get::<String, _>(0), "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_open() {
    // SQLite refuses at once, without waiting, a second connection's switch to WAL: a race that
    // one try in a few dozen lost under load before opening retried it. Twenty fresh files.
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        open_concurrently(&sqlite_url(&dir)).await;
    }
}

#[tokio::test]
async fn sqlite_upgrade_from_release_0003() {
    let dir = tempfile::tempdir().unwrap();
    upgrade::from_release_0003(&sqlite_url(&dir), "sqlite").await;
}

#[tokio::test]
async fn sqlite_refuses_unknown_recorded_versions() {
    let dir = tempfile::tempdir().unwrap();
    upgrade::refuses_unknown_recorded_versions(&sqlite_url(&dir), "sqlite").await;
}

#[tokio::test]
async fn unsupported_urls() {
    for url in ["postgres://u:p@localhost/db", "sqlite://", "store.db", "", "mysql:/x"] {
        let result = open(url).await;
        let shown = sandbox_store::redact_credentials(url);
        assert!(matches!(result, Err(StoreError::UnsupportedUrl(ref u)) if *u == shown), "{url}");
        assert!(!shown.contains(":p@"), "credentials are never shown");
    }
}

#[tokio::test]
async fn mysql_conformance() {
    with_mysql_database(|url| async move { conformance::exercise(&url, "mysql").await }).await;
}

#[tokio::test]
async fn mysql_places_of_earlier_pool_sandboxes() {
    with_mysql_database(
        |url| async move { conformance::places_of_earlier_pool_sandboxes(&url, "mysql").await },
    )
    .await;
}

#[tokio::test]
async fn mysql_upgrade_from_release_0003() {
    with_mysql_database(|url| async move { upgrade::from_release_0003(&url, "mysql").await }).await;
}

#[tokio::test]
async fn mysql_refuses_unknown_recorded_versions() {
    with_mysql_database(|url| async move { upgrade::refuses_unknown_recorded_versions(&url, "mysql").await })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_concurrent_open() {
    with_mysql_database(|url| async move { open_concurrently(&url).await }).await;
}

/// Four stores open the same fresh database at once: all succeed, and every migration is
/// recorded as applied, with its file's checksum.
async fn open_concurrently(url: &str) {
    let (a, b, c, d) = tokio::join!(open(url), open(url), open(url), open(url));
    let mut dialects = Vec::new();
    for (i, store) in [a, b, c, d].into_iter().enumerate() {
        let store = store.unwrap_or_else(|e| panic!("open {i}: {e:?}"));
        store.ping().await.unwrap();
        dialects.push(store.dialect());
    }
    let dialect = dialects[0];
    let recorded = recorded_migrations(url).await;
    assert_eq!(recorded.iter().map(Recorded::identity).collect::<Vec<_>>(), migration_files(dialect).await);
    assert!(recorded.iter().all(|m| m.success && m.execution_time >= 0), "{recorded:?}");
}

/// A row of `_sqlx_migrations`, where sqlx's migrator records what it applied.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    version: i64,
    description: String,
    checksum: Vec<u8>,
    success: bool,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    installed_on: String,
    /// Nanoseconds; -1 when not measured.
    execution_time: i64,
}

impl Recorded {
    /// Version, description and checksum, as [`migration_files`] lists them.
    fn identity(&self) -> (i64, String, Vec<u8>) {
        (self.version, self.description.clone(), self.checksum.clone())
    }
}

/// The rows of `_sqlx_migrations`, read past the store, by version.
async fn recorded_migrations(url: &str) -> Vec<Recorded> {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.expect("connect");
    let rows = pool
        .fetch_all(
            "SELECT version, description, checksum, CASE WHEN success THEN 1 ELSE 0 END AS ok, \
             CAST(installed_on AS CHAR) AS installed_on, execution_time FROM _sqlx_migrations ORDER BY version",
        )
        .await
        .expect("_sqlx_migrations");
    rows.iter()
        .map(|r| Recorded {
            version: r.get("version"),
            description: text(r, "description"),
            checksum: r.get("checksum"),
            success: r.get::<i64, _>("ok") == 1,
            installed_on: text(r, "installed_on"),
            execution_time: r.get("execution_time"),
        })
        .collect()
}

/// A text column through the `Any` driver, which takes MySQL's `TEXT` for a blob.
fn text(row: &AnyRow, column: &str) -> String {
    let raw = row.try_get_raw(column).expect("the column");
    if raw.type_info().kind() == AnyTypeInfoKind::Blob {
        String::from_utf8(row.get(column)).expect("UTF-8")
    } else {
        row.get(column)
    }
}

/// Version, description and SHA-384 checksum of each file in `migrations/<dialect>`, as sqlx
/// reads the directory itself.
async fn migration_files(dialect: &str) -> Vec<(i64, String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
    let migrator = Migrator::new(dir).await.expect("the migrations directory");
    migrator.iter().map(|m| (m.version, m.description.to_string(), m.checksum.to_vec())).collect()
}

/// Runs `test` against a database of its own on the MariaDB server, dropped afterwards (even
/// when `test` panics). Fails, never skips, when the server cannot be reached.
async fn with_mysql_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("SANDBOX_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.into());
    let mut admin = AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach MariaDB at {admin_url}: {e}\n\
                 start it with `scripts/mariadb.sh` (as root), or point SANDBOX_TEST_MYSQL_URL at a server"
        )
    });
    let name = format!("sandbox_test_{:016x}", RandomState::new().hash_one(std::process::id()));
    admin
        .execute(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4").as_str())
        .await
        .expect("create database");
    let base =
        admin_url.split('?').next().and_then(|u| u.rsplit_once('/')).map_or(admin_url.as_str(), |(b, _)| b);
    let outcome = tokio::spawn(test(format!("{base}/{name}"))).await;
    admin.execute(format!("DROP DATABASE {name}").as_str()).await.expect("drop database");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
