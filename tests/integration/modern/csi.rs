use std::time::Duration;

use tern::testing::TestServer;

const CONFIG: &str = r#"modules_enabled = ["disco", "ping", "roster", "presence", "csi"]"#;

#[tokio::test]
async fn presence_is_held_while_inactive_and_flushed_on_active() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut juliet = server.client("juliet").await?;
    let mut romeo = server.client("romeo").await?;
    juliet.available().await?;
    romeo.available().await?;
    juliet
        .send_str("<inactive xmlns='urn:xmpp:csi:0'/>")
        .await?;
    juliet.sync().await?;
    // Three directed presences from Romeo, then a message.
    for show in ["away", "xa", "dnd"] {
        romeo
            .send_str(&format!(
                "<presence to='{}'><show>{show}</show></presence>",
                juliet.jid()
            ))
            .await?;
    }
    romeo
        .send_str(&format!(
            "<message to='{}' type='chat'><body>urgent</body></message>",
            juliet.jid()
        ))
        .await?;
    let first = juliet
        .expect_where(|s| s.attr("from").is_some_and(|f| f.starts_with("romeo@")))
        .await?;
    assert_eq!(first.name(), "message", "the message is not held back");
    let held = tokio::time::timeout(
        Duration::from_millis(300),
        juliet.expect_where(|s| {
            s.name() == "presence" && s.attr("from").is_some_and(|f| f.starts_with("romeo@"))
        }),
    )
    .await;
    assert!(held.is_err(), "presence must be held while inactive");
    juliet.send_str("<active xmlns='urn:xmpp:csi:0'/>").await?;
    let flushed = juliet
        .expect_where(|s| {
            s.name() == "presence" && s.attr("from").is_some_and(|f| f.starts_with("romeo@"))
        })
        .await?;
    let show = flushed
        .get_child("show", tern::xml::ns::CLIENT)
        .map(|s| s.text());
    assert_eq!(
        show.as_deref(),
        Some("dnd"),
        "only the newest presence per sender"
    );
    let more = tokio::time::timeout(
        Duration::from_millis(300),
        juliet.expect_where(|s| {
            s.name() == "presence" && s.attr("from").is_some_and(|f| f.starts_with("romeo@"))
        }),
    )
    .await;
    assert!(more.is_err(), "older presences were dropped");
    Ok(())
}

#[tokio::test]
async fn csi_is_advertised_and_unknown_nonzas_are_refused() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut raw = server.raw().await?;
    let features = raw.login("localhost", "romeo", "pw").await?;
    assert!(features.has_child("csi", "urn:xmpp:csi:0"));
    raw.bind(None).await?;
    raw.send_raw("<bogus xmlns='urn:example:nothing'/>").await?;
    assert_eq!(
        raw.expect_stream_error().await?.as_deref(),
        Some("unsupported-stanza-type")
    );
    Ok(())
}
