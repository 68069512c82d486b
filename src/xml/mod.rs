//! XML for XMPP: the stream framer (bytes to stanzas), serialisation, namespaces and the
//! small helpers every module needs to read and build stanzas.

mod client_elements;
mod fast_path;
pub mod framer;
pub mod iq_answer;
pub mod lazy_stanza;
pub mod ns;
pub mod prerendered;
pub mod raw_message;
pub mod writer;

pub use lazy_stanza::LazyStanza;
use minidom::rxml::{Namespace, NcName};
pub use minidom::Element;

/// An attribute name as minidom keys it. The names nearly every stanza carries are made
/// once: `NcName::try_from` checks its argument each time, about 130 instructions, four
/// times per relayed message.
pub(crate) fn attribute_name(name: &str) -> Option<NcName> {
    static COMMON: std::sync::LazyLock<Vec<NcName>> = std::sync::LazyLock::new(|| {
        ["to", "from", "id", "type", "lang"]
            .into_iter()
            .filter_map(|name| NcName::try_from(name).ok())
            .collect()
    });
    match COMMON.iter().find(|common| common.as_str() == name) {
        Some(common) => Some(common.clone()),
        None => NcName::try_from(name).ok(),
    }
}

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
        if let Some(name) = attribute_name(name) {
            self.attrs_mut().insert(Namespace::NONE, name, value.into());
        }
    }

    fn remove_attr(&mut self, name: &str) {
        if let Some(name) = attribute_name(name) {
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
        if let Some(name) = attribute_name("lang") {
            self.attrs_mut()
                .insert(Namespace::XML, name, lang.to_string());
        }
    }

    fn first_child(&self) -> Option<&Element> {
        self.children().next()
    }
}

/// A table of the bytes a byte-at-a-time scan of text must stop at: the C0 controls (all
/// of them, or all but tab and line feed) and the bytes of `also`. One lookup per byte
/// instead of a `match` on each.
pub(crate) const fn stop_table(also: &[u8], tab_and_newline_pass: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = !(tab_and_newline_pass && (byte == 0x09 || byte == 0x0A));
        byte += 1;
    }
    let mut i = 0;
    while i < also.len() {
        table[also[i] as usize] = true;
        i += 1;
    }
    table
}

/// Shorthand for an empty element in a namespace.
pub fn element(name: &str, namespace: &str) -> Element {
    Element::bare(name, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_common_or_not_come_out_as_written_and_bad_ones_do_not() {
        for name in ["to", "from", "id", "type", "lang", "node", "xmlns2", "t"] {
            assert_eq!(
                attribute_name(name).map(|n| n.as_str().to_string()),
                Some(name.to_string())
            );
        }
        for bad in ["", "1to", "a b", "to:x", "tö\u{0}"] {
            assert!(attribute_name(bad).is_none(), "{bad:?}");
        }
        let mut message = element("message", ns::CLIENT)
            .with("to", "a@b")
            .with("id", "1");
        message.set("to", "c@d");
        message.remove_attr("id");
        assert_eq!(message.attr("to"), Some("c@d"));
        assert_eq!(message.attr("id"), None);
    }
}
