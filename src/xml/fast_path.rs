//! The framer's fast path: the common stanza and stream header, read without rxml.
//!
//! Nearly every stanza a client sends is plain: unprefixed ASCII names, a few attributes,
//! text with the predefined entities. rxml reads such a stanza one byte at a time through
//! a general state machine (about 120 instructions per byte, 38 % of a relayed message's
//! server instructions); this reads it with a few scans. It takes a stanza only when the
//! whole stanza is in the buffer and nothing in it needs more than the plain cases, and
//! otherwise declines, leaving the same bytes to rxml: so it never rejects anything
//! itself, and whatever it accepts must come out exactly as rxml would have made it (the
//! framer's tests and the `framer_fast_path` fuzz target compare the two).
//!
//! Declined, among others: prefixed names (`xmlns:x`, `stream:`) other than `xml:lang`,
//! character references, CDATA sections, comments, carriage returns, tabs and newlines in
//! attribute values, a reserved `xmlns`, names longer than [`MAX_NAME`], anything over a
//! limit (rxml then reports the limit), and a stanza that is not complete yet.
//!
//! A stream header (each login reads three) is taken when it is one start tag, after at
//! most an XML declaration of version 1.0 in UTF-8, whose own prefix and the default
//! namespace are declared in it; rxml reads it again only if a stanza that is not plain
//! comes (see `Framer::wake`).

use memchr::memchr;
use minidom::rxml::{AttrMap, Namespace};

use super::framer::{FramerLimits, StreamHeader};
use super::Element;

/// Longest element or attribute name taken here; rxml's own limit is at least 128.
const MAX_NAME: usize = 64;

/// Letters, digits, `_`, `-`, `.`: the ASCII characters a name may go on with.
static NAME_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = (byte as u8).is_ascii_alphanumeric()
            || byte == b'_' as usize
            || byte == b'-' as usize
            || byte == b'.' as usize;
        byte += 1;
    }
    table
};

pub(super) const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";
pub(super) const XMLNS_NAMESPACE: &str = "http://www.w3.org/2000/xmlns/";

/// The stanza at the start of `input` (which starts with `<`) and the bytes it took, or
/// `None` when rxml must read it. `default_ns` is the default namespace the stream header
/// declared (empty when it declared none).
pub(super) fn parse_stanza(
    input: &[u8],
    default_ns: &str,
    limits: &FramerLimits,
) -> Option<(Element, usize)> {
    // A stanza over the limit is left to rxml, which reports it.
    let bytes = &input[..input.len().min(limits.max_stanza_bytes)];
    let mut reader = Reader { bytes, pos: 0 };
    // Open elements, the stanza first.
    let mut open: Vec<Element> = Vec::new();
    // The `xmlns` declarations in scope, with the depth of the element that made each
    // (minidom lends no element's namespace without a copy).
    let mut scopes: Vec<(usize, String)> = Vec::new();
    let mut namespace_bytes = 0usize;
    loop {
        // At a `<`.
        match reader.peek_at(1)? {
            b'/' => {
                reader.pos += 2;
                let name = reader.name()?;
                reader.skip_space()?;
                reader.expect(b'>')?;
                let element = open.pop()?;
                if element.name() != name {
                    return None;
                }
                if scopes.last().is_some_and(|(depth, _)| *depth > open.len()) {
                    scopes.pop();
                }
                match open.last_mut() {
                    Some(parent) => {
                        parent.append_child(element);
                    }
                    None => return Some((element, reader.pos)),
                }
            }
            b'!' | b'?' => return None,
            _ => {
                reader.pos += 1;
                if open.len() >= limits.max_depth {
                    return None;
                }
                let depth = open.len() + 1;
                let inherited = scopes.last().map_or(default_ns, |(_, ns)| ns.as_str());
                let (name, attrs, xmlns, empty) = reader.start_tag(limits)?;
                let namespace = xmlns.as_deref().unwrap_or(inherited);
                namespace_bytes += namespace.len();
                if namespace_bytes > limits.max_stanza_bytes {
                    return None;
                }
                let mut element = super::client_elements::bare(name, namespace);
                *element.attrs_mut() = attrs;
                if empty {
                    match open.last_mut() {
                        Some(parent) => {
                            parent.append_child(element);
                        }
                        None => return Some((element, reader.pos)),
                    }
                } else {
                    if let Some(namespace) = xmlns {
                        scopes.push((depth, namespace));
                    }
                    open.push(element);
                }
            }
        }
        // Text up to the next tag, inside the stanza.
        let text_end = reader.pos + memchr(b'<', &bytes[reader.pos..])?;
        let raw = &bytes[reader.pos..text_end];
        if !raw.is_empty() {
            let text = decode(raw, Context::Text)?;
            if let Some(top) = open.last_mut() {
                top.append_text(text);
            }
        }
        reader.pos = text_end;
    }
}

/// Name, attributes, `xmlns` value, empty (`/>`).
type StartTag<'a> = (&'a str, AttrMap, Option<String>, bool);

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn peek_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    pub(super) fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek_at(0)? == byte).then(|| self.pos += 1)
    }

    /// Skips XML whitespace other than carriage returns (rxml normalises those); says
    /// whether there was any.
    pub(super) fn skip_space(&mut self) -> Option<bool> {
        let start = self.pos;
        while matches!(self.peek_at(0)?, b' ' | b'\t' | b'\n') {
            self.pos += 1;
        }
        Some(self.pos > start)
    }

    /// An unprefixed ASCII name: a letter or `_`, then letters, digits, `_`, `-`, `.`.
    pub(super) fn name(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.name_bytes()?).ok()
    }

    /// [`Reader::name`] as bytes, which are ASCII: no UTF-8 check for a caller that
    /// only compares names.
    pub(super) fn name_bytes(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if !self.peek_at(0)?.is_ascii_alphabetic() && self.peek_at(0)? != b'_' {
            return None;
        }
        self.pos += 1;
        while NAME_CHARS[usize::from(self.peek_at(0)?)] {
            self.pos += 1;
        }
        // (A prefixed name stops at its `:`, which nothing after a name accepts.)
        if self.pos - start > MAX_NAME {
            return None;
        }
        Some(&self.bytes[start..self.pos])
    }

    /// After a start tag's name or attribute: `Some(Some(empty))` at the tag's end (`>`
    /// or `/>`, taken), `Some(None)` before another attribute (which needs a space
    /// before it), `None` for anything else.
    pub(super) fn tag_end(&mut self) -> Option<Option<bool>> {
        let spaced = self.skip_space()?;
        match self.peek_at(0)? {
            b'>' => {
                self.pos += 1;
                Some(Some(false))
            }
            b'/' => {
                self.pos += 1;
                self.expect(b'>')?;
                Some(Some(true))
            }
            _ if !spaced => None,
            _ => Some(None),
        }
    }

    /// `= 'value'` after an attribute's name (spaces allowed around `=`), decoded.
    fn attribute_value(&mut self) -> Option<String> {
        let span = self.attribute_span()?;
        decode(&self.bytes[span], Context::Attribute)
    }

    /// Where the value of `= 'value'` lies, as written (not decoded, not checked).
    pub(super) fn attribute_span(&mut self) -> Option<std::ops::Range<usize>> {
        self.skip_space()?;
        self.expect(b'=')?;
        self.skip_space()?;
        let quote = self.peek_at(0)?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        let end = start + memchr(quote, &self.bytes[start..])?;
        self.pos = end + 1;
        Some(start..end)
    }

    /// The rest of an XML declaration after `<?xml`: version 1.0, at most an encoding
    /// of UTF-8, nothing else.
    fn xml_declaration(&mut self) -> Option<()> {
        if !self.skip_space()? || self.name()? != "version" || self.attribute_value()? != "1.0" {
            return None;
        }
        let spaced = self.skip_space()?;
        if spaced && self.peek_at(0)? != b'?' {
            if self.name()? != "encoding"
                || !matches!(self.attribute_value()?.as_str(), "UTF-8" | "utf-8")
            {
                return None;
            }
            self.skip_space()?;
        }
        self.expect(b'?')?;
        self.expect(b'>')
    }

    /// A start tag after its `<`: its name, attributes, `xmlns` value and whether it was
    /// empty (`/>`).
    fn start_tag(&mut self, limits: &FramerLimits) -> Option<StartTag<'a>> {
        let name = self.name()?;
        let mut attrs = AttrMap::new();
        let mut xmlns: Option<String> = None;
        let empty = loop {
            if let Some(empty) = self.tag_end()? {
                break empty;
            }
            let xml_lang = self.bytes[self.pos..].starts_with(b"xml:lang");
            let attr_name = if xml_lang {
                self.pos += b"xml:lang".len();
                "lang"
            } else {
                self.name()?
            };
            let value = self.attribute_value()?;
            if value.len() > limits.max_attribute_bytes {
                return None;
            }
            if !xml_lang && attr_name == "xmlns" {
                if xmlns.is_some() || value == XML_NAMESPACE || value == XMLNS_NAMESPACE {
                    return None;
                }
                xmlns = Some(value);
                continue;
            }
            let namespace = if xml_lang {
                Namespace::XML
            } else {
                Namespace::NONE
            };
            let key = super::attribute_name(attr_name)?;
            if attrs.contains_key(&namespace, &key) {
                return None;
            }
            attrs.insert(namespace, key, value);
            if attrs.len() > limits.max_attributes {
                return None;
            }
        };
        Some((name, attrs, xmlns, empty))
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Context {
    Text,
    Attribute,
}

/// Text or an attribute value with its predefined entities replaced; `None` for anything
/// rxml would reject or change otherwise (normalised whitespace, character references).
fn decode(raw: &[u8], context: Context) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    walk(raw, context, Some(&mut out))?;
    Some(out)
}

/// An attribute value decoded, when `decode` takes it.
pub(super) fn decode_value(raw: &[u8]) -> Option<String> {
    decode(raw, Context::Attribute)
}

/// Whether `decode` would take `raw`, not counting its UTF-8, which is not checked here:
/// the caller checks the whole stanza's at once.
pub(super) fn check_markup(raw: &[u8], context: Context) -> Option<()> {
    walk(raw, context, None)
}

/// `decode`'s reading, shared with `check_markup` so that the two cannot disagree on what
/// they take. With `out`, `raw` must be UTF-8 and is decoded into `out`.
fn walk(raw: &[u8], context: Context, mut out: Option<&mut String>) -> Option<()> {
    let text = match out {
        Some(_) => std::str::from_utf8(raw).ok()?,
        None => "",
    };
    let stops = match context {
        Context::Text => &TEXT_STOPS,
        Context::Attribute => &ATTRIBUTE_STOPS,
    };
    let mut plain_from = 0;
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if !stops[usize::from(byte)] {
            i += 1;
            continue;
        }
        match byte {
            b'&' => {
                let (replacement, len) = entity(&raw[i..])?;
                if let Some(out) = out.as_deref_mut() {
                    out.push_str(text.get(plain_from..i)?);
                    out.push(replacement);
                }
                i += len;
                plain_from = i;
                continue;
            }
            b']' if !raw[i..].starts_with(b"]]>") => {}
            // U+FFFE and U+FFFF are not XML characters; other characters starting with
            // this byte are.
            0xEF if !raw[i..].starts_with(&[0xEF, 0xBF, 0xBE])
                && !raw[i..].starts_with(&[0xEF, 0xBF, 0xBF]) => {}
            // `<`, `]]>` in text, the C0 controls rxml rejects, and carriage returns,
            // tabs and newlines rxml would normalise.
            _ => return None,
        }
        i += 1;
    }
    if let Some(out) = out {
        out.push_str(text.get(plain_from..)?);
    }
    Some(())
}

/// Bytes `decode` must look at in text: `&`, `<`, `]` (of `]]>`), 0xEF (of U+FFFE and
/// U+FFFF) and the C0 controls other than tab and newline.
static TEXT_STOPS: [bool; 256] = super::stop_table(b"&<]\xEF", true);
/// In attribute values: `&`, `<`, 0xEF and every C0 control (rxml turns tabs and
/// newlines into spaces).
pub(super) static ATTRIBUTE_STOPS: [bool; 256] = super::stop_table(b"&<\xEF", false);

/// The predefined entity at the start of `raw` (which starts with `&`) and its length.
fn entity(raw: &[u8]) -> Option<(char, usize)> {
    const ENTITIES: [(&[u8], char); 5] = [
        (b"&lt;", '<'),
        (b"&gt;", '>'),
        (b"&amp;", '&'),
        (b"&apos;", '\''),
        (b"&quot;", '"'),
    ];
    ENTITIES
        .iter()
        .find(|(name, _)| raw.starts_with(name))
        .map(|(name, replacement)| (*replacement, name.len()))
}

/// A stream header read here: what rxml would have reported, the default namespace it
/// declares for the stanzas, and its length.
pub(super) struct PlainHeader {
    pub header: StreamHeader,
    pub stanza_namespace: String,
    /// The stream element's name as written (`stream:stream`).
    pub root_name: String,
    pub len: usize,
}

/// The stream header at the start of `input`, or `None` when rxml must read it.
/// `budget` is what the framer allows an unfinished header.
pub(super) fn parse_header(
    input: &[u8],
    limits: &FramerLimits,
    budget: usize,
) -> Option<PlainHeader> {
    let bytes = &input[..input.len().min(budget)];
    let mut reader = Reader { bytes, pos: 0 };
    if bytes.starts_with(b"<?xml") {
        reader.pos = b"<?xml".len();
        reader.xml_declaration()?;
        // (rxml takes whitespace before the start tag only after a declaration.)
        while matches!(reader.peek_at(0)?, b' ' | b'\t' | b'\n' | b'\r') {
            reader.pos += 1;
        }
    }
    reader.expect(b'<')?;
    let name_start = reader.pos;
    let first = reader.name()?;
    let (prefix, local) = if reader.peek_at(0)? == b':' {
        reader.pos += 1;
        (Some(first), reader.name()?)
    } else {
        (None, first)
    };
    let root_name = std::str::from_utf8(&bytes[name_start..reader.pos]).ok()?;
    // rxml's longest token, as the framer sets it: values longer than the smaller limit
    // are left to rxml, whatever they are.
    let longest_value = limits.max_attribute_bytes.min(limits.max_stanza_bytes);
    let mut attrs: Vec<(&str, String)> = Vec::new();
    let mut lang: Option<String> = None;
    let mut default_ns: Option<String> = None;
    let mut prefixes: Vec<(&str, String)> = Vec::new();
    loop {
        let spaced = reader.skip_space()?;
        match reader.peek_at(0)? {
            b'>' => {
                reader.pos += 1;
                break;
            }
            _ if !spaced => return None,
            _ => {}
        }
        let name = reader.name()?;
        let declared = if reader.peek_at(0)? == b':' {
            reader.pos += 1;
            Some(reader.name()?)
        } else {
            None
        };
        let value = reader.attribute_value()?;
        if value.len() > longest_value {
            return None;
        }
        let reserved = value == XML_NAMESPACE || value == XMLNS_NAMESPACE;
        match (name, declared) {
            ("xmlns", None) if default_ns.is_none() && !reserved => default_ns = Some(value),
            ("xmlns", Some(p))
                if p != "xml"
                    && p != "xmlns"
                    && !value.is_empty()
                    && !reserved
                    && prefixes.iter().all(|(q, _)| *q != p) =>
            {
                prefixes.push((p, value));
            }
            ("xml", Some("lang")) if lang.is_none() => lang = Some(value),
            (name, None) if name != "xmlns" && attrs.iter().all(|(n, _)| *n != name) => {
                attrs.push((name, value));
            }
            _ => return None,
        }
    }
    let count = attrs.len() + usize::from(lang.is_some());
    if count > limits.max_attributes {
        return None;
    }
    let stanza_namespace = default_ns.unwrap_or_default();
    let namespace = match prefix {
        None => stanza_namespace.clone(),
        Some(prefix) => prefixes.iter().find(|(p, _)| *p == prefix)?.1.clone(),
    };
    let plain = |key: &str| {
        attrs
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.clone())
    };
    Some(PlainHeader {
        header: StreamHeader {
            namespace,
            name: local.to_string(),
            to: plain("to"),
            from: plain("from"),
            id: plain("id"),
            version: plain("version"),
            lang,
        },
        stanza_namespace,
        root_name: root_name.to_string(),
        len: reader.pos,
    })
}

/// The length of `</NAME>` at the start of `input` (whitespace allowed before `>`), where
/// NAME is the stream element's name as its header wrote it.
pub(super) fn end_tag_len(input: &[u8], name: &str) -> Option<usize> {
    let after_name = input.strip_prefix(b"</")?.strip_prefix(name.as_bytes())?;
    let spaces = after_name
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    (after_name.get(spaces) == Some(&b'>')).then(|| input.len() - after_name.len() + spaces + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::framer::{Frame, Framer};

    /// No attributes, so that tiny attribute limits still let it through.
    const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams'>";

    /// What rxml makes of `input` after the header: the stanza, or the error's text.
    fn rxml_reading(input: &str, limits: FramerLimits) -> Result<Option<Element>, String> {
        let mut framer = Framer::rxml_only(limits);
        framer.feed(HEADER);
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        framer.feed(input.as_bytes());
        match framer.next_frame(false) {
            Ok(Some(Frame::Stanza(stanza))) => Ok(Some(stanza)),
            Ok(_) => Ok(None),
            Err(err) => Err(err.to_string()),
        }
    }

    fn fast_reading(input: &str, limits: FramerLimits) -> Option<Element> {
        let (stanza, used) = parse_stanza(input.as_bytes(), "jabber:client", &limits)?;
        assert_eq!(used, input.len(), "{input}");
        Some(stanza)
    }

    /// Taken by the fast path, and read as rxml reads it.
    fn assert_taken(input: &str, limits: FramerLimits) {
        let fast = fast_reading(input, limits);
        assert!(fast.is_some(), "declined: {input}");
        assert_eq!(Ok(fast), rxml_reading(input, limits), "{input}");
    }

    fn assert_declined(input: &str, limits: FramerLimits) {
        assert!(fast_reading(input, limits).is_none(), "taken: {input}");
    }

    #[test]
    fn plain_stanzas_are_read_as_rxml_reads_them() {
        let limits = FramerLimits::default();
        for input in [
            "<message to='u1@localhost' type='chat' id='m1'><body>1 2 padding</body></message>",
            "<message to=\"a@b\" xml:lang='en'><body>a &amp; b &lt;c&gt; &apos;&quot; é€😀</body></message>",
            "<iq type='get' id='x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            "<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='a@b' name='A'><group>G</group></item></query></iq>",
            "<presence/>",
            "<presence\n  id = 'p1'\t/>",
            "<message><body>line one\nline two\ttab ]] ] &gt;</body><x xmlns='urn:x'><y/><z>t</z></x>tail</message>",
            "<a xmlns=''><b/></a>",
            "<a b='>' c=\"it's\"></a >",
        ] {
            assert_taken(input, limits);
        }
    }

    #[test]
    fn anything_but_the_plain_cases_is_left_to_rxml() {
        let limits = FramerLimits::default();
        for input in [
            "<message><body><![CDATA[x]]></body></message>",
            "<message><!-- c --></message>",
            "<message><?pi?></message>",
            "<message><body>&#65;</body></message>",
            "<message><body>&nbsp;</body></message>",
            "<stream:features/>",
            "<a xmlns:x='urn:x'/>",
            "<a x:b='1'/>",
            "<message><body>a\rb</body></message>",
            "<message id='a\tb'/>",
            "<message><body>]]></body></message>",
            "<message><body>\u{FFFE}</body></message>",
            "<message><body>\u{1}</body></message>",
            "<message><body>unfinished",
            "<message id='1' id='2'/>",
            "<message id='1'type='chat'/>",
            "<message></messages>",
            "<a xmlns='http://www.w3.org/2000/xmlns/'/>",
            "<a xmlns='1' xmlns='2'/>",
            "</message>",
        ] {
            assert_declined(input, limits);
        }
    }

    #[test]
    fn at_a_limit_it_reads_and_past_it_leaves_the_error_to_rxml() {
        let limits = FramerLimits {
            max_stanza_bytes: 56,
            max_depth: 3,
            max_attributes: 2,
            max_attribute_bytes: 5,
        };
        let pairs = [
            ("<a b='12345'/>", "<a b='123456'/>"),
            ("<a b='1' c='2'/>", "<a b='1' c='2' d='3'/>"),
            ("<a><b><c/></b></a>", "<a><b><c><d/></c></b></a>"),
            (
                "<a>0123456789012345678901234567890123456789012345678</a>",
                "<a>01234567890123456789012345678901234567890123456789</a>",
            ),
        ];
        for (at_limit, past_it) in pairs {
            assert_taken(at_limit, limits);
            assert_declined(past_it, limits);
            assert!(rxml_reading(past_it, limits).is_err(), "{past_it}");
        }
    }

    #[test]
    fn a_plain_header_gives_the_stanzas_namespace_and_the_stream_name() {
        let read = |header: &str| {
            parse_header(header.as_bytes(), &FramerLimits::default(), 4096).map(|plain| {
                (
                    plain.stanza_namespace,
                    plain.root_name,
                    plain.len == header.len(),
                )
            })
        };
        let full = |ns: &str, root: &str| Some((ns.to_string(), root.to_string(), true));
        assert_eq!(
            read(std::str::from_utf8(HEADER).unwrap_or_default()),
            full("jabber:client", "stream:stream")
        );
        assert_eq!(
            read("<stream:stream\n xmlns = \"urn:a\" xmlns:stream='s' version='1.0'>"),
            full("urn:a", "stream:stream")
        );
        assert_eq!(
            read("<stream:stream xmlns:stream='s' version='1.0'>"),
            full("", "stream:stream")
        );
        assert_eq!(
            read("<stream xmlns='urn:a&amp;b'>"),
            full("urn:a&b", "stream")
        );
        // Undeclared prefix, two default namespaces, self-closing, unfinished: rxml's.
        for header in [
            "<stream:stream xmlns='a'>",
            "<stream:stream xmlns:stream='s' xmlns='a' xmlns='b'>",
            "<stream:stream xmlns:stream='s'/>",
            "<stream:stream xmlns:stream='s'",
        ] {
            assert_eq!(read(header), None, "{header}");
        }
    }
}
