//! What a client may send once its TLS keys are Tern's record layer's: records sealed
//! with its keys (data, alerts, KeyUpdates, any content type), raw bytes, cut into reads
//! at fuzzer-chosen places, read with a fuzzer-chosen buffer size.
//!
//! Asserts: no panic, and the reader gets only a prefix of the data the client sealed,
//! in order (nothing invented, skipped or reordered, whatever came after).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    tern::tls::fuzz_client_records(input);
});
