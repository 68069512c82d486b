//! A stanza on its way through the server: a tree, a plain message still as the text
//! its sender wrote ([`RawMessage`]), or the server's result to an IQ request
//! ([`IqAnswer`]), whose tree is built only when someone asks for it.
//!
//! Reading the top-level attributes and asking whether a child is there never builds the
//! tree; [`LazyStanza::element`] and [`LazyStanza::tree`] do, once. A message nobody
//! looks into is written to its recipient from its text.

use std::sync::Arc;

use super::iq_answer::IqAnswer;
use super::raw_message::{FromStamp, RawMessage};
use super::{writer, Element, ElementExt};

#[derive(Clone, Debug)]
pub struct LazyStanza(Form);

#[derive(Clone, Debug)]
enum Form {
    Tree(Element),
    Text(Box<RawMessage>),
    Answer(Box<IqAnswer>),
}

impl From<Element> for LazyStanza {
    fn from(element: Element) -> Self {
        LazyStanza(Form::Tree(element))
    }
}

impl From<IqAnswer> for LazyStanza {
    fn from(answer: IqAnswer) -> Self {
        LazyStanza(Form::Answer(Box::new(answer)))
    }
}

impl From<Box<RawMessage>> for LazyStanza {
    fn from(message: Box<RawMessage>) -> Self {
        LazyStanza(Form::Text(message))
    }
}

impl LazyStanza {
    pub fn name(&self) -> &str {
        match &self.0 {
            Form::Tree(element) => element.name(),
            Form::Text(_) => "message",
            Form::Answer(_) => "iq",
        }
    }

    /// A top-level attribute without a namespace.
    pub fn attr<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        match &self.0 {
            Form::Tree(element) => element.attr(name),
            Form::Text(message) => message.attr(name),
            Form::Answer(answer) => answer.attr(name),
        }
    }

    /// Whether a child element `name` in `namespace` is directly under the stanza.
    pub fn has_child(&self, name: &str, namespace: &str) -> bool {
        match &self.0 {
            Form::Tree(element) => element.has_child(name, namespace),
            Form::Text(message) => message.has_child(name, namespace),
            Form::Answer(answer) => answer.has_child(name, namespace),
        }
    }

    /// Sets `from`, as the router stamps it, without building the tree.
    pub fn set_from(&mut self, from: &Arc<FromStamp>) {
        match &mut self.0 {
            Form::Tree(element) => element.set("from", from.jid()),
            Form::Text(message) => message.set_from(from),
            Form::Answer(answer) => answer.set_from(from.jid()),
        }
    }

    /// Whether the stanza is a client's message still as its text (no tree was asked for).
    pub fn is_text(&self) -> bool {
        matches!(self.0, Form::Text(_))
    }

    /// The stanza as a tree, built now if it was text.
    pub fn element(&mut self) -> &Element {
        self.tree()
    }

    /// The stanza as a tree to change; the text, if any, is dropped, so what is written
    /// is the changed tree.
    pub fn tree(&mut self) -> &mut Element {
        match &self.0 {
            Form::Tree(_) => {}
            Form::Text(message) => self.0 = Form::Tree(message.to_element()),
            Form::Answer(answer) => self.0 = Form::Tree(answer.to_element()),
        }
        match &mut self.0 {
            Form::Tree(element) => element,
            Form::Text(_) | Form::Answer(_) => {
                unreachable!("the text was just replaced by its tree")
            }
        }
    }

    pub fn into_element(self) -> Element {
        match self.0 {
            Form::Tree(element) => element,
            Form::Text(message) => message.to_element(),
            Form::Answer(answer) => answer.into_element(),
        }
    }

    /// Serialises the stanza at the end of `out` (see [`writer::append_to`]).
    pub fn append_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Form::Tree(element) => writer::append_to(element, out),
            Form::Text(message) => message.append_to(out),
            Form::Answer(answer) => answer.append_to(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::framer::{Frame, Framer, FramerLimits};
    use crate::xml::ns;

    /// A framer that has read a client's stream header and keeps messages as text.
    fn framer() -> Framer {
        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        );
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        framer.keep_messages_as_text();
        framer
    }

    fn next(framer: &mut Framer, input: &str) -> LazyStanza {
        framer.feed(input.as_bytes());
        match framer.next_frame(false) {
            Ok(Some(Frame::Message(message))) => LazyStanza::from(message),
            Ok(Some(Frame::Stanza(element))) => LazyStanza::from(element),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plain_message_stays_text_until_its_tree_is_asked_for() {
        let mut framer = framer();
        let input = "<message to='romeo@example.net' type='chat' id='m1'><body>hi</body>\
<private xmlns='urn:xmpp:carbons:2'/></message>";
        let mut stanza = next(&mut framer, input);
        assert!(stanza.is_text());
        assert_eq!(stanza.name(), "message");
        assert_eq!(stanza.attr("to"), Some("romeo@example.net"));
        assert_eq!(stanza.attr("type"), Some("chat"));
        stanza.set_from(&FromStamp::new("juliet@example.com/balcony"));
        assert_eq!(stanza.attr("from"), Some("juliet@example.com/balcony"));
        assert!(stanza.has_child("private", "urn:xmpp:carbons:2"));
        assert!(stanza.is_text(), "asking about children builds nothing");

        let mut written = Vec::new();
        stanza.append_to(&mut written);
        let as_text = String::from_utf8_lossy(&written).into_owned();
        assert_eq!(
            as_text,
            "<message from='juliet@example.com/balcony' xmlns='jabber:client' \
to='romeo@example.net' type='chat' id='m1'><body>hi</body>\
<private xmlns='urn:xmpp:carbons:2'/></message>"
        );

        // A change goes through the tree, and the tree is what is written after it.
        stanza.tree().remove_child("private", "urn:xmpp:carbons:2");
        assert!(!stanza.is_text());
        assert!(!stanza.has_child("private", "urn:xmpp:carbons:2"));
        assert_eq!(stanza.attr("from"), Some("juliet@example.com/balcony"));
        let mut rewritten = Vec::new();
        stanza.append_to(&mut rewritten);
        let rewritten = String::from_utf8_lossy(&rewritten).into_owned();
        assert!(!rewritten.contains("private"), "{rewritten}");
        assert!(rewritten.contains("<body>hi</body>"), "{rewritten}");
    }

    #[test]
    fn other_stanzas_and_messages_that_are_not_plain_come_as_trees() {
        let mut framer = framer();
        for input in [
            "<presence/>",
            "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<message from='juliet@example.com' to='a@b'/>",
            "<message to='a@b'><body>&#65;</body></message>",
        ] {
            let mut stanza = next(&mut framer, input);
            assert!(!stanza.is_text(), "{input}");
            assert!(stanza.element().attr("to").is_some() || stanza.name() != "message");
        }
        // Before it is asked, the framer keeps every stanza a tree.
        let mut plain = Framer::new(FramerLimits::default());
        plain.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>");
        assert!(matches!(plain.next_frame(false), Ok(Some(Frame::Open(_)))));
        assert!(matches!(
            plain.next_frame(false),
            Ok(Some(Frame::Stanza(_)))
        ));
        let message = LazyStanza::from(Element::bare("message", ns::CLIENT));
        assert!(!message.is_text());
    }
}
