//! Arbitrary bytes after a valid stream header, fed in fuzzer-chosen chunks.
//!
//! Asserts: no panic; after every drain the bytes the framer holds stay within one
//! stanza budget plus one token; and the heap the framer allocates (counted by a
//! wrapping global allocator) stays linear in the bytes fed, so no stanza can make the
//! server allocate far more than it received.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;

#[path = "common/chunks.rs"]
mod chunks;
use chunks::Chunks;
use tern::xml::framer::{Frame, Framer, FramerLimits};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>";

const LIMITS: FramerLimits = FramerLimits {
    max_stanza_bytes: 4096,
    max_depth: 64,
    max_attributes: 64,
    max_attribute_bytes: 1024,
};

/// Heap allowed per byte fed: an element costs a few hundred bytes of bookkeeping
/// (`<a/>` is 4 bytes on the wire), so anything linear passes and an amplification
/// (one short tag copying a long string) does not.
const HEAP_PER_BYTE: usize = 128;
const HEAP_FIXED: usize = 256 * 1024;

/// Drains frames; true once the framer has failed or the stream ended.
fn drain(framer: &mut Framer, at_eof: bool) -> bool {
    loop {
        match framer.next_frame(at_eof) {
            Ok(Some(Frame::Close)) => return true,
            Ok(Some(frame)) => drop(frame),
            Ok(None) => return at_eof,
            Err(_) => {
                // Once failed, always failed.
                assert!(framer.next_frame(false).is_err());
                return true;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    {
        let mut framer = Framer::new(LIMITS);
        framer.feed(HEADER);
        assert!(matches!(framer.next_frame(false), Ok(Some(Frame::Open(_)))));
        // Chunk sizes come from the first byte: 0 feeds everything at once, otherwise a
        // small generator picks lengths in 1..=seed.
        let mut chunks = Chunks::new(seed);
        let mut rest = body;
        let mut done = false;
        while !rest.is_empty() && !done {
            let n = chunks.next_len(rest.len());
            framer.feed(&rest[..n]);
            rest = &rest[n..];
            done = drain(&mut framer, false);
            if !done {
                let pending = framer.pending_bytes();
                assert!(
                    pending <= 2 * LIMITS.max_stanza_bytes + 256,
                    "framer holds {pending} bytes without failing"
                );
            }
        }
        if !done {
            drain(&mut framer, true);
        }
    }
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    let allowed = HEAP_FIXED + HEAP_PER_BYTE * body.len();
    assert!(
        peak <= allowed,
        "framing {} bytes allocated {peak} bytes at peak (allowed {allowed})",
        body.len()
    );
});
