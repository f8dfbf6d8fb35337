//! Identifiers and secrets: random, URL-safe, with a prefix that says what they name.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn random(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A new session id (`sess_` and 20 random characters, ~103 bits).
pub fn session_id() -> String {
    format!("sess_{}", random(20))
}

/// A new execution id.
pub fn execution_id() -> String {
    format!("exec_{}", random(20))
}

/// A new API key id.
pub fn key_id() -> String {
    format!("key_{}", random(16))
}

/// A new API key secret (`sk_` and 43 random characters, ~222 bits).
pub fn key_secret() -> String {
    format!("sk_{}", random(43))
}

/// Whether a client-chosen id is acceptable: 1-64 characters of `[A-Za-z0-9_-]`.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_valid() {
        let a = session_id();
        assert!(a.starts_with("sess_") && a.len() == 25 && valid_client_id(&a));
        assert_ne!(a, session_id());
        assert!(key_secret().len() > 40);
        assert!(!valid_client_id("a/b") && !valid_client_id("") && !valid_client_id(&"x".repeat(65)));
    }
}
