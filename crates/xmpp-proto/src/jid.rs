//! XMPP addresses (RFC 7622), in a pragmatic subset, and the QuickBlox node form.
//!
//! A JID is `[node@]domain[/resource]`. Splitting follows RFC 7622 §3.1: the resource starts at
//! the first `/`, and the node ends at the first `@` before that, so `a@b/c@d/e` has node `a`,
//! domain `b` and resource `c@d/e`.
//!
//! What we deliberately do not implement: the PRECIS profiles (`UsernameCaseMapped`,
//! `OpaqueString`) and IDNA for domains. Instead:
//! - node and domain are ASCII-lowercased (non-ASCII letters are kept as sent), so the usual
//!   QuickBlox JIDs `{userId}-{appId}@{domain}` compare the way clients expect;
//! - the characters RFC 7622 forbids in a node (`"&'/:<>@`, whitespace, controls) are rejected;
//! - the domain rejects whitespace, controls and characters that cannot occur in a DNS name or IP
//!   literal (`"&'<>@`); a single trailing `.` is stripped (RFC 7622 §3.2);
//! - the resource is kept byte for byte (case-sensitive); only control characters are rejected.
//!
//! Each part is at most 1023 bytes (RFC 7622 §3.2-3.4).

use std::fmt;
use std::str::FromStr;

/// Longest node, domain or resource, in bytes (RFC 7622 §3.2-3.4).
pub const MAX_PART_BYTES: usize = 1023;

/// A JID without a resource: `[node@]domain`, e.g. `7-42@chat.example.com`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BareJid {
    node: Option<String>,
    domain: String,
}

/// A JID with a resource: `[node@]domain/resource`, the address of one session.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullJid {
    bare: BareJid,
    resource: String,
}

/// Either kind of JID, for places (such as a stanza's `to`) where both are legal.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Jid {
    /// No resource.
    Bare(BareJid),
    /// With a resource.
    Full(FullJid),
}

/// The part of a JID an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JidPart {
    /// The localpart, before `@`.
    Node,
    /// The domainpart.
    Domain,
    /// The resourcepart, after `/`.
    Resource,
}

/// Why a string is not an acceptable JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JidError {
    /// The whole string is empty.
    #[error("empty JID")]
    Empty,
    /// A part is present but empty (`@b`, `a@`, `b/`).
    #[error("empty {0}")]
    EmptyPart(JidPart),
    /// A part is longer than [`MAX_PART_BYTES`].
    #[error("{0} longer than 1023 bytes")]
    TooLong(JidPart),
    /// A part contains a character it may not contain.
    #[error("character {ch:?} not allowed in {part}")]
    ForbiddenChar {
        /// Which part.
        part: JidPart,
        /// The offending character.
        ch: char,
    },
    /// A bare JID was expected but the string has a resource.
    #[error("unexpected resource in a bare JID")]
    UnexpectedResource,
    /// A full JID was expected but the string has no resource.
    #[error("missing resource in a full JID")]
    MissingResource,
}

impl JidError {
    /// The RFC 6120 §8.3.3 stanza error condition to answer a stanza carrying this address with.
    pub fn stanza_error_condition(&self) -> &'static str {
        "jid-malformed"
    }
}

impl BareJid {
    /// Parses `[node@]domain`; a resource is an error ([`JidError::UnexpectedResource`]).
    pub fn parse(s: &str) -> Result<Self, JidError> {
        match Jid::parse(s)? {
            Jid::Bare(bare) => Ok(bare),
            Jid::Full(_) => Err(JidError::UnexpectedResource),
        }
    }

    /// Builds a bare JID from its parts, applying the same checks and normalisation as
    /// [`BareJid::parse`].
    pub fn new(node: Option<&str>, domain: &str) -> Result<Self, JidError> {
        Ok(Self {
            node: node.map(normalize_node).transpose()?,
            domain: normalize_domain(domain)?,
        })
    }

    /// The node (localpart), lowercased; `None` for a domain JID such as a server.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The domain, lowercased.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The full JID of one session of this account.
    pub fn with_resource(&self, resource: &str) -> Result<FullJid, JidError> {
        Ok(FullJid {
            bare: self.clone(),
            resource: check_resource(resource)?.to_owned(),
        })
    }
}

impl FullJid {
    /// Parses `[node@]domain/resource`; a missing resource is an error
    /// ([`JidError::MissingResource`]).
    pub fn parse(s: &str) -> Result<Self, JidError> {
        match Jid::parse(s)? {
            Jid::Full(full) => Ok(full),
            Jid::Bare(_) => Err(JidError::MissingResource),
        }
    }

    /// The node (localpart), lowercased.
    pub fn node(&self) -> Option<&str> {
        self.bare.node()
    }

    /// The domain, lowercased.
    pub fn domain(&self) -> &str {
        self.bare.domain()
    }

    /// The resource, exactly as given.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The account this session belongs to.
    pub fn bare(&self) -> &BareJid {
        &self.bare
    }

    /// Drops the resource.
    pub fn into_bare(self) -> BareJid {
        self.bare
    }
}

impl Jid {
    /// Parses a bare or full JID.
    pub fn parse(s: &str) -> Result<Self, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        // RFC 7622 §3.1: the resource starts at the first '/', and only the part before it is
        // searched for the '@' that ends the node, so resources may contain both characters.
        let (address, resource) = match s.split_once('/') {
            Some((address, resource)) => (address, Some(resource)),
            None => (s, None),
        };
        let (node, domain) = match address.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, address),
        };
        let bare = BareJid::new(node, domain)?;
        match resource {
            None => Ok(Jid::Bare(bare)),
            Some(resource) => Ok(Jid::Full(FullJid {
                bare,
                resource: check_resource(resource)?.to_owned(),
            })),
        }
    }

    /// The node (localpart), lowercased.
    pub fn node(&self) -> Option<&str> {
        self.bare().node()
    }

    /// The domain, lowercased.
    pub fn domain(&self) -> &str {
        self.bare().domain()
    }

    /// The resource, if any.
    pub fn resource(&self) -> Option<&str> {
        match self {
            Jid::Bare(_) => None,
            Jid::Full(full) => Some(full.resource()),
        }
    }

    /// The bare part.
    pub fn bare(&self) -> &BareJid {
        match self {
            Jid::Bare(bare) => bare,
            Jid::Full(full) => full.bare(),
        }
    }

    /// The full JID, if this is one.
    pub fn as_full(&self) -> Option<&FullJid> {
        match self {
            Jid::Bare(_) => None,
            Jid::Full(full) => Some(full),
        }
    }
}

impl From<BareJid> for Jid {
    fn from(bare: BareJid) -> Self {
        Jid::Bare(bare)
    }
}

impl From<FullJid> for Jid {
    fn from(full: FullJid) -> Self {
        Jid::Full(full)
    }
}

impl FromStr for BareJid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for FullJid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for BareJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "{node}@")?;
        }
        f.write_str(&self.domain)
    }
}

impl fmt::Display for FullJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bare, self.resource)
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jid::Bare(bare) => bare.fmt(f),
            Jid::Full(full) => full.fmt(f),
        }
    }
}

// Debug prints the address itself: `BareJid(7-42@dom)` reads better in test failures than the
// field structure. Logs must still wrap JIDs in the Pii wrapper (STYLE §9).
impl fmt::Debug for BareJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BareJid({self})")
    }
}

impl fmt::Debug for FullJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FullJid({self})")
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jid::Bare(bare) => bare.fmt(f),
            Jid::Full(full) => full.fmt(f),
        }
    }
}

impl fmt::Display for JidPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JidPart::Node => "node",
            JidPart::Domain => "domain",
            JidPart::Resource => "resource",
        })
    }
}

/// The QuickBlox node form `{userId}-{appId}`.
///
/// The JS SDK recovers user ids with `parseInt(node.split('-')[0])`, so a user's node must be
/// exactly this. Only the canonical decimal form is accepted (digits only, no sign, no leading
/// zeros, no overflow): otherwise `007-42` and `7-42` would be two JIDs for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QbNode {
    user: i64,
    app: i64,
}

/// Why a node is not of the form `{userId}-{appId}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QbNodeError {
    /// There is no `-`.
    #[error("node is not of the form {{userId}}-{{appId}}")]
    MissingSeparator,
    /// A side is empty, has a non-digit or a leading zero.
    #[error("node id is not a canonical decimal number")]
    NotCanonical,
    /// A side does not fit in an `i64`.
    #[error("node id out of range")]
    Overflow,
}

impl QbNode {
    /// Builds a node from ids; `None` if either is negative (it could not be parsed back).
    pub fn new(user: i64, app: i64) -> Option<Self> {
        (user >= 0 && app >= 0).then_some(Self { user, app })
    }

    /// Parses `{userId}-{appId}`.
    pub fn parse(s: &str) -> Result<Self, QbNodeError> {
        let (user, app) = s.split_once('-').ok_or(QbNodeError::MissingSeparator)?;
        Ok(Self {
            user: parse_id(user)?,
            app: parse_id(app)?,
        })
    }

    /// The user id.
    pub fn user(&self) -> i64 {
        self.user
    }

    /// The application id.
    pub fn app(&self) -> i64 {
        self.app
    }
}

impl FromStr for QbNode {
    type Err = QbNodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for QbNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.user, self.app)
    }
}

fn parse_id(s: &str) -> Result<i64, QbNodeError> {
    // Checked by hand first: `i64::from_str` would accept a leading '+' or '-'.
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(QbNodeError::NotCanonical);
    }
    // Only digits are left, so the only possible failure is overflow.
    s.parse().map_err(|_| QbNodeError::Overflow)
}

fn normalize_node(node: &str) -> Result<String, JidError> {
    check_part(node, JidPart::Node)?;
    if let Some(ch) = node.chars().find(|&ch| {
        matches!(ch, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
            || ch.is_whitespace()
            || ch.is_control()
    }) {
        return Err(JidError::ForbiddenChar {
            part: JidPart::Node,
            ch,
        });
    }
    Ok(node.to_ascii_lowercase())
}

fn normalize_domain(domain: &str) -> Result<String, JidError> {
    // RFC 7622 §3.2: a trailing dot (fully qualified form) is not part of the domain.
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    check_part(domain, JidPart::Domain)?;
    if let Some(ch) = domain.chars().find(|&ch| {
        matches!(ch, '"' | '&' | '\'' | '/' | '<' | '>' | '@')
            || ch.is_whitespace()
            || ch.is_control()
    }) {
        return Err(JidError::ForbiddenChar {
            part: JidPart::Domain,
            ch,
        });
    }
    Ok(domain.to_ascii_lowercase())
}

fn check_resource(resource: &str) -> Result<&str, JidError> {
    check_part(resource, JidPart::Resource)?;
    if let Some(ch) = resource.chars().find(|ch| ch.is_control()) {
        return Err(JidError::ForbiddenChar {
            part: JidPart::Resource,
            ch,
        });
    }
    Ok(resource)
}

fn check_part(part: &str, which: JidPart) -> Result<(), JidError> {
    if part.is_empty() {
        return Err(JidError::EmptyPart(which));
    }
    if part.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(which));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_three_shapes() {
        let jid = Jid::parse("7-42@Chat.Example.COM/Web-1").unwrap();
        assert_eq!(jid.node(), Some("7-42"));
        assert_eq!(jid.domain(), "chat.example.com");
        assert_eq!(jid.resource(), Some("Web-1"));
        assert_eq!(jid.to_string(), "7-42@chat.example.com/Web-1");

        let bare = BareJid::parse("User@dom").unwrap();
        assert_eq!((bare.node(), bare.domain()), (Some("user"), "dom"));
        assert_eq!(bare.to_string(), "user@dom");

        let server = Jid::parse("dom").unwrap();
        assert_eq!((server.node(), server.resource()), (None, None));
        assert_eq!(Jid::parse("dom/r").unwrap().to_string(), "dom/r");
    }

    #[test]
    fn resource_starts_at_first_slash_and_keeps_case_slashes_and_ats() {
        let full = FullJid::parse("a@b/c/d").unwrap();
        assert_eq!(full.resource(), "c/d");
        let full = FullJid::parse("a@b/C@D/e").unwrap();
        assert_eq!((full.node(), full.domain()), (Some("a"), "b"));
        assert_eq!(full.resource(), "C@D/e");
        // The '@' after the first '/' does not end a node.
        let full = FullJid::parse("b/x@y").unwrap();
        assert_eq!((full.node(), full.resource()), (None, "x@y"));
    }

    #[test]
    fn empty_parts_are_rejected() {
        assert_eq!(Jid::parse(""), Err(JidError::Empty));
        assert_eq!(Jid::parse("@b"), Err(JidError::EmptyPart(JidPart::Node)));
        assert_eq!(Jid::parse("a@"), Err(JidError::EmptyPart(JidPart::Domain)));
        assert_eq!(
            Jid::parse("a@/r"),
            Err(JidError::EmptyPart(JidPart::Domain))
        );
        assert_eq!(
            Jid::parse("b/"),
            Err(JidError::EmptyPart(JidPart::Resource))
        );
        assert_eq!(Jid::parse("/r"), Err(JidError::EmptyPart(JidPart::Domain)));
        assert_eq!(Jid::parse("."), Err(JidError::EmptyPart(JidPart::Domain)));
    }

    #[test]
    fn parts_longer_than_1023_bytes_are_rejected() {
        let max = "x".repeat(MAX_PART_BYTES);
        let over = "x".repeat(MAX_PART_BYTES + 1);
        assert!(Jid::parse(&format!("{max}@{max}/{max}")).is_ok());
        assert_eq!(
            Jid::parse(&format!("{over}@d")),
            Err(JidError::TooLong(JidPart::Node))
        );
        assert_eq!(Jid::parse(&over), Err(JidError::TooLong(JidPart::Domain)));
        assert_eq!(
            Jid::parse(&format!("d/{over}")),
            Err(JidError::TooLong(JidPart::Resource))
        );
        // Bytes, not characters: 512 two-byte characters are 1024 bytes.
        assert_eq!(
            Jid::parse(&format!("{}@d", "é".repeat(512))),
            Err(JidError::TooLong(JidPart::Node))
        );
    }

    #[test]
    fn forbidden_characters_are_rejected() {
        for node in [
            "a b", "a\"b", "a&b", "a'b", "a:b", "a<b", "a>b", "a\tb", "a\u{85}b",
        ] {
            let err = Jid::parse(&format!("{node}@d")).unwrap_err();
            assert!(
                matches!(
                    err,
                    JidError::ForbiddenChar {
                        part: JidPart::Node,
                        ..
                    }
                ),
                "{node:?}: {err:?}"
            );
        }
        assert_eq!(
            Jid::parse("a@b@c"),
            Err(JidError::ForbiddenChar {
                part: JidPart::Domain,
                ch: '@'
            })
        );
        assert!(Jid::parse("d o").is_err());
        assert_eq!(
            Jid::parse("d/a\u{7}b"),
            Err(JidError::ForbiddenChar {
                part: JidPart::Resource,
                ch: '\u{7}'
            })
        );
        // Spaces and quotes are fine in a resource.
        assert_eq!(Jid::parse("d/a 'b'").unwrap().resource(), Some("a 'b'"));
    }

    #[test]
    fn only_ascii_is_lowercased_and_trailing_dot_is_stripped() {
        let jid = BareJid::parse("ÄB@Ünïcode.Example.").unwrap();
        assert_eq!(jid.node(), Some("Äb"));
        assert_eq!(jid.domain(), "Ünïcode.example");
        assert_eq!(BareJid::parse("[::1]").unwrap().domain(), "[::1]");
    }

    #[test]
    fn bare_and_full_conversions() {
        assert_eq!(BareJid::parse("a@b/c"), Err(JidError::UnexpectedResource));
        assert_eq!(FullJid::parse("a@b"), Err(JidError::MissingResource));
        let bare = BareJid::new(Some("7-42"), "Dom").unwrap();
        let full = bare.with_resource("R").unwrap();
        assert_eq!(full.to_string(), "7-42@dom/R");
        assert_eq!(full.bare(), &bare);
        assert_eq!(
            bare.with_resource(""),
            Err(JidError::EmptyPart(JidPart::Resource))
        );
        assert_eq!(Jid::from(full.clone()).bare(), &bare);
        assert_eq!(Jid::from(full.clone()).as_full(), Some(&full));
        assert_eq!(full.into_bare(), bare);
        assert_eq!(
            "a@B".parse::<Jid>().unwrap(),
            Jid::Bare("a@b".parse().unwrap())
        );
        assert_eq!(JidError::Empty.stanza_error_condition(), "jid-malformed");
    }

    #[test]
    fn qb_node_round_trips_canonical_ids_only() {
        let node = QbNode::parse("7-42").unwrap();
        assert_eq!((node.user(), node.app()), (7, 42));
        assert_eq!(node.to_string(), "7-42");
        assert_eq!(QbNode::new(7, 42), Some(node));
        assert_eq!(QbNode::new(-7, 42), None);
        assert_eq!(
            QbNode::parse("9223372036854775807-0").unwrap().user(),
            i64::MAX
        );

        assert_eq!(QbNode::parse("742"), Err(QbNodeError::MissingSeparator));
        for bad in [
            "-7-42", "+7-42", "7-+42", "7--42", "7-", "-42", "07-42", "7-042", "7-42-1", "7 -42",
            "٧-42",
        ] {
            assert_eq!(
                QbNode::parse(bad),
                Err(QbNodeError::NotCanonical),
                "{bad:?}"
            );
        }
        assert_eq!(
            QbNode::parse("9223372036854775808-1"),
            Err(QbNodeError::Overflow)
        );
        assert_eq!(QbNode::parse("0-0").unwrap().to_string(), "0-0");
    }
}
