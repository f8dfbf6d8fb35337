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

/// The id of the session API key `key_id` names `client_id`: `sess_` and 20 characters of a
/// hash of both, so the same name chosen by two keys gives two sessions, and nobody can pick a
/// name that lands on another key's session.
pub fn scoped_session_id(key_id: &str, client_id: &str) -> String {
    use sha2::Digest;
    // The key's length first: no two (key, name) pairs hash the same bytes.
    let digest = sha2::Sha256::new()
        .chain_update((key_id.len() as u64).to_le_bytes())
        .chain_update(key_id)
        .chain_update(client_id)
        .finalize();
    let mut bits = digest.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1));
    let chars: String = (0..20)
        .map(|_| {
            let v = (0..5).fold(0usize, |v, _| (v << 1) | usize::from(bits.next().unwrap_or(0)));
            ALPHABET[v] as char
        })
        .collect();
    format!("sess_{chars}")
}

/// A new code context id (`ctx_` and 20 random characters).
pub fn context_id() -> String {
    format!("ctx_{}", random(20))
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

/// A new API key secret in the format E2B's SDKs check (`e2b_` and 40 hex digits, 160 bits).
pub fn e2b_key_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    format!("e2b_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_valid() {
        let a = session_id();
        assert!(a.starts_with("sess_") && a.len() == 25 && sandbox_protocol::contract::valid_id(&a));
        assert_ne!(a, session_id());
        assert!(key_secret().len() > 40);
        let e2b = e2b_key_secret();
        assert!(
            e2b.len() == 44 && e2b.starts_with("e2b_") && e2b[4..].bytes().all(|b| b.is_ascii_hexdigit())
        );
        assert_ne!(e2b, e2b_key_secret());
        assert!(
            !sandbox_protocol::contract::valid_id("a/b")
                && !sandbox_protocol::contract::valid_id("")
                && !sandbox_protocol::contract::valid_id(&"x".repeat(65))
        );
        let s = scoped_session_id("key_a", "my-session");
        assert!(s.starts_with("sess_") && s.len() == 25 && sandbox_protocol::contract::valid_id(&s));
        assert_eq!(s, scoped_session_id("key_a", "my-session"), "stable");
        assert_ne!(s, scoped_session_id("key_b", "my-session"), "per key");
        assert_ne!(scoped_session_id("key_a", "b\0c"), scoped_session_id("key_a\0b", "c"), "unambiguous");
    }
}
