//! The framer's fast path for plain stanzas reads exactly what rxml reads: for any
//! stream (well-formed or not, plain or not, whole or in chunks), a framer with the fast
//! path produces the same frames and the same error as one that reads everything with
//! rxml (`Framer::rxml_only`). So does one that keeps plain messages as text, once each
//! is turned into a tree, and each is written so that it reads back as that tree.

use proptest::prelude::*;
use tern::xml::framer::{self, Frame, Framer, FramerLimits};
use tern::xml::Element;

/// Stream headers: the usual one, double quotes, none or an odd default namespace, an
/// unprefixed stream element, a default namespace with an entity (fast path off), a
/// stream that ends in its header.
const HEADERS: &[&str] = &[
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>",
    "<stream:stream\n  xmlns:stream=\"http://etherx.jabber.org/streams\" xmlns = \"jabber:client\" to=\"localhost\" version=\"1.0\">",
    "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    "<stream xmlns='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    "<stream:stream xmlns='urn:a&amp;b' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    "<stream:stream xmlns:x='urn:x' xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams'>",
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'/>",
];

/// What one framer produced, comparable across the two.
#[derive(Debug, PartialEq)]
enum Out {
    /// The header as reported (`StreamHeader` has no `PartialEq`).
    Open(String),
    Stanza(Element),
    Close,
    Error(String),
}

fn run(mut framer: Framer, header: &str, body: &[u8], chunk: usize) -> Vec<Out> {
    let mut out = Vec::new();
    let mut feed = header.as_bytes().to_vec();
    feed.extend_from_slice(body);
    let step = if chunk == 0 { feed.len().max(1) } else { chunk };
    let mut chunks = feed.chunks(step).peekable();
    loop {
        let at_eof = chunks.peek().is_none();
        if let Some(bytes) = chunks.next() {
            framer.feed(bytes);
        }
        loop {
            match framer.next_frame(at_eof) {
                Ok(Some(Frame::Open(header))) => out.push(Out::Open(format!("{header:?}"))),
                Ok(Some(Frame::Stanza(stanza))) => out.push(Out::Stanza(stanza)),
                Ok(Some(Frame::Message(message))) => {
                    let tree = message.to_element();
                    let mut written = Vec::new();
                    message.append_to(&mut written);
                    if framer::read_alone_with_rxml(&written, FramerLimits::default()).as_ref()
                        != Some(&tree)
                    {
                        out.push(Out::Error(format!(
                            "written as {:?}, which does not read back as {tree:?}",
                            String::from_utf8_lossy(&written)
                        )));
                    }
                    out.push(Out::Stanza(tree));
                }
                Ok(Some(Frame::Close)) => out.push(Out::Close),
                Ok(None) => break,
                Err(err) => {
                    out.push(Out::Error(err.to_string()));
                    return out;
                }
            }
        }
        if at_eof {
            return out;
        }
    }
}

/// Pieces of tag and text content: plain ones the fast path takes, and everything it
/// must leave to rxml (or that rxml rejects).
fn text_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-zA-Z0-9 .,!?-]{1,12}",
        1 => prop::sample::select(vec![
            "&amp;", "&lt;", "&gt;", "&apos;", "&quot;", "&#65;", "&#x1F600;", "&bogus;",
            "&amp", "&", ">", "]]>", "]]", "]", "\t", "\n", "\r", "\r\n", " ", "é", "€",
            "😀", "\u{FFFE}", "\u{FFFF}", "\u{1}", "\u{7f}", "\u{85}", "<", "'", "\"",
        ]).prop_map(str::to_string),
    ]
}

fn value() -> impl Strategy<Value = String> {
    proptest::collection::vec(text_piece(), 0..4).prop_map(|pieces| pieces.concat())
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["message", "body", "iq", "query", "a", "b", "presence", "item"])
            .prop_map(str::to_string),
        2 => "[a-zA-Z_][a-zA-Z0-9_.-]{0,6}",
        1 => prop::sample::select(vec![
            "x:y", "stream:features", "1a", "-a", "é", "a\u{e9}", "a:", ":a", "",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ]).prop_map(str::to_string),
    ]
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["to", "id", "type", "from", "xmlns", "xml:lang", "a", "b"])
            .prop_map(str::to_string),
        1 => prop::sample::select(vec!["xmlns:x", "x:a", "xml:space", "1", "xmlnsx"])
            .prop_map(str::to_string),
    ]
}

fn namespace_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "jabber:client",
        "urn:xmpp:ping",
        "",
        "urn:a&amp;b",
        "http://www.w3.org/XML/1998/namespace",
        "http://www.w3.org/2000/xmlns/",
        "urn:x y",
    ])
    .prop_map(str::to_string)
}

fn space() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => Just(" "),
        2 => Just("  "),
        1 => Just(""),
        1 => Just("\n"),
        1 => Just("\t"),
        1 => Just("\r\n"),
    ]
    .prop_map(str::to_string)
}

/// True now and then: a mistake.
fn rarely() -> impl Strategy<Value = bool> {
    prop::bool::weighted(0.04)
}

fn attribute() -> impl Strategy<Value = String> {
    (
        space(),
        attr_name(),
        space(),
        prop_oneof![20 => Just("'"), 10 => Just("\""), 1 => Just("")],
        value(),
        namespace_value(),
        rarely(),
    )
        .prop_map(|(lead, name, around, quote, value, namespace, unclosed)| {
            let value = if name == "xmlns" || name == "xmlns:x" {
                namespace
            } else {
                value
            };
            let close = if unclosed { "" } else { quote };
            format!("{lead}{name}{around}={around}{quote}{value}{close}")
        })
}

/// An element, as text: usually well-formed, with end-tag mistakes now and then.
fn element() -> impl Strategy<Value = String> {
    let leaf = (
        name(),
        proptest::collection::vec(attribute(), 0..4),
        space(),
        any::<u8>(),
    )
        .prop_map(|(name, attrs, space, shape)| match shape % 8 {
            0 => format!("<{name}{}{space}/ >", attrs.concat()),
            1 => format!("<{name}{}{space}></{name}{space}>", attrs.concat()),
            _ => format!("<{name}{}{space}/>", attrs.concat()),
        });
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            name(),
            proptest::collection::vec(attribute(), 0..3),
            proptest::collection::vec(
                prop_oneof![
                    12 => inner,
                    8 => text_piece(),
                    1 => prop::sample::select(vec![
                        "<![CDATA[x<y]]>", "<!-- c -->", "<?pi x?>", "</x>", "<", "<a",
                    ]).prop_map(str::to_string),
                ],
                0..5,
            ),
            prop_oneof![
                30 => Just(""),
                1 => prop::sample::select(vec![" ", "\n", "x", "a:"]),
            ],
        )
            .prop_map(|(name, attrs, children, end_mistake)| {
                let end = if end_mistake.is_empty() || end_mistake.trim().is_empty() {
                    format!("{name}{end_mistake}")
                } else {
                    format!("{end_mistake}{name}")
                };
                format!("<{name}{}>{}</{end}>", attrs.concat(), children.concat())
            })
    })
}

/// A stream body: stanzas with whitespace between them, now and then cut short, ended
/// with the stream's close or not, now and then with a byte changed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((space(), element()), 1..5),
        prop::sample::select(vec![
            "",
            "</stream:stream>",
            "</stream>",
            " ",
            "<message>",
            "</stream:stream >",
            "</stream:stream> ",
            "</stream:stream><message/>",
            "</stream:stream>x",
            "</stream:streamx>",
            "</x:stream>",
        ]),
        prop::option::weighted(0.1, any::<(prop::sample::Index, u8)>()),
        prop::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(stanzas, end, change, cut)| {
            let mut body: Vec<u8> = stanzas
                .into_iter()
                .flat_map(|(space, stanza)| [space, stanza])
                .collect::<String>()
                .into_bytes();
            body.extend_from_slice(end.as_bytes());
            if let Some((at, byte)) = change {
                let at = at.index(body.len());
                body[at] = byte;
            }
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len() + 1));
            }
            body
        })
}

fn limits() -> impl Strategy<Value = FramerLimits> {
    prop_oneof![
        3 => Just(FramerLimits::default()),
        // Room for a usual header's values, but few attributes.
        1 => (0usize..5).prop_map(|max_attributes| FramerLimits {
            max_attributes,
            max_attribute_bytes: 64,
            ..FramerLimits::default()
        }),
        1 => (8usize..400, 1usize..6, 0usize..4, 0usize..24).prop_map(
            |(max_stanza_bytes, max_depth, max_attributes, max_attribute_bytes)| FramerLimits {
                max_stanza_bytes,
                max_depth,
                max_attributes,
                max_attribute_bytes,
            }
        ),
    ]
}

/// Stream headers built from parts: XML declarations, names and attributes that the
/// fast path takes and ones it must leave to rxml (or that rxml rejects).
fn header() -> impl Strategy<Value = String> {
    let declaration = prop_oneof![
        4 => Just(""),
        4 => Just("<?xml version='1.0'?>"),
        2 => Just("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        1 => prop::sample::select(vec![
            "<?xml version='1.0' encoding='utf-8' ?>",
            "<?xml version='1.0' encoding='Utf-8'?>",
            "<?xml version='1.0' encoding='ISO-8859-1'?>",
            "<?xml version='1.1'?>",
            "<?xml version='1.0' standalone='yes'?>",
            "<?xml  version = '1.0'?>",
            " <?xml version='1.0'?>",
            "<?xml version='1.0'?><?xml version='1.0'?>",
            "<!-- c -->",
        ]),
    ];
    let after = prop::sample::select(vec!["", "", "\n", " ", "\r\n"]);
    let name = prop_oneof![
        8 => Just("stream:stream"),
        1 => prop::sample::select(vec!["stream", "x:stream", "stream:features", "xml:stream", "xmlns:stream", "stream:"]),
    ];
    let attribute = prop_oneof![
        8 => prop::sample::select(vec![
            "xmlns='jabber:client'",
            "xmlns:stream='http://etherx.jabber.org/streams'",
            "to='localhost'",
            "version='1.0'",
            "xml:lang='en'",
            "id='abc'",
            "from=\"u@localhost\"",
            "xmlns:x='urn:x'",
        ]),
        1 => prop::sample::select(vec![
            "xmlns:xml='http://www.w3.org/XML/1998/namespace'",
            "xmlns:xml='urn:x'",
            "xmlns:xmlns='urn:x'",
            "xmlns:stream=''",
            "xmlns=''",
            "xmlns='urn:a&amp;b'",
            "to='a&amp;b'",
            "to='a\tb'",
            "xml:space='x'",
            "x:to='1'",
            "to='1' to='2'",
            "xmlns='http://www.w3.org/2000/xmlns/'",
            "xmlns:x='urn:x' xmlns:x='urn:y'",
            "xmlns='a' xmlns='b'",
            "to = 'spaced'",
            "to='unclosed",
            "to='&#65;'",
            "to='aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'",
        ]),
    ];
    let spacing =
        prop_oneof![12 => Just(" "), 1 => prop::sample::select(vec!["", "\n  ", "\t", "\r\n"])];
    let end = prop_oneof![12 => Just(">"), 1 => prop::sample::select(vec!["/>", " >", "\n>", ""])];
    (
        declaration,
        after,
        name,
        proptest::collection::vec((spacing, attribute), 0..7),
        end,
    )
        .prop_map(|(declaration, after, name, attributes, end)| {
            let attributes: String = attributes
                .into_iter()
                .map(|(spacing, attribute)| format!("{spacing}{attribute}"))
                .collect();
            format!("{declaration}{after}<{name}{attributes}{end}")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2048)
    ))]

    #[test]
    fn the_fast_path_reads_what_rxml_reads(
        header in prop_oneof![
            1 => prop::sample::select(HEADERS).prop_map(str::to_string),
            1 => header(),
        ],
        body in body(),
        chunk in prop_oneof![3 => Just(0usize), 1 => 1usize..40],
        limits in limits(),
    ) {
        let reference = run(Framer::rxml_only(limits), &header, &body, chunk);
        let fast = run(Framer::new(limits), &header, &body, chunk);
        prop_assert_eq!(&fast, &reference, "header {:?} body {:?}", header, String::from_utf8_lossy(&body));
        // Plain messages kept as text: the same trees, and written so as to read back.
        let mut framer = Framer::new(limits);
        framer.keep_messages_as_text();
        let text = run(framer, &header, &body, chunk);
        prop_assert_eq!(text, reference, "as text: header {:?} body {:?}", header, String::from_utf8_lossy(&body));
    }
}
