//! The sections of the settings (`[limits]`, `[capacity]`, `[storage]`, `[dependencies]`,
//! `[pools]`, `[executor]`, `[lifecycle]`) and their defaults.

use sandbox_core::{CpuQuantity, MemoryQuantity};
use serde::{Deserialize, Serialize};

/// The runtime backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// One hardened container per session on the local Docker daemon.
    Docker,
    /// One pod per session in a Kubernetes namespace.
    Kubernetes,
}

/// Bounds on requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest file upload, MiB.
    pub max_upload_mb: u64,
    /// Largest `code`, bytes.
    pub max_code_bytes: usize,
    /// Largest JSON request body, bytes.
    pub max_request_bytes: usize,
    /// Most CPU cores a session may ask for.
    pub max_cpu: CpuQuantity,
    /// Most memory a session may ask for.
    pub max_memory: MemoryQuantity,
    /// Most disk a session may ask for.
    pub max_disk: MemoryQuantity,
    /// Longest session idle timeout, seconds.
    pub max_session_timeout_sec: u32,
    /// Longest execution timeout, seconds.
    pub max_execution_timeout_sec: u32,
    /// How long creating a sandbox may take, seconds.
    pub sandbox_start_timeout_sec: u64,
    /// Most environment variables per session.
    pub max_env_vars: usize,
    /// How a session's `disk` is enforced: `loop` (a size-limited ext4 image per workspace,
    /// loop-mounted; needs root) or `none` (not enforced).
    pub disk_enforcement: DiskEnforcement,
}

/// How workspace disk limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskEnforcement {
    /// A sparse ext4 image of the session's size, loop-mounted as its workspace.
    Loop,
    /// No limit beyond the host filesystem.
    None,
}

/// Admission limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capacity {
    /// Most live sessions in all (0: as many as the host's memory allows).
    pub max_sessions: u64,
    /// Most live sessions per API key (429 past it).
    pub max_sessions_per_key: u64,
    /// Most executions running at once in one session (429 past it).
    pub max_executions_per_session: usize,
    /// How far the sum of sessions' memory limits may exceed the host's memory (idle sandboxes
    /// use a few MiB of their limit).
    pub memory_overcommit: f64,
    /// Most workspace disk the live sessions of one API key may hold in all (429 past it);
    /// `0` (`None`): no limit per key.
    #[serde(with = "zero_is_none")]
    pub max_disk_per_key: Option<MemoryQuantity>,
    /// How far the sum of live sessions' disk sizes (and running installs' staging space) may
    /// exceed the size of the filesystem holding the data directory (workspaces are sparse
    /// images). Docker only.
    pub disk_overcommit: f64,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            max_sessions: 0,
            max_sessions_per_key: 100,
            max_executions_per_session: 8,
            memory_overcommit: 16.0,
            max_disk_per_key: Some(MemoryQuantity::from_mib(100 << 10).expect("non-zero")),
            disk_overcommit: 1.0,
        }
    }
}

/// Workspace storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// `local`: the workspace lives on the host (or the pod's volume) only. `s3`: every file an
    /// execution changes is also written to an S3-compatible bucket before the execution is
    /// reported finished, a new sandbox is restored from the bucket, and the files API works
    /// from the bucket while the sandbox is not running.
    pub mode: StorageMode,
    /// The bucket, for `s3` (`SANDBOX_STORAGE__S3__ENDPOINT`, `__BUCKET`, `__ACCESS_KEY_ID`,
    /// `__SECRET_ACCESS_KEY`, ...).
    pub s3: sandbox_storage::S3Settings,
    /// In `s3` mode with `s3.public_endpoint` set, a download of a stopped session's file of at
    /// least this many MiB is answered with a redirect (307) to a presigned URL on the public
    /// endpoint instead of passing through the server. Default 16.
    pub presign_min_mb: u64,
    /// How long such a presigned URL is valid, in seconds (1 to 604800). Default 300.
    pub presign_ttl_secs: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            mode: StorageMode::Local,
            s3: sandbox_storage::S3Settings::default(),
            presign_min_mb: 16,
            presign_ttl_secs: 300,
        }
    }
}

/// Python package installs. Each install runs pip in a short-lived installer container of the
/// session's template, writing into the session's package directory that its sandbox mounts
/// read-only. The installer joins no network: it reaches the index through the egress proxy,
/// which lets it reach only the index's host and the `download_hosts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dependencies {
    /// The index used when a session names none. Default `https://pypi.org/simple/`. Always
    /// allowed.
    pub default_index_url: String,
    /// Other package indexes sessions may name (`python_package_index_url`), besides the
    /// default one; any other is refused with 422 `index_not_allowed` before an installer
    /// starts. Each entry is `scheme://host[:port]/path`: a URL matches when its scheme and
    /// host are the entry's (`*.corp.example` matches the names below `corp.example`), its port
    /// is the entry's (`:*` matches any port), and its path lies under the entry's path;
    /// credentials in a URL do not take part. In the environment: a comma-separated list.
    /// Default: empty (only the default index).
    pub allowed_index_urls: Vec<String>,
    /// `host:port` patterns installers may download package files from besides the index's
    /// own host and port (an index page may link its files elsewhere: PyPI's are on
    /// `files.pythonhosted.org`). Addresses are judged by `egress.allowed_addresses` like any
    /// other egress. In the environment: a comma-separated list. Default
    /// `["files.pythonhosted.org:443"]`.
    pub download_hosts: Vec<sandbox_egress::Pattern>,
    /// Seconds an install may take when the request does not say (`install_timeout`).
    /// Default 300.
    pub install_timeout_sec: u32,
    /// Longest `install_timeout` a request may ask for. Default 1800.
    pub max_install_timeout_sec: u32,
    /// Memory of an installer container. Default `1Gi`.
    pub memory: MemoryQuantity,
    /// CPU of an installer container. Default `1`.
    pub cpu: CpuQuantity,
    /// Largest a session's installed packages may be, MiB; a bigger install fails and leaves
    /// the previous packages in place. Default 2048.
    pub max_size_mb: u64,
    /// Let pip build packages from source (running their build scripts, with network, in the
    /// installer). Default `false`: wheels only, so no package code runs during an install.
    pub allow_source_builds: bool,
    /// pip's `--retries` for each request to the index. Default 2.
    pub pip_retries: u32,
    /// pip's `--timeout`: seconds to wait on the index before a retry. Default 15.
    pub pip_timeout_sec: u32,
}

impl Default for Dependencies {
    fn default() -> Self {
        Dependencies {
            default_index_url: "https://pypi.org/simple/".into(),
            allowed_index_urls: Vec::new(),
            download_hosts: vec!["files.pythonhosted.org:443".parse().expect("a valid pattern")],
            install_timeout_sec: 300,
            max_install_timeout_sec: 1800,
            memory: MemoryQuantity::from_mib(1024).expect("non-zero"),
            cpu: CpuQuantity::from_millis(1000).expect("non-zero"),
            max_size_mb: 2048,
            allow_source_builds: false,
            pip_retries: 2,
            pip_timeout_sec: 15,
        }
    }
}

/// How workspaces are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// On the sandbox's host only.
    #[default]
    Local,
    /// Also in an S3-compatible bucket.
    S3,
}

/// Warm pools.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pools {
    /// Ready sandboxes kept per template (0 disables pools).
    pub default_size: u32,
    /// Per-template sizes that differ from the default (`{"python-datascience" = 0}`).
    pub sizes: std::collections::BTreeMap<String, u32>,
    /// Sandboxes the pools start at once.
    pub max_starting: usize,
}

impl Default for Pools {
    fn default() -> Self {
        Pools { default_size: 2, sizes: std::collections::BTreeMap::new(), max_starting: 2 }
    }
}

impl Pools {
    /// The target size of a template's pool.
    pub fn size_of(&self, template_id: &str) -> u32 {
        self.sizes.get(template_id).copied().unwrap_or(self.default_size)
    }
}

/// Templates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateSettings {
    /// Let the Docker backend pull the image of a new or changed template that the host does
    /// not have (the template is `pulling` until it is there). `false`: such a template is
    /// refused with 422 `template_image_missing`. Default `true`. A cluster's nodes pull by
    /// themselves, so on Kubernetes templates are ready at once either way.
    pub pull_images: bool,
    /// Seconds a pull may take; one still running then is stopped and the template is
    /// `failed` with `pull_timed_out`. Default 1800.
    pub pull_timeout_sec: u64,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings { pull_images: true, pull_timeout_sec: 1800 }
    }
}

/// Per-execution limits enforced by the executor in each sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// Bytes of stdout and of stderr kept per execution.
    pub max_output_bytes: usize,
    /// Size of each execution's private `/tmp`, MiB.
    pub tmp_size_mb: u64,
    /// Processes per execution.
    pub max_processes: u64,
    /// Executions running at once in one sandbox.
    pub max_concurrent: usize,
    /// Code contexts per session (429 `too_many_contexts` past it; lost ones count until
    /// deleted).
    pub max_contexts: u32,
    /// Processes running at once in one session's sandbox (429 `too_many_processes` past it).
    pub max_running_processes: u32,
    /// Seconds a code context may stay idle before its interpreter is reclaimed (the context
    /// becomes `expired`; a restart brings it back, empty).
    pub context_idle_timeout_sec: u64,
    /// The host uid (and gid) sandbox containers and package installers run as. It must belong
    /// to no host account or group (checked at start with Docker): a host user of that uid
    /// would own every sandbox's files and processes.
    pub uid: u32,
}

/// Background loops (run by one replica at a time, the holder of the lifecycle lease).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lifecycle {
    /// Seconds between reconciliation passes (sandboxes vs sessions, idle and old sessions,
    /// pools, overdue executions).
    pub reconcile_interval_sec: u64,
    /// Longest a session lives, idle or not, seconds.
    pub max_session_lifetime_sec: u64,
    /// How long records of terminated and failed sessions are kept, seconds.
    pub retention_sec: u64,
    /// A session still `creating` after this many seconds is failed.
    pub creating_deadline_sec: u64,
    /// Lifetime of the lease that elects the replica running the loops, seconds.
    pub lease_ttl_sec: u64,
    /// On SIGTERM, how long running executions may take to finish before the server exits.
    pub shutdown_grace_sec: u64,
    /// Finished executions kept per session; older ones are deleted as new ones finish.
    pub kept_executions_per_session: u64,
    /// MiB of stored execution text (code, event, output, return value) kept per session; the
    /// oldest executions past it are deleted as new ones finish.
    pub kept_execution_mb_per_session: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_mb: 100,
            max_code_bytes: 102_400,
            max_request_bytes: 8 << 20,
            max_cpu: CpuQuantity::from_millis(4000).expect("non-zero"),
            max_memory: MemoryQuantity::from_mib(8 << 10).expect("non-zero"),
            max_disk: MemoryQuantity::from_mib(50 << 10).expect("non-zero"),
            max_session_timeout_sec: 86_400,
            max_execution_timeout_sec: 3600,
            sandbox_start_timeout_sec: 60,
            max_env_vars: 128,
            disk_enforcement: DiskEnforcement::Loop,
        }
    }
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            max_output_bytes: 1 << 20,
            tmp_size_mb: 128,
            max_processes: 64,
            max_concurrent: 16,
            max_contexts: 8,
            max_running_processes: 32,
            context_idle_timeout_sec: 1800,
            uid: sandbox_protocol::DEFAULT_SANDBOX_UID,
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            reconcile_interval_sec: 10,
            max_session_lifetime_sec: 86_400,
            retention_sec: 7 * 86_400,
            creating_deadline_sec: 180,
            lease_ttl_sec: 15,
            shutdown_grace_sec: 30,
            kept_executions_per_session: 1000,
            kept_execution_mb_per_session: 256,
        }
    }
}

/// Serde for an optional quantity written `0` when absent (a limit that is off).
mod zero_is_none {
    use sandbox_core::MemoryQuantity;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(q: &Option<MemoryQuantity>, s: S) -> Result<S::Ok, S::Error> {
        match q {
            Some(q) => q.serialize(s),
            None => s.serialize_str("0"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MemoryQuantity>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if s == "0" => Ok(None),
            serde_json::Value::Number(n) if n.as_u64() == Some(0) => Ok(None),
            other => MemoryQuantity::deserialize(other).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// The E2B-compatible API: the routes the E2B SDKs call, served beside the native API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct E2b {
    /// Whether the E2B routes are served.
    pub enabled: bool,
    /// The domain returned in every sandbox response; the SDKs address a sandbox's services at
    /// `<port>-<sandboxID>.<domain>` unless `E2B_SANDBOX_URL` is set. Never one of E2B's own
    /// domains (the SDKs would send sandbox tokens to E2B's cloud). Default `localhost`, whose
    /// subdomains resolve to the loopback address.
    pub domain: String,
    /// The envd version advertised to the SDKs, which switches SDK features on and off: only
    /// one whose features this server implements.
    pub envd_version: String,
    /// E2B template names to our templates (`base`, `code-interpreter-v1`); a name not listed
    /// is taken as one of our template ids.
    pub template_aliases: std::collections::BTreeMap<String, String>,
    /// A separate address for the sandbox (data-plane) routes; default: the API's listener,
    /// which tells the two apart per request.
    pub data_plane_listen: Option<std::net::SocketAddr>,
}

/// Domains the E2B SDKs treat as E2B's own.
pub const E2B_DOMAINS: &[&str] = &["e2b.app", "e2b.dev", "e2b.pro", "e2b-staging.dev", "e2b.local"];

impl Default for E2b {
    fn default() -> Self {
        E2b {
            enabled: true,
            domain: "localhost".into(),
            envd_version: "0.5.2".into(),
            template_aliases: [("base", "multi-language"), ("code-interpreter-v1", "python-datascience")]
                .into_iter()
                .map(|(a, t)| (a.to_owned(), t.to_owned()))
                .collect(),
            data_plane_listen: None,
        }
    }
}

impl E2b {
    /// Checks the domain and the advertised version.
    pub fn validate(&self) -> Result<(), String> {
        let d = self.domain.to_ascii_lowercase();
        let valid = !d.is_empty()
            && d.len() <= 200
            && d.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
            });
        if !valid {
            return Err(format!("e2b.domain: {:?} is not a domain name", self.domain));
        }
        if E2B_DOMAINS.iter().any(|e| d == *e || d.ends_with(&format!(".{e}"))) {
            return Err(format!(
                "e2b.domain: {d} is one of E2B's own domains; the SDKs would send sandbox tokens there"
            ));
        }
        let parts: Vec<&str> = self.envd_version.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("e2b.envd_version: {:?} is not a version like 0.4.0", self.envd_version));
        }
        if self.envd_version.starts_with("0.0.") {
            return Err("e2b.envd_version: the SDKs refuse versions below 0.1.0".into());
        }
        Ok(())
    }
}
