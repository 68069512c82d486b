use tern::testing::TestServer;
use tern::xml::ns;

const CONFIG: &str =
    r#"modules_enabled = ["disco", "ping", "roster", "presence", "offline", "carbons"]"#;

#[tokio::test]
async fn received_and_sent_copies_with_the_exclusions() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut phone = server.client("romeo").await?;
    let mut laptop = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    for client in [&mut phone, &mut laptop] {
        client.available().await?;
        let enabled = client
            .iq_str("<iq type='set'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
            .await?;
        assert_eq!(enabled.attr("type"), Some("result"));
    }
    juliet.available().await?;
    let is_carbon = |kind: &'static str| {
        move |s: &tern::xml::Element| {
            s.name() == "message" && s.has_child(kind, "urn:xmpp:carbons:2")
        }
    };

    // Juliet writes to the phone's full JID: the laptop gets a received carbon.
    juliet
        .send_str(&format!(
            "<message to='{}' type='chat'><body>to phone</body></message>",
            phone.jid()
        ))
        .await?;
    let direct = phone.expect_where(|s| s.name() == "message").await?;
    assert!(!direct.has_child("received", "urn:xmpp:carbons:2"));
    let carbon = laptop.expect_where(is_carbon("received")).await?;
    assert_eq!(carbon.attr("from"), Some("romeo@localhost"));
    let inner = carbon
        .get_child("received", "urn:xmpp:carbons:2")
        .and_then(|r| r.get_child("forwarded", "urn:xmpp:forward:0"))
        .and_then(|f| f.get_child("message", ns::CLIENT))
        .expect("forwarded message");
    assert_eq!(
        inner
            .get_child("body", ns::CLIENT)
            .map(|b| b.text())
            .as_deref(),
        Some("to phone")
    );

    // The laptop sends: the phone gets a sent carbon.
    laptop
        .send_str("<message to='juliet@localhost' type='chat'><body>from laptop</body></message>")
        .await?;
    juliet.expect_where(|s| s.name() == "message").await?;
    phone.expect_where(is_carbon("sent")).await?;

    // Private and no-copy messages are not copied; the private marker is stripped.
    laptop.send_str("<message to='juliet@localhost' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>").await?;
    let got = juliet.expect_where(|s| s.name() == "message").await?;
    assert!(!got.has_child("private", "urn:xmpp:carbons:2"));
    juliet.send_str(&format!("<message to='{}' type='chat'><body>nc</body><no-copy xmlns='urn:xmpp:hints'/></message>", phone.jid())).await?;
    phone.expect_where(|s| s.name() == "message").await?;
    laptop.sync().await?;
    let stray = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        laptop.expect_where(|s| s.name() == "message"),
    )
    .await;
    assert!(
        stray.is_err(),
        "no carbon for private or no-copy messages: {stray:?}"
    );

    // Disabled: no more copies.
    laptop
        .iq_str("<iq type='set'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
        .await?;
    juliet
        .send_str(&format!(
            "<message to='{}' type='chat'><body>again</body></message>",
            phone.jid()
        ))
        .await?;
    phone.expect_where(|s| s.name() == "message").await?;
    let stray = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        laptop.expect_where(|s| s.name() == "message"),
    )
    .await;
    assert!(stray.is_err());
    Ok(())
}
