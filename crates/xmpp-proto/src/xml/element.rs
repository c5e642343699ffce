//! A minimal DOM for the payloads a handler claims: iq queries, SASL `<auth/>`, stream
//! management nonzas, presence children. Routing never builds one (STYLE §4): it forwards a
//! [`Stanza`](super::Stanza)'s bytes and reads only its envelope.
//!
//! [`Element::parse`] accepts exactly what the [`StreamParser`] accepts as one stanza, because
//! it runs the text through one first: the restricted XML of RFC 6120 §11 and the rules of
//! Namespaces in XML 1.0 are enforced in one place. The tree is then built from the checked
//! text, with names resolved to a local name plus a namespace URI, references resolved and line
//! ends normalised (XML 1.0 §2.11, §3.3.3).
//!
//! [`Element::to_xml`] writes every element unprefixed, declaring a default namespace wherever
//! it changes, as RFC 6120 §4.8.3 recommends for content namespaces. The output parses back to
//! an equal [`Element`].

use std::borrow::Cow;

use super::parser::parse_start_tag;
use super::{
    decode, escape_attr, escape_text, excerpt, is_xml_whitespace, ns, split_qname, Event, Limits,
    StreamParser, XmlError,
};

/// An XML element: a local name, a namespace, attributes and child nodes.
///
/// Adjacent text is always kept as one [`Node::Text`] and empty text is dropped, both by
/// [`parse`](Self::parse) and by [`push_text`](Self::push_text), so an element compares equal
/// to what parsing its serialization gives.
///
/// ```
/// use xmpp_proto::Element;
///
/// let iq = Element::parse(
///     "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
///      <resource>phone</resource></bind></iq>",
///     Some("jabber:client"),
/// )?;
/// let bind = iq.child("bind", "urn:ietf:params:xml:ns:xmpp-bind").expect("sent above");
/// assert_eq!(bind.child("resource", "urn:ietf:params:xml:ns:xmpp-bind").map(|r| r.text()),
///     Some("phone".to_owned()));
///
/// let reply = Element::new("iq", Some("jabber:client"))
///     .with_attr("type", "result")
///     .with_attr("id", iq.attr("id").unwrap_or_default());
/// assert_eq!(reply.to_xml(Some("jabber:client")), "<iq type='result' id='b1'/>");
/// # Ok::<(), xmpp_proto::XmlError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name, without prefix.
    name: String,
    /// Namespace URI; never `Some("")`.
    namespace: Option<String>,
    /// Attributes in document order, names as written (`type`, `xml:lang`, `x:hash`), values
    /// unescaped. Never holds namespace declarations.
    attrs: Vec<(String, String)>,
    /// The namespace each prefix of a prefixed attribute name (other than `xml:`) was bound to
    /// where it was parsed. Written back as `xmlns:prefix` declarations, since `x:hash` without
    /// its `xmlns:x` is not namespace-well-formed.
    attr_prefixes: Vec<(String, String)>,
    children: Vec<Node>,
}

/// A child of an [`Element`].
///
/// Complete by definition, hence not `#[non_exhaustive]`: restricted XML (RFC 6120 §11.1) has no
/// comments or processing instructions, and CDATA sections are just text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, unescaped (CDATA sections included). Never empty.
    Text(String),
}

impl Element {
    /// Parses one complete element, such as [`Stanza::as_str`](super::Stanza::as_str).
    ///
    /// `inherited_ns` is the default namespace in scope, e.g. `Some("jabber:client")` for a
    /// stanza of a TCP client stream (which inherits it from the stream header) and `None` on
    /// WebSocket. Prefixes the stream header declares (the `stream:` of `<stream:error>`) are not
    /// in scope; [`Envelope`](super::Envelope) names such elements.
    ///
    /// Anything the stream parser would reject is rejected with the same error, and so is text
    /// that is not exactly one element ([`XmlError::NotOneElement`]). Depth and attribute count
    /// are bounded by [`Limits::default`]; size is not, as the stream parser enforced the
    /// configured limit before the text got here.
    pub fn parse(text: &str, inherited_ns: Option<&str>) -> Result<Element, XmlError> {
        check_one_element(text)?;
        TreeBuilder::new(text, inherited_ns).build()
    }

    /// An empty element. `name` is a local name (no prefix); `Some("")` means no namespace.
    pub fn new(name: &str, namespace: Option<&str>) -> Element {
        debug_assert!(
            matches!(split_qname(name), Ok((None, _))),
            "element name {name:?} is not an NCName"
        );
        debug_assert!(
            namespace != Some(ns::XMLNS),
            "no element can be in the xmlns namespace"
        );
        Element {
            name: name.to_owned(),
            namespace: namespace.filter(|uri| !uri.is_empty()).map(str::to_owned),
            attrs: Vec::new(),
            attr_prefixes: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The local name (`bind`, not `b:bind`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace URI, `None` if the element is in no namespace.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The unescaped value of the attribute named exactly `name` (`xml:lang` for the language).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// Attributes in document order, namespace declarations excluded.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.attrs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Builder form of [`set_attr`](Self::set_attr).
    pub fn with_attr(mut self, name: &str, value: impl Into<String>) -> Element {
        self.set_attr(name, value);
        self
    }

    /// Sets an attribute, replacing an existing one in place. `name` must not be a namespace
    /// declaration (use the namespace argument of [`new`](Self::new)); a prefix other than
    /// `xml:` must be one this element already has from [`parse`](Self::parse).
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        debug_assert!(
            self.is_writable_attr_name(name),
            "attribute name {name:?} is not a QName with a bound prefix"
        );
        let value = value.into();
        match self.attrs.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = value,
            None => self.attrs.push((name.to_owned(), value)),
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let at = self.attrs.iter().position(|(n, _)| n == name)?;
        let (_, value) = self.attrs.remove(at);
        // A binding no attribute uses any more would only make equal elements compare unequal.
        let attrs = &self.attrs;
        self.attr_prefixes.retain(|(prefix, _)| {
            attrs
                .iter()
                .any(|(n, _)| attr_prefix(n) == Some(prefix.as_str()))
        });
        Some(value)
    }

    /// Builder form of [`push_child`](Self::push_child).
    pub fn with_child(mut self, child: Element) -> Element {
        self.push_child(child);
        self
    }

    /// Appends a child element.
    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Builder form of [`push_text`](Self::push_text).
    pub fn with_text(mut self, text: impl Into<String>) -> Element {
        self.push_text(text);
        self
    }

    /// Appends text (unescaped), joining it to the last node if that is text too.
    pub fn push_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        match self.children.last_mut() {
            Some(Node::Text(last)) => last.push_str(&text),
            _ => self.children.push(Node::Text(text)),
        }
    }

    /// All child nodes in document order.
    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    /// The child elements in document order (text skipped).
    pub fn children(&self) -> impl Iterator<Item = &Element> + '_ {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this local name and namespace.
    pub fn child(&self, name: &str, namespace: &str) -> Option<&Element> {
        self.children().find(|child| child.is(name, namespace))
    }

    /// Mutable form of [`child`](Self::child).
    pub fn child_mut(&mut self, name: &str, namespace: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|node| match node {
            Node::Element(child) if child.is(name, namespace) => Some(child),
            _ => None,
        })
    }

    /// The first child element, whatever its name (an iq's payload).
    pub fn first_child(&self) -> Option<&Element> {
        self.children().next()
    }

    /// The direct text children joined (not the text of descendants).
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|node| match node {
                Node::Text(text) => Some(text.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Serializes with no whitespace added, attributes in single quotes, empty elements as
    /// `<x/>`. `parent_ns` is the default namespace in scope where the element goes (e.g.
    /// `Some("jabber:client")` on a TCP client stream); `xmlns='…'` is written on every element
    /// whose namespace differs from the one in scope.
    pub fn to_xml(&self, parent_ns: Option<&str>) -> String {
        let mut out = String::new();
        self.write_xml(parent_ns, &mut out);
        out
    }

    /// [`to_xml`](Self::to_xml), appending to `out`.
    pub fn write_xml(&self, parent_ns: Option<&str>, out: &mut String) {
        let parent_ns = parent_ns.filter(|uri| !uri.is_empty());
        // The xml namespace cannot be declared as a default namespace; it has its own prefix,
        // which leaves the default namespace in scope unchanged for the children.
        let xml_prefixed = self.namespace.as_deref() == Some(ns::XML);
        let scope = if xml_prefixed {
            parent_ns
        } else {
            self.namespace.as_deref()
        };
        out.push('<');
        self.write_qname(xml_prefixed, out);
        if !xml_prefixed && scope != parent_ns {
            push_attr(out, "xmlns", scope.unwrap_or(""));
        }
        for (prefix, uri) in &self.attr_prefixes {
            out.push_str(" xmlns:");
            out.push_str(prefix);
            out.push_str("='");
            out.push_str(&escape_attr(uri));
            out.push('\'');
        }
        for (name, value) in &self.attrs {
            push_attr(out, name, value);
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for node in &self.children {
            match node {
                Node::Element(child) => child.write_xml(scope, out),
                Node::Text(text) => out.push_str(&escape_text(text)),
            }
        }
        out.push_str("</");
        self.write_qname(xml_prefixed, out);
        out.push('>');
    }

    fn is(&self, name: &str, namespace: &str) -> bool {
        self.name == name && self.namespace.as_deref() == Some(namespace)
    }

    fn write_qname(&self, xml_prefixed: bool, out: &mut String) {
        if xml_prefixed {
            out.push_str("xml:");
        }
        out.push_str(&self.name);
    }

    /// Whether `to_xml` can write an attribute with this name and stay namespace-well-formed.
    fn is_writable_attr_name(&self, name: &str) -> bool {
        match split_qname(name) {
            Ok((None, local)) => local != "xmlns",
            Ok((Some("xml"), _)) => true,
            Ok((Some(prefix), _)) => self.attr_prefixes.iter().any(|(p, _)| p == prefix),
            Err(_) => false,
        }
    }
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("='");
    out.push_str(&escape_attr(value));
    out.push('\'');
}

/// The prefix of a prefixed attribute name that needs a binding (not `xml:`).
fn attr_prefix(name: &str) -> Option<&str> {
    name.split_once(':')
        .map(|(prefix, _)| prefix)
        .filter(|prefix| *prefix != "xml")
}

/// A stream header that puts nothing in scope for the element: no prefixes, and a default
/// namespace the tree builder ignores (it resolves against `inherited_ns`). TCP framing rather
/// than WebSocket, so that `<open/>` and `<close/>` in the framing namespace are plain elements
/// here rather than framing.
const NEUTRAL_HEADER: &[u8] = b"<stream xmlns='http://etherx.jabber.org/streams'>";

/// Runs `text` through a [`StreamParser`] as the only stanza of a stream: the same checks, in
/// the same code, as every received stanza.
fn check_one_element(text: &str) -> Result<(), XmlError> {
    let mut parser = StreamParser::new(Limits {
        max_stanza_bytes: usize::MAX,
        ..Limits::default()
    });
    parser.feed(NEUTRAL_HEADER);
    parser.feed(text.as_bytes());
    if !matches!(parser.next_event()?, Some(Event::StreamOpen(_))) {
        // Unreachable: the header above is valid and complete.
        return Err(XmlError::NotOneElement("no stream to check it in"));
    }
    match parser.next_event()? {
        Some(Event::Stanza(stanza)) if stanza.bytes().len() == text.len() => Ok(()),
        Some(Event::Stanza(_)) => {
            // Leading whitespace, or something after the element: name the latter if it is
            // malformed in itself.
            parser.next_event()?;
            Err(XmlError::NotOneElement(
                "something before or after the element",
            ))
        }
        Some(_) => Err(XmlError::NotOneElement("an end tag")),
        None if text.bytes().all(is_xml_whitespace) => Err(XmlError::NotOneElement("no element")),
        None => Err(XmlError::NotOneElement("unclosed element")),
    }
}

/// Builds the tree of text that [`check_one_element`] accepted. Every check it repeats is only
/// there so that no input can make it panic or build something wrong.
struct TreeBuilder<'a> {
    text: &'a str,
    /// Start of the next token; always at a char boundary (tokens end at ASCII bytes).
    pos: usize,
    /// Open elements, outermost first.
    open: Vec<Open<'a>>,
    /// Namespace bindings in scope, innermost last. The empty prefix is the default namespace;
    /// `None` is `xmlns=''`.
    bindings: Vec<(&'a str, Option<String>)>,
}

struct Open<'a> {
    element: Element,
    /// The name as written in the start tag, which the end tag must repeat.
    qname: &'a str,
    /// Height of `bindings` before this element's declarations.
    mark: usize,
}

impl<'a> TreeBuilder<'a> {
    fn new(text: &'a str, inherited_ns: Option<&str>) -> Self {
        let inherited = inherited_ns
            .filter(|uri| !uri.is_empty())
            .map(str::to_owned);
        Self {
            text,
            pos: 0,
            open: Vec::new(),
            bindings: vec![("", inherited)],
        }
    }

    fn build(mut self) -> Result<Element, XmlError> {
        loop {
            let text = self.text;
            let rest = &text[self.pos..];
            if rest.is_empty() {
                return Err(XmlError::NotOneElement("unclosed element"));
            }
            if !rest.starts_with('<') {
                let end = rest.find('<').unwrap_or(rest.len());
                let normalised = normalise_line_ends(&rest[..end]);
                self.push_text(&decode(&normalised, false)?)?;
                self.pos += end;
                continue;
            }
            if let Some(body) = rest.strip_prefix("<![CDATA[") {
                let end = body
                    .find("]]>")
                    .ok_or(XmlError::NotOneElement("unclosed CDATA section"))?;
                self.push_text(&normalise_line_ends(&body[..end]))?;
                self.pos += "<![CDATA[".len() + end + "]]>".len();
                continue;
            }
            let finished = match rest.as_bytes().get(1) {
                Some(b'/') => {
                    let end = rest
                        .find('>')
                        .ok_or(XmlError::MalformedTag("unterminated end tag"))?;
                    self.pos += end + 1;
                    self.end_tag(rest[2..end].trim_end_matches(is_whitespace_char))?
                }
                Some(b'!') => return Err(XmlError::Dtd),
                Some(b'?') => return Err(XmlError::ProcessingInstruction),
                _ => {
                    let end = start_tag_end(rest)?;
                    self.pos += end + 1;
                    self.start_tag(&rest[..end + 1])?
                }
            };
            if let Some(root) = finished {
                if self.pos != self.text.len() {
                    return Err(XmlError::NotOneElement("something after the element"));
                }
                return Ok(root);
            }
        }
    }

    fn push_text(&mut self, text: &str) -> Result<(), XmlError> {
        let open = self.open.last_mut().ok_or(XmlError::TextOutsideStanza)?;
        open.element.push_text(text);
        Ok(())
    }

    /// Handles `<qname attributes… >` or `<qname attributes… />`; returns the element if it is
    /// the root and complete.
    fn start_tag(&mut self, tag: &'a str) -> Result<Option<Element>, XmlError> {
        let parsed = parse_start_tag(tag.as_bytes(), usize::MAX)?;
        let (qname, prefix, local) = (parsed.qname, parsed.prefix, parsed.local);
        let self_closing = parsed.self_closing;
        let attributes = parsed
            .attributes
            .into_iter()
            .map(|attr| Ok((attr.name, decode(attr.value, true)?.into_owned())))
            .collect::<Result<Vec<(&str, String)>, XmlError>>()?;

        let mark = self.bindings.len();
        for (name, value) in &attributes {
            if *name == "xmlns" {
                let uri = Some(value.clone()).filter(|uri| !uri.is_empty());
                self.bindings.push(("", uri));
            } else if let Some(prefix) = name.strip_prefix("xmlns:") {
                self.bindings.push((prefix, Some(value.clone())));
            }
        }
        let mut element = Element {
            name: local.to_owned(),
            namespace: self.resolve(prefix.unwrap_or(""))?,
            attrs: Vec::with_capacity(attributes.len()),
            attr_prefixes: Vec::new(),
            children: Vec::new(),
        };
        for (name, value) in attributes {
            if name == "xmlns" || name.starts_with("xmlns:") {
                continue;
            }
            if let Some(prefix) = attr_prefix(name) {
                if !element.attr_prefixes.iter().any(|(p, _)| p == prefix) {
                    let uri = self
                        .resolve(prefix)?
                        .ok_or_else(|| XmlError::UndeclaredPrefix(excerpt(prefix)))?;
                    element.attr_prefixes.push((prefix.to_owned(), uri));
                }
            }
            element.attrs.push((name.to_owned(), value));
        }

        if self_closing {
            self.bindings.truncate(mark);
            return Ok(self.attach(element));
        }
        self.open.push(Open {
            element,
            qname,
            mark,
        });
        Ok(None)
    }

    fn end_tag(&mut self, name: &str) -> Result<Option<Element>, XmlError> {
        let open = self
            .open
            .pop()
            .ok_or_else(|| XmlError::UnexpectedEndTag(excerpt(name)))?;
        if open.qname != name {
            return Err(XmlError::MismatchedEndTag {
                expected: excerpt(open.qname),
                found: excerpt(name),
            });
        }
        self.bindings.truncate(open.mark);
        Ok(self.attach(open.element))
    }

    /// Adds a complete element to its parent, or returns it if it is the root.
    fn attach(&mut self, element: Element) -> Option<Element> {
        match self.open.last_mut() {
            Some(parent) => {
                parent.element.children.push(Node::Element(element));
                None
            }
            None => Some(element),
        }
    }

    /// The namespace a prefix (empty for the default namespace) is bound to.
    fn resolve(&self, prefix: &str) -> Result<Option<String>, XmlError> {
        if prefix == "xml" {
            return Ok(Some(ns::XML.to_owned()));
        }
        match self.bindings.iter().rev().find(|(p, _)| *p == prefix) {
            Some((_, uri)) => Ok(uri.clone()),
            None if prefix.is_empty() => Ok(None),
            None => Err(XmlError::UndeclaredPrefix(excerpt(prefix))),
        }
    }
}

/// The index of the `>` that ends the start tag at the beginning of `rest`: the first one
/// outside quotes.
fn start_tag_end(rest: &str) -> Result<usize, XmlError> {
    let mut quote = None;
    for (i, b) in rest.bytes().enumerate().skip(1) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'>' => return Ok(i),
            None => {}
        }
    }
    Err(XmlError::NotOneElement("unclosed start tag"))
}

/// End-of-line handling (XML 1.0 §2.11): CRLF and lone CR become LF before references are
/// resolved, so only `&#13;` yields a CR.
fn normalise_line_ends(s: &str) -> Cow<'_, str> {
    if !s.contains('\r') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
}

fn is_whitespace_char(ch: char) -> bool {
    ch.is_ascii() && is_xml_whitespace(ch as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
    const ROSTER: &str = "jabber:iq:roster";
    const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

    /// Parses, checks the serialization in the same scope is `expected`, and that it parses
    /// back to an equal element.
    fn round_trip(text: &str, inherited: Option<&str>, expected: &str) -> Element {
        let element = Element::parse(text, inherited).unwrap_or_else(|e| panic!("{text}: {e}"));
        let written = element.to_xml(inherited);
        assert_eq!(written, expected);
        assert_eq!(Element::parse(&written, inherited), Ok(element.clone()));
        element
    }

    fn names<'a>(elements: impl Iterator<Item = &'a Element>) -> Vec<&'a str> {
        elements.map(Element::name).collect()
    }

    #[test]
    fn bind_request_resolves_inherited_and_declared_namespaces() {
        let text = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                    <resource>phone</resource></bind></iq>";
        let iq = round_trip(text, Some(ns::CLIENT), text);
        assert_eq!((iq.name(), iq.namespace()), ("iq", Some(ns::CLIENT)));
        assert_eq!(
            iq.attrs().collect::<Vec<_>>(),
            [("type", "set"), ("id", "b1")]
        );
        let bind = iq.first_child().unwrap();
        assert_eq!((bind.name(), bind.namespace()), ("bind", Some(BIND)));
        assert_eq!(iq.child("bind", BIND), Some(bind));
        assert_eq!(iq.child("bind", ns::CLIENT), None);
        let resource = bind.child("resource", BIND).unwrap();
        assert_eq!(resource.text(), "phone");
        // Without the inherited namespace the iq is in none, and saying so takes nothing.
        let bare = Element::parse(text, None).unwrap();
        assert_eq!(bare.namespace(), None);
        assert_eq!(bare.to_xml(None), text);
        // Written where jabber:client is not in scope, the root declares it.
        assert_eq!(
            iq.to_xml(None),
            text.replacen("<iq ", "<iq xmlns='jabber:client' ", 1)
        );
    }

    #[test]
    fn roster_query_with_items_and_groups() {
        let text = "<iq type='result' id='r1' to='7-42@dom/phone'>\
                    <query xmlns='jabber:iq:roster' ver='ver7'>\
                    <item jid='8-42@dom' name='Ann' subscription='both'>\
                    <group>Friends</group><group>Work</group></item>\
                    <item jid='9-42@dom' subscription='to' ask='subscribe'/></query></iq>";
        let iq = round_trip(text, Some(ns::CLIENT), text);
        let query = iq.child("query", ROSTER).unwrap();
        assert_eq!(query.attr("ver"), Some("ver7"));
        let items: Vec<_> = query.children().collect();
        assert_eq!(names(items.iter().copied()), ["item", "item"]);
        assert!(items.iter().all(|item| item.namespace() == Some(ROSTER)));
        let groups: Vec<_> = items[0].children().map(Element::text).collect();
        assert_eq!(groups, ["Friends", "Work"]);
        assert_eq!(items[1].attr("ask"), Some("subscribe"));
        assert_eq!(items[1].attr("name"), None);
        assert!(items[1].nodes().is_empty());
    }

    #[test]
    fn sasl_auth() {
        let text = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\
                    AGEAYg==</auth>";
        for inherited in [None, Some(ns::CLIENT)] {
            let auth = round_trip(text, inherited, text);
            assert_eq!((auth.name(), auth.namespace()), ("auth", Some(SASL)));
            assert_eq!(auth.attr("mechanism"), Some("PLAIN"));
            // The declaration is not an attribute.
            assert_eq!(auth.attrs().count(), 1);
            assert_eq!(auth.attr("xmlns"), None);
            assert_eq!(auth.text(), "AGEAYg==");
        }
    }

    #[test]
    fn prefixed_names_resolve_to_local_name_and_namespace() {
        let a = round_trip(
            "<x:a xmlns:x='urn:x'><x:b/></x:a>",
            Some(ns::CLIENT),
            "<a xmlns='urn:x'><b/></a>",
        );
        let b = a.first_child().unwrap();
        assert_eq!((a.name(), a.namespace()), ("a", Some("urn:x")));
        assert_eq!((b.name(), b.namespace()), ("b", Some("urn:x")));
        assert_eq!(a.child("b", "urn:x"), Some(b));
        assert_eq!(a.attrs().count(), 0);

        // Prefixed children next to unprefixed ones; inner declarations shadow outer ones.
        let text = "<p:r xmlns:p='urn:p' xmlns='urn:d'><c/><p:c/><p:c xmlns:p='urn:q'/></p:r>";
        let r = Element::parse(text, None).unwrap();
        let namespaces: Vec<_> = r.children().map(Element::namespace).collect();
        assert_eq!(namespaces, [Some("urn:d"), Some("urn:p"), Some("urn:q")]);
        assert_eq!(
            r.to_xml(None),
            "<r xmlns='urn:p'><c xmlns='urn:d'/><c/><c xmlns='urn:q'/></r>"
        );
    }

    #[test]
    fn prefixed_attributes_keep_their_name_and_binding() {
        let text = "<presence><c xmlns='http://jabber.org/protocol/caps' \
                    xmlns:x='urn:x' x:hash='sha-1' node='n' xml:lang='en'/></presence>";
        let presence = round_trip(
            text,
            Some(ns::CLIENT),
            "<presence><c xmlns='http://jabber.org/protocol/caps' xmlns:x='urn:x' \
             x:hash='sha-1' node='n' xml:lang='en'/></presence>",
        );
        let mut c = presence.first_child().unwrap().clone();
        assert_eq!(
            c.attrs().collect::<Vec<_>>(),
            [("x:hash", "sha-1"), ("node", "n"), ("xml:lang", "en")]
        );
        // Once no attribute uses the prefix, its declaration goes too.
        assert_eq!(c.remove_attr("x:hash").as_deref(), Some("sha-1"));
        assert_eq!(
            c.to_xml(None),
            "<c xmlns='http://jabber.org/protocol/caps' node='n' xml:lang='en'/>"
        );
    }

    #[test]
    fn escaped_text_and_attributes_round_trip() {
        let text = "<body a='&amp; &lt; &apos; &quot; &#x41;&gt;'>&amp; &lt; &apos; &quot; \
                    &#65;&gt; é</body>";
        let body = round_trip(
            text,
            None,
            "<body a='&amp; &lt; &apos; &quot; A&gt;'>&amp; &lt; ' \" A&gt; é</body>",
        );
        assert_eq!(body.attr("a"), Some("& < ' \" A>"));
        assert_eq!(body.text(), "& < ' \" A> é");
        // One text node, however many references.
        assert_eq!(body.nodes().len(), 1);
    }

    #[test]
    fn line_ends_are_normalised_and_references_survive() {
        let body = round_trip(
            "<body a='x\r\ny&#13;&#10;'>a\r\nb\rc&#13;d<![CDATA[e\r\n]]></body>",
            None,
            "<body a='x y&#13;&#10;'>a\nb\nc&#13;de\n</body>",
        );
        assert_eq!(body.attr("a"), Some("x y\r\n"));
        assert_eq!(body.text(), "a\nb\nc\rde\n");
    }

    #[test]
    fn cdata_becomes_text_joined_with_its_neighbours() {
        let body = round_trip(
            "<body>a<![CDATA[<b>&amp;</b>]]><![CDATA[]]>]]&gt;</body>",
            Some(ns::CLIENT),
            "<body>a&lt;b&gt;&amp;amp;&lt;/b&gt;]]&gt;</body>",
        );
        assert_eq!(body.nodes(), [Node::Text("a<b>&amp;</b>]]>".into())]);
        let empty = round_trip("<body><![CDATA[]]></body>", None, "<body/>");
        assert!(empty.nodes().is_empty());
    }

    #[test]
    fn mixed_text_and_elements_keep_their_order() {
        let text = "<p>a<b>x</b>c<i/>d</p>";
        let p = round_trip(text, Some(ns::CLIENT), text);
        assert_eq!(
            p.nodes(),
            [
                Node::Text("a".into()),
                Node::Element(Element::new("b", Some(ns::CLIENT)).with_text("x")),
                Node::Text("c".into()),
                Node::Element(Element::new("i", Some(ns::CLIENT))),
                Node::Text("d".into()),
            ]
        );
        assert_eq!(p.text(), "acd");
        assert_eq!(names(p.children()), ["b", "i"]);
        // Whitespace between elements is text like any other.
        let spaced = Element::parse("<a>\n  <b/>\n</a>", None).unwrap();
        assert_eq!(spaced.nodes().len(), 3);
    }

    #[test]
    fn namespaces_are_declared_only_where_they_change() {
        let message = Element::new("message", Some(ns::CLIENT))
            .with_child(
                Element::new("received", Some("urn:xmpp:receipts"))
                    .with_child(Element::new("x", Some("urn:xmpp:receipts"))),
            )
            .with_child(Element::new("body", Some(ns::CLIENT)).with_text("hi"))
            .with_child(Element::new("raw", None))
            .with_child(Element::new("lang", Some(ns::XML)).with_child(Element::new("in", None)));
        let expected = "<message><received xmlns='urn:xmpp:receipts'><x/></received>\
                        <body>hi</body><raw xmlns=''/><xml:lang><in xmlns=''/></xml:lang>\
                        </message>";
        assert_eq!(message.to_xml(Some(ns::CLIENT)), expected);
        assert_eq!(
            Element::parse(expected, Some(ns::CLIENT)),
            Ok(message.clone())
        );
        assert_eq!(
            message.to_xml(None),
            "<message xmlns='jabber:client'><received xmlns='urn:xmpp:receipts'><x/></received>\
             <body>hi</body><raw xmlns=''/><xml:lang><in xmlns=''/></xml:lang></message>"
        );
        let mut out = String::from("<wrapper>");
        message.write_xml(Some(""), &mut out);
        assert!(out.starts_with("<wrapper><message xmlns='jabber:client'>"));
        assert_eq!(Element::new("x", Some("")).namespace(), None);
    }

    #[test]
    fn builder_produces_a_roster_result() {
        let iq = Element::new("iq", Some(ns::CLIENT))
            .with_attr("type", "result")
            .with_attr("id", "x")
            .with_child(
                Element::new("query", Some(ROSTER))
                    .with_attr("ver", "3")
                    .with_child(
                        Element::new("item", Some(ROSTER))
                            .with_attr("jid", "a@b")
                            .with_attr("subscription", "both")
                            .with_child(Element::new("group", Some(ROSTER)).with_text("G")),
                    ),
            );
        let expected = "<iq type='result' id='x'><query xmlns='jabber:iq:roster' ver='3'>\
                        <item jid='a@b' subscription='both'><group>G</group></item></query></iq>";
        assert_eq!(iq.to_xml(Some(ns::CLIENT)), expected);
        assert_eq!(Element::parse(expected, Some(ns::CLIENT)), Ok(iq));
    }

    #[test]
    fn mutation() {
        let mut iq = Element::parse(
            "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
            Some(ns::CLIENT),
        )
        .unwrap();
        iq.set_attr("type", "result");
        iq.set_attr("to", "a&b'");
        assert_eq!(iq.remove_attr("id").as_deref(), Some("1"));
        assert_eq!(iq.remove_attr("id"), None);
        let query = iq.child_mut("query", ROSTER).unwrap();
        query.push_child(Element::new("item", Some(ROSTER)).with_attr("jid", "x@y"));
        query.push_text("a");
        query.push_text("");
        query.push_text("b");
        assert_eq!(
            iq.to_xml(Some(ns::CLIENT)),
            "<iq type='result' to='a&amp;b&apos;'><query xmlns='jabber:iq:roster'>\
             <item jid='x@y'/>ab</query></iq>"
        );
        assert_eq!(iq.child_mut("query", ns::CLIENT), None);
        assert_eq!(Element::new("x", None).first_child(), None);
        // Text the builder cannot write as XML is replaced, never written raw.
        let odd = Element::new("x", None).with_text("\u{0}");
        assert_eq!(odd.to_xml(None), "<x>\u{FFFD}</x>");
    }

    #[test]
    fn framing_and_stream_names_are_plain_elements() {
        for text in [
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='dom'/>",
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
            "<stream xmlns='http://etherx.jabber.org/streams'><a/></stream>",
        ] {
            round_trip(text, None, text);
        }
        // The `stream` prefix of the stream header is not in scope.
        assert_eq!(
            Element::parse("<stream:error/>", Some(ns::CLIENT)),
            Err(XmlError::UndeclaredPrefix("stream".into()))
        );
    }

    #[test]
    fn malformed_input_is_rejected() {
        use XmlError::*;
        let cases: &[(&str, XmlError)] = &[
            ("<a>", NotOneElement("unclosed element")),
            ("<a><b></b>", NotOneElement("unclosed element")),
            ("<a b='1'", NotOneElement("unclosed element")),
            ("", NotOneElement("no element")),
            (" \n", NotOneElement("no element")),
            (
                "<a/><b/>",
                NotOneElement("something before or after the element"),
            ),
            (
                " <a/>",
                NotOneElement("something before or after the element"),
            ),
            (
                "<a/> ",
                NotOneElement("something before or after the element"),
            ),
            ("<a/>x", TextOutsideStanza),
            ("hi", TextOutsideStanza),
            ("</stream>", NotOneElement("an end tag")),
            ("</a>", UnexpectedEndTag("a".into())),
            (
                "<a><b></a></b>",
                MismatchedEndTag {
                    expected: "b".into(),
                    found: "a".into(),
                },
            ),
            ("<x:a/>", UndeclaredPrefix("x".into())),
            ("<a x:b='1'/>", UndeclaredPrefix("x".into())),
            (
                "<a><x:b xmlns:x='u'/><x:c/></a>",
                UndeclaredPrefix("x".into()),
            ),
            ("<a><!-- c --></a>", Comment),
            ("<!DOCTYPE a><a/>", Dtd),
            ("<a><!ENTITY x 'y'></a>", Dtd),
            ("<a><?pi x?></a>", ProcessingInstruction),
            ("<?xml version='1.0'?><a/>", MisplacedXmlDeclaration),
            ("<a>&nbsp;</a>", UndefinedEntity("nbsp".into())),
            ("<a b='&x;'/>", UndefinedEntity("x".into())),
            ("<a>&amp</a>", MalformedReference),
            ("<a>&#0;</a>", InvalidCharReference),
            ("<a>\u{1}</a>", InvalidChar(1)),
            ("<a>]]></a>", CdataEndInText),
            ("<a b=1/>", UnquotedAttribute("b".into())),
            ("<a b='1' b='2'/>", DuplicateAttribute("b".into())),
            ("<a b='<'/>", LtInAttributeValue),
            ("<1a/>", InvalidName("1a".into())),
            (
                "<a xmlns:x=''/>",
                InvalidNamespaceDeclaration("xmlns:x".into()),
            ),
            ("<xmlns:a/>", InvalidName("xmlns:a".into())),
        ];
        for (text, expected) in cases {
            for inherited in [None, Some(ns::CLIENT)] {
                assert_eq!(
                    Element::parse(text, inherited).as_ref(),
                    Err(expected),
                    "{text:?}"
                );
            }
        }
        let deep = format!("{}{}", "<a>".repeat(33), "</a>".repeat(33));
        assert_eq!(Element::parse(&deep, None), Err(TooDeep { max: 32 }));
        let deep_enough = format!("{}{}", "<a>".repeat(32), "</a>".repeat(32));
        assert!(Element::parse(&deep_enough, None).is_ok());
    }

    use crate::xml::test_rng::Rng;

    #[test]
    fn mutated_stanzas_never_panic_and_what_parses_round_trips() {
        const SEEDS: &[&str] = &[
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>phone</resource></bind></iq>",
            "<message to='8-42@dom' type='chat' xml:lang='en'><body>Tom &amp; Jerry &#x1F600;\
             </body><extraParams xmlns='jabber:client'><a x=\"1&quot;\">v</a></extraParams>\
             <p:m xmlns:p='urn:p' p:z='1'><p:n/></p:m></message>",
            "<presence><c xmlns='http://jabber.org/protocol/caps' xmlns:h='urn:h' h:hash='s' \
             node='n'/><![CDATA[<x> & ]]>tail</presence>",
        ];
        const TOKENS: &[&str] = &[
            "<",
            ">",
            "/",
            "'",
            "\"",
            "=",
            "&",
            ";",
            ":",
            " ",
            "a",
            "x",
            "xmlns",
            "xmlns:p",
            "xmlns=''",
            "xml:",
            "p:",
            "&amp;",
            "&#13;",
            "&#x0;",
            "<![CDATA[",
            "]]>",
            "<!--",
            "<?",
            "</a>",
            "<a>",
            "<x:y/>",
            "é",
            "\u{1}",
            "\r\n",
            "\r",
            "\u{FFFF}",
        ];
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let mut parsed = 0;
        for round in 0..30_000 {
            let mut chars: Vec<char> = SEEDS[round % SEEDS.len()].chars().collect();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(chars.len() + 1);
                match rng.below(4) {
                    0 if at < chars.len() => {
                        let len = 1 + rng.below(8.min(chars.len() - at));
                        chars.drain(at..at + len);
                    }
                    1 if at < chars.len() => {
                        let end = (at + 1 + rng.below(16)).min(chars.len());
                        let copy: Vec<char> = chars[at..end].to_vec();
                        let to = rng.below(chars.len() + 1);
                        chars.splice(to..to, copy);
                    }
                    _ => {
                        let token = TOKENS[rng.below(TOKENS.len())];
                        chars.splice(at..at, token.chars());
                    }
                }
            }
            let text: String = chars.into_iter().collect();
            for inherited in [None, Some(ns::CLIENT)] {
                let element = match Element::parse(&text, inherited) {
                    Ok(element) => element,
                    Err(error) => {
                        // Every rejection comes from the stream parser's checks: the tree
                        // builder accepts whatever they accept.
                        assert_eq!(check_one_element(&text), Err(error), "{text:?}");
                        continue;
                    }
                };
                parsed += 1;
                for scope in [inherited, None, Some("urn:other")] {
                    let written = element.to_xml(scope);
                    assert_eq!(
                        Element::parse(&written, scope).as_ref(),
                        Ok(&element),
                        "{text:?} written as {written:?}"
                    );
                }
            }
        }
        // The property must not hold vacuously.
        assert!(parsed > 3_000, "only {parsed} mutants parsed");
    }
}
