//! One XMPP client connection as a typical client makes it: TCP, STARTTLS, SASL
//! SCRAM-SHA-1 (keys cached, see `scram`), resource binding, initial presence. Frames are
//! read with Tern's own push framer (`tern::xml::framer`), which accepts any well-formed
//! XMPP stream, so the same client works against Prosody and ejabberd.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use tern::xml::framer::{Frame, Framer, FramerLimits};
use tern::xml::{ns, writer, Element};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::scram::{KeyCache, ScramClient};

const ROSTER: &str = "jabber:iq:roster";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub type Tls = TlsStream<TcpStream>;

/// Where and as whom to log in; shared by every connection of a run.
pub struct Target {
    pub addr: SocketAddr,
    pub domain: String,
    pub user_prefix: String,
    /// Accounts are `PREFIX{first_user}..PREFIX{first_user + users - 1}`.
    pub first_user: u64,
    pub users: u64,
    pub password: String,
    pub connector: TlsConnector,
    pub server_name: rustls::pki_types::ServerName<'static>,
    pub keys: Arc<KeyCache>,
    pub timeout: Duration,
    /// Whether a login fetches the roster (`jabber:iq:roster` get) before its initial
    /// presence, as interactive clients do.
    pub fetch_roster: bool,
}

/// How a [`Target`] logs in, beyond where and as whom.
pub struct LoginOptions {
    pub first_user: u64,
    pub fetch_roster: bool,
    /// Also accept TLS 1.2 (by default only TLS 1.3 is offered, so that every server
    /// compared negotiates the same protocol).
    pub allow_tls12: bool,
}

impl Target {
    /// The shared TLS client config trusts only `ca` and never resumes sessions: every
    /// login pays a full handshake, as a client connecting for the first time does.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: SocketAddr,
        domain: &str,
        user_prefix: &str,
        users: u64,
        password: &str,
        ca: &std::path::Path,
        timeout: Duration,
        options: LoginOptions,
    ) -> anyhow::Result<Target> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading CA certificate {}", ca.display()))?
        {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if options.allow_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        if users == 0 {
            bail!("--users must be at least 1");
        }
        Ok(Target {
            addr,
            domain: domain.to_string(),
            user_prefix: user_prefix.to_string(),
            first_user: options.first_user,
            users,
            password: password.to_string(),
            connector: TlsConnector::from(Arc::new(config)),
            server_name: ServerName::try_from(domain.to_string())?,
            keys: KeyCache::new(),
            timeout,
            fetch_roster: options.fetch_roster,
        })
    }

    /// The local part of the `index`-th account (wrapping around `users`).
    pub fn username(&self, index: u64) -> String {
        format!(
            "{}{}",
            self.user_prefix,
            self.first_user + index % self.users
        )
    }

    pub fn bare_jid(&self, index: u64) -> String {
        format!("{}@{}", self.username(index), self.domain)
    }
}

/// The cipher suites this process's logins negotiated, by name, with how many each.
/// Servers that choose different suites do different work per handshake (SHA-384 or
/// SHA-256 hashing), so reports say which each server chose.
static SUITES: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn count_suite(suite: Option<rustls::SupportedCipherSuite>) {
    let name = suite.map_or_else(|| "none".to_string(), |s| format!("{:?}", s.suite()));
    *SUITES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name)
        .or_default() += 1;
}

pub fn negotiated_suites() -> std::collections::BTreeMap<String, u64> {
    SUITES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A login that failed, with the step it failed in.
#[derive(Debug)]
pub struct LoginError {
    pub stage: &'static str,
    pub error: anyhow::Error,
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:#}", self.stage, self.error)
    }
}

trait Stage<T> {
    fn at(self, stage: &'static str) -> Result<T, LoginError>;
}

impl<T> Stage<T> for anyhow::Result<T> {
    fn at(self, stage: &'static str) -> Result<T, LoginError> {
        self.map_err(|error| LoginError { stage, error })
    }
}

fn new_framer() -> Framer {
    Framer::new(FramerLimits {
        max_stanza_bytes: 1024 * 1024,
        max_depth: 64,
        ..FramerLimits::default()
    })
}

/// The next frame; `Ok(None)` on end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    framer: &mut Framer,
    buf: &mut [u8],
) -> anyhow::Result<Option<Frame>> {
    loop {
        match framer.next_frame(false) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(err) => bail!("bad XML from the server: {err}"),
        }
        let n = io.read(buf).await?;
        if n == 0 {
            return Ok(None);
        }
        framer.feed(&buf[..n]);
    }
}

async fn read_element<R: AsyncRead + Unpin>(
    io: &mut R,
    framer: &mut Framer,
    buf: &mut [u8],
) -> anyhow::Result<Element> {
    match read_frame(io, framer, buf).await? {
        Some(Frame::Stanza(element)) => {
            if element.is("error", ns::STREAM) {
                bail!("stream error: {}", writer::to_string(&element));
            }
            Ok(element)
        }
        // (The generator never asks its framer for text.)
        Some(Frame::Message(message)) => Ok(message.to_element()),
        Some(Frame::Close) => bail!("the server closed the stream"),
        Some(Frame::Open(_)) => bail!("unexpected stream header"),
        None => bail!("connection closed"),
    }
}

/// Sends a stream header and reads the server's header and features.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    framer: &mut Framer,
    buf: &mut [u8],
    domain: &str,
) -> anyhow::Result<Element> {
    *framer = new_framer();
    io.write_all(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0' xml:lang='en'>"
        )
        .as_bytes(),
    )
    .await?;
    io.flush().await?;
    match read_frame(io, framer, buf).await? {
        Some(Frame::Open(_)) => {}
        other => bail!("expected the server's stream header, got {other:?}"),
    }
    let features = read_element(io, framer, buf).await?;
    if !features.is("features", ns::STREAM) {
        bail!("expected features, got {}", writer::to_string(&features));
    }
    Ok(features)
}

/// Gets the roster (`jabber:iq:roster`) and returns how many items it has. Stanzas
/// before the answer (none expected before initial presence) are skipped.
async fn fetch_roster(tls: &mut Tls, framer: &mut Framer, buf: &mut [u8]) -> anyhow::Result<usize> {
    tls.write_all(b"<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    tls.flush().await?;
    loop {
        let reply = read_element(tls, framer, buf).await?;
        if reply.name() != "iq" || reply.attr("id") != Some("roster") {
            continue;
        }
        if reply.attr("type") != Some("result") {
            bail!("roster get failed: {}", writer::to_string(&reply));
        }
        return Ok(reply
            .get_child("query", ROSTER)
            .map(|q| q.children().filter(|c| c.name() == "item").count())
            .unwrap_or(0));
    }
}

/// When each step of one login ended, for a login worth explaining (the start-up's first):
/// other logins pass `StageClock::off()`, which records nothing.
pub struct StageClock {
    marks: Option<Vec<(&'static str, Instant)>>,
}

impl StageClock {
    pub fn off() -> StageClock {
        StageClock { marks: None }
    }

    pub fn on() -> StageClock {
        StageClock {
            marks: Some(Vec::with_capacity(8)),
        }
    }

    fn mark(&mut self, stage: &'static str) {
        if let Some(marks) = &mut self.marks {
            marks.push((stage, Instant::now()));
        }
    }

    /// Each step's end, in milliseconds since `origin`, in the order they ended.
    pub fn since(&self, origin: Instant) -> Vec<(&'static str, f64)> {
        self.marks
            .iter()
            .flatten()
            .map(|(stage, at)| {
                (
                    *stage,
                    at.saturating_duration_since(origin).as_secs_f64() * 1000.0,
                )
            })
            .collect()
    }
}

/// A logged-in, bound session (initial presence sent).
pub struct Session {
    stream: Tls,
    framer: Framer,
    buf: Box<[u8]>,
    /// Items of the roster fetched at login (0 when not fetched).
    pub roster_items: usize,
}

/// Reading side of a split session.
pub struct Reader {
    io: ReadHalf<Tls>,
    framer: Framer,
    buf: Box<[u8]>,
}

impl Reader {
    /// The next frame; `Ok(None)` on end of stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<Frame>> {
        read_frame(&mut self.io, &mut self.framer, &mut self.buf).await
    }
}

pub type Writer = WriteHalf<Tls>;

impl Session {
    /// Logs in account `index`: TCP, STARTTLS, SCRAM-SHA-1, bind, `<presence/>`. With
    /// `sync`, also waits for a ping answer so the server has processed the presence.
    pub async fn login(target: &Target, index: u64, sync: bool) -> Result<Session, LoginError> {
        Session::login_clocked(target, index, sync, &mut StageClock::off()).await
    }

    /// `login`, marking the end of each step on `clock`.
    pub async fn login_clocked(
        target: &Target,
        index: u64,
        sync: bool,
        clock: &mut StageClock,
    ) -> Result<Session, LoginError> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .map_err(anyhow::Error::from)
            .at("connect")?;
        tcp.set_nodelay(true)
            .map_err(anyhow::Error::from)
            .at("connect")?;
        clock.mark("connect");
        let mut tcp = tcp;
        let mut framer = new_framer();
        let mut buf = vec![0u8; 16 * 1024].into_boxed_slice();

        // STARTTLS
        let features = open_stream(&mut tcp, &mut framer, &mut buf, &target.domain)
            .await
            .at("stream")?;
        if features.get_child("starttls", ns::TLS).is_none() {
            return Err(anyhow!("the server offers no STARTTLS")).at("starttls");
        }
        async {
            tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .await?;
            let proceed = read_element(&mut tcp, &mut framer, &mut buf).await?;
            if !proceed.is("proceed", ns::TLS) {
                bail!("expected <proceed/>, got {}", writer::to_string(&proceed));
            }
            Ok(())
        }
        .await
        .at("starttls")?;
        clock.mark("starttls");
        let mut tls = target
            .connector
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(anyhow::Error::from)
            .at("tls")?;
        count_suite(tls.get_ref().1.negotiated_cipher_suite());
        clock.mark("tls");

        // SASL SCRAM-SHA-1
        let features = open_stream(&mut tls, &mut framer, &mut buf, &target.domain)
            .await
            .at("stream")?;
        let offered = features
            .get_child("mechanisms", ns::SASL)
            .map(|m| m.children().any(|c| c.text() == "SCRAM-SHA-1"))
            .unwrap_or(false);
        if !offered {
            return Err(anyhow!("SCRAM-SHA-1 not offered")).at("sasl");
        }
        let username = target.username(index);
        let mut scram = ScramClient::new(&target.keys, &username, &target.password);
        async {
            tls.write_all(
                format!(
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
                    B64.encode(scram.initial())
                )
                .as_bytes(),
            )
            .await?;
            tls.flush().await?;
            loop {
                let reply = read_element(&mut tls, &mut framer, &mut buf).await?;
                let text = reply.text();
                let data = B64.decode(text.trim()).context("SASL data is not base64")?;
                match (reply.ns() == ns::SASL, reply.name()) {
                    (true, "challenge") => {
                        let response = scram.respond(&data)?;
                        tls.write_all(
                            format!(
                                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                                B64.encode(response)
                            )
                            .as_bytes(),
                        )
                        .await?;
                        tls.flush().await?;
                    }
                    (true, "success") => return scram.verify(&data),
                    (true, "failure") => {
                        let condition = reply
                            .children()
                            .find(|c| c.name() != "text")
                            .map(|c| c.name().to_string())
                            .unwrap_or_default();
                        bail!("SASL failure {condition}");
                    }
                    _ => bail!("unexpected {} during SASL", writer::to_string(&reply)),
                }
            }
        }
        .await
        .at("sasl")?;
        clock.mark("sasl");

        // Bind, presence
        async {
            open_stream(&mut tls, &mut framer, &mut buf, &target.domain).await?;
            tls.write_all(
                b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
            )
            .await?;
            tls.flush().await?;
            let reply = read_element(&mut tls, &mut framer, &mut buf).await?;
            if reply.attr("type") != Some("result") {
                bail!("bind failed: {}", writer::to_string(&reply));
            }
            reply
                .get_child("bind", ns::BIND)
                .and_then(|b| b.get_child("jid", ns::BIND))
                .map(|_| ())
                .context("bind result without a JID")
        }
        .await
        .at("bind")?;
        clock.mark("bind");
        let roster_items = if target.fetch_roster {
            fetch_roster(&mut tls, &mut framer, &mut buf)
                .await
                .at("roster")?
        } else {
            0
        };
        if target.fetch_roster {
            clock.mark("roster");
        }
        async {
            if sync {
                tls.write_all(
                    format!(
                        "<presence/><iq type='get' id='sync' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                        target.domain
                    )
                    .as_bytes(),
                )
                .await?;
                tls.flush().await?;
                loop {
                    let stanza = read_element(&mut tls, &mut framer, &mut buf).await?;
                    if stanza.name() == "iq" && stanza.attr("id") == Some("sync") {
                        break;
                    }
                }
            } else {
                tls.write_all(b"<presence/>").await?;
                tls.flush().await?;
            }
            Ok(())
        }
        .await
        .at("presence")?;
        clock.mark("presence");
        Ok(Session {
            stream: tls,
            framer,
            buf,
            roster_items,
        })
    }

    pub fn split(self) -> (Reader, Writer) {
        let (io, writer) = tokio::io::split(self.stream);
        (
            Reader {
                io,
                framer: self.framer,
                buf: self.buf,
            },
            writer,
        )
    }

    /// Ends the stream and waits (at most `wait`) for the server to close its side.
    pub async fn close(mut self, wait: Duration) -> anyhow::Result<()> {
        self.stream.write_all(b"</stream:stream>").await?;
        self.stream.flush().await?;
        let drain = async {
            loop {
                match read_frame(&mut self.stream, &mut self.framer, &mut self.buf).await {
                    Ok(Some(Frame::Close)) | Ok(None) | Err(_) => return,
                    Ok(Some(_)) => {}
                }
            }
        };
        tokio::time::timeout(wait, drain)
            .await
            .map_err(|_| anyhow!("the server did not close the stream"))?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}
