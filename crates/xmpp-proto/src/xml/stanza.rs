//! A stanza as received: its exact bytes plus a typed envelope read from the opening tag only.
//!
//! Routing reads the envelope (RFC 6120 §8.1: `to`, `from`, `id`, `type`, `xml:lang`) and
//! forwards the bytes; the payload stays unparsed until a handler claims it. The only rewrite
//! routing needs is stamping `from` (and sometimes `to`, RFC 6120 §8.1.2), which
//! [`Stanza::with_from_to`] does without touching a byte of the children.

use std::ops::Range;

use super::{escape_attr, ns};
use crate::jid::{Jid, JidError};

/// One complete top-level element of a stream: a stanza (`message`, `presence`, `iq`) or a
/// nonza (`auth`, `starttls`, `enable`, `r`, …).
///
/// On a TCP stream the element usually inherits `jabber:client` from the stream header, so its
/// bytes carry no `xmlns`. Forwarding it onto a WebSocket stream, where nothing is inherited,
/// needs that namespace added; [`Envelope::namespace`] says which one applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The element exactly as received (plus declarations of prefixes it inherited from the
    /// stream header, if any: see `OpeningTag::inherited`). Always valid UTF-8: every token was
    /// checked.
    text: String,
    envelope: Envelope,
    /// Offset just past the element name in the opening tag, where new attributes go.
    name_end: usize,
    /// Offset of the `>` or `/>` that ends the opening tag.
    attrs_end: usize,
    /// Spans of the whole `from='…'` and `to='…'` attributes, if present.
    from_attr: Option<Range<usize>>,
    to_attr: Option<Range<usize>>,
}

/// What routing needs to know about a stanza, read from its opening tag. Attribute values are
/// unescaped and normalised; names are as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// Local name of the element (`message`, `iq`, `auth`, …).
    pub name: String,
    /// Namespace of the element: its own `xmlns`, the one its prefix is bound to, or the
    /// stream's default namespace it inherits. `None` if it has none.
    pub namespace: Option<String>,
    /// The `to` attribute.
    pub to: Option<String>,
    /// The `from` attribute.
    pub from: Option<String>,
    /// The `type` attribute.
    pub stanza_type: Option<String>,
    /// The `id` attribute.
    pub id: Option<String>,
    /// The `xml:lang` attribute.
    pub lang: Option<String>,
}

/// The three stanza kinds of RFC 6120 §8, or something else (a nonza or a stanza outside the
/// content namespaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    /// `<message/>`.
    Message,
    /// `<presence/>`.
    Presence,
    /// `<iq/>`.
    Iq,
    /// Anything else.
    Other,
}

/// The `type` of a `<presence/>` (RFC 6121 §4.7.1); no attribute means available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceType {
    /// No `type`: the sender is available.
    Available,
    /// The sender is no longer available.
    Unavailable,
    /// A subscription request (RFC 6121 §3.1).
    Subscribe,
    /// A subscription approval.
    Subscribed,
    /// A request to end a subscription.
    Unsubscribe,
    /// A subscription denial or cancellation.
    Unsubscribed,
    /// A request for the current presence (sent by servers).
    Probe,
    /// An error about a previous presence.
    Error,
}

impl PresenceType {
    /// The type named by a `type` attribute; `None` for a value RFC 6121 does not define.
    pub fn parse(type_attr: Option<&str>) -> Option<PresenceType> {
        Some(match type_attr {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("subscribe") => PresenceType::Subscribe,
            Some("subscribed") => PresenceType::Subscribed,
            Some("unsubscribe") => PresenceType::Unsubscribe,
            Some("unsubscribed") => PresenceType::Unsubscribed,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(_) => return None,
        })
    }
}

/// The `type` of an `<iq/>` (RFC 6120 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    /// A request for information.
    Get,
    /// A request to change something.
    Set,
    /// A successful answer.
    Result,
    /// A failed answer.
    Error,
}

impl IqType {
    /// The type named by a `type` attribute; `None` if missing or unknown (a `bad-request`).
    pub fn parse(type_attr: Option<&str>) -> Option<IqType> {
        Some(match type_attr? {
            "get" => IqType::Get,
            "set" => IqType::Set,
            "result" => IqType::Result,
            "error" => IqType::Error,
            _ => return None,
        })
    }

    /// Whether this iq asks for an answer (`get` or `set`).
    pub fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }
}

/// The envelope and where its attributes sit in the opening tag; built by the parser.
#[derive(Debug)]
pub(super) struct OpeningTag {
    pub(super) envelope: Envelope,
    pub(super) name_end: usize,
    pub(super) attrs_end: usize,
    pub(super) from_attr: Option<Range<usize>>,
    pub(super) to_attr: Option<Range<usize>>,
    /// `(prefix, namespace)` declared on the stream header, not on this element, to be
    /// declared on it so the stanza stands alone.
    pub(super) inherited: Vec<(String, String)>,
}

impl Stanza {
    pub(super) fn new(mut text: String, mut tag: OpeningTag) -> Self {
        if !tag.inherited.is_empty() {
            let declarations: String = tag
                .inherited
                .iter()
                .map(|(prefix, uri)| format!(" xmlns:{prefix}='{}'", escape_attr(uri)))
                .collect();
            text.insert_str(tag.name_end, &declarations);
            let shift = declarations.len();
            let moved = |span: Range<usize>| span.start + shift..span.end + shift;
            tag.attrs_end += shift;
            tag.from_attr = tag.from_attr.map(moved);
            tag.to_attr = tag.to_attr.map(moved);
        }
        Self {
            text,
            envelope: tag.envelope,
            name_end: tag.name_end,
            attrs_end: tag.attrs_end,
            from_attr: tag.from_attr,
            to_attr: tag.to_attr,
        }
    }

    /// The element as received (see the `text` field for the one addition).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// [`as_str`](Self::as_str) as bytes.
    pub fn bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// Takes the received text, e.g. to forward it unchanged.
    pub fn into_string(self) -> String {
        self.text
    }

    /// The typed envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Byte range of the opening tag's attributes, from just after the element name to just
    /// before `>` or `/>` (including the whitespace around them).
    pub fn attributes_range(&self) -> Range<usize> {
        self.name_end..self.attrs_end
    }

    /// The stanza with `from` and/or `to` set to the given (unescaped) values; `None` leaves
    /// that attribute as received. An existing attribute is replaced where it stands, a missing
    /// one is inserted right after the element name. Every other byte is kept, so children are
    /// byte-identical.
    pub fn with_from_to(&self, from: Option<&str>, to: Option<&str>) -> String {
        // At most two edits; both inserts land at `name_end`, `from` first.
        let mut edits: Vec<(Range<usize>, String)> = Vec::with_capacity(2);
        for (name, value, span) in [("from", from, &self.from_attr), ("to", to, &self.to_attr)] {
            let Some(value) = value else { continue };
            let attr = format!("{name}='{}'", escape_attr(value));
            match span {
                Some(span) => edits.push((span.clone(), attr)),
                None => edits.push((self.name_end..self.name_end, format!(" {attr}"))),
            }
        }
        edits.sort_by_key(|(span, _)| span.start);

        let extra: usize = edits.iter().map(|(_, attr)| attr.len()).sum();
        let mut out = String::with_capacity(self.text.len() + extra);
        let mut copied = 0;
        for (span, attr) in edits {
            out.push_str(&self.text[copied..span.start]);
            out.push_str(&attr);
            copied = span.end;
        }
        out.push_str(&self.text[copied..]);
        out
    }
}

impl Envelope {
    /// Message, presence or iq if the element is one in `jabber:client` or `jabber:server`.
    pub fn kind(&self) -> StanzaKind {
        if !matches!(self.namespace.as_deref(), Some(ns::CLIENT | ns::SERVER)) {
            return StanzaKind::Other;
        }
        match self.name.as_str() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            _ => StanzaKind::Other,
        }
    }

    /// The `type` of a presence, `None` when it names no RFC 6121 type.
    pub fn presence_type(&self) -> Option<PresenceType> {
        PresenceType::parse(self.stanza_type.as_deref())
    }

    /// The `type` of an iq, `None` when missing or unknown.
    pub fn iq_type(&self) -> Option<IqType> {
        IqType::parse(self.stanza_type.as_deref())
    }

    /// Whether this is an error stanza (`type='error'`), which is never answered with an error.
    pub fn is_error(&self) -> bool {
        self.stanza_type.as_deref() == Some("error")
    }

    /// `to` as a JID. A malformed address is a stanza error (`jid-malformed`), not a stream
    /// error, which is why the tokenizer leaves it a string.
    pub fn to_jid(&self) -> Result<Option<Jid>, JidError> {
        self.to.as_deref().map(Jid::parse).transpose()
    }

    /// `from` as a JID; see [`Envelope::to_jid`].
    pub fn from_jid(&self) -> Result<Option<Jid>, JidError> {
        self.from.as_deref().map(Jid::parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::xml::{Event, Limits, StreamParser};

    use super::*;

    /// Parses one stanza on a TCP stream whose default namespace is `jabber:client`.
    fn stanza(xml: &str) -> Stanza {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(
            b"<stream:stream xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams' to='dom' version='1.0'>",
        );
        parser.feed(xml.as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(Event::StreamOpen(_)))
        ));
        match parser.next_event() {
            Ok(Some(Event::Stanza(stanza))) => stanza,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    #[test]
    fn envelope_is_read_from_the_opening_tag_only() {
        let s = stanza(
            "<message to='7-42@dom' from=\"8-42@dom/r\" id='a&amp;b' type='chat' \
             xml:lang='en'><body to='x'>hi</body></message>",
        );
        let env = s.envelope();
        assert_eq!(env.name, "message");
        assert_eq!(env.namespace.as_deref(), Some("jabber:client"));
        assert_eq!(env.kind(), StanzaKind::Message);
        assert_eq!(env.to.as_deref(), Some("7-42@dom"));
        assert_eq!(env.from.as_deref(), Some("8-42@dom/r"));
        assert_eq!(env.id.as_deref(), Some("a&b"));
        assert_eq!(env.stanza_type.as_deref(), Some("chat"));
        assert_eq!(env.lang.as_deref(), Some("en"));
        assert_eq!(env.to_jid().unwrap().unwrap().to_string(), "7-42@dom");
        assert_eq!(env.from_jid().unwrap().unwrap().resource(), Some("r"));
    }

    #[test]
    fn malformed_addresses_are_left_to_the_router() {
        let s = stanza("<iq to='@dom' type='get' id='1'/>");
        assert_eq!(s.envelope().kind(), StanzaKind::Iq);
        assert!(s.envelope().to_jid().is_err());
        assert_eq!(s.envelope().from_jid(), Ok(None));
    }

    #[test]
    fn kind_needs_a_content_namespace() {
        assert_eq!(
            stanza("<presence/>").envelope().kind(),
            StanzaKind::Presence
        );
        let sasl = stanza("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>");
        assert_eq!(sasl.envelope().kind(), StanzaKind::Other);
        assert_eq!(
            stanza("<message xmlns='urn:x'/>").envelope().kind(),
            StanzaKind::Other
        );
    }

    #[test]
    fn with_from_to_inserts_from_and_keeps_children_identical() {
        let s = stanza("<message to='a@b' id='x' type='chat'><body>hi</body></message>");
        assert_eq!(
            s.with_from_to(Some("7-42@dom/r"), None),
            "<message from='7-42@dom/r' to='a@b' id='x' type='chat'><body>hi</body></message>"
        );
        assert_eq!(s.attributes_range(), 8..36);
        assert_eq!(
            &s.as_str()[s.attributes_range()],
            " to='a@b' id='x' type='chat'"
        );
        // No change requested: the bytes as received.
        assert_eq!(s.with_from_to(None, None), s.as_str());
    }

    #[test]
    fn with_from_to_replaces_in_place() {
        let s = stanza(
            "<iq type='get'\n  from=\"spoofed\"  to='old' id='1'><query xmlns='jabber:iq:last' \
             from='keep'/></iq>",
        );
        assert_eq!(
            s.with_from_to(Some("me@dom/r"), Some("new")),
            "<iq type='get'\n  from='me@dom/r'  to='new' id='1'><query xmlns='jabber:iq:last' \
             from='keep'/></iq>"
        );
        assert_eq!(
            s.with_from_to(None, Some("t")),
            "<iq type='get'\n  from=\"spoofed\"  to='t' id='1'><query xmlns='jabber:iq:last' \
             from='keep'/></iq>"
        );
    }

    #[test]
    fn with_from_to_on_self_closing_and_both_inserted() {
        let s = stanza("<presence/>");
        assert_eq!(
            s.with_from_to(Some("a@b/c"), Some("d@e")),
            "<presence from='a@b/c' to='d@e'/>"
        );
    }

    #[test]
    fn with_from_to_escapes_values() {
        let s = stanza("<message to='a@b'><body/></message>");
        let out = s.with_from_to(Some("a'b&c<d\"e"), None);
        assert_eq!(
            out,
            "<message from='a&apos;b&amp;c&lt;d&quot;e' to='a@b'><body/></message>"
        );
        // The result parses back to the same value.
        assert_eq!(stanza(&out).envelope().from.as_deref(), Some("a'b&c<d\"e"));
    }
}
