//! Identity by credential, for a proxy that many sandboxes share over TCP (Kubernetes, where a
//! pod cannot be handed a per-session Unix socket).
//!
//! Each sandbox gets a credential naming it, `<sandbox>.<HMAC-SHA256 of the name, hex>`, under a
//! key only the control plane and the proxy hold ([`EgressKey`]). The sandbox's relay presents
//! it as `Proxy-Authorization: Bearer <credential>` in each connection's first request; the
//! proxy checks the MAC and asks a [`SessionLookup`] which session holds that sandbox now (a
//! pooled sandbox is made before its session claims it), then serves the connection as that
//! session's, under its policy and limits.

use crate::policy::SessionPolicy;
use std::path::Path;

/// The authentication scheme of the `Proxy-Authorization` header a relay sends.
pub const CREDENTIAL_SCHEME: &str = "Bearer";

/// The fewest bytes a key may have: 256 bits, SHA-256's own size.
pub const MIN_KEY_BYTES: usize = 32;

/// The longest sandbox name a credential may carry.
const MAX_SANDBOX_NAME: usize = 253;

/// The key that makes and checks credentials (HMAC-SHA256).
#[derive(Clone)]
pub struct EgressKey(ring::hmac::Key);

impl std::fmt::Debug for EgressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EgressKey(..)")
    }
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Too short to be a key.
    #[error("an egress key needs at least {MIN_KEY_BYTES} bytes, this one has {0}")]
    TooShort(usize),
    /// The key file could not be read.
    #[error("cannot read the egress key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl EgressKey {
    /// A key of these bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(secret: &[u8]) -> Result<EgressKey, KeyError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(secret.len()));
        }
        Ok(EgressKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)))
    }

    /// The key in a file (a mounted Secret), without trailing ASCII whitespace.
    pub fn from_file(path: &Path) -> Result<EgressKey, KeyError> {
        let bytes = std::fs::read(path)
            .map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
        EgressKey::new(bytes.trim_ascii_end())
    }

    /// The credential of the sandbox `sandbox` (its runtime id).
    pub fn credential(&self, sandbox: &str) -> String {
        let tag = ring::hmac::sign(&self.0, sandbox.as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{sandbox}.{hex}")
    }

    /// The sandbox a credential names, when this key made it (checked in constant time).
    pub fn verify<'a>(&self, credential: &'a str) -> Option<&'a str> {
        let (sandbox, hex) = credential.rsplit_once('.')?;
        let plausible = (1..=MAX_SANDBOX_NAME).contains(&sandbox.len())
            && sandbox.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plausible || hex.len() != 64 {
            return None;
        }
        let tag = (0..32)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        ring::hmac::verify(&self.0, sandbox.as_bytes(), &tag).ok()?;
        Some(sandbox)
    }
}

/// The session a sandbox serves, as the proxy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The session's id (the audit's `session_id`).
    pub session_id: String,
    /// The session's policy.
    pub policy: SessionPolicy,
}

/// A lookup that failed (the store is unreachable): the client gets 503.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Which session holds a sandbox now: the server's store, behind a short cache.
#[async_trait::async_trait]
pub trait SessionLookup: Send + Sync {
    /// The session that holds the sandbox `sandbox` now, if one does.
    async fn session_of(&self, sandbox: &str) -> Result<Option<Grant>, LookupError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_verify_under_their_key_only() {
        let key = EgressKey::new(&[7; 32]).unwrap();
        let other = EgressKey::new(&[8; 32]).unwrap();
        let credential = key.credential("sbx-0123abcd");
        assert_eq!(credential.len(), "sbx-0123abcd.".len() + 64);
        assert_eq!(key.verify(&credential), Some("sbx-0123abcd"));
        assert_eq!(other.verify(&credential), None, "another key");
        let forged = credential.replacen("sbx-0123abcd", "sbx-0123abce", 1);
        assert_eq!(key.verify(&forged), None, "another sandbox under the same MAC");
        let mut flipped = credential.clone();
        flipped.replace_range(flipped.len() - 1.., if credential.ends_with('0') { "1" } else { "0" });
        assert_eq!(key.verify(&flipped), None, "a MAC one digit off");
        for bad in ["", ".", "sbx", "sbx.", &credential[..credential.len() - 2], &format!("{credential}00")] {
            assert_eq!(key.verify(bad), None, "{bad:?}");
        }
        let spaced = format!("a b.{}", &credential["sbx-0123abcd.".len()..]);
        assert_eq!(key.verify(&spaced), None);
    }

    #[test]
    fn keys_are_long_enough_and_read_from_files() {
        assert!(matches!(EgressKey::new(&[1; 31]), Err(KeyError::TooShort(31))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, [b"k".repeat(32), b"\n".to_vec()].concat()).unwrap();
        let from_file = EgressKey::from_file(&path).unwrap();
        let direct = EgressKey::new(&b"k".repeat(32)).unwrap();
        assert_eq!(
            direct.verify(&from_file.credential("s")),
            Some("s"),
            "the newline is not part of the key"
        );
        let missing = EgressKey::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
