//! XEP-0215 request/service codec on arbitrary XML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minidom::Element;
use tern::modules::external_services::xml::{parse_credentials_request, parse_service, Version};

fn walk(el: &Element, depth: usize) {
    for version in [Version::V1, Version::V2] {
        if let Ok(queries) = parse_credentials_request(el, version) {
            assert!(!queries.is_empty());
            for q in &queries {
                assert!(!q.host.is_empty() || el.children().count() > 0);
                assert_ne!(q.port, Some(0));
            }
        }
    }
    let _ = parse_service(el);
    if depth < 8 {
        for child in el.children() {
            walk(child, depth + 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(root) = text.parse::<Element>() else {
        return;
    };
    walk(&root, 0);
});
