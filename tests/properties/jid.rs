//! JID parse/display: where the jid crate is idempotent, displaying a parsed JID and
//! parsing it again gives the same JID and the same text. (It is not for some Unicode
//! domains — see docs/security.md, "jid 0.12" — so the domains here are the shapes
//! Tern's hosts have: ASCII labels and IP literals.)

use jid::Jid;
use proptest::prelude::*;

fn local() -> impl Strategy<Value = String> {
    // Any characters nodeprep keeps, including non-ASCII letters.
    "[a-z0-9._+-]{1,12}|[a-zà-ÿα-ω]{1,8}"
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]{2,6}){0,2}",
        (0u8..=255, 0u8..=255, 0u8..=255, 0u8..=255)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
    ]
}

fn resource() -> impl Strategy<Value = String> {
    // Resources keep almost anything, '/' and '@' included.
    "[ -~]{1,16}".prop_filter("no leading/trailing space", |r| r.trim() == r)
}

proptest! {
    #[test]
    fn display_then_parse_is_the_identity(
        local in proptest::option::of(local()),
        domain in domain(),
        resource in proptest::option::of(resource()),
    ) {
        let mut text = String::new();
        if let Some(local) = &local {
            text.push_str(local);
            text.push('@');
        }
        text.push_str(&domain);
        if let Some(resource) = &resource {
            text.push('/');
            text.push_str(resource);
        }
        let Ok(first) = Jid::new(&text) else {
            // Not every generated string is a JID (e.g. a label too long); the property
            // is about those that are.
            return Ok(());
        };
        let shown = first.to_string();
        let second = Jid::new(&shown).map_err(|e| TestCaseError::fail(format!("{shown}: {e}")))?;
        prop_assert_eq!(&second, &first);
        prop_assert_eq!(second.to_string(), shown);
        // The parts survive too.
        prop_assert_eq!(second.node().map(|n| n.to_string()), first.node().map(|n| n.to_string()));
        prop_assert_eq!(
            second.resource().map(|r| r.to_string()),
            first.resource().map(|r| r.to_string())
        );
        prop_assert_eq!(first.resource().is_some(), resource.is_some());
    }
}
