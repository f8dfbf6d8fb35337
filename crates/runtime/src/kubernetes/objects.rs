//! The Kubernetes objects of one sandbox, as pure functions of its spec and the settings: the
//! token Secret, the optional workspace claim and the hardened Pod; and the NetworkPolicy that
//! isolates every sandbox. No I/O here, so all of it is unit- and snapshot-tested.

use super::config::{AppArmor, KubernetesConfig, ProcMount, SeccompProfile, WorkspaceVolume, is_dns_label};
use crate::RuntimeError;
use crate::spec::{SandboxSpec, labels};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, KeyToPath,
    LocalObjectReference, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodDNSConfig, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile as K8sSeccompProfile, Secret, SecretVolumeSource, SecurityContext,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::NetworkPolicyEgressRule;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sandbox_protocol::contract::{
    CONTAINER_SOCKET_DIR, EGRESS_DIR, EXECUTOR_PATH, SOCKET_FILE_NAME, WORKSPACE_DIR, env as executor_env,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The executor's container in every sandbox pod.
pub const EXECUTOR_CONTAINER: &str = "executor";
/// The name of the executor's port.
pub const EXECUTOR_PORT_NAME: &str = "executor";
/// The key of the token in the token Secret.
pub const TOKEN_KEY: &str = "token";
/// Where the token Secret is mounted; bwrap never exposes it to user code.
pub const TOKEN_DIR: &str = "/run/sandbox-token";
/// The key of the egress credential in the token Secret (when the pod may use the proxy).
pub const EGRESS_CREDENTIAL_KEY: &str = "egress";
/// The name of the egress proxy Service's port sandbox pods are given.
pub const EGRESS_PROXY_PORT_NAME: &str = "proxy";
/// `app.kubernetes.io/name` of every sandbox object (and the NetworkPolicy's pod selector).
pub const APP_NAME: &str = "sandbox";
/// The standard label key for [`APP_NAME`].
pub const APP_NAME_LABEL: &str = "app.kubernetes.io/name";
/// Resolving names fails at once inside a sandbox pod: the API requires a nameserver with
/// `dnsPolicy: None`, and nothing listens on the pod's own loopback.
pub const NO_DNS_NAMESERVER: &str = "127.0.0.1";
/// Seconds the executor gets after SIGTERM to end running executions.
pub const TERMINATION_GRACE_SECS: i64 = 5;
/// Size of the memory-backed directory the executor puts its Unix socket in (and the one it
/// puts the egress socket in).
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

    /// Where the objects of `sandbox_name` may be: its names, then the names the first scheme
    /// gave it (objects made before names were hashes; see [`legacy_pod_name`]). The second
    /// may hold another sandbox's objects, so only an object that [`owner`] says belongs to
    /// `sandbox_name` may be used.
    pub(crate) fn candidates(sandbox_name: &str) -> [Self; 2] {
        [Self::for_sandbox(sandbox_name), Self::for_pod(&legacy_pod_name(sandbox_name))]
    }
}

/// What every pod name starts with: not `sandbox-`, which begins every sandbox name the server
/// makes (`sandbox-<session id>`), so a sandbox name passed where an id belongs names no pod.
pub const POD_NAME_PREFIX: &str = "sbx-";
/// Hex digits of the name hash in a pod name: 160 bits of SHA-256.
const NAME_HASH_HEX: usize = 40;

/// The pod name for a sandbox name: [`POD_NAME_PREFIX`] and the first 160 bits of the SHA-256 of
/// the whole name, in hex. Every sandbox name gets a name of the same shape, so no name can be
/// chosen to equal another sandbox's (that needs a SHA-256 collision), and it is deterministic,
/// so a restarted control plane finds the pod from the name alone. The sandbox name itself is
/// kept in the objects' `io.sandbox.sandbox` annotation, which every lookup compares.
pub fn pod_name(sandbox_name: &str) -> String {
    format!("{POD_NAME_PREFIX}{}", name_hash(sandbox_name))
}

/// The first [`NAME_HASH_HEX`] hex digits of the SHA-256 of `s`.
fn name_hash(s: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    digest.as_ref()[..NAME_HASH_HEX / 2].iter().map(|b| format!("{b:02x}")).collect()
}

/// The pod name the first naming scheme gave a sandbox: the name itself when it was a DNS label,
/// otherwise a lowercase form with 32 bits of FNV-1a. Not unique (`sandbox-sess_x` and
/// `sandbox-sess-x-998f3f2a` both get `sandbox-sess-x-998f3f2a`); used only to find pods made
/// before names were hashes, and only together with the owner check.
fn legacy_pod_name(sandbox_name: &str) -> String {
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

/// FNV-1a, as the first naming scheme computed it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// One kind of a sandbox's objects, and which of its [`Names`] it goes by.
pub trait SandboxObject: kube::Resource {
    /// What to call the kind in messages.
    const WHAT: &'static str;

    /// This kind's name among `names`.
    fn name_in(names: &Names) -> &str;
}

impl SandboxObject for Pod {
    const WHAT: &'static str = "pod";

    fn name_in(names: &Names) -> &str {
        &names.pod
    }
}

impl SandboxObject for Secret {
    const WHAT: &'static str = "secret";

    fn name_in(names: &Names) -> &str {
        &names.secret
    }
}

impl SandboxObject for PersistentVolumeClaim {
    const WHAT: &'static str = "claim";

    fn name_in(names: &Names) -> &str {
        &names.pvc
    }
}

/// The sandbox `obj` belongs to: the name in its `io.sandbox.sandbox` annotation, if it is a
/// managed object and its own name is one that sandbox's objects of its kind get (now or under
/// the first scheme). `None` for anything else, which the backend never reads, changes or
/// deletes.
pub fn owner<K: SandboxObject>(obj: &K) -> Option<&str> {
    let meta = obj.meta();
    let managed = meta.labels.as_ref()?.get(labels::MANAGED).is_some_and(|v| v == "true");
    let sandbox = meta.annotations.as_ref()?.get(labels::SANDBOX)?;
    let name = meta.name.as_deref()?;
    (managed && Names::candidates(sandbox).iter().any(|n| K::name_in(n) == name)).then_some(sandbox.as_str())
}

/// The value a label gets for `value`: the value itself when Kubernetes accepts it, otherwise
/// [`HASHED_LABEL_PREFIX`] and a hash of it (the value itself is then kept in an annotation of
/// the same key). Selecting on a label only narrows a search: the backend compares the full
/// values ([`spec_labels`]) before it uses what it found.
pub fn label_value(value: &str) -> String {
    if is_label_value(value) {
        value.to_owned()
    } else {
        format!("{HASHED_LABEL_PREFIX}{}", name_hash(value))
    }
}

/// What a label value that Kubernetes would refuse (longer than 63 characters, or characters
/// or ends a label value cannot have) is replaced with, before a hash of it.
pub const HASHED_LABEL_PREFIX: &str = "sha256-";

/// The labels of an object as its spec gave them: each label whose annotation of the same key
/// holds a value that [`label_value`] turns into the label's value reports that value instead.
/// (The `io.sandbox.sandbox` label, the pod's name, stays: its annotation is the sandbox name.)
pub fn spec_labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    let mut all = meta.labels.clone().unwrap_or_default();
    if let Some(annotations) = &meta.annotations {
        for (k, v) in all.iter_mut() {
            if let Some(full) = annotations.get(k)
                && label_value(full) == *v
            {
                v.clone_from(full);
            }
        }
    }
    all
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

/// How a sandbox pod reaches the egress proxy: the proxy Service's address and the pod's
/// credential (which names the pod, under the key the proxy holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressAccess {
    /// The proxy Service's cluster IP and port.
    pub proxy: SocketAddr,
    /// The pod's credential.
    pub credential: String,
}

/// Builds the objects of the sandbox `spec` with the executor token `token`, and with `egress`
/// the means to reach the egress proxy: the credential beside the token in the Secret, the
/// proxy's address in the executor's environment, and a directory of the executor's own at
/// `EGRESS_DIR` for the socket it serves there. Fails when a label key of the spec is not a
/// valid Kubernetes label key; values Kubernetes would refuse are hashed ([`label_value`]).
///
/// Fields of [`SandboxSpec`] that name host paths (`workspace_dir`, `socket_dir`, `deps_dir`,
/// `egress_dir`) mean nothing in a cluster and are not used; `pids_limit` is the kubelet's
/// per-pod limit (`--pod-max-pids`) on Kubernetes.
pub fn build(
    spec: &SandboxSpec,
    cfg: &KubernetesConfig,
    token: &str,
    egress: Option<&EgressAccess>,
) -> Result<SandboxObjects, RuntimeError> {
    let names = Names::for_sandbox(&spec.name);
    let meta = metadata(spec, cfg, &names)?;
    let mut data = BTreeMap::from([(TOKEN_KEY.to_owned(), ByteString(token.as_bytes().to_vec()))]);
    if let Some(egress) = egress {
        data.insert(EGRESS_CREDENTIAL_KEY.to_owned(), ByteString(egress.credential.as_bytes().to_vec()));
    }
    let secret = Secret {
        metadata: ObjectMeta { name: Some(names.secret.clone()), ..meta.clone() },
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(data),
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
        spec: Some(pod_spec(spec, cfg, &names, egress)?),
        ..Default::default()
    };
    Ok(SandboxObjects { names, secret, pvc, pod })
}

/// Labels and annotations shared by a sandbox's objects.
fn metadata(spec: &SandboxSpec, cfg: &KubernetesConfig, names: &Names) -> Result<ObjectMeta, RuntimeError> {
    // The sandbox's own name, and label values Kubernetes would refuse, are kept verbatim here.
    let mut annotations = BTreeMap::new();
    let mut all = BTreeMap::new();
    for (k, v) in &spec.labels {
        if !is_label_key(k) {
            return Err(RuntimeError::Invalid(format!(
                "label key {k:?} is not a valid Kubernetes label key"
            )));
        }
        let value = label_value(v);
        if value != *v {
            annotations.insert(k.clone(), v.clone());
        }
        all.insert(k.clone(), value);
    }
    all.insert(APP_NAME_LABEL.into(), APP_NAME.into());
    all.insert(labels::MANAGED.into(), "true".into());
    all.insert(labels::SANDBOX.into(), names.pod.clone());
    annotations.insert(labels::SANDBOX.to_owned(), spec.name.clone());
    Ok(ObjectMeta {
        namespace: Some(cfg.namespace.clone()),
        labels: Some(all),
        annotations: Some(annotations),
        ..Default::default()
    })
}

fn pod_spec(
    spec: &SandboxSpec,
    cfg: &KubernetesConfig,
    names: &Names,
    egress: Option<&EgressAccess>,
) -> Result<PodSpec, RuntimeError> {
    let uid = i64::from(spec.uid);
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
    let secret_items = std::iter::once(TOKEN_KEY)
        .chain(egress.map(|_| EGRESS_CREDENTIAL_KEY))
        .map(|key| KeyToPath { key: key.into(), path: key.into(), mode: None })
        .collect();
    let mut volumes = vec![
        workspace,
        memory_dir("tmp", quantity(spec.tmp_size)),
        memory_dir("run", Quantity(RUN_DIR_SIZE.into())),
        Volume {
            name: "token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.secret.clone()),
                // Read-only for the owner and the pod's group (the sandbox uid reads it through fsGroup).
                default_mode: Some(0o440),
                items: Some(secret_items),
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
        env_var(executor_env::TCP, format!("0.0.0.0:{}", cfg.executor_port)),
        env_var(executor_env::TOKEN_FILE, format!("{TOKEN_DIR}/{TOKEN_KEY}")),
        env_var(executor_env::SOCKET, format!("{CONTAINER_SOCKET_DIR}/{SOCKET_FILE_NAME}")),
        env_var(executor_env::WORKSPACE, WORKSPACE_DIR.into()),
    ];
    let mut mounts = vec![
        mount("workspace", WORKSPACE_DIR, false),
        mount("tmp", "/tmp", false),
        mount("run", CONTAINER_SOCKET_DIR, false),
        mount("token", TOKEN_DIR, true),
    ];
    if let Some(egress) = egress {
        // The executor serves the egress socket in a directory of its own there, which each
        // execution gets read-only ([`sandbox_protocol::contract::EGRESS_DIR`]).
        volumes.push(memory_dir("egress", Quantity(RUN_DIR_SIZE.into())));
        mounts.push(mount("egress", EGRESS_DIR, false));
        env.push(env_var(executor_env::EGRESS_PROXY, egress.proxy.to_string()));
        env.push(env_var(
            executor_env::EGRESS_CREDENTIAL_FILE,
            format!("{TOKEN_DIR}/{EGRESS_CREDENTIAL_KEY}"),
        ));
    }
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
        volume_mounts: Some(mounts),
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

/// The egress proxy's pods, which sandbox pods may reach on `port` (the proxy container's port,
/// which NetworkPolicies see after the Service's translation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressProxySelector {
    /// The proxy's namespace and pod labels.
    pub pods: ControlPlaneSelector,
    /// The proxy's container port.
    pub port: u16,
}

/// Pods of `selector`'s namespace with its labels (one peer: namespace AND labels).
fn peer(selector: &ControlPlaneSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                selector.namespace.clone(),
            )])),
            match_expressions: None,
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector.pod_labels.clone()),
            match_expressions: None,
        }),
        ip_block: None,
    }
}

/// One TCP port.
fn tcp_port(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

/// The NetworkPolicy for every sandbox pod in `namespace`: ingress only from the control plane's
/// pods, only to the executor's `port`; egress only to the egress proxy's pods on their port,
/// when there is one, and otherwise none at all (not even DNS). The Helm chart renders the same
/// policy (a test compares them).
pub fn network_policy(
    namespace: &str,
    control_plane: &ControlPlaneSelector,
    port: u16,
    egress_proxy: Option<&EgressProxySelector>,
) -> NetworkPolicy {
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
            egress: egress_proxy.map(|proxy| {
                vec![NetworkPolicyEgressRule {
                    to: Some(vec![peer(&proxy.pods)]),
                    ports: Some(vec![tcp_port(proxy.port)]),
                }]
            }),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![peer(control_plane)]),
                ports: Some(vec![tcp_port(port)]),
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
    fn pod_names_are_one_fixed_length_hash_of_the_whole_name() {
        let names = [
            "sandbox-sess_x",
            "sandbox-sess-x-998f3f2a",
            "sandbox-sess_X",
            "sandbox-abc",
            "___",
            &format!("sandbox-{}", "X".repeat(80)),
        ];
        let pods: Vec<String> = names.iter().map(|n| pod_name(n)).collect();
        for p in &pods {
            assert!(is_dns_label(p) && p.starts_with(POD_NAME_PREFIX), "{p}");
            assert_eq!(p.len(), POD_NAME_PREFIX.len() + NAME_HASH_HEX, "{p}");
            assert!(is_label_value(p), "the io.sandbox.sandbox label holds it: {p}");
        }
        let distinct: std::collections::BTreeSet<&String> = pods.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{pods:?}");
        assert_eq!(pods[0], pod_name("sandbox-sess_x"), "deterministic");
        assert_eq!(pod_name("a"), "sbx-ca978112ca1bbdcafac231b39a23dc4da786eff8", "SHA-256 of the name");
        // The names the server gives sandboxes never are pod names.
        assert!(!pod_name("x").starts_with("sandbox-"));
    }

    #[test]
    fn the_first_scheme_is_kept_for_finding_old_pods() {
        assert_eq!(legacy_pod_name("sandbox-sess_Abc123"), "sandbox-sess-abc123-1e16cff6");
        assert_eq!(
            legacy_pod_name("sandbox-sess_x"),
            legacy_pod_name("sandbox-sess-x-998f3f2a"),
            "why it went"
        );
        assert_eq!(legacy_pod_name("sandbox-abc"), "sandbox-abc");
        let [now, then] = Names::candidates("sandbox-sess_x");
        assert_eq!(
            (now, then.pod.as_str()),
            (Names::for_sandbox("sandbox-sess_x"), "sandbox-sess-x-998f3f2a")
        );
    }

    #[test]
    fn names_derive_from_the_pod() {
        let n = Names::for_sandbox("sandbox-x");
        let pod = pod_name("sandbox-x");
        assert_eq!(
            (n.pod.clone(), n.secret.clone(), n.pvc.clone()),
            (pod.clone(), format!("{pod}-token"), format!("{pod}-workspace"))
        );
        assert_eq!(Names::for_pod(&pod), n);
        assert!(n.pvc.len() <= 63, "object names stay short: {}", n.pvc);
    }

    fn object(name: &str, sandbox: Option<&str>, managed: bool) -> Secret {
        let mut meta = ObjectMeta { name: Some(name.into()), ..Default::default() };
        if managed {
            meta.labels = Some(BTreeMap::from([(labels::MANAGED.to_owned(), "true".to_owned())]));
        }
        meta.annotations = sandbox.map(|s| BTreeMap::from([(labels::SANDBOX.to_owned(), s.to_owned())]));
        Secret { metadata: meta, ..Default::default() }
    }

    #[test]
    fn an_object_belongs_to_the_sandbox_its_name_derives_from() {
        let mine = Names::for_sandbox("sandbox-sess_x");
        assert_eq!(owner(&object(&mine.secret, Some("sandbox-sess_x"), true)), Some("sandbox-sess_x"));
        // An old object, named by the first scheme.
        let old = "sandbox-sess-x-998f3f2a-token";
        assert_eq!(owner(&object(old, Some("sandbox-sess_x"), true)), Some("sandbox-sess_x"));
        // A name that is not its sandbox's, a name of another kind, unmanaged, unannotated.
        assert_eq!(owner(&object(&mine.secret, Some("sandbox-sess_y"), true)), None);
        assert_eq!(owner(&object(&mine.pod, Some("sandbox-sess_x"), true)), None);
        assert_eq!(owner(&object(&mine.secret, Some("sandbox-sess_x"), false)), None);
        assert_eq!(owner(&object(&mine.secret, None, true)), None);
        let pod =
            Pod { metadata: object(&mine.pod, Some("sandbox-sess_x"), true).metadata, ..Default::default() };
        assert_eq!(owner(&pod), Some("sandbox-sess_x"));
    }

    #[test]
    fn label_values_kubernetes_would_refuse_are_hashed_and_kept_in_annotations() {
        assert_eq!(label_value("sess_Abc"), "sess_Abc");
        for bad in ["_sess", "sess-", &"a".repeat(64), "a b", "a,b=c"] {
            let v = label_value(bad);
            assert!(is_label_value(&v) && v.starts_with(HASHED_LABEL_PREFIX), "{bad}: {v}");
        }
        assert_ne!(label_value(&"a".repeat(64)), label_value(&"a".repeat(65)));

        let long = "s".repeat(64);
        let mut spec = SandboxSpec::new("sandbox-x", "img", "/w".into(), "/r".into());
        spec.labels.insert(labels::SESSION.into(), long.clone());
        spec.labels.insert(labels::TEMPLATE.into(), "python-basic".into());
        let meta = build(&spec, &KubernetesConfig::default(), "t", None).unwrap().pod.metadata;
        let (l, a) = (meta.labels.as_ref().unwrap(), meta.annotations.as_ref().unwrap());
        assert_eq!(l[labels::SESSION], label_value(&long));
        assert_eq!(a[labels::SESSION], long);
        assert!(!a.contains_key(labels::TEMPLATE), "valid values are not repeated");
        let restored = spec_labels(&meta);
        assert_eq!(
            (restored[labels::SESSION].as_str(), restored[labels::TEMPLATE].as_str()),
            (long.as_str(), "python-basic")
        );
        assert_eq!(restored[labels::SANDBOX], pod_name("sandbox-x"), "the pod name, not the annotation");
    }

    /// The executor in the pod gets the settings the control plane gives every sandbox (code
    /// contexts, an interpreter to pre-start in a pool sandbox) besides its own listener's.
    #[test]
    fn the_executor_gets_the_sandboxs_settings() {
        let mut spec = SandboxSpec::new("sandbox-x", "img", "/w".into(), "/r".into());
        spec.executor_env.insert(executor_env::MAX_CONTEXTS.into(), "3".into());
        spec.executor_env.insert(executor_env::PRESTART.into(), "python".into());
        let pod = build(&spec, &KubernetesConfig::default(), "t", None).unwrap().pod;
        let container = &pod.spec.unwrap().containers[0];
        let env: BTreeMap<_, _> = container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(env[executor_env::MAX_CONTEXTS], "3");
        assert_eq!(env[executor_env::PRESTART], "python");
        assert!(env[executor_env::TCP].starts_with("0.0.0.0:"), "{env:?}");
    }

    #[test]
    fn label_syntax() {
        assert!(is_label_key("io.sandbox.session") && is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("a/") && !is_label_key("Bad Prefix/x") && !is_label_key(""));
        assert!(is_label_value("sess_abc") && is_label_value(""));
        assert!(!is_label_value("-a") && !is_label_value("a b") && !is_label_value(&"a".repeat(64)));
    }

    #[test]
    fn refuses_label_keys_kubernetes_would_refuse() {
        let mut spec = SandboxSpec::new("sandbox-x", "img", "/w".into(), "/r".into());
        spec.labels.insert("not a key".into(), "x".into());
        let err = build(&spec, &KubernetesConfig::default(), "t", None).unwrap_err();
        assert!(matches!(&err, RuntimeError::Invalid(m) if m.contains("not a key")), "{err}");
    }
}
