//! Bytes to stanzas: a push parser over one XML stream.
//!
//! The connection task owns the socket and feeds whatever it read; the framer keeps all
//! parser state itself, so a read can be cancelled (by `select!`) without losing bytes.
//! It enforces the per-stanza byte budget and the nesting depth while the stanza is still
//! being read, so an endless stanza costs at most one budget of memory.

use minidom::rxml::{self, error::EndOrError, Event, Parse, Parser, WithOptions};

use super::Element;
use crate::stanza::StreamErrorCondition;

/// Limits applied while framing.
#[derive(Clone, Copy, Debug)]
pub struct FramerLimits {
    /// Largest stanza (top-level element) in bytes, as it arrived on the wire.
    pub max_stanza_bytes: usize,
    /// Deepest nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element (namespace declarations not counted). Every
    /// attribute costs a map entry and a duplicate check; real stanzas carry a handful.
    pub max_attributes: usize,
    /// Longest attribute value, in bytes once entities are decoded. Values are JIDs,
    /// ids, namespaces; bulk data belongs in text, which only the stanza size limits.
    pub max_attribute_bytes: usize,
}

impl Default for FramerLimits {
    fn default() -> Self {
        FramerLimits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            max_attributes: 64,
            max_attribute_bytes: 8192,
        }
    }
}

/// The opening `<stream:stream>` tag, as the client sent it.
#[derive(Clone, Debug, Default)]
pub struct StreamHeader {
    pub namespace: String,
    pub name: String,
    pub to: Option<String>,
    pub from: Option<String>,
    /// The stream id (set in the server's header; clients normally send none).
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

/// What the framer produced.
#[derive(Debug)]
pub enum Frame {
    Open(StreamHeader),
    Stanza(Element),
    /// A plain message kept as text, once [`Framer::keep_messages_as_text`] asked for it.
    Message(Box<super::raw_message::RawMessage>),
    Close,
}

/// Why the stream cannot go on; maps onto a stream error condition.
#[derive(Debug, Clone)]
pub struct FrameError {
    pub condition: StreamErrorCondition,
    pub text: String,
}

impl FrameError {
    fn new(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        FrameError {
            condition,
            text: text.into(),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.condition.name(), self.text)
    }
}

/// `stanza` read alone on a client stream (default namespace `jabber:client`) by rxml:
/// the reading the framer's fast paths are held to. `None` unless rxml reads a stanza.
pub fn read_alone_with_rxml(stanza: &[u8], limits: FramerLimits) -> Option<Element> {
    let mut framer = Framer::rxml_only(limits);
    framer.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    framer.feed(stanza);
    loop {
        match framer.next_frame(false) {
            Ok(Some(Frame::Open(_))) => {}
            Ok(Some(Frame::Stanza(element))) => return Some(element),
            _ => return None,
        }
    }
}

/// Bytes an unfinished tag outside any stanza may hold, even under a tiny stanza limit.
const MIN_HEADER_BUDGET: usize = 4096;

pub struct Framer {
    /// `None` until rxml is needed (a header the fast path took may never need it), and
    /// while the stream is dormant (see [`Framer::hibernate`]).
    parser: Option<Box<Parser>>,
    limits: FramerLimits,
    /// The client's stream header as it arrived (with any XML declaration), kept to wake
    /// a dormant stream: replayed into a fresh parser, it restores the namespaces the
    /// client declared, which rxml does not expose.
    header: Option<Box<[u8]>>,
    /// Bytes fed before the stream header was complete, and how many of them the parser
    /// took: the header is their first `header_consumed` bytes.
    header_capture: Vec<u8>,
    header_consumed: usize,
    /// Bytes received; those before `input_pos` were handed to the parser already.
    /// Released whenever the parser has taken everything, so an idle stream holds none.
    input: Vec<u8>,
    input_pos: usize,
    /// Open elements below the stream root; empty between stanzas.
    open: Vec<Element>,
    root_open: bool,
    /// Wire bytes of the stanza being read, to enforce `max_stanza_bytes`.
    stanza_bytes: usize,
    /// Bytes the parser swallowed minus bytes accounted to events: what sits in its
    /// lexer waiting for the rest of a token.
    lexer_pending: usize,
    /// Namespace names copied into the stanza's elements (each element owns a copy, so
    /// `<a/>` under a long default namespace costs far more than its 4 wire bytes);
    /// limited to `max_stanza_bytes` as well.
    namespace_bytes: usize,
    failed: Option<FrameError>,
    /// Whether plain stanzas may skip rxml (see [`super::fast_path`]); off only to
    /// compare the two readings.
    fast_path: bool,
    /// The default namespace of the stream header, once it is read and plain: stanzas
    /// without prefixes inherit it. `None` turns the fast path off for the stream.
    stanza_namespace: Option<Box<str>>,
    /// The stream element's name as the header wrote it (`stream:stream`), when the fast
    /// path read the header: its end tag is then read without rxml too.
    root_name: Option<Box<str>>,
    /// That end tag, once read so: rxml, if it is needed after all (more bytes come, or
    /// the end of input), reads it after the header to know the stream is over.
    root_end: Option<Box<[u8]>>,
    /// Plain messages come as [`Frame::Message`] (a bound session's stream).
    messages_as_text: bool,
}

/// The largest input buffer kept between reads of an active stream.
const KEEP_INPUT_CAPACITY: usize = 4096;

impl Framer {
    pub fn new(limits: FramerLimits) -> Self {
        Framer {
            parser: None,
            limits,
            header: None,
            header_capture: Vec::new(),
            header_consumed: 0,
            input: Vec::new(),
            input_pos: 0,
            open: Vec::new(),
            root_open: false,
            stanza_bytes: 0,
            lexer_pending: 0,
            namespace_bytes: 0,
            failed: None,
            fast_path: true,
            stanza_namespace: None,
            root_name: None,
            root_end: None,
            messages_as_text: false,
        }
    }

    /// A framer that reads everything with rxml: the reference the fast path is
    /// compared with (tests and fuzzing).
    pub fn rxml_only(limits: FramerLimits) -> Self {
        Framer {
            fast_path: false,
            ..Framer::new(limits)
        }
    }

    /// From now on, plain messages come as text ([`Frame::Message`]); before binding,
    /// negotiation reads every stanza as a tree.
    pub fn keep_messages_as_text(&mut self) {
        self.messages_as_text = self.fast_path;
    }

    /// Hands received bytes to the framer.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.root_open && self.header_capture.len() <= self.header_budget() {
            self.header_capture.extend_from_slice(bytes);
        }
        self.input.extend_from_slice(bytes);
    }

    fn header_budget(&self) -> usize {
        self.limits.max_stanza_bytes.max(MIN_HEADER_BUDGET)
    }

    /// Releases the parser (and its buffers) between stanzas, so a client that sits idle
    /// for hours costs no parser memory; the next bytes wake it by replaying the stream
    /// header. Returns whether the stream is dormant now: not in the middle of anything,
    /// header seen, nothing failed.
    pub fn hibernate(&mut self) -> bool {
        let quiet = self.root_open
            && self.header.is_some()
            && self.open.is_empty()
            && self.lexer_pending == 0
            && self.input_pos == self.input.len()
            && self.failed.is_none();
        if quiet {
            self.parser = None;
            // Empty, but they kept their capacity from the largest read and the deepest
            // stanza so far.
            self.input = Vec::new();
            self.input_pos = 0;
            self.open = Vec::new();
        }
        self.parser.is_none()
    }

    /// A fresh parser that has read the client's stream header again.
    fn wake(&mut self) -> Result<(), FrameError> {
        let header = self.header.as_deref().unwrap_or_default();
        let mut parser = Box::new(new_parser(self.limits));
        let mut rest = header;
        let replayed = loop {
            match parser.parse(&mut rest, false) {
                Ok(Some(Event::StartElement(..))) if rest.is_empty() => break true,
                Ok(Some(Event::XmlDeclaration(..))) => {}
                other => {
                    tracing::error!(?other, "replaying the stream header failed");
                    break false;
                }
            }
        };
        // The stream's end, if the fast path read it: rxml ends the document too.
        let ended = match self.root_end.take() {
            None => true,
            Some(end) => {
                let mut rest = &end[..];
                let ended = matches!(
                    parser.parse(&mut rest, false),
                    Ok(Some(Event::EndElement(..)))
                );
                ended && rest.is_empty()
            }
        };
        if !replayed || !ended {
            // Both were read once already; failing now would be our bug.
            return Err(self.fail(FrameError::new(
                StreamErrorCondition::InternalServerError,
                "cannot resume reading the stream",
            )));
        }
        self.parser = Some(parser);
        Ok(())
    }

    /// Bytes received that no complete frame has accounted for yet. After `<starttls/>`
    /// this must be zero: anything else was pipelined before the TLS handshake.
    pub fn pending_bytes(&self) -> usize {
        self.input.len() - self.input_pos + self.lexer_pending
    }

    /// Whether everything pending is XML whitespace that the parser has not taken in yet.
    /// Clients such as go-sendxmpp send `<starttls/>` followed by a newline in one write;
    /// that is harmless, unlike a pipelined stanza.
    pub fn pending_is_whitespace(&self) -> bool {
        self.lexer_pending == 0
            && self.input[self.input_pos..]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    }

    /// Whether a stanza is partially read (used to decide whether an idle timeout or EOF
    /// interrupted one).
    pub fn in_stanza(&self) -> bool {
        !self.open.is_empty()
    }

    /// The next complete frame, or `Ok(None)` when more bytes are needed. `at_eof` says the
    /// peer closed its side: then an unfinished document is an error.
    pub fn next_frame(&mut self, at_eof: bool) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if !self.root_open && self.parser.is_none() {
            // Nothing of the stream was read yet.
            if let Some(header) = self.plain_header() {
                return Ok(Some(Frame::Open(header)));
            }
            if self.input_pos == self.input.len() && !at_eof {
                return Ok(None);
            }
            self.parser = Some(Box::new(new_parser(self.limits)));
        }
        if let Some(frame) = self.next_plain_frame() {
            return Ok(Some(frame));
        }
        let between_stanzas = self.stanza_namespace.is_some() && self.open.is_empty();
        if between_stanzas && self.input_pos == self.input.len() && self.lexer_pending == 0 {
            if !at_eof {
                // rxml has nothing to read, nothing half-read and nothing queued (its
                // last event ended a stanza or opened the stream): it would only ask
                // for more.
                return Ok(None);
            }
        } else if self.parser.is_none() && self.input_pos == self.input.len() && !at_eof {
            return Ok(None);
        }
        if self.parser.is_none() {
            self.wake()?;
        }
        loop {
            let Some(parser) = self.parser.as_mut() else {
                return Ok(None);
            };
            let mut slice: &[u8] = &self.input[self.input_pos..];
            let before = slice.len();
            let result = parser.parse(&mut slice, at_eof);
            let consumed = before - slice.len();
            if !self.root_open {
                self.header_consumed += consumed;
            }
            // Advancing rather than draining: a read holding many stanzas is not
            // shifted once per stanza.
            self.input_pos += consumed;
            self.release_consumed_input();
            self.lexer_pending += consumed;
            match result {
                Ok(Some(event)) => {
                    if let Some(frame) = self.on_event(event).inspect_err(|e| {
                        self.failed = Some(e.clone());
                    })? {
                        return Ok(Some(frame));
                    }
                }
                Ok(None) => {
                    // The parser saw the end of the document; the root close was
                    // already reported as `Frame::Close`.
                    return Ok(None);
                }
                Err(EndOrError::NeedMoreData) => {
                    // Also between stanzas: an unfinished start tag (the stream header or
                    // a stanza's, with endless attributes) sits whole in the parser. A
                    // stream header always gets at least `MIN_HEADER_BUDGET`.
                    let budget = if self.in_stanza() {
                        self.limits.max_stanza_bytes
                    } else {
                        self.limits.max_stanza_bytes.max(MIN_HEADER_BUDGET)
                    };
                    if self.stanza_bytes + self.lexer_pending > budget {
                        return Err(self.fail(too_big(self.limits.max_stanza_bytes)));
                    }
                    return Ok(None);
                }
                Err(EndOrError::Error(err)) => {
                    let condition = classify(&err);
                    return Err(self.fail(FrameError::new(condition, err.to_string())));
                }
            }
        }
    }

    /// Empties the input buffer once everything in it was taken.
    fn release_consumed_input(&mut self) {
        if self.input_pos == self.input.len() {
            // A small buffer stays for the next read (an allocation saved per stanza of
            // a busy client) until the stream goes dormant.
            if self.input.capacity() <= KEEP_INPUT_CAPACITY {
                self.input.clear();
            } else {
                self.input = Vec::new();
            }
            self.input_pos = 0;
        }
    }

    /// The stream header read without rxml, when it is all here and plain. rxml is then
    /// not needed until a stanza that is not plain comes; it reads the header again
    /// first, as a dormant stream's does ([`Framer::wake`]).
    fn plain_header(&mut self) -> Option<StreamHeader> {
        if !self.fast_path {
            return None;
        }
        let budget = self.header_budget();
        let plain =
            super::fast_path::parse_header(&self.input[self.input_pos..], &self.limits, budget)?;
        let end = self.input_pos + plain.len;
        self.header = Some(self.input[self.input_pos..end].into());
        self.header_capture = Vec::new();
        self.root_open = true;
        self.stanza_namespace = Some(plain.stanza_namespace.into_boxed_str());
        self.root_name = Some(plain.root_name.into_boxed_str());
        self.input_pos = end;
        self.release_consumed_input();
        Some(plain.header)
    }

    /// The next stanza read without rxml, when rxml sits between stanzas with nothing
    /// of its own pending and the whole stanza is here and plain. rxml never sees the
    /// bytes taken, and its state between stanzas does not depend on them. Whitespace
    /// before a tag is dropped as well: rxml would report it as text between stanzas,
    /// which carries nothing. Other whitespace stays for rxml, since where its text
    /// tokens start decides which of two faults in later text it reports first.
    fn next_plain_frame(&mut self) -> Option<Frame> {
        let namespace = self.stanza_namespace.as_deref()?;
        if !self.open.is_empty() || self.lexer_pending != 0 {
            return None;
        }
        let rest = &self.input[self.input_pos..];
        let spaces = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        if rest.get(spaces) != Some(&b'<') {
            return None;
        }
        let tag = &rest[spaces..];
        if let Some(end_len) = self
            .root_name
            .as_deref()
            .and_then(|name| super::fast_path::end_tag_len(tag, name))
        {
            self.root_end = Some(tag[..end_len].into());
            self.stanza_namespace = None;
            // A parser that read stanzas before has not seen the end: it is rebuilt
            // from the header and the end tag if needed.
            self.parser = None;
            self.input_pos += spaces + end_len;
            self.release_consumed_input();
            return Some(Frame::Close);
        }
        if self.messages_as_text {
            if let Some((message, used)) = super::raw_message::scan(tag, namespace, &self.limits) {
                self.input_pos += spaces + used;
                self.release_consumed_input();
                return Some(Frame::Message(Box::new(message)));
            }
        }
        let parsed = super::fast_path::parse_stanza(tag, namespace, &self.limits);
        let (frame, used) = match parsed {
            Some((stanza, used)) => (Some(Frame::Stanza(stanza)), spaces + used),
            None => (None, spaces),
        };
        self.input_pos += used;
        self.release_consumed_input();
        frame
    }

    fn fail(&mut self, err: FrameError) -> FrameError {
        self.failed = Some(err.clone());
        err
    }

    fn account(&mut self, len: usize) {
        self.lexer_pending = self.lexer_pending.saturating_sub(len);
        if !self.open.is_empty() {
            self.stanza_bytes += len;
        }
    }

    fn on_event(&mut self, event: Event) -> Result<Option<Frame>, FrameError> {
        match event {
            Event::XmlDeclaration(metrics, _) => {
                self.account(metrics.len());
                Ok(None)
            }
            Event::StartElement(metrics, (namespace, name), attrs) => {
                self.check_attributes(&attrs)?;
                if !self.root_open {
                    self.account(metrics.len());
                    self.root_open = true;
                    let capture = std::mem::take(&mut self.header_capture);
                    if let Some(header) = capture.get(..self.header_consumed) {
                        self.header = Some(header.into());
                        // rxml read it (it came in pieces, or is not plain): when the
                        // fast path can read it whole, its stanzas and end may still
                        // take the fast path.
                        let plain = self
                            .fast_path
                            .then(|| {
                                super::fast_path::parse_header(header, &self.limits, usize::MAX)
                            })
                            .flatten()
                            .filter(|plain| plain.len == header.len());
                        if let Some(plain) = plain {
                            self.stanza_namespace = Some(plain.stanza_namespace.into_boxed_str());
                            self.root_name = Some(plain.root_name.into_boxed_str());
                        }
                    }
                    return Ok(Some(Frame::Open(header_from(
                        namespace.as_str(),
                        name.as_str(),
                        &attrs,
                    ))));
                }
                if self.open.is_empty() {
                    self.stanza_bytes = 0;
                    self.namespace_bytes = 0;
                }
                if self.open.len() >= self.limits.max_depth {
                    return Err(FrameError::new(
                        StreamErrorCondition::PolicyViolation,
                        format!("elements nested deeper than {}", self.limits.max_depth),
                    ));
                }
                self.namespace_bytes += namespace.len();
                if self.namespace_bytes > self.limits.max_stanza_bytes {
                    return Err(too_big(self.limits.max_stanza_bytes));
                }
                let mut element = super::client_elements::bare(name.as_str(), namespace.as_str());
                *element.attrs_mut() = attrs;
                self.open.push(element);
                self.account(metrics.len());
                self.check_size()?;
                Ok(None)
            }
            Event::Text(metrics, text) => {
                self.account(metrics.len());
                self.check_size()?;
                if let Some(top) = self.open.last_mut() {
                    top.append_text(text);
                }
                // Text between stanzas (whitespace keepalives) carries nothing.
                Ok(None)
            }
            Event::EndElement(metrics) => {
                self.account(metrics.len());
                match self.open.pop() {
                    None => {
                        // Nothing may follow the end of the stream.
                        self.stanza_namespace = None;
                        Ok(Some(Frame::Close))
                    }
                    Some(element) => match self.open.last_mut() {
                        Some(parent) => {
                            parent.append_child(element);
                            Ok(None)
                        }
                        None => {
                            let stanza_bytes = std::mem::take(&mut self.stanza_bytes);
                            if stanza_bytes > self.limits.max_stanza_bytes {
                                return Err(too_big(self.limits.max_stanza_bytes));
                            }
                            Ok(Some(Frame::Stanza(element)))
                        }
                    },
                }
            }
        }
    }

    /// `[limits] max_attributes` and `max_attribute_length`, on every element including
    /// the stream header. The tag is already parsed here; its memory was bounded by the
    /// stanza budget while it was read.
    fn check_attributes(&self, attrs: &rxml::AttrMap) -> Result<(), FrameError> {
        if attrs.len() > self.limits.max_attributes {
            return Err(FrameError::new(
                StreamErrorCondition::PolicyViolation,
                format!(
                    "an element has more than {} attributes",
                    self.limits.max_attributes
                ),
            ));
        }
        if let Some(((_, name), _)) = attrs
            .iter()
            .find(|(_, value)| value.len() > self.limits.max_attribute_bytes)
        {
            return Err(FrameError::new(
                StreamErrorCondition::PolicyViolation,
                format!(
                    "attribute '{}' is longer than {} bytes",
                    name.as_str(),
                    self.limits.max_attribute_bytes
                ),
            ));
        }
        Ok(())
    }

    fn check_size(&self) -> Result<(), FrameError> {
        if self.stanza_bytes + self.lexer_pending > self.limits.max_stanza_bytes {
            Err(too_big(self.limits.max_stanza_bytes))
        } else {
            Ok(())
        }
    }
}

fn new_parser(limits: FramerLimits) -> Parser {
    Parser::with_options(rxml::Options {
        // A token is a name, an attribute value or a chunk of text (longer text arrives
        // in several): no longer than an attribute may be. The lexer reserves this much
        // twice per parser, so a stanza-sized token length cost 2 x 256 KiB per wake.
        max_token_length: limits
            .max_attribute_bytes
            .min(limits.max_stanza_bytes)
            .max(64)
            + 64,
        ..Default::default()
    })
}

fn too_big(limit: usize) -> FrameError {
    FrameError::new(
        StreamErrorCondition::PolicyViolation,
        format!("stanza larger than {limit} bytes"),
    )
}

fn header_from(namespace: &str, name: &str, attrs: &rxml::AttrMap) -> StreamHeader {
    let plain = |key: &str| {
        attrs
            .get(&rxml::Namespace::NONE, key)
            .map(|value| value.to_string())
    };
    StreamHeader {
        namespace: namespace.to_string(),
        name: name.to_string(),
        to: plain("to"),
        from: plain("from"),
        id: plain("id"),
        version: plain("version"),
        lang: attrs
            .get(&rxml::Namespace::XML, "lang")
            .map(|value| value.to_string()),
    }
}

/// RFC 6120 §4.9.3: DTDs, comments, processing instructions and entity references other
/// than the predefined ones are `restricted-xml`; everything else that breaks XML is
/// `not-well-formed`.
fn classify(err: &rxml::Error) -> StreamErrorCondition {
    match err {
        rxml::Error::RestrictedXml(reason) if reason.contains("long") => {
            StreamErrorCondition::PolicyViolation
        }
        // `<?xml ... encoding='ISO-8859-1'?>`: RFC 6120 §4.9.3.22.
        rxml::Error::RestrictedXml(reason) if reason.contains("encoding") => {
            StreamErrorCondition::UnsupportedEncoding
        }
        rxml::Error::RestrictedXml(_) | rxml::Error::UndeclaredEntity => {
            StreamErrorCondition::RestrictedXml
        }
        // `<!` not followed by `[CDATA[` or `--`: a DOCTYPE, ENTITY, ELEMENT or ATTLIST.
        rxml::Error::InvalidSyntax(reason) if reason.contains("section start") => {
            StreamErrorCondition::RestrictedXml
        }
        rxml::Error::InvalidUtf8Byte(_) => StreamErrorCondition::UnsupportedEncoding,
        _ => StreamErrorCondition::NotWellFormed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>";

    fn frames(input: &str, limits: FramerLimits) -> (Vec<Frame>, Option<FrameError>) {
        let mut framer = Framer::new(limits);
        let mut out = Vec::new();
        // Byte by byte: the framer must not depend on how reads are chunked.
        for byte in input.as_bytes() {
            framer.feed(std::slice::from_ref(byte));
            loop {
                match framer.next_frame(false) {
                    Ok(Some(frame)) => out.push(frame),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn header_and_stanzas() {
        let input = format!("{HEADER}<message to='a@b'><body>hi &amp; bye</body></message> <presence/></stream:stream>");
        let (out, err) = frames(&input, FramerLimits::default());
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out.len(), 4);
        match &out[0] {
            Frame::Open(h) => {
                assert_eq!(h.namespace, crate::xml::ns::STREAM);
                assert_eq!(h.name, "stream");
                assert_eq!(h.to.as_deref(), Some("localhost"));
                assert_eq!(h.version.as_deref(), Some("1.0"));
                assert_eq!(h.lang.as_deref(), Some("en"));
            }
            other => panic!("{other:?}"),
        }
        match &out[1] {
            Frame::Stanza(m) => {
                assert!(m.is("message", crate::xml::ns::CLIENT));
                assert_eq!(m.attr("to"), Some("a@b"));
                let body = m
                    .get_child("body", crate::xml::ns::CLIENT)
                    .map(|b| b.text());
                assert_eq!(body.as_deref(), Some("hi & bye"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&out[2], Frame::Stanza(p) if p.name() == "presence"));
        assert!(matches!(&out[3], Frame::Close));
    }

    /// Feeds `input` in one piece and collects every frame.
    fn drain(framer: &mut Framer, input: &str) -> Vec<Frame> {
        framer.feed(input.as_bytes());
        let mut out = Vec::new();
        while let Some(frame) = framer.next_frame(false).expect("no stream error") {
            out.push(frame);
        }
        out
    }

    #[test]
    fn a_dormant_stream_wakes_with_the_namespaces_its_header_declared() {
        let header = "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:example:x' to='localhost' version='1.0'>";
        let mut framer = Framer::new(FramerLimits::default());
        // The header and the start of a stanza in one read: not dormant mid-stanza.
        let out = drain(&mut framer, &format!("{header}<message to='a@b'>"));
        assert!(matches!(out.as_slice(), [Frame::Open(_)]));
        assert!(!framer.hibernate());
        let out = drain(&mut framer, "<x:thing/></message>");
        assert_eq!(out.len(), 1);
        assert!(
            framer.input.capacity() > 0,
            "an active stream keeps its input buffer"
        );
        assert!(framer.hibernate());
        assert!(framer.parser.is_none());
        assert_eq!(
            framer.input.capacity(),
            0,
            "a dormant stream holds no input buffer"
        );
        // Woken byte by byte: the prefix declared in the header still resolves, and the
        // default namespace is still jabber:client.
        let mut out = Vec::new();
        for byte in "<message><x:thing/></message> <presence/>".as_bytes() {
            framer.feed(std::slice::from_ref(byte));
            while let Some(frame) = framer.next_frame(false).expect("no stream error") {
                out.push(frame);
            }
        }
        assert_eq!(out.len(), 2, "{out:?}");
        let Frame::Stanza(message) = &out[0] else {
            panic!("{out:?}");
        };
        assert!(message.is("message", crate::xml::ns::CLIENT));
        assert!(message.get_child("thing", "urn:example:x").is_some());
        assert!(matches!(&out[1], Frame::Stanza(p) if p.is("presence", crate::xml::ns::CLIENT)));
        // Dormant again, then the stream's end.
        assert!(framer.hibernate());
        let out = drain(&mut framer, "</stream:stream>");
        assert!(matches!(out.as_slice(), [Frame::Close]));
    }

    #[test]
    fn no_dormancy_before_the_header_or_after_an_error() {
        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(b"<stream:stream xmlns='jabber:client' xmlns:stre");
        assert!(matches!(framer.next_frame(false), Ok(None)));
        assert!(!framer.hibernate());
        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(format!("{HEADER}<a><!-- no --></a>").as_bytes());
        while let Ok(Some(_)) = framer.next_frame(false) {}
        assert!(!framer.hibernate());
        assert!(framer.next_frame(false).is_err());
    }

    #[test]
    fn limits_still_hold_after_waking() {
        let limits = FramerLimits {
            max_stanza_bytes: 100,
            max_depth: 2,
            ..FramerLimits::default()
        };
        let mut framer = Framer::new(limits);
        assert_eq!(drain(&mut framer, HEADER).len(), 1);
        assert!(framer.hibernate());
        framer.feed(b"<a><b><c/></b></a>");
        let err = loop {
            match framer.next_frame(false) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("depth limit not applied"),
                Err(err) => break err,
            }
        };
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    }

    fn error_of(input: &str, limits: FramerLimits) -> StreamErrorCondition {
        let (_, err) = frames(&format!("{HEADER}{input}"), limits);
        err.expect("expected a stream error").condition
    }

    #[test]
    fn restricted_xml() {
        let d = FramerLimits::default();
        assert_eq!(
            error_of("<!-- hi -->", d),
            StreamErrorCondition::RestrictedXml
        );
        assert_eq!(error_of("<?pi x?>", d), StreamErrorCondition::RestrictedXml);
        assert_eq!(
            error_of("<message>&lol;</message>", d),
            StreamErrorCondition::RestrictedXml
        );
        let (_, err) = frames(
            "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream>",
            d,
        );
        assert_eq!(
            err.clone().map(|e| e.condition),
            Some(StreamErrorCondition::RestrictedXml),
            "{err:?}"
        );
    }

    #[test]
    fn malformed() {
        let d = FramerLimits::default();
        assert_eq!(
            error_of("<message></presence>", d),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            error_of("<message a='1' a='2'/>", d),
            StreamErrorCondition::NotWellFormed
        );
        assert_eq!(
            error_of("<x:message/>", d),
            StreamErrorCondition::NotWellFormed
        );
    }

    #[test]
    fn invalid_utf8_and_nul() {
        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(HEADER.as_bytes());
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        framer.feed(b"<message><body>\xff\xfe</body></message>");
        let err = loop {
            match framer.next_frame(false) {
                Err(e) => break e,
                Ok(None) => panic!("accepted invalid utf-8"),
                Ok(Some(_)) => {}
            }
        };
        assert_ne!(err.condition, StreamErrorCondition::PolicyViolation);
        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(HEADER.as_bytes());
        let _ = framer.next_frame(false);
        framer.feed(b"<message>\0</message>");
        assert!(framer.next_frame(false).is_err());
    }

    #[test]
    fn stanza_size_limit() {
        let limits = FramerLimits {
            max_stanza_bytes: 100,
            max_depth: 8,
            ..FramerLimits::default()
        };
        let big = format!("<message><body>{}</body></message>", "x".repeat(200));
        assert_eq!(
            error_of(&big, limits),
            StreamErrorCondition::PolicyViolation
        );
        // An endless attribute value never completes a token; the budget still applies.
        let (_, err) = frames(&format!("{HEADER}<message to='{}", "y".repeat(500)), limits);
        assert_eq!(
            err.map(|e| e.condition),
            Some(StreamErrorCondition::PolicyViolation)
        );
        // A small stanza passes.
        let (out, err) = frames(
            &format!("{HEADER}<message><body>ok</body></message>"),
            limits,
        );
        assert!(err.is_none());
        assert_eq!(out.len(), 2);
    }

    /// Caught by the heap bound of fuzz/fuzz_targets/framer.rs: each element owns a
    /// copy of its namespace name, so 500 `<a/>` under a 2000-byte default namespace
    /// (4 KB on the wire) allocated 1 MB; at the default limit, gigabytes.
    #[test]
    fn inherited_namespace_copies_count() {
        let limits = FramerLimits {
            max_stanza_bytes: 4096,
            max_depth: 64,
            ..FramerLimits::default()
        };
        let long = "x".repeat(1990);
        let input = format!("<m xmlns='urn:{long}'>{}</m>", "<a/>".repeat(500));
        assert!(input.len() < limits.max_stanza_bytes);
        assert_eq!(
            error_of(&input, limits),
            StreamErrorCondition::PolicyViolation
        );
        // Ordinary stanzas with many elements in a short namespace still pass.
        let many = format!("<iq type='set' id='1'>{}</iq>", "<item/>".repeat(200));
        let (out, err) = frames(&format!("{HEADER}{many}"), limits);
        assert!(err.is_none(), "{err:?}");
        assert!(matches!(&out[1], Frame::Stanza(iq) if iq.children().count() == 200));
    }

    /// Caught by the pending-bytes bound of the framer fuzz target: a start tag that never
    /// ends, between stanzas (or as the stream header), was buffered without limit.
    #[test]
    fn endless_start_tag_between_stanzas() {
        let limits = FramerLimits {
            max_stanza_bytes: 4096,
            max_depth: 64,
            ..FramerLimits::default()
        };
        let attrs: String = (0..2000).map(|i| format!("a{i}='x' ")).collect();
        let mut framer = Framer::new(limits);
        framer.feed(HEADER.as_bytes());
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        let mut failed = None;
        for chunk in format!("<m {attrs}").as_bytes().chunks(100) {
            framer.feed(chunk);
            if let Err(e) = framer.next_frame(false) {
                failed = Some(e);
                break;
            }
            assert!(framer.pending_bytes() <= limits.max_stanza_bytes + 100);
        }
        assert_eq!(
            failed.map(|e| e.condition),
            Some(StreamErrorCondition::PolicyViolation)
        );
        // The stream header is bounded the same way.
        let mut framer = Framer::new(limits);
        framer.feed(format!("<stream:stream {attrs}").as_bytes());
        assert!(framer.next_frame(false).is_err());
    }

    #[test]
    fn attribute_count_and_length_limits() {
        let limits = FramerLimits {
            max_attributes: 4,
            max_attribute_bytes: 16,
            ..FramerLimits::default()
        };
        let ok = "<message a='1' b='2' c='3' d='0123456789abcdef'/>";
        let (out, err) = frames(&format!("{HEADER}{ok}"), limits);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out.len(), 2);
        let (_, err) = frames(
            &format!("{HEADER}<message a='1' b='2' c='3' d='4' e='5'/>"),
            limits,
        );
        let err = err.expect("five attributes refused");
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        assert!(err.text.contains("more than 4 attributes"), "{}", err.text);
        // Nested elements and the decoded length (an entity is one byte) count too.
        let (_, err) = frames(
            &format!("{HEADER}<message><body x='0123456789abcdef0'/></message>"),
            limits,
        );
        let err = err.expect("a 17-byte value refused");
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        assert!(
            err.text.contains("'x' is longer than 16 bytes"),
            "{}",
            err.text
        );
        let (_, err) = frames(
            &format!("{HEADER}<message x='&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;'/>"),
            limits,
        );
        assert!(err.is_none(), "16 decoded bytes pass: {err:?}");
        // The stream header too.
        let (_, err) = frames(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a-very-long-host-name.example'>",
            limits,
        );
        assert_eq!(
            err.map(|e| e.condition),
            Some(StreamErrorCondition::PolicyViolation)
        );
    }

    #[test]
    fn depth_limit() {
        let limits = FramerLimits {
            max_stanza_bytes: 10_000,
            max_depth: 4,
            ..FramerLimits::default()
        };
        let deep = "<a>".repeat(10);
        assert_eq!(
            error_of(&deep, limits),
            StreamErrorCondition::PolicyViolation
        );
    }

    #[test]
    fn pending_bytes_after_starttls() {
        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(HEADER.as_bytes());
        framer.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>");
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        assert!(matches!(
            framer.next_frame(false),
            Ok(Some(Frame::Stanza(_)))
        ));
        assert!(framer.pending_bytes() > 0);

        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(HEADER.as_bytes());
        framer.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        assert!(matches!(
            framer.next_frame(false),
            Ok(Some(Frame::Stanza(_)))
        ));
        assert_eq!(framer.pending_bytes(), 0);

        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(HEADER.as_bytes());
        framer.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n ");
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        assert!(matches!(
            framer.next_frame(false),
            Ok(Some(Frame::Stanza(_)))
        ));
        assert!(framer.pending_is_whitespace());

        let mut framer = Framer::new(FramerLimits::default());
        framer.feed(HEADER.as_bytes());
        framer.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n<iq/>");
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        assert!(matches!(
            framer.next_frame(false),
            Ok(Some(Frame::Stanza(_)))
        ));
        assert!(!framer.pending_is_whitespace());
    }
}
