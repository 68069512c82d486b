//! The framer's fast path for plain stream headers and stanzas against rxml alone:
//! arbitrary bytes after one of three stream headers, or with none (the bytes then bring
//! their own), fed in fuzzer-chosen chunks to a framer with the fast path and to one
//! without (`Framer::rxml_only`), must give the same frames and the same error; half the
//! time the fast framer keeps plain messages as text, which must give the same trees and
//! be written so that they read back as those trees.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/chunks.rs"]
mod chunks;
use chunks::Chunks;
use tern::xml::framer::{self, Frame, Framer, FramerLimits};

const HEADERS: [&[u8]; 4] = [
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>",
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    b"<stream xmlns='urn:x' xmlns:x='urn:y'>",
    b"",
];

const LIMITS: FramerLimits = FramerLimits {
    max_stanza_bytes: 4096,
    max_depth: 8,
    max_attributes: 8,
    max_attribute_bytes: 64,
};

/// Everything one framer makes of the input, as comparable text.
fn frames(mut framer: Framer, header: &[u8], body: &[u8], seed: u8) -> Vec<String> {
    let mut out = Vec::new();
    let mut input = header.to_vec();
    input.extend_from_slice(body);
    // Chunk sizes from the seed (which also picks the header): below 4, all at once.
    let mut chunks = Chunks::new(if seed < 4 { 0 } else { seed });
    let mut rest = &input[..];
    loop {
        let n = chunks.next_len(rest.len());
        framer.feed(&rest[..n]);
        rest = &rest[n..];
        let at_eof = rest.is_empty();
        loop {
            match framer.next_frame(at_eof) {
                Ok(Some(Frame::Open(header))) => out.push(format!("{header:?}")),
                Ok(Some(Frame::Stanza(stanza))) => out.push(format!("{stanza:?}")),
                Ok(Some(Frame::Message(message))) => {
                    let tree = message.to_element();
                    let mut written = Vec::new();
                    message.append_to(&mut written);
                    assert_eq!(
                        framer::read_alone_with_rxml(&written, FramerLimits::default()).as_ref(),
                        Some(&tree),
                        "{written:?}"
                    );
                    out.push(format!("{tree:?}"));
                }
                Ok(Some(Frame::Close)) => out.push("close".to_string()),
                Ok(None) => break,
                Err(err) => {
                    out.push(format!("error {err}"));
                    return out;
                }
            }
        }
        if at_eof {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let header = HEADERS[usize::from(seed % 4)];
    let reference = frames(Framer::rxml_only(LIMITS), header, body, seed);
    // With plain messages as text for half the seeds: the same trees once built.
    let mut fast = Framer::new(LIMITS);
    if seed % 8 >= 4 {
        fast.keep_messages_as_text();
    }
    let fast = frames(fast, header, body, seed);
    assert_eq!(fast, reference);
});
