//! API keys: generation, hashing, the first-start admin key, and the middleware that turns an
//! `Authorization: Bearer` header into a [`Caller`].

use crate::error::ApiError;
use crate::ids;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sandbox_core::model::ApiKey;
use sandbox_store::Store;
use sha2::{Digest, Sha256};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// File in the data directory holding the admin key the server made on first start.
pub const ADMIN_KEY_FILE: &str = "admin-api-key";

/// Who is calling: the key, and whether it is an admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id (`key_…`), owner of the sessions it creates.
    pub key_id: String,
    /// Admin keys see every session and manage templates and keys.
    pub is_admin: bool,
}

impl Caller {
    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin { Ok(()) } else { Err(ApiError::forbidden("this operation needs an admin API key")) }
    }

    /// Whether the caller may see something owned by `owner`.
    pub fn can_see(&self, owner: &str) -> bool {
        self.is_admin || self.key_id == owner
    }
}

/// Hex SHA-256 of a secret: what the store keeps. Keys are long random strings, so a fast
/// hash is enough; lookups go by hash, never by comparing secrets.
pub fn hash_key(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates and stores a new key; returns the record and the secret (shown once, never stored).
pub async fn create_key(store: &dyn Store, name: &str, is_admin: bool) -> Result<(ApiKey, String), ApiError> {
    let secret = ids::key_secret();
    let key = ApiKey {
        id: ids::key_id(),
        name: name.to_owned(),
        prefix: secret[..7].to_owned(),
        key_hash: hash_key(&secret),
        is_admin,
        created_at: Utc::now(),
        revoked_at: None,
    };
    store.insert_api_key(&key).await?;
    Ok((key, secret))
}

/// Makes sure an admin key exists. A key given in the settings (`SANDBOX_API_KEY`) is stored
/// (hashed) as an admin key. Without one, if the store has no key at all, a key is created,
/// written to `<data_dir>/admin-api-key` (mode 0600) and returned so the caller prints it once.
pub async fn bootstrap(
    store: &dyn Store,
    configured: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<Option<String>> {
    if let Some(secret) = configured {
        anyhow::ensure!(secret.len() >= 16, "SANDBOX_API_KEY must be at least 16 characters");
        let hash = hash_key(secret);
        if store.api_key_by_hash(&hash).await?.is_none() {
            let key = ApiKey {
                id: format!("key_env_{}", &hash[..8]),
                name: "SANDBOX_API_KEY".into(),
                prefix: secret.chars().take(7).collect(),
                key_hash: hash,
                is_admin: true,
                created_at: Utc::now(),
                revoked_at: None,
            };
            store.insert_api_key(&key).await?;
        }
        return Ok(None);
    }
    if !store.list_api_keys().await?.is_empty() {
        return Ok(None);
    }
    let (_, secret) = create_key(store, "bootstrap admin", true).await.map_err(|e| anyhow::anyhow!("{e}"))?;
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

/// Middleware: admits requests with a valid, unrevoked key and records the [`Caller`].
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(secret) = presented.filter(|s| !s.is_empty()) else {
        return ApiError::unauthorized("send an API key as 'Authorization: Bearer <key>'").into_response();
    };
    let hash = hash_key(secret);
    let key = match state.store.api_key_by_hash(&hash).await {
        Ok(k) => k,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match key {
        Some(k)
            if k.revoked_at.is_none()
                && sandbox_protocol::contract::constant_time_eq(k.key_hash.as_bytes(), hash.as_bytes()) =>
        {
            tracing::Span::current().record("key_id", k.id.as_str());
            req.extensions_mut().insert(Caller { key_id: k.id, is_admin: k.is_admin });
            next.run(req).await
        }
        _ => ApiError::unauthorized("the API key is not valid").into_response(),
    }
}
