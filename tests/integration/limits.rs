//! `[limits]` that end or slow a stream: attributes per element and attribute length,
//! namespace floods, the stanza rate, the pre-authentication budget, and the per-account
//! SASL back-off.
//! Each test checks the exact error and that another session keeps working.

use std::net::IpAddr;

use tern::testing::{RawClient, SaslRefusal, TestServer};

use crate::common::{assert_alive, core_server, drain, stream_error_of, QUIET};

/// Sends `stanza` on a fresh session of romeo and returns the stream error it caused.
async fn stream_error_after(server: &TestServer, stanza: &str) -> anyhow::Result<Option<String>> {
    let mut romeo = server.client("romeo").await?;
    romeo.send_str(stanza).await?;
    let (elements, closed) = drain(romeo.raw()).await?;
    assert!(closed, "the stream was not closed");
    Ok(stream_error_of(&elements))
}

#[tokio::test]
async fn too_many_attributes_or_too_long_a_value_is_a_policy_violation() -> anyhow::Result<()> {
    let server = core_server()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml("[limits]\nmax_attributes = 8\nmax_attribute_length = 300")
        .start()
        .await?;
    let mut juliet = server.client("juliet").await?;
    let to = juliet.jid().to_string();
    // At the limits: accepted (8 attributes, a 300-byte value).
    let mut romeo = server.client("romeo").await?;
    let at_limit = format!(
        "<message to='{to}' id='ok' type='chat' a='1' b='2' c='3' d='4' x='{}'><body>hi</body></message>",
        "v".repeat(300)
    );
    romeo.send_str(&at_limit).await?;
    let got = juliet.expect_where(|s| s.name() == "message").await?;
    assert_eq!(got.attr("id"), Some("ok"));
    romeo.sync().await?;

    let nine =
        "<message to='juliet@localhost' type='chat' a='1' b='2' c='3' d='4' e='5' f='6' g='7'/>";
    assert_eq!(
        stream_error_after(&server, nine).await?.as_deref(),
        Some("policy-violation")
    );
    // A long value on a nested element.
    let long = format!(
        "<message to='{to}'><body xml:lang='{}'>x</body></message>",
        "l".repeat(301)
    );
    assert_eq!(
        stream_error_after(&server, &long).await?.as_deref(),
        Some("policy-violation")
    );
    // Nothing of the refused stanzas reached Juliet, and she is still served.
    juliet.expect_silence(QUIET).await?;
    assert_alive(&server, &mut juliet, "juliet").await
}

#[tokio::test]
async fn a_stanza_flood_is_read_more_slowly_not_dropped() -> anyhow::Result<()> {
    // One stanza per second past a burst of two: the flooder's seventh stanza is read
    // about four seconds after the first.
    let server = core_server()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml("[limits]\nstanza_rate = 1\nstanza_burst = 2")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    let mut flood = String::new();
    for i in 0..6 {
        flood.push_str(&format!(
            "<iq type='get' id='p{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
    }
    flood.push_str(&format!(
        "<message to='{}' type='chat' id='last'><body>after the flood</body></message>",
        juliet.jid()
    ));
    romeo.send_str(&flood).await?;
    // The burst was served...
    romeo.expect_where(|s| s.attr("id") == Some("p0")).await?;
    // ...while the rest waits: Juliet's own requests are answered at once (her session
    // has its own bucket) and the flooder's last stanza has not been read yet.
    juliet.sync().await?;
    juliet.expect_silence(QUIET).await?;
    // Nothing was dropped and the stream stays open.
    for i in 1..6 {
        let id = format!("p{i}");
        let reply = romeo
            .expect_where(|s| s.attr("id") == Some(id.as_str()))
            .await?;
        assert_eq!(reply.attr("type"), Some("result"));
    }
    let message = juliet.expect_where(|s| s.name() == "message").await?;
    assert_eq!(message.attr("id"), Some("last"));
    romeo.sync().await?;
    Ok(())
}

#[tokio::test]
async fn the_pre_authentication_budget_ends_the_stream() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("juliet", "pw")
        .config_toml("[limits]\npre_auth_bytes = 4096\npre_auth_stanzas = 8")
        .start()
        .await?;
    let mut juliet = server.client("juliet").await?;
    // Elements: registration form requests (a pre-authentication IQ the server answers).
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    for i in 0..8 {
        raw.send_raw(&format!(
            "<iq type='get' id='r{i}'><query xmlns='jabber:iq:register'/></iq>"
        ))
        .await?;
        let reply = raw.read_element().await?;
        assert_eq!(reply.attr("id"), Some(format!("r{i}").as_str()));
    }
    raw.send_raw("<iq type='get' id='r8'><query xmlns='jabber:iq:register'/></iq>")
        .await?;
    let (elements, closed) = drain(&mut raw).await?;
    assert!(closed);
    assert_eq!(
        stream_error_of(&elements).as_deref(),
        Some("policy-violation")
    );
    assert!(
        !elements.iter().any(|e| e.attr("id") == Some("r8")),
        "the element over the budget was answered"
    );
    // Bytes: whitespace costs nothing to parse but still counts.
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.send_raw(&" ".repeat(5000)).await?;
    let (elements, closed) = drain(&mut raw).await?;
    assert!(closed);
    assert_eq!(
        stream_error_of(&elements).as_deref(),
        Some("policy-violation")
    );
    // A login fits the budget, and past authentication it no longer applies.
    let mut fresh = server.client("juliet").await?;
    fresh.send_str(&" ".repeat(5000)).await?;
    fresh.sync().await?;
    assert_alive(&server, &mut juliet, "juliet").await
}

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Opens a stream from `from` and runs one SCRAM exchange.
async fn attempt(
    server: &TestServer,
    from: IpAddr,
    user: &str,
    password: &str,
) -> anyhow::Result<Result<(), SaslRefusal>> {
    let mut raw = RawClient::connect_from(server.addr(), from).await?;
    raw.open_stream("localhost").await?;
    raw.authenticate("SCRAM-SHA-1", user, password).await
}

#[tokio::test]
async fn failures_for_one_account_slow_down_its_attempts_from_anywhere() -> anyhow::Result<()> {
    // One free failure, then slots two seconds apart after the third failure: long
    // enough to see an attempt still waiting after QUIET.
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml("[limits]\naccount_auth_failures = 1\naccount_auth_max_delay = 3600")
        .start()
        .await?;
    let mut witness = server.client("juliet").await?;
    // Three failures each for an existing and an unknown account, each account from its
    // own address (within the per-address allowance of three free failures).
    for (user, from) in [("romeo", local(2)), ("nobody", local(3))] {
        for _ in 0..3 {
            let outcome = attempt(&server, from, user, "wrong").await?;
            assert_eq!(outcome, Err(SaslRefusal("not-authorized".into())));
        }
    }
    // From a fresh address: romeo with the right password and the unknown account both
    // wait; juliet, on the same address, does not.
    let server = std::sync::Arc::new(server);
    let romeo = tokio::spawn({
        let server = server.clone();
        async move { attempt(&server, local(4), "romeo", "pw").await }
    });
    let nobody = tokio::spawn({
        let server = server.clone();
        async move { attempt(&server, local(4), "nobody", "pw").await }
    });
    assert_eq!(attempt(&server, local(4), "juliet", "pw").await?, Ok(()));
    witness.sync().await?;
    tokio::time::sleep(QUIET).await;
    assert!(!romeo.is_finished(), "romeo's attempt was not slowed down");
    assert!(
        !nobody.is_finished(),
        "an unknown account is treated differently"
    );
    // The right password still wins once the slot comes; the unknown account fails the
    // same way a wrong password does.
    assert_eq!(romeo.await??, Ok(()));
    assert_eq!(nobody.await??, Err(SaslRefusal("not-authorized".into())));
    assert_alive(&server, &mut witness, "juliet").await
}

#[tokio::test]
async fn a_success_from_an_address_in_back_off_waits_like_a_failure() -> anyhow::Result<()> {
    // Per address only: the per-account back-off is off here.
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml("[limits]\naccount_auth_failures = 0")
        .start()
        .await?;
    let mut witness = server.client("juliet").await?;
    // Four failures from one address: three are free, the fourth costs 1 s and the next
    // attempt from there 2 s.
    for _ in 0..4 {
        let outcome = attempt(&server, local(5), "romeo", "wrong").await?;
        assert_eq!(outcome, Err(SaslRefusal("not-authorized".into())));
    }
    let server = std::sync::Arc::new(server);
    let right = tokio::spawn({
        let server = server.clone();
        async move { attempt(&server, local(5), "juliet", "pw").await }
    });
    // Another address is not slowed down.
    assert_eq!(attempt(&server, local(6), "romeo", "pw").await?, Ok(()));
    tokio::time::sleep(QUIET).await;
    assert!(
        !right.is_finished(),
        "the right password was answered at once"
    );
    assert_eq!(right.await??, Ok(()));
    assert_alive(&server, &mut witness, "juliet").await
}

#[tokio::test]
async fn a_namespace_flood_is_held_to_the_stanza_budget() -> anyhow::Result<()> {
    // Namespace declarations are not attributes to the parser (they never reach the
    // element), so what bounds a flood of them is the stanza budget: each declaration is
    // bytes of the stanza, and so is every copy of a namespace name an element inherits.
    let server = core_server()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml("[limits]\nmax_attributes = 8\nmax_stanza_size = 8192")
        .start()
        .await?;
    let mut juliet = server.client("juliet").await?;
    let to = juliet.jid().to_string();
    let declarations = |count: usize| -> String {
        (0..count)
            .map(|i| format!(" xmlns:p{i}='urn:example:flood:{i}'"))
            .collect()
    };

    // Within the budget: delivered, with its prefixed child resolved.
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str(&format!(
            "<message to='{to}' id='ok' type='chat'{}><p19:x/><body>hi</body></message>",
            declarations(20)
        ))
        .await?;
    let got = juliet.expect_where(|s| s.name() == "message").await?;
    assert_eq!(got.attr("id"), Some("ok"));
    assert!(
        got.get_child("x", "urn:example:flood:19").is_some(),
        "the prefixed child lost its namespace: {got:?}"
    );
    romeo.sync().await?;

    // 2,000 declarations on one start tag, about 60 KB: the stream ends before the tag.
    let flood = format!("<message to='{to}' type='chat'{}/>", declarations(2000));
    assert_eq!(
        stream_error_after(&server, &flood).await?.as_deref(),
        Some("policy-violation")
    );
    // A short wire form that would cost a namespace copy per element: 1,000 `<a/>`
    // under a 1,000-byte default namespace are 4 KB sent and 1 MB to keep.
    let copies = format!(
        "<message to='{to}' type='chat'><x xmlns='urn:{}'>{}</x></message>",
        "n".repeat(1000),
        "<a/>".repeat(1000)
    );
    assert_eq!(
        stream_error_after(&server, &copies).await?.as_deref(),
        Some("policy-violation")
    );
    juliet.expect_silence(QUIET).await?;
    assert_alive(&server, &mut juliet, "juliet").await
}
