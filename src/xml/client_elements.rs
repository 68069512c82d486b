//! New elements in the client namespace (`message`, `body`, ...) that share one copy of
//! the namespace.
//!
//! minidom keeps an element's namespace in an `Arc<String>`, and `Element::bare` makes a
//! new one each time: two allocations for the element and two frees when it is dropped,
//! for `jabber:client` in almost every element a client sends. A clone of a prototype
//! only counts one more reference to the prototype's namespace. Per relayed message
//! (`<message>` with a `<body>`) that is four allocations and four frees fewer.

use std::sync::LazyLock;

use super::{ns, Element};

/// The `jabber:client` names common enough to keep a prototype of: the stanzas, and the
/// children RFC 6120 and RFC 6121 put in that namespace.
const NAMES: [&str; 10] = [
    "message", "body", "presence", "iq", "thread", "subject", "show", "status", "priority", "error",
];

static PROTOTYPES: LazyLock<[Element; NAMES.len()]> =
    LazyLock::new(|| NAMES.map(|name| Element::bare(name, ns::CLIENT)));

/// `Element::bare(name, namespace)`, sharing the namespace when it is `jabber:client` and
/// `name` one of [`NAMES`].
pub fn bare(name: &str, namespace: &str) -> Element {
    if namespace == ns::CLIENT {
        if let Some(prototype) = PROTOTYPES.iter().find(|p| p.name() == name) {
            return prototype.clone();
        }
    }
    Element::bare(name, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::ElementExt;

    #[test]
    fn a_shared_element_equals_a_bare_one() {
        for name in NAMES {
            let shared = bare(name, ns::CLIENT);
            assert_eq!(shared, Element::bare(name, ns::CLIENT));
            assert_eq!(shared.name(), name);
            assert!(shared.has_ns(ns::CLIENT));
            assert_eq!(shared.attrs().iter().count(), 0);
            assert_eq!(shared.nodes().count(), 0);
        }
    }

    #[test]
    fn a_changed_clone_leaves_the_prototype_alone() {
        let mut first = bare("message", ns::CLIENT);
        first.set("to", "a@example.org");
        first.append_child(Element::bare("body", ns::CLIENT));
        let second = bare("message", ns::CLIENT);
        assert_eq!(second.attr("to"), None);
        assert_eq!(second.nodes().count(), 0);
    }

    #[test]
    fn other_names_and_namespaces_are_built_as_asked() {
        let other_name = bare("active", ns::CLIENT);
        assert_eq!(other_name, Element::bare("active", ns::CLIENT));
        let other_ns = bare("message", "jabber:server");
        assert!(other_ns.has_ns("jabber:server"));
        assert_eq!(other_ns.name(), "message");
    }
}
