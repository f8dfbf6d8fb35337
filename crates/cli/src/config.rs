//! Where the server URL and key come from: flags, then environment (`SANDBOX_URL`,
//! `SANDBOX_KEY`), then the config file (`$SANDBOX_CONFIG`, or `sandbox/config.toml` in
//! `$XDG_CONFIG_HOME` or `~/.config`), which `sandbox login` writes with mode 0600.

use crate::client::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The config file's content.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The server URL.
    pub url: Option<String>,
    /// The API key.
    pub key: Option<String>,
}

/// The server and key to use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server URL.
    pub url: String,
    /// The API key.
    pub key: String,
}

/// The config file's path.
pub fn path() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("SANDBOX_CONFIG") {
        return Ok(p);
    }
    let dir = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config"))).ok_or_else(|| {
        Error::new("config_missing", "neither $SANDBOX_CONFIG, $XDG_CONFIG_HOME nor $HOME is set")
    })?;
    Ok(dir.join("sandbox").join("config.toml"))
}

/// The config file at `path` (empty when there is none).
pub fn load(path: &Path) -> Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| Error::new("invalid_config", format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(Error::new("invalid_config", format!("{}: {e}", path.display()))),
    }
}

/// Writes `config` to `path`, readable by its owner only (mode 0600, its directory made 0700).
pub fn save(path: &Path, config: &FileConfig) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let text = toml::to_string(config).map_err(|e| Error::new("invalid_config", e.to_string()))?;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // A file that existed keeps its mode on open: narrow it before the key is written.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The settings from the flags or environment (`url`, `key`, as clap read them), else the file;
/// without `need_key` a missing key is left empty (for routes that need none).
pub fn resolve(url: Option<&str>, key: Option<&str>, need_key: bool) -> Result<Settings> {
    let (url, key) = (url.filter(|s| !s.is_empty()), key.filter(|s| !s.is_empty()));
    let file = if url.is_some() && key.is_some() {
        FileConfig::default()
    } else {
        let path = path()?;
        load(&path)?
    };
    let url = url.map(str::to_owned).or(file.url).ok_or_else(|| {
        Error::new("config_missing", "no server URL: pass --url, set SANDBOX_URL or run `sandbox login`")
    })?;
    let key =
        key.map(str::to_owned).or(file.key).or_else(|| (!need_key).then(String::new)).ok_or_else(|| {
            Error::new("config_missing", "no API key: pass --key, set SANDBOX_KEY or run `sandbox login`")
        })?;
    Ok(Settings { url, key })
}
