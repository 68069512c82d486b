//! The XEP-0215 codec, for `urn:xmpp:extdisco:2` and, faithfully, `urn:xmpp:extdisco:1`.
//!
//! xmpp-parsers' `extdisco` cannot serve a server (closed type enum, private fields, no
//! `delete`), hence our own.

use super::prepare::format_timestamp;
use super::service::ExternalService;
use crate::stanza::StanzaError;
use crate::xml::prerendered::{Unrenderable, Xml};
use crate::xml::{ns, Element};

pub const NS_V2: &str = "urn:xmpp:extdisco:2";
pub const NS_V1: &str = "urn:xmpp:extdisco:1";

/// The protocol version of a request; replies use the request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn namespace(self) -> &'static str {
        match self {
            Version::V1 => NS_V1,
            Version::V2 => NS_V2,
        }
    }

    pub fn of(namespace: &str) -> Option<Version> {
        match namespace {
            NS_V2 => Some(Version::V2),
            NS_V1 => Some(Version::V1),
            _ => None,
        }
    }
}

/// Push actions (XEP-0215 §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Add,
    Modify,
    Delete,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Modify => "modify",
            Action::Delete => "delete",
        }
    }

    /// `remove` is accepted as a synonym: the XEP uses both words.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "add" => Some(Action::Add),
            "modify" => Some(Action::Modify),
            "delete" | "remove" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// One `<service/>` of a credentials request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceQuery {
    /// Required in `:2`; `:1` requests may carry only `host`.
    pub kind: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<String>,
}

impl ServiceQuery {
    pub fn matches(&self, service: &ExternalService) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == service.kind)
            && self.host == service.host
            && self.port.is_none_or(|p| Some(p) == service.port)
            && self
                .transport
                .as_ref()
                .is_none_or(|t| Some(t.as_str()) == service.transport.as_deref())
    }
}

/// Parses the `<service/>` children of a `<credentials/>` request.
pub fn parse_credentials_request(
    payload: &Element,
    version: Version,
) -> Result<Vec<ServiceQuery>, StanzaError> {
    let mut queries = Vec::new();
    for child in payload.children() {
        if !child.is("service", version.namespace()) {
            continue;
        }
        let kind = child
            .attr("type")
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if kind.is_none() && version == Version::V2 {
            return Err(StanzaError::bad_request("each <service/> needs a 'type'"));
        }
        let Some(host) = child.attr("host").filter(|h| !h.is_empty()) else {
            return Err(StanzaError::bad_request("each <service/> needs a 'host'"));
        };
        let port = match child.attr("port") {
            None => None,
            Some(raw) => match raw.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    return Err(StanzaError::bad_request(format!(
                        "'port' must be 1..65535, not {raw:?}"
                    )))
                }
            },
        };
        let transport = child.attr("transport").map(str::to_string);
        queries.push(ServiceQuery {
            kind,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            transport,
        });
    }
    if queries.is_empty() {
        return Err(StanzaError::bad_request(
            "a credentials request names at least one <service/>",
        ));
    }
    Ok(queries)
}

/// Renders the `<services/>` or `<credentials/>` element: an answer (no actions) or a
/// push (an action per service). Written straight to text ([`Xml`]): with four services
/// and their credentials, building the same as a tree and writing it cost more than all
/// the rest of a request. A service holding a character XML cannot carry is left out,
/// with a log line; the rest are still answered.
pub fn render<'a>(
    name: &'static str,
    version: Version,
    requested_type: Option<&str>,
    services: impl IntoIterator<Item = (Option<Action>, &'a ExternalService)>,
    lang: Option<&str>,
) -> Element {
    let mut xml = Xml::with_capacity(1024);
    xml.open(name, Some(version.namespace()));
    if let Some(kind) = requested_type {
        // Read from the request, so it has only characters XML carries; were it not, the
        // answer goes without it rather than not at all.
        let _ = xml.whole(|xml| xml.attr("type", kind));
    }
    let start_tag = xml.len();
    xml.content();
    let mut written = 0;
    for (action, service) in services {
        match xml.whole(|xml| write_service(xml, service, None, version, lang, action)) {
            Ok(()) => written += 1,
            Err(err) => {
                tracing::error!(
                    origin = %service.origin,
                    kind = %service.kind,
                    host = %service.host,
                    "service left out of the answer: {err}"
                );
            }
        }
    }
    if written == 0 {
        xml.truncate(start_tag);
        xml.close_empty();
    } else {
        xml.close(name);
    }
    xml.into_element()
}

/// One service as a tree (tests, and code that wants to look at it); `None` when a value
/// holds a character XML cannot carry.
pub fn service_element(
    service: &ExternalService,
    version: Version,
    lang: Option<&str>,
    action: Option<Action>,
) -> Option<Element> {
    let mut xml = Xml::with_capacity(256);
    write_service(
        &mut xml,
        service,
        Some(version.namespace()),
        version,
        lang,
        action,
    )
    .ok()?;
    xml.into_tree()
}

/// Writes one `<service/>`; `namespace` is declared when given (a service on its own).
fn write_service(
    xml: &mut Xml,
    service: &ExternalService,
    namespace: Option<&'static str>,
    version: Version,
    lang: Option<&str>,
    action: Option<Action>,
) -> Result<(), Unrenderable> {
    xml.open("service", namespace);
    xml.attr("type", &service.kind)?;
    xml.attr("host", &service.host)?;
    if let Some(port) = service.port {
        xml.attr_u64("port", u64::from(port));
    }
    if let Some(transport) = &service.transport {
        xml.attr("transport", transport)?;
    }
    if let Some(username) = &service.username {
        xml.attr("username", username)?;
    }
    if let Some(password) = &service.password {
        xml.attr("password", password)?;
    }
    if version == Version::V2 {
        // `true`/`false`, never 1/0: Dino's parser reads "1" as false.
        xml.attr(
            "restricted",
            if service.restricted { "true" } else { "false" },
        )?;
        if let Some(expires) = service.expires {
            xml.attr("expires", &format_timestamp(expires))?;
        }
        if let Some(action) = action {
            xml.attr("action", action.name())?;
        }
    }
    if let Some(name) = service.name_for(lang) {
        xml.attr("name", name)?;
    }
    if service.extended.is_empty() {
        xml.close_empty();
        return Ok(());
    }
    xml.content();
    write_extended_form(xml, service)?;
    xml.close("service");
    Ok(())
}

/// Extended information as a `jabber:x:data` result form (XEP-0128).
fn write_extended_form(xml: &mut Xml, service: &ExternalService) -> Result<(), Unrenderable> {
    xml.open("x", Some(ns::DATA_FORMS));
    xml.attr("type", "result")?;
    xml.content();
    for (var, values) in &service.extended {
        xml.open("field", None);
        xml.attr("var", var)?;
        xml.content();
        for value in values {
            xml.open("value", None);
            xml.content();
            xml.text(value)?;
            xml.close("value");
        }
        xml.close("field");
    }
    xml.close("x");
    Ok(())
}

/// Reads a `<service/>` back (tests, and clients built on Tern).
pub fn parse_service(el: &Element) -> Option<(ExternalService, Option<Action>)> {
    let mut service = ExternalService::new(el.attr("type")?, el.attr("host")?);
    service.port = el.attr("port").and_then(|p| p.parse().ok());
    service.transport = el.attr("transport").map(Into::into);
    service.username = el.attr("username").map(str::to_string);
    service.password = el.attr("password").map(str::to_string);
    // xs:boolean: true/false/1/0.
    service.restricted = matches!(el.attr("restricted"), Some("true") | Some("1"));
    service.expires = el.attr("expires").and_then(super::prepare::parse_timestamp);
    if let Some(name) = el.attr("name") {
        service.names.insert(String::new(), name.to_string());
    }
    let action = el.attr("action").and_then(Action::parse);
    Some((service, action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{prerendered, writer, ElementExt};
    use std::time::{Duration, SystemTime};

    fn sample() -> ExternalService {
        let mut s = ExternalService::new("turn", "2001:db8::1");
        s.port = Some(3478);
        s.transport = Some("udp".into());
        s.username = Some("1700000000:x".into());
        s.password = Some("p".into());
        s.restricted = true;
        s.expires = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        s.names.insert("en".into(), "Relay".into());
        s.names.insert("de".into(), "Relais".into());
        s.extended.insert("region".into(), vec!["eu".into()]);
        s
    }

    #[test]
    fn v2_round_trip() {
        let el = service_element(&sample(), Version::V2, Some("de"), Some(Action::Modify))
            .expect("renders");
        assert_eq!(el.attr("restricted"), Some("true"));
        assert_eq!(el.attr("expires"), Some("2023-11-14T22:13:20Z"));
        assert_eq!(el.attr("name"), Some("Relais"));
        assert_eq!(el.attr("action"), Some("modify"));
        assert_eq!(el.attr("host"), Some("2001:db8::1"));
        let form = el.get_child("x", ns::DATA_FORMS).expect("form");
        assert_eq!(form.attr("type"), Some("result"));
        let (parsed, action) = parse_service(&el).expect("parses");
        assert_eq!(action, Some(Action::Modify));
        assert_eq!(parsed.expires, sample().expires);
        assert!(parsed.restricted);
        assert_eq!(parsed.username, sample().username);
    }

    #[test]
    fn v1_has_no_v2_attributes() {
        let el = service_element(&sample(), Version::V1, None, Some(Action::Add)).expect("renders");
        assert_eq!(el.ns(), NS_V1);
        for attr in ["restricted", "expires", "action"] {
            assert_eq!(el.attr(attr), None, "{attr}");
        }
        assert_eq!(el.attr("username"), Some("1700000000:x"));
    }

    #[test]
    fn booleans_accept_both_forms() {
        let el = Element::bare("service", NS_V2)
            .with("type", "turn")
            .with("host", "h")
            .with("restricted", "1");
        assert!(parse_service(&el).expect("parses").0.restricted);
        let el = el.with("restricted", "false");
        assert!(!parse_service(&el).expect("parses").0.restricted);
        assert_eq!(Action::parse("remove"), Some(Action::Delete));
    }

    #[test]
    fn credentials_requests() {
        let req: Element = "<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='h' port='3478'/><service type='turns' host='h'/></credentials>".parse().expect("xml");
        let q = parse_credentials_request(&req, Version::V2).expect("valid");
        assert_eq!(q.len(), 2);
        assert_eq!(q[1].port, None);
        for bad in [
            "<credentials xmlns='urn:xmpp:extdisco:2'><service host='h'/></credentials>",
            "<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn'/></credentials>",
            "<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='h' port='x'/></credentials>",
            "<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='h' port='70000'/></credentials>",
            "<credentials xmlns='urn:xmpp:extdisco:2'/>",
        ] {
            let req: Element = bad.parse().expect("xml");
            assert!(parse_credentials_request(&req, Version::V2).is_err(), "{bad}");
        }
        let v1: Element =
            "<credentials xmlns='urn:xmpp:extdisco:1'><service host='h'/></credentials>"
                .parse()
                .expect("xml");
        let q = parse_credentials_request(&v1, Version::V1).expect("host only is fine in :1");
        assert_eq!(q[0].kind, None);
    }

    /// What goes on the wire: the answer element, its services in order, each in the
    /// answer's namespace, and nothing of the marker that carried it.
    #[test]
    fn answers_are_written_as_rendered() {
        let mut plain = ExternalService::new("stun", "stun.example.org");
        plain.port = Some(3478);
        let answer = render(
            "services",
            Version::V2,
            Some("turn"),
            [(None, &sample()), (None, &plain)],
            Some("de"),
        );
        let written = writer::to_string(&answer);
        assert!(!written.contains("prerendered"), "{written}");
        let parsed: Element = written.parse().expect("well formed");
        assert!(parsed.is("services", NS_V2));
        assert_eq!(parsed.attr("type"), Some("turn"));
        let services: Vec<_> = parsed.children().collect();
        assert_eq!(services.len(), 2);
        assert!(services.iter().all(|s| s.is("service", NS_V2)));
        assert_eq!(services[0].attr("name"), Some("Relais"));
        assert_eq!(services[0].attr("password"), Some("p"));
        assert_eq!(services[1].attr("host"), Some("stun.example.org"));
        assert_eq!(services[1].attr("restricted"), Some("false"));
        assert_eq!(services[1].attr("username"), None);
        assert_eq!(
            Some(services[0].clone()),
            service_element(&sample(), Version::V2, Some("de"), None),
            "one renderer for answers and single services"
        );
        assert_eq!(prerendered::expand(&answer), parsed);
    }

    #[test]
    fn an_unwritable_service_is_left_out_and_the_rest_answered() {
        let mut broken = sample();
        broken.password = Some("bell\u{7}".into());
        let answer = render(
            "credentials",
            Version::V2,
            None,
            [(None, &broken), (None, &ExternalService::new("stun", "h"))],
            None,
        );
        let parsed = prerendered::expand(&answer);
        assert_eq!(parsed.children().count(), 1);
        assert_eq!(
            parsed.children().next().and_then(|s| s.attr("host")),
            Some("h")
        );
        let none = prerendered::expand(&render(
            "services",
            Version::V1,
            None,
            [(None, &broken)],
            None,
        ));
        assert!(none.is("services", NS_V1));
        assert_eq!(none.children().count(), 0);
        assert_eq!(service_element(&broken, Version::V2, None, None), None);
    }
}
