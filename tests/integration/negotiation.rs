//! Stream negotiation (RFC 6120 §4-§7): headers, features at each stage, and the stream
//! errors that end a broken stream. After every error the server must keep serving.

use std::time::{Duration, Instant};

use anyhow::bail;
use tern::testing::{RawClient, TestServer};
use tern::xml::framer::Frame;
use tern::xml::{ns, Element};

use crate::common::*;

fn mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", ns::SASL)
        .map(|m| {
            m.children()
                .filter(|c| c.name() == "mechanism")
                .map(|c| c.text())
                .collect()
        })
        .unwrap_or_default()
}

fn child_names(features: &Element) -> Vec<(String, String)> {
    features
        .children()
        .map(|c| (c.ns(), c.name().to_string()))
        .collect()
}

async fn server_with_witness(
    builder: tern::testing::TestServerBuilder,
) -> anyhow::Result<(TestServer, tern::testing::TestClient)> {
    let server = builder
        .user("romeo", "pw")
        .user("juliet", "pw")
        .start()
        .await?;
    let witness = server.client("juliet").await?;
    Ok((server, witness))
}

/// Sends `data` on a fresh connection and returns the stream error condition, asserting
/// that the stream was closed (`</stream:stream>`) and then the connection.
async fn error_for(server: &TestServer, data: &str) -> anyhow::Result<Option<String>> {
    let mut raw = server.raw().await?;
    raw.send_raw(data).await?;
    finish(&mut raw).await
}

async fn finish(raw: &mut RawClient) -> anyhow::Result<Option<String>> {
    let (elements, closed) = drain(raw).await?;
    assert!(
        closed,
        "the stream was not closed with </stream:stream>: {elements:?}"
    );
    assert_connection_closed(raw).await?;
    Ok(stream_error_of(&elements))
}

// ---- headers ----

#[tokio::test]
async fn server_header_has_id_from_version_and_lang() -> anyhow::Result<()> {
    let server = core_server().user("romeo", "pw").start().await?;
    let mut raw = server.raw().await?;
    raw.send_raw(&header(
        "to='localhost' from='romeo@localhost' version='1.0' xml:lang='fr'",
    ))
    .await?;
    let Some(Frame::Open(ours)) = raw.read_frame().await? else {
        bail!("expected the server's stream header");
    };
    assert_eq!(ours.namespace, ns::STREAM);
    assert_eq!(ours.name, "stream");
    assert_eq!(ours.from.as_deref(), Some("localhost"));
    // RFC 6120 §4.7.2: 'to' echoes the client's 'from'.
    assert_eq!(ours.to.as_deref(), Some("romeo@localhost"));
    assert_eq!(ours.version.as_deref(), Some("1.0"));
    assert_eq!(
        ours.lang.as_deref(),
        Some("fr"),
        "xml:lang follows the client's"
    );
    let first_id = ours.id.clone().unwrap_or_default();
    assert!(
        first_id.len() >= 8,
        "stream id too short or missing: {first_id:?}"
    );
    let features = raw.read_element().await?;
    assert!(features.is("features", ns::STREAM));

    // Every stream (new connection or restart) gets a fresh id.
    let mut other = server.raw().await?;
    other.open_stream("localhost").await?;
    let second_id = other
        .server_header
        .as_ref()
        .and_then(|h| h.id.clone())
        .unwrap_or_default();
    assert_eq!(
        other
            .server_header
            .as_ref()
            .and_then(|h| h.lang.clone())
            .as_deref(),
        Some("en")
    );
    assert!(!second_id.is_empty());
    assert_ne!(first_id, second_id);
    other.authenticate("SCRAM-SHA-1", "romeo", "pw").await??;
    other.open_stream("localhost").await?;
    let restarted_id = other
        .server_header
        .as_ref()
        .and_then(|h| h.id.clone())
        .unwrap_or_default();
    assert!(!restarted_id.is_empty());
    assert_ne!(
        restarted_id, second_id,
        "the restarted stream reused the id"
    );
    Ok(())
}

// ---- features ----

#[tokio::test]
async fn features_before_tls_offer_only_required_starttls() -> anyhow::Result<()> {
    let server = core_server().tls(true).user("romeo", "pw").start().await?;
    let mut raw = server.raw().await?;
    let features = raw.open_stream("localhost").await?;
    assert_eq!(
        child_names(&features),
        vec![(ns::TLS.to_string(), "starttls".to_string())],
        "{features:?}"
    );
    let starttls = features.get_child("starttls", ns::TLS).expect("starttls");
    assert!(
        starttls.get_child("required", ns::TLS).is_some(),
        "<required/> missing"
    );

    // SASL before TLS is refused.
    raw.send_raw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1yb21lbyxyPWFiYw==</auth>").await?;
    let failure = raw.read_element().await?;
    assert!(failure.is("failure", ns::SASL));
    assert!(
        failure.get_child("encryption-required", ns::SASL).is_some(),
        "{failure:?}"
    );
    Ok(())
}

#[tokio::test]
async fn features_after_tls_offer_all_mechanisms_and_channel_bindings() -> anyhow::Result<()> {
    let server = core_server().tls(true).user("romeo", "pw").start().await?;
    let ca = server.ca_cert().expect("ca").clone();
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.starttls("localhost", &ca).await?;
    let features = raw.open_stream("localhost").await?;
    let offered = mechanisms(&features);
    for expected in [
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256-PLUS",
        "PLAIN",
    ] {
        assert!(
            offered.iter().any(|m| m == expected),
            "{expected} missing from {offered:?}"
        );
    }
    assert!(
        features.get_child("starttls", ns::TLS).is_none(),
        "STARTTLS offered again inside TLS"
    );
    let bindings: Vec<String> = features
        .get_child("sasl-channel-binding", ns::SASL_CB)
        .expect("XEP-0440 <sasl-channel-binding/> missing")
        .children()
        .filter(|c| c.name() == "channel-binding")
        .filter_map(|c| c.attr("type").map(str::to_string))
        .collect();
    assert!(
        bindings.contains(&"tls-exporter".to_string()),
        "{bindings:?}"
    );
    assert!(
        bindings.contains(&"tls-server-end-point".to_string()),
        "{bindings:?}"
    );

    // The same over direct TLS.
    let mut direct =
        RawClient::connect_direct_tls(server.direct_tls_addr().expect("direct"), "localhost", &ca)
            .await?;
    assert_eq!(direct.alpn.as_deref(), Some(&b"xmpp-client"[..]));
    let features = direct.open_stream("localhost").await?;
    let offered = mechanisms(&features);
    assert!(
        offered.contains(&"SCRAM-SHA-256-PLUS".to_string()),
        "{offered:?}"
    );
    assert!(offered.contains(&"PLAIN".to_string()), "{offered:?}");
    assert!(features.get_child("starttls", ns::TLS).is_none());
    Ok(())
}

#[tokio::test]
async fn features_without_tls_offer_no_plain_and_no_plus() -> anyhow::Result<()> {
    let server = core_server().user("romeo", "pw").start().await?;
    let mut raw = server.raw().await?;
    let features = raw.open_stream("localhost").await?;
    let mut offered = mechanisms(&features);
    offered.sort();
    assert_eq!(
        offered,
        vec!["SCRAM-SHA-1".to_string(), "SCRAM-SHA-256".to_string()]
    );
    assert!(
        features.get_child("starttls", ns::TLS).is_none(),
        "no certificate, yet STARTTLS offered"
    );
    assert!(features
        .get_child("sasl-channel-binding", ns::SASL_CB)
        .is_none());
    Ok(())
}

#[tokio::test]
async fn features_after_auth_offer_bind_and_optional_session() -> anyhow::Result<()> {
    let server = core_server().user("romeo", "pw").start().await?;
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.authenticate("SCRAM-SHA-256", "romeo", "pw").await??;
    let features = raw.open_stream("localhost").await?;
    assert!(
        features.get_child("bind", ns::BIND).is_some(),
        "{features:?}"
    );
    let session = features
        .get_child("session", ns::SESSION)
        .expect("session feature");
    assert!(session.get_child("optional", ns::SESSION).is_some());
    assert!(
        features.get_child("mechanisms", ns::SASL).is_none(),
        "SASL offered after authentication"
    );
    let jid = raw.bind(Some("balcony")).await?;
    assert_eq!(jid.to_string(), "romeo@localhost/balcony");
    Ok(())
}

// ---- stream errors in the header ----

#[tokio::test]
async fn header_errors() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown host", header("to='elsewhere.example' version='1.0'"), "host-unknown"),
        ("missing to", header("version='1.0'"), "host-unknown"),
        ("to is a user JID", header("to='romeo@localhost' version='1.0'"), "host-unknown"),
        (
            "wrong stream namespace",
            format!("{HEADER_PREFIX}<stream:stream xmlns='jabber:client' xmlns:stream='urn:example:wrong' to='localhost' version='1.0'>"),
            "invalid-namespace",
        ),
        ("version missing", header("to='localhost'"), "unsupported-version"),
        ("version 0.9", header("to='localhost' version='0.9'"), "unsupported-version"),
        (
            "DOCTYPE before the header",
            format!("{HEADER_PREFIX}<!DOCTYPE stream:stream>{}", header("to='localhost' version='1.0'")),
            "restricted-xml",
        ),
        (
            "billion laughs",
            format!(
                "{HEADER_PREFIX}<!DOCTYPE stream:stream [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'><!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>{}<message to='juliet@localhost'><body>&lol3;</body></message>",
                header("to='localhost' version='1.0'")
            ),
            "restricted-xml",
        ),
        (
            "external entity",
            format!(
                "{HEADER_PREFIX}<!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>{}<message to='juliet@localhost'><body>&xxe;</body></message>",
                header("to='localhost' version='1.0'")
            ),
            "restricted-xml",
        ),
    ];
    for (what, data, expected) in cases {
        let condition = error_for(&server, &data).await?;
        assert_eq!(condition.as_deref(), Some(expected), "{what}");
        assert_alive(&server, &mut witness, "romeo").await?;
    }
    Ok(())
}

#[tokio::test]
async fn stream_error_is_preceded_by_a_server_header() -> anyhow::Result<()> {
    let server = core_server().start().await?;
    let mut raw = server.raw().await?;
    raw.send_raw(&header("to='elsewhere.example' version='1.0'"))
        .await?;
    let Some(Frame::Open(ours)) = raw.read_frame().await? else {
        bail!("the stream error was not preceded by a stream header");
    };
    assert_eq!(ours.namespace, ns::STREAM);
    assert!(ours.id.is_some());
    Ok(())
}

// ---- stream errors in the XML ----

#[tokio::test]
async fn xml_errors_before_authentication() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    let cases = [
        (
            "mismatched tags",
            "<message><body>x</message>",
            "not-well-formed",
        ),
        ("comment", "<!-- hello -->", "restricted-xml"),
        ("processing instruction", "<?evil data?>", "restricted-xml"),
        ("DOCTYPE in the stream", "<!DOCTYPE foo>", "restricted-xml"),
        (
            "undeclared entity",
            "<message to='juliet@localhost'><body>&foo;</body></message>",
            "restricted-xml",
        ),
        (
            "comment inside a stanza",
            "<message to='juliet@localhost'><!-- x --><body>x</body></message>",
            "restricted-xml",
        ),
    ];
    for (what, data, expected) in cases {
        let mut raw = server.raw().await?;
        raw.open_stream("localhost").await?;
        raw.send_raw(data).await?;
        let condition = finish(&mut raw).await?;
        assert_eq!(condition.as_deref(), Some(expected), "{what}");
        assert_alive(&server, &mut witness, "romeo").await?;
    }
    witness.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn xml_errors_in_a_bound_session() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    let cases = [
        (
            "mismatched tags",
            "<message to='juliet@localhost'><body>x</message>",
            "not-well-formed",
        ),
        (
            "undeclared entity",
            "<message to='juliet@localhost'><body>&foo;</body></message>",
            "restricted-xml",
        ),
        ("processing instruction", "<?pi x?>", "restricted-xml"),
        (
            "NUL in text",
            "<message to='juliet@localhost'><body>a\0b</body></message>",
            "not-well-formed",
        ),
        (
            "NUL in a name",
            "<mess\0age to='juliet@localhost'/>",
            "not-well-formed",
        ),
    ];
    for (what, data, expected) in cases {
        let mut romeo = server.client("romeo").await?;
        romeo.send_str(data).await?;
        let condition = finish(romeo.raw()).await?;
        assert_eq!(condition.as_deref(), Some(expected), "{what}");
        assert_alive(&server, &mut witness, "romeo").await?;
    }
    witness.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn oversize_stanza_is_a_policy_violation() -> anyhow::Result<()> {
    let (server, mut witness) =
        server_with_witness(core_server().config_toml("[limits]\nmax_stanza_size = 2048")).await?;
    witness.available().await?;
    let mut romeo = server.client("romeo").await?;
    // Under the limit: delivered.
    romeo
        .send_str(&message("juliet@localhost", &"a".repeat(1000)))
        .await?;
    let got = witness.expect().await?;
    assert_eq!(body(&got).map(|b| b.len()), Some(1000));
    // Over the limit: the stream ends and nothing is delivered.
    romeo
        .send_str(&message("juliet@localhost", &"b".repeat(4000)))
        .await?;
    assert_eq!(
        finish(romeo.raw()).await?.as_deref(),
        Some("policy-violation")
    );
    witness.expect_silence(QUIET).await?;
    assert_alive(&server, &mut witness, "romeo").await?;

    // Also before authentication, and for a stanza that never ends.
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.send_raw(&format!(
        "<message to='juliet@localhost'><body>{}",
        "c".repeat(5000)
    ))
    .await?;
    assert_eq!(finish(&mut raw).await?.as_deref(), Some("policy-violation"));
    assert_alive(&server, &mut witness, "romeo").await?;
    Ok(())
}

#[tokio::test]
async fn nesting_too_deep_is_a_policy_violation() -> anyhow::Result<()> {
    let (server, mut witness) =
        server_with_witness(core_server().config_toml("[limits]\nmax_depth = 8")).await?;
    witness.available().await?;
    let mut romeo = server.client("romeo").await?;
    // Depth 5 (message, x, a, a, a): fine.
    romeo
        .send_str("<message to='juliet@localhost'><body>ok</body><x xmlns='urn:example'><a><a><a/></a></a></x></message>")
        .await?;
    let got = witness.expect().await?;
    assert_eq!(body(&got).as_deref(), Some("ok"));
    let deep = format!(
        "<message to='juliet@localhost'><x xmlns='urn:example'>{}",
        "<a>".repeat(20)
    );
    romeo.send_str(&deep).await?;
    assert_eq!(
        finish(romeo.raw()).await?.as_deref(),
        Some("policy-violation")
    );
    witness.expect_silence(QUIET).await?;
    assert_alive(&server, &mut witness, "romeo").await?;
    Ok(())
}

// ---- stream errors in the negotiation order ----

#[tokio::test]
async fn stanzas_before_authentication_are_not_authorized() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    witness.available().await?;
    for stanza in [
        message("juliet@localhost", "sneaky"),
        "<presence/>".to_string(),
        "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>".to_string(),
    ] {
        let mut raw = server.raw().await?;
        raw.open_stream("localhost").await?;
        raw.send_raw(&stanza).await?;
        let (elements, closed) = drain(&mut raw).await?;
        assert!(closed);
        assert_eq!(
            stream_error_of(&elements).as_deref(),
            Some("not-authorized"),
            "{stanza}"
        );
        assert!(
            !elements.iter().any(|e| e.name() == "iq"),
            "the IQ was answered: {elements:?}"
        );
        assert_alive(&server, &mut witness, "romeo").await?;
    }
    witness.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn stanzas_before_bind_are_not_authorized() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    witness.available().await?;
    for stanza in [
        message("juliet@localhost", "sneaky"),
        "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>".to_string(),
    ] {
        let mut raw = server.raw().await?;
        raw.login("localhost", "romeo", "pw").await?;
        raw.send_raw(&stanza).await?;
        let (elements, closed) = drain(&mut raw).await?;
        assert!(closed);
        assert_eq!(
            stream_error_of(&elements).as_deref(),
            Some("not-authorized"),
            "{stanza}"
        );
        assert!(
            !elements.iter().any(|e| e.name() == "iq"),
            "the IQ was answered: {elements:?}"
        );
        assert_alive(&server, &mut witness, "romeo").await?;
    }
    witness.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn data_pipelined_after_starttls_is_refused_and_not_processed() -> anyhow::Result<()> {
    let server = core_server()
        .tls(true)
        .user("romeo", "pw")
        .user("juliet", "pw")
        .start()
        .await?;
    let mut witness = server.client("juliet").await?;
    witness.available().await?;
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    // One write: the command and an injected stanza (CVE-2011-0411 style).
    raw.send_raw(&format!(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{}",
        message("juliet@localhost", "injected")
    ))
    .await?;
    let (elements, closed) = drain(&mut raw).await?;
    assert!(closed, "{elements:?}");
    assert!(
        !elements.iter().any(|e| e.is("proceed", ns::TLS)),
        "the server proceeded: {elements:?}"
    );
    assert_eq!(
        stream_error_of(&elements).as_deref(),
        Some("policy-violation"),
        "{elements:?}"
    );
    assert_eq!(
        elements.len(),
        1,
        "only the stream error may follow: {elements:?}"
    );
    assert_connection_closed(&mut raw).await?;
    witness.expect_silence(QUIET).await?;
    assert_alive(&server, &mut witness, "romeo").await?;
    Ok(())
}

#[tokio::test]
async fn wrong_from_is_invalid_from() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    witness.available().await?;
    let mut romeo = server.client("romeo").await?;
    // Own bare and full JIDs are acceptable 'from's.
    romeo
        .send_str("<message from='romeo@localhost' to='juliet@localhost' type='chat'><body>bare</body></message>")
        .await?;
    assert_eq!(body(&witness.expect().await?).as_deref(), Some("bare"));
    let own = romeo.jid().to_string();
    romeo
        .send_str(&format!(
            "<message from='{own}' to='juliet@localhost' type='chat'><body>full</body></message>"
        ))
        .await?;
    let got = witness.expect().await?;
    assert_eq!(got.attr("from"), Some(own.as_str()));

    for spoofed in [
        "someone@else",
        "juliet@localhost",
        "romeo@localhost/other",
        "localhost",
    ] {
        let mut romeo = server.client("romeo").await?;
        romeo
            .send_str(&format!("<message from='{spoofed}' to='juliet@localhost' type='chat'><body>spoof</body></message>"))
            .await?;
        assert_eq!(
            finish(romeo.raw()).await?.as_deref(),
            Some("invalid-from"),
            "{spoofed}"
        );
        witness.expect_silence(QUIET).await?;
        assert_alive(&server, &mut witness, "romeo").await?;
    }
    Ok(())
}

#[tokio::test]
async fn unknown_top_level_element_is_unsupported_stanza_type() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    let mut romeo = server.client("romeo").await?;
    romeo.send_str("<foo xmlns='urn:example:foo'/>").await?;
    assert_eq!(
        finish(romeo.raw()).await?.as_deref(),
        Some("unsupported-stanza-type")
    );
    assert_alive(&server, &mut witness, "romeo").await?;

    let mut romeo = server.client("romeo").await?;
    romeo.send_str("<bar/>").await?;
    assert_eq!(
        finish(romeo.raw()).await?.as_deref(),
        Some("unsupported-stanza-type")
    );
    assert_alive(&server, &mut witness, "romeo").await?;
    Ok(())
}

#[tokio::test]
async fn slow_negotiation_is_a_connection_timeout() -> anyhow::Result<()> {
    let (server, mut witness) =
        server_with_witness(core_server().config_toml("[limits]\nnegotiation_timeout = 1")).await?;
    let started = Instant::now();
    // One client stops after the header, one sends nothing at all, one after SASL.
    let mut after_header = server.raw().await?;
    after_header.open_stream("localhost").await?;
    let mut silent = server.raw().await?;
    let mut after_auth = server.raw().await?;
    after_auth.open_stream("localhost").await?;
    after_auth
        .authenticate("SCRAM-SHA-1", "romeo", "pw")
        .await??;
    after_auth.open_stream("localhost").await?;
    // A bound session is past negotiation: the deadline does not apply to it.
    let mut bound = server.client("romeo").await?;

    for raw in [&mut after_header, &mut silent, &mut after_auth] {
        assert_eq!(finish(raw).await?.as_deref(), Some("connection-timeout"));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "timed out too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "timed out too late: {elapsed:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    bound.sync().await?;
    assert_alive(&server, &mut witness, "romeo").await?;
    Ok(())
}

#[tokio::test]
async fn header_to_is_case_insensitive() -> anyhow::Result<()> {
    let server = core_server().user("romeo", "pw").start().await?;
    let mut raw = server.raw().await?;
    raw.open_stream("LocalHost").await?;
    assert_eq!(
        raw.server_header
            .as_ref()
            .and_then(|h| h.from.clone())
            .as_deref(),
        Some("localhost")
    );
    raw.authenticate("SCRAM-SHA-1", "romeo", "pw").await??;
    raw.open_stream("localhost").await?;
    let jid = raw.bind(None).await?;
    assert_eq!(jid.domain().as_str(), "localhost");
    Ok(())
}

#[tokio::test]
async fn restarted_stream_must_address_the_same_host() -> anyhow::Result<()> {
    let server = core_server()
        .host("a.test")
        .host("b.test")
        .user("romeo@a.test", "pw")
        .start()
        .await?;
    let mut raw = server.raw().await?;
    raw.open_stream("a.test").await?;
    raw.authenticate("SCRAM-SHA-1", "romeo", "pw").await??;
    // By hand: open_stream expects features, which a refused header does not get.
    raw.restart_framer();
    raw.send_raw(&header("to='b.test' version='1.0'")).await?;
    assert_eq!(finish(&mut raw).await?.as_deref(), Some("host-unknown"));
    Ok(())
}

#[tokio::test]
async fn more_header_checks() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    // Not <stream:stream> at all.
    let features_root = format!(
        "{HEADER_PREFIX}<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    );
    assert_eq!(
        error_for(&server, &features_root).await?.as_deref(),
        Some("bad-format")
    );
    // RFC 6120 §4.9.3.22: only UTF-8.
    let latin1 = format!(
        "<?xml version='1.0' encoding='ISO-8859-1'?>{}",
        header("to='localhost' version='1.0'").trim_start_matches(HEADER_PREFIX)
    );
    assert_eq!(
        error_for(&server, &latin1).await?.as_deref(),
        Some("unsupported-encoding")
    );
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.send_bytes(b"<message to='juliet@localhost'><body>\xff\xfe</body></message>")
        .await?;
    assert_eq!(
        finish(&mut raw).await?.as_deref(),
        Some("unsupported-encoding")
    );
    assert_alive(&server, &mut witness, "romeo").await?;

    // A higher version is answered with ours (RFC 6120 §4.7.5), not refused.
    let mut raw = server.raw().await?;
    raw.send_raw(&header("to='localhost' version='2.0'"))
        .await?;
    let Some(Frame::Open(ours)) = raw.read_frame().await? else {
        bail!("expected a stream header");
    };
    assert_eq!(ours.version.as_deref(), Some("1.0"));
    let features = raw.read_element().await?;
    assert!(features.get_child("mechanisms", ns::SASL).is_some());
    Ok(())
}

#[tokio::test]
async fn stanzas_in_another_namespace_are_invalid_namespace() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server()).await?;
    // A server-to-server stream on the client port: the stanzas are in jabber:server.
    let s2s = format!(
        "{HEADER_PREFIX}<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><message to='juliet@localhost'><body>x</body></message>"
    );
    assert_eq!(
        error_for(&server, &s2s).await?.as_deref(),
        Some("invalid-namespace")
    );
    assert_alive(&server, &mut witness, "romeo").await?;
    // The same before binding and after.
    let mut raw = server.raw().await?;
    raw.login("localhost", "romeo", "pw").await?;
    raw.send_raw("<iq xmlns='jabber:server' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>").await?;
    assert_eq!(
        finish(&mut raw).await?.as_deref(),
        Some("invalid-namespace")
    );
    let mut romeo = server.client("romeo").await?;
    romeo
        .send_str("<message xmlns='jabber:server' to='juliet@localhost'><body>x</body></message>")
        .await?;
    assert_eq!(
        finish(romeo.raw()).await?.as_deref(),
        Some("invalid-namespace")
    );
    witness.expect_silence(QUIET).await?;
    assert_alive(&server, &mut witness, "romeo").await?;
    Ok(())
}

#[tokio::test]
async fn whitespace_after_starttls_is_harmless_but_a_stanza_after_it_is_not() -> anyhow::Result<()>
{
    let server = core_server().tls(true).user("romeo", "pw").start().await?;
    let ca = server.ca_cert().expect("ca").clone();
    // go-sendxmpp writes "<starttls/>\n" in one go.
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.starttls_sending(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\r\n",
        "localhost",
        &ca,
    )
    .await?;
    raw.open_stream("localhost").await?;
    raw.authenticate("SCRAM-SHA-1-PLUS", "romeo", "pw")
        .await??;
    // Whitespace followed by a stanza is still an injection.
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    raw.send_raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n <presence/>")
        .await?;
    let (elements, closed) = drain(&mut raw).await?;
    assert!(closed);
    assert!(
        !elements.iter().any(|e| e.is("proceed", ns::TLS)),
        "{elements:?}"
    );
    assert_eq!(
        stream_error_of(&elements).as_deref(),
        Some("policy-violation")
    );
    Ok(())
}

/// A client that sends requests during negotiation but never reads the answers stalls
/// the server's writes; the negotiation deadline still ends the connection.
#[tokio::test]
async fn a_client_that_never_reads_cannot_outlast_the_negotiation_deadline() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .config_toml(
            "modules_enabled = [\"disco\", \"ping\", \"register\"]\n[limits]\nnegotiation_timeout = 1",
        )
        .start()
        .await?;
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    // Pre-authentication requests (the registration form) whose answers pile up unread.
    let request = "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>".repeat(1000);
    for _ in 0..100 {
        if tokio::time::timeout(Duration::from_millis(200), raw.send_raw(&request))
            .await
            .is_err()
        {
            break; // the server stopped reading: it is stuck writing
        }
    }
    let inner = server.server().inner().clone();
    let start = Instant::now();
    while inner.connection_count() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the connection outlived the negotiation deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(raw);
    Ok(())
}

/// A token that never ends, sent a little at a time (slowly enough that every read holds
/// one small piece): the limits count what sits unfinished in the parser, so it ends at
/// its limit, not at the end of memory or of a timeout.
#[tokio::test]
async fn endless_tokens_sent_slowly_end_at_their_limit() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(
        core_server().config_toml("[limits]\nmax_stanza_size = 4096\nmax_attribute_length = 1024"),
    )
    .await?;
    // (what, the token's start, bytes after which the limit must have struck): text
    // grows into the stanza budget; a name or an attribute value is one token, bounded
    // by the attribute length (plus the parser's small margin).
    let cases = [
        ("text", "<message to='juliet@localhost'><body>", 4096),
        (
            "attribute value",
            "<message to='juliet@localhost' id='",
            1024 + 64,
        ),
        (
            "element name",
            "<message to='juliet@localhost'><b",
            1024 + 64,
        ),
    ];
    for (what, start, limit) in cases {
        let mut romeo = server.client("romeo").await?;
        romeo.send_str(start).await?;
        let chunk = "x".repeat(128);
        let mut sent = start.len();
        // One chunk past the limit, no further: bytes the server never reads would
        // turn its close into a reset that could swallow the stream error.
        while sent <= limit {
            romeo.raw().send_raw(&chunk).await?;
            sent += chunk.len();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            finish(romeo.raw()).await?.as_deref(),
            Some("policy-violation"),
            "{what}"
        );
        assert_alive(&server, &mut witness, "romeo").await?;
    }
    witness.expect_silence(QUIET).await?;
    Ok(())
}

/// Bytes that are not a TLS ClientHello where one must come (after `<proceed/>`, or first
/// on the direct TLS port) get a TLS alert and the connection closed, and cost the server
/// nothing more.
#[tokio::test]
async fn bytes_that_are_not_a_client_hello_get_an_alert_and_a_hang_up() -> anyhow::Result<()> {
    let (server, mut witness) = server_with_witness(core_server().tls(true)).await?;
    let not_tls = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut after_proceed = server.raw().await?;
    after_proceed.open_stream("localhost").await?;
    after_proceed
        .send_raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    let proceed = after_proceed.read_element().await?;
    assert!(proceed.is("proceed", ns::TLS), "{proceed:?}");
    let mut direct = RawClient::connect(server.direct_tls_addr().expect("direct")).await?;
    for (name, raw) in [
        ("after proceed", &mut after_proceed),
        ("direct", &mut direct),
    ] {
        raw.send_bytes(not_tls).await?;
        let answer = raw.read_bytes_until_closed().await?;
        const ALERT: u8 = 21;
        assert_eq!(answer.first(), Some(&ALERT), "{name}: {answer:?}");
    }
    assert_alive(&server, &mut witness, "romeo").await?;
    Ok(())
}
