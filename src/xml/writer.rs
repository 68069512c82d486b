//! Element and stream-header serialisation.

use super::{ns, Element};

/// Serialises a stanza. Stanzas are written as standalone documents, so each carries its
/// own `xmlns`; that is what the stream's default namespace already says, and every client
/// accepts the redundant declaration.
pub fn to_bytes(element: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    append_to(element, &mut out);
    out
}

/// Serialises a stanza at the end of `out` (several stanzas batched into one write).
pub fn append_to(element: &Element, out: &mut Vec<u8>) {
    let start = out.len();
    // minidom only fails on names it could not have parsed or built; stanzas come from
    // our framer or our builders, so such a failure is a bug worth a log line, not a panic.
    if let Err(err) = element.write_to(out) {
        tracing::error!(%err, element = element.name(), "could not serialise element");
        out.truncate(start);
    }
}

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

    #[test]
    fn header_escapes() {
        let h = stream_header("localhost", Some("x'><evil"), "id1", "en");
        assert!(h.contains("to='x&apos;&gt;&lt;evil'"));
    }
}
