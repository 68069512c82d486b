//! Pushes: reloads and credential refreshes reach sessions that asked.

use std::time::Duration;

use tern::modules::external_services::xml::{parse_service, Action};
use tern::modules::external_services::ExternalService;
use tern::testing::{TestClient, TestServer};
use tern::xml::Element;

const SERVICES: &str = "<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>";

fn config(extra_service: &str, ttl: u32) -> String {
    format!(
        r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = "s"
ttl = {ttl}
rate_limit = false
[[modules.external_services.services]]
type = "turn"
{extra_service}
"#
    )
}

fn pushed(push: &Element) -> Vec<(Action, ExternalService)> {
    push.children()
        .next()
        .map(|p| {
            p.children()
                .filter_map(parse_service)
                .filter_map(|(s, a)| a.map(|a| (a, s)))
                .collect()
        })
        .unwrap_or_default()
}

async fn next_push(client: &mut TestClient) -> anyhow::Result<Element> {
    let push = client
        .expect_where(|s| s.name() == "iq" && s.attr("type") == Some("set"))
        .await?;
    client.send(&tern::stanza::iq_result(&push, None)).await?;
    Ok(push)
}

#[tokio::test]
async fn reload_pushes_added_and_removed_services() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("", 3600))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(SERVICES).await?;
    assert_eq!(reply.attr("type"), Some("result"));
    let with_stun = config(
        "[[modules.external_services.services]]\ntype = \"stun\"\nhost = \"stun.example.org\"",
        3600,
    );
    server
        .reload_toml(&with_stun)
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let push = next_push(&mut romeo).await?;
    let changes = pushed(&push);
    assert_eq!(
        changes.len(),
        1,
        "only the new service: {}",
        tern::xml::writer::to_string(&push)
    );
    assert_eq!(changes[0].0, Action::Add);
    assert_eq!(changes[0].1.host, "stun.example.org");
    assert_eq!(push.attr("from"), Some("localhost"));

    server
        .reload_toml(&config("", 3600))
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let changes = pushed(&next_push(&mut romeo).await?);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, Action::Delete);
    assert!(
        changes[0].1.password.is_none(),
        "a deletion carries no credentials"
    );
    Ok(())
}

#[tokio::test]
async fn broken_reload_is_rejected_and_old_services_stay() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("", 3600))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    romeo.iq_str(SERVICES).await?;
    let broken = config(
        "[[modules.external_services.services]]\nhost = \"no-type.example.org\"",
        3600,
    );
    server
        .reload_toml(&broken)
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    romeo.expect_silence(Duration::from_millis(300)).await?;
    let reply = romeo.iq_str(SERVICES).await?;
    let hosts: Vec<String> = reply
        .children()
        .next()
        .expect("payload")
        .children()
        .filter_map(|s| s.attr("host").map(str::to_string))
        .collect();
    assert_eq!(hosts, vec!["turn.example.org".to_string()]);
    assert!(
        server.reload_toml("storage = 'nonsense'").await.is_err(),
        "core errors reject the reload"
    );
    Ok(())
}

#[tokio::test]
async fn credentials_are_refreshed_before_they_expire() -> anyhow::Result<()> {
    // 2 s credentials, refreshed at 80%: a push after ~1.6 s.
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("", 2))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo.iq_str(SERVICES).await?;
    let first = reply
        .children()
        .next()
        .and_then(|p| p.children().next())
        .and_then(parse_service)
        .expect("service")
        .0;
    let started = std::time::Instant::now();
    let push = next_push(&mut romeo).await?;
    let elapsed = started.elapsed();
    let changes = pushed(&push);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, Action::Modify);
    let fresh = &changes[0].1;
    assert_ne!(fresh.username, first.username, "new credentials");
    assert!(fresh.expires > first.expires);
    assert!(
        elapsed < Duration::from_secs(2),
        "before expiry: {elapsed:?}"
    );
    // And again for the fresh credentials.
    let again = pushed(&next_push(&mut romeo).await?);
    assert_eq!(again[0].0, Action::Modify);
    Ok(())
}

#[tokio::test]
async fn an_error_reply_ends_the_subscription() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config("", 2))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    romeo.iq_str(SERVICES).await?;
    let push = romeo
        .expect_where(|s| s.name() == "iq" && s.attr("type") == Some("set"))
        .await?;
    let error = tern::stanza::error_reply(
        &push,
        &tern::stanza::StanzaError::new(tern::stanza::Condition::ServiceUnavailable),
    );
    romeo.send(&error).await?;
    romeo.expect_silence(Duration::from_millis(2500)).await?;
    Ok(())
}
