//! The example module (jid_credentials.rs) through a real server.

use crate::common::error_condition;
use tern::modules::external_services::xml::parse_service;
use tern::modules::external_services::ExternalService;
use tern::testing::TestServer;
use tern::xml::Element;

const CONFIG: &str = r#"
modules_enabled = ["disco", "ping", "external_services", "jid_credentials"]
[modules.external_services]
host = "turn.example.org"
provider_timeout = 1
rate_limit = false
[[modules.external_services.services]]
type = "turn"
provider = "jid"
[[modules.external_services.services]]
type = "stun"
host = "legacy.example.org"
"#;

async fn server() -> anyhow::Result<TestServer> {
    TestServer::builder()
        .module(super::jid_credentials::MODULE)
        .user("alice", "pw")
        .user("bob", "pw")
        .user("mallory", "pw")
        .user("slowpoke", "pw")
        .user("eve", "pw")
        .config_toml(CONFIG)
        .start()
        .await
}

fn services(reply: &Element) -> Vec<ExternalService> {
    reply
        .children()
        .next()
        .map(|p| {
            p.children()
                .filter_map(|s| parse_service(s).map(|(s, _)| s))
                .collect()
        })
        .unwrap_or_default()
}

const SERVICES: &str = "<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>";

#[tokio::test]
async fn each_user_gets_credentials_bound_to_their_jid() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = server.client("alice").await?;
    let mut bob = server.client("bob").await?;
    let a = services(&alice.iq_str(SERVICES).await?);
    let b = services(&bob.iq_str(SERVICES).await?);
    let shared = |list: &[ExternalService]| {
        list.iter()
            .find(|s| s.host == "turn.example.org")
            .cloned()
            .expect("shared relay")
    };
    assert_eq!(shared(&a).username.as_deref(), Some("user-alice@localhost"));
    assert_eq!(shared(&b).username.as_deref(), Some("user-bob@localhost"));
    assert!(shared(&a).expires.is_some());
    // The handler added a personal relay and dropped the legacy one.
    assert!(a
        .iter()
        .any(|s| s.host == "alice.relay.example.org"
            && s.username.as_deref() == Some("static-alice")));
    assert!(!a.iter().any(|s| s.host == "legacy.example.org"));
    assert!(!b.iter().any(|s| s.host == "alice.relay.example.org"));
    Ok(())
}

#[tokio::test]
async fn provider_failures_become_the_xep_errors() -> anyhow::Result<()> {
    let server = server().await?;
    let mut mallory = server.client("mallory").await?;
    assert_eq!(
        error_condition(&mallory.iq_str(SERVICES).await?).as_deref(),
        Some("not-authorized")
    );
    let mut slowpoke = server.client("slowpoke").await?;
    let reply = slowpoke.iq_str(SERVICES).await?;
    assert_eq!(
        error_condition(&reply).as_deref(),
        Some("remote-server-timeout")
    );
    // Exactly one reply: nothing else arrives later.
    slowpoke
        .expect_silence(std::time::Duration::from_millis(300))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_credentials_handler_can_fail_the_request() -> anyhow::Result<()> {
    let server = server().await?;
    let ask = "<iq type='get' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.org'/></credentials></iq>";
    let mut eve = server.client("eve").await?;
    let reply = eve.iq_str(ask).await?;
    assert_eq!(error_condition(&reply).as_deref(), Some("forbidden"));
    eve.expect_silence(std::time::Duration::from_millis(200))
        .await?;
    let mut alice = server.client("alice").await?;
    let reply = alice.iq_str(ask).await?;
    let list = services(&reply);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].username.as_deref(), Some("user-alice@localhost"));
    Ok(())
}
