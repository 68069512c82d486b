//! The per-account limit on credential issuance.

use tern::testing::TestServer;

use super::support::*;

fn config(rate_limit: &str) -> String {
    format!(
        r#"
modules_enabled = ["disco", "ping", "external_services"]
[modules.external_services]
host = "turn.example.org"
secret = "s"
{rate_limit}
[[modules.external_services.services]]
type = "stun"
[[modules.external_services.services]]
type = "turn"
[[modules.external_services.services]]
type = "ftp"
host = "files.example.org"
port = 21
transport = "tcp"
username = "static"
password = "static"
"#
    )
}

const CREDENTIALS: &str = "<service type='turn' host='turn.example.org'/>";

async fn server(rate_limit: &str) -> anyhow::Result<TestServer> {
    TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(&config(rate_limit))
        .start()
        .await
}

#[tokio::test]
async fn the_third_credentials_request_in_a_minute_waits() -> anyhow::Result<()> {
    let server = server("rate_limit = 2").await?;
    let mut romeo = server.client("romeo").await?;
    // Services requests that mint nothing are not counted: STUN only, and a service with
    // static credentials.
    for kind in ["stun", "ftp", "stun", "ftp", "nothing-of-this-type"] {
        let reply = romeo
            .iq_str(&format!(
                "<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='{kind}'/></iq>"
            ))
            .await?;
        assert_eq!(reply.attr("type"), Some("result"), "{}", show(&reply));
    }
    // Nor are credentials requests that match nothing.
    for _ in 0..3 {
        let reply = romeo
            .iq_str(&credentials_iq(
                "<service type='turn' host='elsewhere.example'/>",
            ))
            .await?;
        assert_error(&reply, "item-not-found", "cancel");
    }
    for attempt in 1..=2 {
        let reply = romeo.iq_str(&credentials_iq(CREDENTIALS)).await?;
        assert_eq!(services(&reply).len(), 1, "attempt {attempt}");
    }
    let reply = romeo.iq_str(&credentials_iq(CREDENTIALS)).await?;
    assert_error(&reply, "resource-constraint", "wait");
    // A services request that would mint TURN credentials inline counts too.
    assert_error(
        &romeo.iq_str(SERVICES).await?,
        "resource-constraint",
        "wait",
    );
    // ... while one that mints nothing still goes through.
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>")
        .await?;
    assert_eq!(services(&reply).len(), 1);
    // The limit is per account.
    let mut juliet = server.client("juliet").await?;
    let reply = juliet.iq_str(&credentials_iq(CREDENTIALS)).await?;
    assert_eq!(services(&reply).len(), 1);
    Ok(())
}

#[tokio::test]
async fn services_requests_minting_inline_are_counted() -> anyhow::Result<()> {
    let server = server("rate_limit = 2").await?;
    let mut romeo = server.client("romeo").await?;
    for _ in 0..2 {
        let list = services(&romeo.iq_str(SERVICES).await?);
        assert!(list
            .iter()
            .any(|s| s.kind == "turn" && s.password.is_some()));
    }
    assert_error(
        &romeo.iq_str(SERVICES).await?,
        "resource-constraint",
        "wait",
    );
    assert_error(
        &romeo.iq_str(&credentials_iq(CREDENTIALS)).await?,
        "resource-constraint",
        "wait",
    );
    Ok(())
}

#[tokio::test]
async fn the_default_limit_is_a_burst_of_twenty() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut romeo = server.client("romeo").await?;
    let started = std::time::Instant::now();
    for attempt in 1..=20 {
        let reply = romeo.iq_str(&credentials_iq(CREDENTIALS)).await?;
        assert_eq!(reply.attr("type"), Some("result"), "attempt {attempt}");
    }
    let reply = romeo.iq_str(&credentials_iq(CREDENTIALS)).await?;
    // 10 per minute refill one token every 6 s; on a very slow machine one may have
    // come back already.
    if started.elapsed() < std::time::Duration::from_secs(5) {
        assert_error(&reply, "resource-constraint", "wait");
    }
    Ok(())
}

#[tokio::test]
async fn rate_limit_false_never_limits() -> anyhow::Result<()> {
    let server = server("rate_limit = false").await?;
    let mut romeo = server.client("romeo").await?;
    for attempt in 1..=30 {
        let reply = romeo.iq_str(&credentials_iq(CREDENTIALS)).await?;
        assert_eq!(services(&reply).len(), 1, "attempt {attempt}");
        let reply = romeo.iq_str(SERVICES).await?;
        assert_eq!(reply.attr("type"), Some("result"), "attempt {attempt}");
    }
    Ok(())
}
