//! The behaviour every `Store` must show, written once and run against each backend.

use chrono::{DateTime, Duration as Span, Utc};
use sandbox_core::display::{DisplayOutput, ExecError};
use sandbox_core::model::{
    ApiKey, Artifact, Context, DependencySpec, Execution, ExecutionMetrics, FileChangeKind,
    IdempotencyRecord, ImagePull, InstallStatus, InstalledDependency, NetworkAttempt, NetworkMode,
    PoolSandbox, PoolState, PullError, Session, SessionNetwork, SessionStatus, Template, TemplateStatus,
};
use sandbox_core::{ExecutionStatus, Language};
use sandbox_store::{Page, SessionFilter, Store, StoreError, open};
use serde_json::json;
use sqlx::AnyPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Runs every check against a fresh, empty database at `url`, then re-opens it.
pub async fn exercise(url: &str, dialect: &str) {
    let store = open(url).await.expect("open");
    assert_eq!(store.dialect(), dialect);
    store.ping().await.expect("ping");
    api_keys(&store).await;
    templates(&store).await;
    sessions(&store).await;
    dependency_installs(&store).await;
    executions(&store).await;
    network_attempts(&store).await;
    leases(&store).await;
    idempotency_keys(&store).await;
    pools(&store).await;
    drop(store);
    reopen(url, dialect).await;
}

/// A millisecond-precise instant `ms` after a fixed origin.
pub fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + ms).expect("valid time")
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

fn ids<'a>(items: impl IntoIterator<Item = &'a Session>) -> Vec<&'a str> {
    items.into_iter().map(|s| s.id.as_str()).collect()
}

fn exec_ids(items: &[Execution]) -> Vec<&str> {
    items.iter().map(|e| e.id.as_str()).collect()
}

fn key(id: &str, hash: &str, is_admin: bool, created: i64) -> ApiKey {
    ApiKey {
        id: id.into(),
        name: format!("{id} name"),
        prefix: format!("sk_{id}"),
        key_hash: hash.into(),
        is_admin,
        created_at: at(created),
        revoked_at: None,
    }
}

async fn api_keys(store: &Arc<dyn Store>) {
    let k1 = key("k1", "hash1", true, 1);
    let k2 = ApiKey { revoked_at: Some(at(3)), ..key("k2", "hash2", false, 2) };
    // Inserted newest first: the list must sort by creation, not insertion.
    store.insert_api_key(&k2).await.expect("insert k2");
    store.insert_api_key(&k1).await.expect("insert k1");
    assert!(is_conflict(store.insert_api_key(&key("k1", "other-hash", false, 4)).await), "duplicate id");
    assert!(is_conflict(store.insert_api_key(&key("k3", "hash1", false, 4)).await), "duplicate hash");

    assert_eq!(store.api_key_by_hash("hash1").await.unwrap(), Some(k1.clone()));
    assert_eq!(store.api_key_by_hash("hash2").await.unwrap(), Some(k2.clone()));
    assert_eq!(store.api_key_by_hash("HASH1").await.unwrap(), None, "hashes compare exactly");
    assert_eq!(store.api_key_by_hash("nope").await.unwrap(), None);
    assert_eq!(store.list_api_keys().await.unwrap(), vec![k1.clone(), k2.clone()]);

    assert!(store.revoke_api_key("k1", at(9)).await.unwrap());
    assert!(!store.revoke_api_key("nope", at(9)).await.unwrap());
    let revoked = store.api_key_by_hash("hash1").await.unwrap().expect("k1");
    assert_eq!(revoked, ApiKey { revoked_at: Some(at(9)), ..k1 });
}

fn template(id: &str, created: DateTime<Utc>) -> Template {
    Template {
        id: id.into(),
        name: format!("Template {id}"),
        image_url: format!("registry.local/{id}:1"),
        language_runtime: "python3.11".into(),
        default_cpu_cores: 0.5,
        default_memory_mb: 512,
        default_disk_mb: u32::MAX,
        default_timeout_sec: 300,
        default_env_vars: BTreeMap::from([("A".into(), "1".into()), ("ÜNI".into(), "çödé ✓".into())]),
        pre_installed_packages: vec!["requests==2.31.0".into(), "numpy==1.26.4".into()],
        is_active: true,
        status: TemplateStatus::Ready,
        image_pull: None,
        created_at: created,
        updated_at: created,
    }
}

async fn templates(store: &Arc<dyn Store>) {
    // Sub-millisecond parts are dropped: timestamps are kept in milliseconds.
    let precise = at(5) + Span::nanoseconds(456_789);
    let tb = template("t-b", precise);
    let ta = Template {
        pre_installed_packages: vec![],
        default_env_vars: BTreeMap::new(),
        ..template("t-a", at(1))
    };
    let tc = template("t-c", at(3));
    for t in [&tb, &ta, &tc] {
        store.insert_template(t).await.expect("insert template");
    }
    assert!(is_conflict(store.insert_template(&template("t-a", at(9))).await));

    assert_eq!(store.template("t-a").await.unwrap(), Some(ta.clone()));
    let tb_back = store.template("t-b").await.unwrap().expect("t-b");
    assert_eq!(tb_back, Template { created_at: at(5), updated_at: at(5), ..tb.clone() });
    assert_eq!(store.template("T-A").await.unwrap(), None, "ids compare exactly");
    assert_eq!(store.template("zzz").await.unwrap(), None);

    let page = store.list_templates(2, 0).await.unwrap();
    assert_eq!(
        (page.items.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), page.total),
        (vec!["t-a", "t-b"], 3)
    );
    assert_eq!(store.list_templates(2, 2).await.unwrap(), Page { items: vec![tc.clone()], total: 3 });
    assert_eq!(store.list_templates(5, 10).await.unwrap(), Page { items: vec![], total: 3 });

    let changed = Template {
        name: "Renamed".into(),
        image_url: "registry.local/t-a:2".into(),
        default_cpu_cores: 2.25,
        default_env_vars: BTreeMap::from([("B".into(), "2".into())]),
        is_active: false,
        updated_at: at(20),
        ..ta.clone()
    };
    assert!(store.update_template(&Template { created_at: at(999), ..changed.clone() }).await.unwrap());
    assert_eq!(store.template("t-a").await.unwrap(), Some(changed.clone()), "created_at is kept");
    // An update that changes nothing still finds its row (MySQL reports matched rows).
    assert!(store.update_template(&changed).await.unwrap());
    assert!(!store.update_template(&template("zzz", at(1))).await.unwrap());

    template_images(store, &changed).await;

    assert!(store.delete_template("t-c").await.unwrap());
    assert!(!store.delete_template("t-c").await.unwrap());
    assert_eq!(store.template("t-c").await.unwrap(), None);
    assert_eq!(store.list_templates(10, 0).await.unwrap().total, 2);
}

/// A template's image status and pull are written only for the image it names, kept through
/// updates of its other fields, and stored as given.
async fn template_images(store: &Arc<dyn Store>, t: &Template) {
    let pulling = ImagePull {
        bytes_done: 1 << 33,
        bytes_total: (1 << 34) + 7,
        layers_done: 2,
        layers_total: 9,
        started_at: Some(at(30)),
        finished_at: None,
        error: None,
    };
    let set = |status, pull: Option<ImagePull>| async move {
        store.set_template_image(&t.id, &t.image_url, status, pull.as_ref()).await.unwrap()
    };
    assert!(set(TemplateStatus::Pulling, Some(pulling.clone())).await);
    let back = store.template(&t.id).await.unwrap().expect("template");
    assert_eq!((back.status, back.image_pull.as_ref()), (TemplateStatus::Pulling, Some(&pulling)));

    // An update of the other fields leaves the image's status alone.
    let renamed =
        Template { name: "Renamed again".into(), status: TemplateStatus::Ready, image_pull: None, ..back };
    assert!(store.update_template(&renamed).await.unwrap());
    let back = store.template(&t.id).await.unwrap().expect("template");
    assert_eq!((back.name.as_str(), back.status), ("Renamed again", TemplateStatus::Pulling));

    // A pull of another image than the template's changes nothing.
    assert!(!store.set_template_image(&t.id, "other:1", TemplateStatus::Ready, None).await.unwrap());
    assert!(!store.set_template_image("zzz", &t.image_url, TemplateStatus::Ready, None).await.unwrap());
    assert_eq!(store.template(&t.id).await.unwrap().expect("template").status, TemplateStatus::Pulling);

    let failed = ImagePull {
        finished_at: Some(at(40)),
        error: Some(PullError { code: "image_not_found".into(), message: "manifest unknown ✗".into() }),
        ..pulling
    };
    assert!(set(TemplateStatus::Failed, Some(failed.clone())).await);
    let back = store.template(&t.id).await.unwrap().expect("template");
    assert_eq!((back.status, back.image_pull), (TemplateStatus::Failed, Some(failed)));

    // Put back as the rest of the checks expect it.
    assert!(set(TemplateStatus::Ready, None).await);
    assert_eq!(
        store.template(&t.id).await.unwrap().expect("template"),
        Template { name: "Renamed again".into(), ..t.clone() }
    );
    assert!(store.update_template(t).await.unwrap());
}

/// A session with every optional field set.
fn full_session(id: &str, owner: &str, template: &str, status: SessionStatus, created: i64) -> Session {
    Session {
        id: id.into(),
        client_id: Some(format!("my-{id}")),
        owner_key_id: owner.into(),
        template_id: template.into(),
        status,
        cpu: "0.5".parse().unwrap(),
        memory: "512Mi".parse().unwrap(),
        disk: "1Gi".parse().unwrap(),
        timeout_sec: 1800,
        env_vars: BTreeMap::from([("HOME".into(), "/workspace".into()), ("EMPTY".into(), String::new())]),
        metadata: BTreeMap::from([("owner".into(), "t1 ✓".into()), ("empty".into(), String::new())]),
        network: SessionNetwork { mode: NetworkMode::Allowlist, allow: vec!["pypi.org:443".into()] },
        runtime_backend: "docker".into(),
        sandbox_name: Some(format!("sbx-{id}")),
        container_id: Some("0123456789abcdef".into()),
        runtime_node: Some("node-1".into()),
        workspace_path: Some(format!("/var/lib/sandbox/{id}")),
        error_message: Some("it's \"quoted\"; DROP TABLE sessions; --".into()),
        python_package_index_url: "https://pypi.example/simple".into(),
        requested_dependencies: vec![
            DependencySpec { name: "requests".into(), version: Some("==2.31.0".into()) },
            DependencySpec { name: "rich".into(), version: None },
        ],
        installed_dependencies: vec![InstalledDependency {
            name: "requests".into(),
            version: "2.31.0".into(),
            install_location: "/workspace/.deps".into(),
            // Nested in JSON, this one keeps its nanoseconds.
            install_time: at(created + 1) + Span::nanoseconds(7),
            is_from_template: false,
        }],
        dependency_install_status: InstallStatus::Completed,
        dependency_install_error: Some("pip: warning".into()),
        dependency_install_started_at: Some(at(created + 1)),
        dependency_install_completed_at: Some(at(created + 2)),
        dependency_install_error_code: Some("package_not_found".into()),
        fail_on_dependency_error: true,
        created_at: at(created),
        updated_at: at(created + 3),
        completed_at: Some(at(created + 4)),
        last_activity_at: Some(at(created + 5)),
    }
}

/// A session with every optional field `None` (and empty collections).
fn bare_session(id: &str, owner: &str, template: &str, status: SessionStatus, created: i64) -> Session {
    Session {
        client_id: None,
        sandbox_name: None,
        container_id: None,
        runtime_node: None,
        workspace_path: None,
        error_message: None,
        env_vars: BTreeMap::new(),
        metadata: BTreeMap::new(),
        network: SessionNetwork::default(),
        requested_dependencies: vec![],
        installed_dependencies: vec![],
        dependency_install_status: InstallStatus::Pending,
        dependency_install_error: None,
        dependency_install_started_at: None,
        dependency_install_completed_at: None,
        dependency_install_error_code: None,
        fail_on_dependency_error: false,
        completed_at: None,
        last_activity_at: None,
        ..full_session(id, owner, template, status, created)
    }
}

fn filter(owner: Option<&str>, status: Option<SessionStatus>, template: Option<&str>) -> SessionFilter {
    SessionFilter {
        owner_key_id: owner.map(Into::into),
        status,
        template_id: template.map(Into::into),
        limit: 100,
        offset: 0,
    }
}

async fn list(store: &Arc<dyn Store>, f: SessionFilter) -> (Vec<String>, u64) {
    let page = store.list_sessions(&f).await.expect("list sessions");
    (ids(&page.items).into_iter().map(String::from).collect(), page.total)
}

async fn sessions(store: &Arc<dyn Store>) {
    use SessionStatus::*;
    let s1 = full_session("s1", "k1", "t-a", Running, 100);
    let s2 = bare_session("s2", "k1", "t-a", Creating, 200);
    let s3 = bare_session("s3", "k1", "t-b", Terminated, 300);
    let s4 = full_session("s4", "k2", "t-a", Failed, 400);
    // s5 and s6 were created in the same millisecond: the id breaks the tie.
    let s5 = bare_session("s5", "k2", "t-b", Running, 500);
    let s6 = bare_session("s6", "k1", "t-a", Running, 500);
    for s in [&s6, &s3, &s1, &s5, &s2, &s4] {
        store.insert_session(s).await.expect("insert session");
    }
    assert!(is_conflict(store.insert_session(&bare_session("s1", "k9", "t-b", Creating, 1)).await));

    assert_eq!(store.session("s1").await.unwrap(), Some(s1.clone()), "every optional field set");
    assert_eq!(store.session("s2").await.unwrap(), Some(s2.clone()), "every optional field None");
    assert_eq!(store.session("nope").await.unwrap(), None);
    let mut both = store.sessions_by_id(&["s2", "nope", "s1"]).await.unwrap();
    both.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(both, vec![s1.clone(), s2.clone()], "the ones that exist");
    assert_eq!(store.sessions_by_id(&[]).await.unwrap(), vec![]);

    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = filter(None, None, None);
    assert_eq!(list(store, all.clone()).await, (strings(&["s5", "s6", "s4", "s3", "s2", "s1"]), 6));
    assert_eq!(
        list(store, SessionFilter { limit: 2, offset: 1, ..all.clone() }).await,
        (strings(&["s6", "s4"]), 6)
    );
    assert_eq!(list(store, SessionFilter { limit: 0, ..all.clone() }).await, (vec![], 6));
    assert_eq!(list(store, SessionFilter { offset: 6, ..all.clone() }).await, (vec![], 6));
    let mine = filter(Some("k1"), None, None);
    assert_eq!(list(store, mine.clone()).await, (strings(&["s6", "s3", "s2", "s1"]), 4));
    assert_eq!(list(store, SessionFilter { limit: 1, offset: 2, ..mine }).await, (strings(&["s2"]), 4));
    assert_eq!(list(store, filter(None, Some(Running), None)).await, (strings(&["s5", "s6", "s1"]), 3));
    assert_eq!(list(store, filter(None, None, Some("t-b"))).await, (strings(&["s5", "s3"]), 2));
    assert_eq!(
        list(store, filter(Some("k1"), Some(Running), Some("t-a"))).await,
        (strings(&["s6", "s1"]), 2)
    );
    assert_eq!(list(store, filter(Some("k3"), None, None)).await, (vec![], 0));
    let page =
        store.list_sessions(&SessionFilter { limit: 1, ..filter(Some("k2"), Some(Failed), None) }).await;
    assert_eq!(page.unwrap(), Page { items: vec![s4.clone()], total: 1 });

    let live = store.sessions_in_status(&[Running, Creating]).await.unwrap();
    assert_eq!(ids(&live), ["s1", "s2", "s5", "s6"], "oldest first");
    assert_eq!(ids(&store.sessions_in_status(&[Failed]).await.unwrap()), ["s4"]);
    assert!(store.sessions_in_status(&[]).await.unwrap().is_empty());

    assert_eq!(store.count_live_sessions_of_template("t-a").await.unwrap(), 3);
    assert_eq!(store.count_live_sessions_of_template("t-b").await.unwrap(), 1);
    assert_eq!(store.count_live_sessions_of_template("zzz").await.unwrap(), 0);
    // Live: s1, s2, s6 of k1 and s5 of k2.
    assert_eq!(store.count_live_sessions(None).await.unwrap(), 4);
    assert_eq!(store.count_live_sessions(Some("k1")).await.unwrap(), 3);
    assert_eq!(store.count_live_sessions(Some("k3")).await.unwrap(), 0);

    // An update rewrites everything but the id, the owner and the creation time.
    let s2_running = Session {
        status: Running,
        container_id: Some("c2".into()),
        error_message: Some("none yet".into()),
        installed_dependencies: s1.installed_dependencies.clone(),
        dependency_install_completed_at: Some(at(250)),
        dependency_install_error_code: Some("dependency_install_timeout".into()),
        fail_on_dependency_error: true,
        updated_at: at(260),
        ..s2.clone()
    };
    let tampered = Session { owner_key_id: "k2".into(), created_at: at(1), ..s2_running.clone() };
    assert!(store.update_session(&tampered).await.unwrap());
    assert_eq!(store.session("s2").await.unwrap(), Some(s2_running.clone()));
    assert!(store.update_session(&s2_running).await.unwrap(), "an unchanged row still matches");
    // And back to None.
    assert!(store.update_session(&s2).await.unwrap());
    assert_eq!(store.session("s2").await.unwrap(), Some(s2.clone()));
    assert!(!store.update_session(&bare_session("nope", "k1", "t-a", Running, 1)).await.unwrap());

    store.touch_session("s3", at(900)).await.unwrap();
    let touched = Session { last_activity_at: Some(at(900)), updated_at: at(900), ..s3.clone() };
    assert_eq!(store.session("s3").await.unwrap(), Some(touched));
    store.touch_session("nope", at(900)).await.expect("touching a missing session is no error");

    // Tombstones.
    assert!(store.delete_session("s3", at(1000)).await.unwrap());
    assert!(!store.delete_session("s3", at(1001)).await.unwrap());
    assert!(!store.delete_session("nope", at(1001)).await.unwrap());
    assert_eq!(store.session("s3").await.unwrap(), None);
    assert_eq!(store.deleted_session_owner("s3").await.unwrap(), Some("k1".into()));
    assert_eq!(store.deleted_session_owner("s1").await.unwrap(), None, "s1 lives");
    assert_eq!(store.deleted_session_owner("nope").await.unwrap(), None);
    assert!(is_conflict(store.insert_session(&s3).await), "a deleted id stays taken");
    assert!(is_conflict(store.insert_session(&bare_session("s3", "k2", "t-a", Creating, 1)).await));
    assert_eq!(store.session("s3").await.unwrap(), None, "the refused insert left nothing");
    assert_eq!(list(store, filter(Some("k1"), None, None)).await, (strings(&["s6", "s2", "s1"]), 3));
}

/// An execution with every optional field set.
/// One install at a time per session, across replicas; its end writes only dependency fields,
/// and only if it is still the install in progress.
async fn dependency_installs(store: &Arc<dyn Store>) {
    let s = full_session("dep_1", "key_dep", "python-basic", SessionStatus::Running, 9_000);
    store.insert_session(&s).await.unwrap();
    assert!(store.sessions_installing_dependencies().await.unwrap().is_empty());
    let started = at(9_100);
    assert!(store.begin_dependency_install("dep_1", started).await.unwrap());
    assert!(!store.begin_dependency_install("dep_1", at(9_101)).await.unwrap(), "one at a time");
    assert!(!store.begin_dependency_install("missing", started).await.unwrap());
    let now = store.session("dep_1").await.unwrap().unwrap();
    assert_eq!(
        (
            now.dependency_install_status.as_str(),
            now.dependency_install_started_at,
            now.dependency_install_error.as_deref()
        ),
        ("installing", Some(started), None)
    );
    assert_eq!(ids(&store.sessions_installing_dependencies().await.unwrap()), ["dep_1"]);

    // Meanwhile the session is terminated; the install's end must not undo that.
    let mut terminated = now.clone();
    terminated.status = SessionStatus::Terminated;
    store.update_session(&terminated).await.unwrap();
    let mut done = now.clone();
    done.status = SessionStatus::Running;
    done.container_id = Some("stale".into());
    done.dependency_install_status = InstallStatus::Completed;
    done.requested_dependencies = vec![DependencySpec { name: "six".into(), version: None }];
    done.dependency_install_completed_at = Some(at(9_200));
    done.dependency_install_error_code = None;
    done.fail_on_dependency_error = false;
    assert!(!store.finish_dependency_install(&done, at(9_099)).await.unwrap(), "another install's end");
    assert!(store.finish_dependency_install(&done, started).await.unwrap());
    assert!(!store.finish_dependency_install(&done, started).await.unwrap(), "already finished");
    let after = store.session("dep_1").await.unwrap().unwrap();
    assert_eq!(
        (after.status, after.container_id.as_deref()),
        (SessionStatus::Terminated, Some("0123456789abcdef"))
    );
    assert_eq!(after.dependency_install_status, InstallStatus::Completed);
    assert_eq!(after.requested_dependencies, done.requested_dependencies);
    assert_eq!(after.dependency_install_completed_at, Some(at(9_200)));
    assert_eq!(after.dependency_install_error_code, None, "the install's end clears an earlier code");
    assert!(after.fail_on_dependency_error, "the creation's policy is not the install's to change");
    assert!(store.sessions_installing_dependencies().await.unwrap().is_empty());
    assert!(store.begin_dependency_install("dep_1", at(9_300)).await.unwrap(), "a new install may start");
    store.delete_session("dep_1", at(9_400)).await.unwrap();
}

fn full_execution(id: &str, session: &str, status: ExecutionStatus, created: i64) -> Execution {
    Execution {
        id: id.into(),
        session_id: session.into(),
        status,
        language: Language::Python,
        code: "def handler(event):\n    return {'ok': True}\n".into(),
        event: Some(json!({"name": "ünï", "n": [1, 2.5, null], "nested": {"deep": true}})),
        timeout_sec: 30,
        exit_code: Some(-9),
        error_message: Some("killed".into()),
        stdout: Some("out\n".into()),
        stderr: Some(String::new()),
        return_value: Some(json!(null)),
        artifacts: vec![Artifact {
            path: "out/result.csv".into(),
            size: 1 << 40,
            mime_type: "text/csv".into(),
            change: FileChangeKind::Created,
            created_at: at(created + 1),
        }],
        metrics: Some(ExecutionMetrics {
            duration_ms: 12.5,
            cpu_time_ms: Some(3.25),
            peak_memory_mb: Some(41.0),
        }),
        retry_count: 2,
        created_at: at(created),
        started_at: Some(at(created + 1)),
        completed_at: Some(at(created + 2)),
        execution_time: Some(0.0125),
        context_id: Some("ctx_1".into()),
        results: vec![DisplayOutput {
            data: [("text/plain".to_owned(), json!("2")), ("image/png".to_owned(), json!("iVBORw0KGgo="))]
                .into(),
            metadata: [("image/png".to_owned(), json!({"width": 1}))].into(),
            is_main_result: true,
        }],
        results_truncated: true,
        error: Some(ExecError {
            name: "ValueError".into(),
            value: "bad".into(),
            traceback: "Traceback...".into(),
        }),
    }
}

/// An execution with every optional field `None`.
fn bare_execution(id: &str, session: &str, status: ExecutionStatus, created: i64) -> Execution {
    Execution {
        language: Language::Shell,
        event: None,
        exit_code: None,
        error_message: None,
        stdout: None,
        stderr: None,
        return_value: None,
        artifacts: vec![],
        metrics: None,
        retry_count: 0,
        started_at: None,
        completed_at: None,
        execution_time: None,
        context_id: None,
        results: vec![],
        results_truncated: false,
        error: None,
        ..full_execution(id, session, status, created)
    }
}

async fn executions(store: &Arc<dyn Store>) {
    use ExecutionStatus::*;
    let e1 = full_execution("e1", "s1", Completed, 1000);
    let e2 = bare_execution("e2", "s1", Pending, 1100);
    let e3 = bare_execution("e3", "s1", Running, 1200);
    let e4 = bare_execution("e4", "s2", Pending, 900);
    let e5 = bare_execution("e5", "s4", Running, 1300);
    for e in [&e3, &e1, &e5, &e2, &e4] {
        store.insert_execution(e).await.expect("insert execution");
    }
    assert!(is_conflict(store.insert_execution(&bare_execution("e1", "s2", Pending, 1)).await));
    let orphan = store.insert_execution(&bare_execution("e9", "no-such-session", Pending, 1)).await;
    assert!(matches!(orphan, Err(StoreError::Database(_))), "foreign keys are enforced: {orphan:?}");

    assert_eq!(store.execution("e1").await.unwrap(), Some(e1.clone()), "every optional field set");
    assert_eq!(store.execution("e2").await.unwrap(), Some(e2.clone()), "every optional field None");
    assert_eq!(store.execution("nope").await.unwrap(), None);

    let page = store.list_executions("s1", 10, 0).await.unwrap();
    assert_eq!((exec_ids(&page.items), page.total), (vec!["e3", "e2", "e1"], 3), "newest first");
    let page = store.list_executions("s1", 1, 1).await.unwrap();
    assert_eq!(page, Page { items: vec![e2.clone()], total: 3 });
    assert_eq!(store.list_executions("nope", 10, 0).await.unwrap(), Page { items: vec![], total: 0 });

    assert!(store.session_has_unfinished_executions("s1").await.unwrap());
    assert!(store.session_has_unfinished_executions("s4").await.unwrap());
    assert!(!store.session_has_unfinished_executions("s3").await.unwrap());
    let unfinished = store.unfinished_executions().await.unwrap();
    assert_eq!(exec_ids(&unfinished), ["e4", "e2", "e3", "e5"], "oldest first");

    // 1 MiB outputs, not all ASCII.
    let mib = |s: &str| s.repeat((1 << 20) / s.len());
    let big = Execution {
        status: Completed,
        code: mib("print('héllo')\n"),
        stdout: Some(mib("line ✓ 0123456789\n")),
        stderr: Some(mib("warn ü\n")),
        return_value: Some(json!({"blob": mib("x")})),
        event: Some(json!({"blob": mib("y")})),
        completed_at: Some(at(1150)),
        ..e2.clone()
    };
    assert!(big.stdout.as_ref().is_some_and(|s| s.len() > 1_000_000));
    assert!(store.update_execution(&big).await.unwrap());
    assert_eq!(store.execution("e2").await.unwrap(), Some(big.clone()));
    assert!(!store.update_execution(&bare_execution("nope", "s1", Failed, 1)).await.unwrap());
    let tampered = Execution { session_id: "s2".into(), created_at: at(1), ..e1.clone() };
    assert!(store.update_execution(&tampered).await.unwrap());
    assert_eq!(store.execution("e1").await.unwrap(), Some(e1.clone()), "session and creation time are kept");
    assert_eq!(exec_ids(&store.unfinished_executions().await.unwrap()), ["e4", "e3", "e5"]);

    // Retention: the oldest finished executions go past a count or a size; unfinished ones stay.
    store
        .insert_session(&bare_session("s-retention", "k1", "t-a", SessionStatus::Running, 1400))
        .await
        .unwrap();
    for (i, n) in [(0, 10), (1, 10), (2, 1800), (3, 10), (4, 10)] {
        let e = Execution {
            stdout: Some("é".repeat(n / 2)),
            completed_at: Some(at(1500 + i)),
            ..bare_execution(&format!("p{i}"), "s-retention", Completed, 1500 + i)
        };
        store.insert_execution(&e).await.expect("insert execution");
    }
    store.insert_execution(&bare_execution("p9", "s-retention", Running, 1400)).await.unwrap();
    let p_ids = |page: Page<Execution>| page.items.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(store.prune_executions("s-retention", 10, 1 << 20).await.unwrap(), 0, "within both limits");
    assert_eq!(
        store.prune_executions("s-retention", 4, 1 << 20).await.unwrap(),
        1,
        "by count: the oldest goes"
    );
    assert_eq!(
        p_ids(store.list_executions("s-retention", 10, 0).await.unwrap()),
        ["p4", "p3", "p2", "p1", "p9"]
    );
    // Bytes (two per "é"), not characters: p2's 1800 bytes (900 characters) do not fit in 1000.
    let code = bare_execution("x", "s3", Completed, 0).code.len() as u64;
    assert_eq!(store.prune_executions("s-retention", 10, 1000 + 2 * code).await.unwrap(), 2);
    assert_eq!(
        p_ids(store.list_executions("s-retention", 10, 0).await.unwrap()),
        ["p4", "p3", "p9"],
        "never the running one"
    );
    assert_eq!(store.prune_executions("other", 0, 0).await.unwrap(), 0);

    // An execution that never started can be forgotten.
    store.insert_execution(&bare_execution("refused", "s1", Running, 1600)).await.unwrap();
    assert!(store.delete_execution("refused").await.unwrap());
    assert!(!store.delete_execution("refused").await.unwrap());
    assert_eq!(store.execution("refused").await.unwrap(), None);

    contexts(store).await;

    // Deleting a session takes its executions and contexts with it.
    assert!(store.delete_session("s4", at(2000)).await.unwrap());
    assert_eq!(store.list_contexts("s4").await.unwrap(), vec![]);
    assert_eq!(store.execution("e5").await.unwrap(), None);
    assert_eq!(store.list_executions("s4", 10, 0).await.unwrap().total, 0);
    assert_eq!(exec_ids(&store.unfinished_executions().await.unwrap()), ["e4", "e3", "p9"]);
    assert_eq!(store.deleted_session_owner("s4").await.unwrap(), Some("k2".into()));
}

/// A code context of `session`.
fn context(id: &str, session: &str, created: i64) -> Context {
    Context {
        id: id.into(),
        session_id: session.into(),
        language: Language::Python,
        cwd: Some("data/ü".into()),
        env_vars: [("A".to_owned(), "1".to_owned())].into(),
        created_at: at(created),
    }
}

fn attempt(session: &str, host: &str, ms: i64) -> NetworkAttempt {
    NetworkAttempt {
        session_id: session.into(),
        execution_id: (ms % 2 == 0).then(|| "exec_1".into()),
        kind: "connect".into(),
        host: host.into(),
        port: Some(443),
        address: Some("127.0.0.1".into()),
        decision: "allowed".into(),
        reason: "allowed".into(),
        bytes_up: 5_000_000_000,
        bytes_down: ms as u64,
        started_at: at(ms),
        duration_ms: 12,
    }
}

/// Attempts read back newest first, each session keeps its newest `keep`, and they go with
/// their session.
async fn network_attempts(store: &Arc<dyn Store>) {
    let first: Vec<NetworkAttempt> = (0..3).map(|i| attempt("na1", &format!("h{i}"), i)).collect();
    assert_eq!(store.insert_network_attempts(&first, 4).await.unwrap(), 0);
    let more = vec![attempt("na1", "h3", 3), attempt("na2", "other", 4), attempt("na1", "h4", 5)];
    assert_eq!(store.insert_network_attempts(&more, 4).await.unwrap(), 1, "h0 goes");
    let page = store.list_network_attempts("na1", 3, 0).await.unwrap();
    assert_eq!(page.total, 4);
    let hosts: Vec<&str> = page.items.iter().map(|a| a.host.as_str()).collect();
    assert_eq!(hosts, ["h4", "h3", "h2"], "newest first");
    assert_eq!(page.items[0], attempt("na1", "h4", 5));
    let rest = store.list_network_attempts("na1", 3, 3).await.unwrap();
    assert_eq!(rest.items, vec![attempt("na1", "h1", 1)]);
    assert_eq!(
        store.list_network_attempts("na2", 10, 0).await.unwrap().items,
        vec![attempt("na2", "other", 4)]
    );
    let denied = NetworkAttempt {
        execution_id: None,
        port: None,
        address: None,
        decision: "denied_policy".into(),
        reason: "not_in_allow_list".into(),
        bytes_up: 0,
        ..attempt("na3", "x", 9)
    };
    store.insert_network_attempts(std::slice::from_ref(&denied), 4).await.unwrap();
    assert_eq!(store.list_network_attempts("na3", 10, 0).await.unwrap().items, vec![denied]);
}

async fn contexts(store: &Arc<dyn Store>) {
    let (c1, c2) =
        (context("c1", "s4", 10), Context { cwd: None, env_vars: BTreeMap::new(), ..context("c2", "s4", 5) });
    assert!(store.insert_context(&c1, 2).await.unwrap());
    assert!(store.insert_context(&c2, 2).await.unwrap());
    assert!(!store.insert_context(&context("c3", "s4", 20), 2).await.unwrap(), "the session has its maximum");
    assert!(
        store.insert_context(&context("c3", "s1", 20), 2).await.unwrap(),
        "another session's count is its own"
    );
    assert!(is_conflict(store.insert_context(&context("c1", "s1", 30), 5).await));
    let orphan = store.insert_context(&context("c9", "no-such-session", 1), 5).await;
    assert!(matches!(orphan, Err(StoreError::Database(_))), "foreign keys are enforced: {orphan:?}");
    assert_eq!(store.context("c1").await.unwrap(), Some(c1.clone()));
    assert_eq!(store.context("nope").await.unwrap(), None);
    assert_eq!(store.list_contexts("s4").await.unwrap(), vec![c2.clone(), c1.clone()], "oldest first");
    assert!(store.delete_context("c3").await.unwrap());
    assert!(!store.delete_context("c3").await.unwrap());
    assert_eq!(store.list_contexts("s1").await.unwrap(), vec![]);
}

async fn idempotency_keys(store: &Arc<dyn Store>) {
    let rec = |owner: &str, key: &str, created: i64| IdempotencyRecord {
        owner_key_id: owner.into(),
        key: key.into(),
        operation: "execute:s1".into(),
        fingerprint: "f1".into(),
        resource_id: None,
        created_at: at(created),
    };
    assert_eq!(store.claim_idempotency_key(&rec("k1", "a", 100), at(0)).await.unwrap(), None, "claimed");
    let held = store.claim_idempotency_key(&rec("k1", "a", 101), at(0)).await.unwrap();
    assert_eq!(held, Some(rec("k1", "a", 100)), "held by the first claim, not yet done");
    assert_eq!(
        store.claim_idempotency_key(&rec("k2", "a", 101), at(0)).await.unwrap(),
        None,
        "keys are per API key"
    );
    store.complete_idempotency_key("k1", "a", "exec_1").await.unwrap();
    store.release_idempotency_key("k1", "a").await.unwrap();
    let done = store.claim_idempotency_key(&rec("k1", "a", 102), at(0)).await.unwrap().unwrap();
    assert_eq!(done.resource_id.as_deref(), Some("exec_1"), "a completed key is not released");
    store.release_idempotency_key("k2", "a").await.unwrap();
    assert_eq!(
        store.claim_idempotency_key(&rec("k2", "a", 103), at(0)).await.unwrap(),
        None,
        "released: free again"
    );
    assert_eq!(
        store.claim_idempotency_key(&rec("k1", "a", 200), at(150)).await.unwrap(),
        None,
        "expired: replaced"
    );
    assert_eq!(store.purge_idempotency_keys(at(150)).await.unwrap(), 1, "k2's, from 103");
    assert!(store.claim_idempotency_key(&rec("k1", "a", 201), at(150)).await.unwrap().is_some());
}

async fn leases(store: &Arc<dyn Store>) {
    let minute = Duration::from_secs(60);
    assert!(store.acquire_lease("cleaner", "a", minute).await.unwrap(), "a creates the lease");
    assert!(!store.acquire_lease("cleaner", "b", minute).await.unwrap(), "b must wait for expiry");
    // Renewals, many within the same millisecond (so writing an unchanged expiry).
    for _ in 0..200 {
        assert!(store.acquire_lease("cleaner", "a", minute).await.unwrap(), "a renews");
    }
    assert!(store.acquire_lease("reaper", "b", minute).await.unwrap(), "leases are independent");
    store.release_lease("cleaner", "b").await.unwrap();
    assert!(!store.acquire_lease("cleaner", "b", minute).await.unwrap(), "b cannot release a's lease");
    store.release_lease("cleaner", "a").await.unwrap();
    assert!(store.acquire_lease("cleaner", "b", minute).await.unwrap(), "released, b takes it");
    assert!(!store.acquire_lease("cleaner", "a", minute).await.unwrap());
    store.release_lease("nothing", "a").await.expect("releasing a missing lease is no error");

    assert!(store.acquire_lease("short", "a", Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.acquire_lease("short", "b", minute).await.unwrap(), "b takes over the expired lease");
    assert!(!store.acquire_lease("short", "a", minute).await.unwrap(), "a lost it");
}

async fn reopen(url: &str, dialect: &str) {
    let before = crate::recorded_migrations(url).await;
    assert_eq!(
        before.iter().map(crate::Recorded::identity).collect::<Vec<_>>(),
        crate::migration_files(dialect).await,
        "every migration recorded with its file's checksum"
    );
    let store = open(url).await.expect("re-open");
    assert_eq!(crate::recorded_migrations(url).await, before, "nothing applied twice");
    assert_eq!(store.session("s1").await.unwrap().map(|s| s.owner_key_id), Some("k1".into()));
    assert_eq!(
        store.list_sessions(&filter(None, None, None)).await.unwrap().total,
        5,
        "with the retention test's session"
    );
    assert_eq!(store.deleted_session_owner("s3").await.unwrap(), Some("k1".into()));
    assert!(!store.acquire_lease("cleaner", "a", Duration::from_secs(60)).await.unwrap(), "leases persist");

    // A row the store cannot read is reported, not panicked on.
    let pool = AnyPool::connect(url).await.expect("connect");
    sqlx::query("UPDATE sessions SET status = 'bogus' WHERE id = 's1'")
        .execute(&pool)
        .await
        .expect("corrupt");
    let err = store.session("s1").await;
    assert!(matches!(err, Err(StoreError::Corrupt { table: "sessions", .. })), "{err:?}");
    assert!(store.list_sessions(&filter(None, None, None)).await.is_err());
}

/// A pool sandbox of `template`, ready since `ready` when that is given.
fn sandbox(id: &str, template: &str, state: PoolState, ready: Option<i64>) -> PoolSandbox {
    PoolSandbox {
        id: id.into(),
        template_id: template.into(),
        state,
        container_id: ready.map(|_| format!("c-{id}")),
        sandbox_name: Some(format!("sandbox-{id}")),
        created_at: at(0),
        ready_at: ready.map(at),
        claimed_at: None,
    }
}

async fn pools(store: &Arc<dyn Store>) {
    assert!(store.insert_pool_sandbox(&sandbox("p1", "py", PoolState::Ready, Some(20)), 8).await.unwrap());
    assert!(store.insert_pool_sandbox(&sandbox("p2", "py", PoolState::Ready, Some(10)), 8).await.unwrap());
    assert!(store.insert_pool_sandbox(&sandbox("p3", "py", PoolState::Starting, None), 8).await.unwrap());
    assert!(store.insert_pool_sandbox(&sandbox("p4", "js", PoolState::Ready, Some(5)), 8).await.unwrap());
    assert!(is_conflict(store.insert_pool_sandbox(&sandbox("p1", "py", PoolState::Ready, None), 8).await));
    assert_eq!(store.list_pool_sandboxes().await.unwrap().len(), 4);

    // Claims take the longest-ready sandbox of the template, never one still starting.
    let first = store.claim_pool_sandbox("py", at(100)).await.unwrap().expect("a ready sandbox");
    assert_eq!((first.id.as_str(), first.state, first.claimed_at), ("p2", PoolState::Claimed, Some(at(100))));
    assert_eq!(store.claim_pool_sandbox("py", at(101)).await.unwrap().map(|p| p.id), Some("p1".into()));
    assert_eq!(store.claim_pool_sandbox("py", at(102)).await.unwrap(), None, "p3 is not ready");
    assert_eq!(store.claim_pool_sandbox("none", at(102)).await.unwrap(), None);

    // Concurrent claims never share a sandbox.
    for i in 0..6 {
        let ready = sandbox(&format!("r{i}"), "race", PoolState::Ready, Some(i));
        assert!(store.insert_pool_sandbox(&ready, 6).await.unwrap());
    }
    let claims = (0..10).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_pool_sandbox("race", at(200 + i)).await.unwrap() })
    });
    let mut won: Vec<String> = Vec::new();
    for c in claims {
        if let Some(p) = c.await.unwrap() {
            won.push(p.id);
        }
    }
    won.sort();
    assert_eq!(won, ["r0", "r1", "r2", "r3", "r4", "r5"], "each sandbox claimed exactly once");

    let mut p3 = sandbox("p3", "py", PoolState::Ready, Some(300));
    assert!(store.update_pool_sandbox(&p3).await.unwrap());
    p3.id = "missing".into();
    assert!(!store.update_pool_sandbox(&p3).await.unwrap());
    assert_eq!(
        store.claim_pool_sandbox("py", at(301)).await.unwrap().map(|p| p.container_id),
        Some(Some("c-p3".into()))
    );
    assert!(store.delete_pool_sandbox("p4").await.unwrap());
    assert!(!store.delete_pool_sandbox("p4").await.unwrap());
    let left: Vec<_> = store.list_pool_sandboxes().await.unwrap().into_iter().map(|p| p.id).collect();
    assert!(!left.contains(&"p4".to_string()) && left.len() == 9, "{left:?}");
    pool_places(store).await;
}

/// A pool holds at most its size in sandboxes not claimed yet, however many refill it at once.
async fn pool_places(store: &Arc<dyn Store>) {
    let starting = |id: &str| sandbox(id, "cap", PoolState::Starting, None);
    assert!(store.insert_pool_sandbox(&starting("c1"), 2).await.unwrap());
    assert!(store.insert_pool_sandbox(&starting("c2"), 2).await.unwrap());
    assert!(!store.insert_pool_sandbox(&starting("c3"), 2).await.unwrap(), "the pool is full");
    assert!(store.insert_pool_sandbox(&starting("c3"), 3).await.unwrap(), "a larger pool has room");
    assert!(!store.insert_pool_sandbox(&starting("c4"), 3).await.unwrap());
    assert_eq!(store.list_pool_sandboxes().await.unwrap().iter().filter(|p| p.id == "c4").count(), 0);
    // Becoming ready keeps the place; a claim frees it, and so does removing the sandbox.
    assert!(store.update_pool_sandbox(&sandbox("c1", "cap", PoolState::Ready, Some(400))).await.unwrap());
    assert!(!store.insert_pool_sandbox(&starting("c4"), 3).await.unwrap());
    assert_eq!(store.claim_pool_sandbox("cap", at(401)).await.unwrap().map(|p| p.id), Some("c1".into()));
    assert!(store.insert_pool_sandbox(&starting("c4"), 3).await.unwrap(), "the claim freed a place");
    assert!(store.delete_pool_sandbox("c2").await.unwrap());
    assert!(is_conflict(store.insert_pool_sandbox(&starting("c3"), 3).await), "ids stay unique");
    assert!(store.insert_pool_sandbox(&starting("c5"), 3).await.unwrap(), "the removal freed a place");
    assert!(!store.insert_pool_sandbox(&starting("c6"), 3).await.unwrap());

    // Concurrent refills (replicas, or the leader and a claim) never over-fill a pool.
    let inserts = (0..10).map(|i| {
        let (store, p) = (store.clone(), sandbox(&format!("f{i}"), "fill", PoolState::Starting, None));
        tokio::spawn(async move { store.insert_pool_sandbox(&p, 3).await.unwrap() })
    });
    let mut placed = 0;
    for i in inserts {
        placed += usize::from(i.await.unwrap());
    }
    let filled = store.list_pool_sandboxes().await.unwrap().into_iter().filter(|p| p.template_id == "fill");
    assert_eq!((placed, filled.count()), (3, 3), "exactly the pool's size was recorded");
}

/// A database whose pools were filled before pools had places: once migrated, each sandbox not
/// claimed holds a place, so the pool is exactly as full as before.
pub async fn places_of_earlier_pool_sandboxes(url: &str, dialect: &str) {
    sqlx::any::install_default_drivers();
    let create = if dialect == "sqlite" { format!("{url}?mode=rwc") } else { url.to_owned() };
    let pool = AnyPool::connect(&create).await.expect("connect");
    let earlier = match dialect {
        "sqlite" => [
            include_str!("../../migrations/sqlite/0001_initial.sql"),
            include_str!("../../migrations/sqlite/0002_pools.sql"),
        ],
        _ => [
            include_str!("../../migrations/mysql/0001_initial.sql"),
            include_str!("../../migrations/mysql/0002_pools.sql"),
        ],
    };
    for sql in earlier {
        sqlx::raw_sql(sql).execute(&pool).await.expect("an earlier migration");
    }
    for sql in [
        "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
        "INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0), (2, 0)",
        "INSERT INTO pool_sandboxes (id, template_id, state, created_at) VALUES \
         ('e1', 'py', 'ready', 0), ('e2', 'py', 'starting', 0), ('e3', 'py', 'claimed', 0), \
         ('e4', 'js', 'ready', 0)",
    ] {
        sqlx::query(sql).execute(&pool).await.expect("the earlier state");
    }
    let store = open(url).await.expect("open migrates");
    let new = |id: &str, template: &str| sandbox(id, template, PoolState::Starting, None);
    assert!(!store.insert_pool_sandbox(&new("n1", "py"), 2).await.unwrap(), "e1 and e2 fill the pool");
    assert!(store.insert_pool_sandbox(&new("n1", "py"), 3).await.unwrap());
    assert!(!store.insert_pool_sandbox(&new("n2", "js"), 1).await.unwrap(), "e4 fills its pool");
    assert_eq!(store.claim_pool_sandbox("py", at(1)).await.unwrap().map(|p| p.id), Some("e1".into()));
    assert!(store.insert_pool_sandbox(&new("n2", "py"), 3).await.unwrap(), "e1's place is free");
}
