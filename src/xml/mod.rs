//! XML for XMPP: the stream framer (bytes to stanzas), serialisation, namespaces and the
//! small helpers every module needs to read and build stanzas.

mod fast_path;
pub mod framer;
pub mod ns;
pub mod writer;

use minidom::rxml::{Namespace, NcName};
pub use minidom::Element;

/// Convenience accessors on [`Element`] that minidom leaves verbose.
pub trait ElementExt {
    /// Sets (or replaces) an attribute without a namespace. Invalid names are ignored:
    /// every caller passes a constant.
    fn set(&mut self, name: &str, value: impl Into<String>);
    /// Removes an attribute without a namespace, if present.
    fn remove_attr(&mut self, name: &str);
    /// Builder-style [`ElementExt::set`].
    fn with(self, name: &str, value: impl Into<String>) -> Self;
    /// Builder-style append of a child element.
    fn with_child(self, child: Element) -> Self;
    /// Builder-style append of text.
    fn with_text(self, text: impl Into<String>) -> Self;
    /// The `xml:lang` attribute, if any.
    fn lang(&self) -> Option<&str>;
    /// Sets `xml:lang`.
    fn set_lang(&mut self, lang: &str);
    /// The first child element, whatever its name.
    fn first_child(&self) -> Option<&Element>;
}

impl ElementExt for Element {
    fn set(&mut self, name: &str, value: impl Into<String>) {
        if let Ok(name) = NcName::try_from(name) {
            self.attrs_mut().insert(Namespace::NONE, name, value.into());
        }
    }

    fn remove_attr(&mut self, name: &str) {
        if let Ok(name) = NcName::try_from(name) {
            self.attrs_mut().remove(&Namespace::NONE, &name);
        }
    }

    fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    fn with_child(mut self, child: Element) -> Self {
        self.append_child(child);
        self
    }

    fn with_text(mut self, text: impl Into<String>) -> Self {
        self.append_text(text.into());
        self
    }

    fn lang(&self) -> Option<&str> {
        self.attr_ns(ns::XML, "lang")
    }

    fn set_lang(&mut self, lang: &str) {
        if let Ok(name) = NcName::try_from("lang") {
            self.attrs_mut()
                .insert(Namespace::XML, name, lang.to_string());
        }
    }

    fn first_child(&self) -> Option<&Element> {
        self.children().next()
    }
}

/// Shorthand for an empty element in a namespace.
pub fn element(name: &str, namespace: &str) -> Element {
    Element::bare(name, namespace)
}
