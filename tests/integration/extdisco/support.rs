//! Helpers shared by the external_services integration tests.

use std::time::Duration;

use tern::modules::external_services::xml::{parse_service, Action};
use tern::modules::external_services::ExternalService;
use tern::testing::TestClient;
use tern::xml::{ns, writer, Element};

pub const SERVICES: &str =
    "<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>";
pub const NS_V2: &str = "urn:xmpp:extdisco:2";
pub const NS_V1: &str = "urn:xmpp:extdisco:1";

/// A credentials request (`:2`) for the given `<service/>` children.
pub fn credentials_iq(services: &str) -> String {
    format!(
        "<iq type='get' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'>{services}</credentials></iq>"
    )
}

pub fn show(stanza: &Element) -> String {
    writer::to_string(stanza)
}

/// The payload (`<services/>` or `<credentials/>`) of a reply.
pub fn payload(reply: &Element) -> &Element {
    reply
        .children()
        .find(|c| c.ns() != ns::CLIENT || c.name() != "error")
        .unwrap_or_else(|| panic!("no payload in {}", show(reply)))
}

/// The raw `<service/>` elements of a reply, to check attributes as sent.
pub fn service_elements(reply: &Element) -> Vec<Element> {
    payload(reply)
        .children()
        .filter(|c| c.name() == "service")
        .cloned()
        .collect()
}

/// The services of a result, parsed back.
pub fn services(reply: &Element) -> Vec<ExternalService> {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "expected a result: {}",
        show(reply)
    );
    service_elements(reply)
        .iter()
        .filter_map(|s| parse_service(s).map(|(s, _)| s))
        .collect()
}

/// The defined condition of an error reply.
pub fn condition(reply: &Element) -> Option<String> {
    reply
        .get_child("error", ns::CLIENT)?
        .children()
        .find(|c| c.ns() == ns::STANZAS_ERR && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// The `type` of an error reply's `<error/>`.
pub fn error_type(reply: &Element) -> Option<String> {
    reply
        .get_child("error", ns::CLIENT)?
        .attr("type")
        .map(str::to_string)
}

/// Asserts that `reply` is an error with `expected` condition and type.
pub fn assert_error(reply: &Element, expected: &str, kind: &str) {
    assert_eq!(reply.attr("type"), Some("error"), "{}", show(reply));
    assert_eq!(
        condition(reply).as_deref(),
        Some(expected),
        "{}",
        show(reply)
    );
    assert_eq!(error_type(reply).as_deref(), Some(kind), "{}", show(reply));
}

/// The disco#info features of the server, as `client` sees them.
pub async fn server_features(client: &mut TestClient) -> anyhow::Result<Vec<String>> {
    let reply = client
        .iq_str("<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    assert_eq!(reply.attr("type"), Some("result"), "{}", show(&reply));
    Ok(reply
        .children()
        .next()
        .map(|q| {
            q.children()
                .filter(|f| f.name() == "feature")
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

fn is_push(stanza: &Element) -> bool {
    stanza.name() == "iq"
        && stanza.attr("type") == Some("set")
        && stanza.children().any(|c| c.name() == "services")
}

/// The next services push, acknowledged with a result.
pub async fn next_push(client: &mut TestClient) -> anyhow::Result<Element> {
    let push = tokio::time::timeout(Duration::from_secs(5), client.expect_where(is_push))
        .await
        .map_err(|_| anyhow::anyhow!("no push within 5 s"))??;
    client.send(&tern::stanza::iq_result(&push, None)).await?;
    Ok(push)
}

/// The `(action, service)` pairs of a push.
pub fn pushed(push: &Element) -> Vec<(Action, ExternalService)> {
    payload(push)
        .children()
        .filter_map(parse_service)
        .filter_map(|(s, a)| a.map(|a| (a, s)))
        .collect()
}

/// A service as a module would add it as an item.
pub fn item(kind: &str, host: &str, port: u16, transport: &str) -> ExternalService {
    let mut service = ExternalService::new(kind, host);
    service.port = Some(port);
    service.transport = Some(transport.into());
    service
}

/// The expiry (unix seconds) at the start of a TURN REST username.
pub fn username_expiry(username: &str) -> u64 {
    username
        .split(':')
        .next()
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no expiry in {username:?}"))
}
