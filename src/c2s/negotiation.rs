//! Stream negotiation (RFC 6120 §4-§7): headers, STARTTLS, SASL, resource binding.
//!
//! Runs with the connection task owning the transport; returns the bound session's
//! transport and identity, or `None` after it closed the stream.

use std::sync::Arc;

use base64::Engine;
use jid::{BareJid, FullJid};
use tokio::time::Instant;

use super::connection::{timeout_error, Conn, ReadError};
use crate::sasl::{ChannelBindingData, Mechanism, SaslServer, SaslStep};
use crate::server::ServerInner;
use crate::session::SessionInfo;
use crate::stanza::{iq_result, StreamError, StreamErrorCondition};
use crate::xml::framer::{Frame, StreamHeader};
use crate::xml::{ns, writer, Element, ElementExt};

const NS_SM: &str = "urn:xmpp:sm:3";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// TLS is required and not yet in place.
    Encrypt,
    Authenticate,
    Bind,
}

struct Negotiation<'a> {
    server: &'a Arc<ServerInner>,
    conn: Conn,
    info: SessionInfo,
    channel_binding: ChannelBindingData,
    deadline: Instant,
    auth_failures: u32,
    /// Our header for the current stream, once sent (a stream error must follow one).
    header_sent: bool,
    /// What we said and have not written yet: everything up to the next read goes out in
    /// one write (one TLS record, one wake-up of the client) instead of one per element.
    unsent: Vec<u8>,
    /// Set when the client resumed a session (XEP-0198) instead of binding.
    resumed: Option<(crate::session::SessionHandle, u32)>,
    /// Set when the client bound a resource: the session is in the host's table.
    bound: Option<super::session_loop::NewSession>,
}

/// How negotiation ended for a connection that goes on.
pub(crate) enum Negotiated {
    Bound(Conn, super::session_loop::NewSession),
    /// XEP-0198: the connection takes over this session; the client received `h` stanzas.
    Resumed(Conn, crate::session::SessionHandle, u32),
}

/// Negotiates until the client has bound a resource.
pub(crate) async fn negotiate(
    server: &Arc<ServerInner>,
    conn: Conn,
    info: SessionInfo,
    channel_binding: ChannelBindingData,
) -> Option<Negotiated> {
    let deadline = Instant::now() + server.config().limits.negotiation_timeout;
    let mut negotiation = Negotiation {
        server,
        conn,
        info,
        channel_binding,
        deadline,
        auth_failures: 0,
        header_sent: false,
        unsent: Vec::new(),
        resumed: None,
        bound: None,
    };
    let mut shutdown = server.shutdown_signal();
    let outcome = tokio::select! {
        outcome = negotiation.run() => outcome,
        _ = crate::server::until_shutdown(&mut shutdown) => Err(StreamError::new(StreamErrorCondition::SystemShutdown)),
    };
    let outcome = match outcome {
        Ok(done) => negotiation.flush().await.map(|()| done),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(true) => match (negotiation.resumed.take(), negotiation.bound.take()) {
            (Some((handle, h)), _) => Some(Negotiated::Resumed(negotiation.conn, handle, h)),
            (None, Some(bound)) => Some(Negotiated::Bound(negotiation.conn, bound)),
            (None, None) => None,
        },
        Ok(false) => None,
        Err(error) => {
            tracing::debug!(peer = %negotiation.info.peer, %error, "negotiation failed");
            // What was said before the error goes first (our header, if it is there).
            let mut lead = String::from_utf8_lossy(&negotiation.unsent).into_owned();
            if !negotiation.header_sent {
                lead.push_str(&negotiation.header(None));
            }
            negotiation.conn.fail(Some(&error), Some(lead)).await;
            None
        }
    }
}

impl Negotiation<'_> {
    /// `Ok(true)`: bound. `Ok(false)`: the peer went away. `Err`: send this stream error.
    async fn run(&mut self) -> Result<bool, StreamError> {
        loop {
            // Each iteration is one stream: initial, after TLS, after SASL.
            self.header_sent = false;
            let Some(header) = self.read().await? else {
                return Ok(false);
            };
            let Frame::Open(header) = header else {
                return Err(StreamError::with_text(
                    StreamErrorCondition::NotWellFormed,
                    "expected a stream header",
                ));
            };
            self.open_stream(&header).await?;
            let stage = if self.info.username.is_some() {
                Stage::Bind
            } else if !self.info.secure && self.server.config().require_encryption {
                Stage::Encrypt
            } else {
                Stage::Authenticate
            };
            self.send_features(stage).await?;
            match self.stream_loop(stage).await? {
                Next::Restart => continue,
                Next::Bound => return Ok(true),
                Next::Gone => return Ok(false),
            }
        }
    }

    /// Reads the next frame before the negotiation deadline. Returns `Ok(None)` when the
    /// peer closed the connection.
    async fn read(&mut self) -> Result<Option<Frame>, StreamError> {
        // `timeout_at` polls the read first: a client that keeps data buffered would
        // never see the deadline pass without this check.
        if Instant::now() >= self.deadline {
            return Err(timeout_error());
        }
        self.flush().await?;
        match tokio::time::timeout_at(self.deadline, self.conn.read_frame()).await {
            Err(_) => Err(timeout_error()),
            Ok(Ok(frame)) => Ok(Some(frame)),
            Ok(Err(ReadError::Stream(error))) => Err(error),
            Ok(Err(ReadError::Closed(reason))) => {
                tracing::debug!(peer = %self.info.peer, reason, "connection closed during negotiation");
                Ok(None)
            }
        }
    }

    fn header(&self, to: Option<&str>) -> String {
        let from = if self.info.host.is_empty() {
            self.server.default_host_name()
        } else {
            self.info.host.clone()
        };
        writer::stream_header(&from, to, &crate::util::random_id(), &self.info.lang)
    }

    /// Writes before the negotiation deadline too (a second's grace when already late,
    /// e.g. after a SASL back-off): a client that sends but never reads must not keep the
    /// connection past it.
    async fn flush(&mut self) -> Result<(), StreamError> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.unsent);
        let until = self
            .deadline
            .max(Instant::now() + std::time::Duration::from_secs(1));
        match tokio::time::timeout_at(until, self.conn.write(&bytes)).await {
            Ok(written) => written.map_err(|err| {
                StreamError::with_text(StreamErrorCondition::UndefinedCondition, err.to_string())
            }),
            Err(_) => Err(timeout_error()),
        }
    }

    /// Queues `bytes`; they are written before the next read (see `unsent`).
    async fn send(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.unsent.extend_from_slice(bytes);
        Ok(())
    }

    async fn send_element(&mut self, element: &Element) -> Result<(), StreamError> {
        let bytes = writer::to_bytes(element);
        self.send(&bytes).await
    }

    /// Validates the client's header and answers with ours (RFC 6120 §4.7).
    async fn open_stream(&mut self, header: &StreamHeader) -> Result<(), StreamError> {
        let requested = header.to.clone();
        if let Some(lang) = &header.lang {
            if !lang.is_empty() && lang.len() <= 35 {
                self.info.lang = lang.clone();
            }
        }
        // Our header goes first; any error below follows it (§4.9.1.2).
        let ours = self.header(header.from.as_deref());
        self.send(ours.as_bytes()).await?;
        self.header_sent = true;

        if header.namespace != ns::STREAM {
            return Err(StreamError::with_text(
                StreamErrorCondition::InvalidNamespace,
                "the stream element must be in http://etherx.jabber.org/streams",
            ));
        }
        if header.name != "stream" {
            return Err(StreamError::with_text(
                StreamErrorCondition::BadFormat,
                "the root element must be <stream:stream>",
            ));
        }
        let version_ok = header
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|major| major.parse::<u32>().ok())
            .is_some_and(|major| major >= 1);
        if !version_ok {
            return Err(StreamError::with_text(
                StreamErrorCondition::UnsupportedVersion,
                "XMPP 1.0 streams only (version='1.0')",
            ));
        }
        let Some(to) = requested else {
            return Err(StreamError::with_text(
                StreamErrorCondition::HostUnknown,
                "the stream header needs a 'to' naming the server",
            ));
        };
        let domain = BareJid::new(&to)
            .ok()
            .filter(|j| j.node().is_none())
            .map(|j| j.domain().to_string());
        let Some(domain) = domain.filter(|d| self.server.host(d).is_some()) else {
            return Err(StreamError::with_text(
                StreamErrorCondition::HostUnknown,
                format!("this server does not serve {to}"),
            ));
        };
        if !self.info.host.is_empty() && self.info.host != domain {
            return Err(StreamError::with_text(
                StreamErrorCondition::HostUnknown,
                "a restarted stream must address the same host",
            ));
        }
        self.info.host = domain;
        Ok(())
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        let plus_possible = self.channel_binding.tls_exporter.is_some()
            || self.channel_binding.tls_server_end_point.is_some();
        Mechanism::ALL
            .into_iter()
            .filter(|m| match m {
                Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus => {
                    self.info.secure && plus_possible
                }
                // PLAIN sends the password itself: only inside TLS (RFC 6120 §13.8).
                Mechanism::Plain => self.info.secure,
                _ => true,
            })
            .collect()
    }

    async fn send_features(&mut self, stage: Stage) -> Result<(), StreamError> {
        let mut features = String::from("<stream:features>");
        match stage {
            Stage::Encrypt => {
                features.push_str(
                    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
                );
            }
            Stage::Authenticate => {
                if !self.info.secure && self.server.tls().is_some() {
                    features.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                }
                if let Some(host) = self.server.host(&self.info.host) {
                    for feature in host.items.all::<crate::host::PreAuthStreamFeature>() {
                        features.push_str(&writer::to_string(&feature.0));
                    }
                }
                features.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                for mechanism in self.mechanisms() {
                    features.push_str("<mechanism>");
                    features.push_str(mechanism.name());
                    features.push_str("</mechanism>");
                }
                features.push_str("</mechanisms>");
                // XEP-0440: which channel bindings the -PLUS mechanisms can use here.
                if self.info.secure {
                    let mut types = String::new();
                    if self.channel_binding.tls_exporter.is_some() {
                        types.push_str("<channel-binding type='tls-exporter'/>");
                    }
                    if self.channel_binding.tls_server_end_point.is_some() {
                        types.push_str("<channel-binding type='tls-server-end-point'/>");
                    }
                    if !types.is_empty() {
                        features.push_str("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>");
                        features.push_str(&types);
                        features.push_str("</sasl-channel-binding>");
                    }
                }
            }
            Stage::Bind => {
                features.push_str("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>");
                // RFC 3921 session establishment, optional per RFC 6121 Appendix E.
                features.push_str(
                    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>",
                );
                if let Some(host) = self.server.host(&self.info.host) {
                    for feature in host.items.all::<crate::host::StreamFeature>() {
                        features.push_str(&writer::to_string(&feature.0));
                    }
                }
            }
        }
        features.push_str("</stream:features>");
        self.send(features.as_bytes()).await
    }

    async fn stream_loop(&mut self, stage: Stage) -> Result<Next, StreamError> {
        loop {
            let Some(frame) = self.read().await? else {
                return Ok(Next::Gone);
            };
            let element = match frame {
                Frame::Stanza(element) => element,
                // (Not asked for before binding.)
                Frame::Message(message) => message.to_element(),
                Frame::Close => {
                    let lead =
                        String::from_utf8_lossy(&std::mem::take(&mut self.unsent)).into_owned();
                    self.conn.fail(None, Some(lead)).await;
                    return Ok(Next::Gone);
                }
                Frame::Open(_) => {
                    return Err(StreamError::with_text(
                        StreamErrorCondition::NotWellFormed,
                        "unexpected stream header",
                    ));
                }
            };
            let namespace = element.ns();
            match (stage, namespace.as_str(), element.name()) {
                (Stage::Encrypt | Stage::Authenticate, ns::TLS, "starttls")
                    if !self.info.secure =>
                {
                    self.starttls().await?;
                    return Ok(Next::Restart);
                }
                (_, ns::TLS, _) => {
                    self.send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                        .await?;
                    return Err(StreamError::with_text(
                        StreamErrorCondition::PolicyViolation,
                        "TLS is already in place or not available",
                    ));
                }
                (Stage::Encrypt, ns::SASL, _) => {
                    self.sasl_failure("encryption-required", Some("start TLS first"))
                        .await?;
                }
                (Stage::Authenticate, ns::SASL, "auth") => {
                    if self.authenticate(&element).await? {
                        self.conn.restart_framer();
                        return Ok(Next::Restart);
                    }
                }
                (Stage::Authenticate, ns::SASL, _) => {
                    // <response/> or <abort/> outside an exchange.
                    self.sasl_failure("malformed-request", Some("no authentication in progress"))
                        .await?;
                }
                (Stage::Authenticate, ns::CLIENT, "iq") => {
                    let Some(reply) = self.pre_auth_iq(element.clone()).await else {
                        return Err(StreamError::with_text(
                            StreamErrorCondition::NotAuthorized,
                            "stanzas are accepted only after authentication and resource binding",
                        ));
                    };
                    self.send_element(&reply).await?;
                }
                (Stage::Bind, NS_SM, "resume") => {
                    if self.resume(&element).await? {
                        return Ok(Next::Bound);
                    }
                }
                (Stage::Bind, NS_SM, _) => {
                    // <enable/> before binding (XEP-0198 §3).
                    self.send(b"<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
                        .await?;
                }
                (Stage::Bind, ns::CLIENT, "iq") => {
                    if self.handle_pre_bind_iq(&element).await? {
                        return Ok(Next::Bound);
                    }
                }
                (_, ns::CLIENT, "message" | "presence" | "iq") => {
                    return Err(StreamError::with_text(
                        StreamErrorCondition::NotAuthorized,
                        "stanzas are accepted only after authentication and resource binding",
                    ));
                }
                // A stanza in another namespace (jabber:server on a client port): the same
                // condition the bound session gives (RFC 6120 §4.9.3.10).
                (_, "", _) | (_, ns::STREAM, _) | (_, _, "message" | "presence" | "iq") => {
                    return Err(StreamError::with_text(
                        StreamErrorCondition::InvalidNamespace,
                        "the stream's default namespace must be jabber:client",
                    ));
                }
                _ => {
                    return Err(StreamError::with_text(
                        StreamErrorCondition::UnsupportedStanzaType,
                        format!("unexpected element {{{namespace}}}{}", element.name()),
                    ));
                }
            }
        }
    }

    async fn starttls(&mut self) -> Result<(), StreamError> {
        // STARTTLS command injection (CVE-2011-0411 and kin): anything the client sent
        // after <starttls/> arrived in plaintext and must never be processed.
        if !self.conn.framer.pending_is_whitespace() {
            return Err(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "data was sent after <starttls/> before the TLS handshake",
            ));
        }
        let Some(tls) = self.server.tls() else {
            self.send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .await?;
            return Err(StreamError::with_text(
                StreamErrorCondition::UndefinedCondition,
                "TLS is not available",
            ));
        };
        self.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        // In the clear, before the handshake starts.
        self.flush().await?;
        let placeholder: crate::byte_stream::BoxStream = Box::new(tokio::io::duplex(1).0);
        let io = std::mem::replace(&mut self.conn.io, placeholder);
        let accept = Box::pin(tls.accept_starttls(io));
        let stream = match tokio::time::timeout_at(self.deadline, accept).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(peer = %self.info.peer, %err, "STARTTLS handshake failed");
                return Err(StreamError::with_text(
                    StreamErrorCondition::UndefinedCondition,
                    "TLS handshake failed",
                ));
            }
            Err(_) => return Err(timeout_error()),
        };
        let (exporter, end_point) = crate::tls::transport_channel_binding(&tls, &stream);
        self.channel_binding = ChannelBindingData {
            tls_exporter: exporter,
            tls_server_end_point: end_point,
        };
        self.conn.io = Box::new(stream);
        self.conn.restart_framer();
        self.info.secure = true;
        Ok(())
    }

    async fn sasl_failure(
        &mut self,
        condition: &str,
        text: Option<&str>,
    ) -> Result<(), StreamError> {
        let mut out = format!("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{condition}/>");
        if let Some(text) = text {
            out.push_str("<text xml:lang='en'>");
            out.push_str(&writer::escape(text));
            out.push_str("</text>");
        }
        out.push_str("</failure>");
        self.send(out.as_bytes()).await
    }

    /// One SASL exchange. `Ok(true)` on success; `Ok(false)` after a failure the client
    /// may retry; `Err` when the connection must close.
    async fn authenticate(&mut self, auth: &Element) -> Result<bool, StreamError> {
        let offered = self.mechanisms();
        let mechanism = auth
            .attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| offered.contains(m));
        let Some(mechanism) = mechanism else {
            let condition = if auth.attr("mechanism") == Some("PLAIN") && !self.info.secure {
                "encryption-required"
            } else {
                "invalid-mechanism"
            };
            self.sasl_failure(condition, None).await?;
            return self.count_failure().await.map(|()| false);
        };
        let plus_offered = offered.iter().any(Mechanism::is_plus);
        let mut sasl = SaslServer::new(
            mechanism,
            &self.info.host,
            self.channel_binding.clone(),
            plus_offered,
            self.server.fake_salt_key(),
        );
        let text = auth.text();
        let mut input: Option<Vec<u8>> = match text.trim() {
            // No initial response: ask for one with an empty challenge (RFC 6120 §6.4.2).
            "" => None,
            // "=" is an initial response of zero length.
            "=" => Some(Vec::new()),
            encoded => match B64.decode(encoded) {
                Ok(bytes) => Some(bytes),
                Err(_) => {
                    self.sasl_failure("incorrect-encoding", None).await?;
                    return self.count_failure().await.map(|()| false);
                }
            },
        };
        let storage = self.server.storage().clone();
        let host = self.info.host.clone();
        // The (normalised) name the client claimed, known or not: the key of the
        // per-account back-off.
        // (A Mutex, not a RefCell: it lives across awaits in a `Send` future.)
        let claimed: std::sync::Mutex<Option<String>> = Default::default();
        loop {
            let step = match input.take() {
                Some(bytes) => {
                    // Runs on the async worker: SCRAM only compares stored keys (cheap);
                    // PLAIN derives a key (4096 PBKDF2 rounds, about a millisecond),
                    // which is acceptable but worth moving to a blocking pool if PLAIN
                    // logins ever dominate.
                    let lookup = |user: &str| {
                        *claimed.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(format!("{user}@{host}"));
                        storage.get_account(&host, user).ok().flatten()
                    };
                    sasl.step(&bytes, &lookup)
                }
                None => SaslStep::Challenge(Vec::new()),
            };
            match step {
                SaslStep::Challenge(data) => {
                    let out = format!(
                        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
                        encode_sasl(&data)
                    );
                    self.send(out.as_bytes()).await?;
                    let Some(frame) = self.read().await? else {
                        return Err(StreamError::new(StreamErrorCondition::UndefinedCondition));
                    };
                    let Frame::Stanza(reply) = frame else {
                        return Err(StreamError::with_text(
                            StreamErrorCondition::NotWellFormed,
                            "expected a SASL response",
                        ));
                    };
                    if reply.ns() != ns::SASL {
                        return Err(StreamError::with_text(
                            StreamErrorCondition::NotAuthorized,
                            "authentication in progress",
                        ));
                    }
                    match reply.name() {
                        "response" => {
                            let text = reply.text();
                            match text.trim() {
                                "" | "=" => input = Some(Vec::new()),
                                encoded => match B64.decode(encoded) {
                                    Ok(bytes) => input = Some(bytes),
                                    Err(_) => {
                                        self.sasl_failure("incorrect-encoding", None).await?;
                                        return self.count_failure().await.map(|()| false);
                                    }
                                },
                            }
                        }
                        "abort" => {
                            self.sasl_failure("aborted", None).await?;
                            return Ok(false);
                        }
                        _ => {
                            self.sasl_failure("malformed-request", None).await?;
                            return self.count_failure().await.map(|()| false);
                        }
                    }
                }
                SaslStep::Success {
                    username,
                    additional_data,
                } => {
                    let account = claimed.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    self.success_wait(account.as_deref()).await;
                    if let Some(account) = &account {
                        self.server.account_backoff().succeeded(account);
                    }
                    self.server.auth_succeeded(self.info.peer.ip());
                    // Authenticated: the pre-authentication budget no longer applies.
                    self.conn.pre_auth = None;
                    let data = additional_data.map(|d| encode_sasl(&d)).unwrap_or_default();
                    let out = format!(
                        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{data}</success>"
                    );
                    self.send(out.as_bytes()).await?;
                    tracing::info!(peer = %self.info.peer, user = %username, host = %self.info.host, mechanism = mechanism.name(), "authenticated");
                    self.info.username = Some(username);
                    return Ok(true);
                }
                SaslStep::Failure(failure) => {
                    tracing::info!(peer = %self.info.peer, host = %self.info.host, mechanism = mechanism.name(), condition = failure.condition(), "authentication failed");
                    // Guessing from one address slows down across connections too, and
                    // guessing one account across addresses (the longer wait counts).
                    let ip_delay = self.server.auth_failed(self.info.peer.ip());
                    let account = claimed.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let account_delay = self.account_delay(account.as_deref());
                    let delay = ip_delay.max(account_delay);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if let Some(account) = &account {
                        let limits = &self.server.config().limits;
                        let started = self.server.account_backoff().failed(
                            account,
                            limits,
                            std::time::Instant::now(),
                        );
                        if started {
                            tracing::warn!(account, failures = limits.account_auth_failures + 1, "repeated authentication failures: attempts for this account are now slowed down");
                        }
                    }
                    self.sasl_failure(failure.condition(), None).await?;
                    return self.count_failure().await.map(|()| false);
                }
            }
        }
    }

    /// The per-account back-off slot of this attempt (zero when not in back-off).
    fn account_delay(&self, account: Option<&str>) -> std::time::Duration {
        let Some(account) = account else {
            return std::time::Duration::ZERO;
        };
        let limits = &self.server.config().limits;
        self.server
            .account_backoff()
            .reserve(account, limits, std::time::Instant::now())
    }

    /// Before a success is sent, waits as long as a failure would (per address and per
    /// account): were the right password answered sooner, a guesser could send attempts
    /// in parallel and take any quick answer as the hit, never waiting for the others.
    async fn success_wait(&mut self, account: Option<&str>) {
        let delay = self
            .account_delay(account)
            .max(self.server.auth_pending_delay(self.info.peer.ip()));
        if !delay.is_zero() {
            tracing::info!(peer = %self.info.peer, "a login in authentication back-off succeeded after {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }

    /// XEP-0198 resumption: `Ok(true)` when the session was found and is taken over.
    async fn resume(&mut self, request: &Element) -> Result<bool, StreamError> {
        let previd = request.attr("previd").unwrap_or_default();
        let h = request.attr("h").and_then(|h| h.parse::<u32>().ok());
        let user = self.info.username.clone().unwrap_or_default();
        let session = self
            .server
            .host(&self.info.host)
            .and_then(|host| host.resumable(previd, &user));
        match (session, h) {
            (Some(session), Some(h)) if !session.is_closing() => {
                tracing::info!(peer = %self.info.peer, jid = %session.jid(), "resuming a session");
                self.resumed = Some((session, h));
                Ok(true)
            }
            (_, None) => {
                self.send(b"<failed xmlns='urn:xmpp:sm:3'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
                    .await?;
                Ok(false)
            }
            _ => {
                // Unknown, expired or someone else's: the client binds a fresh session.
                self.send(b"<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
                    .await?;
                Ok(false)
            }
        }
    }

    /// Offers an unauthenticated IQ to the modules (in-band registration).
    async fn pre_auth_iq(&mut self, stanza: Element) -> Option<Element> {
        let host = self.server.host(&self.info.host)?;
        if !host.events.has_handlers::<crate::host::PreAuthIq>() {
            return None;
        }
        let mut event = crate::host::PreAuthIq {
            host: host.clone(),
            peer: self.info.peer,
            secure: self.info.secure,
            stanza,
            reply: None,
        };
        if let Err(err) = host.events.fire(&mut event).await {
            let error = crate::router::handler_error_to_stanza(&err, &host);
            return Some(crate::stanza::error_reply(&event.stanza, &error));
        }
        event.reply
    }

    /// Bounded attempts per connection: online guessing must reconnect (and pay a TLS
    /// handshake) every few tries.
    async fn count_failure(&mut self) -> Result<(), StreamError> {
        self.auth_failures += 1;
        if self.auth_failures >= self.server.config().limits.max_auth_failures {
            return Err(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many failed authentication attempts",
            ));
        }
        Ok(())
    }

    /// Handles an IQ between authentication and binding: bind, or the legacy session.
    async fn handle_pre_bind_iq(&mut self, iq: &Element) -> Result<bool, StreamError> {
        let is_set = iq.attr("type") == Some("set");
        let bind = iq.get_child("bind", ns::BIND);
        if !is_set || bind.is_none() || iq.attr("id").is_none() {
            if is_set && iq.get_child("session", ns::SESSION).is_some() {
                self.send_element(&iq_result(iq, None)).await?;
                return Ok(false);
            }
            return Err(StreamError::with_text(
                StreamErrorCondition::NotAuthorized,
                "bind a resource first",
            ));
        }
        let requested = bind
            .and_then(|b| b.get_child("resource", ns::BIND))
            .map(|r| r.text())
            .filter(|r| !r.trim().is_empty());
        let user = self.info.username.clone().unwrap_or_default();
        let bare = match BareJid::new(&format!("{user}@{}", self.info.host)) {
            Ok(bare) => bare,
            Err(_) => return Err(StreamError::new(StreamErrorCondition::InternalServerError)),
        };
        let full = match requested {
            Some(resource) => match bare.with_resource_str(&resource) {
                Ok(full) => full,
                Err(err) => {
                    let error =
                        crate::stanza::StanzaError::bad_request(format!("invalid resource: {err}"));
                    let mut reply = crate::stanza::error_reply(iq, &error);
                    reply.remove_attr("from");
                    self.send_element(&reply).await?;
                    return Ok(false);
                }
            },
            None => generated_resource(&bare),
        };
        let Some(host) = self.server.host(&self.info.host) else {
            return Err(StreamError::new(StreamErrorCondition::InternalServerError));
        };
        let mut info = self.info.clone();
        info.jid = Some(full.clone());
        let limit = self.server.config().limits.max_sessions_per_account;
        // Counted and entered in one step, so concurrent binds cannot both pass the check.
        let Some(bound) = super::session_loop::NewSession::enter(self.server, &host, info, limit)
        else {
            // RFC 6120 §7.6.2.1: an account at its limit gets resource-constraint, unless
            // the bind replaces one of its sessions.
            let error =
                crate::stanza::StanzaError::new(crate::stanza::Condition::ResourceConstraint)
                    .text("too many sessions for this account");
            let mut reply = crate::stanza::error_reply(iq, &error);
            reply.remove_attr("from");
            self.send_element(&reply).await?;
            return Ok(false);
        };
        self.bound = Some(bound);
        let reply = iq_result(
            iq,
            Some(
                Element::bare("bind", ns::BIND)
                    .with_child(Element::bare("jid", ns::BIND).with_text(full.to_string())),
            ),
        );
        let mut reply = reply;
        reply.remove_attr("from");
        self.send_element(&reply).await?;
        self.info.jid = Some(full);
        Ok(true)
    }
}

enum Next {
    Restart,
    Bound,
    Gone,
}

fn generated_resource(bare: &BareJid) -> FullJid {
    loop {
        if let Ok(full) = bare.with_resource_str(&format!("tern-{}", crate::util::random_id())) {
            return full;
        }
    }
}

/// SASL payload: base64, with "=" for an empty one (RFC 6120 §6.4.2).
fn encode_sasl(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_string()
    } else {
        B64.encode(data)
    }
}
