//! Element and stream-header serialisation.

use std::borrow::Cow;

use super::{ns, prerendered, Element};

/// Serialises a stanza. Stanzas are written as standalone documents, so each carries its
/// own `xmlns`; that is what the stream's default namespace already says, and every client
/// accepts the redundant declaration.
pub fn to_bytes(element: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    append_to(element, &mut out);
    out
}

/// Serialises a stanza at the end of `out` (several stanzas batched into one write).
///
/// Directly, in one pass: every stanza sent goes through here, and minidom's writer
/// (rxml's encoder with its namespace tracker and buffers) cost about a tenth of the CPU
/// of an XEP-0215 answer. What that simple pass does not cover (attributes in a namespace
/// other than `xml:`) goes to minidom's writer instead. A stanza holding a character XML
/// cannot carry is not written at all (minidom's writer would panic on it).
pub fn append_to(element: &Element, out: &mut Vec<u8>) {
    if let Some(xml) = prerendered::content_of(element) {
        out.extend_from_slice(xml.as_bytes());
        return;
    }
    let start = out.len();
    match write_fast(element, None, out) {
        Ok(()) => return,
        Err(Unwritable::Character) => {
            tracing::error!(
                element = element.name(),
                "a stanza with a character XML cannot carry was not sent"
            );
            out.truncate(start);
            return;
        }
        Err(Unwritable::NamespacedAttribute) => out.truncate(start),
    }
    // minidom's writer knows nothing of prerendered payloads: it gets their trees.
    let expanded;
    let element = if prerendered::contains_marker(element) {
        expanded = prerendered::expand(element);
        &expanded
    } else {
        element
    };
    // minidom only fails on names it could not have parsed or built; stanzas come from
    // our framer or our builders, so such a failure is a bug worth a log line, not a panic.
    if let Err(err) = element.write_to(out) {
        tracing::error!(%err, element = element.name(), "could not serialise element");
        out.truncate(start);
    }
}

pub(super) enum Unwritable {
    /// Needs a prefix declaration: minidom's writer does that.
    NamespacedAttribute,
    /// Control characters, U+FFFE, U+FFFF.
    Character,
}

/// Writes `element`, declaring its namespace unless it is `parent_ns`.
fn write_fast(
    element: &Element,
    parent_ns: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), Unwritable> {
    let name = element.name();
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    let own_ns;
    let ns = match parent_ns {
        Some(parent) if element.has_ns(parent) => parent,
        _ => {
            // `ns()` copies the namespace: not for a stanza's, which is nearly always this.
            own_ns = if element.has_ns(ns::CLIENT) {
                Cow::Borrowed(ns::CLIENT)
            } else {
                Cow::Owned(element.ns())
            };
            out.extend_from_slice(b" xmlns='");
            push_escaped(&own_ns, Context::Attribute, out)?;
            out.push(b'\'');
            &own_ns
        }
    };
    for ((attr_ns, key), value) in element.attrs().iter() {
        out.push(b' ');
        if *attr_ns == minidom::rxml::Namespace::XML {
            out.extend_from_slice(b"xml:");
        } else if *attr_ns != minidom::rxml::Namespace::NONE {
            return Err(Unwritable::NamespacedAttribute);
        }
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"='");
        push_escaped(value, Context::Attribute, out)?;
        out.push(b'\'');
    }
    let mut children = element.nodes().peekable();
    if children.peek().is_none() {
        out.extend_from_slice(b"/>");
        return Ok(());
    }
    out.push(b'>');
    for child in children {
        match child {
            minidom::Node::Element(child) => append_child(child, ns, out)?,
            minidom::Node::Text(text) => push_escaped(text, Context::Text, out)?,
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    Ok(())
}

/// Writes `element` as a child of an element in `parent_ns`: a prerendered payload as
/// its text, anything else by the fast writer.
pub(super) fn append_child(
    element: &Element,
    parent_ns: &str,
    out: &mut Vec<u8>,
) -> Result<(), Unwritable> {
    match prerendered::content_of(element) {
        Some(xml) => {
            out.extend_from_slice(xml.as_bytes());
            Ok(())
        }
        None => write_fast(element, Some(parent_ns), out),
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Context {
    Text,
    /// A value in single quotes.
    Attribute,
}

/// Escapes `raw` for `context`: `&`, `<`, `>` and carriage returns always (a parser turns
/// a raw CR into a LF); in attribute values also quotes, tabs and line feeds (attribute
/// normalisation would turn those into spaces).
pub(super) fn push_escaped(
    raw: &str,
    context: Context,
    out: &mut Vec<u8>,
) -> Result<(), Unwritable> {
    let attribute = context == Context::Attribute;
    let special = if attribute {
        &ATTRIBUTE_SPECIAL
    } else {
        &TEXT_SPECIAL
    };
    let bytes = raw.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Most bytes need nothing: one table lookup instead of the match below.
        if !special[usize::from(b)] {
            continue;
        }
        let escaped: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#13;",
            b'\'' if attribute => b"&apos;",
            b'"' if attribute => b"&quot;",
            b'\t' if attribute => b"&#9;",
            b'\n' if attribute => b"&#10;",
            b'\t' | b'\n' => continue,
            0..=0x1f => return Err(Unwritable::Character),
            // U+FFFE and U+FFFF (EF BF BE / EF BF BF) are not XML characters either.
            0xef if bytes.get(i + 1) == Some(&0xbf)
                && matches!(bytes.get(i + 2), Some(0xbe | 0xbf)) =>
            {
                return Err(Unwritable::Character)
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        out.extend_from_slice(escaped);
        plain_from = i + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    Ok(())
}

/// The bytes `push_escaped` must look at: the C0 controls, `&`, `<`, `>` and 0xEF (which
/// starts U+FFFE and U+FFFF), and in attribute values the quotes as well.
static TEXT_SPECIAL: [bool; 256] = super::stop_table(b"&<>\xEF", false);
static ATTRIBUTE_SPECIAL: [bool; 256] = super::stop_table(b"&<>\xEF'\"", false);

pub fn to_string(element: &Element) -> String {
    String::from_utf8_lossy(&to_bytes(element)).into_owned()
}

/// The server's stream header (RFC 6120 §4.7). Values are escaped: `to` echoes what the
/// client sent.
pub fn stream_header(from: &str, to: Option<&str>, id: &str, lang: &str) -> String {
    let mut header = String::with_capacity(256);
    header.push_str("<?xml version='1.0'?><stream:stream xmlns='");
    header.push_str(ns::CLIENT);
    header.push_str("' xmlns:stream='");
    header.push_str(ns::STREAM);
    header.push_str("' from='");
    header.push_str(&escape(from));
    if let Some(to) = to {
        header.push_str("' to='");
        header.push_str(&escape(to));
    }
    header.push_str("' id='");
    header.push_str(&escape(id));
    header.push_str("' version='1.0' xml:lang='");
    header.push_str(&escape(lang));
    header.push_str("'>");
    header
}

pub const STREAM_CLOSE: &str = "</stream:stream>";

/// Escapes text for an attribute value in single quotes.
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::ElementExt;

    #[test]
    fn nested_namespaces_round_trip() {
        let iq =
            Element::bare("iq", ns::CLIENT)
                .with("type", "result")
                .with("id", "a'1")
                .with_child(Element::bare("query", ns::DISCO_INFO).with_child(
                    Element::bare("feature", ns::DISCO_INFO).with("var", "urn:xmpp:ping"),
                ));
        let text = to_string(&iq);
        let parsed: Element = text.parse().expect("own output parses");
        assert_eq!(parsed, iq);
        assert!(text.starts_with("<iq xmlns='jabber:client'"), "{text}");
        assert!(!text.contains("tns"), "no generated prefixes: {text}");
    }

    /// What minidom's own writer produces, for comparison.
    fn minidom_bytes(element: &Element) -> Vec<u8> {
        let mut out = Vec::new();
        element.write_to(&mut out).expect("minidom writes it");
        out
    }

    #[test]
    fn the_direct_writer_says_what_minidom_says() {
        let mut message = Element::bare("message", ns::CLIENT)
            .with("to", "juliet@example.com/balcony")
            .with("id", "q\"'<&>\t\n\r")
            .with_child(
                Element::bare("body", ns::CLIENT)
                    .with_text("line one\nline two\t& <tags> \"quoted\" it's\r\n"),
            )
            .with_child(
                Element::bare("x", "urn:example:a'b")
                    .with_child(Element::bare("y", "urn:example:a'b").with_text("]]>")),
            );
        message.attrs_mut().insert(
            minidom::rxml::Namespace::XML,
            "lang".try_into().unwrap(),
            "en".into(),
        );
        let ours = to_bytes(&message);
        let text = String::from_utf8(ours.clone()).unwrap();
        assert!(text.starts_with("<message xmlns='jabber:client'"), "{text}");
        assert!(text.contains(" xml:lang='en'"), "{text}");
        assert!(
            text.contains("<body>line one\nline two\t&amp; &lt;tags&gt;"),
            "{text}"
        );
        assert!(
            text.contains("<x xmlns='urn:example:a&apos;b'><y>]]&gt;</y></x>"),
            "{text}"
        );
        let reparsed: Element = text.parse().expect("our output parses");
        let theirs: Element = String::from_utf8(minidom_bytes(&message))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(reparsed, theirs);
        assert_eq!(reparsed, message);
    }

    #[test]
    fn what_the_direct_writer_cannot_say_goes_to_minidom() {
        // An attribute in a namespace of its own needs a prefix declaration.
        let mut element = Element::bare("item", "urn:example:x");
        element.attrs_mut().insert(
            minidom::rxml::Namespace::from("urn:example:attr".to_string()),
            "flag".try_into().unwrap(),
            "1".into(),
        );
        assert_eq!(to_bytes(&element), minidom_bytes(&element));
        // A character XML cannot carry: nothing is written (minidom's writer panics).
        let bad = Element::bare("body", ns::CLIENT).with_text("bell\u{7}");
        let mut out = b"<kept/>".to_vec();
        append_to(&bad, &mut out);
        assert_eq!(out, b"<kept/>");
        let nonchar = Element::bare("body", ns::CLIENT).with_text("x\u{fffe}");
        assert_eq!(to_bytes(&nonchar), b"");
    }

    #[test]
    fn header_escapes() {
        let h = stream_header("localhost", Some("x'><evil"), "id1", "en");
        assert!(h.contains("to='x&apos;&gt;&lt;evil'"));
    }
}
