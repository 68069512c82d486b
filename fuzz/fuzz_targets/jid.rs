//! JID parsing and SASL username normalisation on arbitrary UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(jid) = jid::Jid::new(data) {
        // A parsed JID re-parses. Not necessarily to itself: jid 0.12's domain prep is
        // not idempotent ("\u{212B}\u{213B}" gives "\u{e5}FAX", which gives "\u{e5}fax";
        // corpus/jid/nonidempotent_domain, found by this target). The second pass is stable.
        let again = jid::Jid::new(jid.as_str()).expect("re-parse of a valid JID");
        let third = jid::Jid::new(again.as_str()).expect("re-parse of a valid JID");
        assert_eq!(again, third);
        let _ = jid.to_bare();
    }
    if let Ok(bare) = jid::BareJid::new(data) {
        let again = jid::BareJid::new(bare.as_str()).expect("re-parse of a valid bare JID");
        let third = jid::BareJid::new(again.as_str()).expect("re-parse of a valid bare JID");
        assert_eq!(again, third);
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
