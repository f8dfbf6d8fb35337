//! Every setting of the control plane, with its default. Settings come from an optional TOML
//! file (`--config` or `SANDBOX_CONFIG`), then environment variables: `SANDBOX_<NAME>` for a
//! top-level setting (`SANDBOX_LISTEN`, `SANDBOX_API_KEY`, `SANDBOX_DATA_DIR`,
//! `SANDBOX_DATABASE_URL`, ...) and `SANDBOX_<SECTION>__<NAME>` inside a section
//! (`SANDBOX_LIMITS__MAX_UPLOAD_MB`). `docs/configuration.md` lists them all.

mod sections;

pub use sandbox_daemon::LogFormat;
pub use sections::{
    Capacity, Dependencies, DiskEnforcement, E2b, ExecutorSettings, Lifecycle, Limits, Pools, RuntimeKind,
    Storage, StorageMode, TemplateSettings,
};
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
    /// Origins whose web pages may call the API from a browser (CORS), as
    /// `scheme://host[:port]`, or `*` for any; empty: none (no CORS headers are sent).
    pub cors_allowed_origins: Vec<String>,
    /// Put before the image name of each built-in template (`sandbox/python-basic:latest`) when
    /// it is first stored: a registry (`registry.example.com/`) or a second set of images built
    /// with `IMAGE_PREFIX`. Templates already stored keep their image.
    pub image_prefix: String,
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
    /// The E2B-compatible API.
    pub e2b: E2b,
    /// Templates: whether their images are pulled.
    pub templates: TemplateSettings,
    /// Network egress of sessions through the proxy (`docs/egress.md`): what they may ask
    /// for, special addresses reachable anyway, names resolved by the proxy, limits.
    pub egress: sandbox_egress::EgressSettings,
    /// `SANDBOX_*` environment variables that name no setting (ignored, and logged at start:
    /// client tools use names like `SANDBOX_URL` too).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
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
            cors_allowed_origins: Vec::new(),
            image_prefix: String::new(),
            runtime: RuntimeKind::Docker,
            kubernetes: Default::default(),
            limits: Limits::default(),
            executor: ExecutorSettings::default(),
            lifecycle: Lifecycle::default(),
            capacity: Capacity::default(),
            pools: Pools::default(),
            storage: Storage::default(),
            dependencies: Dependencies::default(),
            e2b: E2b::default(),
            templates: TemplateSettings::default(),
            egress: sandbox_egress::EgressSettings::default(),
            ignored_env: Vec::new(),
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

/// Settings that were removed, with what to do instead: naming one stops the server with this
/// note rather than being ignored.
const REMOVED: &[(&[&str], &str)] = &[(
    &["dependencies", "network"],
    "package installers join no network now and reach the index only through the egress proxy \
     (the index's host and dependencies.download_hosts); delete the setting, and list the \
     address of an index on loopback or a private network in egress.allowed_addresses",
)];

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
        if let Some((path, why)) =
            REMOVED.iter().find(|(path, _)| path.iter().try_fold(&tree, |node, p| node.get(p)).is_some())
        {
            return Err(SettingsError::Invalid(format!("{} was removed: {why}", path.join("."))));
        }
        let mut ignored = Vec::new();
        for (key, value) in env {
            let Some(name) = key.strip_prefix(ENV_PREFIX) else { continue };
            if name == "CONFIG" {
                continue;
            }
            let path: Vec<String> = name.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if let Some((_, why)) = REMOVED.iter().find(|(removed, _)| removed[..] == path[..]) {
                return Err(SettingsError::Invalid(format!("{key} was removed: {why}")));
            }
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
        // An install's list is its index and these.
        if d.download_hosts.len() >= sandbox_egress::MAX_ALLOW_ENTRIES {
            return Err(SettingsError::Invalid(format!(
                "dependencies.download_hosts: at most {} entries",
                sandbox_egress::MAX_ALLOW_ENTRIES - 1
            )));
        }
        for origin in &self.cors_allowed_origins {
            if !valid_origin(origin) {
                return Err(SettingsError::Invalid(format!(
                    "cors_allowed_origins: {origin:?} is not `*` or scheme://host[:port]"
                )));
            }
        }
        self.e2b.validate().map_err(SettingsError::Invalid)?;
        self.egress.validate().map_err(|e| SettingsError::Invalid(e.to_string()))?;
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
        // A table (`egress.hosts`): a JSON object.
        Some(serde_json::Value::Object(_)) => {
            serde_json::from_str(raw).map_err(|_| format!("{raw:?} is not a JSON object"))?
        }
        _ => serde_json::Value::String(raw.to_owned()),
    };
    node.as_object_mut().ok_or("not a section")?.insert(last.clone(), value);
    Ok(())
}

/// Whether `origin` is `*` or an origin as browsers send it: `http(s)://host[:port]`, nothing
/// after.
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.bytes().all(|b| b.is_ascii_graphic())
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
    fn a_removed_setting_stops_the_server_with_what_to_do_instead() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[dependencies]\nnetwork = \"host\"\n").unwrap();
        let from_file = Settings::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(from_file.starts_with("invalid settings: dependencies.network was removed: "), "{from_file}");
        assert!(from_file.contains("egress.allowed_addresses"), "{from_file}");
        let from_env = Settings::load(None, env(&[("SANDBOX_DEPENDENCIES__NETWORK", "bridge")]))
            .unwrap_err()
            .to_string();
        assert!(from_env.contains("SANDBOX_DEPENDENCIES__NETWORK was removed: "), "{from_env}");
    }

    #[test]
    fn installs_download_from_pythonhosted_unless_told_otherwise() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.dependencies.download_hosts, ["files.pythonhosted.org:443".parse().unwrap()]);
        let s = Settings::load(None, env(&[("SANDBOX_DEPENDENCIES__DOWNLOAD_HOSTS", "")])).unwrap();
        assert!(s.dependencies.download_hosts.is_empty());
        let s = Settings::load(
            None,
            env(&[("SANDBOX_DEPENDENCIES__DOWNLOAD_HOSTS", "files.corp.example:443, *.cdn.example:*")]),
        )
        .unwrap();
        assert_eq!(s.dependencies.download_hosts.len(), 2);
        let bad = Settings::load(None, env(&[("SANDBOX_DEPENDENCIES__DOWNLOAD_HOSTS", "files.example")]));
        assert!(bad.unwrap_err().to_string().contains("no port"));
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
    fn egress_comes_from_the_file_or_the_environment_and_is_checked() {
        let s = Settings::load(
            None,
            env(&[
                ("SANDBOX_EGRESS__PERMITTED", "pypi.org:443, *.example.com:*"),
                ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", r#"["127.0.0.1"]"#),
                ("SANDBOX_EGRESS__HOSTS", r#"{"mirror.internal": ["127.0.0.1"]}"#),
                ("SANDBOX_EGRESS__MAX_CONNECTIONS_PER_SESSION", "8"),
            ]),
        )
        .unwrap();
        let permitted: Vec<String> = s.egress.permitted.iter().map(ToString::to_string).collect();
        assert_eq!(permitted, ["pypi.org:443", "*.example.com:*"]);
        assert_eq!(s.egress.hosts["mirror.internal"], ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(s.egress.max_connections_per_session, 8);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[egress]\npermitted = [\"127.0.0.1:*\"]\nhosts = { \"a.test\" = [\"127.0.0.1\"] }\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), env(&[])).unwrap();
        assert_eq!(s.egress.hosts.len(), 1);
        for (name, value, expected) in [
            ("SANDBOX_EGRESS__PERMITTED", "pypi.org", "has no port"),
            ("SANDBOX_EGRESS__CONNECT_TIMEOUT_SEC", "0", "egress.connect_timeout_sec: must be from 1"),
            ("SANDBOX_EGRESS__HOSTS", r#"{"10.0.0.1": ["127.0.0.1"]}"#, "is an address, not a name"),
            ("SANDBOX_EGRESS__HOSTS", "a.test=127.0.0.1", "is not a JSON object"),
        ] {
            let error = Settings::load(None, env(&[(name, value)])).unwrap_err().to_string();
            assert!(error.contains(expected), "{name}={value}: {error}");
        }
    }

    #[test]
    fn cors_origins_are_origins() {
        let s = Settings::load(
            None,
            env(&[("SANDBOX_CORS_ALLOWED_ORIGINS", "http://127.0.0.1:3000, https://console.example")]),
        )
        .unwrap();
        assert_eq!(s.cors_allowed_origins, ["http://127.0.0.1:3000", "https://console.example"]);
        for bad in ["127.0.0.1:3000", "http://a.example/path", "ftp://a.example", "http://"] {
            let r = Settings::load(None, env(&[("SANDBOX_CORS_ALLOWED_ORIGINS", bad)]));
            assert!(r.is_err(), "{bad}");
        }
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
