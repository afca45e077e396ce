//! Random tokens, their hashes, and password hashing.
//!
//! Tokens handed to clients (refresh tokens, API keys, invite and share tokens) are 256-bit
//! random values; only their SHA-256 is stored, so a database leak does not leak usable
//! tokens. Lookups are by hash, which keeps comparisons out of application code.

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// Most argon2 memory a stored hash may ask for (256 MiB); a larger one is treated as
/// invalid rather than allocated.
const MAX_ARGON2_BLOCKS: usize = 256 * 1024;

thread_local! {
    /// This thread's argon2 working memory, allocated at its first hash and reused by every
    /// later one. Allocating it per hash left the allocator holding several freed 19 MiB
    /// blocks per thread; reusing one keeps hashing memory at one block per hashing thread.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Computes `argon2`'s hash of `password` into `out` in this thread's reused memory.
fn argon2_into(
    argon2: &Argon2<'_>,
    blocks: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    if blocks > MAX_ARGON2_BLOCKS {
        return Err(argon2::Error::MemoryTooMuch);
    }
    ARGON2_MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    })
}

/// An argon2id PHC string for `password` (random salt, the crate's default parameters).
/// CPU- and memory-heavy: call it on a hashing thread (see `super::hashing`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = argon2::password_hash::generate_salt();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        &argon2,
        params.block_count(),
        password.as_bytes(),
        &salt,
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string (compared in constant time). CPU- and
/// memory-heavy: call it on a hashing thread (see `super::hashing`).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    if argon2_into(&argon2, blocks, password.as_bytes(), salt, &mut out).is_err() {
        return false;
    }
    out.ct_eq(expected.as_bytes()).into()
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
    fn hashes_made_by_the_argon2_crate_verify_and_ours_verify_there() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let theirs = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(verify_password("correct horse", &theirs));
        assert!(!verify_password("wrong horse", &theirs));
        let ours = hash_password("correct horse").unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", ours.as_str())
                .is_ok()
        );
        assert!(!verify_password("correct horse", "not a phc string"));
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
