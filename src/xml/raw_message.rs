//! A plain `<message>` kept as the client wrote it, so that relaying it builds no tree.
//!
//! Building a message's minidom tree, writing it out again and dropping it were about
//! 9 k of a relayed message's 26 k instructions, for a stanza that nothing on its way
//! looks inside: the router reads its `to` and `type`, stamps its `from`, and writes it
//! to the recipient. Read here, a message is checked as the framer's fast path would
//! check it (so it is exactly as well formed), but kept as one string and the places of
//! its few top-level attributes. The writer copies the string with the stamped `from`
//! (and `xmlns`) put after the name. Whoever needs the tree gets it from
//! [`RawMessage::to_element`], which reads the same text with the fast path.
//!
//! Only the simplest messages are taken: `to`, `id`, `type` and `xml:lang` at the top
//! (none other; their values needing no decoding), nesting at most [`MAX_OPEN`] deep, at
//! most [`MAX_ATTRIBUTES`] attributes on an element. Anything else, and anything the
//! fast path would leave to rxml, is declined and read as a tree, as before.

use std::sync::Arc;

use memchr::memchr;

use super::fast_path::{
    self, check_markup, Context, Reader, ATTRIBUTE_STOPS, XMLNS_NAMESPACE, XML_NAMESPACE,
};
use super::framer::{read_alone_with_rxml, FramerLimits};
use super::{ns, writer, Element, ElementExt};

/// Deepest nesting read here (the message itself is depth 1).
const MAX_OPEN: usize = 16;
/// Most attributes on one child element read here.
const MAX_ATTRIBUTES: usize = 16;
/// What the text starts with; the stamped attributes go right after it.
const START: &str = "<message";

/// A byte range of the text (`u32`: a stanza is far smaller than 4 GiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(range: std::ops::Range<usize>) -> Option<Span> {
        Some(Span {
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        })
    }

    fn in_text(self, text: &str) -> &str {
        text.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// The `from` a session stamps on its messages, and that address escaped as an attribute
/// value, made once per session: copying and escaping it for each message was about 3 %
/// of a relayed message's instructions.
#[derive(Debug)]
pub struct FromStamp {
    jid: String,
    /// `None` when XML cannot carry it (never for a valid JID).
    escaped: Option<Box<[u8]>>,
}

impl FromStamp {
    pub fn new(jid: &str) -> Arc<FromStamp> {
        let mut escaped = Vec::with_capacity(jid.len());
        let escaped = writer::push_escaped(jid, writer::Context::Attribute, &mut escaped)
            .is_ok()
            .then(|| escaped.into_boxed_slice());
        Arc::new(FromStamp {
            jid: jid.to_string(),
            escaped,
        })
    }

    pub fn jid(&self) -> &str {
        &self.jid
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RawMessage {
    /// From `<message` to its end tag, as received.
    text: Box<str>,
    to: Option<Span>,
    id: Option<Span>,
    kind: Option<Span>,
    /// The client wrote `xmlns='jabber:client'` itself (else the writer adds it).
    declares_namespace: bool,
    /// Where the content lies, between the start tag and the end tag.
    content: Span,
    /// Stamped by the router; a message that came with one is not taken here.
    from: Option<Arc<FromStamp>>,
}

impl RawMessage {
    /// The top-level attribute `name` (without a namespace), as minidom's `attr` would
    /// give it.
    pub fn attr<'a>(&'a self, name: &str) -> Option<&'a str> {
        let span = match name {
            "to" => self.to,
            "id" => self.id,
            "type" => self.kind,
            "from" => return self.from.as_deref().map(FromStamp::jid),
            // Nothing else was taken (`xml:lang` has a namespace).
            _ => None,
        };
        span.map(|span| span.in_text(&self.text))
    }

    pub fn set_from(&mut self, from: &Arc<FromStamp>) {
        self.from = Some(from.clone());
    }

    /// Whether a child element `name` in `namespace` is directly under the message.
    pub fn has_child(&self, name: &str, namespace: &str) -> bool {
        let bytes = self.text.as_bytes();
        let end = self.content.end as usize;
        let mut reader = Reader {
            bytes: &bytes[..end],
            pos: self.content.start as usize,
        };
        let mut depth = 0usize;
        // The text was checked when it was read, so every step here succeeds.
        while let Some(at) = memchr(b'<', &reader.bytes[reader.pos..]) {
            reader.pos += at + 1;
            if reader.peek_at(0) == Some(b'/') {
                let Some(close) = memchr(b'>', &reader.bytes[reader.pos..]) else {
                    return false;
                };
                reader.pos += close + 1;
                depth = depth.saturating_sub(1);
                continue;
            }
            let Some(tag) = tag_namespace(&mut reader) else {
                return false;
            };
            if depth == 0 && tag.name == name.as_bytes() {
                let child_ns = match tag.xmlns {
                    None => std::borrow::Cow::Borrowed(ns::CLIENT),
                    Some(raw) => match fast_path::decode_value(raw) {
                        Some(decoded) => std::borrow::Cow::Owned(decoded),
                        None => return false,
                    },
                };
                if child_ns == namespace {
                    return true;
                }
            }
            if !tag.empty {
                depth += 1;
            }
        }
        false
    }

    /// The message as a tree, `from` included.
    pub fn to_element(&self) -> Element {
        let unlimited = FramerLimits {
            max_stanza_bytes: usize::MAX,
            max_depth: usize::MAX,
            max_attributes: usize::MAX,
            max_attribute_bytes: usize::MAX,
        };
        let mut element =
            match fast_path::parse_stanza(self.text.as_bytes(), ns::CLIENT, &unlimited) {
                Some((element, _)) => element,
                None => {
                    // `scan` takes less than the fast path does, so this is a bug of ours.
                    tracing::error!("the fast path declined a message scan took");
                    read_with_rxml(&self.text).unwrap_or_else(|| self.attributes_only())
                }
            };
        if let Some(from) = &self.from {
            element.set("from", from.jid());
        }
        element
    }

    /// The last resort of [`RawMessage::to_element`].
    fn attributes_only(&self) -> Element {
        tracing::error!("a message could not be read again; only its addresses are kept");
        let mut element = Element::bare("message", ns::CLIENT);
        for name in ["to", "id", "type"] {
            if let Some(value) = self.attr(name) {
                element.set(name, value);
            }
        }
        element
    }

    /// Writes the message, with the stamped `from` and its own `xmlns`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let rest = self.text.get(START.len()..).unwrap_or_default();
        out.extend_from_slice(START.as_bytes());
        if let Some(from) = &self.from {
            let Some(escaped) = &from.escaped else {
                // A JID cannot hold such a character; the tree writer skips such a
                // stanza as well.
                tracing::error!("a message with a 'from' XML cannot carry was not sent");
                out.truncate(start);
                return;
            };
            out.extend_from_slice(b" from='");
            out.extend_from_slice(escaped);
            out.push(b'\'');
        }
        if !self.declares_namespace {
            out.extend_from_slice(b" xmlns='");
            out.extend_from_slice(ns::CLIENT.as_bytes());
            out.push(b'\'');
        }
        out.extend_from_slice(rest.as_bytes());
    }

    /// The message as received.
    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Reads `text` as the only stanza of a client stream, with rxml.
fn read_with_rxml(text: &str) -> Option<Element> {
    let limits = FramerLimits {
        max_stanza_bytes: text.len().saturating_mul(2).max(4096),
        max_depth: MAX_OPEN * 2,
        max_attributes: MAX_ATTRIBUTES * 2,
        max_attribute_bytes: text.len().max(1),
    };
    read_alone_with_rxml(text.as_bytes(), limits)
}

/// A child's start tag, as [`tag_namespace`] reads it.
struct ChildTag<'a> {
    name: &'a [u8],
    /// Its `xmlns` as written.
    xmlns: Option<&'a [u8]>,
    empty: bool,
}

/// A child's start tag after its `<`, already checked.
fn tag_namespace<'a>(reader: &mut Reader<'a>) -> Option<ChildTag<'a>> {
    let name = reader.name_bytes()?;
    let mut xmlns = None;
    loop {
        reader.skip_space()?;
        let empty = match reader.peek_at(0)? {
            b'>' => false,
            b'/' => true,
            _ => {
                let attribute: &[u8] = if reader.bytes[reader.pos..].starts_with(b"xml:lang") {
                    reader.pos += b"xml:lang".len();
                    b"xml:lang"
                } else {
                    reader.name_bytes()?
                };
                let span = reader.attribute_span()?;
                if attribute == b"xmlns" {
                    xmlns = Some(&reader.bytes[span]);
                }
                continue;
            }
        };
        return Some(ChildTag { name, xmlns, empty });
    }
}

/// The plain message at the start of `input` and the bytes it took, or `None` when it
/// must be read as a tree. `default_ns` is the stream's default namespace.
pub(super) fn scan(
    input: &[u8],
    default_ns: &str,
    limits: &FramerLimits,
) -> Option<(RawMessage, usize)> {
    let bytes = &input[..input.len().min(limits.max_stanza_bytes)];
    if !bytes.starts_with(START.as_bytes()) {
        return None;
    }
    let mut reader = Reader { bytes, pos: 1 };
    if reader.name_bytes()? != b"message" {
        return None;
    }
    let mut to = None;
    let mut id = None;
    let mut kind = None;
    let mut lang = false;
    let mut declares_namespace = false;
    let mut count = 0usize;
    let empty = loop {
        if let Some(empty) = reader.tag_end()? {
            break empty;
        }
        if bytes[reader.pos..].starts_with(b"xml:lang") {
            reader.pos += b"xml:lang".len();
            let span = reader.attribute_span()?;
            if lang || span.len() > limits.max_attribute_bytes {
                return None;
            }
            check_markup(&bytes[span], Context::Attribute)?;
            lang = true;
            count += 1;
            continue;
        }
        let name = reader.name_bytes()?;
        let span = reader.attribute_span()?;
        let value = &bytes[span.clone()];
        if name == b"xmlns" {
            if declares_namespace || value != ns::CLIENT.as_bytes() {
                return None;
            }
            declares_namespace = true;
            continue;
        }
        // Read in place: nothing to decode, nothing a parser would normalise.
        let plain = !value.iter().any(|&b| ATTRIBUTE_STOPS[usize::from(b)]);
        if !plain || value.len() > limits.max_attribute_bytes {
            return None;
        }
        let slot = match name {
            b"to" => &mut to,
            b"id" => &mut id,
            b"type" => &mut kind,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(Span::of(span)?);
        count += 1;
    };
    if count > limits.max_attributes || (!declares_namespace && default_ns != ns::CLIENT) {
        return None;
    }
    let content_start = reader.pos;
    let content_end = if empty {
        content_start
    } else {
        scan_content(&mut reader, limits)?
    };
    let used = reader.pos;
    // Once for the whole message: its values and text were checked for everything else.
    let text = std::str::from_utf8(&bytes[..used]).ok()?;
    let message = RawMessage {
        text: text.into(),
        to,
        id,
        kind,
        declares_namespace,
        content: Span::of(content_start..content_end)?,
        from: None,
    };
    Some((message, used))
}

/// Checks the message's content as the fast path reads it, up to and with the message's
/// end tag; returns where that end tag starts.
fn scan_content(reader: &mut Reader<'_>, limits: &FramerLimits) -> Option<usize> {
    let bytes = reader.bytes;
    // Names of the open elements, the message first.
    let mut open: [&[u8]; MAX_OPEN] = [b""; MAX_OPEN];
    open[0] = b"message";
    let mut depth = 1usize;
    // The namespaces declared inside, as (depth of the declaring element, length): only
    // their lengths count, towards the same limit as the fast path's.
    let mut scopes = [(0usize, 0usize); MAX_OPEN];
    let mut scope_count = 0usize;
    let mut namespace_bytes = ns::CLIENT.len();
    loop {
        // Text up to the next tag.
        let text_end = reader.pos + memchr(b'<', &bytes[reader.pos..])?;
        check_markup(&bytes[reader.pos..text_end], Context::Text)?;
        reader.pos = text_end;
        match reader.peek_at(1)? {
            b'/' => {
                reader.pos += 2;
                let name = reader.name_bytes()?;
                reader.skip_space()?;
                reader.expect(b'>')?;
                depth -= 1;
                if open[depth] != name {
                    return None;
                }
                if scope_count > 0 && scopes[scope_count - 1].0 > depth {
                    scope_count -= 1;
                }
                if depth == 0 {
                    return Some(text_end);
                }
            }
            b'!' | b'?' => return None,
            _ => {
                reader.pos += 1;
                if depth >= limits.max_depth || depth >= MAX_OPEN {
                    return None;
                }
                let (name, xmlns_len, empty) = child_start_tag(reader, limits)?;
                let inherited = match scope_count {
                    0 => ns::CLIENT.len(),
                    n => scopes[n - 1].1,
                };
                namespace_bytes += xmlns_len.unwrap_or(inherited);
                if namespace_bytes > limits.max_stanza_bytes {
                    return None;
                }
                if !empty {
                    if let Some(len) = xmlns_len {
                        scopes[scope_count] = (depth + 1, len);
                        scope_count += 1;
                    }
                    open[depth] = name;
                    depth += 1;
                }
            }
        }
    }
}

/// A child's start tag after its `<`, checked as the fast path's `start_tag` checks it:
/// its name, the length of its `xmlns` as written, and whether it is empty.
fn child_start_tag<'a>(
    reader: &mut Reader<'a>,
    limits: &FramerLimits,
) -> Option<(&'a [u8], Option<usize>, bool)> {
    let name = reader.name_bytes()?;
    let mut names: [&[u8]; MAX_ATTRIBUTES] = [b""; MAX_ATTRIBUTES];
    let mut named = 0usize;
    let mut lang = false;
    let mut xmlns: Option<usize> = None;
    let empty = loop {
        if let Some(empty) = reader.tag_end()? {
            break empty;
        }
        let attribute = if reader.bytes[reader.pos..].starts_with(b"xml:lang") {
            reader.pos += b"xml:lang".len();
            None
        } else {
            Some(reader.name_bytes()?)
        };
        let span = reader.attribute_span()?;
        let raw = &reader.bytes[span];
        check_markup(raw, Context::Attribute)?;
        // Decoding only shortens a value: within the limit as written, within it decoded.
        if raw.len() > limits.max_attribute_bytes {
            return None;
        }
        match attribute {
            None if lang => return None,
            None => lang = true,
            Some(b"xmlns") => {
                // A value with an entity decodes to a character neither reserved name has.
                let reserved = raw == XML_NAMESPACE.as_bytes() || raw == XMLNS_NAMESPACE.as_bytes();
                if xmlns.is_some() || reserved {
                    return None;
                }
                xmlns = Some(raw.len());
                continue;
            }
            Some(attribute) => {
                if names[..named].contains(&attribute) || named == MAX_ATTRIBUTES {
                    return None;
                }
                names[named] = attribute;
                named += 1;
            }
        }
        if named + usize::from(lang) > limits.max_attributes {
            return None;
        }
    };
    Some((name, xmlns, empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(input: &str) -> Option<RawMessage> {
        let (message, used) = scan(input.as_bytes(), ns::CLIENT, &FramerLimits::default())?;
        assert_eq!(used, input.len(), "{input}");
        Some(message)
    }

    fn fast_path_tree(input: &str) -> Option<Element> {
        fast_path::parse_stanza(input.as_bytes(), ns::CLIENT, &FramerLimits::default())
            .map(|(element, _)| element)
    }

    #[test]
    fn a_taken_message_gives_the_fast_paths_tree_and_writes_as_it() {
        for input in [
            "<message to='u1@localhost' type='chat' id='m1'><body>1 2 padding</body></message>",
            "<message to=\"a@b\" xml:lang='en'><body>a &amp; b &lt;c&gt; &apos;&quot; é€😀</body></message>",
            "<message xmlns='jabber:client' id='x'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message><body>line one\nline two\ttab ]] ] &gt;</body><x xmlns='urn:x'><y/><z a='&amp;'>t</z></x>tail</message>",
            "<message to='a@b'/>",
            "<message\n  id = 'p1'\t></message >",
        ] {
            let Some(mut raw) = scanned(input) else {
                panic!("declined: {input}");
            };
            assert_eq!(raw.text(), input);
            assert_eq!(Some(raw.to_element()), fast_path_tree(input), "{input}");
            raw.set_from(&FromStamp::new("juliet@example.com/balcony"));
            let mut tree = fast_path_tree(input).unwrap_or_else(|| panic!("{input}"));
            tree.set("from", "juliet@example.com/balcony");
            assert_eq!(raw.to_element(), tree);
            for name in ["to", "id", "type", "from", "lang", "xml:lang"] {
                assert_eq!(raw.attr(name), tree.attr(name), "{name} of {input}");
            }
            // What is written reads back as the same tree.
            let mut written = Vec::new();
            raw.append_to(&mut written);
            let reread = fast_path::parse_stanza(&written, "", &FramerLimits::default());
            assert_eq!(reread.map(|(e, _)| e), Some(tree), "{input}");
        }
    }

    #[test]
    fn messages_the_fast_path_would_not_take_or_with_other_attributes_are_declined() {
        for input in [
            "<message from='a@b/c' to='d@e'><body/></message>",
            "<message to='a&amp;b@c'><body/></message>",
            "<message id='1' id='2'/>",
            "<message xmlns='jabber:server'/>",
            "<message xmlns='jabber:client' xmlns='jabber:client'/>",
            "<message foo='bar'/>",
            "<message id='a\tb'/>",
            "<message><body><![CDATA[x]]></body></message>",
            "<message><body>&#65;</body></message>",
            "<message><body>a\rb</body></message>",
            "<message><body>unfinished</body>",
            "<message><body></bodx></message>",
            "<message><a b='1' b='2'/></message>",
            "<message><a xmlns='1' xmlns='2'/></message>",
            "<message><a xmlns='http://www.w3.org/2000/xmlns/'/></message>",
            "<message><x:a/></message>",
            "<presence/>",
            "<messages/>",
        ] {
            assert!(scanned(input).is_none(), "taken: {input}");
        }
        // Another default namespace on the stream, unless the message names its own.
        let other = scan(b"<message/>", "jabber:server", &FramerLimits::default());
        assert!(other.is_none());
        let own = scan(
            b"<message xmlns='jabber:client'/>",
            "jabber:server",
            &FramerLimits::default(),
        );
        assert!(own.is_some());
    }

    #[test]
    fn within_the_limits_it_takes_and_past_them_it_declines() {
        let limits = FramerLimits {
            max_stanza_bytes: 80,
            max_depth: 3,
            max_attributes: 2,
            max_attribute_bytes: 5,
        };
        let pairs = [
            ("<message id='12345'/>", "<message id='123456'/>"),
            (
                "<message id='1' to='2'/>",
                "<message id='1' to='2' type='3'/>",
            ),
            (
                "<message><a b='1' c='2'/></message>",
                "<message><a b='1' c='2' d='3'/></message>",
            ),
            (
                "<message><b><c/></b></message>",
                "<message><b><c><d/></c></b></message>",
            ),
            (
                "<message><body>012345678901234567890123456789012345678901234567</body></message>",
                "<message><body>0123456789012345678901234567890123456789012345678</body></message>",
            ),
        ];
        for (at_limit, past_it) in pairs {
            let taken = scan(at_limit.as_bytes(), ns::CLIENT, &limits);
            assert!(taken.is_some(), "declined: {at_limit}");
            assert!(
                fast_path::parse_stanza(at_limit.as_bytes(), ns::CLIENT, &limits).is_some(),
                "the fast path declines {at_limit}"
            );
            assert!(
                scan(past_it.as_bytes(), ns::CLIENT, &limits).is_none(),
                "taken: {past_it}"
            );
        }
    }

    #[test]
    fn children_are_found_by_name_and_namespace_at_the_top_only() {
        let input = "<message><body>x</body><private xmlns='urn:xmpp:carbons:2'/>\
<x xmlns='urn:x'><no-copy xmlns='urn:xmpp:hints'/></x><y xmlns='urn:a&amp;b'><z/></y></message>";
        let Some(raw) = scanned(input) else {
            panic!("declined");
        };
        let tree = raw.to_element();
        for (name, namespace) in [
            ("body", ns::CLIENT),
            ("body", "urn:x"),
            ("private", "urn:xmpp:carbons:2"),
            ("private", ns::CLIENT),
            ("no-copy", "urn:xmpp:hints"),
            ("x", "urn:x"),
            ("y", "urn:a&b"),
            ("z", "urn:a&b"),
            ("z", ns::CLIENT),
            ("message", ns::CLIENT),
        ] {
            assert_eq!(
                raw.has_child(name, namespace),
                tree.has_child(name, namespace),
                "{name} in {namespace}"
            );
        }
        assert!(raw.has_child("private", "urn:xmpp:carbons:2"));
        assert!(!raw.has_child("no-copy", "urn:xmpp:hints"));
    }
}
