//! Per-sandbox access tokens of the E2B-compatible API: an HMAC-SHA256 of the session id under
//! a secret kept in the data directory, so no token is stored and each can be checked with the
//! session id alone; and the signatures of E2B's signed file URLs.

use crate::service::error::ServiceError;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// File in the data directory holding the secret the tokens are derived with (hex).
pub const SECRET_FILE: &str = "e2b-token-secret";

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature E2B's SDKs put on a file URL: `v1_` and the unpadded base64 of
/// sha256(`path:operation:user:token[:expiration]`).
pub fn file_signature(
    path: &str,
    operation: &str,
    user: &str,
    token: &str,
    expiration: Option<i64>,
) -> String {
    let mut text = format!("{path}:{operation}:{user}:{token}");
    if let Some(exp) = expiration {
        text.push_str(&format!(":{exp}"));
    }
    format!("v1_{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(text.as_bytes())))
}

/// Issues and checks access tokens.
pub struct AccessTokens {
    dir: PathBuf,
    secret: Mutex<Option<[u8; 32]>>,
}

impl AccessTokens {
    /// Tokens whose secret lives in `dir` (read, or made, on first use).
    pub fn new(dir: PathBuf) -> Self {
        AccessTokens { dir, secret: Mutex::new(None) }
    }

    fn secret(&self) -> Result<[u8; 32], ServiceError> {
        let mut held = self.secret.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = *held {
            return Ok(s);
        }
        let path = self.dir.join(SECRET_FILE);
        let failed = |e: std::io::Error| {
            ServiceError::internal(format!("access token secret {}: {e}", path.display()))
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh: [u8; 32] = rand::random();
                let text = hex(&fresh);
                let made = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
                match made {
                    Ok(mut f) => f.write_all(text.as_bytes()).map_err(failed)?,
                    // Another process made it first: read theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(failed(e)),
                }
                std::fs::read_to_string(&path).map_err(failed)?
            }
            Err(e) => return Err(failed(e)),
        };
        let text = text.trim();
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .filter_map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ServiceError::internal(format!("{} does not hold 64 hex digits", path.display())))?;
        *held = Some(secret);
        Ok(secret)
    }

    /// The access token of session `session_id`.
    pub fn token(&self, session_id: &str) -> Result<String, ServiceError> {
        Ok(hex(&hmac_sha256(&self.secret()?, session_id.as_bytes())))
    }

    /// Whether `presented` is the access token of session `session_id` (constant time).
    pub fn verify(&self, session_id: &str, presented: &str) -> Result<bool, ServiceError> {
        let expected = self.token(session_id)?;
        Ok(sandbox_protocol::contract::constant_time_eq(expected.as_bytes(), presented.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_matches_the_rfc() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let long = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&long), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn tokens_are_per_session_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = AccessTokens::new(dir.path().to_owned());
        let a = tokens.token("sess_a").unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, tokens.token("sess_b").unwrap());
        assert!(tokens.verify("sess_a", &a).unwrap() && !tokens.verify("sess_b", &a).unwrap());
        assert_eq!(AccessTokens::new(dir.path().to_owned()).token("sess_a").unwrap(), a, "kept in the file");
    }

    /// The value E2B's Python SDK computes (`get_signature`) for `/home/user/a.txt`, read, user
    /// `user`, token `tok`, expiring at 1700000000.
    #[test]
    fn file_signatures_are_e2b_s() {
        let expected = "v1_rjyaqcqTmWCotSjgdIM5sPngpduJ8ZZz/orD09SpFng";
        assert_eq!(file_signature("/home/user/a.txt", "read", "user", "tok", Some(1_700_000_000)), expected);
        assert_ne!(file_signature("/home/user/a.txt", "read", "user", "tok", None), expected);
    }
}
