//! Strict, incremental, zero-DOM tokenizer for XMPP streams over TCP (RFC 6120 §4) and
//! WebSocket (RFC 7395), made for untrusted input.
//!
//! The parser works at two levels. A lexer finds the next complete token (character data, a
//! start tag, an end tag, a CDATA section, the XML declaration) in the buffered bytes and never
//! looks at a byte twice: it keeps the position where the search for the current token's end
//! stopped, so feeding a stanza one byte at a time costs the same as feeding it whole. Each
//! complete token is then checked once (UTF-8, characters, names, references, namespaces) and
//! either changes the stream state or becomes part of the stanza being collected. A stanza's
//! bytes stay in the buffer until its end tag arrives and are then copied out verbatim.
//!
//! Every size is bounded: a stanza may not grow past [`Limits::max_stanza_bytes`] (checked
//! against the partial stanza, so a peer cannot make us buffer more), a header token past
//! [`Limits::max_header_bytes`], nesting past [`Limits::max_depth`], an element past
//! [`Limits::max_attributes`]. Whitespace between stanzas is dropped as it arrives.

use std::collections::HashMap;
use std::ops::Range;

use super::stanza::{Envelope, OpeningTag, Stanza};
use super::{
    check_chars, check_chars_and_references, decode, excerpt, is_xml_whitespace, ns, split_qname,
    XmlError,
};

/// Buffer capacity kept across stanzas; more is released once the data that needed it is gone.
const RETAINED_CAPACITY: usize = 16 * 1024;

/// Bounds on what a peer can make the parser hold or do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Deepest element nesting inside a stanza; the stanza element itself is depth 1.
    pub max_depth: usize,
    /// Longest stanza, in bytes, from its `<` to its final `>`.
    pub max_stanza_bytes: usize,
    /// Longest token before the stream starts (XML declaration, stream header, `<open/>`).
    pub max_header_bytes: usize,
    /// Most attributes on one element (including namespace declarations). Also keeps the
    /// duplicate-attribute check cheap.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_stanza_bytes: 256 * 1024,
            max_header_bytes: 4 * 1024,
            max_attributes: 64,
        }
    }
}

/// What the parser recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A TCP stream header `<stream:stream …>` (RFC 6120 §4.7). The stream is now open and
    /// every following top-level element is a [`Event::Stanza`].
    StreamOpen(StreamHeader),
    /// A WebSocket `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' …/>` (RFC 7395 §3.4).
    /// On a WebSocket stream a later `<open/>` (the stream restart after SASL) is reported
    /// again without calling [`StreamParser::restart`].
    Open(StreamHeader),
    /// One complete stanza or nonza.
    Stanza(Stanza),
    /// `</stream:stream>` or the WebSocket `<close/>`. The parser ignores everything after it.
    Close,
}

/// How the stream is framed, decided by its first element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// One `<stream:stream>` element around all stanzas (RFC 6120).
    Tcp,
    /// One top-level element per WebSocket message (RFC 7395).
    WebSocket,
}

/// The attributes of a stream header or `<open/>`, unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StreamHeader {
    /// `to`: the domain the peer wants to reach.
    pub to: Option<String>,
    /// `from`: the peer's own address, if it says.
    pub from: Option<String>,
    /// `version`, which must be `1.0` for XMPP 1.0 features (checked by the stream state
    /// machine, which answers `unsupported-version`).
    pub version: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// `id` (only sent by servers).
    pub id: Option<String>,
    /// The default (content) namespace, e.g. `jabber:client`; TCP only. Checking it is the
    /// stream state machine's job (`invalid-namespace`).
    pub default_ns: Option<String>,
}

/// Sans-IO tokenizer for one XMPP stream.
///
/// Driving contract:
/// 1. [`feed`](Self::feed) whatever bytes arrived, in order, split anywhere;
/// 2. call [`next_event`](Self::next_event) until it returns `Ok(None)` (needs more bytes);
/// 3. on `Err`, send the stream error named by [`XmlError::stream_error_condition`] and close:
///    the parser is poisoned and repeats the error from then on;
/// 4. on a TCP stream restart (after STARTTLS or SASL success, RFC 6120 §4.3.3), call
///    [`restart`](Self::restart) right after sending the element that triggers it.
///
/// The first element decides the framing: `<stream:stream>` for TCP, `<open/>` for WebSocket
/// (where the shell feeds each message's text in turn). Whitespace between stanzas
/// (keep-alives) is dropped without an event; a shell that tracks idleness sees the bytes
/// arrive anyway.
///
/// ```
/// use xmpp_proto::{Event, Limits, StreamParser};
///
/// let mut parser = StreamParser::new(Limits::default());
/// parser.feed(b"<stream:stream xmlns='jabber:client' \
///     xmlns:stream='http://etherx.jabber.org/streams' to='dom' version='1.0'>\
///     <message to='7-42@dom' type='chat'><body>hi</body></message>");
/// let mut routed = Vec::new();
/// while let Some(event) = parser.next_event()? {
///     match event {
///         Event::StreamOpen(header) => assert_eq!(header.to.as_deref(), Some("dom")),
///         Event::Stanza(stanza) => routed.push(stanza.with_from_to(Some("8-42@dom/web"), None)),
///         _ => {}
///     }
/// }
/// assert_eq!(
///     routed,
///     ["<message from='8-42@dom/web' to='7-42@dom' type='chat'><body>hi</body></message>"]
/// );
/// # Ok::<(), xmpp_proto::XmlError>(())
/// ```
#[derive(Debug)]
pub struct StreamParser {
    /// Unconsumed input. Bytes before `lexer.pos` (or before the stanza being collected) are
    /// consumed and dropped on the next `feed`.
    buf: Vec<u8>,
    lexer: Lexer,
    state: State,
}

impl StreamParser {
    /// A parser expecting a stream header or `<open/>`.
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            lexer: Lexer::default(),
            state: State {
                limits,
                phase: Phase::Prolog {
                    declaration_allowed: true,
                },
                stream: StreamScope::default(),
                stanza: None,
                prefixes: PrefixScope::default(),
                failed: None,
            },
        }
    }

    /// Appends received bytes. Cheap: parsing happens in [`next_event`](Self::next_event).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state.phase == Phase::Closed || self.state.failed.is_some() {
            return;
        }
        // Drop consumed bytes here rather than after each event: one shift per read, however
        // many stanzas it held.
        let keep_from = self.keep_from();
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.lexer.pos -= keep_from;
            self.lexer.scan -= keep_from;
            if let Some(stanza) = &mut self.state.stanza {
                stanza.start -= keep_from;
            }
        }
        // A connection that once received a large stanza should not hold a large buffer for
        // the rest of its life.
        let wanted = self.buf.len() + bytes.len();
        if self.buf.capacity() > RETAINED_CAPACITY && wanted < self.buf.capacity() / 4 {
            self.buf.shrink_to(wanted.max(RETAINED_CAPACITY));
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, `Ok(None)` if more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, XmlError> {
        if let Some(error) = &self.state.failed {
            return Err(error.clone());
        }
        let result = self.step();
        match &result {
            Err(error) => {
                self.state.failed = Some(error.clone());
                self.buf = Vec::new();
            }
            // Everything fed is consumed: give the buffer back. An idle connection then holds
            // no read data at all, which is most of a quiet session's memory; a busy one pays
            // one allocation per read.
            Ok(None)
                if self.state.stanza.is_none()
                    && self.lexer.pos == self.buf.len()
                    && self.lexer.scan == self.lexer.pos
                    && self.lexer.quote.is_none() =>
            {
                self.buf = Vec::new();
                self.lexer.pos = 0;
                self.lexer.scan = 0;
            }
            Ok(_) => {}
        }
        result
    }

    /// Starts a new stream on the same connection (RFC 6120 §4.3.3): expects an optional XML
    /// declaration and a new stream header. Bytes already fed but not yet returned as events
    /// (including a partial stanza, which a conforming peer cannot have sent) are parsed as
    /// part of the new stream. A poisoned parser stays poisoned.
    pub fn restart(&mut self) {
        if let Some(stanza) = self.state.stanza.take() {
            self.lexer.pos = stanza.start;
        }
        self.lexer.scan = self.lexer.pos;
        self.lexer.quote = None;
        self.state.phase = Phase::Prolog {
            declaration_allowed: true,
        };
        self.state.stream = StreamScope::default();
        self.state.prefixes = PrefixScope::default();
    }

    /// The framing, once the first element has been seen.
    pub fn framing(&self) -> Option<Framing> {
        match self.state.phase {
            Phase::Prolog { .. } => None,
            Phase::Tcp => Some(Framing::Tcp),
            Phase::WebSocket => Some(Framing::WebSocket),
            Phase::Closed => self.state.stream.framing,
        }
    }

    /// Bytes held, including consumed bytes not yet dropped; for back-pressure metrics.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn keep_from(&self) -> usize {
        match &self.state.stanza {
            Some(stanza) => stanza.start,
            None => self.lexer.pos,
        }
    }

    fn step(&mut self) -> Result<Option<Event>, XmlError> {
        loop {
            if self.state.phase == Phase::Closed {
                self.buf = Vec::new();
                self.lexer = Lexer::default();
                return Ok(None);
            }
            let Some(token) = self.lexer.next_token(&self.buf, &self.state)? else {
                return Ok(None);
            };
            if let Some(event) = self.state.handle(&self.buf, token)? {
                return Ok(Some(event));
            }
        }
    }
}

/// A complete token, as a byte range of the buffer.
#[derive(Debug)]
enum Token {
    /// Character data inside a stanza (never contains `<`).
    Text(Range<usize>),
    /// The content of a CDATA section, without `<![CDATA[` and `]]>`.
    Cdata(Range<usize>),
    /// `<name …>` or `<name …/>`.
    StartTag(Range<usize>),
    /// `</name>`.
    EndTag(Range<usize>),
    /// `<?xml …?>`.
    XmlDeclaration(Range<usize>),
}

/// Where the lexer is. All positions are absolute buffer offsets.
#[derive(Debug, Default)]
struct Lexer {
    /// Start of the token being looked for.
    pos: usize,
    /// Where the search for the end of that token resumes: everything in `pos..scan` has been
    /// looked at. This is what keeps byte-at-a-time feeding linear.
    scan: usize,
    /// Inside a start tag, the quote of the attribute value the scan stopped in.
    quote: Option<u8>,
}

impl Lexer {
    fn next_token(&mut self, buf: &[u8], state: &State) -> Result<Option<Token>, XmlError> {
        let in_stanza = state.stanza.is_some();
        if !in_stanza {
            // Between stanzas only whitespace and markup are allowed. Whitespace is consumed
            // right away, so keep-alives never accumulate in the buffer.
            while buf.get(self.pos).is_some_and(|&b| is_xml_whitespace(b)) {
                self.pos += 1;
            }
            match buf.get(self.pos) {
                None => {
                    self.scan = self.pos;
                    return Ok(None);
                }
                Some(b'<') => {}
                Some(_) => return Err(XmlError::TextOutsideStanza),
            }
        }
        let start = self.pos;
        if start >= buf.len() {
            return Ok(None);
        }
        self.scan = self.scan.max(start);
        let (limit, too_large) = state.token_limit(start);
        // Never look past the limit: if the token does not end before it, it is too large,
        // however many more bytes are buffered.
        let end = buf.len().min(limit);
        let need_more = |scan_reached: usize| {
            if scan_reached >= limit {
                Err(too_large)
            } else {
                Ok(None)
            }
        };

        if buf[start] != b'<' {
            return match find(buf, self.scan, end, |b| b == b'<') {
                Some(lt) => Ok(Some(self.take(Token::Text(start..lt), lt))),
                None => {
                    self.scan = end;
                    need_more(end)
                }
            };
        }
        let Some(&second) = buf.get(start + 1).filter(|_| start + 1 < end) else {
            return need_more(end);
        };
        match second {
            b'/' => {
                let from = self.scan.max(start + 2);
                match find(buf, from, end, |b| b == b'>' || b == b'<') {
                    Some(i) if buf[i] == b'<' => Err(XmlError::MalformedTag("'<' in an end tag")),
                    Some(i) => Ok(Some(self.take(Token::EndTag(start..i + 1), i + 1))),
                    None => {
                        self.scan = end;
                        need_more(end)
                    }
                }
            }
            b'?' => {
                // Decide as soon as the target is known: only `<?xml ` is ever acceptable, and
                // only where `State::handle` allows it.
                const DECLARATION: &[u8] = b"<?xml";
                let seen = &buf[start..end.min(start + DECLARATION.len() + 1)];
                let matches = seen.len() > DECLARATION.len()
                    && seen.starts_with(DECLARATION)
                    && is_xml_whitespace(seen[DECLARATION.len()]);
                if !matches {
                    if seen.len() > DECLARATION.len() || !DECLARATION.starts_with(seen) {
                        return Err(XmlError::ProcessingInstruction);
                    }
                    return need_more(end);
                }
                if !state.declaration_allowed() {
                    return Err(XmlError::MisplacedXmlDeclaration);
                }
                let from = self.scan.max(start + DECLARATION.len() + 2);
                match find(buf, from, end, |b| b == b'>') {
                    Some(i) if buf[i - 1] == b'?' => {
                        Ok(Some(self.take(Token::XmlDeclaration(start..i + 1), i + 1)))
                    }
                    // A '>' not preceded by '?' is not legal in a declaration.
                    Some(_) => Err(XmlError::InvalidXmlDeclaration),
                    None => {
                        self.scan = end;
                        need_more(end)
                    }
                }
            }
            b'!' => {
                // Only CDATA may start with "<!"; everything else is a comment or a markup
                // declaration, rejected at the first byte that tells them apart, before any
                // entity definition can be read (billion laughs never gets going).
                const CDATA: &[u8] = b"<![CDATA[";
                let seen = &buf[start..end.min(start + CDATA.len())];
                if !CDATA.starts_with(seen) {
                    return Err(if seen[2] == b'-' {
                        XmlError::Comment
                    } else {
                        XmlError::Dtd
                    });
                }
                if seen.len() < CDATA.len() {
                    return need_more(end);
                }
                if !in_stanza {
                    return Err(XmlError::TextOutsideStanza);
                }
                let body = start + CDATA.len();
                let mut from = self.scan.max(body + 2);
                while let Some(i) = find(buf, from, end, |b| b == b'>') {
                    if buf[i - 1] == b']' && buf[i - 2] == b']' {
                        return Ok(Some(self.take(Token::Cdata(body..i - 2), i + 1)));
                    }
                    from = i + 1;
                }
                self.scan = end;
                need_more(end)
            }
            _ => {
                // A start tag ends at the first '>' outside quotes ('>' is legal inside an
                // attribute value, '<' is not).
                let mut i = self.scan.max(start + 1);
                while i < end {
                    let b = buf[i];
                    match self.quote {
                        Some(quote) if b == quote => self.quote = None,
                        Some(_) if b == b'<' => return Err(XmlError::LtInAttributeValue),
                        Some(_) => {}
                        None => match b {
                            b'\'' | b'"' => self.quote = Some(b),
                            b'>' => {
                                return Ok(Some(self.take(Token::StartTag(start..i + 1), i + 1)))
                            }
                            b'<' => return Err(XmlError::MalformedTag("'<' in a start tag")),
                            _ => {}
                        },
                    }
                    i += 1;
                }
                self.scan = end;
                need_more(end)
            }
        }
    }

    fn take(&mut self, token: Token, next: usize) -> Token {
        self.pos = next;
        self.scan = next;
        self.quote = None;
        token
    }
}

/// First index in `from..end` whose byte satisfies `pred`.
fn find(buf: &[u8], from: usize, end: usize, pred: impl Fn(u8) -> bool) -> Option<usize> {
    buf.get(from..end)?
        .iter()
        .position(|&b| pred(b))
        .map(|i| from + i)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header or `<open/>`.
    Prolog { declaration_allowed: bool },
    /// Inside `<stream:stream>`.
    Tcp,
    /// After `<open/>`.
    WebSocket,
    /// After `</stream:stream>` or `<close/>`.
    Closed,
}

#[derive(Debug)]
struct State {
    limits: Limits,
    phase: Phase,
    stream: StreamScope,
    stanza: Option<PartialStanza>,
    prefixes: PrefixScope,
    failed: Option<XmlError>,
}

/// What the stream header puts in scope for every stanza.
#[derive(Debug, Default)]
struct StreamScope {
    /// The header's qualified name, which `</…>` must repeat.
    qname: String,
    default_ns: Option<String>,
    /// Prefixes declared on the header, with their namespaces (to resolve a stanza's own name
    /// when it is prefixed, e.g. `<stream:error>`).
    prefixes: Vec<(String, String)>,
    /// Remembered so `framing()` still answers after the stream closed.
    framing: Option<Framing>,
}

/// A stanza whose end tag has not arrived yet. Its bytes are `buf[start..]`.
#[derive(Debug)]
struct PartialStanza {
    start: usize,
    /// Open elements, outermost first; never empty while the stanza is partial.
    open: Vec<OpenElement>,
    tag: OpeningTag,
}

#[derive(Debug)]
struct OpenElement {
    /// Name in the start tag, relative to the stanza start (offsets survive buffer shifts).
    name: Range<usize>,
    /// Height of the prefix stack before this element's declarations.
    prefix_mark: usize,
}

/// Namespace prefixes in scope inside a stanza. Only whether a prefix is declared matters
/// there (the payload is not interpreted), so this is a count per prefix plus a stack to undo
/// an element's declarations at its end tag: O(1) per lookup however deep the nesting.
#[derive(Debug, Default)]
struct PrefixScope {
    counts: HashMap<String, usize>,
    stack: Vec<String>,
}

impl PrefixScope {
    fn contains(&self, prefix: &str) -> bool {
        self.counts.contains_key(prefix)
    }

    fn push(&mut self, prefix: &str) {
        *self.counts.entry(prefix.to_owned()).or_default() += 1;
        self.stack.push(prefix.to_owned());
    }

    fn pop_to(&mut self, mark: usize) {
        while self.stack.len() > mark {
            let Some(prefix) = self.stack.pop() else {
                break;
            };
            if let Some(count) = self.counts.get_mut(&prefix) {
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(&prefix);
                }
            }
        }
    }
}

impl State {
    /// Where the current token must end, and the error if it does not.
    fn token_limit(&self, token_start: usize) -> (usize, XmlError) {
        let stanza_limit = |start: usize| {
            (
                start.saturating_add(self.limits.max_stanza_bytes),
                XmlError::StanzaTooLarge {
                    max: self.limits.max_stanza_bytes,
                },
            )
        };
        match (&self.stanza, self.phase) {
            (Some(stanza), _) => stanza_limit(stanza.start),
            (None, Phase::Prolog { .. }) => (
                token_start.saturating_add(self.limits.max_header_bytes),
                XmlError::HeaderTooLarge {
                    max: self.limits.max_header_bytes,
                },
            ),
            // A start tag here begins a stanza; an end tag is bounded the same way.
            (None, _) => stanza_limit(token_start),
        }
    }

    fn declaration_allowed(&self) -> bool {
        self.stanza.is_none()
            && self.phase
                == Phase::Prolog {
                    declaration_allowed: true,
                }
    }

    fn handle(&mut self, buf: &[u8], token: Token) -> Result<Option<Event>, XmlError> {
        match token {
            Token::Text(range) => {
                let text = utf8(&buf[range])?;
                check_chars_and_references(text)?;
                if text.contains("]]>") {
                    return Err(XmlError::CdataEndInText);
                }
                Ok(None)
            }
            Token::Cdata(range) => {
                check_chars(utf8(&buf[range])?)?;
                Ok(None)
            }
            Token::XmlDeclaration(range) => {
                check_xml_declaration(&buf[range], self.limits.max_attributes)?;
                self.phase = Phase::Prolog {
                    declaration_allowed: false,
                };
                Ok(None)
            }
            Token::StartTag(range) => {
                let tag = parse_start_tag(&buf[range.clone()], self.limits.max_attributes)?;
                self.start_tag(buf, range, &tag)
            }
            Token::EndTag(range) => self.end_tag(buf, range),
        }
    }

    fn start_tag(
        &mut self,
        buf: &[u8],
        range: Range<usize>,
        tag: &Tag<'_>,
    ) -> Result<Option<Event>, XmlError> {
        let declarations = Declarations::of(tag)?;
        if let Some(stanza) = &mut self.stanza {
            // A child element: check it, track its scope, keep its bytes where they are.
            let depth = stanza.open.len() + 1;
            if depth > self.limits.max_depth {
                return Err(XmlError::TooDeep {
                    max: self.limits.max_depth,
                });
            }
            check_prefixes(tag, &declarations, |p| self.prefixes.contains(p))?;
            if !tag.self_closing {
                let prefix_mark = self.prefixes.stack.len();
                for (prefix, _) in &declarations.prefixed {
                    self.prefixes.push(prefix);
                }
                let name_start = range.start + 1 - stanza.start;
                stanza.open.push(OpenElement {
                    name: name_start..name_start + tag.qname.len(),
                    prefix_mark,
                });
            }
            return Ok(None);
        }

        match self.phase {
            Phase::Prolog { .. } => self.stream_header(tag, &declarations),
            Phase::Tcp => self.begin_stanza(buf, range, tag, &declarations),
            Phase::WebSocket => {
                let namespace = self.resolve_top_level(tag, &declarations)?;
                match (namespace.as_deref(), tag.local) {
                    (Some(ns::FRAMING), "open") => {
                        if !tag.self_closing {
                            return Err(XmlError::BadStreamHeader("<open> must be empty"));
                        }
                        Ok(Some(Event::Open(header(tag, None)?)))
                    }
                    (Some(ns::FRAMING), "close") => {
                        if !tag.self_closing {
                            return Err(XmlError::BadStreamHeader("<close> must be empty"));
                        }
                        self.phase = Phase::Closed;
                        Ok(Some(Event::Close))
                    }
                    (Some(ns::STREAMS), "stream") => Err(XmlError::BadStreamHeader(
                        "<stream:stream> on a WebSocket stream",
                    )),
                    _ => self.begin_stanza(buf, range, tag, &declarations),
                }
            }
            // `step` stops before lexing anything once closed.
            Phase::Closed => Ok(None),
        }
    }

    fn stream_header(
        &mut self,
        tag: &Tag<'_>,
        declarations: &Declarations<'_>,
    ) -> Result<Option<Event>, XmlError> {
        let namespace = self.resolve_top_level(tag, declarations)?;
        match (namespace.as_deref(), tag.local) {
            (Some(ns::STREAMS), "stream") => {
                if tag.self_closing {
                    return Err(XmlError::BadStreamHeader("empty <stream:stream/>"));
                }
                // RFC 6120 §4.8.5: whatever prefix is used, `stream` must mean the stream
                // namespace, since peers write `<stream:features>` and `<stream:error>`.
                if declarations
                    .prefixed
                    .iter()
                    .any(|(prefix, uri)| *prefix == "stream" && uri != ns::STREAMS)
                {
                    return Err(XmlError::InvalidStreamNamespace);
                }
                let default_ns = declarations
                    .default
                    .as_ref()
                    .filter(|uri| !uri.is_empty())
                    .map(|uri| uri.to_string());
                let header = header(tag, default_ns.clone())?;
                for (prefix, _) in &declarations.prefixed {
                    self.prefixes.push(prefix);
                }
                self.stream = StreamScope {
                    qname: tag.qname.to_owned(),
                    default_ns,
                    prefixes: declarations
                        .prefixed
                        .iter()
                        .map(|(prefix, uri)| ((*prefix).to_owned(), uri.clone()))
                        .collect(),
                    framing: Some(Framing::Tcp),
                };
                self.phase = Phase::Tcp;
                Ok(Some(Event::StreamOpen(header)))
            }
            (Some(ns::FRAMING), "open") => {
                if !tag.self_closing {
                    return Err(XmlError::BadStreamHeader("<open> must be empty"));
                }
                self.stream.framing = Some(Framing::WebSocket);
                self.phase = Phase::WebSocket;
                Ok(Some(Event::Open(header(tag, None)?)))
            }
            (_, "stream" | "open") => Err(XmlError::InvalidStreamNamespace),
            _ => Err(XmlError::BadStreamHeader(
                "expected <stream:stream> or <open/>",
            )),
        }
    }

    /// Checks the prefixes of a top-level element and resolves its namespace: its own
    /// declarations first, then the stream header's.
    fn resolve_top_level(
        &self,
        tag: &Tag<'_>,
        declarations: &Declarations<'_>,
    ) -> Result<Option<String>, XmlError> {
        check_prefixes(tag, declarations, |p| self.prefixes.contains(p))?;
        let namespace = match tag.prefix {
            None => declarations
                .default
                .as_ref()
                .map(|uri| uri.to_string())
                .or_else(|| self.stream.default_ns.clone()),
            Some("xml") => Some(ns::XML.to_owned()),
            Some(prefix) => declarations
                .prefixed
                .iter()
                .find(|(p, _)| *p == prefix)
                .map(|(_, uri)| uri.to_string())
                .or_else(|| {
                    self.stream
                        .prefixes
                        .iter()
                        .find(|(p, _)| p == prefix)
                        .map(|(_, uri)| uri.clone())
                }),
        };
        // `xmlns=''` means "no namespace".
        Ok(namespace.filter(|uri| !uri.is_empty()))
    }

    fn begin_stanza(
        &mut self,
        buf: &[u8],
        range: Range<usize>,
        tag: &Tag<'_>,
        declarations: &Declarations<'_>,
    ) -> Result<Option<Event>, XmlError> {
        if self.limits.max_depth == 0 {
            return Err(XmlError::TooDeep { max: 0 });
        }
        let namespace = self.resolve_top_level(tag, declarations)?;
        let value = |name: &str| -> Result<Option<String>, XmlError> {
            tag.attribute(name)
                .map(|attr| decode(attr.value, true).map(|v| v.into_owned()))
                .transpose()
        };
        let opening = OpeningTag {
            envelope: Envelope {
                name: tag.local.to_owned(),
                namespace,
                to: value("to")?,
                from: value("from")?,
                stanza_type: value("type")?,
                id: value("id")?,
                lang: value("xml:lang")?,
            },
            name_end: tag.name_end,
            attrs_end: tag.attrs_end,
            from_attr: tag.attribute("from").map(|attr| attr.span.clone()),
            to_attr: tag.attribute("to").map(|attr| attr.span.clone()),
            // Prefixes the stanza may use because the header declared them: forwarded to a
            // stream without them, the bytes would not be namespace-well-formed, so they get
            // declared on the stanza itself (rare: clients declare content prefixes inline). The
            // stream namespace's prefix, whatever it is called, is the streams' own business.
            inherited: self
                .stream
                .prefixes
                .iter()
                .filter(|(prefix, uri)| uri != ns::STREAMS && !declarations.declares(prefix))
                .cloned()
                .collect(),
        };
        if tag.self_closing {
            return Ok(Some(Event::Stanza(finish(&buf[range], opening)?)));
        }
        let prefix_mark = self.prefixes.stack.len();
        for (prefix, _) in &declarations.prefixed {
            self.prefixes.push(prefix);
        }
        self.stanza = Some(PartialStanza {
            start: range.start,
            open: vec![OpenElement {
                name: 1..1 + tag.qname.len(),
                prefix_mark,
            }],
            tag: opening,
        });
        Ok(None)
    }

    fn end_tag(&mut self, buf: &[u8], range: Range<usize>) -> Result<Option<Event>, XmlError> {
        let raw = utf8(&buf[range.clone()])?;
        // "</" name S? ">"
        let name = raw[2..raw.len() - 1].trim_end_matches([' ', '\t', '\r', '\n']);
        split_qname(name)?;

        let Some(stanza) = &mut self.stanza else {
            return match self.phase {
                Phase::Tcp if name == self.stream.qname => {
                    self.phase = Phase::Closed;
                    Ok(Some(Event::Close))
                }
                _ => Err(XmlError::UnexpectedEndTag(excerpt(name))),
            };
        };
        let Some(open) = stanza.open.pop() else {
            // Unreachable by construction (a stanza with nothing open is finished at once),
            // but input must never be able to panic us.
            return Err(XmlError::UnexpectedEndTag(excerpt(name)));
        };
        let expected = &buf[stanza.start + open.name.start..stanza.start + open.name.end];
        if expected != name.as_bytes() {
            return Err(XmlError::MismatchedEndTag {
                expected: excerpt(&String::from_utf8_lossy(expected)),
                found: excerpt(name),
            });
        }
        self.prefixes.pop_to(open.prefix_mark);
        if !stanza.open.is_empty() {
            return Ok(None);
        }
        let Some(stanza) = self.stanza.take() else {
            return Ok(None);
        };
        Ok(Some(Event::Stanza(finish(
            &buf[stanza.start..range.end],
            stanza.tag,
        )?)))
    }
}

fn finish(bytes: &[u8], tag: OpeningTag) -> Result<Stanza, XmlError> {
    // Every token was UTF-8-checked and tokens split at ASCII bytes, so this cannot fail; it
    // is still checked rather than assumed because this crate has no unsafe code.
    Ok(Stanza::new(utf8(bytes)?.to_owned(), tag))
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| XmlError::InvalidUtf8)
}

fn header(tag: &Tag<'_>, default_ns: Option<String>) -> Result<StreamHeader, XmlError> {
    let value = |name: &str| -> Result<Option<String>, XmlError> {
        tag.attribute(name)
            .map(|attr| decode(attr.value, true).map(|v| v.into_owned()))
            .transpose()
    };
    Ok(StreamHeader {
        to: value("to")?,
        from: value("from")?,
        version: value("version")?,
        lang: value("xml:lang")?,
        id: value("id")?,
        default_ns,
    })
}

/// A parsed start tag, borrowing from the buffer. Offsets are relative to its `<`.
#[derive(Debug)]
pub(super) struct Tag<'a> {
    pub(super) qname: &'a str,
    pub(super) prefix: Option<&'a str>,
    pub(super) local: &'a str,
    name_end: usize,
    attrs_end: usize,
    pub(super) attributes: Vec<Attribute<'a>>,
    pub(super) self_closing: bool,
}

#[derive(Debug)]
pub(super) struct Attribute<'a> {
    pub(super) name: &'a str,
    /// As written, still escaped.
    pub(super) value: &'a str,
    /// The whole `name='value'`.
    span: Range<usize>,
}

impl<'a> Tag<'a> {
    fn attribute(&self, name: &str) -> Option<&Attribute<'a>> {
        self.attributes.iter().find(|attr| attr.name == name)
    }
}

/// Parses `<qname attributes… >` or `<qname attributes… />` (the lexer guarantees the first
/// and last bytes). Also the tree builder's ([`super::element`]), so both parsers agree on
/// what a start tag is.
pub(super) fn parse_start_tag(raw: &[u8], max_attributes: usize) -> Result<Tag<'_>, XmlError> {
    let raw = utf8(raw)?;
    let close = raw.len() - 1;
    let self_closing = close >= 2 && raw.as_bytes()[close - 1] == b'/';
    let attrs_end = if self_closing { close - 1 } else { close };
    let body = &raw[1..attrs_end];
    let name_len = body
        .bytes()
        .position(is_xml_whitespace)
        .unwrap_or(body.len());
    let qname = &body[..name_len];
    let (prefix, local) = split_qname(qname)?;
    let attributes = parse_attributes(&body[name_len..], 1 + name_len, max_attributes)?;
    Ok(Tag {
        qname,
        prefix,
        local,
        name_end: 1 + name_len,
        attrs_end,
        attributes,
        self_closing,
    })
}

/// Parses `(S name S? = S? quoted-value)* S?`. `base` is the offset of `text` in the tag.
fn parse_attributes(
    text: &str,
    base: usize,
    max_attributes: usize,
) -> Result<Vec<Attribute<'_>>, XmlError> {
    let bytes = text.as_bytes();
    let skip_whitespace = |mut i: usize| {
        while bytes.get(i).is_some_and(|&b| is_xml_whitespace(b)) {
            i += 1;
        }
        i
    };
    let mut attributes: Vec<Attribute<'_>> = Vec::new();
    let mut i = 0;
    loop {
        let before = i;
        i = skip_whitespace(i);
        if i == bytes.len() {
            return Ok(attributes);
        }
        if i == before {
            return Err(XmlError::MalformedTag("no whitespace before an attribute"));
        }
        let name_start = i;
        while bytes
            .get(i)
            .is_some_and(|&b| !is_xml_whitespace(b) && b != b'=')
        {
            i += 1;
        }
        let name = &text[name_start..i];
        split_qname(name)?;
        i = skip_whitespace(i);
        if bytes.get(i) != Some(&b'=') {
            return Err(XmlError::MalformedTag("attribute without a value"));
        }
        i = skip_whitespace(i + 1);
        let quote = match bytes.get(i) {
            Some(&quote @ (b'\'' | b'"')) => quote,
            _ => return Err(XmlError::UnquotedAttribute(excerpt(name))),
        };
        let value_start = i + 1;
        let value_len = bytes[value_start..]
            .iter()
            .position(|&b| b == quote)
            .ok_or(XmlError::MalformedTag("unterminated attribute value"))?;
        let value = &text[value_start..value_start + value_len];
        if value.contains('<') {
            return Err(XmlError::LtInAttributeValue);
        }
        check_chars_and_references(value)?;
        i = value_start + value_len + 1;

        if attributes.len() == max_attributes {
            return Err(XmlError::TooManyAttributes {
                max: max_attributes,
            });
        }
        // Quadratic, but bounded by `max_attributes`.
        if attributes.iter().any(|attr| attr.name == name) {
            return Err(XmlError::DuplicateAttribute(excerpt(name)));
        }
        attributes.push(Attribute {
            name,
            value,
            span: base + name_start..base + i,
        });
    }
}

/// The namespace declarations on one element, values unescaped.
struct Declarations<'a> {
    default: Option<std::borrow::Cow<'a, str>>,
    prefixed: Vec<(&'a str, String)>,
}

impl<'a> Declarations<'a> {
    /// Collects and checks the declarations (Namespaces in XML 1.0 §3).
    fn of(tag: &Tag<'a>) -> Result<Self, XmlError> {
        let mut declarations = Declarations {
            default: None,
            prefixed: Vec::new(),
        };
        for attr in &tag.attributes {
            let invalid = || XmlError::InvalidNamespaceDeclaration(excerpt(attr.name));
            if attr.name == "xmlns" {
                let uri = decode(attr.value, true)?;
                if uri == ns::XML || uri == ns::XMLNS {
                    return Err(invalid());
                }
                declarations.default = Some(uri);
                continue;
            }
            let Some(prefix) = attr.name.strip_prefix("xmlns:") else {
                continue;
            };
            let uri = decode(attr.value, true)?;
            // `xml` may only be bound to its own namespace, nothing else may be bound to it,
            // `xmlns` may not be declared, and prefixes cannot be undeclared in XML 1.0.
            let valid = match prefix {
                "xmlns" => false,
                "xml" => uri == ns::XML,
                _ => !uri.is_empty() && uri != ns::XML && uri != ns::XMLNS,
            };
            if !valid {
                return Err(invalid());
            }
            declarations.prefixed.push((prefix, uri.into_owned()));
        }
        Ok(declarations)
    }

    fn declares(&self, prefix: &str) -> bool {
        self.prefixed.iter().any(|(p, _)| *p == prefix)
    }
}

/// Every prefix used on the element or its attributes must be `xml`, declared on the element
/// itself, or in scope.
fn check_prefixes(
    tag: &Tag<'_>,
    declarations: &Declarations<'_>,
    in_scope: impl Fn(&str) -> bool,
) -> Result<(), XmlError> {
    let check = |prefix: &str| {
        if prefix == "xml" || declarations.declares(prefix) || in_scope(prefix) {
            Ok(())
        } else {
            Err(XmlError::UndeclaredPrefix(excerpt(prefix)))
        }
    };
    match tag.prefix {
        Some("xmlns") => return Err(XmlError::InvalidName(excerpt(tag.qname))),
        Some(prefix) => check(prefix)?,
        None => {}
    }
    for attr in &tag.attributes {
        match attr.name.split_once(':') {
            Some(("xmlns", _)) | None => {}
            Some((prefix, _)) => check(prefix)?,
        }
    }
    Ok(())
}

/// Checks `<?xml version='1.x' (encoding='UTF-8')? (standalone='yes|no')??>`.
fn check_xml_declaration(raw: &[u8], max_attributes: usize) -> Result<(), XmlError> {
    const OPEN: usize = "<?xml".len();
    let raw = utf8(raw)?;
    let body = &raw[OPEN..raw.len() - 2];
    let attributes = parse_attributes(body, OPEN, max_attributes)
        .map_err(|_| XmlError::InvalidXmlDeclaration)?;
    let mut names = attributes.iter().map(|attr| attr.name);
    let order_ok = names.next() == Some("version")
        && names.all(|name| matches!(name, "encoding" | "standalone"));
    let version_ok = attributes
        .first()
        .is_some_and(|attr| attr.value.starts_with("1.") && attr.value.len() > 2);
    if !order_ok || !version_ok {
        return Err(XmlError::InvalidXmlDeclaration);
    }
    if let Some(encoding) = attributes.iter().find(|attr| attr.name == "encoding") {
        if !encoding.value.eq_ignore_ascii_case("UTF-8") {
            return Err(XmlError::UnsupportedEncoding(excerpt(encoding.value)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAMS_DECL: &str = "xmlns:stream='http://etherx.jabber.org/streams'";
    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='chat.example.com' version='1.0' \
        xml:lang='en'>";

    /// A stream as a QuickBlox client sends it: escaped text, nested `extraParams`, an
    /// attachment, a prefixed child, CDATA, keep-alives between stanzas.
    const REALISTIC: &str = concat!(
        "<?xml version='1.0'?>\n",
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' ",
        "to='chat.example.com' version='1.0' xml:lang='en'>",
        "<message xmlns=\"jabber:client\" to=\"8-42@chat.example.com\" type=\"chat\" ",
        "id=\"5f3a\"><body>Tom &amp; Jerry &lt;3 &#x1F600; \"q\" &apos;é&#233;</body>",
        "<extraParams xmlns=\"jabber:client\"><save_to_history>1</save_to_history>",
        "<dialog_id>5f3a0c</dialog_id><attachments><attachment type=\"image\" id=\"a1\" ",
        "url=\"https://x/?a=1&amp;b=2\" name='a>b'/></attachments></extraParams>",
        "<markable xmlns=\"urn:xmpp:chat-markers:0\"/></message>",
        "\n  \n",
        "<iq type='get' id='ping1' to='chat.example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
        " ",
        "<presence><x:c xmlns:x='http://jabber.org/protocol/caps' x:hash='sha-1'/>",
        "<![CDATA[ <raw> & ]] ]]></presence >",
        "\n",
        "</stream:stream>",
    );

    /// Feeds the chunks in order, draining events after each; stops at the first error.
    fn run<'a>(
        limits: Limits,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Event>, Option<XmlError>) {
        let mut parser = StreamParser::new(limits);
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk);
            loop {
                match parser.next_event() {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(error) => return (events, Some(error)),
                }
            }
        }
        (events, None)
    }

    fn whole(input: &[u8]) -> (Vec<Event>, Option<XmlError>) {
        run(Limits::default(), [input])
    }

    fn byte_at_a_time(input: &[u8]) -> (Vec<Event>, Option<XmlError>) {
        run(Limits::default(), input.chunks(1))
    }

    /// The error for `body` sent after a valid stream header.
    fn error_in_stream(body: &str) -> XmlError {
        let input = format!("{HEADER}{body}");
        match whole(input.as_bytes()) {
            (_, Some(error)) => error,
            (events, None) => panic!("{body:?} accepted: {events:?}"),
        }
    }

    /// The stanzas in `body` sent after a valid stream header.
    fn stanzas_in_stream(body: &str) -> Vec<Stanza> {
        let input = format!("{HEADER}{body}");
        let (events, error) = whole(input.as_bytes());
        assert_eq!(error, None, "{body:?}");
        events
            .into_iter()
            .filter_map(|event| match event {
                Event::Stanza(stanza) => Some(stanza),
                _ => None,
            })
            .collect()
    }

    use crate::xml::test_rng::Rng;

    #[test]
    fn prefixes_declared_on_the_header_are_declared_on_each_stanza() {
        let input = "<stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:a&amp;b' to='d'>\
            <message to='u@d' from='v@d/r'><x:ping/></message>\
            <iq xmlns:x='urn:own' type='get' id='1'><x:q/></iq>";
        let (events, error) = whole(input.as_bytes());
        assert_eq!(error, None);
        let stanzas: Vec<&Stanza> = events
            .iter()
            .filter_map(|e| match e {
                Event::Stanza(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(
            stanzas[0].as_str(),
            "<message xmlns:x='urn:a&amp;b' to='u@d' from='v@d/r'><x:ping/></message>"
        );
        // The envelope and the from/to rewrite still find their attributes.
        assert_eq!(stanzas[0].envelope().to.as_deref(), Some("u@d"));
        assert_eq!(
            stanzas[0].with_from_to(Some("w@d/s"), None),
            "<message xmlns:x='urn:a&amp;b' to='u@d' from='w@d/s'><x:ping/></message>"
        );
        let alone = crate::Element::parse(stanzas[0].as_str(), Some(ns::CLIENT)).unwrap();
        assert_eq!(alone.first_child().unwrap().namespace(), Some("urn:a&b"));
        // Its own declaration wins and is not duplicated.
        assert_eq!(
            stanzas[1].as_str(),
            "<iq xmlns:x='urn:own' type='get' id='1'><x:q/></iq>"
        );
        // The streams namespace is never copied, whatever its prefix.
        let input = "<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' \
            to='d'><message to='u@d'/>";
        let (events, error) = whole(input.as_bytes());
        assert_eq!(error, None);
        let Some(Event::Stanza(stanza)) = events.last() else {
            panic!("{events:?}")
        };
        assert_eq!(stanza.as_str(), "<message to='u@d'/>");
    }

    #[test]
    fn realistic_stream_gives_header_stanzas_and_close() {
        let (events, error) = whole(REALISTIC.as_bytes());
        assert_eq!(error, None);
        assert_eq!(events.len(), 5, "{events:#?}");

        let Event::StreamOpen(header) = &events[0] else {
            panic!("{:?}", events[0])
        };
        assert_eq!(header.to.as_deref(), Some("chat.example.com"));
        assert_eq!(header.version.as_deref(), Some("1.0"));
        assert_eq!(header.lang.as_deref(), Some("en"));
        assert_eq!(header.default_ns.as_deref(), Some("jabber:client"));
        assert_eq!((header.from.as_deref(), header.id.as_deref()), (None, None));

        let names: Vec<_> = events[1..4]
            .iter()
            .map(|event| match event {
                Event::Stanza(stanza) => {
                    // Exactly the received bytes, found verbatim in the input.
                    assert!(REALISTIC.contains(stanza.as_str()));
                    stanza.envelope().name.clone()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["message", "iq", "presence"]);
        assert_eq!(events[4], Event::Close);

        let Event::Stanza(message) = &events[1] else {
            unreachable!()
        };
        assert!(message
            .as_str()
            .starts_with("<message xmlns=\"jabber:client\""));
        assert!(message
            .as_str()
            .ends_with("<markable xmlns=\"urn:xmpp:chat-markers:0\"/></message>"));
        let Event::Stanza(presence) = &events[3] else {
            unreachable!()
        };
        assert!(presence.as_str().ends_with("]]></presence >"));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_events_as_whole() {
        assert_eq!(
            byte_at_a_time(REALISTIC.as_bytes()),
            whole(REALISTIC.as_bytes())
        );
    }

    #[test]
    fn random_chunking_gives_the_same_events_as_whole() {
        let expected = whole(REALISTIC.as_bytes());
        let input = REALISTIC.as_bytes();
        let mut rng = Rng(0x5EED);
        for _ in 0..200 {
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < input.len() {
                let len = 1 + rng.below(40).min(input.len() - at - 1);
                chunks.push(&input[at..at + len]);
                at += len;
            }
            assert_eq!(run(Limits::default(), chunks), expected);
        }
    }

    /// Poor man's fuzzing until the cargo-fuzz target exists: mutated streams must never
    /// panic, and chunking must not change the outcome, errors included.
    #[test]
    fn mutated_streams_never_panic_and_do_not_depend_on_chunking() {
        let mut rng = Rng(0xF022);
        let interesting = b"<>/&;'\"=:! ?[]-x\x00\xff\xc3\n";
        for _ in 0..1500 {
            let mut input = REALISTIC.as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(input.len());
                match rng.below(3) {
                    0 => input[at] = interesting[rng.below(interesting.len())],
                    1 => {
                        input.remove(at);
                    }
                    _ => input.insert(at, interesting[rng.below(interesting.len())]),
                }
            }
            let expected = whole(&input);
            assert_eq!(
                byte_at_a_time(&input),
                expected,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn stanza_bytes_are_kept_exactly() {
        let raw = "<message to='7-42@dom' id='x' type='chat'><body>hi</body><extraParams \
                   xmlns='jabber:client'><a>1</a><b/></extraParams></message>";
        let stanzas = stanzas_in_stream(raw);
        assert_eq!(stanzas.len(), 1);
        assert_eq!(stanzas[0].as_str(), raw);
        assert_eq!(stanzas[0].bytes(), raw.as_bytes());
        assert_eq!(
            stanzas[0].envelope().namespace.as_deref(),
            Some("jabber:client")
        );
    }

    #[test]
    fn escaped_text_and_character_references_are_accepted() {
        let stanzas = stanzas_in_stream("<message><body>a &amp; b &#x1F600;</body></message>");
        assert_eq!(
            stanzas[0].as_str(),
            "<message><body>a &amp; b &#x1F600;</body></message>"
        );
    }

    #[test]
    fn undefined_entities_are_rejected() {
        let error = error_in_stream("<message><body>&foo;</body></message>");
        assert_eq!(error, XmlError::UndefinedEntity("foo".into()));
        assert_eq!(error.stream_error_condition().name(), "restricted-xml");
        assert_eq!(
            error_in_stream("<message id='&nbsp;'/>"),
            XmlError::UndefinedEntity("nbsp".into())
        );
        assert_eq!(
            error_in_stream("<message><body>a & b</body></message>"),
            XmlError::MalformedReference
        );
        assert_eq!(
            error_in_stream("<message><body>&#1;</body></message>"),
            XmlError::InvalidCharReference
        );
    }

    #[test]
    fn doctype_is_rejected() {
        let (_, error) = whole(b"<?xml version='1.0'?><!DOCTYPE stream>");
        assert_eq!(error, Some(XmlError::Dtd));
        assert_eq!(
            XmlError::Dtd.stream_error_condition().name(),
            "restricted-xml"
        );
        assert_eq!(error_in_stream("<!DOCTYPE x>"), XmlError::Dtd);
        assert_eq!(
            error_in_stream("<message><!ENTITY x 'y'></message>"),
            XmlError::Dtd
        );
    }

    #[test]
    fn billion_laughs_is_rejected_before_any_expansion() {
        let mut bomb = String::from(
            "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
             <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">",
        );
        for i in 2..10 {
            bomb.push_str(&format!("<!ENTITY lol{i} \""));
            bomb.push_str(&format!("&lol{};", i - 1).repeat(10));
            bomb.push_str("\">");
        }
        bomb.push_str("]><stream:stream>&lol9;</stream:stream>");
        assert_eq!(whole(bomb.as_bytes()).1, Some(XmlError::Dtd));

        // Three bytes of the DOCTYPE are enough to refuse it.
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(b"<!D");
        assert_eq!(parser.next_event(), Err(XmlError::Dtd));
    }

    #[test]
    fn comments_are_rejected_everywhere() {
        assert_eq!(
            whole(b"<!-- hi --><stream:stream/>").1,
            Some(XmlError::Comment)
        );
        assert_eq!(error_in_stream("<!-- keepalive -->"), XmlError::Comment);
        assert_eq!(
            error_in_stream("<message><!-- x --></message>"),
            XmlError::Comment
        );
        assert_eq!(
            XmlError::Comment.stream_error_condition().name(),
            "restricted-xml"
        );
    }

    #[test]
    fn processing_instructions_other_than_a_leading_declaration_are_rejected() {
        assert_eq!(
            whole(b"<?xml-stylesheet href='a'?>").1,
            Some(XmlError::ProcessingInstruction)
        );
        assert_eq!(
            error_in_stream("<message><?php x?></message>"),
            XmlError::ProcessingInstruction
        );
        assert_eq!(
            error_in_stream("<?xml version='1.0'?>"),
            XmlError::MisplacedXmlDeclaration
        );
        assert_eq!(
            whole(b"<?xml version='1.0'?><?xml version='1.0'?>").1,
            Some(XmlError::MisplacedXmlDeclaration)
        );
        assert_eq!(
            XmlError::ProcessingInstruction
                .stream_error_condition()
                .name(),
            "restricted-xml"
        );
    }

    #[test]
    fn xml_declaration_must_be_well_formed_and_utf8() {
        let header = format!("<stream:stream {STREAMS_DECL}>");
        for decl in [
            "<?xml version='1.0' encoding='UTF-8'?>",
            "<?xml version=\"1.0\" encoding=\"utf-8\" standalone='yes' ?>",
            "\n<?xml version='1.0'?>\n",
        ] {
            let (events, error) = whole(format!("{decl}{header}").as_bytes());
            assert_eq!((events.len(), error), (1, None), "{decl}");
        }
        let (_, error) = whole(b"<?xml version='1.0' encoding='ISO-8859-1'?>");
        assert_eq!(
            error,
            Some(XmlError::UnsupportedEncoding("ISO-8859-1".into()))
        );
        assert_eq!(
            error.unwrap().stream_error_condition().name(),
            "unsupported-encoding"
        );
        for bad in [
            "<?xml ?>",
            "<?xml encoding='UTF-8'?>",
            "<?xml version=1.0?>",
            "<?xml version='2.0'?>",
            "<?xml version='1.0' foo='x'?>",
            "<?xml version='1.0'>",
        ] {
            assert_eq!(
                whole(bad.as_bytes()).1,
                Some(XmlError::InvalidXmlDeclaration),
                "{bad}"
            );
        }
    }

    #[test]
    fn mismatched_and_unclosed_tags_are_rejected() {
        assert_eq!(
            error_in_stream("<message><body></message>"),
            XmlError::MismatchedEndTag {
                expected: "body".into(),
                found: "message".into()
            }
        );
        // A stanza still open when the stream closes.
        assert_eq!(
            error_in_stream("<message></stream:stream>"),
            XmlError::MismatchedEndTag {
                expected: "message".into(),
                found: "stream:stream".into()
            }
        );
        assert_eq!(
            error_in_stream("</message>"),
            XmlError::UnexpectedEndTag("message".into())
        );
        assert_eq!(
            error_in_stream("<a:x xmlns:a='u'></b:x>"),
            XmlError::MismatchedEndTag {
                expected: "a:x".into(),
                found: "b:x".into()
            }
        );
        assert_eq!(
            error_in_stream("<message></ message>"),
            XmlError::InvalidName(" message".into())
        );
        assert_eq!(
            XmlError::UnexpectedEndTag(String::new())
                .stream_error_condition()
                .name(),
            "not-well-formed"
        );
        // Whitespace before '>' in an end tag is fine.
        assert_eq!(stanzas_in_stream("<message ></message\n>").len(), 1);
    }

    #[test]
    fn attribute_syntax_is_strict() {
        assert_eq!(
            error_in_stream("<message id='1' id='2'/>"),
            XmlError::DuplicateAttribute("id".into())
        );
        assert_eq!(
            error_in_stream("<message id=1/>"),
            XmlError::UnquotedAttribute("id".into())
        );
        assert_eq!(
            error_in_stream("<message id/>"),
            XmlError::MalformedTag("attribute without a value")
        );
        assert_eq!(
            error_in_stream("<message id='1'type='chat'/>"),
            XmlError::MalformedTag("no whitespace before an attribute")
        );
        assert_eq!(
            error_in_stream("<message id='a<b'/>"),
            XmlError::LtInAttributeValue
        );
        assert_eq!(
            error_in_stream("<message id=\"a<b\"/>"),
            XmlError::LtInAttributeValue
        );
        assert_eq!(
            error_in_stream("<message <body/>"),
            XmlError::MalformedTag("'<' in a start tag")
        );
        // Spaces around '=', '>' and the other quote inside a value are all legal.
        let stanzas = stanzas_in_stream("<message id = \"a>'b\" type\n=\n'x\"y'/>");
        assert_eq!(stanzas[0].envelope().id.as_deref(), Some("a>'b"));
        assert_eq!(stanzas[0].envelope().stanza_type.as_deref(), Some("x\"y"));
    }

    #[test]
    fn invalid_names_are_rejected() {
        for (body, name) in [
            ("<1message/>", "1message"),
            ("<a:b:c xmlns:a='u'/>", "a:b:c"),
            ("<message -id='1'/>", "-id"),
            ("<message a:b:c='1'/>", "a:b:c"),
            ("<message><bo\u{A0}dy/></message>", "bo\u{A0}dy"),
            ("<xmlns:x/>", "xmlns:x"),
            ("< message/>", ""),
        ] {
            assert_eq!(
                error_in_stream(body),
                XmlError::InvalidName(name.into()),
                "{body}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let header = HEADER.as_bytes();
        for bad in [
            &b"<message><body>\xff</body></message>"[..],
            b"<message id='\xc3\x28'/>",
            b"<message><body>\xc0\x80</body></message>",
            b"<message><body>\xed\xa0\x80</body></message>",
            b"<m\xe9ssage/>",
        ] {
            let input = [header, bad].concat();
            assert_eq!(whole(&input).1, Some(XmlError::InvalidUtf8));
            assert_eq!(byte_at_a_time(&input).1, Some(XmlError::InvalidUtf8));
        }
        assert_eq!(
            XmlError::InvalidUtf8.stream_error_condition().name(),
            "unsupported-encoding"
        );
    }

    #[test]
    fn control_characters_are_rejected() {
        assert_eq!(
            error_in_stream("<message><body>a\u{1}b</body></message>"),
            XmlError::InvalidChar(1)
        );
        assert_eq!(
            error_in_stream("<message id='\u{7}'/>"),
            XmlError::InvalidChar(7)
        );
        assert_eq!(
            error_in_stream("<message><body>\u{0}</body></message>"),
            XmlError::InvalidChar(0)
        );
        assert_eq!(
            error_in_stream("<message><![CDATA[\u{1B}]]></message>"),
            XmlError::InvalidChar(0x1B)
        );
        assert_eq!(
            error_in_stream("<message><body>\u{FFFF}</body></message>"),
            XmlError::InvalidChar(0xFFFF)
        );
        // Tab, CR and LF are characters like any other.
        assert_eq!(
            stanzas_in_stream("<message><body>a\tb\r\nc</body></message>").len(),
            1
        );
    }

    #[test]
    fn depth_32_is_accepted_and_33_rejected() {
        let nested = |depth: usize| {
            format!(
                "<message>{}{}</message>",
                "<a>".repeat(depth - 1),
                "</a>".repeat(depth - 1)
            )
        };
        assert_eq!(stanzas_in_stream(&nested(32)).len(), 1);
        let error = error_in_stream(&nested(33));
        assert_eq!(error, XmlError::TooDeep { max: 32 });
        assert_eq!(error.stream_error_condition().name(), "policy-violation");
        // An empty element counts too.
        let empty_at_33 = format!("<message>{}<b/></message>", "<a>".repeat(31));
        assert_eq!(error_in_stream(&empty_at_33), XmlError::TooDeep { max: 32 });
    }

    #[test]
    fn oversized_stanza_is_rejected_before_it_is_complete() {
        let max = Limits::default().max_stanza_bytes;
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(HEADER.as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(Event::StreamOpen(_)))
        ));
        parser.feed(b"<message><body>");
        let chunk = [b'a'; 1024];
        let mut fed = 15;
        let error = loop {
            assert!(fed < 300 * 1024, "300 KiB buffered without an error");
            parser.feed(&chunk);
            fed += chunk.len();
            // The parser never holds much more than the limit.
            assert!(parser.buffered() <= max + chunk.len());
            match parser.next_event() {
                Ok(None) => continue,
                Ok(Some(event)) => panic!("{event:?}"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, XmlError::StanzaTooLarge { max });
        assert!(fed <= max + chunk.len());
        assert_eq!(error.stream_error_condition().name(), "policy-violation");
    }

    #[test]
    fn stanza_of_exactly_the_limit_is_accepted() {
        let limits = Limits {
            max_stanza_bytes: 32,
            ..Limits::default()
        };
        let fits = "<message><body>0123456</body></message>";
        assert_eq!(fits.len(), 39);
        let exact = "<message><body></body></message>"; // 32 bytes
        assert_eq!(exact.len(), 32);
        let input = format!("{HEADER}{exact} {exact}");
        let (events, error) = run(limits.clone(), [input.as_bytes()]);
        assert_eq!((events.len(), error), (3, None));
        let input = format!("{HEADER}{fits}");
        for chunking in [input.len(), 1] {
            let (_, error) = run(limits.clone(), input.as_bytes().chunks(chunking));
            assert_eq!(error, Some(XmlError::StanzaTooLarge { max: 32 }));
        }
    }

    #[test]
    fn unbounded_stream_header_is_rejected() {
        let max = Limits::default().max_header_bytes;
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'");
        let mut fed = 0;
        let error = loop {
            assert!(fed < 2 * max);
            parser.feed(b" a='b'");
            fed += 6;
            match parser.next_event() {
                Ok(None) => continue,
                Ok(Some(event)) => panic!("{event:?}"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, XmlError::HeaderTooLarge { max });
        let (_, error) = whole(format!("<?xml version='1.0'{}", " ".repeat(max)).as_bytes());
        assert_eq!(error, Some(XmlError::HeaderTooLarge { max }));
    }

    #[test]
    fn too_many_attributes_are_rejected() {
        let attrs: String = (0..65).map(|i| format!(" a{i}='x'")).collect();
        assert_eq!(
            error_in_stream(&format!("<message{attrs}/>")),
            XmlError::TooManyAttributes { max: 64 }
        );
    }

    #[test]
    fn namespace_prefixes_must_be_declared_in_scope() {
        let ok = "<message xml:lang='en'><x:c xmlns:x='urn:x' x:a='1'><x:d/></x:c>\
                  <y:e xmlns:y='urn:y'/><stream:error/></message>";
        assert_eq!(stanzas_in_stream(ok).len(), 1);
        assert_eq!(
            error_in_stream("<message><x:c/></message>"),
            XmlError::UndeclaredPrefix("x".into())
        );
        assert_eq!(
            error_in_stream("<message x:a='1'/>"),
            XmlError::UndeclaredPrefix("x".into())
        );
        // Out of scope after the declaring element ends…
        assert_eq!(
            error_in_stream("<message><x:c xmlns:x='urn:x'/><x:d/></message>"),
            XmlError::UndeclaredPrefix("x".into())
        );
        assert_eq!(
            error_in_stream("<message><a xmlns:x='urn:x'></a><x:d/></message>"),
            XmlError::UndeclaredPrefix("x".into())
        );
        // …and after the stanza ends.
        assert_eq!(
            error_in_stream("<message xmlns:x='urn:x'/><x:iq/>"),
            XmlError::UndeclaredPrefix("x".into())
        );
        assert_eq!(
            XmlError::UndeclaredPrefix(String::new())
                .stream_error_condition()
                .name(),
            "not-well-formed"
        );
    }

    #[test]
    fn forbidden_namespace_declarations_are_rejected() {
        for body in [
            "<message xmlns:xmlns='urn:x'/>",
            "<message xmlns:x=''/>",
            "<message xmlns:xml='urn:x'/>",
            "<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>",
            "<message xmlns='http://www.w3.org/2000/xmlns/'/>",
        ] {
            assert!(
                matches!(
                    error_in_stream(body),
                    XmlError::InvalidNamespaceDeclaration(_)
                ),
                "{body}"
            );
        }
        // Binding `xml` to its own namespace is allowed.
        assert_eq!(
            stanzas_in_stream("<message xmlns:xml='http://www.w3.org/XML/1998/namespace'/>").len(),
            1
        );
    }

    #[test]
    fn stanza_namespace_is_own_prefixed_or_inherited() {
        let stanzas = stanzas_in_stream(
            "<message/><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><stream:error/>\
             <s:r xmlns:s='urn:xmpp:sm:3'/><iq xmlns=''/>",
        );
        let namespaces: Vec<_> = stanzas
            .iter()
            .map(|s| s.envelope().namespace.as_deref())
            .collect();
        assert_eq!(
            namespaces,
            [
                Some("jabber:client"),
                Some("urn:ietf:params:xml:ns:xmpp-sasl"),
                Some("http://etherx.jabber.org/streams"),
                Some("urn:xmpp:sm:3"),
                None,
            ]
        );
        assert_eq!(stanzas[3].envelope().name, "r");
    }

    #[test]
    fn stream_header_must_be_in_the_stream_namespace() {
        let (_, error) = whole(b"<stream:stream xmlns:stream='urn:wrong'>");
        assert_eq!(error, Some(XmlError::InvalidStreamNamespace));
        assert_eq!(
            XmlError::InvalidStreamNamespace
                .stream_error_condition()
                .name(),
            "invalid-namespace"
        );
        let (_, error) = whole(b"<stream xmlns='jabber:client'>");
        assert_eq!(error, Some(XmlError::InvalidStreamNamespace));
        // `stream` bound elsewhere even though the header itself uses another prefix.
        let (_, error) =
            whole(b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns:stream='urn:x'>");
        assert_eq!(error, Some(XmlError::InvalidStreamNamespace));
        let (_, error) = whole(b"<stream:stream xmlns='jabber:client'>");
        assert_eq!(error, Some(XmlError::UndeclaredPrefix("stream".into())));
        let (_, error) = whole(b"<message/>");
        assert!(matches!(error, Some(XmlError::BadStreamHeader(_))));
        let (_, error) = whole(format!("<stream:stream {STREAMS_DECL}/>").as_bytes());
        assert!(matches!(error, Some(XmlError::BadStreamHeader(_))));
        assert_eq!(
            XmlError::BadStreamHeader("")
                .stream_error_condition()
                .name(),
            "bad-format"
        );
    }

    #[test]
    fn stream_header_values_are_unescaped() {
        let (events, _) = whole(
            b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
              from='a&amp;b@dom' id='x&#10;y' to='dom'>",
        );
        let Some(Event::StreamOpen(header)) = events.first() else {
            panic!("{events:?}")
        };
        assert_eq!(header.from.as_deref(), Some("a&b@dom"));
        assert_eq!(header.id.as_deref(), Some("x\ny"));
        assert_eq!(header.default_ns, None);
    }

    #[test]
    fn text_outside_stanzas_is_rejected() {
        assert_eq!(error_in_stream("hello"), XmlError::TextOutsideStanza);
        assert_eq!(
            error_in_stream("<![CDATA[ ]]>"),
            XmlError::TextOutsideStanza
        );
        assert_eq!(whole(b" x").1, Some(XmlError::TextOutsideStanza));
        assert_eq!(
            XmlError::TextOutsideStanza.stream_error_condition().name(),
            "bad-format"
        );
    }

    #[test]
    fn cdata_is_accepted_inside_stanzas_and_kept_verbatim() {
        let raw = "<message><body><![CDATA[<b>&nbsp;]]]]><![CDATA[>]]> ok</body></message>";
        let stanzas = stanzas_in_stream(raw);
        assert_eq!(stanzas[0].as_str(), raw);
        assert_eq!(
            error_in_stream("<message><body>a]]>b</body></message>"),
            XmlError::CdataEndInText
        );
    }

    #[test]
    fn whitespace_keepalives_are_dropped_without_buffering() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(HEADER.as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(Event::StreamOpen(_)))
        ));
        for _ in 0..10_000 {
            parser.feed(b" \n\t\r");
            assert_eq!(parser.next_event(), Ok(None));
            assert!(parser.buffered() <= 4);
        }
        parser.feed(b"<presence/>");
        assert!(matches!(parser.next_event(), Ok(Some(Event::Stanza(_)))));
    }

    #[test]
    fn websocket_framing() {
        let input = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='dom' version='1.0'/>\
                     <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>\
                     <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='dom' version='1.0'/>\
                     <message xmlns='jabber:client' to='a@dom'><body>x</body></message>\
                     <presence/>\
                     <close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>\
                     <ignored/>";
        let mut parser = StreamParser::new(Limits::default());
        assert_eq!(parser.framing(), None);
        let mut events = Vec::new();
        // One WebSocket message at a time, as the shell would feed them.
        for frame in input
            .split_inclusive("/>")
            .flat_map(|s| s.split_inclusive("</auth>"))
        {
            parser.feed(frame.as_bytes());
            while let Some(event) = parser.next_event().unwrap() {
                events.push(event);
            }
        }
        assert_eq!(parser.framing(), Some(Framing::WebSocket));
        assert_eq!(events.len(), 6, "{events:#?}");
        let Event::Open(header) = &events[0] else {
            panic!("{:?}", events[0])
        };
        assert_eq!(header.to.as_deref(), Some("dom"));
        assert_eq!(header.version.as_deref(), Some("1.0"));
        assert!(matches!(&events[2], Event::Open(_)));
        let Event::Stanza(message) = &events[3] else {
            panic!("{:?}", events[3])
        };
        assert_eq!(
            message.envelope().namespace.as_deref(),
            Some("jabber:client")
        );
        // Nothing is inherited on WebSocket: a stanza without xmlns has no namespace.
        let Event::Stanza(presence) = &events[4] else {
            panic!("{:?}", events[4])
        };
        assert_eq!(presence.envelope().namespace, None);
        assert_eq!(events[5], Event::Close);
    }

    #[test]
    fn websocket_open_and_close_must_be_empty() {
        let (_, error) = whole(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'>");
        assert!(matches!(error, Some(XmlError::BadStreamHeader(_))));
        let (_, error) = whole(b"<open xmlns='urn:wrong'/>");
        assert_eq!(error, Some(XmlError::InvalidStreamNamespace));
        let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";
        let (_, error) =
            whole(format!("{open}<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'>").as_bytes());
        assert!(matches!(error, Some(XmlError::BadStreamHeader(_))));
        let (_, error) = whole(format!("{open}</open>").as_bytes());
        assert_eq!(error, Some(XmlError::UnexpectedEndTag("open".into())));
        let (_, error) = whole(format!("{open}<stream:stream {STREAMS_DECL}>").as_bytes());
        assert!(matches!(error, Some(XmlError::BadStreamHeader(_))));
    }

    #[test]
    fn tcp_close_ends_the_stream_and_later_input_is_ignored() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(format!("{HEADER}<presence/></stream:stream>garbage<").as_bytes());
        assert!(matches!(
            parser.next_event(),
            Ok(Some(Event::StreamOpen(_)))
        ));
        assert!(matches!(parser.next_event(), Ok(Some(Event::Stanza(_)))));
        assert_eq!(parser.next_event(), Ok(Some(Event::Close)));
        assert_eq!(parser.next_event(), Ok(None));
        parser.feed(b"<more/>");
        assert_eq!(parser.next_event(), Ok(None));
        assert_eq!(parser.buffered(), 0);
        assert_eq!(parser.framing(), Some(Framing::Tcp));
    }

    #[test]
    fn restart_expects_a_new_header_and_keeps_unparsed_bytes() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>x</auth>");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(Event::StreamOpen(_)))
        ));
        assert!(matches!(parser.next_event(), Ok(Some(Event::Stanza(_)))));
        // A pipelined restart header already in the buffer is parsed under the new stream.
        parser.feed(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' ");
        parser.restart();
        assert_eq!(parser.framing(), None);
        parser.feed(b"xmlns:stream='http://etherx.jabber.org/streams' to='dom'><iq/>");
        assert!(matches!(
            parser.next_event(),
            Ok(Some(Event::StreamOpen(_)))
        ));
        let Ok(Some(Event::Stanza(iq))) = parser.next_event() else {
            panic!()
        };
        assert_eq!(iq.envelope().namespace.as_deref(), Some("jabber:client"));
    }

    #[test]
    fn errors_poison_the_parser() {
        let mut parser = StreamParser::new(Limits::default());
        parser.feed(b"<!-- x -->");
        assert_eq!(parser.next_event(), Err(XmlError::Comment));
        parser.feed(HEADER.as_bytes());
        assert_eq!(parser.next_event(), Err(XmlError::Comment));
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn byte_at_a_time_is_linear() {
        // A stanza just under the limit, one byte per feed: quadratic rescanning would take
        // minutes here.
        let max = Limits::default().max_stanza_bytes;
        let body = "x".repeat(max - "<message><body></body></message>".len());
        let stanza = format!("<message><body>{body}</body></message>");
        let input = format!("{HEADER}{stanza}");
        let (events, error) = byte_at_a_time(input.as_bytes());
        assert_eq!(error, None);
        let Some(Event::Stanza(received)) = events.get(1) else {
            panic!()
        };
        assert_eq!(received.bytes().len(), max);
    }
}
