//! Pushes go only where they belong: by the requested type, and only while the session
//! that asked is online.

use std::sync::Arc;
use std::time::Duration;

use tern::modules::external_services::xml::Action;
use tern::modules::external_services::ExternalService;
use tern::testing::TestServer;

use super::support::*;

const CONFIG: &str = r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = "s"
rate_limit = false
"#;

async fn server() -> anyhow::Result<TestServer> {
    TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await
}

#[tokio::test]
async fn a_typed_subscription_gets_only_its_type() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>")
        .await?;
    assert_eq!(services(&reply).len(), 1);
    let host = server.host("localhost").expect("host");

    let turn = host.add_item(
        "test",
        Arc::new(item("turn", "relay2.example.org", 3478, "udp")),
    );
    romeo.expect_silence(Duration::from_millis(400)).await?;
    assert!(host.remove_item::<ExternalService>(turn));
    romeo.expect_silence(Duration::from_millis(400)).await?;

    host.add_item(
        "test",
        Arc::new(item("stun", "stun2.example.org", 3478, "udp")),
    );
    let push = next_push(&mut romeo).await?;
    assert_eq!(payload(&push).attr("type"), Some("stun"), "{}", show(&push));
    let changes = pushed(&push);
    assert_eq!(changes.len(), 1, "{}", show(&push));
    assert_eq!(changes[0].0, Action::Add);
    assert_eq!(
        (changes[0].1.kind.as_str(), changes[0].1.host.as_str()),
        ("stun", "stun2.example.org")
    );
    Ok(())
}

#[tokio::test]
async fn an_untyped_and_a_typed_subscription_of_one_session_each_get_theirs() -> anyhow::Result<()>
{
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    assert_eq!(services(&romeo.iq_str(SERVICES).await?).len(), 2);
    romeo
        .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>")
        .await?;
    let host = server.host("localhost").expect("host");
    host.add_item(
        "test",
        Arc::new(item("turn", "relay2.example.org", 3478, "udp")),
    );
    // Only the untyped subscription sees a TURN service.
    let push = next_push(&mut romeo).await?;
    assert_eq!(payload(&push).attr("type"), None, "{}", show(&push));
    let changes = pushed(&push);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].1.host, "relay2.example.org");
    romeo.expect_silence(Duration::from_millis(300)).await?;
    Ok(())
}

#[tokio::test]
async fn pushes_end_with_the_session() -> anyhow::Result<()> {
    let server = server().await?;
    let mut options = server.options("romeo", "pw");
    options.resource = Some("phone".to_string());
    let mut first = server.client_with(options.clone()).await?;
    assert_eq!(services(&first.iq_str(SERVICES).await?).len(), 2);
    first.close().await?;

    // A fresh session with the same full JID, which never asked for services.
    let mut second = server.client_with(options).await?;
    assert_eq!(second.jid().resource().as_str(), "phone");
    let host = server.host("localhost").expect("host");
    host.add_item(
        "test",
        Arc::new(item("stun", "stun2.example.org", 3478, "udp")),
    );
    second.expect_silence(Duration::from_millis(500)).await?;

    // Asking subscribes it, as usual.
    assert_eq!(services(&second.iq_str(SERVICES).await?).len(), 3);
    host.add_item(
        "test",
        Arc::new(item("stun", "stun3.example.org", 3478, "udp")),
    );
    let changes = pushed(&next_push(&mut second).await?);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].1.host, "stun3.example.org");
    Ok(())
}

#[tokio::test]
async fn push_false_sends_no_pushes() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&format!("{CONFIG}push = false\n"))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    assert_eq!(services(&romeo.iq_str(SERVICES).await?).len(), 2);
    let host = server.host("localhost").expect("host");
    host.add_item(
        "test",
        Arc::new(item("stun", "stun2.example.org", 3478, "udp")),
    );
    romeo.expect_silence(Duration::from_millis(400)).await?;
    assert_eq!(services(&romeo.iq_str(SERVICES).await?).len(), 3);
    Ok(())
}

#[tokio::test]
async fn pushes_use_the_language_of_the_request() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost' xml:lang='de'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
        .await?;
    assert_eq!(services(&reply).len(), 2);
    let mut named = item("stun", "stun2.example.org", 3478, "udp");
    named
        .names
        .insert("en".to_string(), "Second STUN".to_string());
    named
        .names
        .insert("de".to_string(), "Zweiter STUN".to_string());
    let host = server.host("localhost").expect("host");
    host.add_item("test", Arc::new(named));
    let push = next_push(&mut romeo).await?;
    let elements = service_elements(&push);
    assert_eq!(elements.len(), 1, "{}", show(&push));
    assert_eq!(elements[0].attr("name"), Some("Zweiter STUN"));
    assert_eq!(elements[0].attr("action"), Some("add"));
    Ok(())
}
