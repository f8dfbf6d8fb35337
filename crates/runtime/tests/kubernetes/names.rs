//! Object names derived from client-chosen session ids: two sessions never share an object, and
//! a create that fails removes only what it made itself.

use crate::support::{
    ApiServer, FakeExecutor, NS, config, mock_runtime, path, pending, ready, serve_read_then_delete,
    session_spec, stored, uid_of, with_status,
};
use sandbox_runtime::kubernetes::KubernetesConfig;
use sandbox_runtime::kubernetes::config::WorkspaceVolume;
use sandbox_runtime::kubernetes::objects::{self, SandboxObjects};
use sandbox_runtime::{Runtime, RuntimeError, Sandbox, labels};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A session id a client may choose: the pod name the first naming scheme gave the sandbox of
/// session `sess_x` (`sandbox-sess_x` became `sandbox-sess-x-998f3f2a`), which that scheme used
/// unchanged as the name of this session's pod because it is a DNS label already.
const FORGED: &str = "sess-x-998f3f2a";

fn pvc_config() -> KubernetesConfig {
    KubernetesConfig { workspace_volume: WorkspaceVolume::Pvc, ..config(8080) }
}

/// `(resource, name)` of each object.
fn object_names(o: &SandboxObjects) -> Vec<(&'static str, String)> {
    let mut names = vec![
        ("pods", o.pod.metadata.name.clone().unwrap()),
        ("secrets", o.secret.metadata.name.clone().unwrap()),
    ];
    names.extend(o.pvc.iter().map(|p| ("persistentvolumeclaims", p.metadata.name.clone().unwrap())));
    names
}

/// One request as the mock API server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    resource: String,
    name: String,
    /// The `uid` precondition of a DELETE.
    uid: Option<String>,
}

/// Serves `task` like an API server that holds `existing` objects, until the task ends:
/// creating a name that exists answers 409, creating a pod answers 403 (a quota refuses it), and
/// creating anything else succeeds with the uid [`uid_of`] gives it.
async fn serve_failing_create(
    api: &mut ApiServer,
    mut task: JoinHandle<Result<Sandbox, RuntimeError>>,
    existing: &[(&str, String)],
) -> (RuntimeError, Vec<Seen>) {
    let prefix = format!("/api/v1/namespaces/{NS}/");
    let mut seen = Vec::new();
    let result = loop {
        let call = tokio::select! {
            result = &mut task => break result.unwrap(),
            call = api.next() => call,
        };
        let path = call.parts.uri.path().strip_prefix(&prefix).expect("a namespaced path").to_owned();
        let method = call.parts.method.as_str().to_owned();
        let (resource, name) = match path.split_once('/') {
            Some((r, n)) => (r.to_owned(), n.to_owned()),
            None => (path.clone(), call.json::<Value>()["metadata"]["name"].as_str().unwrap().to_owned()),
        };
        let body: Value = if call.body.is_empty() { Value::Null } else { call.json() };
        let uid = body["preconditions"]["uid"].as_str().map(str::to_owned);
        seen.push(Seen { method: method.clone(), resource: resource.clone(), name: name.clone(), uid });
        let exists = existing.iter().any(|(r, n)| *r == resource && *n == name);
        match method.as_str() {
            "POST" if exists => call.fail(409, "AlreadyExists"),
            "POST" if resource == "pods" => call.fail(403, "Forbidden"),
            "POST" => {
                let mut created = body;
                created["metadata"]["uid"] = json!(uid_of(&name));
                created["metadata"]["resourceVersion"] = json!("1");
                call.respond(201, created);
            }
            "DELETE" => call.respond(200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
            _ => call.fail(404, "NotFound"),
        }
    };
    match result {
        Ok(sb) => panic!("sandbox {} was created", sb.id),
        Err(e) => (e, seen),
    }
}

#[tokio::test]
async fn a_forged_session_id_gets_its_own_objects_and_its_failed_create_leaves_the_victims_alone() {
    let cfg = pvc_config();
    let victim = objects::build(&session_spec("sess_x"), &cfg, "victim", None).unwrap();
    let victims = object_names(&victim);
    let (rt, mut api) = mock_runtime(cfg.clone());
    let task = tokio::spawn({
        let rt = rt.clone();
        async move { rt.create(&session_spec(FORGED)).await }
    });
    let (err, seen) = serve_failing_create(&mut api, task, &victims).await;
    api.expect_silence().await;

    let touched: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.method != "POST" && victims.iter().any(|(r, n)| *r == s.resource && *n == s.name))
        .collect();
    assert!(
        touched.is_empty(),
        "the forged session's failed create touched the victim's objects: {touched:#?}"
    );

    // Its objects are its own: no name in common with the victim's.
    let attacker = objects::build(&session_spec(FORGED), &cfg, "attacker", None).unwrap();
    let mine = object_names(&attacker);
    for (_, name) in &mine {
        assert!(victims.iter().all(|(_, v)| v != name), "{name} is also the victim's");
    }
    // Exactly: the Secret and claim were made, the pod was refused, and only what was made is
    // deleted again, each only if it is still the object this create made.
    let [(_, pod), (_, secret), (_, pvc)] = &mine[..] else { panic!("{mine:?}") };
    let req = |method: &str, resource: &str, name: &str, uid: Option<&str>| Seen {
        method: method.into(),
        resource: resource.into(),
        name: name.into(),
        uid: uid.map(str::to_owned),
    };
    assert_eq!(
        seen,
        [
            req("POST", "secrets", secret, None),
            req("POST", "persistentvolumeclaims", pvc, None),
            req("POST", "pods", pod, None),
            req("DELETE", "secrets", secret, Some(&uid_of(secret))),
            req("DELETE", "persistentvolumeclaims", pvc, Some(&uid_of(pvc))),
        ]
    );
    assert!(err.to_string().contains("create pod") && err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn a_create_that_finds_its_names_taken_deletes_nothing() {
    // The same session's sandbox made elsewhere meanwhile (another replica, a retry).
    let cfg = pvc_config();
    let theirs = object_names(&objects::build(&session_spec("sess_x"), &cfg, "other", None).unwrap());
    let (rt, mut api) = mock_runtime(cfg);
    let task = tokio::spawn({
        let rt = rt.clone();
        async move { rt.create(&session_spec("sess_x")).await }
    });
    let (err, seen) = serve_failing_create(&mut api, task, &theirs).await;
    api.expect_silence().await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!((seen[0].method.as_str(), seen[0].resource.as_str()), ("POST", "secrets"));
    assert!(err.to_string().contains("409"), "{err}");
}

/// `o`'s pod (ready at 127.0.0.1), Secret and claim as stored, named as the first scheme named
/// them: `pod`, `<pod>-token`, `<pod>-workspace`.
fn named_by_first_scheme(o: &SandboxObjects, pod: &str) -> [Value; 3] {
    let rename = |mut v: Value, name: String| {
        v["metadata"]["name"] = json!(name);
        v["metadata"]["uid"] = json!(uid_of(&name));
        v["metadata"]["labels"][labels::SANDBOX] = json!(pod);
        v
    };
    [
        rename(with_status(&o.pod, "5", ready("127.0.0.1")), pod.to_owned()),
        rename(stored(&o.secret, "5"), format!("{pod}-token")),
        rename(stored(o.pvc.as_ref().unwrap(), "5"), format!("{pod}-workspace")),
    ]
}

/// The pod name the first scheme gave the sandbox of `sess_x` (and of [`FORGED`]).
const OLD_POD: &str = "sandbox-sess-x-998f3f2a";

#[tokio::test]
async fn pods_from_before_the_change_are_found_for_their_own_sandbox_only() {
    let fake = FakeExecutor::start().await;
    let token = "e".repeat(64);
    fake.accept_token(&token);
    let cfg = KubernetesConfig { workspace_volume: WorkspaceVolume::Pvc, ..config(fake.addr.port()) };
    let victim = session_spec("sess_x");
    let [pod, secret, pvc] =
        named_by_first_scheme(&objects::build(&victim, &cfg, &token, None).unwrap(), OLD_POD);
    let (rt, mut api) = mock_runtime(cfg.clone());

    // A restarted replica learns the old pod's executor, under its sandbox's name only.
    let refresh = tokio::spawn({
        let rt = rt.clone();
        async move { rt.refresh_executors().await }
    });
    for (resource, item) in [("pods", &pod), ("secrets", &secret)] {
        api.expect("GET", &path(resource))
            .await
            .respond(200, json!({"metadata": {"resourceVersion": "6"}, "items": [item]}));
    }
    assert_eq!(refresh.await.unwrap().unwrap(), 1);
    rt.executor(&victim).health().await.unwrap();

    // The forged session's sandbox had the old pod's name under the first scheme: it is not
    // given the victim's executor, from memory or from the API server.
    let forged = session_spec(FORGED);
    let resolving = tokio::spawn({
        let (rt, forged) = (rt.clone(), forged.clone());
        async move { rt.resolve_executor(&forged).await }
    });
    let new_name = objects::pod_name(&forged.name);
    api.expect("GET", &format!("{}/{new_name}", path("pods"))).await.fail(404, "NotFound");
    api.expect("GET", &format!("{}/{OLD_POD}", path("pods"))).await.respond(200, pod.clone());
    let err = resolving.await.unwrap().err().expect("not the forged session's pod");
    assert!(err.to_string().contains("does not exist"), "{err}");
    api.expect_silence().await;

    // Another replica finds the old pod for its own sandbox, after trying the current name.
    let (rt, mut api) = mock_runtime(cfg);
    let resolving = tokio::spawn({
        let (rt, victim) = (rt.clone(), victim.clone());
        async move { rt.resolve_executor(&victim).await }
    });
    let new_name = objects::pod_name(&victim.name);
    api.expect("GET", &format!("{}/{new_name}", path("pods"))).await.fail(404, "NotFound");
    api.expect("GET", &format!("{}/{OLD_POD}", path("pods"))).await.respond(200, pod.clone());
    api.expect("GET", &format!("{}/{OLD_POD}-token", path("secrets"))).await.respond(200, secret.clone());
    resolving.await.unwrap().unwrap().health().await.unwrap();

    // Its status, the list, and removal by its id.
    let checks = tokio::spawn({
        let rt = rt.clone();
        async move {
            (
                rt.status(OLD_POD).await,
                rt.list(&[(labels::SESSION, "sess_x")]).await,
                rt.remove(OLD_POD).await,
            )
        }
    });
    api.expect("GET", &format!("{}/{OLD_POD}", path("pods"))).await.respond(200, pod.clone());
    api.expect("GET", &path("pods")).await.respond(200, json!({"metadata": {}, "items": [pod.clone()]}));
    serve_read_then_delete(&mut api, "pods", OLD_POD, Some(&pod), true).await;
    serve_read_then_delete(&mut api, "secrets", &format!("{OLD_POD}-token"), Some(&secret), true).await;
    let old_claim = format!("{OLD_POD}-workspace");
    serve_read_then_delete(&mut api, "persistentvolumeclaims", &old_claim, Some(&pvc), true).await;
    let (status, list, removed) = checks.await.unwrap();
    let status = status.unwrap().expect("the old pod");
    assert_eq!((status.id.as_str(), status.name.as_str()), (OLD_POD, "sandbox-sess_x"));
    assert_eq!(list.unwrap().iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [OLD_POD]);
    removed.unwrap();
    api.expect_silence().await;
}

#[tokio::test]
async fn objects_of_another_sandbox_or_of_none_are_neither_reported_nor_deleted() {
    let cfg = pvc_config();
    let mine = objects::build(&session_spec("sess_x"), &cfg, "t", None).unwrap();
    let id = mine.names.pod.clone();
    // At my names: a pod that is not managed, a Secret annotated as another sandbox's; my claim.
    let mut pod = with_status(&mine.pod, "5", ready("10.0.0.1"));
    pod["metadata"]["labels"].as_object_mut().unwrap().remove(labels::MANAGED);
    let mut secret = stored(&mine.secret, "5");
    secret["metadata"]["annotations"][labels::SANDBOX] = json!("sandbox-sess_y");
    let pvc = stored(mine.pvc.as_ref().unwrap(), "5");
    let (rt, mut api) = mock_runtime(cfg);

    let checks = tokio::spawn({
        let (rt, id) = (rt.clone(), id.clone());
        async move { (rt.status(&id).await, rt.list(&[]).await, rt.stop(&id).await, rt.remove(&id).await) }
    });
    api.expect("GET", &format!("{}/{id}", path("pods"))).await.respond(200, pod.clone());
    api.expect("GET", &path("pods")).await.respond(200, json!({"metadata": {}, "items": [pod.clone()]}));
    serve_read_then_delete(&mut api, "pods", &id, Some(&pod), false).await;
    serve_read_then_delete(&mut api, "pods", &id, Some(&pod), false).await;
    serve_read_then_delete(&mut api, "secrets", &mine.names.secret, Some(&secret), false).await;
    serve_read_then_delete(&mut api, "persistentvolumeclaims", &mine.names.pvc, Some(&pvc), true).await;
    let (status, list, stopped, removed) = checks.await.unwrap();
    assert!(status.unwrap().is_none());
    assert!(list.unwrap().is_empty());
    stopped.unwrap();
    removed.unwrap();
    api.expect_silence().await;
}

#[tokio::test]
async fn session_ids_no_label_can_hold_are_hashed_in_labels_and_compared_in_full() {
    // A valid session id (64 characters, `_` first) that is no valid label value.
    let long = format!("_{}", "a".repeat(63));
    let cfg = config(8080);
    let o = objects::build(&session_spec(&long), &cfg, "t", None).unwrap();
    let label = o.pod.metadata.labels.as_ref().unwrap()[labels::SESSION].clone();
    assert_eq!(label, objects::label_value(&long));
    // A pod whose label has the same value but whose annotation names another session.
    let other = objects::build(&session_spec("sess_y"), &cfg, "t", None).unwrap();
    let mut other = with_status(&other.pod, "5", pending());
    other["metadata"]["labels"][labels::SESSION] = json!(label);
    other["metadata"]["annotations"][labels::SESSION] = json!(format!("{long}b"));
    let (rt, mut api) = mock_runtime(cfg);
    let listing = tokio::spawn({
        let (rt, long) = (rt.clone(), long.clone());
        async move { rt.list(&[(labels::SESSION, &long)]).await }
    });
    let call = api.expect("GET", &path("pods")).await;
    assert!(call.query().contains(&format!("io.sandbox.session%3D{label}")), "{}", call.query());
    call.respond(200, json!({"metadata": {}, "items": [with_status(&o.pod, "5", pending()), other]}));
    let found = listing.await.unwrap().unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (found[0].id.as_str(), found[0].labels[labels::SESSION].as_str()),
        (o.names.pod.as_str(), long.as_str())
    );
}
