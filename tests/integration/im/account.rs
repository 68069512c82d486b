use crate::common::error_condition;
use tern::testing::TestServer;
use tern::xml::ns;

const IM: &str = r#"modules_enabled = ["disco", "ping", "roster", "presence", "vcard", "last"]"#;

#[tokio::test]
async fn vcard_set_get_own_and_others() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    let empty = romeo
        .iq_str("<iq type='get'><vCard xmlns='vcard-temp'/></iq>")
        .await?;
    assert_eq!(empty.attr("type"), Some("result"));
    let set = romeo
        .iq_str("<iq type='set'><vCard xmlns='vcard-temp'><FN>Romeo Montague</FN></vCard></iq>")
        .await?;
    assert_eq!(set.attr("type"), Some("result"));
    let got = juliet
        .iq_str("<iq type='get' to='romeo@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await?;
    let fullname = got
        .children()
        .next()
        .and_then(|v| v.get_child("FN", "vcard-temp"))
        .map(|f| f.text());
    assert_eq!(fullname.as_deref(), Some("Romeo Montague"));
    let forbidden = juliet
        .iq_str(
            "<iq type='set' to='romeo@localhost'><vCard xmlns='vcard-temp'><FN>x</FN></vCard></iq>",
        )
        .await?;
    assert_eq!(error_condition(&forbidden).as_deref(), Some("forbidden"));
    let none = romeo
        .iq_str("<iq type='get' to='juliet@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await?;
    assert_eq!(error_condition(&none).as_deref(), Some("item-not-found"));
    let unknown = romeo
        .iq_str("<iq type='get' to='nobody@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await?;
    assert_eq!(
        error_condition(&unknown).as_deref(),
        Some("service-unavailable")
    );
    Ok(())
}

#[tokio::test]
async fn account_disco_and_last_activity_need_a_subscription() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    romeo.available().await?;
    juliet.available().await?;
    let disco = "<iq type='get' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    let last = "<iq type='get' to='juliet@localhost'><query xmlns='jabber:iq:last'/></iq>";
    assert_eq!(
        error_condition(&romeo.iq_str(disco).await?).as_deref(),
        Some("service-unavailable")
    );
    assert_eq!(
        error_condition(&romeo.iq_str(last).await?).as_deref(),
        Some("forbidden")
    );
    // Juliet lets Romeo see her presence.
    romeo
        .send_str("<presence to='juliet@localhost' type='subscribe'/>")
        .await?;
    juliet
        .expect_where(|s| s.attr("type") == Some("subscribe"))
        .await?;
    juliet
        .send_str("<presence to='romeo@localhost' type='subscribed'/>")
        .await?;
    romeo
        .expect_where(|s| s.attr("type") == Some("subscribed"))
        .await?;
    juliet.sync().await?;
    let info = romeo.iq_str(disco).await?;
    let identity = info
        .children()
        .next()
        .and_then(|q| q.get_child("identity", ns::DISCO_INFO))
        .cloned()
        .expect("identity");
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("account"), Some("registered"))
    );
    let online = romeo.iq_str(last).await?;
    assert_eq!(
        online.children().next().and_then(|q| q.attr("seconds")),
        Some("0")
    );
    juliet.close().await?;
    romeo
        .expect_where(|s| s.attr("type") == Some("unavailable"))
        .await?;
    let offline = romeo.iq_str(last).await?;
    let seconds: u64 = offline
        .children()
        .next()
        .and_then(|q| q.attr("seconds"))
        .expect("seconds")
        .parse()?;
    assert!(seconds < 5);
    let uptime = romeo
        .iq_str("<iq type='get' to='localhost'><query xmlns='jabber:iq:last'/></iq>")
        .await?;
    assert!(uptime
        .children()
        .next()
        .and_then(|q| q.attr("seconds"))
        .is_some());
    Ok(())
}
