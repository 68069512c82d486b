//! One client connection: the transport, framing, and the negotiation -> session hand-off.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::byte_stream::BoxStream;
use crate::sasl::ChannelBindingData;
use crate::server::ServerInner;
use crate::session::SessionInfo;
use crate::stanza::{StreamError, StreamErrorCondition};
use crate::xml::framer::{Frame, Framer, FramerLimits};
use crate::xml::writer;

/// Why reading a frame stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client broke the protocol: answer with this stream error.
    Stream(StreamError),
    /// The peer closed the TCP connection (or it broke).
    Closed(String),
}

/// The transport plus its framer, owned by the connection task.
pub(crate) struct Conn {
    pub io: BoxStream,
    pub framer: Framer,
    pub limits: FramerLimits,
    /// Read throttle of a bound session (`[limits] rate`), as Prosody's `limits`.
    pub throttle: Option<Throttle>,
    /// Stanza throttle of a bound session (`[limits] stanza_rate`): the same bucket,
    /// counting stanzas. Tiny stanzas pass the byte bucket by the thousand per second,
    /// and each can cost a storage write (an fsync).
    pub stanza_throttle: Option<Throttle>,
    /// When reading may go on after the stanza throttle ran dry. Kept here rather than
    /// slept inline so that a cancelled read (`select!`) loses nothing.
    resume_at: Option<tokio::time::Instant>,
    /// What an unauthenticated client may still send; `None` once authenticated.
    pub pre_auth: Option<super::budget::PreAuthBudget>,
    /// The peer, for the one log line when a limit ends or slows the stream.
    pub peer: Option<SocketAddr>,
    throttle_logged: bool,
}

/// A token bucket on received bytes (or stanzas): past the burst, reading pauses until
/// the rate allows more. Nothing is dropped; a flooding client just gets slower service.
pub(crate) struct Throttle {
    per_second: f64,
    burst: f64,
    tokens: f64,
    updated: tokio::time::Instant,
}

impl Throttle {
    pub fn new(per_second: u64, burst: u64) -> Self {
        Throttle {
            per_second: per_second as f64,
            burst: burst as f64,
            tokens: burst as f64,
            updated: tokio::time::Instant::now(),
        }
    }

    /// How long to wait before reading again, after `n` bytes (stanzas) arrived.
    fn take(&mut self, n: usize) -> std::time::Duration {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst) - n as f64;
        self.updated = now;
        if self.tokens >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

impl Conn {
    pub fn new(io: BoxStream, limits: FramerLimits) -> Self {
        Conn {
            io,
            framer: Framer::new(limits),
            limits,
            throttle: None,
            stanza_throttle: None,
            resume_at: None,
            pre_auth: None,
            peer: None,
            throttle_logged: false,
        }
    }

    /// A stream restart (after TLS or SASL): a fresh parser, nothing carried over.
    pub fn restart_framer(&mut self) {
        self.framer = Framer::new(self.limits);
    }

    /// The next frame. Cancel-safe: bytes are only consumed once a read completes.
    pub async fn read_frame(&mut self) -> Result<Frame, ReadError> {
        let result = self.read_frame_unlogged().await;
        if let Err(ReadError::Stream(error)) = &result {
            // Once per connection: the stream ends with this error.
            if error.condition == StreamErrorCondition::PolicyViolation {
                tracing::info!(peer = ?self.peer, text = ?error.text, "closing a stream that exceeded a limit");
            }
        }
        result
    }

    async fn read_frame_unlogged(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(at) = self.resume_at {
                // Boxed: only a throttled client gets here, and the timer would
                // otherwise be part of every session's memory.
                Box::pin(tokio::time::sleep_until(at)).await;
                self.resume_at = None;
            }
            match self.framer.next_frame(false) {
                Ok(Some(frame)) => {
                    self.count_frame(&frame)?;
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(err) => {
                    return Err(ReadError::Stream(StreamError::with_text(
                        err.condition,
                        err.text,
                    )))
                }
            }
            let n = match read_into(&mut self.io, &mut self.framer).await {
                Ok(n) => n,
                Err(err) => return Err(ReadError::Closed(err.to_string())),
            };
            if n == 0 {
                return match self.framer.next_frame(true) {
                    Ok(Some(frame)) => Ok(frame),
                    _ => Err(ReadError::Closed("connection closed by peer".into())),
                };
            }
            if let Some(budget) = &mut self.pre_auth {
                budget.take_bytes(n).map_err(ReadError::Stream)?;
            }
            if let Some(throttle) = &mut self.throttle {
                let pause = throttle.take(n);
                if !pause.is_zero() {
                    self.pause_reading(pause);
                }
            }
        }
    }

    /// Charges a top-level element to the pre-authentication budget and the stanza
    /// throttle. Past the throttle's burst, the next read waits (see `resume_at`).
    fn count_frame(&mut self, frame: &Frame) -> Result<(), ReadError> {
        if !matches!(frame, Frame::Stanza(_) | Frame::Message(_)) {
            return Ok(());
        }
        if let Some(budget) = &mut self.pre_auth {
            budget.take_stanza().map_err(ReadError::Stream)?;
        }
        if let Some(throttle) = &mut self.stanza_throttle {
            let pause = throttle.take(1);
            if !pause.is_zero() {
                self.pause_reading(pause);
                if !self.throttle_logged {
                    self.throttle_logged = true;
                    tracing::info!(peer = ?self.peer, "a session exceeds [limits] stanza_rate; reading from it more slowly");
                }
            }
        }
        Ok(())
    }

    /// Reading waits at least `pause` (both throttles may ask; the later wins).
    fn pause_reading(&mut self, pause: std::time::Duration) {
        let until = tokio::time::Instant::now() + pause;
        self.resume_at = Some(self.resume_at.map_or(until, |at| at.max(until)));
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Sends a stream error (and our header first if none was sent), closes the stream
    /// and the transport. Best effort: the peer may already be gone.
    pub async fn fail(&mut self, error: Option<&StreamError>, header: Option<String>) {
        let mut out = header.unwrap_or_default();
        if let Some(error) = error {
            out.push_str(&stream_error_xml(error));
        }
        out.push_str(writer::STREAM_CLOSE);
        let end = crate::byte_stream::end_with(&mut *self.io, out.as_bytes());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), end).await;
    }
}

thread_local! {
    /// What every connection served by this thread reads into. The bytes go on to the
    /// framer in the same poll, so a connection waiting for data holds no read buffer
    /// (with thousands of idle clients, 8 KiB each was the largest part of their memory).
    static READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; 16 * 1024].into_boxed_slice());
}

/// Reads once from `io` into `framer`; `Ok(0)` at end of stream. Cancel-safe: the bytes
/// of a completed read are in the framer before this returns `Ready`.
async fn read_into(io: &mut BoxStream, framer: &mut Framer) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_BUF.with_borrow_mut(|buf| {
            let mut read_buf = tokio::io::ReadBuf::new(buf);
            match std::pin::Pin::new(&mut *io).poll_read(cx, &mut read_buf) {
                std::task::Poll::Ready(Ok(())) => {
                    let filled = read_buf.filled();
                    framer.feed(filled);
                    std::task::Poll::Ready(Ok(filled.len()))
                }
                std::task::Poll::Ready(Err(err)) => std::task::Poll::Ready(Err(err)),
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
    })
    .await
}

/// `<stream:error>` with the prefix the stream declared (some clients match on it).
pub(crate) fn stream_error_xml(error: &StreamError) -> String {
    let mut out = String::from("<stream:error>");
    out.push('<');
    out.push_str(error.condition.name());
    out.push_str(" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    if let Some(text) = &error.text {
        out.push_str("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>");
        out.push_str(&writer::escape(text));
        out.push_str("</text>");
    }
    out.push_str("</stream:error>");
    out
}

/// Runs one connection from accept to close. While the session runs, the connection's
/// task holds little more than two boxes: negotiation's state (freed when it ends) and
/// the session's.
pub(crate) fn handle(
    server: Arc<ServerInner>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
) -> impl std::future::Future<Output = ()> + Send {
    let negotiation = Box::pin(negotiate_connection(server, tcp, peer, direct_tls));
    async move {
        if let Some(session) = negotiation.await {
            session.await;
        }
    }
}

/// From accept to a bound (or resumed) session, whose future it returns unstarted.
async fn negotiate_connection(
    server: Arc<ServerInner>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
) -> Option<super::session_loop::SessionFuture> {
    let _ = tcp.set_nodelay(true);
    let config = server.config();
    let limits = FramerLimits {
        max_stanza_bytes: config.limits.max_stanza_size,
        max_depth: config.limits.max_depth,
        max_attributes: config.limits.max_attributes,
        max_attribute_bytes: config.limits.max_attribute_length,
    };
    let info = SessionInfo {
        id: server.next_session_id(),
        host: String::new(),
        peer,
        secure: false,
        direct_tls,
        username: None,
        jid: None,
        lang: "en".to_string(),
    };
    let (io, channel_binding): (BoxStream, ChannelBindingData) = if direct_tls {
        let Some(tls) = server.tls() else {
            tracing::warn!(%peer, "direct TLS connection but no TLS certificates are loaded");
            return None;
        };
        let accept = Box::pin(tls.accept_direct(tcp));
        match tokio::time::timeout(config.limits.negotiation_timeout, accept).await {
            Ok(Ok(stream)) => {
                let (exporter, end_point) = crate::tls::transport_channel_binding(&tls, &stream);
                (
                    Box::new(stream),
                    ChannelBindingData {
                        tls_exporter: exporter,
                        tls_server_end_point: end_point,
                    },
                )
            }
            Ok(Err(err)) => {
                tracing::debug!(%peer, %err, "direct TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "direct TLS handshake timed out");
                return None;
            }
        }
    } else {
        (Box::new(tcp), ChannelBindingData::default())
    };
    let info = SessionInfo {
        secure: direct_tls,
        ..info
    };
    let mut conn = Conn::new(io, limits);
    conn.peer = Some(peer);
    conn.pre_auth = super::budget::PreAuthBudget::from_limits(&config.limits);
    let negotiated = super::negotiation::negotiate(&server, conn, info, channel_binding).await;
    match negotiated? {
        super::negotiation::Negotiated::Bound(conn, bound) => {
            Some(super::session_loop::run(server, conn, bound))
        }
        super::negotiation::Negotiated::Resumed(conn, handle, h) => {
            Some(super::session_loop::resume(server, conn, handle, h))
        }
    }
}

pub(crate) fn timeout_error() -> StreamError {
    StreamError::with_text(
        StreamErrorCondition::ConnectionTimeout,
        "stream negotiation took too long",
    )
}
