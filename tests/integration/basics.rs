use tern::testing::TestServer;
use tern::xml::{ns, ElementExt};

#[tokio::test]
async fn login_and_message_both_ways() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    romeo.available().await?;
    juliet.available().await?;
    romeo
        .send_str("<message to='juliet@localhost' type='chat' id='m1'><body>hi</body></message>")
        .await?;
    let got = juliet.expect_where(|s| s.name() == "message").await?;
    assert_eq!(got.attr("from"), Some(romeo.jid().to_string().as_str()));
    assert_eq!(
        got.get_child("body", ns::CLIENT)
            .map(|b| b.text())
            .as_deref(),
        Some("hi")
    );
    let reply = tern::xml::Element::bare("message", ns::CLIENT)
        .with("to", romeo.jid().to_string())
        .with("type", "chat")
        .with_child(tern::xml::Element::bare("body", ns::CLIENT).with_text("hello"));
    juliet.send(&reply).await?;
    let got = romeo.expect_where(|s| s.name() == "message").await?;
    assert_eq!(got.attr("from"), Some(juliet.jid().to_string().as_str()));
    Ok(())
}

#[tokio::test]
async fn tls_login_starttls_and_direct() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .tls(true)
        .user("romeo", "pw")
        .start()
        .await?;
    let mut client = server.client("romeo").await?;
    let pong = client
        .iq_str("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(pong.attr("type"), Some("result"));
    let mut options = server.options("romeo", "pw");
    options.tls = tern::testing::TlsMode::Direct;
    options.addr = server.direct_tls_addr().expect("direct tls");
    let mut direct = server.client_with(options).await?;
    let pong = direct
        .iq_str("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(pong.attr("type"), Some("result"));
    Ok(())
}

/// A client that keeps its connection open but stops reading stalls the session's
/// writes; after `ping_timeout` the connection counts as lost and the session ends
/// (before, the session task waited on the socket forever, its close queued behind).
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml("[limits]\noutbound_queue = 16\nrate = 0\nping_timeout = 1")
        .start()
        .await?;
    let romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    let to = romeo.jid().to_string();
    let host = server.host("localhost").expect("host");
    let body = "x".repeat(100 * 1024);
    let mut closing = false;
    for _ in 0..2000 {
        juliet
            .send_str(&format!(
                "<message to='{to}' type='chat'><body>{body}</body></message>"
            ))
            .await?;
        // Closing, or already gone (a write stalled for ping_timeout ends it too).
        if host.sessions_of("romeo").iter().all(|s| s.is_closing()) {
            closing = true;
            break;
        }
    }
    assert!(closing, "romeo's queue filled up");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !host.sessions_of("romeo").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled session should have ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(romeo);
    Ok(())
}

/// A reload that adds a host (or changes listeners, data folder or storage) is refused
/// whole, with an error naming the key: applying the rest would leave the config naming
/// a host the server does not serve. The server goes on with its old config.
#[tokio::test]
async fn a_reload_that_needs_a_restart_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml("[limits]\nmax_stanza_size = 65536")
        .start()
        .await?;
    let refused = server
        .reload_toml("[limits]\nmax_stanza_size = 70000\n[hosts.\"other.example\"]")
        .await
        .expect_err("adding a host by reload is refused");
    let hosts = refused
        .iter()
        .find(|d| d.key == "hosts")
        .unwrap_or_else(|| panic!("no diagnostic for 'hosts' in {refused:?}"));
    assert!(hosts.message.contains("restart"), "{hosts}");
    let config = server.server().config();
    assert_eq!(config.hosts.len(), 1, "the host list was swapped");
    assert_eq!(
        config.limits.max_stanza_size, 65536,
        "part of the reload applied"
    );
    // Still serving, and a reload without such changes still applies.
    let mut romeo = server.client("romeo").await?;
    romeo.sync().await?;
    server
        .reload_toml("[limits]\nmax_stanza_size = 70000")
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    assert_eq!(server.server().config().limits.max_stanza_size, 70000);
    Ok(())
}
