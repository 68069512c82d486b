//! The XEP-0215 codec: a service rendered into an answer (and through the XML writer and
//! parser) reads back as the same service with `parse_service`; a
//! credentials request made of any valid `<service/>` queries parses back to them.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use tern::modules::external_services::service::ExternalService;
use tern::modules::external_services::xml::{
    parse_credentials_request, parse_service, render, Action, ServiceQuery, Version,
};
use tern::xml::{writer, Element, ElementExt};

fn token() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}"
}

fn free_text() -> impl Strategy<Value = String> {
    "[ -~àéü€]{1,20}"
}

fn service() -> impl Strategy<Value = ExternalService> {
    (
        token(),
        prop_oneof![token(), "[0-9a-f:]{2,20}".prop_map(|s| s)],
        proptest::option::of(1u16..),
        proptest::option::of(prop::sample::select(vec!["udp", "tcp"])),
        proptest::option::of(free_text()),
        proptest::option::of(free_text()),
        any::<bool>(),
        proptest::option::of(0u64..4_000_000_000),
        proptest::option::of(free_text()),
    )
        .prop_map(
            |(kind, host, port, transport, username, password, restricted, expires, name)| {
                let mut service = ExternalService::new(&kind, &host);
                service.port = port;
                service.transport = transport.map(Into::into);
                service.username = username;
                service.password = password;
                service.restricted = restricted;
                service.expires = expires.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
                if let Some(name) = name {
                    service.names.insert(String::new(), name);
                }
                service
            },
        )
}

fn action() -> impl Strategy<Value = Option<Action>> {
    proptest::option::of(prop::sample::select(vec![
        Action::Add,
        Action::Modify,
        Action::Delete,
    ]))
}

fn reparse(el: &Element) -> Result<Element, TestCaseError> {
    let text = writer::to_string(el);
    text.parse::<Element>()
        .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))
}

/// The one `<service/>` of an answer holding `service`, as a client reads it.
fn on_the_wire(
    service: &ExternalService,
    version: Version,
    action: Option<Action>,
) -> Result<Element, TestCaseError> {
    let answer = render("services", version, None, [(action, service)], None);
    let text = writer::to_string(&answer);
    let parsed = text
        .parse::<Element>()
        .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert!(parsed.is("services", version.namespace()), "{}", text);
    let mut children = parsed.children();
    let service = children
        .next()
        .cloned()
        .ok_or_else(|| TestCaseError::fail(format!("no service: {text}")))?;
    prop_assert!(children.next().is_none(), "{}", text);
    prop_assert!(service.is("service", version.namespace()), "{}", text);
    Ok(service)
}

proptest! {
    #[test]
    fn services_read_back_as_written(service in service(), action in action()) {
        let el = on_the_wire(&service, Version::V2, action)?;
        let (back, back_action) = parse_service(&el)
            .ok_or_else(|| TestCaseError::fail("not parsed"))?;
        prop_assert_eq!(back, service);
        prop_assert_eq!(back_action, action);
    }

    #[test]
    fn v1_services_read_back_without_v2_attributes(service in service()) {
        let el = on_the_wire(&service, Version::V1, Some(Action::Add))?;
        let (back, action) = parse_service(&el)
            .ok_or_else(|| TestCaseError::fail("not parsed"))?;
        prop_assert_eq!(action, None);
        prop_assert_eq!(back.expires, None);
        prop_assert!(!back.restricted);
        prop_assert_eq!(back.kind, service.kind);
        prop_assert_eq!(back.host, service.host);
        prop_assert_eq!(back.port, service.port);
        prop_assert_eq!(back.username, service.username);
        prop_assert_eq!(back.password, service.password);
    }

    #[test]
    fn credentials_requests_parse_back(
        queries in proptest::collection::vec(
            (token(), token(), proptest::option::of(1u16..), proptest::option::of(prop::sample::select(vec!["udp", "tcp"]))),
            1..5,
        ),
        v1 in any::<bool>(),
    ) {
        let version = if v1 { Version::V1 } else { Version::V2 };
        let expected: Vec<ServiceQuery> = queries
            .iter()
            .map(|(kind, host, port, transport)| ServiceQuery {
                kind: Some(kind.clone()),
                host: host.clone(),
                port: *port,
                transport: transport.map(str::to_string),
            })
            .collect();
        let mut request = Element::bare("credentials", version.namespace());
        for q in &expected {
            let mut service = Element::bare("service", version.namespace())
                .with("host", q.host.clone());
            if let Some(kind) = &q.kind {
                service.set("type", kind.clone());
            }
            if let Some(port) = q.port {
                service.set("port", port.to_string());
            }
            if let Some(transport) = &q.transport {
                service.set("transport", transport.clone());
            }
            request.append_child(service);
        }
        let parsed = parse_credentials_request(&reparse(&request)?, version)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(parsed, expected);
    }
}
