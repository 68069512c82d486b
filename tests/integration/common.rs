//! Helpers shared by the integration tests.

use std::time::Duration;

use tern::testing::{RawClient, TestClient, TestServer};
use tern::xml::framer::Frame;
use tern::xml::{ns, Element};

/// A short wait for "nothing arrives" assertions.
pub const QUIET: Duration = Duration::from_millis(200);

pub const HEADER_PREFIX: &str = "<?xml version='1.0'?>";

/// A client stream header with the given attributes text inserted.
pub fn header(attrs: &str) -> String {
    format!(
        "{HEADER_PREFIX}<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' {attrs}>"
    )
}

/// The defined condition of a stanza's `<error/>`, e.g. `service-unavailable`.
pub fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.get_child("error", ns::CLIENT)?;
    error
        .children()
        .find(|c| c.ns() == ns::STANZAS_ERR && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// The `type` attribute of a stanza's `<error/>`.
pub fn error_type(stanza: &Element) -> Option<String> {
    stanza
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.attr("type"))
        .map(str::to_string)
}

/// Asserts an error stanza with `condition`.
#[track_caller]
pub fn assert_error(stanza: &Element, condition: &str) {
    assert_eq!(
        stanza.attr("type"),
        Some("error"),
        "expected an error, got {}",
        tern::xml::writer::to_string(stanza)
    );
    assert_eq!(
        error_condition(stanza).as_deref(),
        Some(condition),
        "wrong condition in {}",
        tern::xml::writer::to_string(stanza)
    );
}

/// Reads everything until the server closes the stream; returns the top-level elements
/// (stream errors included) and whether a `</stream:stream>` was seen.
pub async fn drain(raw: &mut RawClient) -> anyhow::Result<(Vec<Element>, bool)> {
    let mut elements = Vec::new();
    loop {
        match raw.read_frame().await? {
            Some(Frame::Open(_)) => {}
            Some(Frame::Stanza(element)) => elements.push(element),
            Some(Frame::Message(message)) => elements.push(message.to_element()),
            Some(Frame::Close) => return Ok((elements, true)),
            None => return Ok((elements, false)),
        }
    }
}

/// The condition of the stream error among `elements`.
pub fn stream_error_of(elements: &[Element]) -> Option<String> {
    elements
        .iter()
        .find(|e| e.is("error", ns::STREAM))
        .and_then(|e| {
            e.children()
                .find(|c| c.ns() == ns::STREAMS_ERR && c.name() != "text")
                .map(|c| c.name().to_string())
        })
}

/// After the server closed a stream, the connection must be gone too.
pub async fn assert_connection_closed(raw: &mut RawClient) -> anyhow::Result<()> {
    match raw.read_frame().await {
        Ok(None) | Err(_) => Ok(()),
        Ok(Some(frame)) => anyhow::bail!("data after the stream closed: {frame:?}"),
    }
}

/// Proves the server still serves: an existing session answers a ping and a fresh login
/// works.
pub async fn assert_alive(
    server: &TestServer,
    witness: &mut TestClient,
    user: &str,
) -> anyhow::Result<()> {
    witness.sync().await?;
    let mut fresh = server.client(user).await?;
    fresh.sync().await?;
    Ok(())
}

/// A message stanza in `jabber:client` text form.
pub fn message(to: &str, body: &str) -> String {
    format!("<message to='{to}' type='chat'><body>{body}</body></message>")
}

/// The text of `<body/>`.
pub fn body(stanza: &Element) -> Option<String> {
    stanza.get_child("body", ns::CLIENT).map(|b| b.text())
}

/// The server modules only, without the IM modules (roster, presence, offline...): for
/// tests of the core's own stream handling and routing rules.
pub const CORE_MODULES: &str = r#"modules_enabled = ["disco", "ping", "version", "time"]"#;

/// A builder for a server running only [`CORE_MODULES`].
pub fn core_server() -> tern::testing::TestServerBuilder {
    TestServer::builder().config_toml(CORE_MODULES)
}
