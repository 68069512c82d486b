//! JID parsing and SASL username normalisation on arbitrary UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(jid) = jid::Jid::new(data) {
        // A parsed JID re-parses to itself.
        let again = jid::Jid::new(jid.as_str()).expect("re-parse of a valid JID");
        assert_eq!(jid, again);
        let _ = jid.to_bare();
    }
    if let Ok(bare) = jid::BareJid::new(data) {
        let again = jid::BareJid::new(bare.as_str()).expect("re-parse of a valid bare JID");
        assert_eq!(bare, again);
    }
    if let Some(name) = tern::sasl::normalize_username(data) {
        // Normalisation is idempotent and yields a valid localpart.
        assert_eq!(
            tern::sasl::normalize_username(&name).as_deref(),
            Some(name.as_str())
        );
        assert!(jid::BareJid::new(&format!("{name}@localhost")).is_ok());
    }
});
