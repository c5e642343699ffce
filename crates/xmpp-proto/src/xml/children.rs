//! The direct children of an element, read straight from its text without building a tree.
//!
//! Routing needs a few facts about every message (does it have a body, a carbons hint, a
//! QuickBlox call signal?), and a tree of the whole stanza costs more than routing it. This
//! walks the element's text once, at the top level only: for each child it gives the local
//! name, the resolved namespace and the child's own text, which can be walked the same way.
//! Character data and CDATA sections are skipped as text, so markup spelled inside them is
//! never mistaken for an element.
//!
//! The text must be one well-formed element, as the stream parser hands out; on anything else
//! the walk stops early (it never panics).

use std::borrow::Cow;

use super::{decode, is_xml_whitespace};

/// One direct child element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child<'a> {
    /// Local name (without prefix).
    pub name: &'a str,
    /// Namespace: its own declaration, its prefix's, or the default it inherits.
    pub namespace: Cow<'a, str>,
    /// The whole child, start tag to end tag: walk its children with [`children`].
    pub element: &'a str,
    /// What lies between its start and end tags, still escaped (`""` when self-closing).
    pub content: &'a str,
}

impl Child<'_> {
    /// The child's character data when it has no elements of its own (a leaf such as
    /// `<save_to_history>1</save_to_history>`), unescaped; `None` if it has elements or
    /// cannot be read.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        const CDATA: &str = "<![CDATA[";
        if let Some(inner) = self
            .content
            .strip_prefix(CDATA)
            .and_then(|rest| rest.strip_suffix("]]>"))
        {
            return (!inner.contains("]]>")).then_some(Cow::Borrowed(inner));
        }
        if self.content.contains('<') {
            return None;
        }
        decode(self.content, false).ok()
    }
}

/// The direct children of `element` (one element's text), in order. `inherited_ns` is the
/// default namespace in scope where the element stands (`jabber:client` for a stanza).
pub fn children<'a>(element: &'a str, inherited_ns: &'a str) -> Children<'a> {
    let mut walk = Children {
        text: element,
        pos: element.len(),
        default_ns: Cow::Borrowed(inherited_ns),
        prefixes: Vec::new(),
    };
    let Some(end) = start_tag_end(element.as_bytes(), 0) else {
        return walk;
    };
    let Some(tag) = StartTag::read(&element[..end]) else {
        return walk;
    };
    if tag.self_closing {
        return walk;
    }
    if let Some(default_ns) = tag.default_ns {
        walk.default_ns = default_ns;
    }
    walk.prefixes = tag.prefixes;
    walk.pos = end;
    walk
}

/// Iterator over the direct children of one element; see [`children`].
#[derive(Debug)]
pub struct Children<'a> {
    text: &'a str,
    /// Where the next child may start; `text.len()` once finished.
    pos: usize,
    default_ns: Cow<'a, str>,
    /// Prefixes declared on the parent.
    prefixes: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Child<'a>;

    fn next(&mut self) -> Option<Child<'a>> {
        let bytes = self.text.as_bytes();
        loop {
            let lt = self.pos + bytes.get(self.pos..)?.iter().position(|&b| b == b'<')?;
            let rest = &bytes[lt..];
            if rest.starts_with(b"<![CDATA[") {
                self.pos = lt + find(rest, b"]]>").map(|at| at + 3).unwrap_or(rest.len());
                continue;
            }
            if rest.starts_with(b"</") || rest.starts_with(b"<!") || rest.starts_with(b"<?") {
                // The parent's end tag (children are skipped whole), or not an element.
                self.pos = bytes.len();
                return None;
            }
            let Some(tag_end) = start_tag_end(bytes, lt) else {
                self.pos = bytes.len();
                return None;
            };
            let Some(tag) = StartTag::read(&self.text[lt..tag_end]) else {
                self.pos = bytes.len();
                return None;
            };
            let self_closing = tag.self_closing;
            let local = tag.local;
            let namespace = self.namespace_of(tag);
            let (element_end, content) = if self_closing {
                (tag_end, "")
            } else {
                let Some((content_end, element_end)) = element_end(bytes, tag_end) else {
                    self.pos = bytes.len();
                    return None;
                };
                (element_end, &self.text[tag_end..content_end])
            };
            self.pos = element_end;
            return Some(Child {
                name: local,
                namespace,
                element: &self.text[lt..element_end],
                content,
            });
        }
    }
}

impl<'a> Children<'a> {
    fn namespace_of(&self, tag: StartTag<'a>) -> Cow<'a, str> {
        match tag.prefix {
            None => tag.default_ns.unwrap_or_else(|| self.default_ns.clone()),
            Some(prefix) => tag
                .prefixes
                .into_iter()
                .chain(self.prefixes.iter().cloned())
                .find(|(declared, _)| *declared == prefix)
                .map(|(_, namespace)| namespace)
                .unwrap_or(Cow::Borrowed("")),
        }
    }
}

/// What the walk needs of a start tag: its name and the namespaces it declares. The stream
/// parser validated the text already (`parser::parse_start_tag` is the one full start-tag
/// parser); this reads it again without allocating for the common tag that declares nothing,
/// and gives up (`None`) on anything it does not recognise.
struct StartTag<'a> {
    prefix: Option<&'a str>,
    local: &'a str,
    self_closing: bool,
    default_ns: Option<Cow<'a, str>>,
    prefixes: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> StartTag<'a> {
    /// `tag` runs from `<` to `>` inclusive.
    fn read(tag: &'a str) -> Option<StartTag<'a>> {
        let inner = tag.strip_prefix('<')?.strip_suffix('>')?;
        let (inner, self_closing) = match inner.strip_suffix('/') {
            Some(inner) => (inner, true),
            None => (inner, false),
        };
        let bytes = inner.as_bytes();
        let name_len = bytes
            .iter()
            .position(|&b| is_xml_whitespace(b))
            .unwrap_or(bytes.len());
        // The name was checked when the stream was parsed: only split it.
        let qname = &inner[..name_len];
        let (prefix, local) = match qname.split_once(':') {
            Some((prefix, local)) => (Some(prefix), local),
            None => (None, qname),
        };
        if local.is_empty() {
            return None;
        }
        let mut read = StartTag {
            prefix,
            local,
            self_closing,
            default_ns: None,
            prefixes: Vec::new(),
        };
        let mut i = name_len;
        loop {
            while bytes.get(i).is_some_and(|&b| is_xml_whitespace(b)) {
                i += 1;
            }
            if i >= bytes.len() {
                return Some(read);
            }
            let name_start = i;
            while bytes
                .get(i)
                .is_some_and(|&b| b != b'=' && !is_xml_whitespace(b))
            {
                i += 1;
            }
            let name = &inner[name_start..i];
            while bytes
                .get(i)
                .is_some_and(|&b| is_xml_whitespace(b) || b == b'=')
            {
                i += 1;
            }
            let quote = *bytes.get(i).filter(|&&b| b == b'\'' || b == b'"')?;
            let value_start = i + 1;
            let value_len = bytes.get(value_start..)?.iter().position(|&b| b == quote)?;
            let raw = &inner[value_start..value_start + value_len];
            i = value_start + value_len + 1;
            let value = || decode(raw, true).unwrap_or(Cow::Borrowed(raw));
            if name == "xmlns" {
                read.default_ns = Some(value());
            } else if let Some(prefix) = name.strip_prefix("xmlns:") {
                read.prefixes.push((prefix, value()));
            }
        }
    }
}

/// The offset just past the `>` of the start tag at `lt`, skipping quoted values.
fn start_tag_end(bytes: &[u8], lt: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate().skip(lt + 1) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'>' => return Some(i + 1),
            None => {}
        }
    }
    None
}

/// For an element whose start tag ends at `from`: where its content ends (its end tag's `<`)
/// and where the element ends (past that end tag's `>`).
fn element_end(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut depth = 1usize;
    let mut pos = from;
    loop {
        let lt = pos + bytes.get(pos..)?.iter().position(|&b| b == b'<')?;
        let rest = &bytes[lt..];
        if rest.starts_with(b"<![CDATA[") {
            pos = lt + find(rest, b"]]>")? + 3;
        } else if rest.starts_with(b"</") {
            let gt = lt + rest.iter().position(|&b| b == b'>')?;
            depth -= 1;
            if depth == 0 {
                return Some((lt, gt + 1));
            }
            pos = gt + 1;
        } else {
            let end = start_tag_end(bytes, lt)?;
            let self_closing = end >= 2 && bytes[end - 2] == b'/';
            if !self_closing {
                depth += 1;
            }
            pos = end;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::test_rng::Rng;
    use crate::xml::{ns, Element};

    fn names(element: &str) -> Vec<(String, String)> {
        children(element, ns::CLIENT)
            .map(|c| (c.name.to_string(), c.namespace.into_owned()))
            .collect()
    }

    #[test]
    fn top_level_children_with_their_namespaces() {
        let message = "<message xmlns:h='urn:xmpp:hints' to='a@b' type='chat'>\
            <body>hi <b>not a child</b> &lt;private/&gt;</body>\
            <h:no-copy/><private xmlns='urn:xmpp:carbons:2'/>\
            <c:x xmlns:c='urn:c'><nested/></c:x><undeclared:y/>\
            <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>";
        assert_eq!(
            names(message),
            [
                ("body", ns::CLIENT),
                ("no-copy", "urn:xmpp:hints"),
                ("private", "urn:xmpp:carbons:2"),
                ("x", "urn:c"),
                ("y", ""),
                ("extraParams", ns::CLIENT),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let extra = children(message, ns::CLIENT).last().unwrap();
        let field = children(extra.element, &extra.namespace).next().unwrap();
        assert_eq!(field.name, "save_to_history");
        assert_eq!(field.text().as_deref(), Some("1"));
    }

    #[test]
    fn markup_inside_text_and_cdata_is_text() {
        let message =
            "<message><body><![CDATA[<private xmlns='urn:xmpp:carbons:2'/></body>]]></body>\
            <x a='&gt;&apos;'>t</x></message>";
        assert_eq!(
            names(message),
            [("body", ns::CLIENT), ("x", ns::CLIENT)].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let body = children(message, ns::CLIENT).next().unwrap();
        assert_eq!(
            body.text().as_deref(),
            Some("<private xmlns='urn:xmpp:carbons:2'/></body>")
        );
        assert_eq!(children("<message/>", ns::CLIENT).count(), 0);
        let leaf = children("<m><a>x &amp; y</a><b/></m>", ns::CLIENT)
            .map(|c| c.text().map(Cow::into_owned))
            .collect::<Vec<_>>();
        assert_eq!(leaf, [Some("x & y".to_string()), Some(String::new())]);
    }

    #[test]
    fn agrees_with_the_tree_builder_and_never_panics() {
        let parts = [
            "<a/>",
            "<b xmlns='urn:b'>t</b>",
            "<p:c xmlns:p='urn:p'><d/></p:c>",
            "text",
            "<![CDATA[<e/>]]>",
            "<f g='&lt;&gt;'><h><i/></h></f>",
            "&amp;",
        ];
        let mut rng = Rng(7);
        for _ in 0..500 {
            let mut message = String::from("<message xmlns:q='urn:q'>");
            for _ in 0..rng.below(6) {
                message.push_str(parts[rng.below(parts.len())]);
            }
            message.push_str("</message>");
            let tree = Element::parse(&message, Some(ns::CLIENT)).unwrap();
            let want: Vec<(String, String)> = tree
                .children()
                .map(|c| {
                    (
                        c.name().to_string(),
                        c.namespace().unwrap_or("").to_string(),
                    )
                })
                .collect();
            assert_eq!(names(&message), want, "{message}");
            // Truncated or garbled text ends the walk early, never in a panic.
            for cut in 0..message.len() {
                if message.is_char_boundary(cut) {
                    let _ = children(&message[..cut], ns::CLIENT).count();
                    let _ = children(&message[cut..], ns::CLIENT).count();
                }
            }
        }
    }
}
