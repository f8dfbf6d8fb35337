//! The Kubernetes objects of one sandbox, as pure functions of its spec and the settings: the
//! token Secret, the optional workspace claim and the hardened Pod; and the NetworkPolicy that
//! isolates every sandbox. No I/O here, so all of it is unit- and snapshot-tested.

use super::config::{AppArmor, KubernetesConfig, ProcMount, SeccompProfile, WorkspaceVolume, is_dns_label};
use crate::RuntimeError;
use crate::docker::SANDBOX_UID;
use crate::docker::config::EXECUTOR_PATH;
use crate::spec::{SandboxSpec, labels};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, KeyToPath,
    LocalObjectReference, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodDNSConfig, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile as K8sSeccompProfile, Secret, SecretVolumeSource, SecurityContext,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sandbox_protocol::{CONTAINER_SOCKET_DIR, SOCKET_FILE_NAME, WORKSPACE_DIR};
use std::collections::BTreeMap;

/// The executor's container in every sandbox pod.
pub const EXECUTOR_CONTAINER: &str = "executor";
/// The name of the executor's port.
pub const EXECUTOR_PORT_NAME: &str = "executor";
/// The key of the token in the token Secret.
pub const TOKEN_KEY: &str = "token";
/// Where the token Secret is mounted; bwrap never exposes it to user code.
pub const TOKEN_DIR: &str = "/run/sandbox-token";
/// `app.kubernetes.io/name` of every sandbox object (and the NetworkPolicy's pod selector).
pub const APP_NAME: &str = "sandbox";
/// The standard label key for [`APP_NAME`].
pub const APP_NAME_LABEL: &str = "app.kubernetes.io/name";
/// Resolving names fails at once inside a sandbox pod: the API requires a nameserver with
/// `dnsPolicy: None`, and nothing listens on the pod's own loopback.
pub const NO_DNS_NAMESERVER: &str = "127.0.0.1";
/// Seconds the executor gets after SIGTERM to end running executions.
pub const TERMINATION_GRACE_SECS: i64 = 5;
/// Size of the memory-backed directory the executor puts its Unix socket in.
const RUN_DIR_SIZE: &str = "1Mi";

/// The names of one sandbox's objects, all derived from the pod's name (the sandbox's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The pod; also [`crate::Sandbox::id`].
    pub pod: String,
    /// The Secret holding the executor's token.
    pub secret: String,
    /// The workspace claim (`pvc` mode).
    pub pvc: String,
}

impl Names {
    /// The names for the sandbox called `sandbox_name` (see [`pod_name`]).
    pub fn for_sandbox(sandbox_name: &str) -> Self {
        Self::for_pod(&pod_name(sandbox_name))
    }

    /// The names belonging to the pod `pod`.
    pub fn for_pod(pod: &str) -> Self {
        Names { pod: pod.to_owned(), secret: format!("{pod}-token"), pvc: format!("{pod}-workspace") }
    }
}

/// The pod name for a sandbox name: the name itself when it is a DNS label already, otherwise
/// a sanitised form (lowercase, `-` for other characters) with 8 hex digits of a hash of the
/// original, so `sandbox-sess_AB` and `sandbox-sess-ab` stay distinct. Deterministic, so a
/// restarted control plane finds the pod from the name alone.
pub fn pod_name(sandbox_name: &str) -> String {
    if is_dns_label(sandbox_name) {
        return sandbox_name.to_owned();
    }
    let mut base: String = sandbox_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    base.truncate(54);
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "sandbox" } else { base };
    format!("{base}-{:08x}", fnv1a(sandbox_name.as_bytes()) as u32)
}

/// FNV-1a: a stable hash (std's hashers may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Everything [`build`] makes for one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxObjects {
    /// The objects' names.
    pub names: Names,
    /// The token Secret.
    pub secret: Secret,
    /// The workspace claim, in `pvc` mode.
    pub pvc: Option<PersistentVolumeClaim>,
    /// The pod.
    pub pod: Pod,
}

/// Builds the objects of the sandbox `spec` with the executor token `token`. Fails when a
/// label of the spec is not a valid Kubernetes label.
///
/// Fields of [`SandboxSpec`] that name host paths (`workspace_dir`, `socket_dir`, `deps_dir`)
/// mean nothing in a cluster and are not used; `pids_limit` is the kubelet's per-pod limit
/// (`--pod-max-pids`) on Kubernetes.
pub fn build(
    spec: &SandboxSpec,
    cfg: &KubernetesConfig,
    token: &str,
) -> Result<SandboxObjects, RuntimeError> {
    let names = Names::for_sandbox(&spec.name);
    let meta = metadata(spec, cfg, &names)?;
    let secret = Secret {
        metadata: ObjectMeta { name: Some(names.secret.clone()), ..meta.clone() },
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(TOKEN_KEY.to_owned(), ByteString(token.as_bytes().to_vec()))])),
        ..Default::default()
    };
    let pvc = (cfg.workspace_volume == WorkspaceVolume::Pvc).then(|| PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(names.pvc.clone()), ..meta.clone() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![cfg.workspace_access_mode.clone()]),
            storage_class_name: cfg.storage_class_name.clone(),
            volume_mode: Some("Filesystem".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), quantity(cfg.workspace_size))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = Pod {
        metadata: ObjectMeta { name: Some(names.pod.clone()), ..meta },
        spec: Some(pod_spec(spec, cfg, &names)?),
        ..Default::default()
    };
    Ok(SandboxObjects { names, secret, pvc, pod })
}

/// Labels and annotations shared by a sandbox's objects.
fn metadata(spec: &SandboxSpec, cfg: &KubernetesConfig, names: &Names) -> Result<ObjectMeta, RuntimeError> {
    for (k, v) in &spec.labels {
        if !is_label_key(k) || !is_label_value(v) {
            return Err(RuntimeError::Invalid(format!("label {k}={v:?} is not a valid Kubernetes label")));
        }
    }
    let mut all = spec.labels.clone();
    all.insert(APP_NAME_LABEL.into(), APP_NAME.into());
    all.insert(labels::MANAGED.into(), "true".into());
    all.insert(labels::SANDBOX.into(), names.pod.clone());
    Ok(ObjectMeta {
        namespace: Some(cfg.namespace.clone()),
        labels: Some(all),
        // The sandbox's own name may not be a valid label value; it is kept here verbatim.
        annotations: Some(BTreeMap::from([(labels::SANDBOX.to_owned(), spec.name.clone())])),
        ..Default::default()
    })
}

fn pod_spec(spec: &SandboxSpec, cfg: &KubernetesConfig, names: &Names) -> Result<PodSpec, RuntimeError> {
    let uid = i64::from(SANDBOX_UID);
    let seccomp = match cfg.seccomp_profile {
        SeccompProfile::Localhost => K8sSeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some(cfg.seccomp_localhost_profile.clone()),
        },
        SeccompProfile::RuntimeDefault => {
            K8sSeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
        }
    };
    let app_armor = cfg.app_armor()?.map(|a| match a {
        AppArmor::Unconfined => AppArmorProfile { type_: "Unconfined".into(), localhost_profile: None },
        AppArmor::RuntimeDefault => {
            AppArmorProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
        }
        AppArmor::Localhost(name) => {
            AppArmorProfile { type_: "Localhost".into(), localhost_profile: Some(name) }
        }
    });
    let workspace = match cfg.workspace_volume {
        WorkspaceVolume::EmptyDir => Volume {
            name: "workspace".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(quantity(cfg.workspace_size)),
            }),
            ..Default::default()
        },
        WorkspaceVolume::Pvc => Volume {
            name: "workspace".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names.pvc.clone(),
                read_only: None,
            }),
            ..Default::default()
        },
    };
    let memory_dir = |name: &str, size: Quantity| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { medium: Some("Memory".into()), size_limit: Some(size) }),
        ..Default::default()
    };
    let volumes = vec![
        workspace,
        memory_dir("tmp", quantity(spec.tmp_size)),
        memory_dir("run", Quantity(RUN_DIR_SIZE.into())),
        Volume {
            name: "token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.secret.clone()),
                // Read-only for the owner and the pod's group (uid 1000 reads it through fsGroup).
                default_mode: Some(0o440),
                items: Some(vec![KeyToPath { key: TOKEN_KEY.into(), path: TOKEN_KEY.into(), mode: None }]),
                optional: None,
            }),
            ..Default::default()
        },
    ];
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    let mut env = vec![
        env_var("SANDBOX_EXECUTOR_TCP", format!("0.0.0.0:{}", cfg.executor_port)),
        env_var("SANDBOX_EXECUTOR_TOKEN_FILE", format!("{TOKEN_DIR}/{TOKEN_KEY}")),
        env_var("SANDBOX_EXECUTOR_SOCKET", format!("{CONTAINER_SOCKET_DIR}/{SOCKET_FILE_NAME}")),
        env_var("SANDBOX_EXECUTOR_WORKSPACE", WORKSPACE_DIR.into()),
    ];
    env.extend(spec.executor_env.iter().map(|(k, v)| env_var(k, v.clone())));
    let cpu = Quantity(spec.cpu.to_string());
    let memory = quantity(spec.memory);
    let container = Container {
        name: EXECUTOR_CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.as_str().into()),
        command: Some(vec![EXECUTOR_PATH.into()]),
        args: Some(vec!["serve".into()]),
        working_dir: Some(WORKSPACE_DIR.into()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(EXECUTOR_PORT_NAME.into()),
            container_port: i32::from(cfg.executor_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        // The executor opens its TCP port only after proving its sandbox works, so an open port
        // means ready.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String(EXECUTOR_PORT_NAME.into()),
                host: None,
            }),
            period_seconds: Some(1),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), cpu.clone()),
                ("memory".to_owned(), memory.clone()),
                ("ephemeral-storage".to_owned(), quantity(cfg.ephemeral_storage_limit)),
            ])),
            requests: Some(BTreeMap::from([("cpu".to_owned(), cpu), ("memory".to_owned(), memory)])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            run_as_non_root: Some(true),
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            read_only_root_filesystem: Some(true),
            seccomp_profile: Some(seccomp.clone()),
            app_armor_profile: app_armor,
            // bwrap mounts a fresh /proc per execution; the kernel refuses that under masked paths.
            proc_mount: Some(match cfg.proc_mount {
                ProcMount::Unmasked => "Unmasked".into(),
                ProcMount::Default => "Default".into(),
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("workspace", WORKSPACE_DIR, false),
            mount("tmp", "/tmp", false),
            mount("run", CONTAINER_SOCKET_DIR, false),
            mount("token", TOKEN_DIR, true),
        ]),
        ..Default::default()
    };
    Ok(PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECS),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        host_users: Some(cfg.host_users),
        dns_policy: Some("None".into()),
        dns_config: Some(PodDNSConfig {
            nameservers: Some(vec![NO_DNS_NAMESERVER.into()]),
            ..Default::default()
        }),
        runtime_class_name: cfg.runtime_class_name.clone(),
        image_pull_secrets: (!cfg.image_pull_secrets.is_empty()).then(|| {
            cfg.image_pull_secrets.iter().map(|n| LocalObjectReference { name: n.clone() }).collect()
        }),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            fs_group: Some(uid),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(seccomp),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Which pods may reach the executors: the control plane's namespace and pod labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneSelector {
    /// The control plane's namespace.
    pub namespace: String,
    /// Labels every control plane pod carries.
    pub pod_labels: BTreeMap<String, String>,
}

/// The NetworkPolicy for every sandbox pod in `namespace`: no egress at all, and ingress only
/// from the control plane's pods, only to the executor's `port`. The Helm chart renders the same
/// policy (a test compares them).
pub fn network_policy(namespace: &str, control_plane: &ControlPlaneSelector, port: u16) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some("sandbox-isolation".into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(APP_NAME_LABEL.to_owned(), APP_NAME.to_owned())])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(labels::MANAGED.to_owned(), "true".to_owned())])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            // No egress rule: nothing may leave a sandbox pod, not even DNS.
            egress: None,
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            control_plane.namespace.clone(),
                        )])),
                        match_expressions: None,
                    }),
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(control_plane.pod_labels.clone()),
                        match_expressions: None,
                    }),
                    ip_block: None,
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
        }),
    }
}

fn env_var(name: &str, value: String) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value), value_from: None }
}

fn quantity(q: sandbox_core::MemoryQuantity) -> Quantity {
    Quantity(q.to_string())
}

/// A label value: at most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends; or empty.
pub fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// A label key: an optional DNS subdomain prefix and `/`, then a non-empty name like a value.
pub fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(super::config::is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_dns_labels_and_keep_names_apart() {
        assert_eq!(pod_name("sandbox-abc"), "sandbox-abc");
        let a = pod_name("sandbox-sess_AB");
        let b = pod_name("sandbox-sess-ab");
        assert!(is_dns_label(&a), "{a}");
        assert!(a.starts_with("sandbox-sess-ab-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, pod_name("sandbox-sess_AB"), "deterministic");
        let long = pod_name(&format!("sandbox-{}", "X".repeat(80)));
        assert!(is_dns_label(&long) && long.len() <= 63, "{long}");
        assert!(is_dns_label(&pod_name("___")), "{}", pod_name("___"));
    }

    #[test]
    fn names_derive_from_the_pod() {
        let n = Names::for_sandbox("sandbox-x");
        assert_eq!(
            (n.pod.as_str(), n.secret.as_str(), n.pvc.as_str()),
            ("sandbox-x", "sandbox-x-token", "sandbox-x-workspace")
        );
        assert_eq!(Names::for_pod("sandbox-x"), n);
    }

    #[test]
    fn label_syntax() {
        assert!(is_label_key("io.sandbox.session") && is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("a/") && !is_label_key("Bad Prefix/x") && !is_label_key(""));
        assert!(is_label_value("sess_abc") && is_label_value(""));
        assert!(!is_label_value("-a") && !is_label_value("a b") && !is_label_value(&"a".repeat(64)));
    }

    #[test]
    fn refuses_labels_kubernetes_would_refuse() {
        let mut spec = SandboxSpec::new("sandbox-x", "img", "/w".into(), "/r".into());
        spec.labels.insert(labels::SESSION.into(), "x".repeat(64));
        let err = build(&spec, &KubernetesConfig::default(), "t").unwrap_err();
        assert!(matches!(&err, RuntimeError::Invalid(m) if m.contains(labels::SESSION)), "{err}");
    }
}
