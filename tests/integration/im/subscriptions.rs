use std::time::Duration;

use tern::testing::{TestClient, TestServer};
use tern::xml::Element;

use super::roster::IM;

async fn roster_of(client: &mut TestClient) -> anyhow::Result<Vec<(String, String, bool)>> {
    let reply = client
        .iq_str("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    Ok(reply
        .children()
        .next()
        .map(|q| {
            q.children()
                .map(|i| {
                    (
                        i.attr("jid").unwrap_or("").to_string(),
                        i.attr("subscription").unwrap_or("").to_string(),
                        i.attr("ask") == Some("subscribe"),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn is_presence(kind: &'static str) -> impl Fn(&Element) -> bool {
    move |s: &Element| s.name() == "presence" && s.attr("type").unwrap_or("") == kind
}

#[tokio::test]
async fn subscribe_approve_and_see_each_other() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    roster_of(&mut romeo).await?;
    roster_of(&mut juliet).await?;
    romeo.available().await?;
    juliet.available().await?;

    romeo
        .send_str("<presence to='juliet@localhost' type='subscribe'/>")
        .await?;
    let request = juliet.expect_where(is_presence("subscribe")).await?;
    assert_eq!(
        request.attr("from"),
        Some("romeo@localhost"),
        "stamped with the bare JID"
    );
    romeo.sync().await?;
    assert_eq!(
        roster_of(&mut romeo).await?,
        vec![("juliet@localhost".into(), "none".into(), true)]
    );

    juliet
        .send_str("<presence to='romeo@localhost' type='subscribed'/>")
        .await?;
    let approved = romeo.expect_where(is_presence("subscribed")).await?;
    assert_eq!(approved.attr("from"), Some("juliet@localhost"));
    // Juliet's presence follows the approval.
    let seen = romeo
        .expect_where(|s| {
            s.name() == "presence"
                && s.attr("type").is_none()
                && s.attr("from").is_some_and(|f| f.starts_with("juliet@"))
        })
        .await?;
    assert_eq!(seen.attr("from"), Some(juliet.jid().to_string().as_str()));
    juliet.sync().await?;
    romeo.sync().await?;
    assert_eq!(
        roster_of(&mut romeo).await?,
        vec![("juliet@localhost".into(), "to".into(), false)]
    );
    assert_eq!(
        roster_of(&mut juliet).await?,
        vec![("romeo@localhost".into(), "from".into(), false)]
    );

    // Juliet goes offline by dropping the connection: Romeo hears unavailable.
    drop(juliet);
    let gone = romeo.expect_where(is_presence("unavailable")).await?;
    assert!(gone
        .attr("from")
        .is_some_and(|f| f.starts_with("juliet@localhost/")));
    Ok(())
}

#[tokio::test]
async fn pending_request_is_delivered_at_next_login() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str("<presence to='juliet@localhost' type='subscribe'><status>hi</status></presence>")
        .await?;
    romeo.sync().await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    let request = juliet.expect_where(is_presence("subscribe")).await?;
    assert_eq!(request.attr("from"), Some("romeo@localhost"));
    Ok(())
}

#[tokio::test]
async fn preapproval_answers_immediately() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(IM)
        .start()
        .await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    juliet
        .send_str("<presence to='romeo@localhost' type='subscribed'/>")
        .await?;
    juliet.sync().await?;
    let mut romeo = server.client("romeo").await?;
    romeo.available().await?;
    romeo
        .send_str("<presence to='juliet@localhost' type='subscribe'/>")
        .await?;
    romeo.expect_where(is_presence("subscribed")).await?;
    romeo.expect_where(is_presence("")).await?;
    // Juliet was not asked (her roster push for the new subscription may arrive).
    let asked = tokio::time::timeout(
        Duration::from_millis(300),
        juliet.expect_where(is_presence("subscribe")),
    )
    .await;
    assert!(
        asked.is_err(),
        "a pre-approved request must not reach Juliet: {asked:?}"
    );
    assert_eq!(
        roster_of(&mut romeo).await?,
        vec![("juliet@localhost".into(), "to".into(), false)]
    );
    Ok(())
}

#[tokio::test]
async fn mutual_subscription_and_probes_at_login() -> anyhow::Result<()> {
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
    async fn subscribe(a: &mut TestClient, b: &mut TestClient, b_jid: &str) -> anyhow::Result<()> {
        a.send_str(&format!("<presence to='{b_jid}' type='subscribe'/>"))
            .await?;
        let request = b.expect_where(is_presence("subscribe")).await?;
        let from = request.attr("from").unwrap_or("").to_string();
        b.send_str(&format!("<presence to='{from}' type='subscribed'/>"))
            .await?;
        a.expect_where(is_presence("subscribed")).await?;
        Ok(())
    }
    subscribe(&mut romeo, &mut juliet, "juliet@localhost").await?;
    subscribe(&mut juliet, &mut romeo, "romeo@localhost").await?;
    romeo.sync().await?;
    juliet.sync().await?;
    assert_eq!(roster_of(&mut romeo).await?[0].1, "both");
    // A new Romeo session gets Juliet's presence through the probe at login.
    let mut romeo2 = server.client("romeo").await?;
    romeo2.available().await?;
    let seen = romeo2
        .expect_where(|s| {
            s.name() == "presence" && s.attr("from").is_some_and(|f| f.starts_with("juliet@"))
        })
        .await?;
    assert_eq!(seen.attr("type"), None);
    // And Juliet sees the new Romeo resource come online.
    let online = juliet
        .expect_where(|s| {
            s.name() == "presence" && s.attr("from") == Some(romeo2.jid().to_string().as_str())
        })
        .await?;
    assert_eq!(online.attr("type"), None);
    Ok(())
}

/// RFC 6121 §2.5.2 / §3.2.2: removing a contact who was subscribed to the user's
/// presence cancels that subscription, and the contact hears the user's resources go
/// unavailable (otherwise the contact keeps showing the user online).
#[tokio::test]
async fn roster_remove_tells_the_former_subscriber_the_user_is_unavailable() -> anyhow::Result<()> {
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
    // Juliet subscribes to Romeo, Romeo approves: Juliet sees Romeo online.
    juliet
        .send_str("<presence to='romeo@localhost' type='subscribe'/>")
        .await?;
    romeo.expect_where(is_presence("subscribe")).await?;
    romeo
        .send_str("<presence to='juliet@localhost' type='subscribed'/>")
        .await?;
    juliet.expect_where(is_presence("subscribed")).await?;
    let romeo_jid = romeo.jid().to_string();
    juliet
        .expect_where(|s| is_presence("")(s) && s.attr("from") == Some(romeo_jid.as_str()))
        .await?;
    let removed = romeo
        .iq_str("<iq type='set'><query xmlns='jabber:iq:roster'><item jid='juliet@localhost' subscription='remove'/></query></iq>")
        .await?;
    assert_eq!(removed.attr("type"), Some("result"));
    juliet.expect_where(is_presence("unsubscribed")).await?;
    let gone = tokio::time::timeout(
        Duration::from_secs(2),
        juliet.expect_where(|s| {
            is_presence("unavailable")(s) && s.attr("from") == Some(romeo_jid.as_str())
        }),
    )
    .await;
    assert!(
        matches!(gone, Ok(Ok(_))),
        "juliet should get romeo's unavailable presence"
    );
    Ok(())
}

/// A bind that replaces a session with the same full JID (RFC 6120 §7.7.2.2): when the
/// old session finally ends, its 'unavailable' must not override the presence the new
/// session already sent under the same full JID.
#[tokio::test]
async fn a_replaced_session_ending_late_does_not_mark_its_successor_unavailable(
) -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .user("nurse", "pw")
        .config_toml(&format!("{IM}\n[limits]\noutbound_queue = 16\nrate = 0"))
        .start()
        .await?;
    let mut options = server.options("romeo", "pw");
    options.resource = Some("phone".into());
    let mut romeo = server.client_with(options.clone()).await?;
    let mut juliet = server.client("juliet").await?;
    romeo.available().await?;
    juliet.available().await?;
    juliet
        .send_str("<presence to='romeo@localhost' type='subscribe'/>")
        .await?;
    romeo.expect_where(is_presence("subscribe")).await?;
    romeo
        .send_str("<presence to='juliet@localhost' type='subscribed'/>")
        .await?;
    let romeo_jid = romeo.jid().to_string();
    juliet
        .expect_where(|s| is_presence("")(s) && s.attr("from") == Some(romeo_jid.as_str()))
        .await?;
    // The old connection stops reading (a phone whose network went away): its session
    // is stuck writing and cannot end yet. The flood comes from a third account, which
    // reads nothing meanwhile (the server may close it too, once); juliet must stay to
    // watch the presence.
    let host = server.host("localhost").expect("host");
    let mut nurse = server.client("nurse").await?;
    let body = "x".repeat(100 * 1024);
    let mut stuck = false;
    for _ in 0..2000 {
        let sent = nurse
            .send_str(&format!(
                "<message to='{romeo_jid}' type='chat'><body>{body}</body></message>"
            ))
            .await;
        if sent.is_err() {
            stuck = host.sessions_of("romeo").iter().any(|s| s.is_closing());
            break;
        }
        if host.sessions_of("romeo").iter().any(|s| s.is_closing()) {
            stuck = true;
            break;
        }
    }
    assert!(stuck);
    // What the server has yet to read of the flood would go to the new session, which
    // reads nothing until the old one is gone and would rightly be closed as a reader
    // that does not keep up: the flood ends before it binds.
    drop(nurse);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !host.sessions_of("nurse").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    // The phone reconnects with the same resource and comes online.
    let mut romeo2 = server.client_with(options).await?;
    assert_eq!(romeo2.jid().to_string(), romeo_jid);
    romeo2.available().await?;
    juliet.sync().await?;
    juliet
        .expect_where(|s| is_presence("")(s) && s.attr("from") == Some(romeo_jid.as_str()))
        .await?;
    // Now the old connection goes for good, and its session ends. The messages it never
    // wrote (its full queue) go to the new session, which reads them as a phone would.
    drop(romeo);
    let mut handed_over = 0;
    let drain = async {
        while let Ok(Ok(stanza)) =
            tokio::time::timeout(Duration::from_secs(2), romeo2.expect()).await
        {
            if stanza.name() == "message" {
                handed_over += 1;
            }
        }
    };
    let watch = tokio::time::timeout(
        Duration::from_secs(2),
        juliet.expect_where(|s| {
            is_presence("unavailable")(s) && s.attr("from") == Some(romeo_jid.as_str())
        }),
    );
    let ((), stale) = tokio::join!(drain, watch);
    assert!(
        stale.is_err(),
        "juliet was told romeo/phone is unavailable while it is online"
    );
    assert!(
        host.sessions_of("romeo").iter().any(|s| s.is_available()),
        "the successor is still online"
    );
    assert!(
        handed_over >= 16,
        "the old session's queue went to the successor ({handed_over} messages)"
    );
    Ok(())
}
