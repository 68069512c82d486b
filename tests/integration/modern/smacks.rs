//! XEP-0198 stream management: acks, resumption, and nothing lost when a connection
//! drops.

use std::time::Duration;

use tern::testing::{RawClient, TestClient, TestServer};
use tern::xml::{ns, Element};

const SM: &str = "urn:xmpp:sm:3";

fn config(resume_timeout: u32) -> String {
    format!("modules_enabled = [\"disco\", \"ping\", \"roster\", \"presence\", \"offline\", \"smacks\"]\n[modules.smacks]\nresume_timeout = {resume_timeout}")
}

fn body(stanza: &Element) -> Option<String> {
    stanza.get_child("body", ns::CLIENT).map(|b| b.text())
}

/// A server with stream management (`resume_timeout` seconds) and two clients, Romeo
/// already available.
async fn romeo_and_juliet(
    resume_timeout: u32,
) -> anyhow::Result<(TestServer, TestClient, TestClient)> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(&config(resume_timeout))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let juliet = server.client("juliet").await?;
    romeo.available().await?;
    Ok((server, romeo, juliet))
}

async fn enable(client: &mut TestClient) -> anyhow::Result<String> {
    client
        .send_str("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await?;
    let enabled = client.expect_where(|s| s.is("enabled", SM)).await?;
    assert_eq!(enabled.attr("resume"), Some("true"));
    Ok(enabled.attr("id").expect("resumption id").to_string())
}

async fn send_messages(from: &mut TestClient, to: &str, bodies: &[&str]) -> anyhow::Result<()> {
    for text in bodies {
        from.send_str(&format!(
            "<message to='{to}' type='chat'><body>{text}</body></message>"
        ))
        .await?;
    }
    from.sync().await
}

/// Reconnects as `user` and resumes `previd`, having received `h` stanzas.
async fn resume(
    server: &TestServer,
    user: &str,
    previd: &str,
    h: u32,
) -> anyhow::Result<(RawClient, Element)> {
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.authenticate("SCRAM-SHA-1", user, "pw").await??;
    let features = raw.open_stream("localhost").await?;
    assert!(features.has_child("sm", SM));
    raw.send_raw(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='{h}'/>"
    ))
    .await?;
    let answer = raw.read_element().await?;
    Ok((raw, answer))
}

#[tokio::test]
async fn acks_count_both_ways() -> anyhow::Result<()> {
    let (_server, mut romeo, mut juliet) = romeo_and_juliet(300).await?;
    enable(&mut romeo).await?;
    // Two stanzas handled, then a request.
    romeo.send_str("<presence/>").await?;
    romeo
        .send_str("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    romeo.send_str("<r xmlns='urn:xmpp:sm:3'/>").await?;
    let ack = romeo.expect_where(|s| s.is("a", SM)).await?;
    assert_eq!(ack.attr("h"), Some("2"));
    // The server asks for an ack after a few stanzas.
    send_messages(
        &mut juliet,
        romeo.jid().to_string().as_str(),
        &["1", "2", "3", "4", "5", "6"],
    )
    .await?;
    romeo.expect_where(|s| s.is("r", SM)).await?;
    romeo.send_str("<a xmlns='urn:xmpp:sm:3' h='5'/>").await?;
    romeo.sync().await?;
    Ok(())
}

#[tokio::test]
async fn resumption_keeps_the_jid_and_resends_what_was_not_acked() -> anyhow::Result<()> {
    let (server, mut romeo, mut juliet) = romeo_and_juliet(300).await?;
    let id = enable(&mut romeo).await?;
    let romeo_jid = romeo.jid().to_string();
    send_messages(&mut juliet, &romeo_jid, &["a", "b"]).await?;
    let mut received = 0u32;
    for expected in ["a", "b"] {
        let message = romeo.expect_where(|s| s.name() == "message").await?;
        assert_eq!(body(&message).as_deref(), Some(expected));
        received += 1;
    }
    // Romeo's connection drops; Juliet keeps writing to his full JID.
    drop(romeo);
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_messages(&mut juliet, &romeo_jid, &["c", "d"]).await?;
    // Resume having received "a" only: "b", "c" and "d" must come (again).
    let (mut raw, answer) = resume(&server, "romeo", &id, received - 1).await?;
    assert!(
        answer.is("resumed", SM),
        "{}",
        tern::xml::writer::to_string(&answer)
    );
    assert_eq!(answer.attr("previd"), Some(id.as_str()));
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let stanza = raw.read_element().await?;
        if stanza.name() == "message" {
            assert_eq!(stanza.attr("to"), Some(romeo_jid.as_str()));
            bodies.push(body(&stanza).unwrap_or_default());
        }
    }
    assert_eq!(bodies, vec!["b", "c", "d"]);
    // The resumed session is the same resource.
    send_messages(&mut juliet, &romeo_jid, &["e"]).await?;
    loop {
        let stanza = raw.read_element().await?;
        if stanza.name() == "message" {
            assert_eq!(body(&stanza).as_deref(), Some("e"));
            break;
        }
    }
    Ok(())
}

#[tokio::test]
async fn unknown_id_fails_and_binding_still_works() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config(300))
        .start()
        .await?;
    let (mut raw, answer) = resume(&server, "romeo", "no-such-session", 0).await?;
    assert!(answer.is("failed", SM));
    assert!(answer.has_child("item-not-found", ns::STANZAS_ERR));
    raw.bind(None).await?;
    Ok(())
}

#[tokio::test]
async fn another_users_session_cannot_be_resumed() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("tybalt", "pw")
        .config_toml(&config(300))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let id = enable(&mut romeo).await?;
    drop(romeo);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, answer) = resume(&server, "tybalt", &id, 0).await?;
    assert!(answer.is("failed", SM));
    Ok(())
}

#[tokio::test]
async fn after_the_timeout_unacked_messages_go_offline() -> anyhow::Result<()> {
    let (server, mut romeo, mut juliet) = romeo_and_juliet(1).await?;
    let id = enable(&mut romeo).await?;
    let romeo_jid = romeo.jid().to_string();
    send_messages(&mut juliet, &romeo_jid, &["in flight"]).await?;
    // Received on the wire but never acknowledged, then the connection drops.
    romeo.expect_where(|s| s.name() == "message").await?;
    drop(romeo);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_, answer) = resume(&server, "romeo", &id, 0).await?;
    assert!(
        answer.is("failed", SM),
        "expired: {}",
        tern::xml::writer::to_string(&answer)
    );
    // Nothing lost: the unacknowledged message went to offline storage.
    let mut fresh = server.client("romeo").await?;
    fresh.available().await?;
    let message = fresh.expect_where(|s| s.name() == "message").await?;
    assert_eq!(body(&message).as_deref(), Some("in flight"));
    Ok(())
}

#[tokio::test]
async fn acknowledging_more_than_was_sent_is_an_error() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config(300))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    enable(&mut romeo).await?;
    romeo.send_str("<a xmlns='urn:xmpp:sm:3' h='7'/>").await?;
    assert_eq!(
        romeo.raw().expect_stream_error().await?.as_deref(),
        Some("undefined-condition")
    );
    Ok(())
}

#[tokio::test]
async fn resuming_with_a_wrong_h_is_an_error() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .config_toml(&config(300))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let id = enable(&mut romeo).await?;
    drop(romeo);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Nothing was sent to Romeo after enabling; claiming 5 received is impossible.
    let mut raw = server.raw().await?;
    raw.login("localhost", "romeo", "pw").await?;
    raw.send_raw(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='5'/>"
    ))
    .await?;
    assert_eq!(
        raw.expect_stream_error().await?.as_deref(),
        Some("undefined-condition")
    );
    // The session is gone: resuming again fails cleanly.
    let (_, answer) = resume(&server, "romeo", &id, 0).await?;
    assert!(answer.is("failed", SM));
    Ok(())
}

/// A client that never acknowledges (or stays away) cannot make the server hold an
/// ever longer queue of unacknowledged stanzas: past the outbound queue size the stream
/// ends, and what was held goes the usual way (here: offline storage).
#[tokio::test]
async fn unacknowledged_stanzas_are_bounded() -> anyhow::Result<()> {
    use tern::xml::framer::Frame;
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .config_toml(&format!("{}\n[limits]\noutbound_queue = 16", config(300)))
        .start()
        .await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    enable(&mut juliet).await?;
    let to = juliet.jid().to_string();
    // One at a time, each read by Juliet (the outbound queue never fills), never acked.
    let mut condition = None;
    'outer: for i in 0..40 {
        romeo
            .send_str(&format!(
                "<message to='{to}' type='chat'><body>m{i}</body></message>"
            ))
            .await?;
        loop {
            match juliet.raw().read_frame().await? {
                Some(Frame::Stanza(s)) if s.is("error", ns::STREAM) => {
                    condition = s
                        .children()
                        .find(|c| c.ns() == ns::STREAMS_ERR && c.name() != "text")
                        .map(|c| c.name().to_string());
                    break 'outer;
                }
                Some(Frame::Stanza(s)) if body(&s).as_deref() == Some(format!("m{i}").as_str()) => {
                    break
                }
                Some(Frame::Stanza(_) | Frame::Open(_) | Frame::Message(_)) => {}
                Some(Frame::Close) | None => break 'outer,
            }
        }
    }
    assert_eq!(condition.as_deref(), Some("policy-violation"));
    Ok(())
}

fn load_slow(ctx: &mut tern::api::ModuleContext) -> anyhow::Result<()> {
    ctx.hook_iq(
        tern::api::IqType::Get,
        tern::api::IqTarget::Host,
        "urn:example:slow",
        "query",
        |_request| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(None)
        },
    );
    Ok(())
}

const SLOW: tern::api::ModuleDescriptor = tern::api::ModuleDescriptor {
    name: "slow",
    depends: &[],
    load: load_slow,
};

/// The old connection's reader can notice its lost connection late (here: it was busy
/// with a slow request) after the client already resumed on a new connection. Its report
/// must not detach the new connection.
#[tokio::test]
async fn a_late_report_from_the_old_connection_does_not_detach_the_resumed_one(
) -> anyhow::Result<()> {
    let server = TestServer::builder()
        .user("romeo", "pw")
        .user("juliet", "pw")
        .module(SLOW)
        .config_toml(&config(300).replace("\"smacks\"", "\"smacks\", \"slow\""))
        .start()
        .await?;
    let mut juliet = server.client("juliet").await?;
    // The old reader picks its branch at random when both are ready: try a few times.
    for round in 0..5 {
        let mut romeo = server.client("romeo").await?;
        let id = enable(&mut romeo).await?;
        let romeo_jid = romeo.jid().to_string();
        romeo
            .send_str(
                "<iq type='get' id='slow' to='localhost'><query xmlns='urn:example:slow'/></iq>",
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The connection drops while the request is being handled; the client resumes.
        drop(romeo);
        let (mut raw, answer) = resume(&server, "romeo", &id, 0).await?;
        assert!(answer.is("resumed", SM), "round {round}");
        // The slow request finishes and the old reader sees its connection is gone.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = format!("after {round}");
        send_messages(&mut juliet, &romeo_jid, &[text.as_str()]).await?;
        loop {
            let stanza = tokio::time::timeout(Duration::from_secs(3), raw.read_element())
                .await
                .map_err(|_| anyhow::anyhow!("round {round}: nothing arrived"))??;
            if stanza.name() == "message" {
                assert_eq!(body(&stanza).as_deref(), Some(text.as_str()));
                break;
            }
        }
        raw.send_raw("</stream:stream>").await?;
    }
    Ok(())
}
