//! SASL (RFC 6120 §6, RFC 5802, RFC 9266): every mechanism, failures and their limits.
//! A `<success/>` is only accepted by the test client after it verified the server
//! signature (the `sasl` crate's `success`), so success also proves mutual auth.

use anyhow::{anyhow, bail};
use base64::Engine;
use sasl::client::mechanisms::Scram;
use sasl::client::Mechanism as _;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::ChannelBinding;
use tern::testing::{RawClient, SaslRefusal, TestServer, TlsMode};
use tern::xml::{ns, writer, Element};

use crate::common::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn server() -> anyhow::Result<TestServer> {
    TestServer::builder().user("romeo", "pw").start().await
}

async fn tls_server() -> anyhow::Result<TestServer> {
    TestServer::builder()
        .tls(true)
        .user("romeo", "pw")
        .start()
        .await
}

/// A raw client that opened its stream and, on a TLS server, did STARTTLS.
async fn ready(server: &TestServer) -> anyhow::Result<RawClient> {
    let mut raw = server.raw().await?;
    raw.open_stream("localhost").await?;
    if let Some(ca) = server.ca_cert() {
        raw.starttls("localhost", ca).await?;
        raw.open_stream("localhost").await?;
    }
    Ok(raw)
}

fn failure_condition(element: &Element) -> Option<String> {
    element
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_string())
}

/// Sends raw SASL XML and returns the condition of the `<failure/>` that must follow.
async fn expect_failure(raw: &mut RawClient, xml: &str) -> anyhow::Result<String> {
    raw.send_raw(xml).await?;
    let reply = raw.read_element().await?;
    if !reply.is("failure", ns::SASL) {
        bail!("expected a SASL failure, got {}", writer::to_string(&reply));
    }
    failure_condition(&reply).ok_or_else(|| anyhow!("failure without a condition"))
}

/// Runs an exchange with an arbitrary `sasl` client mechanism: Ok(Ok(())) on a verified
/// success, Ok(Err(condition)) on failure.
async fn exchange(
    raw: &mut RawClient,
    mechanism: &str,
    mut client: Box<dyn sasl::client::Mechanism + Send>,
) -> anyhow::Result<Result<(), String>> {
    raw.send_raw(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>",
        B64.encode(client.initial())
    ))
    .await?;
    loop {
        let reply = raw.read_element().await?;
        let text = reply.text();
        let data = if text.trim() == "=" {
            Vec::new()
        } else {
            B64.decode(text.trim())?
        };
        match reply.name() {
            "challenge" => {
                let response = client.response(&data).map_err(|e| anyhow!("client: {e}"))?;
                raw.send_raw(&format!(
                    "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                    B64.encode(response)
                ))
                .await?;
            }
            "success" => {
                client
                    .success(&data)
                    .map_err(|e| anyhow!("server signature: {e}"))?;
                return Ok(Ok(()));
            }
            "failure" => return Ok(Err(failure_condition(&reply).unwrap_or_default())),
            other => bail!("unexpected {other}"),
        }
    }
}

/// After SASL success: restart, bind, and prove the session works.
async fn finish_login(raw: &mut RawClient) -> anyhow::Result<()> {
    let features = raw.open_stream("localhost").await?;
    assert!(features.get_child("bind", ns::BIND).is_some());
    let jid = raw.bind(None).await?;
    assert_eq!(jid.to_bare().to_string(), "romeo@localhost");
    raw.send_raw("<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    let pong = raw.read_element().await?;
    assert_eq!(pong.attr("type"), Some("result"));
    assert_eq!(pong.attr("id"), Some("ping1"));
    Ok(())
}

#[tokio::test]
async fn scram_mechanisms_over_plain_tcp() -> anyhow::Result<()> {
    let server = server().await?;
    for mechanism in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let mut options = server.options("romeo", "pw");
        options.mechanism = mechanism.to_string();
        let mut client = server.client_with(options).await?;
        assert_eq!(client.jid().to_bare().to_string(), "romeo@localhost");
        client.sync().await?;
    }
    Ok(())
}

#[tokio::test]
async fn every_mechanism_over_tls() -> anyhow::Result<()> {
    let server = tls_server().await?;
    for tls in [TlsMode::StartTls, TlsMode::Direct] {
        for mechanism in [
            "PLAIN",
            "SCRAM-SHA-1",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256-PLUS",
        ] {
            let mut options = server.options("romeo", "pw");
            options.mechanism = mechanism.to_string();
            options.tls = tls;
            if tls == TlsMode::Direct {
                options.addr = server.direct_tls_addr().expect("direct TLS listener");
            }
            let mut client = server
                .client_with(options)
                .await
                .map_err(|e| e.context(format!("{mechanism} over {tls:?}")))?;
            client.sync().await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_both_not_authorized() -> anyhow::Result<()> {
    let server = server().await?;
    for mechanism in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let mut raw = ready(&server).await?;
        let wrong = raw
            .authenticate(mechanism, "romeo", "not-the-password")
            .await?;
        assert_eq!(
            wrong,
            Err(SaslRefusal("not-authorized".into())),
            "{mechanism} wrong password"
        );
        let unknown = raw.authenticate(mechanism, "nobody", "pw").await?;
        assert_eq!(
            unknown,
            Err(SaslRefusal("not-authorized".into())),
            "{mechanism} unknown user"
        );
        // Two failures are under the limit: the right password still works here.
        raw.authenticate(mechanism, "romeo", "pw").await??;
        finish_login(&mut raw).await?;
    }
    Ok(())
}

#[tokio::test]
async fn plain_wrong_password_and_unknown_user_over_tls() -> anyhow::Result<()> {
    let server = tls_server().await?;
    let mut raw = ready(&server).await?;
    assert_eq!(
        raw.authenticate("PLAIN", "romeo", "nope").await?,
        Err(SaslRefusal("not-authorized".into()))
    );
    assert_eq!(
        raw.authenticate("PLAIN", "nobody", "pw").await?,
        Err(SaslRefusal("not-authorized".into()))
    );
    raw.authenticate("PLAIN", "romeo", "pw").await??;
    finish_login(&mut raw).await
}

#[tokio::test]
async fn unknown_user_gets_a_challenge_with_a_stable_salt() -> anyhow::Result<()> {
    // No early failure for unknown users: they get a plausible server-first message,
    // the same one each time, so the answer does not reveal whether the account exists.
    let server = server().await?;
    let mut salts = Vec::new();
    for _ in 0..2 {
        let mut raw = ready(&server).await?;
        raw.send_raw(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
            B64.encode("n,,n=ghost,r=clientnonce123")
        ))
        .await?;
        let challenge = raw.read_element().await?;
        assert!(
            challenge.is("challenge", ns::SASL),
            "{}",
            writer::to_string(&challenge)
        );
        let server_first = String::from_utf8(B64.decode(challenge.text().trim())?)?;
        let salt = server_first
            .split(',')
            .find_map(|part| part.strip_prefix("s="))
            .ok_or_else(|| anyhow!("no salt in {server_first}"))?
            .to_string();
        assert!(
            server_first.starts_with("r=clientnonce123"),
            "{server_first}"
        );
        salts.push(salt);
    }
    assert_eq!(salts[0], salts[1], "the fake salt changes between attempts");
    Ok(())
}

#[tokio::test]
async fn three_failures_close_the_stream_with_policy_violation() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    for attempt in 1..=3 {
        let outcome = raw.authenticate("SCRAM-SHA-1", "romeo", "wrong").await?;
        assert_eq!(
            outcome,
            Err(SaslRefusal("not-authorized".into())),
            "attempt {attempt}"
        );
    }
    let (elements, closed) = drain(&mut raw).await?;
    assert!(closed);
    assert_eq!(
        stream_error_of(&elements).as_deref(),
        Some("policy-violation")
    );
    assert_connection_closed(&mut raw).await?;
    // Other failure kinds count too.
    let mut raw = ready(&server).await?;
    assert_eq!(
        expect_failure(
            &mut raw,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-NOPE'/>"
        )
        .await?,
        "invalid-mechanism"
    );
    assert_eq!(
        expect_failure(
            &mut raw,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>***</auth>"
        )
        .await?,
        "incorrect-encoding"
    );
    assert_eq!(
        raw.authenticate("SCRAM-SHA-256", "romeo", "wrong").await?,
        Err(SaslRefusal("not-authorized".into()))
    );
    let (elements, _) = drain(&mut raw).await?;
    assert_eq!(
        stream_error_of(&elements).as_deref(),
        Some("policy-violation")
    );
    // A new connection starts with a clean slate.
    let mut client = server.client("romeo").await?;
    client.sync().await
}

#[tokio::test]
async fn plain_needs_tls() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    let initial = B64.encode("\0romeo\0pw");
    let condition = expect_failure(
        &mut raw,
        &format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{initial}</auth>"
        ),
    )
    .await?;
    assert!(
        condition == "encryption-required" || condition == "invalid-mechanism",
        "{condition}"
    );
    // The password was not accepted: the stream is still unauthenticated, so binding is
    // refused.
    raw.send_raw("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .await?;
    let (elements, closed) = drain(&mut raw).await?;
    assert!(closed);
    assert_eq!(
        stream_error_of(&elements).as_deref(),
        Some("not-authorized"),
        "{elements:?}"
    );
    Ok(())
}

#[tokio::test]
async fn plus_mechanisms_are_refused_without_tls() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    let client = Scram::<Sha1>::new(
        "romeo",
        "pw".to_string(),
        ChannelBinding::TlsExporter(vec![0; 32]),
    )
    .map_err(|e| anyhow!("{e:?}"))?;
    let outcome = exchange(&mut raw, "SCRAM-SHA-1-PLUS", Box::new(client)).await?;
    assert_eq!(outcome, Err("invalid-mechanism".to_string()));
    Ok(())
}

#[tokio::test]
async fn invalid_base64_is_incorrect_encoding() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    let condition = expect_failure(
        &mut raw,
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>not base64!</auth>",
    )
    .await?;
    assert_eq!(condition, "incorrect-encoding");
    // In a response, too.
    raw.send_raw(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
        B64.encode("n,,n=romeo,r=abcdefgh")
    ))
    .await?;
    let challenge = raw.read_element().await?;
    assert!(challenge.is("challenge", ns::SASL));
    let condition = expect_failure(
        &mut raw,
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%%%</response>",
    )
    .await?;
    assert_eq!(condition, "incorrect-encoding");
    Ok(())
}

#[tokio::test]
async fn unknown_mechanism_is_invalid_mechanism() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    for mechanism in ["DIGEST-MD5", "scram-sha-1", ""] {
        let condition = expect_failure(
            &mut raw,
            &format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>",
                B64.encode("x")
            ),
        )
        .await?;
        assert_eq!(condition, "invalid-mechanism", "{mechanism:?}");
        if mechanism == "scram-sha-1" {
            break; // two failures so far; keep the stream for the success below
        }
    }
    raw.authenticate("SCRAM-SHA-1", "romeo", "pw").await??;
    finish_login(&mut raw).await
}

#[tokio::test]
async fn abort_mid_exchange_is_aborted_and_does_not_count() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    for _ in 0..3 {
        raw.send_raw(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
            B64.encode("n,,n=romeo,r=abcdefgh")
        ))
        .await?;
        let challenge = raw.read_element().await?;
        assert!(
            challenge.is("challenge", ns::SASL),
            "{}",
            writer::to_string(&challenge)
        );
        let condition = expect_failure(
            &mut raw,
            "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        )
        .await?;
        assert_eq!(condition, "aborted");
    }
    // Three aborts, still allowed to log in.
    raw.authenticate("SCRAM-SHA-1", "romeo", "pw").await??;
    finish_login(&mut raw).await
}

#[tokio::test]
async fn auth_without_initial_response_gets_an_empty_challenge() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    let mut client = Scram::<Sha256>::new("romeo", "pw".to_string(), ChannelBinding::None)
        .map_err(|e| anyhow!("{e:?}"))?;
    raw.send_raw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'/>")
        .await?;
    let empty = raw.read_element().await?;
    assert!(empty.is("challenge", ns::SASL));
    assert!(
        matches!(empty.text().trim(), "" | "="),
        "expected an empty challenge: {:?}",
        empty.text()
    );
    raw.send_raw(&format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        B64.encode(client.initial())
    ))
    .await?;
    loop {
        let reply = raw.read_element().await?;
        let data = B64.decode(reply.text().trim())?;
        match reply.name() {
            "challenge" => {
                let response = client.response(&data).map_err(|e| anyhow!("{e}"))?;
                raw.send_raw(&format!(
                    "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                    B64.encode(response)
                ))
                .await?;
            }
            "success" => {
                client.success(&data).map_err(|e| anyhow!("{e}"))?;
                break;
            }
            other => bail!("unexpected {other}: {}", writer::to_string(&reply)),
        }
    }
    finish_login(&mut raw).await
}

#[tokio::test]
async fn channel_binding_downgrade_and_mismatch_are_refused() -> anyhow::Result<()> {
    let server = tls_server().await?;
    // 'y': the client claims the server does not support channel binding, but it offered
    // -PLUS: a man in the middle stripped it (RFC 5802 §6).
    let mut raw = ready(&server).await?;
    let client = Scram::<Sha1>::new("romeo", "pw".to_string(), ChannelBinding::Unsupported)
        .map_err(|e| anyhow!("{e:?}"))?;
    let outcome = exchange(&mut raw, "SCRAM-SHA-1", Box::new(client)).await?;
    assert_eq!(
        outcome,
        Err("not-authorized".to_string()),
        "a 'y' GS2 flag was accepted although -PLUS was offered"
    );
    // -PLUS with binding data from another TLS connection.
    let mut raw = ready(&server).await?;
    let client = Scram::<Sha256>::new(
        "romeo",
        "pw".to_string(),
        ChannelBinding::TlsExporter(vec![7; 32]),
    )
    .map_err(|e| anyhow!("{e:?}"))?;
    let outcome = exchange(&mut raw, "SCRAM-SHA-256-PLUS", Box::new(client)).await?;
    assert_eq!(
        outcome,
        Err("not-authorized".to_string()),
        "wrong channel binding data was accepted"
    );
    // -PLUS with a channel binding type we did not offer.
    let mut raw = ready(&server).await?;
    let client = Scram::<Sha256>::new(
        "romeo",
        "pw".to_string(),
        ChannelBinding::TlsUnique(vec![7; 12]),
    )
    .map_err(|e| anyhow!("{e:?}"))?;
    let outcome = exchange(&mut raw, "SCRAM-SHA-256-PLUS", Box::new(client)).await?;
    assert_eq!(
        outcome,
        Err("not-authorized".to_string()),
        "tls-unique was accepted"
    );
    // Plain 'n' (client without channel binding support) is fine inside TLS.
    let mut raw = ready(&server).await?;
    let client = Scram::<Sha256>::new("romeo", "pw".to_string(), ChannelBinding::None)
        .map_err(|e| anyhow!("{e:?}"))?;
    exchange(&mut raw, "SCRAM-SHA-256", Box::new(client))
        .await?
        .map_err(|c| anyhow!("refused: {c}"))?;
    finish_login(&mut raw).await
}

#[tokio::test]
async fn sasl_elements_after_authentication_are_not_accepted() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = ready(&server).await?;
    raw.authenticate("SCRAM-SHA-1", "romeo", "pw").await??;
    raw.open_stream("localhost").await?;
    raw.send_raw(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
        B64.encode("n,,n=romeo,r=abcdefgh")
    ))
    .await?;
    let (elements, closed) = drain(&mut raw).await?;
    assert!(closed, "a second authentication was allowed: {elements:?}");
    assert!(stream_error_of(&elements).is_some(), "{elements:?}");
    assert!(
        !elements.iter().any(|e| e.is("challenge", ns::SASL)),
        "{elements:?}"
    );
    Ok(())
}

#[tokio::test]
async fn plain_authzid_must_be_the_user_itself() -> anyhow::Result<()> {
    let server = TestServer::builder()
        .tls(true)
        .user("romeo", "pw")
        .user("juliet", "pw")
        .start()
        .await?;
    let mut raw = ready(&server).await?;
    // Authorising as someone else is refused.
    let condition = expect_failure(
        &mut raw,
        &format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            B64.encode("juliet@localhost\0romeo\0pw")
        ),
    )
    .await?;
    assert!(
        condition == "invalid-authzid" || condition == "not-authorized",
        "{condition}"
    );
    // One's own JID as authzid is fine.
    raw.send_raw(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        B64.encode("romeo@localhost\0romeo\0pw")
    ))
    .await?;
    let success = raw.read_element().await?;
    assert!(
        success.is("success", ns::SASL),
        "{}",
        writer::to_string(&success)
    );
    finish_login(&mut raw).await
}

/// RFC 5802 §5.1: a username with ',' or '=' travels escaped and logs in as itself.
#[tokio::test]
async fn scram_usernames_with_comma_and_equals_sign() -> anyhow::Result<()> {
    let server = TestServer::builder().user("o,n=eil", "pw").start().await?;
    for mechanism in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let mut options = server.options("o,n=eil", "pw");
        options.mechanism = mechanism.to_string();
        let client = server.client_with(options).await?;
        assert_eq!(
            client.jid().node().map(|n| n.as_str()),
            Some("o,n=eil"),
            "{mechanism}"
        );
    }
    Ok(())
}
