//! The objects built for a representative sandbox: snapshots, every security-relevant field,
//! and validation against Kubernetes' schemas.

use crate::support::{NS, assert_snapshot, config, kubernetes_validate, session_spec, spec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use sandbox_runtime::kubernetes::config::{ImagePullPolicy, SeccompProfile, WorkspaceVolume};
use sandbox_runtime::kubernetes::objects::{self, ControlPlaneSelector, SandboxObjects};
use sandbox_runtime::kubernetes::{EgressAccess, EgressProxySelector, KubernetesConfig, network_policy};
use sandbox_runtime::labels;
use serde_json::Value;
use std::collections::BTreeMap;

/// Stands in for the random token, so snapshots are stable.
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn default_objects() -> SandboxObjects {
    objects::build(&spec(), &config(8080), TOKEN, None).unwrap()
}

/// A production shape: a JuiceFS claim (as the Python control plane's production deployments
/// use), gVisor, a private registry, AppArmor off.
fn pvc_config() -> KubernetesConfig {
    KubernetesConfig {
        workspace_volume: WorkspaceVolume::Pvc,
        storage_class_name: Some("juicefs-sc".into()),
        workspace_size: "10Gi".parse().unwrap(),
        workspace_access_mode: "ReadWriteMany".into(),
        runtime_class_name: Some("gvisor".into()),
        image_pull_policy: ImagePullPolicy::Always,
        image_pull_secrets: vec!["registry-credentials".into()],
        app_armor_profile: Some("Unconfined".into()),
        ..config(8080)
    }
}

fn pvc_objects() -> SandboxObjects {
    objects::build(&spec(), &pvc_config(), TOKEN, None).unwrap()
}

fn control_plane() -> ControlPlaneSelector {
    ControlPlaneSelector {
        namespace: "sandbox-system".into(),
        pod_labels: BTreeMap::from([
            ("app.kubernetes.io/name".into(), "sandbox".into()),
            ("app.kubernetes.io/component".into(), "control-plane".into()),
        ]),
    }
}

fn pod_spec(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().unwrap()
}

fn executor(pod: &Pod) -> &Container {
    let containers = &pod_spec(pod).containers;
    assert_eq!(containers.len(), 1, "one container, no sidecars");
    &containers[0]
}

fn env(c: &Container) -> BTreeMap<String, String> {
    c.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect()
}

#[test]
fn snapshots_are_current() {
    let d = default_objects();
    assert!(d.pvc.is_none());
    assert_snapshot("pod", &d.pod);
    assert_snapshot("secret", &d.secret);
    let p = pvc_objects();
    assert_snapshot("pod-pvc", &p.pod);
    assert_snapshot("pvc", p.pvc.as_ref().unwrap());
    assert_snapshot("networkpolicy", &network_policy(NS, &control_plane(), 8080, None));
}

#[test]
fn names_and_metadata() {
    let o = default_objects();
    let pod_name = o.pod.metadata.name.as_deref().unwrap();
    assert_eq!(pod_name, objects::pod_name("sandbox-sess_Abc123"));
    assert!(pod_name.starts_with("sbx-") && pod_name.len() == 44, "a fixed-length hash: {pod_name}");
    assert_eq!(o.names.secret, format!("{pod_name}-token"));
    for meta in [&o.pod.metadata, &o.secret.metadata] {
        assert_eq!(meta.namespace.as_deref(), Some(NS));
        assert!(meta.owner_references.is_none(), "owner-less: the control plane removes them");
        let l = meta.labels.as_ref().unwrap();
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l[labels::SANDBOX], pod_name);
        assert_eq!(l[labels::SESSION], "sess_Abc123");
        assert_eq!(l["app.kubernetes.io/name"], "sandbox");
        assert_eq!(meta.annotations.as_ref().unwrap()[labels::SANDBOX], "sandbox-sess_Abc123");
    }
    let p = pvc_objects();
    let claim = p.pvc.as_ref().unwrap();
    assert_eq!(claim.metadata.name.as_deref(), Some(format!("{pod_name}-workspace").as_str()));
    assert_eq!(objects::owner(claim), Some("sandbox-sess_Abc123"), "every object names its sandbox");
}

#[test]
fn pod_is_isolated_from_the_node_and_the_cluster() {
    let pod = default_objects().pod;
    let s = pod_spec(&pod);
    assert_eq!(s.restart_policy.as_deref(), Some("Never"));
    assert_eq!((s.host_network, s.host_pid, s.host_ipc), (Some(false), Some(false), Some(false)));
    assert_eq!(s.host_users, Some(false), "own user namespace, needed for procMount Unmasked");
    assert_eq!(s.automount_service_account_token, Some(false), "no API credentials in the sandbox");
    assert_eq!(s.enable_service_links, Some(false), "no service addresses in the environment");
    assert_eq!(s.dns_policy.as_deref(), Some("None"));
    let dns = s.dns_config.as_ref().unwrap();
    assert_eq!(dns.nameservers.as_deref(), Some(&["127.0.0.1".to_string()][..]), "nothing to resolve with");
    assert!(dns.searches.is_none() && dns.options.is_none());
    assert!(s.service_account_name.is_none() && s.node_name.is_none());
    assert!(s.init_containers.is_none() && s.ephemeral_containers.is_none());
    let psc = s.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user, psc.run_as_group),
        (Some(true), Some(61000), Some(61000))
    );
    assert_eq!(psc.fs_group, Some(61000));
    assert!(psc.sysctls.is_none(), "no sysctls");
    assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "Localhost");
}

#[test]
fn container_is_hardened() {
    let pod = default_objects().pod;
    let c = executor(&pod);
    assert_eq!(c.name, "executor");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!((sc.run_as_non_root, sc.run_as_user, sc.run_as_group), (Some(true), Some(61000), Some(61000)));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.is_none());
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let seccomp = sc.seccomp_profile.as_ref().unwrap();
    assert_eq!(
        (seccomp.type_.as_str(), seccomp.localhost_profile.as_deref()),
        ("Localhost", Some("profiles/sandbox.json"))
    );
    assert_eq!(sc.proc_mount.as_deref(), Some("Unmasked"), "bwrap mounts a fresh /proc");
    assert!(sc.app_armor_profile.is_none(), "the node's default unless configured");
    assert!(sc.se_linux_options.is_none());

    let r = c.resources.as_ref().unwrap();
    let limits = r.limits.as_ref().unwrap();
    let requests = r.requests.as_ref().unwrap();
    assert_eq!((limits["cpu"].0.as_str(), limits["memory"].0.as_str()), ("500m", "256Mi"));
    assert_eq!(limits["ephemeral-storage"].0, "1Gi");
    assert_eq!((requests["cpu"].0.as_str(), requests["memory"].0.as_str()), ("500m", "256Mi"));
    assert!(!requests.contains_key("ephemeral-storage"));

    assert_eq!(c.command.as_deref(), Some(&["/usr/local/bin/sandbox-executor".to_string()][..]));
    assert_eq!(c.args.as_deref(), Some(&["serve".to_string()][..]));
    let e = env(c);
    assert_eq!(e["SANDBOX_EXECUTOR_TCP"], "0.0.0.0:8080");
    assert_eq!(e["SANDBOX_EXECUTOR_TOKEN_FILE"], "/run/sandbox-token/token");
    assert!(!e.contains_key("SANDBOX_EXECUTOR_MEMORY_LIMIT_MB"), "the executor reads its cgroup's limit");
    assert_eq!(e["SANDBOX_EXECUTOR_MAX_PROCESSES"], "64");
    assert!(e.values().all(|v| !v.contains(TOKEN)), "the token is never in the environment");
    assert!(c.env.iter().flatten().all(|v| v.value_from.is_none()));

    let probe = c.readiness_probe.as_ref().unwrap();
    assert!(probe.tcp_socket.is_some(), "ready once the executor's port is open");
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
}

#[test]
fn volumes_and_token_delivery() {
    let o = default_objects();
    let s = pod_spec(&o.pod);
    let volumes: BTreeMap<_, _> = s.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    assert_eq!(volumes.keys().copied().collect::<Vec<_>>(), ["run", "tmp", "token", "workspace"]);
    assert!(volumes.values().all(|v| v.host_path.is_none()), "nothing from the node");
    let tmp = volumes["tmp"].empty_dir.as_ref().unwrap();
    assert_eq!(
        (tmp.medium.as_deref(), tmp.size_limit.as_ref().unwrap().0.as_str()),
        (Some("Memory"), "64Mi")
    );
    let ws = volumes["workspace"].empty_dir.as_ref().unwrap();
    assert_eq!((ws.medium.as_deref(), ws.size_limit.as_ref().unwrap().0.as_str()), (None, "1Gi"));
    let token = volumes["token"].secret.as_ref().unwrap();
    assert_eq!(token.secret_name.as_deref(), Some(o.names.secret.as_str()));
    assert_eq!(token.default_mode, Some(0o440));
    let mounts: BTreeMap<_, _> =
        executor(&o.pod).volume_mounts.iter().flatten().map(|m| (m.mount_path.as_str(), m)).collect();
    assert_eq!(
        mounts.keys().copied().collect::<Vec<_>>(),
        ["/run/sandbox", "/run/sandbox-token", "/tmp", "/workspace"]
    );
    assert_eq!(mounts["/run/sandbox-token"].read_only, Some(true));

    let secret = &o.secret;
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.immutable, Some(true));
    assert_eq!(secret.data.as_ref().unwrap()["token"].0, TOKEN.as_bytes());
    assert!(secret.string_data.is_none());
}

#[test]
fn pvc_mode_and_optional_settings() {
    let o = pvc_objects();
    let pvc = o.pvc.as_ref().unwrap();
    assert_eq!(pvc.metadata.name.as_deref(), Some(o.names.pvc.as_str()));
    let ps = pvc.spec.as_ref().unwrap();
    assert_eq!(ps.storage_class_name.as_deref(), Some("juicefs-sc"));
    assert_eq!(ps.access_modes.as_deref(), Some(&["ReadWriteMany".to_string()][..]));
    assert_eq!(ps.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0, "10Gi");
    assert_eq!(pvc.metadata.labels.as_ref().unwrap()[labels::MANAGED], "true");
    let s = pod_spec(&o.pod);
    let ws = s.volumes.iter().flatten().find(|v| v.name == "workspace").unwrap();
    assert_eq!(ws.persistent_volume_claim.as_ref().unwrap().claim_name, o.names.pvc);
    assert_eq!(s.runtime_class_name.as_deref(), Some("gvisor"));
    assert_eq!(s.image_pull_secrets.as_ref().unwrap()[0].name, "registry-credentials");
    let c = executor(&o.pod);
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(c.security_context.as_ref().unwrap().app_armor_profile.as_ref().unwrap().type_, "Unconfined");

    let rd = KubernetesConfig { seccomp_profile: SeccompProfile::RuntimeDefault, ..config(8080) };
    let pod = objects::build(&spec(), &rd, TOKEN, None).unwrap().pod;
    let seccomp = executor(&pod).security_context.as_ref().unwrap().seccomp_profile.clone().unwrap();
    assert_eq!((seccomp.type_.as_str(), seccomp.localhost_profile), ("RuntimeDefault", None));
}

#[test]
fn network_policy_denies_egress_and_admits_only_the_control_plane() {
    let np = network_policy(NS, &control_plane(), 8080, None);
    let s = np.spec.as_ref().unwrap();
    assert_eq!(s.policy_types.as_deref(), Some(&["Ingress".to_string(), "Egress".to_string()][..]));
    assert!(s.egress.as_ref().is_none_or(Vec::is_empty), "no egress rule: all egress denied");
    let selected = s.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
    assert_eq!(selected[labels::MANAGED], "true");
    let rules = s.ingress.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    let from = rules[0].from.as_ref().unwrap();
    assert_eq!(from.len(), 1, "one peer: namespace AND pod labels");
    let peer = &from[0];
    assert!(peer.ip_block.is_none());
    assert_eq!(
        peer.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
        "sandbox-system"
    );
    assert_eq!(peer.pod_selector.as_ref().unwrap().match_labels.as_ref(), Some(&control_plane().pod_labels));
    let ports = rules[0].ports.as_ref().unwrap();
    assert_eq!(serde_json::to_value(ports).unwrap(), serde_json::json!([{"port": 8080, "protocol": "TCP"}]));
}

#[test]
fn objects_pass_kubernetes_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = default_objects();
    let p = pvc_objects();
    // A session id no label value can be (64 characters, `_` first): hashed label, annotation.
    let h =
        objects::build(&session_spec(&format!("_{}", "a".repeat(63))), &config(8080), TOKEN, None).unwrap();
    let all: Vec<(&str, Value)> = vec![
        ("pod", serde_json::to_value(&d.pod).unwrap()),
        ("secret", serde_json::to_value(&d.secret).unwrap()),
        ("pod-hashed-label", serde_json::to_value(&h.pod).unwrap()),
        ("pod-pvc", serde_json::to_value(&p.pod).unwrap()),
        ("pvc", serde_json::to_value(p.pvc.as_ref().unwrap()).unwrap()),
        ("networkpolicy", serde_json::to_value(network_policy(NS, &control_plane(), 8080, None)).unwrap()),
    ];
    let files: Vec<_> = all
        .iter()
        .map(|(name, v)| {
            assert!(v["apiVersion"].is_string() && v["kind"].is_string(), "{name} names its kind");
            let f = dir.path().join(format!("{name}.json"));
            std::fs::write(&f, serde_json::to_vec_pretty(v).unwrap()).unwrap();
            f
        })
        .collect();
    kubernetes_validate(&files, files.len());
}

/// What a pod that may use the egress proxy is given.
fn egress_access() -> EgressAccess {
    EgressAccess { proxy: "10.96.0.50:3128".parse().unwrap(), credential: "sbx-0123.00ff".into() }
}

/// The egress proxy's pods, as the chart labels them.
fn egress_proxy() -> EgressProxySelector {
    EgressProxySelector {
        pods: ControlPlaneSelector {
            namespace: "sandbox-system".into(),
            pod_labels: BTreeMap::from([
                ("app.kubernetes.io/name".into(), "sandbox".into()),
                ("app.kubernetes.io/component".into(), "egress-proxy".into()),
            ]),
        },
        port: 3128,
    }
}

#[test]
fn egress_gives_the_executor_the_proxy_and_a_credential_in_the_secret() {
    let o = objects::build(&spec(), &config(8080), TOKEN, Some(&egress_access())).unwrap();
    let data = o.secret.data.as_ref().unwrap();
    assert_eq!(data["egress"].0, b"sbx-0123.00ff");
    assert_eq!(data["token"].0, TOKEN.as_bytes());
    let s = pod_spec(&o.pod);
    let token = s.volumes.iter().flatten().find(|v| v.name == "token").unwrap().secret.clone().unwrap();
    let items: Vec<_> = token.items.unwrap().into_iter().map(|i| (i.key, i.path)).collect();
    assert_eq!(items, [("token".into(), "token".into()), ("egress".into(), "egress".into())]);
    let egress = s.volumes.iter().flatten().find(|v| v.name == "egress").unwrap().empty_dir.clone().unwrap();
    assert_eq!(egress.medium.as_deref(), Some("Memory"), "the socket's directory is the executor's own");
    let c = executor(&o.pod);
    let mounts: BTreeMap<_, _> =
        c.volume_mounts.iter().flatten().map(|m| (m.mount_path.as_str(), m.name.as_str())).collect();
    assert_eq!(mounts["/run/sandbox-egress"], "egress");
    let e = env(c);
    assert_eq!(e["SANDBOX_EXECUTOR_EGRESS_PROXY"], "10.96.0.50:3128");
    assert_eq!(e["SANDBOX_EXECUTOR_EGRESS_CREDENTIAL_FILE"], "/run/sandbox-token/egress");
    assert!(e.values().all(|v| !v.contains("sbx-0123.00ff")), "the credential is never in the environment");

    // Without egress, none of it.
    let plain = default_objects();
    assert!(!plain.secret.data.as_ref().unwrap().contains_key("egress"));
    assert!(pod_spec(&plain.pod).volumes.iter().flatten().all(|v| v.name != "egress"));
    assert!(env(executor(&plain.pod)).keys().all(|k| !k.contains("EGRESS")));
}

#[test]
fn with_a_proxy_sandbox_pods_may_reach_only_its_pods_port() {
    let np = network_policy(NS, &control_plane(), 8080, Some(&egress_proxy()));
    let s = np.spec.as_ref().unwrap();
    assert_eq!(s.policy_types.as_deref(), Some(&["Ingress".to_string(), "Egress".to_string()][..]));
    let rules = s.egress.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(rules).unwrap(),
        serde_json::json!([{
            "to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sandbox-system"}},
                "podSelector": {"matchLabels": {
                    "app.kubernetes.io/component": "egress-proxy", "app.kubernetes.io/name": "sandbox"}},
            }],
            "ports": [{"port": 3128, "protocol": "TCP"}],
        }]),
        "one peer (namespace AND labels), one port, no ipBlock, no DNS"
    );
    let without = network_policy(NS, &control_plane(), 8080, None);
    assert_eq!(s.ingress, without.spec.as_ref().unwrap().ingress, "ingress is unchanged");
}

#[test]
fn egress_objects_pass_kubernetes_validate() {
    let dir = tempfile::tempdir().unwrap();
    let o = objects::build(&spec(), &config(8080), TOKEN, Some(&egress_access())).unwrap();
    let all = [
        ("pod-egress", serde_json::to_value(&o.pod).unwrap()),
        ("secret-egress", serde_json::to_value(&o.secret).unwrap()),
        (
            "networkpolicy-egress",
            serde_json::to_value(network_policy(NS, &control_plane(), 8080, Some(&egress_proxy()))).unwrap(),
        ),
    ];
    let files: Vec<_> = all
        .iter()
        .map(|(name, v)| {
            let f = dir.path().join(format!("{name}.json"));
            std::fs::write(&f, serde_json::to_vec_pretty(v).unwrap()).unwrap();
            f
        })
        .collect();
    kubernetes_validate(&files, files.len());
}
