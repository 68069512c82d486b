use tern::testing::TestServer;
use tern::xml::ns;

#[tokio::test]
async fn private_storage_round_trip_and_isolation() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(r#"modules_enabled = ["disco", "ping", "private"]"#)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let empty = romeo.iq_str("<iq type='get'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await?;
    assert_eq!(empty.attr("type"), Some("result"));
    let set = romeo
        .iq_str("<iq type='set'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='room@muc' name='R'/></storage></query></iq>")
        .await?;
    assert_eq!(set.attr("type"), Some("result"));
    let got = romeo.iq_str("<iq type='get'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await?;
    let storage = got
        .children()
        .next()
        .and_then(|q| q.get_child("storage", "storage:bookmarks"))
        .cloned()
        .expect("storage");
    assert_eq!(
        storage.children().next().and_then(|c| c.attr("jid")),
        Some("room@muc")
    );
    let mut juliet = server.client("juliet").await?;
    let theirs = juliet.iq_str("<iq type='get' to='romeo@localhost'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await?;
    assert_eq!(theirs.attr("type"), Some("error"));
    let reserved = romeo.iq_str("<iq type='set'><query xmlns='jabber:iq:private'><query xmlns='jabber:iq:roster'/></query></iq>").await?;
    assert_eq!(reserved.attr("type"), Some("error"));
    Ok(())
}

#[tokio::test]
async fn contact_addresses_in_disco() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml("modules_enabled = [\"disco\", \"server_contact_info\"]\n[modules.server_contact_info]\nabuse = [\"mailto:abuse@example.org\"]\nadmin = \"xmpp:admin@example.org\"")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let info = romeo.iq_str("<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await?;
    let form = info
        .children()
        .next()
        .and_then(|q| q.get_child("x", ns::DATA_FORMS))
        .cloned()
        .expect("form");
    let field = |var: &str| {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .map(|f| f.children().map(|v| v.text()).collect::<Vec<_>>())
    };
    assert_eq!(
        field("FORM_TYPE"),
        Some(vec!["http://jabber.org/network/serverinfo".to_string()])
    );
    assert_eq!(
        field("abuse-addresses"),
        Some(vec!["mailto:abuse@example.org".to_string()])
    );
    assert_eq!(
        field("admin-addresses"),
        Some(vec!["xmpp:admin@example.org".to_string()])
    );
    Ok(())
}

#[tokio::test]
async fn the_number_of_private_namespaces_is_capped() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(r#"modules_enabled = ["disco", "ping", "private"]"#)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    for i in 0..64 {
        let ok = romeo
            .iq_str(&format!("<iq type='set'><query xmlns='jabber:iq:private'><x xmlns='urn:example:{i}'/></query></iq>"))
            .await?;
        assert_eq!(ok.attr("type"), Some("result"), "fragment {i}");
    }
    let refused = romeo
        .iq_str("<iq type='set'><query xmlns='jabber:iq:private'><x xmlns='urn:example:one-too-many'/></query></iq>")
        .await?;
    assert_eq!(refused.attr("type"), Some("error"));
    // Replacing an existing one is still fine.
    let replaced = romeo
        .iq_str("<iq type='set'><query xmlns='jabber:iq:private'><x xmlns='urn:example:3'>new</x></query></iq>")
        .await?;
    assert_eq!(replaced.attr("type"), Some("result"));
    Ok(())
}
