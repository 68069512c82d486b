//! Test clients: [`RawClient`] for negotiation tests (every step explicit) and
//! [`TestClient`], an authenticated, bound session with `send`, `expect` and `iq`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use jid::FullJid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::xml::framer::{Frame, Framer, FramerLimits, StreamHeader};
use crate::xml::{ns, writer, Element, ElementExt};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
// Generous: CI machines run many servers at once on two cores.
const TIMEOUT: Duration = Duration::from_secs(10);

trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    Direct,
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub addr: SocketAddr,
    pub host: String,
    pub username: String,
    pub password: String,
    pub tls: TlsMode,
    /// PEM certificate to trust.
    pub ca_cert: Option<PathBuf>,
    /// "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "PLAIN".
    pub mechanism: String,
    pub resource: Option<String>,
}

/// What the server said when authentication did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslRefusal(pub String);

impl std::fmt::Display for SaslRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SASL failure: {}", self.0)
    }
}

impl std::error::Error for SaslRefusal {}

/// A client connection with explicit steps.
pub struct RawClient {
    io: Box<dyn ClientIo>,
    framer: Framer,
    buf: Box<[u8]>,
    /// tls-exporter value after TLS 1.3 (for -PLUS tests).
    pub tls_exporter: Option<Vec<u8>>,
    /// The ALPN protocol negotiated with direct TLS.
    pub alpn: Option<Vec<u8>>,
    /// The server's stream header from the last [`RawClient::open_stream`].
    pub server_header: Option<StreamHeader>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        Ok(RawClient::over(Box::new(tcp)))
    }

    /// Connects from a given local address (e.g. `127.0.0.2`): tests of per-address
    /// limits play several clients from one machine.
    pub async fn connect_from(
        addr: SocketAddr,
        local: std::net::IpAddr,
    ) -> anyhow::Result<RawClient> {
        let socket = match local {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket
            .bind(SocketAddr::new(local, 0))
            .with_context(|| format!("binding to {local}"))?;
        let tcp = socket
            .connect(addr)
            .await
            .with_context(|| format!("connecting to {addr} from {local}"))?;
        tcp.set_nodelay(true)?;
        Ok(RawClient::over(Box::new(tcp)))
    }

    /// Connects with TLS from the first byte (XEP-0368), offering ALPN `xmpp-client`.
    pub async fn connect_direct_tls(
        addr: SocketAddr,
        host: &str,
        ca_cert: &PathBuf,
    ) -> anyhow::Result<RawClient> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (stream, exporter, alpn) =
            tls_connect(Box::new(tcp), host, ca_cert, vec![b"xmpp-client".to_vec()]).await?;
        let mut client = RawClient::over(stream);
        client.tls_exporter = exporter;
        client.alpn = alpn;
        Ok(client)
    }

    fn over(io: Box<dyn ClientIo>) -> RawClient {
        RawClient {
            io,
            framer: Framer::new(FramerLimits {
                max_stanza_bytes: 16 * 1024 * 1024,
                max_depth: 256,
                max_attributes: usize::MAX,
                max_attribute_bytes: usize::MAX,
            }),
            buf: vec![0u8; 16384].into_boxed_slice(),
            tls_exporter: None,
            alpn: None,
            server_header: None,
        }
    }

    pub async fn send_raw(&mut self, data: &str) -> anyhow::Result<()> {
        self.io.write_all(data.as_bytes()).await?;
        self.io.flush().await?;
        Ok(())
    }

    pub async fn send_bytes(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.io.write_all(data).await?;
        self.io.flush().await?;
        Ok(())
    }

    pub async fn send(&mut self, element: &Element) -> anyhow::Result<()> {
        let bytes = writer::to_bytes(element);
        self.send_bytes(&bytes).await
    }

    /// The next frame; `Ok(None)` when the server closed the connection.
    pub async fn read_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        let read = async {
            loop {
                match self.framer.next_frame(false) {
                    Ok(Some(frame)) => return Ok(Some(frame)),
                    Ok(None) => {}
                    Err(err) => bail!("server sent bad XML: {err}"),
                }
                let n = match self.io.read(&mut self.buf).await {
                    Ok(n) => n,
                    Err(_) => return Ok(None),
                };
                if n == 0 {
                    return Ok(None);
                }
                self.framer.feed(&self.buf[..n]);
            }
        };
        tokio::time::timeout(TIMEOUT, read)
            .await
            .map_err(|_| anyhow!("timed out waiting for the server"))?
    }

    /// Every byte the server sends until it closes the connection, unparsed (a TLS alert,
    /// say); fails if it has not closed it within the client's timeout.
    pub async fn read_bytes_until_closed(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut got = Vec::new();
        let read = async {
            loop {
                match self.io.read(&mut self.buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&self.buf[..n]),
                }
            }
        };
        tokio::time::timeout(TIMEOUT, read)
            .await
            .map_err(|_| anyhow!("the server kept the connection open"))?;
        Ok(got)
    }

    /// The next top-level element; fails on close or stream header.
    pub async fn read_element(&mut self) -> anyhow::Result<Element> {
        match self.read_frame().await? {
            Some(Frame::Stanza(element)) => Ok(element),
            Some(other) => bail!("expected an element, got {other:?}"),
            None => bail!("connection closed"),
        }
    }

    /// Forgets the parser state for a stream restart: call before sending a new stream
    /// header by hand ([`RawClient::open_stream`] does this itself).
    pub fn restart_framer(&mut self) {
        self.framer = Framer::new(FramerLimits {
            max_stanza_bytes: 16 * 1024 * 1024,
            max_depth: 256,
            max_attributes: usize::MAX,
            max_attribute_bytes: usize::MAX,
        });
    }

    /// Sends a stream header and returns the features.
    pub async fn open_stream(&mut self, host: &str) -> anyhow::Result<Element> {
        self.restart_framer();
        self.send_raw(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0' xml:lang='en'>",
            writer::escape(host)
        ))
        .await?;
        match self.read_frame().await? {
            Some(Frame::Open(header)) => {
                if header.namespace != ns::STREAM {
                    bail!("server header in namespace {}", header.namespace);
                }
                self.server_header = Some(header);
            }
            other => bail!("expected the server's stream header, got {other:?}"),
        }
        let features = self.read_element().await?;
        if !features.is("features", ns::STREAM) {
            bail!(
                "expected stream features, got {}",
                writer::to_string(&features)
            );
        }
        Ok(features)
    }

    /// Reads until the stream ends; returns the stream error condition (None when the
    /// server closed without one) and asserts the stream was closed.
    pub async fn expect_stream_error(&mut self) -> anyhow::Result<Option<String>> {
        let mut condition = None;
        loop {
            match self.read_frame().await? {
                Some(Frame::Open(_) | Frame::Message(_)) => {}
                Some(Frame::Stanza(element)) => {
                    if element.is("error", ns::STREAM) {
                        condition = element
                            .children()
                            .find(|c| c.ns() == ns::STREAMS_ERR && c.name() != "text")
                            .map(|c| c.name().to_string());
                    }
                }
                Some(Frame::Close) | None => return Ok(condition),
            }
        }
    }

    /// STARTTLS: send `<starttls/>`, expect `<proceed/>`, handshake trusting `ca_cert`.
    pub async fn starttls(&mut self, host: &str, ca_cert: &PathBuf) -> anyhow::Result<()> {
        self.starttls_sending(
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            host,
            ca_cert,
        )
        .await
    }

    /// [`RawClient::starttls`] with the command written as given (e.g. with a trailing
    /// newline in the same write).
    pub async fn starttls_sending(
        &mut self,
        command: &str,
        host: &str,
        ca_cert: &PathBuf,
    ) -> anyhow::Result<()> {
        self.send_raw(command).await?;
        let proceed = self.read_element().await?;
        if !proceed.is("proceed", ns::TLS) {
            bail!("expected <proceed/>, got {}", writer::to_string(&proceed));
        }
        let io = std::mem::replace(&mut self.io, Box::new(tokio::io::duplex(1).0));
        let (stream, exporter, _) = tls_connect(io, host, ca_cert, vec![]).await?;
        self.io = stream;
        self.tls_exporter = exporter;
        Ok(())
    }

    /// Runs a SASL exchange with the `sasl` crate's client. On success the stream must be
    /// restarted (call [`RawClient::open_stream`]).
    pub async fn authenticate(
        &mut self,
        mechanism: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Result<(), SaslRefusal>> {
        use sasl::client::mechanisms::{Plain, Scram};
        use sasl::common::scram::{Sha1, Sha256};
        use sasl::common::ChannelBinding;
        let binding = match (&self.tls_exporter, mechanism.ends_with("-PLUS")) {
            (Some(data), true) => ChannelBinding::TlsExporter(data.clone()),
            (None, true) => bail!("-PLUS needs TLS 1.3 (tls-exporter)"),
            _ => ChannelBinding::None,
        };
        // RFC 5802 §5.1: ',' and '=' in a SCRAM username are sent as "=2C" and "=3D".
        // The `sasl` crate (0.5) writes the name as given, so it gets the escaped form.
        let scram_name = username.replace('=', "=3D").replace(',', "=2C");
        let scram_name = scram_name.as_str();
        let mut client: Box<dyn sasl::client::Mechanism + Send> = match mechanism {
            "PLAIN" => Box::new(Plain::new(username, password)),
            "SCRAM-SHA-1" | "SCRAM-SHA-1-PLUS" => Box::new(
                Scram::<Sha1>::new(scram_name, password.to_string(), binding)
                    .map_err(|e| anyhow!("{e:?}"))?,
            ),
            "SCRAM-SHA-256" | "SCRAM-SHA-256-PLUS" => Box::new(
                Scram::<Sha256>::new(scram_name, password.to_string(), binding)
                    .map_err(|e| anyhow!("{e:?}"))?,
            ),
            other => bail!("unsupported mechanism {other}"),
        };
        let initial = client.initial();
        self.send_raw(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>",
            B64.encode(initial)
        ))
        .await?;
        loop {
            let reply = self.read_element().await?;
            if !reply.has_ns(ns::SASL) {
                bail!("unexpected {} during SASL", writer::to_string(&reply));
            }
            let data = B64.decode(
                reply
                    .text()
                    .trim()
                    .trim_end_matches('=')
                    .is_empty()
                    .then(String::new)
                    .unwrap_or_else(|| reply.text().trim().to_string()),
            )?;
            match reply.name() {
                "challenge" => {
                    let response = client
                        .response(&data)
                        .map_err(|e| anyhow!("client SASL: {e}"))?;
                    self.send_raw(&format!(
                        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                        B64.encode(response)
                    ))
                    .await?;
                }
                "success" => {
                    client
                        .success(&data)
                        .map_err(|e| anyhow!("server signature did not verify: {e}"))?;
                    return Ok(Ok(()));
                }
                "failure" => {
                    let condition = reply
                        .children()
                        .find(|c| c.name() != "text")
                        .map(|c| c.name().to_string())
                        .unwrap_or_default();
                    return Ok(Err(SaslRefusal(condition)));
                }
                other => bail!("unexpected SASL element {other}"),
            }
        }
    }

    /// Opens a stream, authenticates with SCRAM-SHA-1 and restarts the stream: ready to
    /// bind (or resume). Returns the post-authentication features.
    pub async fn login(
        &mut self,
        host: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Element> {
        self.open_stream(host).await?;
        self.authenticate("SCRAM-SHA-1", username, password)
            .await??;
        self.open_stream(host).await
    }

    /// Binds a resource (server-chosen when `None`).
    pub async fn bind(&mut self, resource: Option<&str>) -> anyhow::Result<FullJid> {
        let mut bind = Element::bare("bind", ns::BIND);
        if let Some(resource) = resource {
            bind.append_child(Element::bare("resource", ns::BIND).with_text(resource));
        }
        let iq = Element::bare("iq", ns::CLIENT)
            .with("type", "set")
            .with("id", "bind-1")
            .with_child(bind);
        self.send(&iq).await?;
        let reply = self.read_element().await?;
        if reply.attr("type") != Some("result") {
            bail!("bind failed: {}", writer::to_string(&reply));
        }
        let jid = reply
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(|j| j.text())
            .context("bind result without a JID")?;
        Ok(FullJid::new(&jid)?)
    }
}

async fn tls_connect(
    io: Box<dyn ClientIo>,
    host: &str,
    ca_cert: &PathBuf,
    alpn: Vec<Vec<u8>>,
) -> anyhow::Result<(Box<dyn ClientIo>, Option<Vec<u8>>, Option<Vec<u8>>)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_cert)
        .with_context(|| format!("reading {}", ca_cert.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(host.to_string())?;
    let stream = connector.connect(name, io).await.context("TLS handshake")?;
    let (_, connection) = stream.get_ref();
    let exporter = if connection.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        connection
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(&[]))
            .ok()
            .map(|k| k.to_vec())
    } else {
        None
    };
    let alpn = connection.alpn_protocol().map(<[u8]>::to_vec);
    Ok((Box::new(stream), exporter, alpn))
}

/// A logged-in, bound client.
pub struct TestClient {
    raw: RawClient,
    jid: FullJid,
    /// Stanzas read while waiting for something else (an IQ reply).
    queue: VecDeque<Element>,
    next_id: u64,
}

impl TestClient {
    pub async fn connect(options: ClientOptions) -> anyhow::Result<TestClient> {
        let mut raw = match options.tls {
            TlsMode::Direct => {
                let ca = options
                    .ca_cert
                    .as_ref()
                    .context("direct TLS needs ca_cert")?;
                RawClient::connect_direct_tls(options.addr, &options.host, ca).await?
            }
            _ => RawClient::connect(options.addr).await?,
        };
        raw.open_stream(&options.host).await?;
        if options.tls == TlsMode::StartTls {
            let ca = options.ca_cert.as_ref().context("STARTTLS needs ca_cert")?;
            raw.starttls(&options.host, ca).await?;
            raw.open_stream(&options.host).await?;
        }
        raw.authenticate(&options.mechanism, &options.username, &options.password)
            .await??;
        raw.open_stream(&options.host).await?;
        let jid = raw.bind(options.resource.as_deref()).await?;
        Ok(TestClient {
            raw,
            jid,
            queue: VecDeque::new(),
            next_id: 1,
        })
    }

    pub fn jid(&self) -> &FullJid {
        &self.jid
    }

    pub fn raw(&mut self) -> &mut RawClient {
        &mut self.raw
    }

    pub async fn send(&mut self, stanza: &Element) -> anyhow::Result<()> {
        self.raw.send(stanza).await
    }

    /// Sends XML text as-is (written in the stream's `jabber:client` namespace).
    pub async fn send_str(&mut self, xml: &str) -> anyhow::Result<()> {
        self.raw.send_raw(xml).await
    }

    /// The next stanza (within 10 s).
    pub async fn expect(&mut self) -> anyhow::Result<Element> {
        if let Some(stanza) = self.queue.pop_front() {
            return Ok(stanza);
        }
        match self.raw.read_frame().await? {
            Some(Frame::Stanza(stanza)) => Ok(stanza),
            Some(Frame::Message(message)) => Ok(message.to_element()),
            Some(Frame::Close) => bail!("the server closed the stream"),
            Some(Frame::Open(_)) => bail!("unexpected stream header"),
            None => bail!("connection closed"),
        }
    }

    /// The next stanza matching `predicate`, keeping the others for later `expect`s.
    pub async fn expect_where(
        &mut self,
        predicate: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<Element> {
        if let Some(index) = self.queue.iter().position(&predicate) {
            if let Some(stanza) = self.queue.remove(index) {
                return Ok(stanza);
            }
        }
        loop {
            match self.raw.read_frame().await? {
                Some(Frame::Stanza(stanza)) if predicate(&stanza) => return Ok(stanza),
                Some(Frame::Stanza(stanza)) => self.queue.push_back(stanza),
                Some(other) => bail!("unexpected {other:?}"),
                None => bail!("connection closed"),
            }
        }
    }

    /// Asserts that nothing arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) -> anyhow::Result<()> {
        if let Some(stanza) = self.queue.front() {
            bail!("unexpected stanza {}", writer::to_string(stanza));
        }
        match tokio::time::timeout(wait, self.raw.read_frame()).await {
            Err(_) => Ok(()),
            Ok(Ok(Some(Frame::Stanza(stanza)))) => {
                bail!("unexpected stanza {}", writer::to_string(&stanza))
            }
            Ok(other) => bail!("unexpected {other:?}"),
        }
    }

    /// Sends initial presence and waits until the server has processed it (a ping
    /// round trip: a session's stanzas are handled in order).
    pub async fn available(&mut self) -> anyhow::Result<()> {
        self.send_str("<presence/>").await?;
        self.sync().await
    }

    /// Waits until the server has processed everything this client sent.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        let domain = self.jid.domain().to_string();
        let reply = self
            .iq_str(&format!(
                "<iq type='get' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await?;
        if reply.attr("type") != Some("result") {
            bail!("sync ping failed: {}", writer::to_string(&reply));
        }
        Ok(())
    }

    /// Sends an IQ (an `id` is added when missing) and returns its reply.
    pub async fn iq(&mut self, mut iq: Element) -> anyhow::Result<Element> {
        let id = match iq.attr("id") {
            Some(id) => id.to_string(),
            None => {
                let id = format!("test-{}", self.next_id);
                self.next_id += 1;
                iq.set("id", id.clone());
                id
            }
        };
        self.send(&iq).await?;
        self.expect_where(|s| {
            s.name() == "iq"
                && s.attr("id") == Some(id.as_str())
                && matches!(s.attr("type"), Some("result") | Some("error"))
        })
        .await
    }

    /// Parses XML text into a stanza in `jabber:client` and sends it as an IQ.
    pub async fn iq_str(&mut self, xml: &str) -> anyhow::Result<Element> {
        let iq = parse_client(xml)?;
        self.iq(iq).await
    }

    /// Ends the stream cleanly and waits for the server's close.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.raw.send_raw("</stream:stream>").await?;
        loop {
            match self.raw.read_frame().await? {
                Some(Frame::Close) | None => return Ok(()),
                _ => {}
            }
        }
    }
}

/// Parses a stanza written without `xmlns` into `jabber:client`.
pub fn parse_client(xml: &str) -> anyhow::Result<Element> {
    let wrapped = format!("<wrapper xmlns='jabber:client'>{xml}</wrapper>");
    let wrapper: Element = wrapped.parse().map_err(|e| anyhow!("invalid XML: {e}"))?;
    wrapper.children().next().cloned().context("no element")
}
