//! Random tokens, their hashes, and password hashing.
//!
//! Tokens handed to clients (refresh tokens, API keys, invite and share tokens) are 256-bit
//! random values; only their SHA-256 is stored, so a database leak does not leak usable
//! tokens. Lookups are by hash, which keeps comparisons out of application code.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of API keys, so they are recognisable (and findable by secret scanners).
pub const API_KEY_PREFIX: &str = "tdm_";
/// Prefix of read-only share tokens.
pub const SHARE_TOKEN_PREFIX: &str = "shr_";
/// Prefix of invite tokens.
pub const INVITE_TOKEN_PREFIX: &str = "inv_";

/// A fresh random token: `prefix` + 43 URL-safe characters.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh random identifier (22 URL-safe characters, 128 bits).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id PHC string for `password` (random salt). CPU-heavy: call off the async threads.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string. CPU-heavy: call off the async threads.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_and_salts_differ() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
    }

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let t = random_token(API_KEY_PREFIX);
        assert!(t.starts_with(API_KEY_PREFIX) && t.len() == 4 + 43);
        assert_ne!(t, random_token(API_KEY_PREFIX));
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_eq!(token_hash(&t).len(), 64);
    }
}
