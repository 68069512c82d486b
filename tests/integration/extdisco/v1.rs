//! `urn:xmpp:extdisco:1`, served faithfully, and switched off with `v1 = false`.

use std::sync::Arc;
use std::time::Duration;

use tern::testing::TestServer;

use super::support::*;

fn config(extra: &str) -> String {
    format!(
        r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = "s"
rate_limit = false
{extra}
[[modules.external_services.services]]
type = "stun"
[[modules.external_services.services]]
type = "turn"
transport = "udp"
[[modules.external_services.services]]
type = "turn"
transport = "tcp"
[[modules.external_services.services]]
type = "turns"
"#
    )
}

const V1_SERVICES: &str =
    "<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:1'/></iq>";

#[tokio::test]
async fn services_in_v1_are_answered_in_v1_without_v2_attributes() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config(""))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(V1_SERVICES).await?;
    assert_eq!(reply.attr("type"), Some("result"), "{}", show(&reply));
    let answer = payload(&reply);
    assert_eq!((answer.name(), answer.ns().as_str()), ("services", NS_V1));
    let elements = service_elements(&reply);
    assert_eq!(elements.len(), 4, "{}", show(&reply));
    for service in &elements {
        assert_eq!(service.ns(), NS_V1, "{}", show(service));
        for attr in ["restricted", "expires", "action"] {
            assert_eq!(service.attr(attr), None, "{attr} in {}", show(service));
        }
        assert!(service.attr("port").is_some() && service.attr("transport").is_some());
    }
    // Credentials still travel inline.
    let turn = &elements[1];
    assert_eq!(turn.attr("type"), Some("turn"));
    let username = turn.attr("username").expect("username");
    assert_eq!(
        turn.attr("password"),
        Some(tern::modules::external_services::credentials::turn_password("s", username).as_str())
    );

    // A :1 services request does not subscribe to :2 pushes.
    let host = server.host("localhost").expect("host");
    host.add_item(
        "test",
        Arc::new(item("stun", "stun2.example.org", 3478, "udp")),
    );
    romeo.expect_silence(Duration::from_millis(400)).await?;
    Ok(())
}

#[tokio::test]
async fn credentials_in_v1_may_name_only_the_host() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config(""))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><credentials xmlns='urn:xmpp:extdisco:1'><service host='turn.example.org'/></credentials></iq>")
        .await?;
    assert_eq!(reply.attr("type"), Some("result"), "{}", show(&reply));
    let answer = payload(&reply);
    assert_eq!(
        (answer.name(), answer.ns().as_str()),
        ("credentials", NS_V1)
    );
    let elements = service_elements(&reply);
    let kinds: Vec<(&str, &str)> = elements
        .iter()
        .map(|s| {
            (
                s.attr("type").unwrap_or(""),
                s.attr("transport").unwrap_or(""),
            )
        })
        .collect();
    // Every restricted service on that host, of any type; never the STUN one.
    assert_eq!(
        kinds,
        vec![("turn", "udp"), ("turn", "tcp"), ("turns", "tcp")]
    );
    for service in &elements {
        assert!(service.attr("username").is_some() && service.attr("password").is_some());
        for attr in ["restricted", "expires"] {
            assert_eq!(service.attr(attr), None, "{attr} in {}", show(service));
        }
    }
    // The same request in :2 needs a type.
    let reply = romeo
        .iq_str(&credentials_iq("<service host='turn.example.org'/>"))
        .await?;
    assert_error(&reply, "bad-request", "modify");
    Ok(())
}

#[tokio::test]
async fn v1_false_turns_v1_off() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("v1 = false"))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    assert_error(
        &romeo.iq_str(V1_SERVICES).await?,
        "service-unavailable",
        "cancel",
    );
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><credentials xmlns='urn:xmpp:extdisco:1'><service host='turn.example.org'/></credentials></iq>")
        .await?;
    assert_error(&reply, "service-unavailable", "cancel");
    let features = server_features(&mut romeo).await?;
    assert!(features.iter().any(|f| f == NS_V2), "{features:?}");
    assert!(!features.iter().any(|f| f == NS_V1), "{features:?}");
    // :2 is unaffected.
    assert_eq!(services(&romeo.iq_str(SERVICES).await?).len(), 4);
    Ok(())
}
