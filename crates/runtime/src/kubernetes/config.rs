//! Settings of the Kubernetes backend: the `[kubernetes]` section of the server's TOML file.
//!
//! Every field has a default (`#[serde(default)]`), names are the TOML keys, and unknown keys are
//! refused. `docs/kubernetes.md` explains each one; the Helm chart writes the same keys.

use crate::RuntimeError;
use sandbox_core::MemoryQuantity;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Settings of [`super::KubernetesRuntime`].
///
/// None of the `Option` fields is skipped when serialised: the server finds the names an
/// environment variable may set (`SANDBOX_KUBERNETES__NAMESPACE`) in the serialised defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Namespace the sandbox pods, token Secrets and workspace claims live in.
    pub namespace: String,
    /// How to find the cluster and credentials.
    pub client: ClientSource,
    /// The kubeconfig file for `client = "kubeconfig"` (default: `KUBECONFIG`, then
    /// `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context for `client = "kubeconfig"` (default: its current context).
    pub context: Option<String>,
    /// When the node pulls the template image.
    pub image_pull_policy: ImagePullPolicy,
    /// Secrets (in [`KubernetesConfig::namespace`]) holding registry credentials for the images.
    pub image_pull_secrets: Vec<String>,
    /// A RuntimeClass for sandbox pods, such as gVisor (`gvisor`) or Kata; none by default.
    pub runtime_class_name: Option<String>,
    /// The container seccomp profile. Only `Localhost` with the project's profile lets bwrap
    /// build its sandbox; `RuntimeDefault` forbids the namespace and mount calls it needs.
    pub seccomp_profile: SeccompProfile,
    /// The profile for `Localhost`, relative to the kubelet's seccomp directory
    /// (`/var/lib/kubelet/seccomp`); the chart's installer puts it there.
    pub seccomp_localhost_profile: String,
    /// The container's `/proc`: `Unmasked` so bwrap can mount a fresh one (needs
    /// `host_users = false` or the `ProcMountType` feature).
    pub proc_mount: ProcMount,
    /// Whether the pod shares the node's user namespace. `false` (the default) runs it in its own
    /// user namespace (`hostUsers: false`), which `proc_mount = "Unmasked"` requires.
    pub host_users: bool,
    /// The container's AppArmor profile: `Unconfined`, `RuntimeDefault` or `localhost/NAME`;
    /// unset leaves the node's default. Container runtimes' default AppArmor profiles deny
    /// `mount`, which bwrap needs, on nodes where AppArmor is enabled.
    pub app_armor_profile: Option<String>,
    /// Where `/workspace` lives.
    pub workspace_volume: WorkspaceVolume,
    /// Size of the workspace: the emptyDir's `sizeLimit` or the claim's storage request.
    pub workspace_size: MemoryQuantity,
    /// StorageClass of workspace claims (`pvc` mode), such as `juicefs-sc` (JuiceFS, as the
    /// Python control plane's production deployments use);
    /// unset uses the cluster's default class.
    pub storage_class_name: Option<String>,
    /// Access mode of workspace claims.
    pub workspace_access_mode: String,
    /// The container's `ephemeral-storage` limit (its writable layer and logs; `/tmp` is memory).
    pub ephemeral_storage_limit: MemoryQuantity,
    /// The port the executor listens on in the pod.
    pub executor_port: u16,
    /// How long a new pod may take until its executor answers, seconds. Keep it below the
    /// server's `limits.sandbox_start_timeout_sec` so this backend's more precise error wins.
    pub ready_timeout_secs: u64,
    /// The egress proxy's Service, `NAMESPACE/NAME`: every sandbox pod gets its cluster IP and
    /// its port named `proxy` (sandbox pods resolve no names), read when the pod is made, and a
    /// credential made with [`KubernetesConfig::egress_key_file`]. Unset: sandbox pods have no
    /// way out at all.
    pub egress_proxy_service: Option<String>,
    /// The file holding the key the control plane and the egress proxy share (at least 32
    /// bytes, a mounted Secret); required with `egress_proxy_service`.
    pub egress_key_file: Option<PathBuf>,
}

/// How the backend finds the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientSource {
    /// kube's inference: `KUBECONFIG` or `~/.kube/config`, else the pod's service account.
    #[default]
    Default,
    /// The pod's service account only (token and CA under
    /// `/var/run/secrets/kubernetes.io/serviceaccount`).
    InCluster,
    /// A kubeconfig file ([`KubernetesConfig::kubeconfig`], [`KubernetesConfig::context`]).
    Kubeconfig,
}

/// The container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ImagePullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node lacks the image.
    #[default]
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The value as the pod spec spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// The container's seccomp profile type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SeccompProfile {
    /// A profile file on the node (the project's `images/seccomp/sandbox.json`).
    #[default]
    Localhost,
    /// The container runtime's default. NOT sufficient for bwrap: it forbids `unshare`,
    /// `mount`, `pivot_root` and namespace flags on `clone`, so the executor refuses to start.
    /// Only useful with a RuntimeClass (gVisor, Kata) whose own kernel provides the boundary.
    RuntimeDefault,
}

/// The container's `procMount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProcMount {
    /// No masked or read-only paths in `/proc`; bwrap can mount a fresh procfs.
    #[default]
    Unmasked,
    /// The runtime's masked `/proc`; bwrap then cannot mount `/proc` and the executor refuses to
    /// start (unless a RuntimeClass changes that).
    Default,
}

/// Where `/workspace` lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WorkspaceVolume {
    /// An `emptyDir` on the node's disk, limited to [`KubernetesConfig::workspace_size`]; it goes
    /// with the pod.
    #[default]
    #[serde(rename = "emptyDir")]
    EmptyDir,
    /// A PersistentVolumeClaim per sandbox (`<pod>-workspace`) of
    /// [`KubernetesConfig::storage_class_name`], removed with the sandbox.
    #[serde(rename = "pvc")]
    Pvc,
}

/// An AppArmor profile as the pod spec spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppArmor {
    /// `Unconfined`.
    Unconfined,
    /// `RuntimeDefault`.
    RuntimeDefault,
    /// `Localhost` with a profile name loaded on the node.
    Localhost(String),
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            namespace: "sandbox-runtime".into(),
            client: ClientSource::Default,
            kubeconfig: None,
            context: None,
            image_pull_policy: ImagePullPolicy::IfNotPresent,
            image_pull_secrets: Vec::new(),
            runtime_class_name: None,
            seccomp_profile: SeccompProfile::Localhost,
            seccomp_localhost_profile: "profiles/sandbox.json".into(),
            proc_mount: ProcMount::Unmasked,
            host_users: false,
            app_armor_profile: None,
            workspace_volume: WorkspaceVolume::EmptyDir,
            workspace_size: MemoryQuantity::from_mib(1024).expect("non-zero"),
            storage_class_name: None,
            workspace_access_mode: "ReadWriteOnce".into(),
            ephemeral_storage_limit: MemoryQuantity::from_mib(1024).expect("non-zero"),
            executor_port: 8080,
            ready_timeout_secs: 50,
            egress_proxy_service: None,
            egress_key_file: None,
        }
    }
}

const ACCESS_MODES: [&str; 4] = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"];

impl KubernetesConfig {
    /// Checks what serde cannot: names Kubernetes would refuse, and combinations that cannot work.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |m: String| Err(RuntimeError::Invalid(format!("kubernetes.{m}")));
        if !is_dns_label(&self.namespace) {
            return invalid(format!("namespace {:?} is not a DNS label", self.namespace));
        }
        for name in
            self.image_pull_secrets.iter().chain(&self.runtime_class_name).chain(&self.storage_class_name)
        {
            if !is_dns_subdomain(name) {
                return invalid(format!("{name:?} is not a valid object name"));
            }
        }
        if self.seccomp_profile == SeccompProfile::Localhost
            && (self.seccomp_localhost_profile.is_empty() || self.seccomp_localhost_profile.starts_with('/'))
        {
            return invalid(
                "seccomp_localhost_profile must be a path relative to the kubelet's seccomp directory".into(),
            );
        }
        if self.proc_mount == ProcMount::Unmasked && self.host_users {
            return invalid("proc_mount = \"Unmasked\" needs host_users = false (a user namespace)".into());
        }
        self.app_armor()?;
        if !ACCESS_MODES.contains(&self.workspace_access_mode.as_str()) {
            return invalid(format!("workspace_access_mode must be one of {ACCESS_MODES:?}"));
        }
        if self.executor_port == 0 {
            return invalid("executor_port must not be 0".into());
        }
        if self.ready_timeout_secs == 0 {
            return invalid("ready_timeout_secs must not be 0".into());
        }
        match (&self.egress_proxy_service, &self.egress_key_file) {
            (Some(_), None) => return invalid("egress_proxy_service needs egress_key_file".into()),
            (None, Some(_)) => return invalid("egress_key_file is set without egress_proxy_service".into()),
            _ => {}
        }
        self.egress_proxy()?;
        Ok(())
    }

    /// The namespace and name of [`KubernetesConfig::egress_proxy_service`], when set.
    pub fn egress_proxy(&self) -> Result<Option<(&str, &str)>, RuntimeError> {
        let Some(service) = &self.egress_proxy_service else { return Ok(None) };
        match service.split_once('/') {
            Some((namespace, name)) if is_dns_label(namespace) && is_dns_label(name) => {
                Ok(Some((namespace, name)))
            }
            _ => Err(RuntimeError::Invalid(format!(
                "kubernetes.egress_proxy_service {service:?}: write NAMESPACE/NAME"
            ))),
        }
    }

    /// [`KubernetesConfig::ready_timeout_secs`] as a duration.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout_secs)
    }

    pub(crate) fn app_armor(&self) -> Result<Option<AppArmor>, RuntimeError> {
        Ok(match self.app_armor_profile.as_deref() {
            None => None,
            Some("Unconfined") => Some(AppArmor::Unconfined),
            Some("RuntimeDefault") => Some(AppArmor::RuntimeDefault),
            Some(other) => match other.strip_prefix("localhost/") {
                Some(name) if !name.is_empty() => Some(AppArmor::Localhost(name.to_owned())),
                _ => {
                    return Err(RuntimeError::Invalid(format!(
                        "kubernetes.app_armor_profile {other:?}: use Unconfined, RuntimeDefault or localhost/NAME"
                    )));
                }
            },
        })
    }
}

/// Whether `s` is a DNS-1123 label: 1-63 lowercase letters, digits and `-`, alphanumeric at
/// both ends (namespaces, pod names).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters (most
/// object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_the_seed_and_validate() {
        let c = KubernetesConfig::default();
        assert_eq!(c.namespace, "sandbox-runtime");
        assert_eq!(c.seccomp_profile, SeccompProfile::Localhost);
        assert_eq!(c.seccomp_localhost_profile, "profiles/sandbox.json");
        assert_eq!((c.proc_mount, c.host_users), (ProcMount::Unmasked, false));
        assert_eq!(c.executor_port, 8080);
        c.validate().unwrap();
    }

    #[test]
    fn every_field_is_visible_to_environment_overrides() {
        // The server finds settable names in the serialised defaults; a skipped `None` would hide
        // `SANDBOX_KUBERNETES__RUNTIME_CLASS_NAME`.
        let v = serde_json::to_value(KubernetesConfig::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "runtime_class_name",
            "storage_class_name",
            "kubeconfig",
            "context",
            "app_armor_profile",
            "egress_proxy_service",
            "egress_key_file",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert_eq!(v["workspace_size"], "1Gi");
        assert_eq!(v["workspace_volume"], "emptyDir");
        assert_eq!(v["client"], "default");
    }

    #[test]
    fn reads_a_partial_section_and_refuses_unknown_keys() {
        let c: KubernetesConfig = serde_json::from_value(json!({
            "namespace": "sbx", "workspace_volume": "pvc", "storage_class_name": "juicefs-sc",
            "workspace_size": "10Gi", "runtime_class_name": "gvisor", "client": "in-cluster",
            "image_pull_policy": "Always", "seccomp_profile": "RuntimeDefault",
        }))
        .unwrap();
        assert_eq!(c.workspace_volume, WorkspaceVolume::Pvc);
        assert_eq!(c.workspace_size.bytes(), 10 << 30);
        assert_eq!(c.client, ClientSource::InCluster);
        assert_eq!(c.executor_port, 8080, "unnamed keys keep their defaults");
        c.validate().unwrap();
        let err = serde_json::from_value::<KubernetesConfig>(json!({"namespce": "x"})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = serde_json::from_value::<KubernetesConfig>(json!({"workspace_size": "lots"})).unwrap_err();
        assert!(err.to_string().contains("lots"), "{err}");
    }

    #[test]
    fn refuses_what_kubernetes_would() {
        let bad = [
            KubernetesConfig { namespace: "Sandbox_NS".into(), ..Default::default() },
            KubernetesConfig { storage_class_name: Some("Juice FS".into()), ..Default::default() },
            KubernetesConfig { seccomp_localhost_profile: "/var/lib/x.json".into(), ..Default::default() },
            KubernetesConfig { host_users: true, ..Default::default() },
            KubernetesConfig { app_armor_profile: Some("unconfined".into()), ..Default::default() },
            KubernetesConfig { workspace_access_mode: "RWX".into(), ..Default::default() },
            KubernetesConfig { executor_port: 0, ..Default::default() },
            KubernetesConfig { ready_timeout_secs: 0, ..Default::default() },
            KubernetesConfig {
                egress_proxy_service: Some("sandbox-system/egress".into()),
                ..Default::default()
            },
            KubernetesConfig { egress_key_file: Some("/etc/key".into()), ..Default::default() },
            KubernetesConfig {
                egress_proxy_service: Some("egress".into()),
                egress_key_file: Some("/etc/key".into()),
                ..Default::default()
            },
            KubernetesConfig {
                egress_proxy_service: Some("Sandbox/egress".into()),
                egress_key_file: Some("/etc/key".into()),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(RuntimeError::Invalid(_))), "{c:?} passed");
        }
        let ok = KubernetesConfig {
            host_users: true,
            proc_mount: ProcMount::Default,
            app_armor_profile: Some("localhost/sandbox".into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        assert_eq!(ok.app_armor().unwrap(), Some(AppArmor::Localhost("sandbox".into())));
        let egress = KubernetesConfig {
            egress_proxy_service: Some("sandbox-system/sandbox-egress".into()),
            egress_key_file: Some("/etc/sandbox/egress/key".into()),
            ..Default::default()
        };
        egress.validate().unwrap();
        assert_eq!(egress.egress_proxy().unwrap(), Some(("sandbox-system", "sandbox-egress")));
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_label("sandbox-sess-1"));
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("juicefs-sc.example"));
        assert!(!is_dns_subdomain("a..b"));
    }
}
