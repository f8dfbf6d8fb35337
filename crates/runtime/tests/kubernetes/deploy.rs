//! The Helm chart (deploy/helm/sandbox) and the plain manifests (deploy/manifests), rendered
//! offline by deploy/tests/render.py with helm-python-sdk: lint, kubernetes-validate on every
//! object, and what the backend relies on — the `[kubernetes]` section reads as a
//! [`KubernetesConfig`], the NetworkPolicy is the backend's, RBAC is namespaced and minimal.

use crate::support::{kubernetes_validate, repo_root};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Probe, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use sandbox_runtime::kubernetes::config::WorkspaceVolume;
use sandbox_runtime::kubernetes::{
    ControlPlaneSelector, EgressProxySelector, KubernetesConfig, network_policy,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

const RELEASE_NS: &str = "sandbox-system";
const SANDBOX_NS: &str = "sandbox-runtime";

/// render.py's report, produced once per test process (the tests share it).
fn report() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(|| {
        let venv = std::env::var_os("SANDBOX_TOOLS_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/sandbox-tools/venv"));
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/test-tools.sh, which installs helm-python-sdk and kubernetes-validate into \
             {} (or set SANDBOX_TOOLS_VENV)",
            python.display(),
            venv.display()
        );
        let out = std::process::Command::new(&python)
            .arg(repo_root().join("deploy/tests/render.py"))
            .output()
            .expect("render.py runs");
        assert!(
            out.status.success(),
            "deploy/tests/render.py failed (exit {:?}); scripts/test-tools.sh installs what it needs:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("render.py prints its report as JSON")
    })
}

fn variant(name: &str) -> &'static Value {
    &report()["variants"][name]
}

fn objects(name: &str) -> &'static [Value] {
    variant(name)["objects"].as_array().unwrap()
}

fn find<T: DeserializeOwned>(objs: &[Value], kind: &str, name: &str) -> T {
    let found = objs
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    serde_json::from_value(found.clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

fn kinds(objs: &[Value]) -> Vec<&str> {
    objs.iter().map(|o| o["kind"].as_str().unwrap()).collect()
}

fn kubernetes_section(name: &str) -> KubernetesConfig {
    let section = variant(name)["config"]["kubernetes"].clone();
    let cfg: KubernetesConfig =
        serde_json::from_value(section).unwrap_or_else(|e| panic!("[kubernetes] of {name}: {e}"));
    cfg.validate().unwrap();
    cfg
}

const VARIANTS: [&str; 6] = ["default", "egress", "external", "gvisor", "juicefs", "manifests"];

#[test]
fn renders_every_variant_and_lints_clean() {
    let report = report();
    let names: Vec<&String> = report["variants"].as_object().unwrap().keys().collect();
    assert_eq!(names, VARIANTS, "default values plus each ci/*-values.yaml");
    assert!(report["helm"].as_str().unwrap().starts_with("v4."), "Helm v4's renderer: {}", report["helm"]);
    for name in VARIANTS {
        let lint = &variant(name)["lint"];
        assert_eq!(lint["errors"], serde_json::json!([]), "{name}: {lint}");
        let serious: Vec<&Value> = lint["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64() >= Some(2))
            .collect();
        assert!(serious.is_empty(), "{name} lints with warnings or errors: {serious:?}");
    }
}

#[test]
fn every_rendered_object_and_manifest_passes_kubernetes_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![repo_root().join("deploy/manifests/sandbox.yaml")];
    let mut count = report()["manifests"]["objects"].as_array().unwrap().len();
    for name in VARIANTS {
        for (i, object) in objects(name).iter().enumerate() {
            let file = dir.path().join(format!("{name}-{i}.json"));
            std::fs::write(&file, serde_json::to_vec(object).unwrap()).unwrap();
            files.push(file);
            count += 1;
        }
    }
    kubernetes_validate(&files, count);
}

#[test]
fn plain_manifests_are_the_chart_rendered() {
    let manifests = &report()["manifests"];
    assert_eq!(
        manifests["current"], true,
        "deploy/manifests/sandbox.yaml is stale: regenerate it with \
         /var/cache/sandbox-tools/venv/bin/python deploy/tests/render.py --write-manifests"
    );
    let objs = objects("manifests");
    let plain = manifests["objects"].as_array().unwrap();
    assert_eq!(plain.len(), objs.len());
    for (p, c) in plain.iter().zip(objs) {
        assert!(p == c, "{} {} differs from the chart's", p["kind"], p["metadata"]["name"]);
    }
    assert_eq!(objs[0]["kind"], "Namespace", "namespaces come first, for kubectl apply -f");
    for ns in [RELEASE_NS, SANDBOX_NS] {
        let _: Namespace = find(objs, "Namespace", ns);
    }
    assert!(!kinds(objs).contains(&"Secret"), "the operator creates sandbox-secrets");
    let kustomization =
        std::fs::read_to_string(repo_root().join("deploy/manifests/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- sandbox.yaml"), "{kustomization}");
}

#[test]
fn the_kubernetes_section_is_a_kubernetes_config() {
    let default = kubernetes_section("default");
    let expected = KubernetesConfig {
        namespace: SANDBOX_NS.into(),
        client: sandbox_runtime::kubernetes::config::ClientSource::InCluster,
        ..KubernetesConfig::default()
    };
    assert_eq!(default, expected, "the chart's defaults are the backend's defaults");
    let juicefs = kubernetes_section("juicefs");
    assert_eq!(juicefs.workspace_volume, WorkspaceVolume::Pvc);
    assert_eq!(juicefs.storage_class_name.as_deref(), Some("juicefs-sc"));
    assert_eq!(juicefs.workspace_size.bytes(), 10 << 30);
    let gvisor = kubernetes_section("gvisor");
    assert_eq!(gvisor.runtime_class_name.as_deref(), Some("gvisor"));
    assert_eq!(gvisor.app_armor_profile.as_deref(), Some("Unconfined"));
    assert_eq!(gvisor.image_pull_secrets, ["registry-credentials"]);
    let config = &variant("gvisor")["config"];
    assert_eq!(
        (config["runtime"].as_str(), config["deployment_id"].as_str()),
        (Some("kubernetes"), Some("prod-eu-1"))
    );
    assert_eq!(config["limits"]["sandbox_start_timeout_sec"], 90, "extraConfig is appended");
}

#[test]
fn the_control_plane_deployment() {
    let objs = objects("default");
    let d: Deployment = find(objs, "Deployment", "sandbox");
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("sandbox"));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    let c = &pod.containers[0];
    let path = |probe: &Option<Probe>| probe.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/api/v1/health"), "the process runs");
    let ready = path(&c.readiness_probe).unwrap();
    assert_eq!(ready, "/api/v1/health/ready", "the database and the runtime answer");
    // Both are routes the server answers without a key (the OpenAPI document it generates).
    let openapi: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("docs/openapi.json")).unwrap())
            .unwrap();
    for p in [path(&c.liveness_probe).unwrap(), ready] {
        let get = &openapi["paths"][&p]["get"];
        assert!(get.is_object() && get.get("security").is_none(), "{p} is served without a key");
    }
    let res = c.resources.as_ref().unwrap();
    assert!(
        res.requests.as_ref().unwrap().contains_key("memory")
            && res.limits.as_ref().unwrap().contains_key("memory")
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!((sc.allow_privilege_escalation, sc.read_only_root_filesystem), (Some(false), Some(true)));
    let env: Vec<_> = c.env.iter().flatten().collect();
    for secret_var in [
        "SANDBOX_API_KEY",
        "SANDBOX_DATABASE_URL",
        "SANDBOX_STORAGE__S3__ACCESS_KEY_ID",
        "SANDBOX_STORAGE__S3__SECRET_ACCESS_KEY",
    ] {
        let var = env.iter().find(|e| e.name == secret_var).unwrap_or_else(|| panic!("{secret_var}"));
        assert!(var.value.is_none() && var.value_from.is_some(), "{secret_var} comes from the Secret");
    }
    assert!(
        env.iter()
            .any(|e| e.name == "SANDBOX_CONFIG" && e.value.as_deref() == Some("/etc/sandbox/config.toml"))
    );

    let pdb: PodDisruptionBudget = find(objs, "PodDisruptionBudget", "sandbox");
    let pdb = pdb.spec.unwrap();
    assert_eq!(pdb.selector.as_ref(), Some(&spec.selector));
    assert!(pdb.min_available.is_some());
    let svc: Service = find(objs, "Service", "sandbox");
    assert_eq!(svc.spec.unwrap().selector, spec.selector.match_labels);

    let secret: Secret = find(objs, "Secret", "sandbox-secrets");
    let keys: Vec<&String> = secret.string_data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "api-key",
            "database-url",
            "mariadb-password",
            "mariadb-root-password",
            "s3-access-key-id",
            "s3-secret-access-key"
        ]
    );
    assert!(secret.string_data.as_ref().unwrap()["database-url"].starts_with("mysql://sandbox:"));
}

#[test]
fn rbac_is_namespaced_and_minimal() {
    for name in VARIANTS {
        let objs = objects(name);
        let k = kinds(objs);
        assert!(
            !k.contains(&"ClusterRole") && !k.contains(&"ClusterRoleBinding"),
            "{name}: nothing cluster-wide"
        );
    }
    let objs = objects("default");
    let role: Role = find(objs, "Role", "sandbox-scheduler");
    assert_eq!(role.metadata.namespace.as_deref(), Some(SANDBOX_NS));
    let mut granted: Vec<String> = Vec::new();
    for rule in role.rules.unwrap() {
        for resource in rule.resources.unwrap() {
            for verb in &rule.verbs {
                granted.push(format!("{resource}:{verb}"));
            }
        }
    }
    granted.sort();
    assert_eq!(
        granted,
        [
            "networkpolicies:get",
            "networkpolicies:list",
            "networkpolicies:watch",
            "persistentvolumeclaims:create",
            "persistentvolumeclaims:delete",
            "persistentvolumeclaims:get",
            "persistentvolumeclaims:list",
            "pods/log:get",
            "pods:create",
            "pods:delete",
            "pods:get",
            "pods:list",
            "pods:watch",
            "secrets:create",
            "secrets:delete",
            "secrets:get",
            "secrets:list",
        ]
    );
    let binding: RoleBinding = find(objs, "RoleBinding", "sandbox-scheduler");
    assert_eq!(binding.metadata.namespace.as_deref(), Some(SANDBOX_NS));
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!((subject.kind.as_str(), subject.name.as_str()), ("ServiceAccount", "sandbox"));
    assert_eq!(subject.namespace.as_deref(), Some(RELEASE_NS));
}

#[test]
fn sandbox_namespace_isolation_is_the_backends_policy() {
    let objs = objects("default");
    let deny: NetworkPolicy = find(objs, "NetworkPolicy", "default-deny-all");
    assert_eq!(deny.metadata.namespace.as_deref(), Some(SANDBOX_NS));
    let deny = deny.spec.unwrap();
    assert_eq!(deny.pod_selector, Some(Default::default()), "every pod in the namespace");
    assert_eq!(deny.policy_types.as_deref(), Some(&["Ingress".to_string(), "Egress".to_string()][..]));
    assert!(deny.ingress.is_none() && deny.egress.is_none());

    let chart: NetworkPolicy = find(objs, "NetworkPolicy", "sandbox-isolation");
    let d: Deployment = find(objs, "Deployment", "sandbox");
    let control_plane = ControlPlaneSelector {
        namespace: RELEASE_NS.into(),
        pod_labels: d.spec.unwrap().selector.match_labels.unwrap(),
    };
    let ours = network_policy(SANDBOX_NS, &control_plane, 8080, None);
    assert_eq!(chart.metadata.namespace, ours.metadata.namespace);
    assert_eq!(chart.spec, ours.spec, "the chart renders the backend's NetworkPolicy");

    let ns: Namespace = find(objs, "Namespace", SANDBOX_NS);
    assert_eq!(ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"], "privileged");
}

#[test]
fn seccomp_profile_and_installer() {
    let profile = sandbox_runtime::profile::container_profile_json();
    let chart_copy =
        std::fs::read_to_string(repo_root().join("deploy/helm/sandbox/files/sandbox.json")).unwrap();
    assert!(
        chart_copy == profile,
        "deploy/helm/sandbox/files/sandbox.json is stale: cp images/seccomp/sandbox.json deploy/helm/sandbox/files/"
    );
    for name in VARIANTS {
        let cm: ConfigMap = find(objects(name), "ConfigMap", "sandbox-seccomp-profile");
        assert_eq!(cm.metadata.namespace.as_deref(), Some(SANDBOX_NS));
        assert!(
            cm.data.unwrap()["sandbox.json"] == profile,
            "{name}: the ConfigMap holds the profile verbatim"
        );
    }
    assert!(!kinds(objects("default")).contains(&"DaemonSet"), "the installer is off by default");
    let ds: DaemonSet = find(objects("gvisor"), "DaemonSet", "sandbox-seccomp-installer");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let host: Vec<_> = pod.volumes.iter().flatten().filter_map(|v| v.host_path.as_ref()).collect();
    assert_eq!(host.len(), 1, "only the kubelet's seccomp directory");
    assert_eq!(host[0].path, "/var/lib/kubelet/seccomp");
    assert_eq!(pod.automount_service_account_token, Some(false));
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, None);
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
    let script = pod.containers[0].command.as_ref().unwrap().join(" ");
    assert!(script.contains("/host/seccomp/profiles/sandbox.json"), "{script}");
}

#[test]
fn databases_and_storage_variants() {
    let statefulsets = |v: &str| -> Vec<String> {
        objects(v)
            .iter()
            .filter(|o| o["kind"] == "StatefulSet")
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(statefulsets("default"), ["sandbox-mariadb", "sandbox-minio"], "self-contained by default");
    assert!(statefulsets("external").is_empty());
    let secret: Secret = find(objects("external"), "Secret", "sandbox-secrets");
    let data = secret.string_data.unwrap();
    assert_eq!(data["database-url"], "mysql://sandbox:db-password@mysql.databases.svc:3306/sandbox");
    assert_eq!(data["s3-access-key-id"], "AKIAEXAMPLEEXAMPLE00");
    let d: Deployment = find(objects("external"), "Deployment", "sandbox");
    let env = d.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    let endpoint = env.iter().find(|e| e.name == "SANDBOX_STORAGE__S3__ENDPOINT").unwrap();
    assert_eq!(endpoint.value.as_deref(), Some("https://s3.eu-central-1.amazonaws.com"));

    assert!(!kinds(objects("default")).contains(&"StorageClass"));
    let sc: StorageClass = find(objects("juicefs"), "StorageClass", "juicefs-sc");
    assert_eq!(sc.provisioner, "csi.juicefs.com");
    let params = sc.parameters.unwrap();
    assert_eq!(params["csi.storage.k8s.io/node-publish-secret-name"], "juicefs-secret");
    let js: Secret = find(objects("juicefs"), "Secret", "juicefs-secret");
    assert!(js.string_data.unwrap()["metaurl"].starts_with("redis://"));
}

#[test]
fn the_egress_proxy_is_all_sandbox_pods_may_reach() {
    let objs = objects("egress");
    let proxy: Deployment = find(objs, "Deployment", "sandbox-egress");
    let spec = proxy.spec.unwrap();
    let proxy_labels = spec.selector.match_labels.clone().unwrap();
    assert_eq!(proxy_labels["app.kubernetes.io/component"], "egress-proxy");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false), "the proxy never talks to the API");
    let c = &pod.containers[0];
    assert_eq!(
        c.args.as_deref(),
        Some(&["egress-proxy".into(), "--listen".into(), "0.0.0.0:3128".into()][..])
    );
    let port = c.ports.iter().flatten().find(|p| p.name.as_deref() == Some("proxy")).unwrap().container_port;
    assert_eq!(port, 3128);
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!((sc.allow_privilege_escalation, sc.read_only_root_filesystem), (Some(false), Some(true)));

    // The [kubernetes] section points the backend at the Service, whose `proxy` port reaches the
    // proxy's; the [egress] section is the operator's bound.
    let k = kubernetes_section("egress");
    assert_eq!(k.egress_proxy().unwrap(), Some((RELEASE_NS, "sandbox-egress")));
    let egress: sandbox_egress::EgressSettings =
        serde_json::from_value(variant("egress")["config"]["egress"].clone()).unwrap();
    egress.validate().unwrap();
    assert_eq!(egress.permitted.len(), 2);
    let svc: Service = find(objs, "Service", "sandbox-egress");
    let svc = svc.spec.unwrap();
    assert_eq!(svc.selector.as_ref(), Some(&proxy_labels));
    let svc_port = svc.ports.unwrap().into_iter().find(|p| p.name.as_deref() == Some("proxy")).unwrap();
    assert_eq!(
        svc_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("proxy".into()))
    );

    // Both the control plane and the proxy read the same key, where egress_key_file says.
    let key_file = k.egress_key_file.clone().unwrap();
    let secret: Secret = find(objs, "Secret", "sandbox-secrets");
    assert_eq!(secret.string_data.unwrap()["egress-key"].len(), 64);
    let control: Deployment = find(objs, "Deployment", "sandbox");
    for (name, pod) in
        [("control plane", control.spec.unwrap().template.spec.unwrap()), ("proxy", pod.clone())]
    {
        let mount =
            pod.containers[0].volume_mounts.iter().flatten().find(|m| m.name == "egress-key").unwrap();
        assert_eq!(key_file, std::path::Path::new(&mount.mount_path).join("key"), "{name}");
        let volume = pod.volumes.iter().flatten().find(|v| v.name == "egress-key").unwrap();
        let items = volume.secret.as_ref().unwrap().items.clone().unwrap();
        assert_eq!((items[0].key.as_str(), items[0].path.as_str()), ("egress-key", "key"), "{name}");
    }

    // Sandbox pods: egress to the proxy's pods on its port, nothing else; the backend's policy.
    let chart: NetworkPolicy = find(objs, "NetworkPolicy", "sandbox-isolation");
    let control_plane = ControlPlaneSelector {
        namespace: RELEASE_NS.into(),
        pod_labels: find::<Deployment>(objs, "Deployment", "sandbox")
            .spec
            .unwrap()
            .selector
            .match_labels
            .unwrap(),
    };
    let proxy_pods = EgressProxySelector {
        pods: ControlPlaneSelector { namespace: RELEASE_NS.into(), pod_labels: proxy_labels.clone() },
        port: u16::try_from(port).unwrap(),
    };
    let ours = network_policy(SANDBOX_NS, &control_plane, 8080, Some(&proxy_pods));
    assert_eq!(chart.spec, ours.spec, "the chart renders the backend's NetworkPolicy");
    let in_sandbox_ns: Vec<NetworkPolicy> = objs
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["namespace"] == SANDBOX_NS)
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect();
    assert_eq!(in_sandbox_ns.len(), 2, "default-deny-all and sandbox-isolation");
    let rules: Vec<_> =
        in_sandbox_ns.iter().flat_map(|p| p.spec.clone().unwrap().egress.unwrap_or_default()).collect();
    assert_eq!(rules.len(), 1, "one egress rule in the sandbox namespace");
    let to = rules[0].to.clone().unwrap();
    assert_eq!(to.len(), 1);
    assert!(to[0].ip_block.is_none(), "no address range, no DNS");
    assert_eq!(to[0].pod_selector.as_ref().unwrap().match_labels.as_ref(), Some(&proxy_labels));
    assert_eq!(
        to[0].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
        RELEASE_NS
    );

    // The proxy admits sandbox pods only, on its port.
    let own: NetworkPolicy = find(objs, "NetworkPolicy", "sandbox-egress");
    assert_eq!(own.metadata.namespace.as_deref(), Some(RELEASE_NS));
    let own = own.spec.unwrap();
    assert_eq!(own.pod_selector.as_ref().unwrap().match_labels.as_ref(), Some(&proxy_labels));
    assert_eq!(own.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
    assert_eq!(
        serde_json::to_value(own.ingress.unwrap()).unwrap(),
        serde_json::json!([{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": SANDBOX_NS}},
                      "podSelector": {"matchLabels": {"io.sandbox.managed": "true"}}}],
            "ports": [{"port": 3128, "protocol": "TCP"}],
        }])
    );

    // The control plane may read that one Service, nothing else in its namespace.
    let role: Role = find(objs, "Role", "sandbox-egress-reader");
    assert_eq!(role.metadata.namespace.as_deref(), Some(RELEASE_NS));
    assert_eq!(
        serde_json::to_value(role.rules.unwrap()).unwrap(),
        serde_json::json!([{"apiGroups": [""], "resources": ["services"], "resourceNames": ["sandbox-egress"], "verbs": ["get"]}])
    );
    let binding: RoleBinding = find(objs, "RoleBinding", "sandbox-egress-reader");
    assert_eq!(binding.subjects.unwrap()[0].name, "sandbox");

    // Off by default: none of it.
    for name in ["default", "manifests"] {
        let names: Vec<&str> = objects(name).iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
        assert!(!names.iter().any(|n| n.contains("egress")), "{name}: {names:?}");
        assert_eq!(kubernetes_section(name).egress_proxy_service, None);
    }
}
