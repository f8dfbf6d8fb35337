//! Against a real cluster, where this test process can reach pod IPs (run it inside the cluster,
//! or on a node). Ignored by default; run with
//! `KUBECONFIG=... cargo nextest run -p sandbox-runtime --features kubernetes --run-ignored only`.
//! `SANDBOX_K8S_NAMESPACE` (default `sandbox-runtime`) and `SANDBOX_K8S_IMAGE` (default
//! `sandbox/python-basic:latest`) choose where and what; the cluster needs the prerequisites of
//! `docs/kubernetes.md` (seccomp profile on the nodes, user namespaces).

use sandbox_core::{ExecutionStatus, Language};
use sandbox_protocol::ExecRequest;
use sandbox_runtime::kubernetes::config::ClientSource;
use sandbox_runtime::kubernetes::{KubernetesConfig, KubernetesRuntime};
use sandbox_runtime::{Runtime, RuntimeError, SandboxSpec, labels};

const REASON: &str = "needs a Kubernetes cluster: set KUBECONFIG";

async fn connect() -> KubernetesRuntime {
    assert!(std::env::var_os("KUBECONFIG").is_some(), "{REASON}");
    let cfg = KubernetesConfig {
        client: ClientSource::Kubeconfig,
        namespace: std::env::var("SANDBOX_K8S_NAMESPACE").unwrap_or_else(|_| "sandbox-runtime".into()),
        ready_timeout_secs: 120,
        ..Default::default()
    };
    KubernetesRuntime::connect(cfg).await.expect("the cluster answers")
}

fn spec(name: &str, image: Option<&str>) -> SandboxSpec {
    let default_image =
        std::env::var("SANDBOX_K8S_IMAGE").unwrap_or_else(|_| "sandbox/python-basic:latest".into());
    let mut s = SandboxSpec::new(
        format!("{name}-{}", std::process::id()),
        image.map_or(default_image, str::to_owned),
        "/unused".into(),
        "/unused".into(),
    );
    s.labels.insert(labels::SESSION.into(), "cluster-test".into());
    s
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG"]
async fn runs_code_in_a_sandbox_pod_and_removes_it() {
    let rt = connect().await;
    let sandbox = rt.create(&spec("sandbox-it-run", None)).await.unwrap_or_else(|e| panic!("{e}"));
    let result = sandbox
        .executor
        .execute(&ExecRequest {
            execution_id: "exec_cluster_test".into(),
            language: Language::Python,
            code: "print(6 * 7)".into(),
            event: None,
            timeout_ms: 30_000,
            env: Default::default(),
            function_name: None,
            mode: Default::default(),
        })
        .await;
    let info = rt.status(&sandbox.id).await.unwrap().expect("the pod exists");
    rt.remove(&sandbox.id).await.unwrap();
    let result = result.unwrap();
    assert_eq!(
        (result.status, result.stdout.trim()),
        (ExecutionStatus::Completed, "42"),
        "{}",
        result.stderr
    );
    assert_eq!(info.health, "healthy");
    assert!(
        rt.list(&[(labels::SESSION, "cluster-test")])
            .await
            .unwrap()
            .iter()
            .all(|i| i.id != sandbox.id || i.state == sandbox_runtime::SandboxState::Removing)
    );
    rt.remove(&sandbox.id).await.expect("removing twice is fine");
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG"]
async fn reports_a_missing_image_and_leaves_nothing_behind() {
    let rt = connect().await;
    let s = spec("sandbox-it-noimage", Some("registry.invalid/sandbox/none:0"));
    let err = match rt.create(&s).await {
        Ok(sb) => panic!("created {}", sb.id),
        Err(e) => e,
    };
    assert!(
        matches!(&err, RuntimeError::PodFailed { reason, .. } if reason.contains("Image") || reason.contains("Pull")),
        "{err}"
    );
    let id = sandbox_runtime::kubernetes::objects::pod_name(&s.name);
    let left = rt.status(&id).await.unwrap();
    assert!(left.as_ref().is_none_or(|i| i.state == sandbox_runtime::SandboxState::Removing), "{left:?}");
}
