use std::time::{Duration, SystemTime};

use tern::modules::external_services::credentials::turn_password;
use tern::modules::external_services::xml::parse_service;
use tern::testing::TestServer;
use tern::xml::Element;

const CONFIG: &str = r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = ["current-secret", "old-secret"]
ttl = 3600
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
name = { en = "Relay over TLS", de = "Relais über TLS" }
"#;

fn services(reply: &Element) -> Vec<tern::modules::external_services::ExternalService> {
    reply
        .children()
        .next()
        .map(|payload| {
            payload
                .children()
                .filter_map(|s| parse_service(s).map(|(s, _)| s))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn services_with_inline_turn_rest_credentials() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        tern::xml::writer::to_string(&reply)
    );
    let list = services(&reply);
    assert_eq!(list.len(), 4);
    let stun = &list[0];
    assert_eq!(
        (
            stun.kind.as_str(),
            stun.port,
            stun.transport.as_deref(),
            stun.restricted
        ),
        ("stun", Some(3478), Some("udp"), false)
    );
    assert!(stun.username.is_none());
    let now = SystemTime::now();
    for turn in &list[1..] {
        assert!(turn.restricted);
        let username = turn.username.clone().expect("username");
        let password = turn.password.clone().expect("password");
        // Signed with the first secret: what coturn with use-auth-secret recomputes.
        assert_eq!(password, turn_password("current-secret", &username));
        let expiry: u64 = username.split(':').next().expect("expiry").parse()?;
        let expires = turn.expires.expect("expires always present");
        assert_eq!(
            expires.duration_since(SystemTime::UNIX_EPOCH)?.as_secs(),
            expiry
        );
        let lifetime = expires.duration_since(now)?;
        assert!(
            lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3601),
            "{lifetime:?}"
        );
        // The default user part is an opaque hash, not the JID.
        assert!(!username.contains("romeo"));
    }
    assert_eq!(list[3].port, Some(5349));
    assert_eq!(list[3].transport.as_deref(), Some("tcp"));
    Ok(())
}

#[tokio::test]
async fn type_filter_is_echoed_and_unknown_type_is_empty() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='turn'/></iq>")
        .await?;
    let payload = reply.children().next().expect("payload");
    assert_eq!(payload.attr("type"), Some("turn"));
    assert_eq!(services(&reply).len(), 2);
    let reply = romeo
        .iq_str(
            "<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='ftp'/></iq>",
        )
        .await?;
    assert_eq!(reply.attr("type"), Some("result"));
    assert!(services(&reply).is_empty());
    Ok(())
}

#[tokio::test]
async fn credentials_request_and_errors() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.org'/></credentials></iq>")
        .await?;
    let payload = reply.children().next().expect("payload");
    assert_eq!(
        payload.name(),
        "credentials",
        "answer with <credentials/>, not <services/>"
    );
    let list = services(&reply);
    assert_eq!(list.len(), 2, "no port matches every port and transport");
    assert!(list
        .iter()
        .all(|s| s.password.is_some() && s.port.is_some() && s.transport.is_some()));

    for (request, condition) in [
        ("<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org'/></credentials>", "bad-request"),
        ("<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.org' port='x'/></credentials>", "bad-request"),
        ("<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='elsewhere.example'/></credentials>", "item-not-found"),
        ("<credentials xmlns='urn:xmpp:extdisco:2'><service type='stun' host='turn.example.org'/></credentials>", "item-not-found"),
    ] {
        let reply = romeo.iq_str(&format!("<iq type='get' to='localhost'>{request}</iq>")).await?;
        assert_eq!(reply.attr("type"), Some("error"), "{request}");
        let error = reply.get_child("error", tern::xml::ns::CLIENT).expect("error");
        assert!(error.children().any(|c| c.name() == condition), "{request}: {}", tern::xml::writer::to_string(&reply));
    }
    let reply = romeo
        .iq_str("<iq type='set' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
        .await?;
    let error = reply
        .get_child("error", tern::xml::ns::CLIENT)
        .expect("error");
    assert!(error.children().any(|c| c.name() == "not-allowed"));
    Ok(())
}

#[tokio::test]
async fn item_added_by_a_module_is_pushed() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
        .await?;
    assert_eq!(services(&reply).len(), 4);
    let host = server.host("localhost").expect("host");
    let mut extra =
        tern::modules::external_services::ExternalService::new("stun", "stun2.example.org");
    extra.port = Some(3478);
    extra.transport = Some("udp".into());
    let id = host.add_item("test", std::sync::Arc::new(extra));
    let push = romeo
        .expect_where(|s| s.name() == "iq" && s.attr("type") == Some("set"))
        .await?;
    let payload = push.children().next().expect("payload");
    let (service, action) =
        parse_service(payload.children().next().expect("service")).expect("service");
    assert_eq!(action.map(|a| a.name()), Some("add"));
    assert_eq!(service.host, "stun2.example.org");
    romeo.send(&tern::stanza::iq_result(&push, None)).await?;
    assert!(host.remove_item::<tern::modules::external_services::ExternalService>(id));
    let push = romeo
        .expect_where(|s| s.name() == "iq" && s.attr("type") == Some("set"))
        .await?;
    let payload = push.children().next().expect("payload");
    let (_, action) = parse_service(payload.children().next().expect("service")).expect("service");
    assert_eq!(action.map(|a| a.name()), Some("delete"));
    Ok(())
}

#[tokio::test]
async fn disco_advertises_both_namespaces() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    let features: Vec<String> = reply
        .children()
        .next()
        .expect("query")
        .children()
        .filter_map(|f| f.attr("var").map(str::to_string))
        .collect();
    assert!(
        features.contains(&"urn:xmpp:extdisco:2".to_string()),
        "{features:?}"
    );
    assert!(features.contains(&"urn:xmpp:extdisco:1".to_string()));
    Ok(())
}
