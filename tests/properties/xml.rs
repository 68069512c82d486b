//! The writer and the framer agree: any element tree, written with
//! `tern::xml::writer::to_bytes` and fed to the framer after a stream header in chunks
//! of any size, comes back as the same tree.

use proptest::prelude::*;
use tern::xml::framer::{Frame, Framer, FramerLimits};
use tern::xml::writer;
use tern::xml::{Element, ElementExt};

/// A tree independent of minidom, so the comparison does not rely on the code under
/// test: adjacent text is merged and empty text dropped, as XML cannot tell them apart.
#[derive(Clone, Debug, PartialEq)]
struct Tree {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Element(Tree),
}

const NAMESPACES: &[&str] = &[
    "jabber:client",
    "urn:xmpp:ping",
    "http://jabber.org/protocol/disco#info",
    "urn:example:a'b\"c&d<e>",
];

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_.-]{0,7}"
}

/// Any character XML 1.0 allows, including the ones that need escaping or that
/// attribute-value normalisation would turn into spaces if written raw.
fn xml_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range(' ', '~'),
            1 => prop::sample::select(vec!['\t', '\n', '\r', '&', '<', '>', '\'', '"', ']']),
            1 => proptest::char::range('\u{a0}', '\u{d7ff}'),
            1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
        ],
        0..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn attrs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map(
        "[a-z][a-z0-9]{0,5}".prop_filter("not xmlns", |n| !n.starts_with("xml")),
        xml_text(),
        0..4,
    )
    .prop_map(|map| map.into_iter().collect())
}

fn leaf(ns: Option<&'static str>) -> impl Strategy<Value = Tree> {
    (name(), prop::sample::select(NAMESPACES), attrs()).prop_map(move |(name, n, attrs)| Tree {
        name,
        ns: ns.unwrap_or(n).to_string(),
        attrs,
        children: Vec::new(),
    })
}

fn tree() -> impl Strategy<Value = Tree> {
    leaf(None).prop_recursive(4, 32, 5, |inner| {
        (
            leaf(None),
            proptest::collection::vec(
                prop_oneof![
                    xml_text().prop_map(Node::Text),
                    inner.prop_map(Node::Element)
                ],
                0..5,
            ),
        )
            .prop_map(|(mut tree, children)| {
                tree.children = children;
                tree
            })
    })
}

fn build(tree: &Tree) -> Element {
    let mut el = Element::bare(tree.name.as_str(), tree.ns.as_str());
    for (k, v) in &tree.attrs {
        el.set(k, v.clone());
    }
    for child in &tree.children {
        match child {
            Node::Text(t) => el.append_text(t.clone()),
            Node::Element(c) => {
                el.append_child(build(c));
            }
        }
    }
    el
}

fn read_back(el: &Element) -> Tree {
    let mut attrs: Vec<(String, String)> = el
        .attrs()
        .iter()
        .map(|((_, k), v)| (k.to_string(), v.to_string()))
        .collect();
    attrs.sort();
    let children = el
        .nodes()
        .map(|node| match node {
            minidom::Node::Text(t) => Node::Text(t.clone()),
            minidom::Node::Element(e) => Node::Element(read_back(e)),
        })
        .collect();
    normalize(Tree {
        name: el.name().to_string(),
        ns: el.ns(),
        attrs,
        children,
    })
}

fn normalize(mut tree: Tree) -> Tree {
    tree.attrs.sort();
    let mut out: Vec<Node> = Vec::new();
    for child in tree.children {
        match (out.last_mut(), child) {
            (_, Node::Text(t)) if t.is_empty() => {}
            (Some(Node::Text(prev)), Node::Text(t)) => prev.push_str(&t),
            (_, Node::Element(e)) => out.push(Node::Element(normalize(e))),
            (_, text) => out.push(text),
        }
    }
    tree.children = out;
    tree
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

proptest! {
    #[test]
    fn written_trees_frame_back_unchanged(tree in tree(), chunk in 1usize..64) {
        let bytes = writer::to_bytes(&build(&tree));
        prop_assert!(!bytes.is_empty(), "the writer refused a valid tree");
        let mut framer = Framer::new(FramerLimits {
            max_stanza_bytes: 1 << 20,
            max_depth: 64,
            ..FramerLimits::default()
        });
        let mut input = HEADER.as_bytes().to_vec();
        input.extend_from_slice(&bytes);
        let mut frames = Vec::new();
        for piece in input.chunks(chunk) {
            framer.feed(piece);
            loop {
                match framer.next_frame(false) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(err) => {
                        return Err(TestCaseError::fail(format!(
                            "{err} on {}",
                            String::from_utf8_lossy(&bytes)
                        )))
                    }
                }
            }
        }
        prop_assert_eq!(frames.len(), 2);
        let Some(Frame::Stanza(back)) = frames.pop() else {
            return Err(TestCaseError::fail("no stanza"));
        };
        prop_assert_eq!(read_back(&back), normalize(tree));
    }
}
