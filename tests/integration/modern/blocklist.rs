use tern::testing::TestServer;
use tern::xml::ns;

const CONFIG: &str = r#"modules_enabled = ["disco", "ping", "roster", "presence", "blocklist"]"#;

#[tokio::test]
async fn block_push_enforce_and_unblock() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("tybalt", "pw")
        .config_toml(CONFIG)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut romeo2 = server.client("romeo").await?;
    let mut tybalt = server.client("tybalt").await?;
    romeo.available().await?;
    tybalt.available().await?;
    romeo2
        .iq_str("<iq type='get'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await?;
    let ok = romeo.iq_str("<iq type='set'><block xmlns='urn:xmpp:blocking'><item jid='tybalt@localhost'/></block></iq>").await?;
    assert_eq!(ok.attr("type"), Some("result"));
    let push = romeo2
        .expect_where(|s| s.name() == "iq" && s.attr("type") == Some("set"))
        .await?;
    assert!(push.has_child("block", "urn:xmpp:blocking"));
    let list = romeo
        .iq_str("<iq type='get'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await?;
    assert_eq!(
        list.children().next().map(|l| l.children().count()),
        Some(1)
    );

    // Tybalt's message is dropped; his IQ gets service-unavailable.
    tybalt
        .send_str("<message to='romeo@localhost' type='chat'><body>fight</body></message>")
        .await?;
    let iq = tybalt
        .iq_str(&format!(
            "<iq type='get' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            romeo.jid()
        ))
        .await?;
    assert_eq!(iq.attr("type"), Some("error"));
    romeo.sync().await?;
    let stray = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        romeo.expect_where(|s| {
            s.name() == "message" || s.name() == "iq" && s.attr("type") == Some("get")
        }),
    )
    .await;
    assert!(stray.is_err(), "blocked stanzas must not arrive: {stray:?}");

    // Romeo writing to Tybalt bounces with not-acceptable + <blocked/>.
    romeo
        .send_str("<message to='tybalt@localhost' type='chat' id='b1'><body>x</body></message>")
        .await?;
    let bounce = romeo.expect_where(|s| s.attr("id") == Some("b1")).await?;
    let error = bounce.get_child("error", ns::CLIENT).expect("error");
    assert!(error.has_child("not-acceptable", ns::STANZAS_ERR));
    assert!(error.has_child("blocked", "urn:xmpp:blocking:errors"));

    // Unblock all.
    romeo
        .iq_str("<iq type='set'><unblock xmlns='urn:xmpp:blocking'/></iq>")
        .await?;
    tybalt
        .send_str("<message to='romeo@localhost' type='chat'><body>peace</body></message>")
        .await?;
    let got = romeo.expect_where(|s| s.name() == "message").await?;
    assert_eq!(
        got.get_child("body", ns::CLIENT)
            .map(|b| b.text())
            .as_deref(),
        Some("peace")
    );
    Ok(())
}

#[test]
fn matching_rules() {
    use tern::modules::blocklist::blocked;
    let jid = |s: &str| tern::api::Jid::new(s).expect("jid");
    let list = vec!["a@x".to_string(), "y".to_string(), "b@z/r".to_string()];
    assert!(blocked(&list, &jid("a@x/phone")));
    assert!(blocked(&list, &jid("anyone@y")));
    assert!(blocked(&list, &jid("b@z/r")));
    assert!(!blocked(&list, &jid("b@z/other")));
    assert!(!blocked(&list, &jid("c@x")));
}
