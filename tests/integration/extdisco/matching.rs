//! Which services a credentials request matches; IQ sets; requests without `to`.

use tern::modules::external_services::ExternalService;
use tern::testing::TestServer;

use super::support::*;

const CONFIG: &str = r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = "s"
rate_limit = false
[[modules.external_services.services]]
type = "stun"
[[modules.external_services.services]]
type = "turn"
transport = "udp"
[[modules.external_services.services]]
type = "turn"
transport = "tcp"
[[modules.external_services.services]]
type = "turn"
port = 80
transport = "tcp"
[[modules.external_services.services]]
type = "turns"
port = 443
[[modules.external_services.services]]
type = "turn"
host = "2001:db8::1"
"#;

async fn server() -> anyhow::Result<TestServer> {
    TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await
}

fn summary(list: &[ExternalService]) -> Vec<(String, String, u16, String)> {
    list.iter()
        .map(|s| {
            assert!(
                s.username.is_some() && s.password.is_some(),
                "credentials for {s:?}"
            );
            (
                s.kind.to_string(),
                s.host.to_string(),
                s.port.expect("port"),
                s.transport.as_deref().expect("transport").to_string(),
            )
        })
        .collect()
}

fn entry(kind: &str, host: &str, port: u16, transport: &str) -> (String, String, u16, String) {
    (
        kind.to_string(),
        host.to_string(),
        port,
        transport.to_string(),
    )
}

const H: &str = "turn.example.org";

#[tokio::test]
async fn port_and_transport_narrow_the_match() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let ask = |services: &str| credentials_iq(services);

    // No port, no transport: every turn service on that host.
    let reply = romeo
        .iq_str(&ask("<service type='turn' host='turn.example.org'/>"))
        .await?;
    assert_eq!(
        summary(&services(&reply)),
        vec![
            entry("turn", H, 3478, "udp"),
            entry("turn", H, 3478, "tcp"),
            entry("turn", H, 80, "tcp"),
        ]
    );
    // A port: only that port.
    let reply = romeo
        .iq_str(&ask(
            "<service type='turn' host='turn.example.org' port='80'/>",
        ))
        .await?;
    assert_eq!(
        summary(&services(&reply)),
        vec![entry("turn", H, 80, "tcp")]
    );
    // A transport: only that transport.
    let reply = romeo
        .iq_str(&ask(
            "<service type='turn' host='turn.example.org' transport='tcp'/>",
        ))
        .await?;
    assert_eq!(
        summary(&services(&reply)),
        vec![entry("turn", H, 3478, "tcp"), entry("turn", H, 80, "tcp")]
    );
    // Both.
    let reply = romeo
        .iq_str(&ask(
            "<service type='turn' host='turn.example.org' port='3478' transport='udp'/>",
        ))
        .await?;
    assert_eq!(
        summary(&services(&reply)),
        vec![entry("turn", H, 3478, "udp")]
    );
    // A port nothing listens on, or a transport nothing uses: item-not-found.
    for miss in [
        "<service type='turn' host='turn.example.org' port='3479'/>",
        "<service type='turns' host='turn.example.org' transport='udp'/>",
        "<service type='turn' host='turn.example.org' port='80' transport='udp'/>",
    ] {
        assert_error(&romeo.iq_str(&ask(miss)).await?, "item-not-found", "cancel");
    }
    // IPv6 literals, with or without brackets.
    for host in ["2001:db8::1", "[2001:db8::1]"] {
        let reply = romeo
            .iq_str(&ask(&format!("<service type='turn' host='{host}'/>")))
            .await?;
        assert_eq!(
            summary(&services(&reply)),
            vec![entry("turn", "2001:db8::1", 3478, "udp")],
            "{host}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn several_services_in_one_request_give_the_union() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='turns' host='turn.example.org'/>\
             <service type='turn' host='turn.example.org' port='80'/>\
             <service type='turn' host='turn.example.org' transport='tcp'/>\
             <service type='turn' host='nowhere.example'/>",
        ))
        .await?;
    // Each matching service once, in configuration order; the query that matches
    // nothing does not fail the others.
    assert_eq!(
        summary(&services(&reply)),
        vec![
            entry("turn", H, 3478, "tcp"),
            entry("turn", H, 80, "tcp"),
            entry("turns", H, 443, "tcp"),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn unrestricted_services_never_match() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    for query in [
        "<service type='stun' host='turn.example.org'/>",
        "<service type='stun' host='turn.example.org' port='3478' transport='udp'/>",
    ] {
        assert_error(
            &romeo.iq_str(&credentials_iq(query)).await?,
            "item-not-found",
            "cancel",
        );
    }
    // Asked together with a restricted one, the STUN service is simply not listed.
    let reply = romeo
        .iq_str(&credentials_iq(
            "<service type='stun' host='turn.example.org'/><service type='turn' host='turn.example.org' port='80'/>",
        ))
        .await?;
    assert_eq!(
        summary(&services(&reply)),
        vec![entry("turn", H, 80, "tcp")]
    );
    Ok(())
}

#[tokio::test]
async fn iq_set_is_not_allowed_for_either_request() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    for request in [
        "<iq type='set' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.org'/></credentials></iq>",
        "<iq type='set' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>",
        "<iq type='set' to='localhost'><credentials xmlns='urn:xmpp:extdisco:1'><service host='turn.example.org'/></credentials></iq>",
        "<iq type='set' to='localhost'><services xmlns='urn:xmpp:extdisco:1'/></iq>",
    ] {
        assert_error(&romeo.iq_str(request).await?, "not-allowed", "cancel");
    }
    Ok(())
}

#[tokio::test]
async fn requests_without_to_are_answered_by_the_server() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
        .await?;
    assert_eq!(services(&reply).len(), 6, "{}", show(&reply));
    let reply = romeo
        .iq_str("<iq type='get' to='romeo@localhost'><services xmlns='urn:xmpp:extdisco:2' type='turns'/></iq>")
        .await?;
    assert_eq!(services(&reply).len(), 1, "{}", show(&reply));
    let reply = romeo
        .iq_str("<iq type='get'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.org' port='80'/></credentials></iq>")
        .await?;
    assert_eq!(
        summary(&services(&reply)),
        vec![entry("turn", H, 80, "tcp")]
    );
    Ok(())
}
