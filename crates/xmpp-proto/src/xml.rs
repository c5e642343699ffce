//! The XML layer of an XMPP stream: a strict streaming tokenizer ([`StreamParser`]), the raw
//! stanza with its typed envelope ([`Stanza`]), the errors they raise ([`XmlError`]), escaping,
//! and a minimal DOM ([`Element`]) for the payloads a handler claims.
//!
//! XMPP uses a restricted XML 1.0 (RFC 6120 §11): no comments, no processing instructions other
//! than the XML declaration, no DTDs, and no entity references other than the five predefined
//! ones and character references. Framing is either one long-lived `<stream:stream>` element
//! (TCP, RFC 6120 §4) or one complete element per WebSocket message (RFC 7395).
//!
//! We write our own tokenizer instead of using a general XML library because routing must
//! forward each stanza byte for byte (QuickBlox clients expect their `extraParams` back exactly
//! as sent) and must not build a DOM for stanzas it only routes.

use std::borrow::Cow;

use crate::errors::StreamErrorCondition;

mod children;
mod element;
mod parser;
mod stanza;
#[cfg(test)]
pub(crate) mod test_rng;

pub use children::{children, Child, Children};
pub use element::{Element, Node};
pub use parser::{Event, Framing, Limits, StreamHeader, StreamParser};
pub use stanza::{Envelope, IqType, PresenceType, Stanza, StanzaKind};

/// Namespace names used by the stream layer.
pub mod ns {
    /// The stream namespace of `<stream:stream>` (RFC 6120 §4.8.1).
    pub const STREAMS: &str = "http://etherx.jabber.org/streams";
    /// The WebSocket framing namespace of `<open/>` and `<close/>` (RFC 7395 §3.3).
    pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
    /// The client-to-server content namespace (RFC 6120 §4.8.3).
    pub const CLIENT: &str = "jabber:client";
    /// The server-to-server content namespace (RFC 6120 §4.8.3).
    pub const SERVER: &str = "jabber:server";
    /// The namespace the `xml:` prefix is bound to by definition.
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
    /// The namespace of `xmlns` attributes, which nothing may be bound to.
    pub const XMLNS: &str = "http://www.w3.org/2000/xmlns/";
}

/// A violation of the XML rules of an XMPP stream. Every one of them ends the stream; the
/// shell sends the [`stream_error_condition`](XmlError::stream_error_condition) and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Bytes that are not UTF-8 (RFC 6120 §4.9.3.22 names `unsupported-encoding` for this).
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// The XML declaration names an encoding other than UTF-8.
    #[error("unsupported encoding {0:?}")]
    UnsupportedEncoding(String),
    /// A malformed XML declaration.
    #[error("malformed XML declaration")]
    InvalidXmlDeclaration,
    /// An XML declaration anywhere but before the stream header.
    #[error("XML declaration after the start of the stream")]
    MisplacedXmlDeclaration,
    /// A document type declaration or other markup declaration (`<!DOCTYPE`, `<!ENTITY`, …).
    #[error("DTDs are not allowed")]
    Dtd,
    /// A comment.
    #[error("comments are not allowed")]
    Comment,
    /// A processing instruction.
    #[error("processing instructions are not allowed")]
    ProcessingInstruction,
    /// An entity reference other than `amp`, `lt`, `gt`, `quot` and `apos`.
    #[error("undefined entity &{0};")]
    UndefinedEntity(String),
    /// An `&` that does not start a well-formed reference.
    #[error("malformed entity or character reference")]
    MalformedReference,
    /// A character reference to a character XML 1.0 does not allow (`&#0;`, `&#xD800;`, …).
    #[error("character reference to a forbidden character")]
    InvalidCharReference,
    /// A literal character XML 1.0 does not allow (most C0 controls, U+FFFE, U+FFFF).
    #[error("forbidden character U+{0:04X}")]
    InvalidChar(u32),
    /// `]]>` in character data.
    #[error("']]>' in character data")]
    CdataEndInText,
    /// An element or attribute name that is not an XML QName.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// Syntax error inside a start or end tag.
    #[error("malformed tag: {0}")]
    MalformedTag(&'static str),
    /// An attribute value without quotes.
    #[error("attribute {0:?} has an unquoted value")]
    UnquotedAttribute(String),
    /// The same attribute twice on one element.
    #[error("duplicate attribute {0:?}")]
    DuplicateAttribute(String),
    /// A literal `<` in an attribute value.
    #[error("'<' in an attribute value")]
    LtInAttributeValue,
    /// An end tag that does not match the open element.
    #[error("end tag </{found}> does not match <{expected}>")]
    MismatchedEndTag {
        /// Name of the element that is open.
        expected: String,
        /// Name in the end tag.
        found: String,
    },
    /// An end tag with no open element to close (other than the stream's own).
    #[error("unexpected end tag </{0}>")]
    UnexpectedEndTag(String),
    /// A prefix that no `xmlns:prefix` in scope declares.
    #[error("undeclared namespace prefix {0:?}")]
    UndeclaredPrefix(String),
    /// A namespace declaration Namespaces in XML 1.0 forbids (`xmlns:xmlns`, rebinding `xml`,
    /// an empty prefixed declaration).
    #[error("invalid namespace declaration {0:?}")]
    InvalidNamespaceDeclaration(String),
    /// The stream header, `<open/>` or `<close/>` is in the wrong namespace, or the `stream`
    /// prefix is bound to something other than the stream namespace.
    #[error("wrong stream namespace")]
    InvalidStreamNamespace,
    /// The first element is not a stream header, or a header has the wrong shape.
    #[error("bad stream header: {0}")]
    BadStreamHeader(&'static str),
    /// Non-whitespace character data (or CDATA) outside a stanza.
    #[error("character data outside a stanza")]
    TextOutsideStanza,
    /// Elements nested deeper than [`Limits::max_depth`].
    #[error("elements nested deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A stanza longer than [`Limits::max_stanza_bytes`].
    #[error("stanza longer than {max} bytes")]
    StanzaTooLarge {
        /// The limit.
        max: usize,
    },
    /// A stream header or XML declaration longer than [`Limits::max_header_bytes`].
    #[error("stream header longer than {max} bytes")]
    HeaderTooLarge {
        /// The limit.
        max: usize,
    },
    /// More attributes on one element than [`Limits::max_attributes`].
    #[error("more than {max} attributes on one element")]
    TooManyAttributes {
        /// The limit.
        max: usize,
    },
    /// Text given to [`Element::parse`] that is not exactly one complete element: empty,
    /// unclosed, or with something before or after it. Never raised on a stream.
    #[error("not exactly one element: {0}")]
    NotOneElement(&'static str),
}

impl XmlError {
    /// The RFC 6120 §4.9.3 stream error condition to close the stream with. This is the one
    /// place an XML violation becomes a wire condition.
    pub fn stream_error_condition(&self) -> StreamErrorCondition {
        use XmlError::*;
        match self {
            InvalidUtf8 | UnsupportedEncoding(_) => StreamErrorCondition::UnsupportedEncoding,
            // RFC 6120 §11.1 lists exactly these as "restricted XML".
            Dtd | Comment | ProcessingInstruction | UndefinedEntity(_) => {
                StreamErrorCondition::RestrictedXml
            }
            TooDeep { .. }
            | StanzaTooLarge { .. }
            | HeaderTooLarge { .. }
            | TooManyAttributes { .. } => StreamErrorCondition::PolicyViolation,
            InvalidStreamNamespace => StreamErrorCondition::InvalidNamespace,
            BadStreamHeader(_) | TextOutsideStanza => StreamErrorCondition::BadFormat,
            InvalidXmlDeclaration
            | MisplacedXmlDeclaration
            | MalformedReference
            | InvalidCharReference
            | InvalidChar(_)
            | CdataEndInText
            | InvalidName(_)
            | MalformedTag(_)
            | UnquotedAttribute(_)
            | DuplicateAttribute(_)
            | LtInAttributeValue
            | MismatchedEndTag { .. }
            | UnexpectedEndTag(_)
            | UndeclaredPrefix(_)
            | InvalidNamespaceDeclaration(_)
            | NotOneElement(_) => StreamErrorCondition::NotWellFormed,
        }
    }
}

/// Escapes character data: `&`, `<` and `>` (the last so `]]>` can never appear), and carriage
/// return as `&#13;`, which end-of-line handling (XML 1.0 §2.11) would otherwise turn into a
/// line feed.
///
/// Characters XML 1.0 cannot carry at all (most C0 controls, U+FFFE, U+FFFF) are replaced by
/// U+FFFD, so the output is always well-formed.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Escapes an attribute value for either quote style: `&`, `<`, `>`, `"`, `'`, and tab, line
/// feed and carriage return as character references so attribute-value normalisation (XML 1.0
/// §3.3.3) gives them back unchanged.
///
/// Characters XML 1.0 cannot carry at all are replaced by U+FFFD, as in [`escape_text`].
pub fn escape_attr(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Resolves the predefined entities and character references in character data.
///
/// Errors as the tokenizer would: any other entity, a malformed reference or a reference to a
/// character XML forbids.
pub fn unescape(s: &str) -> Result<Cow<'_, str>, XmlError> {
    decode(s, false)
}

fn escape(s: &str, attr: bool) -> Cow<'_, str> {
    let needs = |ch: char| match ch {
        '&' | '<' | '>' | '\r' => true,
        '"' | '\'' | '\t' | '\n' => attr,
        _ => !is_xml_char(ch as u32),
    };
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            ch if !is_xml_char(ch as u32) => out.push('\u{FFFD}'),
            ch => out.push(ch),
        }
    }
    Cow::Owned(out)
}

/// Resolves references; with `attr`, also applies attribute-value normalisation (XML 1.0
/// §3.3.3: literal tab, CR, LF and CRLF become one space each; references are not normalised).
pub(crate) fn decode(s: &str, attr: bool) -> Result<Cow<'_, str>, XmlError> {
    let special = |b: u8| b == b'&' || (attr && matches!(b, b'\t' | b'\n' | b'\r'));
    if !s.bytes().any(special) {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.bytes().position(special) {
        out.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'&' => {
                let (ch, len) = parse_reference(&rest[at..])?;
                out.push(ch);
                rest = &rest[at + len..];
            }
            b'\r' if rest.as_bytes().get(at + 1) == Some(&b'\n') => {
                out.push(' ');
                rest = &rest[at + 2..];
            }
            _ => {
                out.push(' ');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Checks character data or an attribute value: allowed characters and valid references.
pub(crate) fn check_chars_and_references(s: &str) -> Result<(), XmlError> {
    check_chars(s)?;
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        let (_, len) = parse_reference(&rest[at..])?;
        rest = &rest[at + len..];
    }
    Ok(())
}

/// Parses the reference at the start of `s` (which starts with `&`). Returns the character and
/// the length of the reference including `&` and `;`.
///
/// Stops at the first byte that cannot continue the reference, so a long run of `&`s costs
/// linear time, not quadratic.
fn parse_reference(s: &str) -> Result<(char, usize), XmlError> {
    let body = &s[1..];
    if let Some(number) = body.strip_prefix('#') {
        let (digits, radix, skip) = match number.strip_prefix('x') {
            Some(hex) => (hex, 16, 3),
            None => (number, 10, 2),
        };
        let mut value: u32 = 0;
        let mut len = 0;
        for b in digits.bytes() {
            if b == b';' {
                break;
            }
            let digit = (b as char)
                .to_digit(radix)
                .ok_or(XmlError::MalformedReference)?;
            // Saturate past the Unicode range instead of overflowing: leading zeros are legal,
            // so the length alone says nothing.
            value = value
                .saturating_mul(radix)
                .saturating_add(digit)
                .min(0x11_0000);
            len += 1;
        }
        if len == 0 || digits.as_bytes().get(len) != Some(&b';') {
            return Err(XmlError::MalformedReference);
        }
        if !is_xml_char(value) {
            return Err(XmlError::InvalidCharReference);
        }
        let ch = char::from_u32(value).ok_or(XmlError::InvalidCharReference)?;
        return Ok((ch, skip + len + 1));
    }
    let end = body
        .char_indices()
        .find(|&(i, ch)| ch == ';' || !(is_name_char(ch) && (i > 0 || is_name_start_char(ch))))
        .map(|(i, _)| i)
        .ok_or(XmlError::MalformedReference)?;
    if end == 0 || body.as_bytes()[end] != b';' {
        return Err(XmlError::MalformedReference);
    }
    let ch = match &body[..end] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        name => return Err(XmlError::UndefinedEntity(excerpt(name))),
    };
    Ok((ch, end + 2))
}

/// Checks that every character is allowed by XML 1.0 §2.2 (`Char`). `s` is valid UTF-8, so
/// surrogates cannot occur; what is left to reject is C0 controls other than tab, LF and CR,
/// and U+FFFE/U+FFFF.
pub(crate) fn check_chars(s: &str) -> Result<(), XmlError> {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') {
            return Err(XmlError::InvalidChar(u32::from(b)));
        }
        // U+FFFE and U+FFFF are EF BF BE and EF BF BF.
        if b == 0xEF && bytes.get(i + 1) == Some(&0xBF) {
            match bytes.get(i + 2) {
                Some(0xBE) => return Err(XmlError::InvalidChar(0xFFFE)),
                Some(0xBF) => return Err(XmlError::InvalidChar(0xFFFF)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// XML 1.0 `Char`.
pub(crate) fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x1_0000..=0x10_FFFF)
}

/// XML 1.0 white space (`S`).
pub(crate) fn is_xml_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Splits a QName into prefix and local part, checking both are NCNames (Namespaces in XML 1.0
/// §4).
pub(crate) fn split_qname(name: &str) -> Result<(Option<&str>, &str), XmlError> {
    let (prefix, local) = match name.split_once(':') {
        Some((prefix, local)) => (Some(prefix), local),
        None => (None, name),
    };
    if !prefix.is_none_or(is_ncname) || !is_ncname(local) {
        return Err(XmlError::InvalidName(excerpt(name)));
    }
    Ok((prefix, local))
}

fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// XML 1.0 `NameStartChar` without `:` (which QNames reserve for the prefix).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 `NameChar` without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Peer-controlled strings go into errors (and maybe logs) only as a short excerpt.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_text_and_attr() {
        assert!(matches!(escape_text("plain"), Cow::Borrowed("plain")));
        assert_eq!(
            escape_text("a<b & c>d 'q' \"q\""),
            "a&lt;b &amp; c&gt;d 'q' \"q\""
        );
        assert_eq!(
            escape_attr("a<b & c>d 'q' \"q\"\t\n\r"),
            "a&lt;b &amp; c&gt;d &apos;q&apos; &quot;q&quot;&#9;&#10;&#13;"
        );
        assert_eq!(escape_text("cr\r\nlf\ttab"), "cr&#13;\nlf\ttab");
        assert_eq!(escape_text("bell\u{7}"), "bell\u{FFFD}");
        assert_eq!(escape_attr("\u{FFFF}"), "\u{FFFD}");
    }

    #[test]
    fn unescape_round_trips_escape() {
        let s = "a<b & c>d 'q' \"q\" 😀";
        assert_eq!(unescape(&escape_text(s)).unwrap(), s);
        assert_eq!(
            decode(&escape_attr("t\tn\nr\r"), true).unwrap(),
            "t\tn\nr\r"
        );
    }

    #[test]
    fn unescape_resolves_predefined_and_character_references() {
        assert_eq!(
            unescape("&amp;&lt;&gt;&quot;&apos;&#65;&#x1F600;&#x00041;").unwrap(),
            "&<>\"'A😀A"
        );
        assert_eq!(
            unescape("&foo;"),
            Err(XmlError::UndefinedEntity("foo".into()))
        );
        for bad in [
            "&", "&amp", "&;", "&#;", "&#x;", "&#12a;", "& amp;", "&a b;", "&#-1;",
        ] {
            assert_eq!(unescape(bad), Err(XmlError::MalformedReference), "{bad:?}");
        }
        for bad in [
            "&#0;",
            "&#1;",
            "&#xD800;",
            "&#xFFFE;",
            "&#x110000;",
            "&#99999999999999;",
        ] {
            assert_eq!(
                unescape(bad),
                Err(XmlError::InvalidCharReference),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn attribute_normalisation_turns_literal_whitespace_into_spaces() {
        assert_eq!(decode("a\tb\nc\r\nd\re", true).unwrap(), "a b c d e");
        assert_eq!(decode("a&#10;b", true).unwrap(), "a\nb");
        assert_eq!(decode("a\tb", false).unwrap(), "a\tb");
    }

    #[test]
    fn char_checks() {
        assert!(check_chars("tab\tlf\ncr\r é 😀 \u{7F}").is_ok());
        assert_eq!(check_chars("a\u{0}"), Err(XmlError::InvalidChar(0)));
        assert_eq!(check_chars("a\u{1B}"), Err(XmlError::InvalidChar(0x1B)));
        assert_eq!(check_chars("\u{FFFE}"), Err(XmlError::InvalidChar(0xFFFE)));
        assert_eq!(check_chars("\u{FFFF}"), Err(XmlError::InvalidChar(0xFFFF)));
        assert!(check_chars("\u{FFFD}\u{EFBF}").is_ok());
    }

    #[test]
    fn qnames() {
        assert_eq!(
            split_qname("stream:stream").unwrap(),
            (Some("stream"), "stream")
        );
        assert_eq!(split_qname("extraParams").unwrap(), (None, "extraParams"));
        assert_eq!(split_qname("é-1.x_").unwrap(), (None, "é-1.x_"));
        for bad in ["", "1a", "-a", "a:b:c", ":a", "a:", "a b", "a=", "a/", "a'"] {
            assert!(split_qname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn excerpt_truncates_long_peer_strings() {
        assert_eq!(excerpt("short"), "short");
        assert_eq!(excerpt(&"é".repeat(100)).chars().count(), 65);
    }
}
