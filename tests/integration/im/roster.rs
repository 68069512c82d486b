use tern::testing::TestServer;
use tern::xml::Element;

pub const IM: &str = r#"modules_enabled = ["disco", "ping", "roster", "presence"]"#;

fn items(reply: &Element) -> Vec<(String, String, Option<String>)> {
    reply
        .children()
        .next()
        .map(|q| {
            q.children()
                .map(|i| {
                    (
                        i.attr("jid").unwrap_or("").to_string(),
                        i.attr("subscription").unwrap_or("").to_string(),
                        i.attr("name").map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn set_get_push_to_all_interested_resources_and_remove() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut a = server.client("romeo").await?;
    let mut b = server.client("romeo").await?;
    let empty = a
        .iq_str("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    assert_eq!(items(&empty), vec![]);
    b.iq_str("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    // slixmpp sends subscription='none' in sets: ignored, not an error.
    let set = a
        .iq_str("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='juliet@localhost' name='Juliet' subscription='none'><group>Friends</group></item></query></iq>")
        .await?;
    assert_eq!(set.attr("type"), Some("result"));
    for client in [&mut a, &mut b] {
        let push = client
            .expect_where(|s| s.attr("type") == Some("set"))
            .await?;
        assert_eq!(
            items(&push),
            vec![(
                "juliet@localhost".into(),
                "none".into(),
                Some("Juliet".into())
            )]
        );
        assert!(push.attr("from").is_none_or(|f| f == "romeo@localhost"));
    }
    let got = a
        .iq_str("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    assert_eq!(items(&got).len(), 1);
    let removed = a
        .iq_str("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='juliet@localhost' subscription='remove'/></query></iq>")
        .await?;
    assert_eq!(removed.attr("type"), Some("result"));
    let push = b.expect_where(|s| s.attr("type") == Some("set")).await?;
    assert_eq!(items(&push)[0].1, "remove");
    let missing = a
        .iq_str("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='nobody@localhost' subscription='remove'/></query></iq>")
        .await?;
    assert_eq!(missing.attr("type"), Some("error"));
    Ok(())
}

#[tokio::test]
async fn versioning_returns_empty_when_current() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut a = server.client("romeo").await?;
    a.iq_str("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='juliet@localhost'/></query></iq>").await?;
    let full = a
        .iq_str("<iq type='get'><query xmlns='jabber:iq:roster' ver=''/></iq>")
        .await?;
    let ver = full
        .children()
        .next()
        .and_then(|q| q.attr("ver"))
        .expect("ver")
        .to_string();
    let current = a
        .iq_str(&format!(
            "<iq type='get'><query xmlns='jabber:iq:roster' ver='{ver}'/></iq>"
        ))
        .await?;
    assert_eq!(current.attr("type"), Some("result"));
    assert!(
        current.children().next().is_none(),
        "empty result when the version is current"
    );
    let stale = a
        .iq_str("<iq type='get'><query xmlns='jabber:iq:roster' ver='0'/></iq>")
        .await?;
    assert_eq!(items(&stale).len(), 1);
    Ok(())
}

#[tokio::test]
async fn invalid_sets_are_refused() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut a = server.client("romeo").await?;
    for (xml, condition) in [
        (
            "<item jid='a@localhost'/><item jid='b@localhost'/>",
            "bad-request",
        ),
        (
            "<item jid='a@localhost'><group>x</group><group>x</group></item>",
            "bad-request",
        ),
        (
            "<item jid='a@localhost'><group></group></item>",
            "not-acceptable",
        ),
        ("<item jid='a@localhost/resource'/>", "bad-request"),
        ("<item/>", "bad-request"),
    ] {
        let reply = a
            .iq_str(&format!(
                "<iq type='set'><query xmlns='jabber:iq:roster'>{xml}</query></iq>"
            ))
            .await?;
        assert_eq!(reply.attr("type"), Some("error"), "{xml}");
        let error = reply
            .get_child("error", tern::xml::ns::CLIENT)
            .expect("error");
        assert!(
            error.children().any(|c| c.name() == condition),
            "{xml}: {}",
            tern::xml::writer::to_string(&reply)
        );
    }
    // Another account's roster is not ours to read.
    let reply = a
        .iq_str("<iq type='get' to='juliet@localhost'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    assert_eq!(reply.attr("type"), Some("error"));
    Ok(())
}
