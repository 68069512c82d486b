//! Routing (RFC 6120 §8, §10; RFC 6121 §8): stamping, delivery rules, bounces, IQ
//! semantics, virtual hosts, and the built-in server IQs (disco, version, time, ping).

use tern::testing::{TestClient, TestServer};
use tern::xml::{ns, writer, Element};

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

fn is_iq_error(s: &Element) -> bool {
    s.name() == "iq" && s.attr("type") == Some("error")
}

#[tokio::test]
async fn from_is_stamped_with_the_full_jid() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    let romeo_jid = romeo.jid().to_string();
    romeo
        .send_str(&message("juliet@localhost", "stamped"))
        .await?;
    let got = juliet.expect().await?;
    assert_eq!(got.attr("from"), Some(romeo_jid.as_str()));
    // A bare 'from' is replaced by the full JID too.
    romeo
        .send_str("<message from='romeo@localhost' to='juliet@localhost' type='chat'><body>b</body></message>")
        .await?;
    assert_eq!(
        juliet.expect().await?.attr("from"),
        Some(romeo_jid.as_str())
    );
    // Directed presence as well.
    romeo
        .send_str(&format!("<presence to='{}'/>", juliet.jid()))
        .await?;
    let presence = juliet.expect().await?;
    assert_eq!(presence.name(), "presence");
    assert_eq!(presence.attr("from"), Some(romeo_jid.as_str()));
    Ok(())
}

/// Plain messages are relayed from the sender's own text (the server builds no tree for
/// them): what arrives must still be that message, stamped, in the client namespace.
#[tokio::test]
async fn a_plain_message_arrives_as_written_with_its_from_stamped() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    romeo
        .send_str(
            "<message to='juliet@localhost' type='chat' id='p1' xml:lang='it'>\
<body>a &amp; b &lt;c&gt; \"q\" é</body>\
<active xmlns='http://jabber.org/protocol/chatstates'/>\
<x xmlns='urn:example' v=\"x>'y\"><y>deep</y></x></message>",
        )
        .await?;
    let got = juliet.expect().await?;
    assert!(got.is("message", ns::CLIENT));
    assert_eq!(got.attr("from"), Some(romeo.jid().to_string().as_str()));
    assert_eq!(got.attr("to"), Some("juliet@localhost"));
    assert_eq!(got.attr("type"), Some("chat"));
    assert_eq!(got.attr("id"), Some("p1"));
    assert_eq!(got.attr_ns(ns::XML, "lang"), Some("it"));
    assert_eq!(body(&got).as_deref(), Some("a & b <c> \"q\" é"));
    assert!(got.has_child("active", "http://jabber.org/protocol/chatstates"));
    let x = got.get_child("x", "urn:example");
    assert_eq!(x.and_then(|x| x.attr("v")), Some("x>'y"));
    assert_eq!(
        x.and_then(|x| x.get_child("y", "urn:example"))
            .map(Element::text),
        Some("deep".to_string())
    );
    // The same with the namespace written out, and an empty message.
    romeo
        .send_str("<message xmlns='jabber:client' to='juliet@localhost' id='p2'/>")
        .await?;
    let got = juliet.expect().await?;
    assert!(got.is("message", ns::CLIENT));
    assert_eq!(got.attr("id"), Some("p2"));
    assert_eq!(got.attr("from"), Some(romeo.jid().to_string().as_str()));
    Ok(())
}

#[tokio::test]
async fn message_to_a_full_jid_reaches_only_that_resource() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut phone = with_resource(&server, "juliet", "phone").await?;
    let mut desk = with_resource(&server, "juliet", "desk").await?;
    phone.available().await?;
    desk.available().await?;
    romeo
        .send_str(&message("juliet@localhost/desk", "desk only"))
        .await?;
    let got = desk.expect().await?;
    assert_eq!(body(&got).as_deref(), Some("desk only"));
    assert_eq!(got.attr("to"), Some("juliet@localhost/desk"));
    phone.expect_silence(QUIET).await?;
    // A full JID reaches a resource even before it sent presence.
    let mut quiet = with_resource(&server, "juliet", "quiet").await?;
    romeo
        .send_str(&message("juliet@localhost/quiet", "psst"))
        .await?;
    assert_eq!(body(&quiet.expect().await?).as_deref(), Some("psst"));
    Ok(())
}

#[tokio::test]
async fn message_to_an_offline_full_jid_falls_back_to_the_bare_jid() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut desk = with_resource(&server, "juliet", "desk").await?;
    desk.available().await?;
    romeo
        .send_str(&message("juliet@localhost/gone", "fallback"))
        .await?;
    assert_eq!(body(&desk.expect().await?).as_deref(), Some("fallback"));
    // No resource at all: bounced.
    desk.send_str("<presence type='unavailable'/>").await?;
    desk.sync().await?;
    romeo
        .send_str(
            "<message to='juliet@localhost/gone' type='chat' id='fb2'><body>x</body></message>",
        )
        .await?;
    let bounce = romeo.expect().await?;
    assert_eq!(bounce.attr("id"), Some("fb2"));
    assert_error(&bounce, "service-unavailable");
    desk.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn message_to_bare_jid_without_available_resource_bounces() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str(
            "<message to='juliet@localhost' type='chat' id='m1'><body>anyone?</body></message>",
        )
        .await?;
    let bounce = romeo.expect().await?;
    assert_eq!(bounce.name(), "message");
    assert_eq!(bounce.attr("id"), Some("m1"));
    assert_eq!(bounce.attr("from"), Some("juliet@localhost"));
    assert_eq!(bounce.attr("to"), Some(romeo.jid().to_string().as_str()));
    assert_error(&bounce, "service-unavailable");
    assert_eq!(error_type(&bounce).as_deref(), Some("cancel"));
    // Headlines are dropped silently (RFC 6121 §8.5.2.1.1), errors never bounce.
    romeo
        .send_str("<message to='juliet@localhost' type='headline'><body>news</body></message>")
        .await?;
    romeo
        .send_str("<message to='juliet@localhost' type='error' id='e1'/>")
        .await?;
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn message_to_unknown_user_is_service_unavailable() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    for to in ["nobody@localhost", "nobody@localhost/res"] {
        romeo
            .send_str(&format!(
                "<message to='{to}' type='chat' id='u1'><body>x</body></message>"
            ))
            .await?;
        let bounce = romeo.expect().await?;
        assert_eq!(bounce.attr("id"), Some("u1"));
        assert_eq!(bounce.attr("from"), Some(to));
        assert_error(&bounce, "service-unavailable");
    }
    // An error to an unknown user is dropped, not bounced back (no loops).
    romeo
        .send_str("<message to='nobody@localhost' type='error'/>")
        .await?;
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn other_domains_are_remote_server_not_found() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str("<message to='friar@verona.example' type='chat' id='r1'><body>x</body></message>")
        .await?;
    let bounce = romeo.expect().await?;
    assert_eq!(bounce.attr("id"), Some("r1"));
    assert_eq!(bounce.attr("from"), Some("friar@verona.example"));
    assert_error(&bounce, "remote-server-not-found");
    let reply = romeo
        .iq_str("<iq type='get' to='verona.example'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_error(&reply, "remote-server-not-found");
    Ok(())
}

#[tokio::test]
async fn malformed_to_is_jid_malformed() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str("<message to='@@bad@@' type='chat' id='j1'><body>x</body></message>")
        .await?;
    let reply = romeo.expect().await?;
    assert_eq!(reply.attr("id"), Some("j1"));
    assert_error(&reply, "jid-malformed");
    romeo.sync().await
}

#[tokio::test]
async fn message_to_the_server_is_service_unavailable() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str("<message to='localhost' type='chat' id='s1'><body>hi server</body></message>")
        .await?;
    let reply = romeo.expect().await?;
    assert_eq!(reply.attr("id"), Some("s1"));
    assert_error(&reply, "service-unavailable");
    Ok(())
}

#[tokio::test]
async fn iq_to_server_with_unknown_namespace_is_service_unavailable() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    for iq in [
        "<iq type='get' to='localhost'><query xmlns='urn:example:unknown'/></iq>",
        "<iq type='set' to='localhost'><query xmlns='urn:example:unknown'/></iq>",
        "<iq type='get'><query xmlns='urn:example:unknown'/></iq>",
        // A known namespace with the wrong type: ping is a get.
        "<iq type='set' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    ] {
        let reply = romeo.iq_str(iq).await?;
        assert_error(&reply, "service-unavailable");
        // The original payload may be echoed; the error is the point.
        assert!(reply.get_child("error", ns::CLIENT).is_some(), "{iq}");
    }
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn iq_with_wrong_child_count_is_bad_request() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let two = romeo
        .iq_str("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/><query xmlns='jabber:iq:version'/></iq>")
        .await?;
    assert_error(&two, "bad-request");
    let none = romeo.iq_str("<iq type='get' to='localhost'/>").await?;
    assert_error(&none, "bad-request");
    let bad_type = romeo
        .iq_str("<iq type='fetch' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_error(&bad_type, "bad-request");
    // Exactly one reply each.
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn iq_without_id_is_bad_request() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    let reply = romeo.expect().await?;
    assert!(is_iq_error(&reply), "{}", writer::to_string(&reply));
    assert_error(&reply, "bad-request");
    // And not also a pong.
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn iq_between_clients_goes_there_and_back() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    let romeo_jid = romeo.jid().to_string();
    let juliet_jid = juliet.jid().to_string();
    romeo
        .send_str(&format!(
            "<iq type='get' id='v1' to='{juliet_jid}'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await?;
    let request = juliet.expect().await?;
    assert_eq!(request.attr("type"), Some("get"));
    assert_eq!(request.attr("id"), Some("v1"));
    assert_eq!(request.attr("from"), Some(romeo_jid.as_str()));
    assert!(request.get_child("query", ns::VERSION).is_some());
    juliet
        .send_str(&format!(
            "<iq type='result' id='v1' to='{romeo_jid}'><query xmlns='jabber:iq:version'><name>Nurse</name></query></iq>"
        ))
        .await?;
    let result = romeo.expect().await?;
    assert_eq!(result.attr("type"), Some("result"));
    assert_eq!(result.attr("id"), Some("v1"));
    assert_eq!(result.attr("from"), Some(juliet_jid.as_str()));
    let name = result
        .get_child("query", ns::VERSION)
        .and_then(|q| q.get_child("name", ns::VERSION))
        .map(|n| n.text());
    assert_eq!(name.as_deref(), Some("Nurse"));
    // Errors travel back the same way.
    romeo
        .send_str(&format!(
            "<iq type='set' id='v2' to='{juliet_jid}'><x xmlns='urn:example'/></iq>"
        ))
        .await?;
    let request = juliet.expect().await?;
    let error = tern::stanza::error_reply(
        &request,
        &tern::stanza::StanzaError::new(tern::stanza::Condition::FeatureNotImplemented),
    );
    juliet.send(&error).await?;
    let got = romeo.expect().await?;
    assert_eq!(got.attr("id"), Some("v2"));
    assert_error(&got, "feature-not-implemented");
    Ok(())
}

#[tokio::test]
async fn iq_to_offline_full_jid_or_other_bare_jid_is_service_unavailable() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let _juliet = server.client("juliet").await?;
    let offline = romeo
        .iq_str("<iq type='get' to='juliet@localhost/nope'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_error(&offline, "service-unavailable");
    assert_eq!(offline.attr("from"), Some("juliet@localhost/nope"));
    let bare = romeo
        .iq_str("<iq type='get' to='juliet@localhost'><query xmlns='urn:example:nothing'/></iq>")
        .await?;
    assert_error(&bare, "service-unavailable");
    Ok(())
}

#[tokio::test]
async fn iq_result_to_missing_resource_is_dropped_silently() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = server.client("juliet").await?;
    juliet.available().await?;
    romeo
        .send_str("<iq type='result' id='stale' to='juliet@localhost/nope'/>")
        .await?;
    romeo.send_str("<iq type='error' id='stale2' to='juliet@localhost/nope'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>").await?;
    romeo
        .send_str("<iq type='result' id='stale3' to='nobody@localhost/x'/>")
        .await?;
    romeo.sync().await?;
    romeo.expect_silence(QUIET).await?;
    juliet.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn virtual_hosts_route_between_each_other_and_keep_sessions_apart() -> anyhow::Result<()> {
    let server = core_server()
        .host("a.test")
        .host("b.test")
        .user("romeo@a.test", "pw")
        .user("juliet@b.test", "pw")
        .user("romeo@b.test", "pw")
        .start()
        .await?;
    let mut romeo_a = server.client("romeo@a.test").await?;
    let mut juliet_b = server.client("juliet@b.test").await?;
    let mut romeo_b = server.client("romeo@b.test").await?;
    assert_eq!(romeo_a.jid().domain().as_str(), "a.test");
    assert_eq!(romeo_b.jid().domain().as_str(), "b.test");
    for client in [&mut romeo_a, &mut juliet_b, &mut romeo_b] {
        client.available().await?;
    }

    romeo_a
        .send_str(&message("juliet@b.test", "across hosts"))
        .await?;
    let got = juliet_b.expect().await?;
    assert_eq!(body(&got).as_deref(), Some("across hosts"));
    assert_eq!(got.attr("from"), Some(romeo_a.jid().to_string().as_str()));
    juliet_b
        .send_str(&message(&romeo_a.jid().to_string(), "back"))
        .await?;
    assert_eq!(body(&romeo_a.expect().await?).as_deref(), Some("back"));
    // Same localpart, different host: different account and session.
    juliet_b.send_str(&message("romeo@b.test", "for b")).await?;
    assert_eq!(body(&romeo_b.expect().await?).as_deref(), Some("for b"));
    romeo_a.expect_silence(QUIET).await?;
    let a = server.host("a.test").expect("a.test");
    let b = server.host("b.test").expect("b.test");
    assert_eq!(a.sessions_of("romeo").len(), 1);
    assert_eq!(b.sessions_of("romeo").len(), 1);
    assert_eq!(a.sessions_of("juliet").len(), 0);
    // Each host answers for itself.
    let pong = romeo_a
        .iq_str("<iq type='get' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(pong.attr("type"), Some("result"));
    assert_eq!(pong.attr("from"), Some("b.test"));
    // juliet has no account on a.test.
    let mut raw = server.raw().await?;
    raw.open_stream("a.test").await?;
    let refused = raw.authenticate("SCRAM-SHA-1", "juliet", "pw").await?;
    assert!(refused.is_err(), "juliet@b.test logged in on a.test");
    // Unknown users on the other host bounce.
    romeo_a
        .send_str("<message to='juliet@a.test' type='chat' id='x1'><body>x</body></message>")
        .await?;
    assert_error(&romeo_a.expect().await?, "service-unavailable");
    Ok(())
}

#[tokio::test]
async fn disco_info_lists_the_server_features_and_identity() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    for iq in [
        "<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    ] {
        let reply = romeo.iq_str(iq).await?;
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "{}",
            writer::to_string(&reply)
        );
        let query = reply.get_child("query", ns::DISCO_INFO).expect("query");
        let features: Vec<String> = query
            .children()
            .filter(|c| c.name() == "feature")
            .filter_map(|c| c.attr("var").map(str::to_string))
            .collect();
        for expected in [
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            ns::PING,
            ns::VERSION,
            ns::TIME,
        ] {
            assert!(
                features.iter().any(|f| f == expected),
                "{expected} missing from {features:?}"
            );
        }
        let mut sorted = features.clone();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            features.len(),
            "duplicate features: {features:?}"
        );
        let identity = query
            .children()
            .find(|c| c.name() == "identity")
            .expect("an identity");
        assert_eq!(identity.attr("category"), Some("server"));
        assert_eq!(identity.attr("type"), Some("im"));
    }
    // Without 'to' it is about one's own account, which the server answers for.
    let account = romeo
        .iq_str("<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    assert_eq!(
        account.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&account)
    );
    let identity = account
        .get_child("query", ns::DISCO_INFO)
        .and_then(|q| q.children().find(|c| c.name() == "identity"))
        .expect("an account identity");
    assert_eq!(identity.attr("category"), Some("account"));
    let items = romeo
        .iq_str("<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await?;
    assert_eq!(items.attr("type"), Some("result"));
    assert!(items.get_child("query", ns::DISCO_ITEMS).is_some());
    Ok(())
}

#[tokio::test]
async fn disco_info_for_an_unknown_node_is_item_not_found() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let node = romeo
        .iq_str("<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:example:none'/></iq>")
        .await?;
    assert_error(&node, "item-not-found");
    Ok(())
}

#[tokio::test]
async fn version_answers_tern() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        .await?;
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.attr("from"), Some("localhost"));
    let query = reply.get_child("query", ns::VERSION).expect("query");
    assert_eq!(
        query
            .get_child("name", ns::VERSION)
            .map(|n| n.text())
            .as_deref(),
        Some("Tern")
    );
    let version = query
        .get_child("version", ns::VERSION)
        .map(|n| n.text())
        .unwrap_or_default();
    assert!(!version.is_empty());
    assert!(
        query.get_child("os", ns::VERSION).is_none(),
        "the OS is shown by default"
    );
    Ok(())
}

#[tokio::test]
async fn time_has_utc_and_tzo() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let reply = romeo
        .iq_str("<iq type='get' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
        .await?;
    assert_eq!(reply.attr("type"), Some("result"));
    let time = reply.get_child("time", ns::TIME).expect("time");
    let utc = time
        .get_child("utc", ns::TIME)
        .map(|u| u.text())
        .unwrap_or_default();
    let tzo = time
        .get_child("tzo", ns::TIME)
        .map(|u| u.text())
        .unwrap_or_default();
    // XEP-0082 DateTime in UTC, e.g. 2024-01-31T12:34:56Z (fractions allowed).
    let parsed = chrono::DateTime::parse_from_rfc3339(&utc)
        .map_err(|e| anyhow::anyhow!("utc {utc:?}: {e}"))?;
    assert!(utc.ends_with('Z'), "{utc}");
    let skew = (chrono::Utc::now().timestamp() - parsed.timestamp()).abs();
    assert!(skew < 60, "server clock off by {skew}s");
    assert!(
        tzo == "Z" || (tzo.len() == 6 && (tzo.starts_with('+') || tzo.starts_with('-'))),
        "{tzo:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ping_without_to_is_answered_by_the_server() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let pong = romeo
        .iq_str("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(
        pong.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&pong)
    );
    assert_eq!(pong.children().count(), 0);
    // To one's own bare JID, too.
    let pong = romeo
        .iq_str("<iq type='get' to='romeo@localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(
        pong.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&pong)
    );
    // But not on someone else's behalf.
    let other = romeo
        .iq_str("<iq type='get' to='juliet@localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_error(&other, "service-unavailable");
    romeo.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn groupchat_to_a_bare_jid_is_never_delivered() -> anyhow::Result<()> {
    // RFC 6121 §8.5.2.1.1, §8.5.2.2.1 and §8.5.3.2.1: service-unavailable to the sender.
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = with_resource(&server, "juliet", "desk").await?;
    juliet.available().await?;
    for to in ["juliet@localhost", "juliet@localhost/gone"] {
        romeo
            .send_str(&format!(
                "<message to='{to}' type='groupchat' id='gc'><body>x</body></message>"
            ))
            .await?;
        let bounce = romeo.expect().await?;
        assert_eq!(bounce.attr("id"), Some("gc"), "{to}");
        assert_error(&bounce, "service-unavailable");
    }
    juliet.expect_silence(QUIET).await?;
    // To the full JID of an online resource it is delivered (a MUC would do this).
    romeo
        .send_str(
            "<message to='juliet@localhost/desk' type='groupchat'><body>room</body></message>",
        )
        .await?;
    assert_eq!(body(&juliet.expect().await?).as_deref(), Some("room"));
    // Without an available resource: still an error.
    juliet.send_str("<presence type='unavailable'/>").await?;
    juliet.sync().await?;
    romeo
        .send_str(
            "<message to='juliet@localhost' type='groupchat' id='gc2'><body>x</body></message>",
        )
        .await?;
    assert_error(&romeo.expect().await?, "service-unavailable");
    Ok(())
}

#[tokio::test]
async fn whitespace_keepalives_are_ignored() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    romeo.send_str(" \n\t ").await?;
    romeo.sync().await?;
    romeo.send_str(" ").await?;
    romeo.expect_silence(QUIET).await?;
    romeo.sync().await
}

#[tokio::test]
async fn addresses_are_compared_after_normalisation() -> anyhow::Result<()> {
    let server = server().await?;
    let mut romeo = server.client("romeo").await?;
    let mut juliet = with_resource(&server, "juliet", "Desk").await?;
    juliet.available().await?;
    // Localpart and domain are case-insensitive, the resource is not.
    romeo.send_str(&message("Juliet@LOCALHOST", "bare")).await?;
    assert_eq!(body(&juliet.expect().await?).as_deref(), Some("bare"));
    romeo
        .send_str(&message("JULIET@localhost/Desk", "full"))
        .await?;
    assert_eq!(body(&juliet.expect().await?).as_deref(), Some("full"));
    let pong = romeo
        .iq_str("<iq type='get' to='LocalHost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    assert_eq!(
        pong.attr("type"),
        Some("result"),
        "{}",
        writer::to_string(&pong)
    );
    Ok(())
}
