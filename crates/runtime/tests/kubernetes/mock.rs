//! Behaviour against a mock API server (tower-test), in the style of kube-rs's own tests: each
//! request the backend makes is asserted (method, path, query, body) and answered by the test.

use crate::support::{
    ApiServer, Created, FakeExecutor, config, mock_runtime, path, pending, ready, serve_creation, serve_list,
    serve_read_then_delete, serve_undo, serve_watch, spec, stored, waiting, with_status,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use sandbox_executor_client::ClientError;
use sandbox_runtime::kubernetes::objects::{Names, pod_name};
use sandbox_runtime::kubernetes::{KubernetesConfig, KubernetesRuntime};
use sandbox_runtime::{Runtime, RuntimeError, Sandbox, SandboxState, labels};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::task::JoinHandle;

fn start_create(rt: &Arc<KubernetesRuntime>) -> JoinHandle<Result<Sandbox, RuntimeError>> {
    let rt = rt.clone();
    tokio::spawn(async move { rt.create(&spec()).await })
}

async fn failed(task: JoinHandle<Result<Sandbox, RuntimeError>>) -> RuntimeError {
    match task.await.unwrap() {
        Ok(sb) => panic!("sandbox {} was created", sb.id),
        Err(e) => e,
    }
}

/// Creation up to the watcher's first list, which shows the pod in `status`.
async fn created_and_listed(api: &mut ApiServer, status: Value) -> (Created, String) {
    let created = serve_creation(api, false).await;
    let name = created.pod.metadata.name.clone().unwrap();
    serve_list(api, &name, "10", vec![with_status(&created.pod, "10", status)]).await;
    (created, name)
}

#[tokio::test]
async fn create_watches_until_ready_and_points_the_client_at_the_pod() {
    let fake = FakeExecutor::start().await;
    let (rt, mut api) = mock_runtime(config(fake.addr.port()));
    let task = start_create(&rt);
    let (created, name) = created_and_listed(&mut api, pending()).await;
    assert_eq!(name, pod_name(&spec().name));
    assert_eq!(created.token.len(), 64, "a 32-byte random token");
    let env = serde_json::to_value(&created.pod.spec.as_ref().unwrap().containers[0].env).unwrap();
    assert!(!env.to_string().contains(&created.token), "the token travels in the Secret only");
    fake.accept_token(&created.token);

    let watch = serve_watch(&mut api, &name, "10").await.watch();
    watch.event("MODIFIED", with_status(&created.pod, "11", pending()));
    watch.event("MODIFIED", with_status(&created.pod, "12", ready("127.0.0.1")));
    let sandbox = match task.await.unwrap() {
        Ok(sb) => sb,
        Err(e) => panic!("{e}"),
    };
    assert_eq!((sandbox.id.as_str(), sandbox.name.as_str()), (name.as_str(), "sandbox-sess_Abc123"));
    assert_eq!(fake.authorized(), 1, "create checked the executor's health with the token");

    // The client targets the pod's IP and the executor port, with the Secret's token.
    sandbox.executor.health().await.unwrap();
    assert_eq!(fake.authorized(), 2);
    // And this replica answers `executor` from memory, without asking the API server.
    rt.executor(&spec()).health().await.unwrap();
    rt.resolve_executor(&spec()).await.unwrap().health().await.unwrap();
    assert_eq!(fake.authorized(), 4);
    api.expect_silence().await;
}

#[tokio::test]
async fn creates_the_workspace_claim_in_pvc_mode() {
    let fake = FakeExecutor::start().await;
    let cfg = KubernetesConfig {
        workspace_volume: sandbox_runtime::kubernetes::config::WorkspaceVolume::Pvc,
        storage_class_name: Some("juicefs-sc".into()),
        ..config(fake.addr.port())
    };
    let (rt, mut api) = mock_runtime(cfg);
    let task = start_create(&rt);
    let created = serve_creation(&mut api, true).await;
    let name = created.pod.metadata.name.clone().unwrap();
    fake.accept_token(&created.token);
    serve_list(&mut api, &name, "10", vec![with_status(&created.pod, "10", ready("127.0.0.1"))]).await;
    let sandbox = task.await.unwrap().map_err(|e| e.to_string()).unwrap();
    assert_eq!(sandbox.id, name);
}

#[tokio::test]
async fn image_pull_failure_is_reported_and_cleaned_up() {
    let (rt, mut api) = mock_runtime(config(8080));
    let task = start_create(&rt);
    let (created, name) = created_and_listed(&mut api, pending()).await;
    let watch = serve_watch(&mut api, &name, "10").await.watch();
    let message = "failed to pull image \"registry.example/sandbox/python-basic:1.0\": manifest unknown";
    watch.event("MODIFIED", with_status(&created.pod, "11", waiting("ErrImagePull", message)));
    serve_undo(&mut api, &created, &[]).await;
    let err = failed(task).await;
    let RuntimeError::PodFailed { pod, reason, message: m } = &err else { panic!("{err}") };
    assert_eq!((pod.as_str(), reason.as_str(), m.as_str()), (name.as_str(), "ErrImagePull", message));
    assert!(
        err.to_string().contains("ErrImagePull") && err.to_string().contains("manifest unknown"),
        "{err}"
    );
    api.expect_silence().await;
}

#[tokio::test]
async fn unschedulable_is_reported_and_cleaned_up() {
    let (rt, mut api) = mock_runtime(config(8080));
    let task = start_create(&rt);
    let status = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    let (created, _) = created_and_listed(&mut api, status).await;
    serve_undo(&mut api, &created, &[]).await;
    let err = failed(task).await;
    assert!(
        matches!(&err, RuntimeError::PodFailed { reason, message, .. }
            if reason == "Unschedulable" && message.contains("Insufficient memory")),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_pod_reports_the_executors_last_words() {
    let (rt, mut api) = mock_runtime(config(8080));
    let task = start_create(&rt);
    let (created, name) = created_and_listed(&mut api, pending()).await;
    let watch = serve_watch(&mut api, &name, "10").await.watch();
    let status = json!({"phase": "Failed", "containerStatuses": [{"name": "executor", "image": "i", "imageID": "",
        "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
    watch.event("MODIFIED", with_status(&created.pod, "11", status));
    let logs = api.expect("GET", &format!("{}/{name}/log", path("pods"))).await;
    assert!(
        logs.query().contains("container=executor") && logs.query().contains("tailLines=20"),
        "{}",
        logs.query()
    );
    logs.respond_bytes(200, b"sandbox-executor: the sandbox does not work here: Can't mount proc\n".to_vec());
    serve_undo(&mut api, &created, &[]).await;
    let err = failed(task).await;
    let text = err.to_string();
    assert!(text.contains("exited with code 1") && text.contains("Can't mount proc"), "{text}");
}

#[tokio::test]
async fn the_watch_reconnects_after_it_ends_or_fails() {
    let fake = FakeExecutor::start().await;
    let (rt, mut api) = mock_runtime(config(fake.addr.port()));
    let task = start_create(&rt);
    let (created, name) = created_and_listed(&mut api, pending()).await;
    fake.accept_token(&created.token);
    // The first watch delivers one event and ends (the API server's timeout).
    let watch = serve_watch(&mut api, &name, "10").await.watch();
    watch.event("MODIFIED", with_status(&created.pod, "11", pending()));
    drop(watch);
    // It resumes from the last version seen; the API server fails that attempt.
    serve_watch(&mut api, &name, "11").await.fail(500, "InternalError");
    // The next attempt is told the version is too old, so the backend lists again.
    let watch = serve_watch(&mut api, &name, "11").await.watch();
    watch.event(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
               "message": "too old resource version", "code": 410}),
    );
    serve_list(&mut api, &name, "20", vec![with_status(&created.pod, "20", ready("127.0.0.1"))]).await;
    let sandbox = task.await.unwrap().map_err(|e| e.to_string()).unwrap();
    assert_eq!(sandbox.id, name);
    assert_eq!(fake.authorized(), 1);
}

#[tokio::test]
async fn a_pod_deleted_while_starting_fails_the_create() {
    let (rt, mut api) = mock_runtime(config(8080));
    let task = start_create(&rt);
    let (created, name) = created_and_listed(&mut api, pending()).await;
    let watch = serve_watch(&mut api, &name, "10").await.watch();
    watch.event("DELETED", with_status(&created.pod, "11", pending()));
    serve_undo(&mut api, &created, &["pods"]).await;
    let err = failed(task).await;
    assert!(matches!(&err, RuntimeError::StartFailed(m) if m.contains("deleted while starting")), "{err}");
}

#[tokio::test]
async fn a_slow_pod_times_out_with_what_was_seen() {
    let cfg = KubernetesConfig { ready_timeout_secs: 1, ..config(8080) };
    let (rt, mut api) = mock_runtime(cfg);
    let task = start_create(&rt);
    let (created, name) = created_and_listed(&mut api, pending()).await;
    let watch = serve_watch(&mut api, &name, "10").await.watch();
    watch.event("MODIFIED", with_status(&created.pod, "11", pending()));
    serve_undo(&mut api, &created, &[]).await;
    let err = failed(task).await;
    assert!(
        matches!(&err, RuntimeError::NotReady { seconds: 1, reason } if reason.contains("ContainerCreating")),
        "{err}"
    );
    drop(watch);
}

#[tokio::test]
async fn an_executor_refusing_the_token_fails_the_create() {
    let fake = FakeExecutor::start().await;
    fake.accept_token("a-token-nobody-sent");
    let (rt, mut api) = mock_runtime(config(fake.addr.port()));
    let task = start_create(&rt);
    let (created, _) = created_and_listed(&mut api, ready("127.0.0.1")).await;
    serve_undo(&mut api, &created, &[]).await;
    let err = failed(task).await;
    assert!(matches!(&err, RuntimeError::StartFailed(m) if m.contains("refused")), "{err}");
}

#[tokio::test]
async fn a_create_its_caller_gave_up_on_is_cleaned_up() {
    let (rt, mut api) = mock_runtime(config(8080));
    let task = start_create(&rt);
    let (created, name) = created_and_listed(&mut api, pending()).await;
    let watch = serve_watch(&mut api, &name, "10").await.watch();
    // The server's own start timeout drops the future mid-wait.
    task.abort();
    assert!(task.await.err().is_some_and(|e| e.is_cancelled()));
    serve_undo(&mut api, &created, &[]).await;
    drop(watch);
}

#[tokio::test]
async fn invalid_label_keys_are_refused_before_any_request() {
    let (rt, mut api) = mock_runtime(config(8080));
    let mut s = spec();
    s.labels.insert("not a label key".into(), "x".into());
    let err = match rt.create(&s).await {
        Ok(_) => panic!("created"),
        Err(e) => e,
    };
    assert!(matches!(err, RuntimeError::Invalid(_)), "{err}");
    api.expect_silence().await;
}

#[tokio::test]
async fn remove_and_stop_delete_the_sandboxes_objects_and_are_idempotent() {
    let cfg = KubernetesConfig {
        workspace_volume: sandbox_runtime::kubernetes::config::WorkspaceVolume::Pvc,
        ..config(8080)
    };
    let o = sandbox_runtime::kubernetes::objects::build(&spec(), &cfg, "t", None).unwrap();
    let (pod, secret, pvc) =
        (stored(&o.pod, "5"), stored(&o.secret, "5"), stored(o.pvc.as_ref().unwrap(), "5"));
    let (rt, mut api) = mock_runtime(cfg);
    let id = o.names.pod.clone();
    let removing = tokio::spawn({
        let (rt, id) = (rt.clone(), id.clone());
        async move { (rt.remove(&id).await, rt.remove(&id).await) }
    });
    // Each object is read, found to be the sandbox's, and deleted by uid; then all are gone.
    serve_read_then_delete(&mut api, "pods", &o.names.pod, Some(&pod), true).await;
    serve_read_then_delete(&mut api, "secrets", &o.names.secret, Some(&secret), true).await;
    serve_read_then_delete(&mut api, "persistentvolumeclaims", &o.names.pvc, Some(&pvc), true).await;
    for (resource, name) in
        [("pods", &o.names.pod), ("secrets", &o.names.secret), ("persistentvolumeclaims", &o.names.pvc)]
    {
        serve_read_then_delete(&mut api, resource, name, None, false).await;
    }
    let (first, second) = removing.await.unwrap();
    first.unwrap();
    second.unwrap();

    let stopping = tokio::spawn({
        let (rt, id) = (rt.clone(), id.clone());
        async move { (rt.stop(&id).await, rt.stop(&id).await) }
    });
    api.expect("GET", &format!("{}/{id}", path("pods"))).await.respond(200, pod);
    let call = api.expect_delete("pods", &id).await;
    let body: Value = call.json();
    assert_eq!(body["gracePeriodSeconds"], 5, "the executor gets time to end executions");
    call.fail(404, "NotFound");
    serve_read_then_delete(&mut api, "pods", &id, None, false).await;
    let (first, second) = stopping.await.unwrap();
    first.unwrap();
    second.unwrap();
    api.expect_silence().await;
}

#[tokio::test]
async fn status_list_and_logs_read_the_pods() {
    let (rt, mut api) = mock_runtime(config(8080));
    let pod: Pod =
        sandbox_runtime::kubernetes::objects::build(&spec(), &config(8080), "t", None).unwrap().pod;
    let id = pod.metadata.name.clone().unwrap();

    let status = tokio::spawn({
        let (rt, id) = (rt.clone(), id.clone());
        async move { rt.status(&id).await }
    });
    api.expect("GET", &format!("{}/{id}", path("pods")))
        .await
        .respond(200, with_status(&pod, "5", ready("10.0.0.7")));
    let info = status.await.unwrap().unwrap().unwrap();
    assert_eq!((info.id.as_str(), info.name.as_str()), (id.as_str(), "sandbox-sess_Abc123"));
    assert_eq!((info.state, info.health.as_str()), (SandboxState::Running, "healthy"));
    assert_eq!(info.image, "registry.example/sandbox/python-basic:1.0");
    assert_eq!(info.labels[labels::SESSION], "sess_Abc123");
    assert!(info.created_at.is_some());

    let list = tokio::spawn({
        let rt = rt.clone();
        async move { rt.list(&[(labels::DEPLOYMENT, "0123456789ab")]).await }
    });
    let call = api.expect("GET", &path("pods")).await;
    assert!(
        call.query()
            .contains("labelSelector=io.sandbox.managed%3Dtrue%2Cio.sandbox.deployment%3D0123456789ab"),
        "{}",
        call.query()
    );
    call.respond(
        200,
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "6"},
                             "items": [with_status(&pod, "5", pending())]}),
    );
    let all = list.await.unwrap().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].state, all[0].health.as_str()), (SandboxState::Created, "starting"));

    let logs = tokio::spawn({
        let (rt, id) = (rt.clone(), id.clone());
        async move { (rt.logs(&id, 5).await, rt.logs(&id, 5).await) }
    });
    api.expect("GET", &format!("{}/{id}/log", path("pods")))
        .await
        .respond_bytes(200, b"line 1\nline 2\n".to_vec());
    api.expect("GET", &format!("{}/{id}/log", path("pods"))).await.fail(400, "BadRequest");
    let (first, waiting) = logs.await.unwrap();
    assert_eq!(first.unwrap(), "line 1\nline 2\n");
    assert_eq!(waiting.unwrap(), "", "a container that never started has no logs");
}

#[tokio::test]
async fn a_pod_deleted_underneath_disappears_from_status_and_list() {
    let (rt, mut api) = mock_runtime(config(8080));
    let id = pod_name(&spec().name);
    let checks = tokio::spawn({
        let (rt, id) = (rt.clone(), id.clone());
        async move { (rt.status(&id).await, rt.is_running(&id).await, rt.list(&[]).await) }
    });
    api.expect("GET", &format!("{}/{id}", path("pods"))).await.fail(404, "NotFound");
    api.expect("GET", &format!("{}/{id}", path("pods"))).await.fail(404, "NotFound");
    api.expect("GET", &path("pods")).await.respond(
        200,
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": []}),
    );
    let (status, running, list) = checks.await.unwrap();
    assert!(status.unwrap().is_none());
    assert!(!running);
    assert!(list.unwrap().is_empty());
}

fn running_pod_and_secret(token: &str) -> (Value, Value) {
    let objects = sandbox_runtime::kubernetes::objects::build(&spec(), &config(8080), token, None).unwrap();
    let pod = with_status(&objects.pod, "30", ready("127.0.0.1"));
    let mut secret = serde_json::to_value::<&Secret>(&objects.secret).unwrap();
    secret["metadata"]["resourceVersion"] = json!("31");
    (pod, secret)
}

#[tokio::test]
async fn a_restarted_control_plane_finds_running_executors() {
    let fake = FakeExecutor::start().await;
    let token = "f".repeat(64);
    fake.accept_token(&token);
    let (pod, secret) = running_pod_and_secret(&token);
    let names = Names::for_sandbox(&spec().name);

    // At start-up: one list of pods and one of Secrets.
    let (rt, mut api) = mock_runtime(config(fake.addr.port()));
    let refresh = tokio::spawn({
        let rt = rt.clone();
        async move { rt.refresh_executors().await }
    });
    for (resource, item) in [("pods", &pod), ("secrets", &secret)] {
        let call = api.expect("GET", &path(resource)).await;
        assert!(call.query().contains("labelSelector=io.sandbox.managed%3Dtrue"), "{}", call.query());
        call.respond(200, json!({"metadata": {"resourceVersion": "32"}, "items": [item]}));
    }
    assert_eq!(refresh.await.unwrap().unwrap(), 1);
    rt.executor(&spec()).health().await.unwrap();

    // Asked for a sandbox another replica made: fails at once, learns it in the background.
    let (rt, mut api) = mock_runtime(config(fake.addr.port()));
    let err = rt.executor(&spec()).health().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable(_)), "{err}");
    api.expect("GET", &format!("{}/{}", path("pods"), names.pod)).await.respond(200, pod.clone());
    api.expect("GET", &format!("{}/{}", path("secrets"), names.secret)).await.respond(200, secret.clone());
    let learned = async {
        loop {
            if rt.executor(&spec()).health().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), learned).await.expect("learned the executor");

    // `resolve_executor` waits for the answer instead.
    let (rt, mut api) = mock_runtime(config(fake.addr.port()));
    let resolving = tokio::spawn({
        let rt = rt.clone();
        async move { rt.resolve_executor(&spec()).await }
    });
    api.expect("GET", &format!("{}/{}", path("pods"), names.pod)).await.respond(200, pod);
    api.expect("GET", &format!("{}/{}", path("secrets"), names.secret)).await.fail(404, "NotFound");
    let err = resolving.await.unwrap().err().expect("no token, no client");
    assert!(err.to_string().contains(&names.secret), "{err}");
    assert_eq!(fake.authorized(), 2);
}

#[tokio::test]
async fn finds_the_isolating_network_policy() {
    let (rt, mut api) = mock_runtime(config(8080));
    let chart_policy = serde_json::to_value(sandbox_runtime::kubernetes::network_policy(
        crate::support::NS,
        &sandbox_runtime::kubernetes::ControlPlaneSelector {
            namespace: "sandbox-system".into(),
            pod_labels: Default::default(),
        },
        8080,
        None,
    ))
    .unwrap();
    let ingress_only =
        json!({"metadata": {"name": "x"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
    let other_pods = json!({"metadata": {"name": "y"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"]}});
    let checks = tokio::spawn({
        let rt = rt.clone();
        async move { (rt.network_policy_present().await, rt.network_policy_present().await) }
    });
    let np_path = format!("/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies", crate::support::NS);
    api.expect("GET", &np_path)
        .await
        .respond(200, json!({"metadata": {}, "items": [ingress_only, other_pods]}));
    api.expect("GET", &np_path).await.respond(200, json!({"metadata": {}, "items": [chart_policy]}));
    let (without, with) = checks.await.unwrap();
    assert!(!without.unwrap());
    assert!(with.unwrap());
}

#[tokio::test]
async fn connect_explains_what_is_missing() {
    use sandbox_runtime::kubernetes::config::ClientSource;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let cfg = KubernetesConfig {
        client: ClientSource::Kubeconfig,
        kubeconfig: Some(missing.clone()),
        ..config(8080)
    };
    let err = KubernetesRuntime::connect(cfg).await.err().expect("no kubeconfig, no client");
    assert!(
        matches!(&err, RuntimeError::Unavailable(m) if m.contains(&missing.display().to_string())),
        "{err}"
    );

    // A kubeconfig for an API server that is not there (nothing listens on 127.0.0.1:1); TLS, so
    // the client's rustls setup runs too.
    let file = dir.path().join("kubeconfig");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n\
         clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\n\
         contexts: [{name: ctx, context: {cluster: c, user: u}}]\n",
    )
    .unwrap();
    let cfg = KubernetesConfig { client: ClientSource::Kubeconfig, kubeconfig: Some(file), ..config(8080) };
    let err = KubernetesRuntime::connect(cfg).await.err().expect("nothing answers");
    assert!(matches!(&err, RuntimeError::Unavailable(m) if m.contains("list pods")), "{err}");

    let bad = KubernetesConfig { namespace: "Not A Namespace".into(), ..config(8080) };
    assert!(matches!(KubernetesRuntime::connect(bad).await, Err(RuntimeError::Invalid(_))));
}

/// A config pointing sandbox pods at the egress proxy Service `sandbox-system/sandbox-egress`,
/// with its key in a file of `dir`; and the key.
fn egress_config(dir: &std::path::Path) -> (KubernetesConfig, sandbox_egress::EgressKey) {
    let key_file = dir.join("egress-key");
    std::fs::write(&key_file, "k".repeat(48)).unwrap();
    let cfg = KubernetesConfig {
        egress_proxy_service: Some("sandbox-system/sandbox-egress".into()),
        egress_key_file: Some(key_file.clone()),
        ..config(8080)
    };
    (cfg, sandbox_egress::EgressKey::from_file(&key_file).unwrap())
}

const EGRESS_SERVICE_PATH: &str = "/api/v1/namespaces/sandbox-system/services/sandbox-egress";

#[tokio::test]
async fn egress_pods_get_the_proxy_service_address_and_their_own_credential() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, key) = egress_config(dir.path());
    let fake = FakeExecutor::start().await;
    let (rt, mut api) = mock_runtime(KubernetesConfig { executor_port: fake.addr.port(), ..cfg });
    let task = start_create(&rt);
    // The Service's address is read for each pod: a Service made anew has another one.
    api.expect("GET", EGRESS_SERVICE_PATH).await.respond(
        200,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sandbox-egress", "namespace": "sandbox-system"},
            "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "metrics", "port": 9090}, {"name": "proxy", "port": 3128}]}}),
    );
    let call = api.expect("POST", &path("secrets")).await;
    let secret: Secret = call.json();
    let credential = String::from_utf8(secret.data.as_ref().unwrap()["egress"].0.clone()).unwrap();
    let pod = pod_name(&spec().name);
    assert_eq!(
        key.verify(&credential),
        Some(pod.as_str()),
        "the credential names the pod, under the shared key"
    );
    call.respond(201, stored(&secret, "8"));
    let call = api.expect("POST", &path("pods")).await;
    let created: Pod = call.json();
    call.respond(201, with_status(&created, "10", json!({"phase": "Pending"})));
    let env = serde_json::to_value(&created.spec.as_ref().unwrap().containers[0].env).unwrap();
    let proxy =
        env.as_array().unwrap().iter().find(|e| e["name"] == "SANDBOX_EXECUTOR_EGRESS_PROXY").unwrap();
    assert_eq!(proxy["value"], "10.96.0.50:3128");
    assert!(!env.to_string().contains(&credential), "the credential travels in the Secret only");
    let token = String::from_utf8(secret.data.as_ref().unwrap()["token"].0.clone()).unwrap();
    fake.accept_token(&token);
    serve_list(&mut api, &pod, "10", vec![with_status(&created, "10", ready("127.0.0.1"))]).await;
    let sandbox = task.await.unwrap().map_err(|e| e.to_string()).unwrap();
    assert_eq!(sandbox.id, pod);
    api.expect_silence().await;
}

#[tokio::test]
async fn a_proxy_service_without_an_address_fails_the_create_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = egress_config(dir.path());
    let (rt, mut api) = mock_runtime(cfg);
    let task = start_create(&rt);
    api.expect("GET", EGRESS_SERVICE_PATH).await.respond(
        200,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sandbox-egress"},
            "spec": {"clusterIP": "None", "ports": [{"name": "proxy", "port": 3128}]}}),
    );
    let err = failed(task).await;
    assert!(err.to_string().contains("sandbox-egress") && err.to_string().contains("cluster IP"), "{err}");
    let task = start_create(&rt);
    api.expect("GET", EGRESS_SERVICE_PATH).await.fail(404, "NotFound");
    let err = failed(task).await;
    assert!(err.to_string().contains("egress proxy's service"), "{err}");
    api.expect_silence().await;
}

#[tokio::test]
async fn a_missing_or_short_egress_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = egress_config(dir.path());
    std::fs::write(cfg.egress_key_file.as_ref().unwrap(), "short").unwrap();
    let (service, _handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<crate::support::Body>>();
    let client = kube::Client::new(service, crate::support::NS);
    let err = KubernetesRuntime::with_client(client.clone(), cfg.clone()).err().unwrap();
    assert!(matches!(&err, RuntimeError::Invalid(m) if m.contains("32 bytes")), "{err}");
    let missing = KubernetesConfig { egress_key_file: Some(dir.path().join("none")), ..cfg };
    let err = KubernetesRuntime::with_client(client, missing).err().unwrap();
    assert!(err.to_string().contains("none"), "{err}");
}
