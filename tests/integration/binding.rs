//! Resource binding (RFC 6120 §7), the legacy session IQ, conflicts, and how messages to
//! a bare JID pick resources by presence priority (RFC 6121 §8.5.2.1).

use tern::testing::{TestClient, TestServer};
use tern::xml::{ns, writer};

use crate::common::*;

async fn server() -> anyhow::Result<TestServer> {
    core_server()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .start()
        .await
}

async fn with_resource(
    server: &TestServer,
    user: &str,
    resource: &str,
) -> anyhow::Result<TestClient> {
    let mut options = server.options(user, "pw");
    options.resource = Some(resource.to_string());
    server.client_with(options).await
}

async fn available_with_priority(client: &mut TestClient, priority: i32) -> anyhow::Result<()> {
    client
        .send_str(&format!(
            "<presence><priority>{priority}</priority></presence>"
        ))
        .await?;
    client.sync().await
}

#[tokio::test]
async fn requested_resource_is_honoured() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = with_resource(&server, "romeo", "balcony").await?;
    assert_eq!(romeo.jid().to_string(), "romeo@localhost/balcony");
    // Messages to that full JID arrive, addressed to it.
    let mut juliet = server.client("juliet").await?;
    juliet
        .send_str(&message("romeo@localhost/balcony", "hi"))
        .await?;
    let got = romeo.expect().await?;
    assert_eq!(got.attr("to"), Some("romeo@localhost/balcony"));
    assert_eq!(body(&got).as_deref(), Some("hi"));
    Ok(())
}

#[tokio::test]
async fn server_generates_a_resource_when_none_is_requested() -> anyhow::Result<()> {
    let server = server().await?;
    let first = server.client("romeo").await?;
    let second = server.client("romeo").await?;
    for client in [&first, &second] {
        assert_eq!(client.jid().to_bare().to_string(), "romeo@localhost");
        assert!(!client.jid().resource().as_str().is_empty());
    }
    assert_ne!(
        first.jid(),
        second.jid(),
        "two sessions got the same generated resource"
    );
    // An empty <resource/> also means "choose one for me".
    let mut raw = server.raw().await?;
    raw.login("localhost", "romeo", "pw").await?;
    let jid = raw.bind(Some("   ")).await?;
    assert!(!jid.resource().as_str().trim().is_empty(), "{jid}");
    Ok(())
}

#[tokio::test]
async fn invalid_resource_is_bad_request_and_binding_can_be_retried() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = server.raw().await?;
    raw.login("localhost", "romeo", "pw").await?;
    let too_long = "r".repeat(2000);
    raw.send_raw(&format!(
        "<iq type='set' id='bind-bad'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{too_long}</resource></bind></iq>"
    ))
    .await?;
    let reply = raw.read_element().await?;
    assert_eq!(reply.attr("id"), Some("bind-bad"));
    assert_error(&reply, "bad-request");
    let jid = raw.bind(Some("ok")).await?;
    assert_eq!(jid.to_string(), "romeo@localhost/ok");
    Ok(())
}

#[tokio::test]
async fn same_resource_kicks_the_old_session_with_conflict() -> anyhow::Result<()> {
    let server = server().await?;
    let mut old = with_resource(&server, "romeo", "phone").await?;
    old.available().await?;
    let mut new = with_resource(&server, "romeo", "phone").await?;
    assert_eq!(new.jid().to_string(), "romeo@localhost/phone");
    let (elements, closed) = drain(old.raw()).await?;
    assert!(closed, "the old stream was not closed: {elements:?}");
    assert_eq!(stream_error_of(&elements).as_deref(), Some("conflict"));
    assert_connection_closed(old.raw()).await?;

    // The new session is the one the server routes to.
    new.sync().await?;
    let mut juliet = server.client("juliet").await?;
    juliet
        .send_str(&message("romeo@localhost/phone", "to the new one"))
        .await?;
    let got = new.expect().await?;
    assert_eq!(body(&got).as_deref(), Some("to the new one"));
    // The old session's cleanup must not have removed the new session from the table.
    tokio::time::sleep(QUIET).await;
    juliet
        .send_str(&message("romeo@localhost/phone", "still there"))
        .await?;
    assert_eq!(body(&new.expect().await?).as_deref(), Some("still there"));
    assert_eq!(
        server
            .host("localhost")
            .expect("host")
            .sessions_of("romeo")
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn legacy_session_iq_gets_a_result() -> anyhow::Result<()> {
    let server = server().await?;
    // After binding.
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='set' id='sess-1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&reply)
    );
    assert_eq!(reply.children().count(), 0);
    // Addressed to the server.
    let reply = romeo
        .iq_str("<iq type='set' id='sess-2' to='localhost'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        .await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&reply)
    );
    romeo.sync().await?;

    // Between SASL and binding (some old clients do this).
    let mut raw = server.raw().await?;
    raw.login("localhost", "romeo", "pw").await?;
    raw.send_raw(
        "<iq type='set' id='sess-3'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
    )
    .await?;
    let reply = raw.read_element().await?;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&reply)
    );
    assert_eq!(reply.attr("id"), Some("sess-3"));
    let jid = raw.bind(Some("after-session")).await?;
    assert_eq!(jid.resource().as_str(), "after-session");
    Ok(())
}

#[tokio::test]
async fn equal_priority_resources_all_get_bare_jid_messages() -> anyhow::Result<()> {
    let server = server().await?;
    let mut a = with_resource(&server, "romeo", "a").await?;
    let mut b = with_resource(&server, "romeo", "b").await?;
    available_with_priority(&mut a, 1).await?;
    available_with_priority(&mut b, 1).await?;
    let mut juliet = server.client("juliet").await?;
    juliet.send_str(&message("romeo@localhost", "both")).await?;
    for client in [&mut a, &mut b] {
        let got = client.expect().await?;
        assert_eq!(body(&got).as_deref(), Some("both"));
        assert_eq!(got.attr("to"), Some("romeo@localhost"));
        assert_eq!(got.attr("from"), Some(juliet.jid().to_string().as_str()));
    }
    juliet.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn headlines_reach_every_available_resource_chats_only_the_highest() -> anyhow::Result<()> {
    let server = server().await?;
    let mut low = with_resource(&server, "romeo", "low").await?;
    let mut high = with_resource(&server, "romeo", "high").await?;
    available_with_priority(&mut low, 1).await?;
    available_with_priority(&mut high, 5).await?;
    let mut juliet = server.client("juliet").await?;
    // RFC 6121 §8.5.2.1.1: a headline goes to every resource with non-negative priority.
    juliet
        .send_str("<message to='romeo@localhost' type='headline'><body>news</body></message>")
        .await?;
    for client in [&mut low, &mut high] {
        let got = client.expect().await?;
        assert_eq!(body(&got).as_deref(), Some("news"));
        assert_eq!(got.attr("type"), Some("headline"));
    }
    juliet.send_str(&message("romeo@localhost", "chat")).await?;
    assert_eq!(body(&high.expect().await?).as_deref(), Some("chat"));
    low.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn negative_priority_resource_gets_no_bare_jid_messages() -> anyhow::Result<()> {
    let server = server().await?;
    let mut negative = with_resource(&server, "romeo", "bot").await?;
    let mut normal = with_resource(&server, "romeo", "desk").await?;
    available_with_priority(&mut negative, -1).await?;
    available_with_priority(&mut normal, 0).await?;
    let mut juliet = server.client("juliet").await?;
    juliet
        .send_str(&message("romeo@localhost", "not for bots"))
        .await?;
    assert_eq!(
        body(&normal.expect().await?).as_deref(),
        Some("not for bots")
    );
    negative.expect_silence(QUIET).await?;
    // A full-JID message still reaches it.
    juliet
        .send_str(&message("romeo@localhost/bot", "direct"))
        .await?;
    assert_eq!(body(&negative.expect().await?).as_deref(), Some("direct"));

    // With only negative-priority resources, the account counts as unavailable.
    normal.send_str("<presence type='unavailable'/>").await?;
    normal.sync().await?;
    juliet
        .send_str(
            "<message to='romeo@localhost' type='chat' id='m-neg'><body>anyone?</body></message>",
        )
        .await?;
    let bounce = juliet.expect().await?;
    assert_eq!(bounce.attr("id"), Some("m-neg"));
    assert_error(&bounce, "service-unavailable");
    negative.expect_silence(QUIET).await?;
    normal.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn highest_priority_resource_wins() -> anyhow::Result<()> {
    let server = server().await?;
    let mut low = with_resource(&server, "romeo", "low").await?;
    let mut high = with_resource(&server, "romeo", "high").await?;
    let mut default = with_resource(&server, "romeo", "default").await?;
    available_with_priority(&mut low, 1).await?;
    available_with_priority(&mut high, 5).await?;
    default.available().await?;
    let mut juliet = server.client("juliet").await?;
    juliet.send_str(&message("romeo@localhost", "top")).await?;
    assert_eq!(body(&high.expect().await?).as_deref(), Some("top"));
    low.expect_silence(QUIET).await?;
    default.expect_silence(QUIET).await?;

    // Priority changes take effect.
    available_with_priority(&mut low, 10).await?;
    juliet
        .send_str(&message("romeo@localhost", "new top"))
        .await?;
    assert_eq!(body(&low.expect().await?).as_deref(), Some("new top"));
    high.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn bound_but_unavailable_resource_gets_no_bare_jid_messages() -> anyhow::Result<()> {
    let server = server().await?;
    let mut silent = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet
        .send_str("<message to='romeo@localhost' type='chat' id='m1'><body>hello?</body></message>")
        .await?;
    let bounce = juliet.expect().await?;
    assert_error(&bounce, "service-unavailable");
    assert_eq!(
        bounce
            .get_child("error", ns::CLIENT)
            .and_then(|e| e.attr("type")),
        Some("cancel")
    );
    silent.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn stanzas_pipelined_with_the_bind_request_are_processed() -> anyhow::Result<()> {
    let server = server().await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    let mut raw = server.raw().await?;
    let features = raw.login("localhost", "romeo", "pw").await?;
    assert!(features.get_child("bind", ns::BIND).is_some());
    // Bind, presence, a message and a ping in one write: the stanzas after the bind
    // request are read by the negotiation and must survive into the session.
    raw.send_raw(&format!(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>fast</resource></bind></iq><presence/>{}<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        message("juliet@localhost", "pipelined")
    ))
    .await?;
    let seen = [raw.read_element().await?, raw.read_element().await?];
    assert_eq!(seen[0].attr("id"), Some("b1"));
    assert_eq!(seen[0].attr("type"), Some("result"));
    assert_eq!(seen[1].attr("id"), Some("p1"));
    assert_eq!(seen[1].attr("type"), Some("result"));
    let got = juliet.expect().await?;
    assert_eq!(body(&got).as_deref(), Some("pipelined"));
    assert_eq!(got.attr("from"), Some("romeo@localhost/fast"));
    // The pipelined presence made the session available.
    let host = server.host("localhost").expect("host");
    assert!(host.sessions_of("romeo").iter().all(|s| s.is_available()));
    Ok(())
}

#[tokio::test]
async fn closing_the_stream_ends_the_session() -> anyhow::Result<()> {
    let server = server().await?;
    let host = server.host("localhost").expect("host");
    let romeo = with_resource(&server, "romeo", "leaving").await?;
    assert_eq!(host.sessions_of("romeo").len(), 1);
    romeo.close().await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !host.sessions_of("romeo").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session stayed in the table"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Its full JID is gone: an IQ to it now fails.
    let mut juliet = server.client("juliet").await?;
    let reply = juliet
        .iq_str("<iq type='get' to='romeo@localhost/leaving'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_error(&reply, "service-unavailable");
    Ok(())
}

#[tokio::test]
async fn sessions_per_account_are_limited() -> anyhow::Result<()> {
    let server = core_server()
        .user("romeo", "pw")
        .config_toml("[limits]\nmax_sessions_per_account = 2")
        .start()
        .await?;
    let _one = server.client("romeo").await?;
    let _two = server.client("romeo").await?;
    let mut raw = server.raw().await?;
    raw.login("localhost", "romeo", "pw").await?;
    let error = raw
        .bind(Some("third"))
        .await
        .expect_err("a third session is refused");
    assert!(error.to_string().contains("resource-constraint"), "{error}");
    Ok(())
}

/// Binds that arrive together are counted together: the limit holds however they
/// interleave, and every refused one gets `resource-constraint`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_binds_cannot_exceed_the_session_limit() -> anyhow::Result<()> {
    let server = core_server()
        .user("romeo", "pw")
        .config_toml("[limits]\nmax_sessions_per_account = 2")
        .start()
        .await?;
    let host = server.host("localhost").expect("host");
    for round in 0..5 {
        let mut clients = Vec::new();
        for _ in 0..8 {
            let mut raw = server.raw().await?;
            raw.login("localhost", "romeo", "pw").await?;
            clients.push(raw);
        }
        let binds = clients
            .iter_mut()
            .enumerate()
            .map(|(i, raw)| async move { raw.bind(Some(&format!("r{round}-{i}"))).await });
        let outcomes = futures::future::join_all(binds).await;
        let bound = outcomes.iter().filter(|o| o.is_ok()).count();
        for error in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(error.to_string().contains("resource-constraint"), "{error}");
        }
        assert_eq!(bound, 2, "round {round}: {bound} of 8 binds succeeded");
        assert_eq!(host.sessions_of("romeo").len(), 2, "round {round}");
        drop(clients);
        // The next round starts from an account without sessions.
        for _ in 0..200 {
            if !host.has_sessions("romeo") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!host.has_sessions("romeo"), "round {round}: sessions left");
    }
    Ok(())
}

#[tokio::test]
async fn silent_clients_are_pinged_and_closed_when_they_do_not_answer() -> anyhow::Result<()> {
    let server = core_server()
        .user("romeo", "pw")
        .config_toml("[limits]\nidle_timeout = 1\nping_timeout = 1")
        .start()
        .await?;
    // An answering client stays.
    let mut alive = server.client("romeo").await?;
    let ping = alive
        .expect_where(|s| {
            s.name() == "iq"
                && s.attr("type") == Some("get")
                && s.has_child("ping", "urn:xmpp:ping")
        })
        .await?;
    alive.send(&tern::stanza::iq_result(&ping, None)).await?;
    alive.sync().await?;
    // A silent one is closed with connection-timeout.
    drop(alive);
    let mut silent = server.client("romeo").await?;
    assert_eq!(
        silent.raw().expect_stream_error().await?.as_deref(),
        Some("connection-timeout")
    );
    Ok(())
}

#[tokio::test]
async fn a_client_that_keeps_talking_is_not_pinged() -> anyhow::Result<()> {
    let server = core_server()
        .user("romeo", "pw")
        .config_toml("[limits]\nidle_timeout = 2\nping_timeout = 5")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    // A request every 0.5 s for 4.5 s: more than twice the idle timeout in all, but
    // never 2 s of silence. (A server ping would be kept in the client's queue.)
    for _ in 0..9 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        romeo.sync().await?;
    }
    romeo.expect_silence(std::time::Duration::ZERO).await?;
    // Silent from now on: pinged once the idle timeout has passed, not before.
    let silent_since = std::time::Instant::now();
    let ping = romeo
        .expect_where(|s| s.name() == "iq" && s.has_child("ping", "urn:xmpp:ping"))
        .await?;
    let waited = silent_since.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1500),
        "pinged {waited:?} into the silence"
    );
    romeo.send(&tern::stanza::iq_result(&ping, None)).await?;
    romeo.sync().await?;
    Ok(())
}

#[tokio::test]
async fn a_flooding_client_is_slowed_down_not_cut_off() -> anyhow::Result<()> {
    let server = core_server()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml("[limits]\nrate = 2048\nrate_burst = 2048")
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    // ~8 KiB at 2 KiB/s beyond a 2 KiB burst: the last of it is read about 3 s later.
    let filler = "x".repeat(1000);
    let started = std::time::Instant::now();
    for i in 0..8 {
        romeo
            .send_str(&format!(
                "<message to='localhost' id='f{i}'><body>{filler}</body></message>"
            ))
            .await?;
    }
    romeo.sync().await?;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "read without throttling"
    );
    // Nothing was dropped: every message got its answer (messages to the server bounce).
    for i in 0..8 {
        romeo
            .expect_where(|s| s.attr("id") == Some(format!("f{i}").as_str()))
            .await?;
    }
    // Others are not slowed down.
    let quick = std::time::Instant::now();
    juliet.sync().await?;
    assert!(quick.elapsed() < std::time::Duration::from_secs(2));
    Ok(())
}
