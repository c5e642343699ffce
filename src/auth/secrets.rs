//! Random credentials and their one-way forms.
//!
//! Bearer credentials (session tokens, API keys, reset tokens) are stored only as SHA-256: they
//! are long random strings, so a fast hash suffices and lookups stay one indexed read. User
//! passwords are chosen by people and get argon2id.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS, as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A session token: 40 hex digits, the shape QuickBlox uses.
pub fn new_token() -> String {
    random_hex(20)
}

/// SHA-256 of a bearer credential, hex; the key under which it is stored.
pub fn credential_hash(credential: &str) -> String {
    hex::encode(Sha256::digest(credential.as_bytes()))
}

/// argon2id PHC string for `password` with the default cost (`api.password_hash_*`; a server
/// configured otherwise rehashes at the next login). Slow by design: call from a blocking thread.
pub fn hash_password(password: &str) -> String {
    use crate::config::{DEFAULT_PASSWORD_HASH_MEMORY_KIB, DEFAULT_PASSWORD_HASH_PASSES};
    let salt = SaltString::generate(&mut OsRng);
    let params = argon2::Params::new(
        DEFAULT_PASSWORD_HASH_MEMORY_KIB,
        DEFAULT_PASSWORD_HASH_PASSES,
        1,
        None,
    )
    .expect("the default cost is valid");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with valid parameters accepts any password and a generated salt")
        .to_string()
}

/// Checks `password` against a PHC string; a malformed stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horse!", &phc));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_distinct_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(credential_hash(&a).len(), 64);
    }
}
