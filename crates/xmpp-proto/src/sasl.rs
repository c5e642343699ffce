//! SASL PLAIN (RFC 4616) as XMPP carries it (RFC 6120 §6): the only mechanism we offer,
//! because a QuickBlox client's "password" may be a session token, which cannot be checked
//! against stored SCRAM or DIGEST-MD5 secrets.

/// The SASL namespace.
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// Decoded PLAIN credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Authorization identity; empty or the user's bare JID (the SDKs send either).
    pub authzid: String,
    /// Authentication identity: the JID's node, e.g. `7-42`.
    pub authcid: String,
    /// Password or session token.
    pub password: String,
}

/// Why a SASL exchange failed, as a `<failure/>` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslFailure {
    /// The client aborted.
    Aborted,
    /// The base64 payload is not valid base64.
    IncorrectEncoding,
    /// The authzid is neither empty nor the authenticating user's bare JID.
    InvalidAuthzid,
    /// A mechanism other than PLAIN.
    InvalidMechanism,
    /// The payload does not have the PLAIN shape.
    MalformedRequest,
    /// Wrong credentials.
    NotAuthorized,
    /// Too many attempts, or the store is unavailable: try later.
    TemporaryAuthFailure,
    /// PLAIN over an unencrypted stream where that is not allowed.
    EncryptionRequired,
}

impl SaslFailure {
    /// The condition element name.
    pub fn name(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
            SaslFailure::EncryptionRequired => "encryption-required",
        }
    }

    /// `<failure xmlns='…sasl'><condition/></failure>`.
    pub fn to_xml(self) -> String {
        format!("<failure xmlns='{NS_SASL}'><{}/></failure>", self.name())
    }
}

/// Decodes the base64 payload of `<auth mechanism='PLAIN'>` into its three parts.
pub fn decode_plain(payload: &str) -> Result<PlainCredentials, SaslFailure> {
    let bytes = base64_decode(payload.trim()).ok_or(SaslFailure::IncorrectEncoding)?;
    let mut parts = bytes.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    let text =
        |part: &[u8]| String::from_utf8(part.to_vec()).map_err(|_| SaslFailure::MalformedRequest);
    let credentials = PlainCredentials {
        authzid: text(authzid)?,
        authcid: text(authcid)?,
        password: text(password)?,
    };
    if credentials.authcid.is_empty() || credentials.password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(credentials)
}

/// Standard base64 with padding; `=` alone means an empty payload (RFC 6120 §6.4.2).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if text == "=" {
        return Some(Vec::new());
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let last = index == bytes.len() / 4 - 1;
        let padding = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut word = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = if i >= 4 - padding { 0 } else { value(*c)? };
            word = (word << 6) | v;
        }
        let decoded = [(word >> 16) as u8, (word >> 8) as u8, word as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((word >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_browser_and_node_payloads() {
        let browser = base64_encode(b"\x007-42\x00secret");
        assert_eq!(
            decode_plain(&browser).unwrap(),
            PlainCredentials {
                authzid: String::new(),
                authcid: "7-42".into(),
                password: "secret".into()
            }
        );
        let node = base64_encode(b"7-42@dom\x007-42\x00tok");
        assert_eq!(decode_plain(&node).unwrap().authzid, "7-42@dom");
    }

    #[test]
    fn rejects_bad_payloads() {
        assert_eq!(decode_plain("!!!!"), Err(SaslFailure::IncorrectEncoding));
        assert_eq!(decode_plain("abc"), Err(SaslFailure::IncorrectEncoding));
        assert_eq!(
            decode_plain(&base64_encode(b"only-one-part")),
            Err(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            decode_plain(&base64_encode(b"\x00u\x00")),
            Err(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            decode_plain(&base64_encode(b"\x00u\x00p\x00x")),
            Err(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            decode_plain(&base64_encode(b"\x00\xff\x00p")),
            Err(SaslFailure::MalformedRequest)
        );
        assert_eq!(decode_plain("AA=A"), Err(SaslFailure::IncorrectEncoding));
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let encoded = base64_encode(&data);
            assert_eq!(base64_decode(&encoded).unwrap(), data, "{encoded}");
        }
        assert_eq!(base64_decode("=").unwrap(), Vec::<u8>::new());
        assert_eq!(
            SaslFailure::NotAuthorized.to_xml(),
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
        );
    }
}
