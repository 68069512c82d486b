//! Payloads serialised once by the code that builds them, instead of built as a tree.
//!
//! A reply with many attributes costs more as a minidom tree than everything else the
//! server does for it: an XEP-0215 answer (four services, eight attributes each) took
//! about seventy allocations to build and as many frees to drop, and its building,
//! writing and dropping were 40 % of the instructions of the whole request. Written
//! straight to text by [`Xml`], it is one string.
//!
//! Such a payload travels inside its stanza as a marker element, `<prerendered/>` in a
//! namespace of Tern's own holding the XML as text, which the writer copies verbatim.
//! Nothing on the way to the client looks inside these payloads (IQ results, XEP-0215
//! pushes); code that must (the fallback writer, tests) gets the tree back from
//! [`expand`]. Only [`Xml`] makes a marker: it escapes every value, and its names and
//! namespaces are the caller's constants, so what the writer copies is well formed
//! (debug builds check it).

use std::io::Write;

use super::writer::{push_escaped, Context, Unwritable};
use super::Element;

/// Never on the wire: the writer replaces the marker with its content.
const NS: &str = "urn:tern:prerendered";
const NAME: &str = "prerendered";

/// A value XML cannot carry (a control character, U+FFFE, U+FFFF) was given to [`Xml`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unrenderable;

impl std::fmt::Display for Unrenderable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a character XML cannot carry")
    }
}

impl From<Unwritable> for Unrenderable {
    fn from(_: Unwritable) -> Self {
        Unrenderable
    }
}

/// Writes one element (with its children) as text. The caller opens and closes elements
/// in order. Names and namespaces are `'static`, so they are the caller's constants and
/// never data; values are escaped here.
#[derive(Default)]
pub struct Xml {
    out: Vec<u8>,
}

impl Xml {
    pub fn with_capacity(capacity: usize) -> Self {
        Xml {
            out: Vec::with_capacity(capacity),
        }
    }

    /// `<name xmlns='namespace'`: the start tag stays open for attributes.
    pub fn open(&mut self, name: &'static str, namespace: Option<&'static str>) {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        if let Some(namespace) = namespace {
            self.out.extend_from_slice(b" xmlns='");
            self.out.extend_from_slice(namespace.as_bytes());
            self.out.push(b'\'');
        }
    }

    pub fn attr(&mut self, name: &'static str, value: &str) -> Result<(), Unrenderable> {
        self.out.push(b' ');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"='");
        push_escaped(value, Context::Attribute, &mut self.out)?;
        self.out.push(b'\'');
        Ok(())
    }

    /// An attribute whose value needs no escaping (a number).
    pub fn attr_u64(&mut self, name: &'static str, value: u64) {
        self.out.push(b' ');
        self.out.extend_from_slice(name.as_bytes());
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "='{value}'");
    }

    /// Ends the start tag of an element that will have content.
    pub fn content(&mut self) {
        self.out.push(b'>');
    }

    /// Ends the start tag of an element without content.
    pub fn close_empty(&mut self) {
        self.out.extend_from_slice(b"/>");
    }

    pub fn text(&mut self, text: &str) -> Result<(), Unrenderable> {
        push_escaped(text, Context::Text, &mut self.out)?;
        Ok(())
    }

    pub fn close(&mut self, name: &'static str) {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Drops what was written after `len` (an element given up half way).
    pub fn truncate(&mut self, len: usize) {
        self.out.truncate(len);
    }

    /// Writes a whole element with `write`, or nothing when a value cannot be written:
    /// one bad entry of a list is left out instead of leaving half an element.
    pub fn whole(
        &mut self,
        write: impl FnOnce(&mut Xml) -> Result<(), Unrenderable>,
    ) -> Result<(), Unrenderable> {
        let before = self.out.len();
        let written = write(self);
        if written.is_err() {
            self.out.truncate(before);
        }
        written
    }

    /// The marker element that carries what was written.
    pub fn into_element(self) -> Element {
        // Every byte came from a `&str` or from ASCII escapes, so this never fails.
        let text = String::from_utf8(self.out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        // Every test that renders checks that what the writer will copy is well formed.
        debug_assert!(
            text.parse::<Element>().is_ok(),
            "prerendered XML does not parse: {text}"
        );
        let mut marker = Element::bare(NAME, NS);
        marker.append_text(text);
        marker
    }

    /// What was written, as a tree.
    pub fn into_tree(self) -> Option<Element> {
        parse(&String::from_utf8_lossy(&self.out))
    }
}

/// The XML a marker carries; `None` for any other element.
pub fn content_of(element: &Element) -> Option<&str> {
    if element.name() != NAME || !element.has_ns(NS) {
        return None;
    }
    match element.nodes().next() {
        Some(minidom::Node::Text(text)) => Some(text),
        _ => Some(""),
    }
}

/// Whether `element` holds a marker anywhere inside (or is one).
pub fn contains_marker(element: &Element) -> bool {
    content_of(element).is_some() || element.children().any(contains_marker)
}

/// A copy of `element` with every marker replaced by the tree it carries.
pub fn expand(element: &Element) -> Element {
    if let Some(xml) = content_of(element) {
        return parse(xml).unwrap_or_else(|| element.clone());
    }
    let mut copy = Element::bare(element.name(), element.ns());
    for ((namespace, name), value) in element.attrs().iter() {
        copy.attrs_mut()
            .insert(namespace.clone(), name.clone(), value.clone());
    }
    for node in element.nodes() {
        match node {
            minidom::Node::Element(child) => {
                copy.append_child(expand(child));
            }
            minidom::Node::Text(text) => copy.append_text(text.clone()),
        }
    }
    copy
}

fn parse(xml: &str) -> Option<Element> {
    match xml.parse::<Element>() {
        Ok(element) => Some(element),
        Err(err) => {
            tracing::error!(%err, "a prerendered payload does not parse");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{writer, ElementExt};

    fn sample() -> Xml {
        let mut xml = Xml::default();
        xml.open("services", Some("urn:xmpp:extdisco:2"));
        xml.attr("type", "turn").expect("plain");
        xml.content();
        xml.open("service", None);
        xml.attr("host", "a'b<c>&\"d\te\nf\rg").expect("escapable");
        xml.attr_u64("port", 3478);
        xml.close_empty();
        xml.open("name", None);
        xml.content();
        xml.text("x < y & z\n").expect("escapable");
        xml.close("name");
        xml.close("services");
        xml
    }

    #[test]
    fn a_marker_is_written_as_its_content() {
        let mut iq = Element::bare("iq", crate::xml::ns::CLIENT).with("type", "result");
        iq.append_child(sample().into_element());
        let written = writer::to_string(&iq);
        assert!(!written.contains(NS), "{written}");
        let parsed: Element = written.parse().expect("well formed");
        let services = parsed.first_child().expect("payload");
        assert!(services.is("services", "urn:xmpp:extdisco:2"));
        assert_eq!(services.attr("type"), Some("turn"));
        let service = services.first_child().expect("service");
        assert!(
            service.has_ns("urn:xmpp:extdisco:2"),
            "inherits the namespace"
        );
        assert_eq!(service.attr("host"), Some("a'b<c>&\"d\te\nf\rg"));
        assert_eq!(service.attr("port"), Some("3478"));
        let name = services.children().nth(1).expect("name");
        assert_eq!(name.text(), "x < y & z\n");
    }

    #[test]
    fn expand_gives_the_tree_back() {
        let mut iq = Element::bare("iq", crate::xml::ns::CLIENT).with("id", "1");
        iq.append_child(sample().into_element());
        assert!(contains_marker(&iq));
        let expanded = expand(&iq);
        assert!(!contains_marker(&expanded));
        assert_eq!(expanded.attr("id"), Some("1"));
        let tree = sample().into_tree().expect("parses");
        assert_eq!(expanded.first_child(), Some(&tree));
        assert_eq!(
            writer::to_string(&expanded),
            writer::to_string(&iq),
            "both ways write the same bytes"
        );
    }

    #[test]
    fn characters_xml_cannot_carry_are_refused() {
        let mut xml = Xml::default();
        xml.open("a", None);
        assert_eq!(xml.attr("v", "bell\u{7}"), Err(Unrenderable));
        assert_eq!(xml.text("\u{FFFE}"), Err(Unrenderable));
        assert!(xml.attr("v", "fine").is_ok());
    }

    #[test]
    fn other_elements_are_not_markers() {
        let lookalike = Element::bare(NAME, "urn:example");
        assert_eq!(content_of(&lookalike), None);
        assert!(!contains_marker(&Element::bare(
            "iq",
            crate::xml::ns::CLIENT
        )));
    }
}
