//! Every setting of the control plane, with its default. Settings come from an optional TOML
//! file (`--config` or `SANDBOX_CONFIG`), then environment variables: `SANDBOX_<NAME>` for a
//! top-level setting (`SANDBOX_LISTEN`, `SANDBOX_API_KEY`, `SANDBOX_DATA_DIR`,
//! `SANDBOX_DATABASE_URL`, ...) and `SANDBOX_<SECTION>__<NAME>` inside a section
//! (`SANDBOX_LIMITS__MAX_UPLOAD_MB`). `docs/configuration.md` lists them all.

use sandbox_core::{CpuQuantity, MemoryQuantity};
pub use sandbox_daemon::LogFormat;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The prefix of every environment variable the server reads.
pub const ENV_PREFIX: &str = "SANDBOX_";

/// All settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the REST API listens on.
    pub listen: SocketAddr,
    /// An admin API key accepted in addition to stored keys. When no key exists at all, the
    /// server creates one on first start and stores it in `<data_dir>/admin-api-key`.
    pub api_key: Option<String>,
    /// Where the database (SQLite), workspaces and sandbox sockets live.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `mysql://USER:PASS@HOST/DB`; default SQLite in the data directory.
    pub database_url: Option<String>,
    /// Names this installation on the container runtime (a label on every sandbox); replicas
    /// sharing a database must share it. Default: derived from the database location.
    pub deployment_id: Option<String>,
    /// Log as `json` lines or `text`.
    pub log_format: LogFormat,
    /// Where sandboxes run: `docker` (this host) or `kubernetes` (a cluster).
    pub runtime: RuntimeKind,
    /// The Kubernetes backend's settings (with `runtime = "kubernetes"`).
    pub kubernetes: sandbox_runtime::kubernetes::KubernetesConfig,
    /// Bounds on what requests may ask for.
    pub limits: Limits,
    /// Settings passed to every sandbox's executor.
    pub executor: ExecutorSettings,
    /// Background work.
    pub lifecycle: Lifecycle,
    /// Admission: how many sessions and executions may exist.
    pub capacity: Capacity,
    /// Warm pools: sandboxes started ahead of demand.
    pub pools: Pools,
    /// Where workspaces are kept durably.
    pub storage: Storage,
    /// Python package installs for sessions.
    pub dependencies: Dependencies,
    /// `SANDBOX_*` environment variables that name no setting (ignored, and logged at start:
    /// client tools use names like `SANDBOX_URL` too).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

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
/// session's template (never in the sandbox, which has no network), writing into the session's
/// package directory that its sandbox mounts read-only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dependencies {
    /// The network installer containers join; it must reach the package index. Default
    /// `bridge` (Docker's default network). `host` reaches an index on the host's loopback;
    /// a user-defined network can limit egress to a proxy or mirror.
    pub network: String,
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
            network: "bridge".into(),
            default_index_url: "https://pypi.org/simple/".into(),
            allowed_index_urls: Vec::new(),
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

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8000".parse().expect("valid address"),
            api_key: None,
            data_dir: PathBuf::from("/var/lib/sandbox"),
            database_url: None,
            deployment_id: None,
            log_format: LogFormat::Json,
            runtime: RuntimeKind::Docker,
            kubernetes: Default::default(),
            limits: Limits::default(),
            executor: ExecutorSettings::default(),
            lifecycle: Lifecycle::default(),
            capacity: Capacity::default(),
            pools: Pools::default(),
            storage: Storage::default(),
            dependencies: Dependencies::default(),
            ignored_env: Vec::new(),
        }
    }
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

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file or an environment variable holds something invalid.
    #[error("invalid settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the file (if any), then applies `SANDBOX_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| SettingsError::Read { path: path.to_owned(), source })?;
                let parsed: toml::Table = toml::from_str(&text)
                    .map_err(|e| SettingsError::Invalid(format!("{}: {e}", path.display())))?;
                serde_json::to_value(parsed).map_err(|e| SettingsError::Invalid(e.to_string()))?
            }
            None => serde_json::json!({}),
        };
        let shape =
            serde_json::to_value(Settings::default()).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let mut ignored = Vec::new();
        for (key, value) in env {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else { continue };
            if name == "CONFIG" {
                continue;
            }
            let path: Vec<String> = name.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if path.iter().try_fold(&shape, |node, p| node.get(p)).is_none() {
                ignored.push(key);
                continue;
            }
            set_path(&mut tree, &shape, &path, &value)
                .map_err(|e| SettingsError::Invalid(format!("{key}: {e}")))?;
        }
        let mut settings: Settings =
            serde_json::from_value(tree).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        ignored.sort();
        settings.ignored_env = ignored;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let d = &self.dependencies;
        if d.install_timeout_sec == 0 || d.install_timeout_sec > d.max_install_timeout_sec {
            return Err(SettingsError::Invalid(
                "dependencies.install_timeout_sec: must be from 1 to dependencies.max_install_timeout_sec"
                    .into(),
            ));
        }
        sandbox_core::packages::index::validate_index_url(&d.default_index_url)
            .map_err(|e| SettingsError::Invalid(format!("dependencies.default_index_url: {e}")))?;
        sandbox_core::packages::index::IndexAllowList::new(&d.default_index_url, &d.allowed_index_urls)
            .map_err(|e| SettingsError::Invalid(format!("dependencies.allowed_index_urls: {e}")))?;
        if !(1..=604_800).contains(&self.storage.presign_ttl_secs) {
            return Err(SettingsError::Invalid("storage.presign_ttl_secs: must be 1 to 604800".into()));
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("sandbox.db").display()))
    }

    /// The deployment id in effect: the configured one, or 12 hex digits of a hash of the
    /// database location (without credentials), so replicas on one database agree.
    pub fn deployment_id(&self) -> String {
        if let Some(id) = &self.deployment_id {
            return id.clone();
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(sandbox_store::redact_credentials(&self.database_url()).as_bytes());
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

/// Sets `path` in a JSON tree to `raw`, read as a number or boolean where the default settings
/// (`shape`) have one there and as a string otherwise. Unknown names are caught later by
/// `deny_unknown_fields`.
fn set_path(
    tree: &mut serde_json::Value,
    shape: &serde_json::Value,
    path: &[String],
    raw: &str,
) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty name")?;
    let mut node = tree;
    for p in parents {
        node = node
            .as_object_mut()
            .ok_or("not a section")?
            .entry(p.clone())
            .or_insert_with(|| serde_json::json!({}));
    }
    let expected = path.iter().try_fold(shape, |node, p| node.get(p));
    let value = match expected {
        Some(serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
            serde_json::from_str(raw).map_err(|_| format!("{raw:?} is not a number or boolean"))?
        }
        // A list: a JSON array, or comma-separated values.
        Some(serde_json::Value::Array(_)) if raw.trim_start().starts_with('[') => {
            serde_json::from_str(raw).map_err(|_| format!("{raw:?} is not a JSON array"))?
        }
        Some(serde_json::Value::Array(_)) => serde_json::Value::Array(
            raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| v.into()).collect(),
        ),
        _ => serde_json::Value::String(raw.to_owned()),
    };
    node.as_object_mut().ok_or("not a section")?.insert(last.clone(), value);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_sensible() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(s.database_url(), "sqlite:///var/lib/sandbox/sandbox.db");
        assert_eq!(s.limits.max_upload_mb, 100);
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"0.0.0.0:9000\"\n[limits]\nmax_upload_mb = 5\n").unwrap();
        let s = Settings::load(
            Some(&f),
            env(&[
                ("SANDBOX_DATA_DIR", "/tmp/x"),
                ("SANDBOX_LIMITS__MAX_UPLOAD_MB", "7"),
                ("SANDBOX_API_KEY", "12345"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.limits.max_upload_mb, 7);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        // A numeric-looking key stays a string.
        assert_eq!(s.api_key.as_deref(), Some("12345"));
    }

    #[test]
    fn deployment_ids_ignore_credentials() {
        let a =
            Settings::load(None, env(&[("SANDBOX_DATABASE_URL", "mysql://u:p1@db:3306/sandbox")])).unwrap();
        let b =
            Settings::load(None, env(&[("SANDBOX_DATABASE_URL", "mysql://u:p2@db:3306/sandbox")])).unwrap();
        let c = Settings::load(None, env(&[("SANDBOX_DATABASE_URL", "mysql://u:p1@db:3306/other")])).unwrap();
        assert_eq!(a.deployment_id(), b.deployment_id());
        assert_ne!(a.deployment_id(), c.deployment_id());
        assert_eq!(a.deployment_id().len(), 12);
        assert_eq!(sandbox_store::redact_credentials("mysql://u:p@h/d"), "mysql://h/d");
        assert_eq!(sandbox_store::redact_credentials("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }

    /// The settings file the Kubernetes manifests (rendered from the Helm chart) give the server
    /// loads: every name in it is one the server knows.
    #[test]
    fn the_chart_configuration_loads() {
        let manifests = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/manifests/sandbox.yaml"
        ))
        .unwrap();
        let start = manifests.find("config.toml: |").expect("the ConfigMap holds config.toml");
        let mut lines = manifests[start..].lines().skip(1);
        let first = lines.next().unwrap();
        let indent = first.len() - first.trim_start().len();
        let body: Vec<&str> = std::iter::once(first)
            .chain(lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent))
            .map(|l| l.get(indent..).unwrap_or(""))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, body.join("\n")).unwrap();
        let s = Settings::load(Some(&file), env(&[("SANDBOX_STORAGE__MODE", "s3")])).unwrap();
        assert_eq!(s.runtime, RuntimeKind::Kubernetes);
        assert_eq!(s.storage.mode, StorageMode::S3);
    }

    /// Every setting, with its default, in `key = value` form (sections dotted).
    fn flattened(value: &serde_json::Value, prefix: &str, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() && !prefix.ends_with("sizes") => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flattened(v, &key, out);
                }
            }
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }

    /// `docs/configuration.md` names every setting (the `kubernetes` section in
    /// `docs/kubernetes.md`), so the documentation cannot fall behind the code.
    #[test]
    fn every_setting_is_documented() {
        let read = |doc: &str| {
            std::fs::read_to_string(format!("{}/../../docs/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let (config, kubernetes) = (read("configuration.md"), read("kubernetes.md"));
        let mut all = Vec::new();
        flattened(&serde_json::to_value(Settings::default()).unwrap(), "", &mut all);
        let missing: Vec<String> = all
            .iter()
            .filter(|(k, _)| match k.strip_prefix("kubernetes.") {
                Some(name) => !kubernetes.contains(&format!("`{name}`")),
                None => !config.contains(&format!("| `{k}` |")),
            })
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        assert!(missing.is_empty(), "undocumented settings:\n{}", missing.join("\n"));
        // And the default the table states is the real one.
        let wrong: Vec<String> = all
            .iter()
            .filter(|(k, v)| !k.starts_with("kubernetes.") && v != "null" && v != "{}" && v != "\"\"")
            .filter(|(k, v)| {
                let row = config.lines().find(|l| l.starts_with(&format!("| `{k}` |"))).unwrap_or_default();
                let default = row.split(" | ").nth(2).unwrap_or_default();
                default != format!("`{}`", v.trim_matches('"'))
            })
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        assert!(wrong.is_empty(), "documented defaults that differ from the code:\n{}", wrong.join("\n"));
    }

    #[test]
    fn lists_come_from_the_environment_comma_separated_or_as_json() {
        let s = Settings::load(
            None,
            env(&[(
                "SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS",
                "http://127.0.0.1:*/, https://*.corp.example/simple/",
            )]),
        )
        .unwrap();
        assert_eq!(
            s.dependencies.allowed_index_urls,
            ["http://127.0.0.1:*/", "https://*.corp.example/simple/"]
        );
        let s = Settings::load(
            None,
            env(&[("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", r#"["https://a.example/"]"#)]),
        )
        .unwrap();
        assert_eq!(s.dependencies.allowed_index_urls, ["https://a.example/"]);
        let bad = Settings::load(None, env(&[("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "ftp://x/")]));
        assert!(bad.is_err(), "an entry that is not an http(s) URL is refused at start");
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(Settings::load(None, env(&[("SANDBOX_LISTEN", "nowhere")])).is_err());
        let s =
            Settings::load(None, env(&[("SANDBOX_URL", "http://x"), ("SANDBOX_LIMITS__NOPE", "1")])).unwrap();
        assert_eq!(s.ignored_env, ["SANDBOX_LIMITS__NOPE", "SANDBOX_URL"]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "no_such_setting = 1\n").unwrap();
        assert!(Settings::load(Some(&f), env(&[])).is_err(), "unknown names in the file are errors");
        assert!(Settings::load(None, env(&[("SANDBOX_LIMITS__MAX_MEMORY", "lots")])).is_err());
    }
}
