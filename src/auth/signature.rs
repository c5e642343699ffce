//! Session request signatures (QuickBlox REST reference §7.2).
//!
//! The client signs `k=v` pairs built from the **decoded, raw** values of every field but
//! `signature`, sorted the way JavaScript's default sort does (by UTF-16 code unit) and joined
//! with `&`, using HMAC-SHA1 (default) or HMAC-SHA256 keyed by the application's auth secret.
//! The server rebuilds the same string from the decoded form and compares in constant time.

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// Which HMAC a signature used, told apart by its length (40 or 64 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    Sha1,
    Sha256,
}

/// Builds the string the client signed from decoded `(key, value)` pairs; nested keys are
/// already in their `parent[child]` form.
pub fn string_to_sign<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut items: Vec<String> = pairs
        .into_iter()
        .filter(|(key, _)| *key != "signature")
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    items.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    items.join("&")
}

/// Lower-case hex HMAC of `message`.
pub fn sign(algorithm: SignatureAlgorithm, secret: &str, message: &str) -> String {
    match algorithm {
        SignatureAlgorithm::Sha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        SignatureAlgorithm::Sha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
    }
}

/// Checks `signature` (hex, either case) over `message`; the algorithm follows from its length.
pub fn verify(secret: &str, message: &str, signature: &str) -> bool {
    let algorithm = match signature.len() {
        40 => SignatureAlgorithm::Sha1,
        64 => SignatureAlgorithm::Sha256,
        _ => return false,
    };
    let expected = sign(algorithm, secret, message);
    let given = signature.to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the REST reference §7.3.
    fn example_pairs() -> Vec<(&'static str, &'static str)> {
        vec![
            ("user[password]", "p@ss w&rd"),
            ("timestamp", "1795313504"),
            ("application_id", "42"),
            ("nonce", "4936"),
            ("signature", "ignored"),
            ("user[login]", "u1"),
            ("auth_key", "AUTHKEY"),
        ]
    }

    #[test]
    fn reference_string_to_sign() {
        assert_eq!(
            string_to_sign(example_pairs()),
            "application_id=42&auth_key=AUTHKEY&nonce=4936&timestamp=1795313504&user[login]=u1&user[password]=p@ss w&rd"
        );
    }

    #[test]
    fn reference_vectors() {
        let message = string_to_sign(example_pairs());
        assert_eq!(
            sign(SignatureAlgorithm::Sha1, "AUTHSECRET", &message),
            "76a59170c5219f843a9dce6ab79de4a95aab4ba0"
        );
        assert_eq!(
            sign(SignatureAlgorithm::Sha256, "AUTHSECRET", &message),
            "817878afbe28c8d9d6f00a3baeea2c88afc52e61c3fa3ac09dfeb545ac8c5e03"
        );
        assert!(verify(
            "AUTHSECRET",
            &message,
            "76a59170c5219f843a9dce6ab79de4a95aab4ba0"
        ));
        assert!(verify(
            "AUTHSECRET",
            &message,
            "76A59170C5219F843A9DCE6AB79DE4A95AAB4BA0"
        ));
        assert!(verify(
            "AUTHSECRET",
            &message,
            "817878afbe28c8d9d6f00a3baeea2c88afc52e61c3fa3ac09dfeb545ac8c5e03"
        ));
    }

    #[test]
    fn rejects_wrong_secret_length_and_tampering() {
        let message = string_to_sign(example_pairs());
        assert!(!verify(
            "OTHER",
            &message,
            "76a59170c5219f843a9dce6ab79de4a95aab4ba0"
        ));
        assert!(!verify("AUTHSECRET", &message, "76a59170"));
        assert!(!verify(
            "AUTHSECRET",
            &format!("{message}x"),
            "76a59170c5219f843a9dce6ab79de4a95aab4ba0"
        ));
    }

    #[test]
    fn sorts_by_utf16_code_units_like_javascript() {
        // U+FF21 (one UTF-16 unit, 0xFF21) sorts before U+1F600 (surrogates 0xD83D…) in
        // JavaScript but after it by Unicode scalar value.
        let s = string_to_sign([("a", "\u{1F600}"), ("a", "\u{FF21}")]);
        assert_eq!(s, "a=\u{1F600}&a=\u{FF21}");
    }
}
