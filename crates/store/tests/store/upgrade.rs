//! Upgrading a database made by the release before the store used sqlx's migrator: migrations
//! 1-3 applied by the store's own runner and listed in `schema_migrations`, a few rows in every
//! table. `tests/fixtures/0003-<dialect>.sql` are dumps of such databases (how they were made is
//! in `tests/fixtures/README.md`).

use crate::conformance::at;
use crate::{Recorded, migration_files, recorded_migrations};
use sandbox_core::model::{
    ApiKey, Artifact, DependencySpec, Execution, ExecutionMetrics, FileChangeKind, InstallStatus,
    InstalledDependency, PoolSandbox, PoolState, Session, SessionStatus, Template, TemplateStatus,
};
use sandbox_core::{ExecutionStatus, Language};
use sandbox_store::{Page, SessionFilter, Store, StoreError, open};
use serde_json::json;
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The versions the fixtures' `schema_migrations` lists.
const FIXTURE_VERSIONS: [i64; 3] = [1, 2, 3];

/// Fills the empty database at `url` from the dialect's fixture.
async fn load_fixture(url: &str, dialect: &str) {
    sqlx::any::install_default_drivers();
    let (connect, dump) = match dialect {
        "sqlite" => (format!("{url}?mode=rwc"), include_str!("../fixtures/0003-sqlite.sql")),
        _ => (url.to_owned(), include_str!("../fixtures/0003-mysql.sql")),
    };
    let mut conn = AnyConnection::connect(&connect).await.expect("connect");
    conn.execute(sqlx::raw_sql(dump)).await.expect("load the fixture");
    conn.close().await.expect("close");
}

/// `schema_migrations` as the earlier runner left it: version and epoch milliseconds.
async fn legacy_migrations(url: &str) -> Vec<(i64, i64)> {
    let pool = AnyPool::connect(url).await.expect("connect");
    let rows = pool
        .fetch_all("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .await
        .expect("schema_migrations");
    rows.iter().map(|r| (r.get("version"), r.get("applied_at"))).collect()
}

/// The fixture's database opens: the versions its runner applied are adopted with their files'
/// checksums, the missing migration is applied (and listed where the earlier runner looks),
/// every row of every table reads back through the store unchanged, and a second start changes
/// nothing. Then the migrator's own checks hold: a changed file, or a migration left unfinished
/// (as a MySQL migration failing halfway leaves it), stops the store opening.
pub async fn from_release_0003(url: &str, dialect: &str) {
    load_fixture(url, dialect).await;
    let legacy = legacy_migrations(url).await;
    assert_eq!(legacy.iter().map(|m| m.0).collect::<Vec<_>>(), FIXTURE_VERSIONS);

    let store = open(url).await.expect("open adopts and migrates");
    let recorded = recorded_migrations(url).await;
    let files = migration_files(dialect).await;
    assert!(files.len() > FIXTURE_VERSIONS.len(), "the fixture predates a migration");
    assert_eq!(recorded.iter().map(Recorded::identity).collect::<Vec<_>>(), files);
    assert!(recorded.iter().all(|m| m.success), "{recorded:?}");
    let (adopted, run) = recorded.split_at(legacy.len());
    assert!(adopted.iter().all(|m| m.execution_time == -1), "adopted, not run: {adopted:?}");
    assert!(run.iter().all(|m| m.execution_time >= 0), "run: {run:?}");
    // For a replica of an earlier release, which reads only schema_migrations, every migration
    // is applied too: its rows are kept and the one the migrator ran is added.
    let listed = legacy_migrations(url).await;
    assert_eq!(listed[..legacy.len()], legacy, "the earlier rows are kept");
    assert_eq!(
        listed.iter().map(|m| m.0).collect::<Vec<_>>(),
        recorded.iter().map(|m| m.version).collect::<Vec<_>>(),
        "every applied version listed"
    );
    every_row_reads_back(&store).await;
    drop(store);

    let store = open(url).await.expect("a second open");
    assert_eq!(recorded_migrations(url).await, recorded, "the second start changed no migration");
    assert_eq!(legacy_migrations(url).await, listed);
    every_row_reads_back(&store).await;
    rows_behave_as_before(&store).await;
    drop(store);

    // The migrator's own checks: a recorded checksum that is not the file's (the file changed
    // after it was applied) and a migration marked unfinished (a MySQL migration that failed
    // halfway) both stop the store from opening.
    let pool = AnyPool::connect(url).await.expect("connect");
    pool.execute("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 2").await.expect("tamper");
    let err = open(url).await.err().map(|e| e.to_string());
    assert!(
        err.as_ref().is_some_and(|e| e.contains("migration 2 was previously applied but has been modified")),
        "{err:?}"
    );
    let restore = sqlx::query("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 2")
        .bind(recorded[1].checksum.clone());
    restore.execute(&pool).await.expect("restore");
    pool.execute("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 4").await.expect("unfinish");
    let err = open(url).await.err().map(|e| e.to_string());
    assert!(err.as_ref().is_some_and(|e| e.contains("migration 4 is partially applied")), "{err:?}");
}

/// A database whose `schema_migrations` lists a version this release has no file for (one a
/// later release made) does not open, and opening it changes nothing.
pub async fn refuses_unknown_recorded_versions(url: &str, dialect: &str) {
    load_fixture(url, dialect).await;
    let pool = AnyPool::connect(url).await.expect("connect");
    pool.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)").await.expect("insert");
    let err = open(url).await.err().map(|e| e.to_string());
    assert!(err.as_ref().is_some_and(|e| e.contains("schema_migrations lists migration 99")), "{err:?}");
    let recorded = pool.fetch_all("SELECT version FROM _sqlx_migrations").await;
    match dialect {
        // Everything was one transaction, the migrator's table included.
        "sqlite" => assert!(recorded.is_err(), "rolled back"),
        _ => assert!(recorded.expect("the migrator's table").is_empty(), "nothing adopted"),
    }
    let migrated = pool.fetch_all("SELECT client_id FROM sessions").await;
    assert!(migrated.is_err(), "no migration applied");

    pool.execute("DELETE FROM schema_migrations WHERE version = 99").await.expect("delete");
    let store = open(url).await.expect("opens once the version is gone");
    every_row_reads_back(&store).await;
}

/// Every row the fixture holds, read through the store: each record whole, with every column.
async fn every_row_reads_back(store: &Arc<dyn Store>) {
    assert_eq!(store.list_api_keys().await.unwrap(), api_keys());
    let templates = templates();
    assert_eq!(store.list_templates(10, 0).await.unwrap(), Page { items: templates.clone(), total: 2 });
    for t in &templates {
        assert_eq!(store.template(&t.id).await.unwrap().as_ref(), Some(t));
    }
    let sessions = sessions();
    for s in &sessions {
        assert_eq!(store.session(&s.id).await.unwrap().as_ref(), Some(s));
    }
    let all = SessionFilter { limit: 10, ..Default::default() };
    let listed = store.list_sessions(&all).await.unwrap();
    assert_eq!(listed, Page { items: vec![sessions[1].clone(), sessions[0].clone()], total: 2 });
    assert_eq!(store.deleted_session_owner("sess_gone").await.unwrap(), Some("key_dev".into()));
    let executions = executions();
    for e in &executions {
        assert_eq!(store.execution(&e.id).await.unwrap().as_ref(), Some(e));
    }
    let unfinished = store.unfinished_executions().await.unwrap();
    assert_eq!(unfinished, [executions[2].clone()]);
    assert_eq!(store.list_pool_sandboxes().await.unwrap(), pool_sandboxes());
}

/// What the rows mean still holds: a lease keeps its holder, pool sandboxes keep their places,
/// tombstones keep ids taken; and the upgraded schema takes what the new release writes.
async fn rows_behave_as_before(store: &Arc<dyn Store>) {
    let minute = Duration::from_secs(60);
    assert!(!store.acquire_lease("reconcile", "replica-b", minute).await.unwrap(), "replica-a holds it");
    assert!(store.acquire_lease("reconcile", "replica-a", minute).await.unwrap(), "and renews it");

    let starting = |id: &str, template: &str| PoolSandbox {
        state: PoolState::Starting,
        container_id: None,
        ready_at: None,
        ..pool_sandbox(id, template, None)
    };
    // python-basic: sess_pool_b and sess_pool_c hold places 1 and 2; place 0 was freed by the
    // claim of sess_pool_a. legacy-node: sess_pool_d holds place 0.
    assert!(store.insert_pool_sandbox(&starting("sess_new_1", "python-basic"), 2).await.unwrap(), "place 0");
    assert!(
        !store.insert_pool_sandbox(&starting("sess_new_2", "python-basic"), 3).await.unwrap(),
        "all held"
    );
    assert!(!store.insert_pool_sandbox(&starting("sess_new_2", "legacy-node"), 1).await.unwrap(), "held");
    let claimed = store.claim_pool_sandbox("python-basic", at(500)).await.unwrap();
    assert_eq!(claimed.map(|p| p.id), Some("sess_pool_b".into()));

    let gone = Session { id: "sess_gone".into(), ..sessions()[1].clone() };
    assert!(
        matches!(store.insert_session(&gone).await, Err(StoreError::Conflict(_))),
        "a deleted id stays taken"
    );
    let named =
        Session { id: "sess_named".into(), client_id: Some("my-session".into()), ..sessions()[0].clone() };
    store.insert_session(&named).await.expect("a session with a client id");
    assert_eq!(store.session("sess_named").await.unwrap(), Some(named));
}

fn api_keys() -> Vec<ApiKey> {
    vec![
        ApiKey {
            id: "key_admin".into(),
            name: "operator".into(),
            prefix: "sk_adm".into(),
            key_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            is_admin: true,
            created_at: at(0),
            revoked_at: None,
        },
        ApiKey {
            id: "key_dev".into(),
            name: "laptop — ü".into(),
            prefix: "sk_dev".into(),
            key_hash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752".into(),
            is_admin: false,
            created_at: at(1),
            revoked_at: Some(at(2)),
        },
    ]
}

/// By id, as the store lists them.
fn templates() -> Vec<Template> {
    vec![
        Template {
            id: "legacy-node".into(),
            name: "Node (retired)".into(),
            image_url: "registry.example/sandbox/node:18".into(),
            language_runtime: "nodejs".into(),
            default_cpu_cores: 0.25,
            default_memory_mb: 256,
            default_disk_mb: 512,
            default_timeout_sec: 60,
            default_env_vars: BTreeMap::new(),
            pre_installed_packages: vec![],
            is_active: false,
            // Templates stored before images were pulled named images the runtime had.
            status: TemplateStatus::Ready,
            image_pull: None,
            created_at: at(12),
            updated_at: at(13),
        },
        Template {
            id: "python-basic".into(),
            name: "Python".into(),
            image_url: "sandbox/python-basic:latest".into(),
            language_runtime: "python".into(),
            default_cpu_cores: 1.5,
            default_memory_mb: 512,
            default_disk_mb: 1024,
            default_timeout_sec: 300,
            default_env_vars: BTreeMap::from([("PYTHONUNBUFFERED".into(), "1".into())]),
            pre_installed_packages: vec!["pip".into(), "numpy==1.24.2".into()],
            is_active: true,
            status: TemplateStatus::Ready,
            image_pull: None,
            created_at: at(10),
            updated_at: at(11),
        },
    ]
}

/// The live sessions: one with every optional field set but the error, one with none but the
/// error. (A third, `sess_gone`, was deleted and left its tombstone.)
fn sessions() -> Vec<Session> {
    vec![
        Session {
            id: "sess_running".into(),
            client_id: None,
            owner_key_id: "key_admin".into(),
            template_id: "python-basic".into(),
            status: SessionStatus::Running,
            cpu: "1.5".parse().unwrap(),
            memory: "512Mi".parse().unwrap(),
            disk: "1Gi".parse().unwrap(),
            timeout_sec: 600,
            env_vars: BTreeMap::from([("GREETING".into(), "héllo".into()), ("EMPTY".into(), String::new())]),
            metadata: BTreeMap::new(),
            network: Default::default(),
            runtime_backend: "docker".into(),
            sandbox_name: Some("sandbox-sess_running".into()),
            container_id: Some("4f1c2d3e5a6b".into()),
            runtime_node: Some("node-1".into()),
            workspace_path: Some("/var/lib/sandbox/sessions/sess_running/workspace".into()),
            error_message: None,
            python_package_index_url: "https://pypi.org/simple/".into(),
            requested_dependencies: vec![DependencySpec {
                name: "requests".into(),
                version: Some("==2.31.0".into()),
            }],
            installed_dependencies: vec![InstalledDependency {
                name: "requests".into(),
                version: "2.31.0".into(),
                install_location: "/deps/current".into(),
                install_time: at(105),
                is_from_template: false,
            }],
            dependency_install_status: InstallStatus::Completed,
            dependency_install_error: None,
            dependency_install_started_at: Some(at(101)),
            dependency_install_completed_at: Some(at(106)),
            dependency_install_error_code: None,
            fail_on_dependency_error: false,
            created_at: at(100),
            updated_at: at(107),
            completed_at: None,
            last_activity_at: Some(at(300)),
        },
        Session {
            id: "sess_ended".into(),
            client_id: None,
            owner_key_id: "key_dev".into(),
            template_id: "legacy-node".into(),
            status: SessionStatus::Failed,
            cpu: "0.25".parse().unwrap(),
            memory: "256Mi".parse().unwrap(),
            disk: "512Mi".parse().unwrap(),
            timeout_sec: 60,
            env_vars: BTreeMap::new(),
            metadata: BTreeMap::new(),
            network: Default::default(),
            runtime_backend: "docker".into(),
            sandbox_name: None,
            container_id: None,
            runtime_node: None,
            workspace_path: None,
            error_message: Some("sandbox did not start: image not found".into()),
            python_package_index_url: "https://pypi.org/simple/".into(),
            requested_dependencies: vec![],
            installed_dependencies: vec![],
            dependency_install_status: InstallStatus::Pending,
            dependency_install_error: None,
            dependency_install_started_at: None,
            dependency_install_completed_at: None,
            dependency_install_error_code: None,
            fail_on_dependency_error: false,
            created_at: at(200),
            updated_at: at(201),
            completed_at: Some(at(201)),
            last_activity_at: None,
        },
    ]
}

/// A finished execution with every field set, a failed one, and one still pending.
fn executions() -> Vec<Execution> {
    vec![
        Execution {
            id: "exec_done".into(),
            session_id: "sess_running".into(),
            status: ExecutionStatus::Completed,
            language: Language::Python,
            code: "import json\nprint(json.dumps({'n': 42}))\n".into(),
            event: Some(json!({"name": "world"})),
            timeout_sec: 30,
            exit_code: Some(0),
            error_message: None,
            stdout: Some("{\"n\": 42}\n".into()),
            stderr: Some(String::new()),
            return_value: Some(json!({"n": 42})),
            artifacts: vec![Artifact {
                path: "output/result.csv".into(),
                size: 12,
                mime_type: "text/csv".into(),
                change: FileChangeKind::Created,
                created_at: at(302),
            }],
            metrics: Some(ExecutionMetrics {
                duration_ms: 27.5,
                cpu_time_ms: Some(12.25),
                peak_memory_mb: Some(9.5),
            }),
            retry_count: 0,
            created_at: at(300),
            started_at: Some(at(301)),
            completed_at: Some(at(303)),
            execution_time: Some(0.0275),
            context_id: None,
            results: vec![],
            results_truncated: false,
            error: None,
        },
        Execution {
            id: "exec_failed".into(),
            session_id: "sess_ended".into(),
            status: ExecutionStatus::Failed,
            language: Language::Shell,
            code: "exit 3".into(),
            event: None,
            timeout_sec: 10,
            exit_code: Some(3),
            error_message: Some("exited with status 3".into()),
            stdout: None,
            stderr: Some("boom\n".into()),
            return_value: None,
            artifacts: vec![],
            metrics: None,
            retry_count: 1,
            created_at: at(210),
            started_at: Some(at(211)),
            completed_at: Some(at(212)),
            execution_time: Some(0.001),
            context_id: None,
            results: vec![],
            results_truncated: false,
            error: None,
        },
        Execution {
            id: "exec_pending".into(),
            session_id: "sess_running".into(),
            status: ExecutionStatus::Pending,
            language: Language::Javascript,
            code: "console.log(1)".into(),
            event: None,
            timeout_sec: 30,
            exit_code: None,
            error_message: None,
            stdout: None,
            stderr: None,
            return_value: None,
            artifacts: vec![],
            metrics: None,
            retry_count: 0,
            created_at: at(310),
            started_at: None,
            completed_at: None,
            execution_time: None,
            context_id: None,
            results: vec![],
            results_truncated: false,
            error: None,
        },
    ]
}

/// A ready pool sandbox of `template`, claimed at `claimed` when that is given.
fn pool_sandbox(id: &str, template: &str, claimed: Option<i64>) -> PoolSandbox {
    PoolSandbox {
        id: id.into(),
        template_id: template.into(),
        state: if claimed.is_some() { PoolState::Claimed } else { PoolState::Ready },
        container_id: Some(format!("c-{id}")),
        sandbox_name: Some(format!("sandbox-{id}")),
        created_at: at(400),
        ready_at: Some(at(401)),
        claimed_at: claimed.map(at),
    }
}

/// A claimed, two ready and a starting pool sandbox, as the store lists them.
fn pool_sandboxes() -> Vec<PoolSandbox> {
    vec![
        pool_sandbox("sess_pool_a", "python-basic", Some(450)),
        PoolSandbox { ready_at: Some(at(402)), ..pool_sandbox("sess_pool_b", "python-basic", None) },
        PoolSandbox {
            state: PoolState::Starting,
            container_id: None,
            ready_at: None,
            ..pool_sandbox("sess_pool_c", "python-basic", None)
        },
        PoolSandbox { ready_at: Some(at(403)), ..pool_sandbox("sess_pool_d", "legacy-node", None) },
    ]
}
