//! One SASL exchange driven by fuzzer data.
//!
//! Byte 0 picks the mechanism and the channel-binding data; the rest is split at 0xFF
//! bytes (invalid UTF-8, so never part of a sensible SASL message) into the client's
//! messages. The account "user" exists with fixed credentials.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tern::sasl::{
    ChannelBindingData, Mechanism, SaslServer, SaslStep, ScramCredentials, StoredCredentials,
};

fn credentials() -> &'static StoredCredentials {
    static CREDS: OnceLock<StoredCredentials> = OnceLock::new();
    // Fixed (not derived from a password): deterministic across runs, and one
    // iteration so PLAIN's key derivation does not dominate the exec rate.
    CREDS.get_or_init(|| StoredCredentials {
        sha1: ScramCredentials {
            salt: b"0123456789abcdef".to_vec(),
            iterations: 1,
            stored_key: vec![0x11; 20],
            server_key: vec![0x22; 20],
        },
        sha256: ScramCredentials {
            salt: b"fedcba9876543210".to_vec(),
            iterations: 1,
            stored_key: vec![0x33; 32],
            server_key: vec![0x44; 32],
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(selector & 0x07) % Mechanism::ALL.len()];
    let channel_binding = ChannelBindingData {
        tls_exporter: (selector & 0x08 != 0).then(|| vec![0x42; 32]),
        tls_server_end_point: (selector & 0x10 != 0).then(|| vec![0x24; 32]),
    };
    let plus_offered = selector & 0x20 != 0;
    let mut server = SaslServer::new(mechanism, "localhost", channel_binding, plus_offered, [0; 32]);
    let lookup = |name: &str| (name == "user").then(|| credentials().clone());
    let mut finished = false;
    for message in body.split(|&b| b == 0xFF) {
        let step = server.step(message, &lookup);
        if finished {
            // After success or failure every further step must fail.
            assert!(matches!(step, SaslStep::Failure(_)), "{step:?}");
        }
        match step {
            SaslStep::Challenge(_) => {}
            SaslStep::Success { username, .. } => {
                // Only the one account exists.
                assert_eq!(username, "user");
                finished = true;
            }
            SaslStep::Failure(_) => finished = true,
        }
    }
});
