//! A client connection's TLS after the handshake.
//!
//! rustls runs the handshake. At the first read or write that finds nothing buffered in
//! rustls (no record half-received, no plaintext unread, nothing unsent), a TLS 1.3
//! connection's keys are taken over and its records are protected by
//! [`super::record_layer`]; rustls's connection state is dropped. rustls keeps a receive
//! buffer of at least 4 KiB and its record queues for a connection's whole life, which was
//! half of what an idle client cost; the record layer holds the two directions' keys and
//! buffers only what a socket could not take or a reader had no room for.
//!
//! TLS 1.2 connections stay with rustls.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::{ConnectionTrafficSecrets, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::record_layer::{
    self as records, next_secret, secret_derives_iv, Direction, RecordError, Secret, Suite,
    CONTENT_ALERT, CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE, HEADER_LEN, MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
};
use super::secrets::{Capturing, TrafficSecrets};
use super::suite_choice::SuiteConfigs;
use crate::byte_stream::{poll_write_then_shutdown, ByteStream};

/// Plaintext sealed per write call: large writes (a big roster) go out four records to a
/// system call.
const WRITE_BATCH: usize = 4 * MAX_PLAINTEXT;

/// Records in a row that carry nothing for the reader (empty data, KeyUpdates) before the
/// connection is ended, as rustls does: they cost work and pass every byte budget.
const FRUITLESS_RECORDS_IN_A_ROW: u8 = 32;

/// KeyUpdates a client may have sent before the takeover (during the first flight of
/// application data) that the takeover still follows.
const UPDATES_BEFORE_TAKEOVER: usize = 8;

thread_local! {
    /// Ciphertext being opened by the connections this thread serves: a record carried
    /// over from the last read plus a whole new one always fit.
    static OPENING: RefCell<Box<[u8]>> =
        RefCell::new(vec![0u8; 2 * (HEADER_LEN + MAX_CIPHERTEXT)].into_boxed_slice());
    /// Records being sealed, before the socket takes them.
    static SEALING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs a server handshake over `io` with the config of `configs` that suits the client's
/// ClientHello.
pub(crate) async fn accept<IO>(configs: &SuiteConfigs, io: IO) -> io::Result<TlsTransport<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut start = tokio_rustls::LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        RecordBoundary::new(io),
    )
    .await?;
    let config = configs.for_client(&start.client_hello());
    // From here on rustls's records go out when the handshake next waits for the client,
    // so the session ticket it writes last goes out with the first data after it.
    start.io.holding = true;
    // rustls answers the ClientHello, deriving the traffic secrets, inside
    // `into_stream`: the capture has to be open around that call too.
    let handshake = std::pin::pin!(async move {
        match start.into_stream(config).into_fallible().await {
            Ok(stream) => Ok(stream),
            Err((err, mut boundary)) => {
                // The alert that says what went wrong.
                let _ = std::future::poll_fn(|cx| boundary.poll_send_held(cx)).await;
                Err(err)
            }
        }
    });
    let (stream, secrets) = Capturing::new(handshake).await;
    let mut stream = stream?;
    // In TLS 1.3 only session tickets follow the client's Finished. Anything else held
    // (TLS 1.2's last flight, which the client waits for) goes out now.
    if stream.get_ref().1.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        std::future::poll_fn(|cx| stream.get_mut().0.poll_send_held(cx)).await?;
    }
    Ok(TlsTransport::new(stream, secrets))
}

/// A server-side TLS stream: rustls's until its keys are taken over, then Tern's.
pub struct TlsTransport<IO> {
    state: State<IO>,
}

// The transport itself is boxed (as a connection's `BoxStream`): the record layer inline
// is one allocation per connection, not two.
#[allow(clippy::large_enum_variant)]
enum State<IO> {
    /// Boxed: rustls's state is freed at the takeover, and the transport's own
    /// allocation is then only as large as the record layer.
    Rustls(Box<RustlsSide<IO>>),
    Own(OwnRecords<IO>),
    /// A takeover failed half-way: the connection cannot go on.
    Broken,
}

struct RustlsSide<IO> {
    stream: TlsStream<RecordBoundary<IO>>,
    secrets: TrafficSecrets,
    /// `None` when the keys cannot be taken over: TLS 1.2, or no secrets caught.
    suite: Option<Suite>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsTransport<IO> {
    fn new(mut stream: TlsStream<RecordBoundary<IO>>, secrets: TrafficSecrets) -> Self {
        stream.get_mut().0.stop_holding();
        let conn = stream.get_ref().1;
        let suite = (conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
            && secrets.client.is_some()
            && secrets.server.is_some())
        .then(|| conn.negotiated_cipher_suite())
        .flatten()
        .and_then(|suite| Suite::of(suite.suite()));
        TlsTransport {
            state: State::Rustls(Box::new(RustlsSide {
                stream,
                secrets,
                suite,
            })),
        }
    }

    /// rustls's connection, while it still has one (channel binding reads it).
    pub(crate) fn rustls_connection(&self) -> Option<&rustls::ServerConnection> {
        match &self.state {
            State::Rustls(side) => Some(side.stream.get_ref().1),
            _ => None,
        }
    }

    /// Whether the records are Tern's own now.
    pub fn takes_own_records(&self) -> bool {
        matches!(self.state, State::Own(_))
    }

    /// Plaintext rustls has opened and nobody read yet.
    #[cfg(test)]
    fn rustls_plaintext_waiting(&mut self) -> usize {
        match &mut self.state {
            State::Rustls(side) => side
                .stream
                .get_mut()
                .1
                .process_new_packets()
                .map_or(0, |state| state.plaintext_bytes_to_read()),
            _ => 0,
        }
    }

    /// Takes the keys over from rustls if it holds nothing the record layer could not
    /// carry on with.
    fn take_over_if_idle(&mut self) -> io::Result<()> {
        let State::Rustls(side) = &mut self.state else {
            return Ok(());
        };
        let Some(suite) = side.suite else {
            return Ok(());
        };
        let (boundary, conn) = side.stream.get_ref();
        if conn.is_handshaking() || conn.wants_write() || !boundary.at_record_boundary() {
            return Ok(());
        }
        // Plaintext rustls opened and nobody read yet (a client's first data can come in
        // the packet of its Finished) goes on to the reader first.
        let (unread, read_closed) = drain_plaintext(side.stream.get_mut().1);
        let State::Rustls(side) = std::mem::replace(&mut self.state, State::Broken) else {
            return Ok(());
        };
        let RustlsSide {
            stream, secrets, ..
        } = *side;
        let (mut boundary, conn) = stream.into_inner();
        // The session ticket, held back: it goes out with our first records.
        let held = boundary.take_held();
        let keys = conn
            .dangerous_extract_secrets()
            .map_err(|err| io::Error::other(format!("taking TLS keys over: {err}")))
            .and_then(|extracted| {
                Ok((
                    direction_matching(suite, secrets.client, extracted.rx)?,
                    direction_matching(suite, secrets.server, extracted.tx)?,
                ))
            });
        let (rx, tx) = keys.inspect_err(|err| {
            // Never expected: the conditions above are what rustls requires. The
            // connection cannot go on, and an operator should hear of it.
            tracing::warn!(%err, "a TLS connection failed at the takeover of its keys");
        })?;
        self.state = State::Own(OwnRecords {
            io: boundary.io,
            rx,
            tx,
            unopened: Vec::new(),
            unread,
            unread_at: 0,
            unsent_untried: !held.is_empty(),
            unsent: held,
            unsent_at: 0,
            owe_key_update: false,
            fruitless: 0,
            read_closed,
            close_notify_sent: false,
            failed: false,
        });
        Ok(())
    }

    /// Before a write: rustls's own pending records (its session ticket) go out first,
    /// then the keys are taken over if they can be.
    fn poll_prepare_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let State::Rustls(side) = &mut self.state {
            if side.suite.is_some() && side.stream.get_ref().1.wants_write() {
                ready!(Pin::new(&mut side.stream).poll_flush(cx))?;
            }
        }
        Poll::Ready(self.take_over_if_idle())
    }
}

/// What rustls has opened and nobody read; whether the peer closed (close_notify, or the
/// end of the TCP stream, which rustls reports as an unexpected EOF).
fn drain_plaintext(conn: &mut rustls::ServerConnection) -> (Vec<u8>, bool) {
    use std::io::Read;
    let mut unread = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match conn.reader().read(&mut chunk) {
            Ok(0) => return (unread, true),
            Ok(n) => unread.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return (unread, false),
            Err(_) => return (unread, true),
        }
    }
}

/// The record layer's keys for one direction: the key and IV rustls used, with the
/// generation of the caught traffic secret they come from (the handshake's first, or a
/// later one if the client already sent KeyUpdates), which later KeyUpdates derive from.
fn direction_matching(
    suite: Suite,
    first_secret: Option<Secret>,
    (seq, rustls_keys): (u64, ConnectionTrafficSecrets),
) -> io::Result<Direction> {
    let (key, iv) = match &rustls_keys {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key.as_ref(), iv.as_ref()),
        _ => return Err(io::Error::other("TLS keys of an unknown cipher")),
    };
    let mut secret =
        first_secret.ok_or_else(|| io::Error::other("no TLS traffic secret was caught"))?;
    for _ in 0..=UPDATES_BEFORE_TAKEOVER {
        if secret_derives_iv(suite, &secret, iv) {
            return Direction::from_keys(suite, secret, key, iv, seq).map_err(io::Error::other);
        }
        secret = next_secret(suite, &secret).map_err(io::Error::other)?;
    }
    Err(io::Error::other(
        "the TLS keys rustls used do not derive from the handshake's secrets",
    ))
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the TLS connection failed")
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsTransport<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.take_over_if_idle()?;
        match &mut this.state {
            State::Rustls(side) => Pin::new(&mut side.stream).poll_read(cx, buf),
            State::Own(own) => own.poll_read(cx, buf),
            State::Broken => Poll::Ready(Err(broken())),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsTransport<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_prepare_write(cx))?;
        match &mut this.state {
            State::Rustls(side) => Pin::new(&mut side.stream).poll_write(cx, data),
            State::Own(own) => own.poll_write(cx, data),
            State::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Rustls(side) => Pin::new(&mut side.stream).poll_flush(cx),
            State::Own(own) => own.poll_flush(cx),
            State::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Rustls(side) => Pin::new(&mut side.stream).poll_shutdown(cx),
            State::Own(own) => own.poll_shutdown(cx),
            State::Broken => Poll::Ready(Err(broken())),
        }
    }
}

impl<IO: ByteStream> ByteStream for TlsTransport<IO> {
    fn poll_end_with(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        taken: &mut usize,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_prepare_write(cx))?;
        match &mut self.state {
            State::Own(own) => own.poll_end_with(cx, data, taken),
            State::Rustls(_) => poll_write_then_shutdown(self, cx, data, taken),
            State::Broken => Poll::Ready(Err(broken())),
        }
    }
}

/// A TLS 1.3 connection after the takeover.
struct OwnRecords<IO> {
    io: IO,
    rx: Direction,
    tx: Direction,
    /// Received and not opened yet: the start of a record, or whole records a reader had
    /// no room for.
    unopened: Vec<u8>,
    /// Opened and not read yet.
    unread: Vec<u8>,
    unread_at: usize,
    /// Sealed and not written yet.
    unsent: Vec<u8>,
    unsent_at: usize,
    /// `unsent` has not been offered to the socket yet (the handshake's session ticket):
    /// the next write sends it with its own records, in one system call.
    unsent_untried: bool,
    /// The client asked for new keys both ways; ours change before our next data
    /// (RFC 8446 §4.6.3: any number of requests while we are silent get one update).
    owe_key_update: bool,
    /// Records in a row that gave the reader nothing.
    fruitless: u8,
    /// close_notify, or the end of the TCP stream, came: reads see the end of stream.
    read_closed: bool,
    close_notify_sent: bool,
    failed: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> OwnRecords<IO> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(broken()));
        }
        if self.unread_at < self.unread.len() {
            let n = buf.remaining().min(self.unread.len() - self.unread_at);
            buf.put_slice(&self.unread[self.unread_at..self.unread_at + n]);
            self.unread_at += n;
            if self.unread_at == self.unread.len() {
                self.unread = Vec::new();
                self.unread_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if self.read_closed || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        OPENING.with_borrow_mut(|scratch| self.poll_read_records(cx, buf, scratch))
    }

    /// Reads until a record with data (or the end of the stream) is opened into `buf`.
    fn poll_read_records(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        scratch: &mut [u8],
    ) -> Poll<io::Result<()>> {
        let mut filled = self.unopened.len();
        scratch[..filled].copy_from_slice(&self.unopened);
        self.unopened = Vec::new();
        let before = buf.filled().len();
        loop {
            let opened = match self.open_records(&mut scratch[..filled], buf) {
                Ok(opened) => opened,
                Err(err) => return Poll::Ready(Err(self.fail(cx, err))),
            };
            if buf.filled().len() > before || self.read_closed {
                if opened < filled && !self.read_closed {
                    self.unopened = scratch[opened..filled].to_vec();
                }
                return Poll::Ready(Ok(()));
            }
            // Nothing for the reader yet (only a part of a record, or a KeyUpdate).
            scratch.copy_within(opened..filled, 0);
            filled -= opened;
            let mut read_buf = ReadBuf::new(&mut scratch[filled..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut read_buf) {
                Poll::Pending => {
                    if filled > 0 {
                        self.unopened = scratch[..filled].to_vec();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => {
                    self.failed = true;
                    return Poll::Ready(Err(err));
                }
                Poll::Ready(Ok(())) => {
                    let n = read_buf.filled().len();
                    if n == 0 {
                        if filled > 0 {
                            self.failed = true;
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the connection ended inside a TLS record",
                            )));
                        }
                        self.read_closed = true;
                        return Poll::Ready(Ok(()));
                    }
                    filled += n;
                }
            }
        }
    }

    /// Opens the whole records at the start of `bytes` while the reader has room;
    /// returns how many bytes were used.
    fn open_records(
        &mut self,
        bytes: &mut [u8],
        buf: &mut ReadBuf<'_>,
    ) -> Result<usize, RecordError> {
        let mut at = 0;
        while buf.remaining() > 0 && !self.read_closed {
            let Some(len) = records::record_len(&bytes[at..])? else {
                break;
            };
            let record = &mut bytes[at..at + len];
            at += len;
            let (content_type, body) = self.rx.open(record)?;
            if content_type == CONTENT_APPLICATION_DATA && !body.is_empty() {
                self.fruitless = 0;
            } else {
                self.fruitless += 1;
                if self.fruitless > FRUITLESS_RECORDS_IN_A_ROW {
                    return Err(RecordError::UnexpectedMessage);
                }
            }
            match content_type {
                CONTENT_APPLICATION_DATA => {
                    let n = body.len().min(buf.remaining());
                    buf.put_slice(&body[..n]);
                    if n < body.len() {
                        self.unread = body[n..].to_vec();
                        self.unread_at = 0;
                    }
                }
                CONTENT_ALERT => match body {
                    [_, 0] => self.read_closed = true,
                    // user_canceled: a close_notify follows.
                    [_, 90] => {}
                    [_, description] => return Err(RecordError::Alerted(*description)),
                    _ => return Err(RecordError::DecodeError),
                },
                CONTENT_HANDSHAKE => {
                    let update_requested = records::key_update_request(body)?;
                    self.rx.update()?;
                    self.owe_key_update |= update_requested;
                }
                _ => return Err(RecordError::UnexpectedMessage),
            }
        }
        Ok(at)
    }

    /// Ends the connection for `err`: the alert it calls for goes out if the socket
    /// takes it at once.
    fn fail(&mut self, cx: &mut Context<'_>, err: RecordError) -> io::Error {
        self.failed = true;
        if let Some(alert) = err.alert() {
            if !self.close_notify_sent
                && self
                    .tx
                    .seal(CONTENT_ALERT, &[2, alert], &mut self.unsent)
                    .is_ok()
            {
                let _ = self.poll_send_unsent(cx);
            }
        }
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.failed || self.close_notify_sent {
            return Poll::Ready(Err(broken()));
        }
        if self.unsent_untried && !data.is_empty() {
            return self.poll_write_after_untried(cx, data);
        }
        ready!(self.poll_send_unsent(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let taken = data.len().min(WRITE_BATCH);
        SEALING.with_borrow_mut(|sealed| {
            sealed.clear();
            if let Err(err) = self.seal(&data[..taken], sealed) {
                return Poll::Ready(Err(self.fail(cx, err)));
            }
            // Sealed records count as written: what the socket does not take now is
            // kept and goes out before anything else.
            match Pin::new(&mut self.io).poll_write(cx, sealed) {
                Poll::Ready(Ok(n)) => {
                    if n < sealed.len() {
                        self.unsent = sealed[n..].to_vec();
                    }
                }
                Poll::Pending => self.unsent = sealed.clone(),
                Poll::Ready(Err(err)) => {
                    self.failed = true;
                    return Poll::Ready(Err(err));
                }
            }
            Poll::Ready(Ok(taken))
        })
    }

    /// Seals `data` behind the records not yet offered to the socket and sends them all.
    fn poll_write_after_untried(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let taken = data.len().min(WRITE_BATCH);
        let mut unsent = std::mem::take(&mut self.unsent);
        let sealed = self.seal(&data[..taken], &mut unsent);
        self.unsent = unsent;
        if let Err(err) = sealed {
            return Poll::Ready(Err(self.fail(cx, err)));
        }
        // Sealed records count as written, as in `poll_write`: what the socket does not
        // take now goes out before anything else.
        match self.poll_send_unsent(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            _ => Poll::Ready(Ok(taken)),
        }
    }

    fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        if self.owe_key_update || self.tx.worn_out() {
            self.tx
                .seal(CONTENT_HANDSHAKE, &records::KEY_UPDATE_NOT_REQUESTED, out)?;
            self.tx.update()?;
            self.owe_key_update = false;
        }
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.tx.seal(CONTENT_APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    fn poll_send_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.unsent_untried = false;
        let sent = ready!(poll_send_all(
            &mut self.io,
            cx,
            &mut self.unsent,
            &mut self.unsent_at
        ));
        self.failed |= sent.is_err();
        Poll::Ready(sent)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_unsent(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_notify_sent && !self.failed {
            self.close_notify_sent = true;
            if let Err(err) = self.tx.seal(CONTENT_ALERT, &[1, 0], &mut self.unsent) {
                return Poll::Ready(Err(self.fail(cx, err)));
            }
        }
        ready!(self.poll_send_unsent(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: ByteStream> OwnRecords<IO> {
    /// The last records and the close_notify are sealed together, behind anything not
    /// sent yet, and the socket ends with them: one send where there were three.
    fn poll_end_with(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        taken: &mut usize,
    ) -> Poll<io::Result<()>> {
        if self.failed || (self.close_notify_sent && *taken < data.len()) {
            return Poll::Ready(Err(broken()));
        }
        if !self.close_notify_sent {
            let mut unsent = std::mem::take(&mut self.unsent);
            let sealed = self
                .seal(&data[*taken..], &mut unsent)
                .and_then(|()| self.tx.seal(CONTENT_ALERT, &[1, 0], &mut unsent));
            self.unsent = unsent;
            if let Err(err) = sealed {
                return Poll::Ready(Err(self.fail(cx, err)));
            }
            *taken = data.len();
            self.close_notify_sent = true;
            self.unsent_untried = false;
        }
        let ended = ready!(self.io.poll_end_with(cx, &self.unsent, &mut self.unsent_at));
        self.unsent = Vec::new();
        self.unsent_at = 0;
        self.failed |= ended.is_err();
        Poll::Ready(ended)
    }
}

/// Writes `bytes[*at..]` to `io` until all is written, then frees `bytes`.
fn poll_send_all<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    cx: &mut Context<'_>,
    bytes: &mut Vec<u8>,
    at: &mut usize,
) -> Poll<io::Result<()>> {
    while *at < bytes.len() {
        match ready!(Pin::new(&mut *io).poll_write(cx, &bytes[*at..])) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => *at += n,
            Err(err) => return Poll::Ready(Err(err)),
        }
    }
    *bytes = Vec::new();
    *at = 0;
    Poll::Ready(Ok(()))
}

/// Passes a socket's bytes to rustls and follows the TLS record framing in them, so that
/// a takeover never happens with half a record inside rustls.
///
/// While `holding`, what rustls writes is kept and goes out before the next read from
/// the socket: each flight of the handshake is still sent before the handshake waits for
/// the client's answer, but the session ticket rustls writes once the handshake is over
/// stays, and goes out with the first records after it (the takeover passes it on).
/// That is one send fewer per connection, and on loopback each send also runs the
/// receiver's side of TCP.
pub(crate) struct RecordBoundary<IO> {
    io: IO,
    header: [u8; HEADER_LEN],
    header_len: usize,
    body_left: usize,
    holding: bool,
    held: Vec<u8>,
    held_at: usize,
}

impl<IO> RecordBoundary<IO> {
    fn new(io: IO) -> Self {
        RecordBoundary {
            io,
            header: [0; HEADER_LEN],
            header_len: 0,
            body_left: 0,
            holding: false,
            held: Vec::new(),
            held_at: 0,
        }
    }

    fn at_record_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    /// What is held and has not gone out.
    fn take_held(&mut self) -> Vec<u8> {
        let mut held = std::mem::take(&mut self.held);
        held.drain(..std::mem::take(&mut self.held_at));
        held
    }

    fn follow(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == HEADER_LEN {
                self.header_len = 0;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> RecordBoundary<IO> {
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_send_all(&mut self.io, cx, &mut self.held, &mut self.held_at)
    }

    /// Stops holding writes back (the handshake is over and rustls keeps the records):
    /// what is held goes out before the next bytes.
    fn stop_holding(&mut self) {
        self.holding = false;
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for RecordBoundary<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The client answers only what it has received.
        ready!(this.poll_send_held(cx))?;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.follow(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for RecordBoundary<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding {
            this.held.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding {
            let mut n = 0;
            for buf in bufs {
                this.held.extend_from_slice(buf);
                n += buf.len();
            }
            return Poll::Ready(Ok(n));
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.holding || self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // rustls flushes at the end of the handshake: what it wrote then is what is held
        // back for the first records after it.
        if this.holding {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod tests;
