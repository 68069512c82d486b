//! The server's `result` to a client's IQ request, kept as its three addresses and its
//! payload and written straight to text.
//!
//! As a minidom tree, an empty result (a ping's answer) cost eight allocations (its name,
//! namespace, four attribute values and the map holding them) and about 2.2 k
//! instructions to build, write and drop, a tenth of a ping's. Here the request's `id`,
//! `from` and `to` are moved into the answer when the request is no longer shared, so an
//! empty result allocates nothing but its box. Whoever needs the tree gets it from
//! [`IqAnswer::to_element`]; [`crate::stanza::iq_result`] builds its tree here too.

use std::sync::Arc;

use minidom::rxml::Namespace;

use super::writer::{self, push_escaped, Context, Unwritable};
use super::{ns, Element, ElementExt};

#[derive(Clone, Debug)]
pub struct IqAnswer {
    id: Option<String>,
    /// The request's `from`.
    to: Option<String>,
    /// The request's `to`.
    from: Option<String>,
    payload: Option<Element>,
}

impl IqAnswer {
    /// The `result` to `request`, carrying `payload` if any. The request's addresses are
    /// moved out of it when nobody else holds it (the handler has let go of its copy).
    pub fn result(request: Arc<Element>, payload: Option<Element>) -> IqAnswer {
        match Arc::try_unwrap(request) {
            Ok(mut request) => {
                let attributes = request.attrs_mut();
                let mut take = |name: &str| attributes.remove(&Namespace::NONE, name);
                IqAnswer {
                    id: take("id"),
                    to: take("from"),
                    from: take("to"),
                    payload,
                }
            }
            Err(shared) => IqAnswer::of(&shared, payload),
        }
    }

    /// The `result` to `request`, its addresses copied.
    pub fn of(request: &Element, payload: Option<Element>) -> IqAnswer {
        IqAnswer {
            id: request.attr("id").map(str::to_string),
            to: request.attr("from").map(str::to_string),
            from: request.attr("to").map(str::to_string),
            payload,
        }
    }

    /// A top-level attribute without a namespace.
    pub fn attr(&self, name: &str) -> Option<&str> {
        match name {
            "id" => self.id.as_deref(),
            "to" => self.to.as_deref(),
            "from" => self.from.as_deref(),
            "type" => Some("result"),
            _ => None,
        }
    }

    pub fn has_child(&self, name: &str, namespace: &str) -> bool {
        self.payload
            .as_ref()
            .is_some_and(|payload| payload.name() == name && payload.has_ns(namespace))
    }

    pub fn set_from(&mut self, from: &str) {
        self.from = Some(from.to_string());
    }

    /// The answer as a tree.
    pub fn to_element(&self) -> Element {
        self.clone().into_element()
    }

    pub fn into_element(self) -> Element {
        let mut element = Element::bare("iq", ns::CLIENT);
        for (name, value) in [("id", self.id), ("to", self.to), ("from", self.from)] {
            if let Some(value) = value {
                element.set(name, value);
            }
        }
        element.set("type", "result");
        if let Some(payload) = self.payload {
            element.append_child(payload);
        }
        element
    }

    /// Serialises the answer at the end of `out`, as [`writer::append_to`] writes its
    /// tree: the same bytes (attributes in the tree's order), and nothing at all when a
    /// value holds a character XML cannot carry.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match self.write_fast(out) {
            Ok(()) => {}
            Err(Unwritable::Character) => {
                tracing::error!("an IQ result with a character XML cannot carry was not sent");
                out.truncate(start);
            }
            // A payload only minidom's writer can write (prefixed attributes).
            Err(Unwritable::NamespacedAttribute) => {
                out.truncate(start);
                writer::append_to(&self.to_element(), out);
            }
        }
    }

    fn write_fast(&self, out: &mut Vec<u8>) -> Result<(), Unwritable> {
        out.extend_from_slice(b"<iq xmlns='");
        out.extend_from_slice(ns::CLIENT.as_bytes());
        out.push(b'\'');
        // The tree keeps its attributes sorted by name, and is written in that order.
        for (name, value) in [("from", &self.from), ("id", &self.id), ("to", &self.to)] {
            if let Some(value) = value {
                out.push(b' ');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"='");
                push_escaped(value, Context::Attribute, out)?;
                out.push(b'\'');
            }
        }
        out.extend_from_slice(b" type='result'");
        match &self.payload {
            None => out.extend_from_slice(b"/>"),
            Some(payload) => {
                out.push(b'>');
                writer::append_child(payload, ns::CLIENT, out)?;
                out.extend_from_slice(b"</iq>");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::iq_result;
    use crate::xml::prerendered::Xml;

    fn request(xml: &str) -> Element {
        xml.parse().expect("request")
    }

    /// The tree swaps the request's addresses and carries the payload; the text is what
    /// the tree writer makes of it, and the answer is the same whether the request's
    /// addresses were moved out of it or copied.
    #[test]
    fn written_as_the_tree_would_be() {
        let prerendered = {
            let mut xml = Xml::default();
            xml.open("services", Some("urn:xmpp:extdisco:2"));
            xml.attr("type", "turn").expect("attr");
            xml.close_empty();
            xml.into_element()
        };
        let cases: Vec<(&str, Option<Element>)> = vec![
            (
                "<iq xmlns='jabber:client' type='get' id='p1' from='a@b/c' to='b'><ping xmlns='urn:xmpp:ping'/></iq>",
                None,
            ),
            // Values that need escaping; no `to` (a request about one's own account).
            (
                "<iq xmlns='jabber:client' type='get' id='&apos;&lt;&amp;\"' from='a@b/c'><q xmlns='x'/></iq>",
                Some(Element::builder("query", "jabber:iq:version").build()),
            ),
            // No id, no from.
            ("<iq xmlns='jabber:client' type='get' to='b'><q xmlns='x'/></iq>", None),
            (
                "<iq xmlns='jabber:client' type='get' id='e1' from='a@b/c' to='b'><services xmlns='urn:xmpp:extdisco:2'/></iq>",
                Some(prerendered),
            ),
            // A payload in the stanza's own namespace, and one with text.
            (
                "<iq xmlns='jabber:client' type='set' id='s' from='a@b/c'><q xmlns='x'/></iq>",
                Some(
                    Element::builder("x", ns::CLIENT)
                        .append(Element::builder("y", "urn:y").append("t<&>".to_string()).build())
                        .build(),
                ),
            ),
        ];
        for (xml, payload) in cases {
            let asked = request(xml);
            let tree = iq_result(&asked, payload.clone());
            assert_eq!(tree.name(), "iq");
            assert!(tree.has_ns(ns::CLIENT));
            assert_eq!(tree.attr("type"), Some("result"));
            assert_eq!(tree.attr("id"), asked.attr("id"), "{xml}");
            assert_eq!(tree.attr("to"), asked.attr("from"), "{xml}");
            assert_eq!(tree.attr("from"), asked.attr("to"), "{xml}");
            assert_eq!(
                tree.children().cloned().collect::<Vec<_>>(),
                payload.iter().cloned().collect::<Vec<_>>()
            );
            let expected = writer::to_bytes(&tree);
            let owned = IqAnswer::result(Arc::new(request(xml)), payload.clone());
            let shared_request = Arc::new(request(xml));
            let shared = IqAnswer::result(shared_request.clone(), payload);
            for answer in [owned, shared] {
                let mut written = b"before".to_vec();
                answer.append_to(&mut written);
                assert_eq!(
                    String::from_utf8_lossy(&written[6..]),
                    String::from_utf8_lossy(&expected),
                    "{xml}"
                );
                assert_eq!(answer.to_element(), tree, "{xml}");
                for name in ["id", "to", "from", "type", "xml:lang"] {
                    assert_eq!(answer.attr(name), tree.attr(name), "{name} of {xml}");
                }
            }
        }
    }

    #[test]
    fn a_payload_with_a_prefixed_attribute_is_written_by_minidom() {
        let mut payload = Element::builder("query", "urn:q").build();
        payload.attrs_mut().insert(
            Namespace::from("urn:other"),
            "a".try_into().expect("name"),
            "v".into(),
        );
        let xml = "<iq xmlns='jabber:client' type='get' id='1' from='a@b/c'><q xmlns='x'/></iq>";
        let answer = IqAnswer::result(Arc::new(request(xml)), Some(payload.clone()));
        let mut written = Vec::new();
        answer.append_to(&mut written);
        let reparsed: Element = String::from_utf8(written)
            .expect("utf-8")
            .parse()
            .expect("well formed");
        assert_eq!(reparsed, iq_result(&request(xml), Some(payload)));
    }

    #[test]
    fn an_unwritable_character_writes_nothing() {
        let xml = "<iq xmlns='jabber:client' type='get' id='1' from='a@b/c'><q xmlns='x'/></iq>";
        let mut answer = IqAnswer::result(Arc::new(request(xml)), None);
        answer.set_from("bad\u{1}from");
        let mut written = b"kept".to_vec();
        answer.append_to(&mut written);
        assert_eq!(written, b"kept");
    }

    #[test]
    fn set_from_and_has_child() {
        let xml =
            "<iq xmlns='jabber:client' type='get' id='1' from='a@b/c' to='b'><q xmlns='x'/></iq>";
        let payload = Element::builder("query", "urn:q").build();
        let mut answer = IqAnswer::result(Arc::new(request(xml)), Some(payload));
        assert!(answer.has_child("query", "urn:q"));
        assert!(!answer.has_child("query", "urn:other"));
        assert!(!answer.has_child("q", "urn:q"));
        answer.set_from("other");
        assert_eq!(answer.attr("from"), Some("other"));
        assert_eq!(answer.to_element().attr("from"), Some("other"));
    }
}
