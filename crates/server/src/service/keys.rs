//! API keys: made, hashed, listed, revoked, and checked on every request; and the admin key a
//! new installation starts with.

use crate::caller::Caller;
use crate::ids;
use crate::service::error::{Result, ServiceError};
use chrono::Utc;
use sandbox_core::model::ApiKey;
use sandbox_store::Store;
use sha2::{Digest, Sha256};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

/// File in the data directory holding the admin key the server made on first start.
pub const ADMIN_KEY_FILE: &str = "admin-api-key";

/// Hex SHA-256 of a secret: what the store keeps. Keys are long random strings, so a fast
/// hash is enough; lookups go by hash, never by comparing secrets.
pub fn hash_key(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// API keys.
pub struct Keys {
    store: Arc<dyn Store>,
}

impl Keys {
    /// The service.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Keys { store }
    }

    /// The caller a presented secret stands for, if it is a valid, unrevoked key.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Caller>> {
        let hash = hash_key(secret);
        Ok(match self.store.api_key_by_hash(&hash).await? {
            Some(k)
                if k.revoked_at.is_none()
                    && sandbox_protocol::contract::constant_time_eq(
                        k.key_hash.as_bytes(),
                        hash.as_bytes(),
                    ) =>
            {
                Some(Caller { key_id: k.id, is_admin: k.is_admin })
            }
            _ => None,
        })
    }

    /// Makes and stores a new key; returns the record and the secret (shown once, never stored).
    /// With `e2b_format` the secret is `e2b_` and 40 hex digits, the format some E2B SDK
    /// versions check before sending it.
    pub async fn make(&self, name: &str, is_admin: bool, e2b_format: bool) -> Result<(ApiKey, String)> {
        let secret = if e2b_format { ids::e2b_key_secret() } else { ids::key_secret() };
        let key = ApiKey {
            id: ids::key_id(),
            name: name.to_owned(),
            prefix: secret[..7].to_owned(),
            key_hash: hash_key(&secret),
            is_admin,
            created_at: Utc::now(),
            revoked_at: None,
        };
        self.store.insert_api_key(&key).await?;
        Ok((key, secret))
    }

    /// A new key named `name`, made by an admin.
    pub async fn create(
        &self,
        caller: &Caller,
        name: &str,
        is_admin: bool,
        e2b_format: bool,
    ) -> Result<(ApiKey, String)> {
        caller.require_admin()?;
        let name = name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(ServiceError::invalid_field("name", "must be 1-128 characters"));
        }
        let (key, secret) = self.make(name, is_admin, e2b_format).await?;
        tracing::info!(key_id = %key.id, admin = key.is_admin, by = %caller.key_id, "API key created");
        Ok((key, secret))
    }

    /// Every key (admins only).
    pub async fn list(&self, caller: &Caller) -> Result<Vec<ApiKey>> {
        caller.require_admin()?;
        Ok(self.store.list_api_keys().await?)
    }

    /// Revokes key `id` (admins only; not the caller's own key, which would lock it out).
    pub async fn revoke(&self, caller: &Caller, id: &str) -> Result<()> {
        caller.require_admin()?;
        if id == caller.key_id {
            return Err(ServiceError::conflict(
                "cannot_revoke_own_key",
                "a key cannot revoke itself (that would lock its holder out); use another admin key",
            ));
        }
        if !self.store.revoke_api_key(id, Utc::now()).await? {
            return Err(ServiceError::not_found("key_not_found", format!("key {id} does not exist")));
        }
        tracing::info!(key_id = %id, by = %caller.key_id, "API key revoked");
        Ok(())
    }

    /// Makes sure an admin key exists. A key given in the settings (`SANDBOX_API_KEY`) is stored
    /// (hashed) as an admin key. Without one, if the store has no key at all, a key is made,
    /// written to `<data_dir>/admin-api-key` (mode 0600) and returned so the caller prints it
    /// once.
    pub async fn bootstrap(
        &self,
        configured: Option<&str>,
        data_dir: &Path,
    ) -> anyhow::Result<Option<String>> {
        if let Some(secret) = configured {
            anyhow::ensure!(secret.len() >= 16, "SANDBOX_API_KEY must be at least 16 characters");
            let hash = hash_key(secret);
            if self.store.api_key_by_hash(&hash).await?.is_none() {
                let key = ApiKey {
                    id: format!("key_env_{}", &hash[..8]),
                    name: "SANDBOX_API_KEY".into(),
                    prefix: secret.chars().take(7).collect(),
                    key_hash: hash,
                    is_admin: true,
                    created_at: Utc::now(),
                    revoked_at: None,
                };
                self.store.insert_api_key(&key).await?;
            }
            return Ok(None);
        }
        if !self.store.list_api_keys().await?.is_empty() {
            return Ok(None);
        }
        let (_, secret) = self.make("bootstrap admin", true, false).await?;
        let path = data_dir.join(ADMIN_KEY_FILE);
        // Readable by its owner only from the moment it exists; never written through a link.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())?;
        Ok(Some(secret))
    }
}
