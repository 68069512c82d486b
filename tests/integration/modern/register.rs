use crate::common::error_condition;
use tern::testing::{RawClient, TestServer};
use tern::xml::Element;

const OPEN: &str = "modules_enabled = [\"disco\", \"ping\", \"register\"]\n[modules.register]\nallow_registration = true\nregistrations_per_hour = 2\nmin_password_length = 6";

async fn register(raw: &mut RawClient, user: &str, password: &str) -> anyhow::Result<Element> {
    raw.send_raw(&format!(
        "<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>"
    ))
    .await?;
    raw.read_element().await
}

#[tokio::test]
async fn in_band_registration_when_allowed_and_rate_limited() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("taken", "pw")
        .config_toml(OPEN)
        .start()
        .await?;
    let mut raw = server.raw().await?;
    let features = raw.open_stream("localhost").await?;
    assert!(features.has_child("register", "http://jabber.org/features/iq-register"));
    raw.send_raw("<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>")
        .await?;
    let form = raw.read_element().await?;
    assert!(form
        .children()
        .next()
        .is_some_and(|q| q.has_child("username", "jabber:iq:register")));
    assert_eq!(
        error_condition(&register(&mut raw, "taken", "secret123").await?).as_deref(),
        Some("conflict")
    );
    assert_eq!(
        error_condition(&register(&mut raw, "short", "abc").await?).as_deref(),
        Some("not-acceptable")
    );
    assert_eq!(
        register(&mut raw, "newbie", "secret123")
            .await?
            .attr("type"),
        Some("result")
    );
    // The new account logs in.
    let mut newbie = server
        .client_with(server.options("newbie", "secret123"))
        .await?;
    newbie.sync().await?;
    // Two per hour from one address: the next is refused.
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    assert_eq!(
        register(&mut raw, "second", "secret123")
            .await?
            .attr("type"),
        Some("result")
    );
    assert_eq!(
        error_condition(&register(&mut raw, "third", "secret123").await?).as_deref(),
        Some("resource-constraint")
    );
    Ok(())
}

#[tokio::test]
async fn registration_is_off_by_default() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .config_toml("modules_enabled = [\"disco\", \"ping\", \"register\"]")
        .start()
        .await?;
    let mut raw = server.raw().await?;
    let features = raw.open_stream("localhost").await?;
    assert!(!features.has_child("register", "http://jabber.org/features/iq-register"));
    assert_eq!(
        error_condition(&register(&mut raw, "newbie", "secret123").await?).as_deref(),
        Some("not-allowed")
    );
    Ok(())
}

#[tokio::test]
async fn password_change_and_account_removal() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml("modules_enabled = [\"disco\", \"ping\", \"register\"]\n[modules.register]\nmin_password_length = 6")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let changed = romeo
        .iq_str("<iq type='set' to='localhost'><query xmlns='jabber:iq:register'><username>romeo</username><password>newpass1</password></query></iq>")
        .await?;
    assert_eq!(changed.attr("type"), Some("result"));
    assert!(
        server.client("romeo").await.is_err(),
        "the old password no longer works"
    );
    let mut again = server
        .client_with(server.options("romeo", "newpass1"))
        .await?;
    let removed = again
        .iq_str("<iq type='set'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await?;
    assert_eq!(removed.attr("type"), Some("result"));
    // Both streams end with not-authorized, and the account is gone.
    let condition = romeo.raw().expect_stream_error().await?;
    assert_eq!(condition.as_deref(), Some("not-authorized"));
    assert!(server
        .server()
        .storage()
        .list_accounts("localhost")?
        .is_empty());
    Ok(())
}

/// A user of one virtual host must not change the password of the same localpart on
/// another virtual host by addressing the IQ there.
#[tokio::test]
async fn password_change_only_on_ones_own_host() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .host("a.test")
        .host("b.test")
        .user("romeo@a.test", "pw")
        .user("romeo@b.test", "pw")
        .config_toml("modules_enabled = [\"disco\", \"ping\", \"register\"]\n[modules.register]\nmin_password_length = 6")
        .start()
        .await?;
    let mut attacker = server.client("romeo@a.test").await?;
    let reply = attacker
        .iq_str("<iq type='set' to='b.test'><query xmlns='jabber:iq:register'><username>romeo</username><password>stolen1</password></query></iq>")
        .await?;
    assert_eq!(reply.attr("type"), Some("error"), "refused on another host");
    // The victim's password is unchanged.
    let mut victim = server.client("romeo@b.test").await?;
    victim.sync().await?;
    assert!(server
        .client_with(server.options("romeo@b.test", "stolen1"))
        .await
        .is_err());
    Ok(())
}

/// An account removed in-band and registered again under the same name starts clean:
/// nothing of the old one survives, not even what a module kept in memory (the
/// blocklist is cached per account).
#[tokio::test]
async fn a_reregistered_name_inherits_nothing_from_the_removed_account() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(
            "modules_enabled = [\"disco\", \"ping\", \"register\", \"blocklist\", \"vcard\"]\n[modules.register]\nallow_registration = true\nmin_password_length = 2",
        )
        .start()
        .await?;
    let mut old = server.client("romeo").await?;
    let blocked = old
        .iq_str("<iq type='set'><block xmlns='urn:xmpp:blocking'><item jid='spam@example.org'/></block></iq>")
        .await?;
    assert_eq!(blocked.attr("type"), Some("result"));
    let list = old
        .iq_str("<iq type='get'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await?;
    assert_eq!(
        list.children().next().map(|l| l.children().count()),
        Some(1)
    );
    let removed = old
        .iq_str("<iq type='set'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await?;
    assert_eq!(removed.attr("type"), Some("result"));

    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    let registered = register(&mut raw, "romeo", "pw").await?;
    assert_eq!(registered.attr("type"), Some("result"), "{registered:?}");
    let mut new = server.client("romeo").await?;
    let list = new
        .iq_str("<iq type='get'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await?;
    assert_eq!(
        list.children().next().map(|l| l.children().count()),
        Some(0),
        "the new account sees the old one's blocklist"
    );
    Ok(())
}
