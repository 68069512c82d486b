//! The takeover and the record layer against rustls's client, over an in-memory pipe.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::{client, TlsConnector};

use super::super::tests::Fixture;
use super::*;

type Client = client::TlsStream<DuplexStream>;
type Server = TlsTransport<DuplexStream>;

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

async fn connect(fx: &Fixture, config: ClientConfig) -> (Server, Client) {
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("name");
    let both = async {
        tokio::join!(
            fx.setup.accept_starttls(server_io),
            connector.connect(name, client_io)
        )
    };
    let (server, client) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("handshake timed out");
    (
        server.expect("server handshake"),
        client.expect("client handshake"),
    )
}

fn client_with_suite(fx: &Fixture, suite: rustls::SupportedCipherSuite) -> ClientConfig {
    client_with_suites(fx, vec![suite])
}

/// A client offering `suites`, in that order of preference.
fn client_with_suites(fx: &Fixture, suites: Vec<rustls::SupportedCipherSuite>) -> ClientConfig {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = suites;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(fx.leaf("localhost").clone())
        .expect("root certificate");
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(TLS13)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Bytes that are not all alike, so that a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

async fn read_exactly<R: AsyncRead + Unpin>(reader: &mut R, len: usize) -> Vec<u8> {
    let mut got = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(10), reader.read_exact(&mut got))
        .await
        .expect("read timed out")
        .expect("read");
    got
}

/// Both ways, large and small, with the server's keys its own from the first byte.
async fn exchange(server: &mut Server, client: &mut Client) {
    client.write_all(b"<stream>").await.expect("client write");
    client.flush().await.expect("client flush");
    assert_eq!(read_exactly(server, 8).await, b"<stream>");
    assert!(server.takes_own_records(), "the keys stayed with rustls");

    let upload = pattern(300_000, 1);
    let download = pattern(200_000, 2);
    let (sent, received) = tokio::join!(
        async {
            client.write_all(&upload).await.expect("client write");
            client.flush().await.expect("client flush");
            read_exactly(client, download.len()).await
        },
        async {
            let got = read_exactly(server, upload.len()).await;
            server.write_all(&download).await.expect("server write");
            server.flush().await.expect("server flush");
            got
        }
    );
    assert!(
        received == upload,
        "the server read other bytes than were sent"
    );
    assert!(
        sent == download,
        "the client read other bytes than were sent"
    );
}

/// A TLS 1.3 connection whose keys the server has taken over, data having flowed.
async fn established(fx: &Fixture) -> (Server, Client) {
    let (mut server, mut client) = connect(fx, fx.client(TLS13, &[])).await;
    exchange(&mut server, &mut client).await;
    (server, client)
}

/// Bytes on the wire from the client's side, under its TLS.
async fn send_raw(client: &mut Client, bytes: &[u8]) {
    client
        .get_mut()
        .0
        .write_all(bytes)
        .await
        .expect("raw write");
}

#[tokio::test]
async fn every_tls13_suite_moves_to_the_record_layer_and_carries_data() {
    let fx = Fixture::new(&["localhost"]);
    for suite in [
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let (mut server, mut client) = connect(&fx, client_with_suite(&fx, suite)).await;
        assert_eq!(
            client.get_ref().1.negotiated_cipher_suite(),
            Some(suite),
            "the client was to insist on {suite:?}"
        );
        exchange(&mut server, &mut client).await;
    }
}

#[tokio::test]
async fn aes_128_is_chosen_unless_the_client_puts_chacha_first() {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256 as AES_128, TLS13_AES_256_GCM_SHA384 as AES_256,
        TLS13_CHACHA20_POLY1305_SHA256 as CHACHA,
    };
    let fx = Fixture::new(&["localhost"]);
    for (offered, chosen) in [
        (vec![AES_256, AES_128, CHACHA], AES_128),
        (vec![AES_256, CHACHA, AES_128], AES_128),
        (vec![AES_256, CHACHA], AES_256),
        (vec![CHACHA, AES_256, AES_128], CHACHA),
    ] {
        let names: Vec<_> = offered.iter().map(|s| s.suite()).collect();
        let (mut server, mut client) = connect(&fx, client_with_suites(&fx, offered)).await;
        assert_eq!(
            client.get_ref().1.negotiated_cipher_suite(),
            Some(chosen),
            "offered {names:?}"
        );
        exchange(&mut server, &mut client).await;
    }
}

/// A new handshake with `config` (whose ticket store holds a ticket) resumes, and the
/// connection carries data.
async fn resumes(fx: &Fixture, config: ClientConfig) {
    let (mut server, mut client) = connect(fx, config).await;
    assert_eq!(
        client.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    exchange(&mut server, &mut client).await;
}

#[tokio::test]
async fn a_resumed_handshake_moves_to_the_record_layer_too() {
    let fx = Fixture::new(&["localhost"]);
    // Clones share the client's ticket store.
    let config = fx.client(TLS13, &[]);
    let (mut server, mut client) = connect(&fx, config.clone()).await;
    exchange(&mut server, &mut client).await;
    // The ticket arrives after the handshake: let the client read it.
    server.write_all(b"x").await.expect("server write");
    server.flush().await.expect("server flush");
    assert_eq!(read_exactly(&mut client, 1).await, b"x");
    resumes(&fx, config).await;
}

#[tokio::test]
async fn data_sent_with_the_finished_reaches_the_reader() {
    let fx = Fixture::new(&["localhost"]);
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let connector = TlsConnector::from(Arc::new(fx.client(TLS13, &[])));
    let name = ServerName::try_from("localhost").expect("name");
    let first = pattern(40_000, 3);
    // The client writes before the server has read anything after its handshake: the
    // first records land in rustls together with the Finished.
    let (server, mut client) = tokio::join!(fx.setup.accept_starttls(server_io), async {
        let mut client = connector.connect(name, client_io).await.expect("client");
        client.write_all(&first).await.expect("client write");
        client.flush().await.expect("client flush");
        client
    });
    let mut server = server.expect("server handshake");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(read_exactly(&mut server, first.len()).await, first);
    // rustls reads 4 KiB at a time and so held parts of those 16 KiB records; once it
    // holds none, the next read takes the keys over.
    client
        .write_all(b"<presence/>")
        .await
        .expect("client write");
    client.flush().await.expect("client flush");
    assert_eq!(read_exactly(&mut server, 11).await, b"<presence/>");
    assert!(server.takes_own_records());
}

#[tokio::test]
async fn plaintext_rustls_opened_before_the_takeover_is_read_first() {
    let fx = Fixture::new(&["localhost"]);
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let connector = TlsConnector::from(Arc::new(fx.client(TLS13, &[])));
    let name = ServerName::try_from("localhost").expect("name");
    let header = b"<stream:stream to='localhost' xmlns='jabber:client'>";
    let (server, mut client) = tokio::join!(fx.setup.accept_starttls(server_io), async {
        let mut client = connector.connect(name, client_io).await.expect("client");
        client.write_all(header).await.expect("client write");
        client.flush().await.expect("client flush");
        client
    });
    let mut server = server.expect("server handshake");
    assert_eq!(
        server.rustls_plaintext_waiting(),
        header.len(),
        "the header was to arrive with the Finished"
    );
    assert_eq!(read_exactly(&mut server, header.len()).await, header);
    assert!(server.takes_own_records());
    client
        .write_all(b"<presence/>")
        .await
        .expect("client write");
    client.flush().await.expect("client flush");
    assert_eq!(read_exactly(&mut server, 11).await, b"<presence/>");
}

#[tokio::test]
async fn client_key_updates_are_followed_and_answered() {
    let fx = Fixture::new(&["localhost"]);
    let mut config = fx.client(TLS13, &[]);
    config.enable_secret_extraction = true;
    let (mut server, mut client) = connect(&fx, config).await;
    exchange(&mut server, &mut client).await;
    for round in 0..3u8 {
        // rustls asks the server to update too (update_requested).
        client
            .get_mut()
            .1
            .refresh_traffic_keys()
            .expect("key update");
        client.write_all(&[round; 100]).await.expect("client write");
        client.flush().await.expect("client flush");
        assert_eq!(read_exactly(&mut server, 100).await, vec![round; 100]);
        server
            .write_all(&[round + 10; 50])
            .await
            .expect("server write");
        server.flush().await.expect("server flush");
        assert_eq!(read_exactly(&mut client, 50).await, vec![round + 10; 50]);
    }
    // The server answered the last request with a KeyUpdate of its own before its data:
    // the client read that data as the first record under new keys. Unanswered, the
    // count would include every record the server ever sent.
    let (_, conn) = client.into_inner();
    let secrets = conn.dangerous_extract_secrets().expect("client secrets");
    assert_eq!(
        secrets.rx.0, 1,
        "records read under the client's current keys"
    );
}

#[tokio::test]
async fn a_small_reader_gets_every_byte_in_order() {
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client) = established(&fx).await;
    let sent = pattern(50_000, 4);
    client.write_all(&sent).await.expect("client write");
    client.flush().await.expect("client flush");
    let mut got = Vec::new();
    let mut small = [0u8; 7];
    while got.len() < sent.len() {
        let n = server.read(&mut small).await.expect("read");
        assert!(n > 0, "end of stream after {} bytes", got.len());
        got.extend_from_slice(&small[..n]);
    }
    assert!(got == sent);
}

#[tokio::test]
async fn close_notify_ends_the_stream_both_ways() {
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client) = established(&fx).await;
    client.shutdown().await.expect("client shutdown");
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.expect("server read");
    assert!(rest.is_empty());

    let (mut server, mut client) = connect(&fx, fx.client(TLS13, &[])).await;
    exchange(&mut server, &mut client).await;
    server.write_all(b"</stream>").await.expect("server write");
    server.shutdown().await.expect("server shutdown");
    let mut rest = Vec::new();
    // rustls reports an end without close_notify as an error: Ok means it came.
    client.read_to_end(&mut rest).await.expect("client read");
    assert_eq!(rest, b"</stream>");
    assert!(
        server.write_all(b"more").await.is_err(),
        "written after close_notify"
    );
}

#[tokio::test]
async fn a_forged_record_ends_the_connection_with_bad_record_mac() {
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client) = established(&fx).await;
    let mut forged = vec![23, 3, 3, 0, 40];
    forged.extend_from_slice(&pattern(40, 5));
    send_raw(&mut client, &forged).await;
    let err = server
        .read(&mut [0u8; 64])
        .await
        .expect_err("a forged record was accepted");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("authentication"), "{err}");
    // The client hears why.
    let alert = client.read(&mut [0u8; 64]).await.expect_err("no alert");
    assert!(alert.to_string().contains("BadRecordMac"), "{alert}");
    assert!(
        server.write_all(b"x").await.is_err(),
        "written after a fatal error"
    );
}

#[tokio::test]
async fn an_unprotected_record_after_the_handshake_is_refused() {
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client) = established(&fx).await;
    send_raw(&mut client, &[21, 3, 3, 0, 2, 1, 0]).await;
    let err = server.read(&mut [0u8; 64]).await.expect_err("accepted");
    assert!(err.to_string().contains("unexpected"), "{err}");
}

#[tokio::test]
async fn the_end_of_tcp_inside_a_record_is_an_error() {
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client) = established(&fx).await;
    send_raw(&mut client, &[23, 3, 3, 0, 100, 1, 2, 3]).await;
    drop(client);
    let err = server.read(&mut [0u8; 64]).await.expect_err("accepted");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn tls12_stays_with_rustls() {
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client) = connect(&fx, fx.client(TLS12, &[])).await;
    client.write_all(b"hello").await.expect("client write");
    client.flush().await.expect("client flush");
    assert_eq!(read_exactly(&mut server, 5).await, b"hello");
    server.write_all(b"world").await.expect("server write");
    server.flush().await.expect("server flush");
    assert_eq!(read_exactly(&mut client, 5).await, b"world");
    assert!(!server.takes_own_records());
}

#[test]
fn record_boundaries_are_followed_across_split_reads() {
    let mut boundary = RecordBoundary::new(());
    // A record of 3 bytes, then one of 300, fed in awkward pieces.
    let mut stream = vec![23, 3, 3, 0, 3, 9, 9, 9, 23, 3, 3, 1, 44];
    stream.extend_from_slice(&[7; 300]);
    let cuts = [1, 4, 7, 8, 12, 13, 200, stream.len()];
    let mut from = 0;
    let mut at_boundary = Vec::new();
    for cut in cuts {
        boundary.follow(&stream[from..cut]);
        at_boundary.push(boundary.at_record_boundary());
        from = cut;
    }
    assert_eq!(
        at_boundary,
        [false, false, false, true, false, false, false, true]
    );
}

#[tokio::test]
async fn a_stream_of_records_with_nothing_to_read_is_cut_off() {
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client) = established(&fx).await;
    // A few KeyUpdates in a row are fine...
    for _ in 0..FRUITLESS_RECORDS_IN_A_ROW {
        client
            .get_mut()
            .1
            .refresh_traffic_keys()
            .expect("key update");
    }
    client.write_all(b"ok").await.expect("client write");
    client.flush().await.expect("client flush");
    assert_eq!(read_exactly(&mut server, 2).await, b"ok");
    // ...one more than that, with no data between, is not.
    for _ in 0..=FRUITLESS_RECORDS_IN_A_ROW {
        client
            .get_mut()
            .1
            .refresh_traffic_keys()
            .expect("key update");
    }
    client.write_all(b"late").await.expect("client write");
    client.flush().await.expect("client flush");
    let err = server.read(&mut [0u8; 64]).await.expect_err("accepted");
    assert!(err.to_string().contains("unexpected"), "{err}");
}

#[test]
fn the_fuzz_script_delivers_sealed_data_and_stops_at_garbage() {
    use super::fuzzing::client_records;
    // Reader of 3 bytes; "hello" sealed, a cut, "world" sealed.
    let script = [
        2, 0, 5, b'h', b'e', b'l', b'l', b'o', 7, 0, 1, 5, b'w', b'o', b'r', b'l', b'd',
    ];
    assert_eq!(client_records(&script), b"helloworld");
    // A KeyUpdate between them (the script's client updates its keys after it).
    let with_update = [
        200, 0, 5, b'h', b'e', b'l', b'l', b'o', 4, 5, 24, 0, 0, 1, 1, 0, 5, b'w', b'o', b'r',
        b'l', b'd',
    ];
    assert_eq!(client_records(&with_update), b"helloworld");
    // Raw bytes after the first record: only what came before them is read.
    let garbage = [
        9, 0, 5, b'h', b'e', b'l', b'l', b'o', 6, 5, 23, 3, 3, 0, 30, 0, 3, b'b', b'y', b'e',
    ];
    assert_eq!(client_records(&garbage), b"hello");
    // A close_notify ends the stream; data after it is not read.
    let closed = [9, 0, 2, b'h', b'i', 3, 2, 1, 0, 0, 3, b'b', b'y', b'e'];
    assert_eq!(client_records(&closed), b"hi");
}

/// A server socket that counts the writes that reach it.
struct CountingIo {
    io: DuplexStream,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl crate::byte_stream::ByteStream for CountingIo {}

type CountedServer = TlsTransport<CountingIo>;

/// A handshake whose server socket counts its writes.
async fn connect_counted(
    fx: &Fixture,
    config: ClientConfig,
) -> (CountedServer, Client, Arc<std::sync::atomic::AtomicUsize>) {
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server_io = CountingIo {
        io: server_io,
        writes: writes.clone(),
    };
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("name");
    let (server, client) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(
            fx.setup.accept_starttls(server_io),
            connector.connect(name, client_io)
        )
    })
    .await
    .expect("handshake timed out");
    (server.expect("server"), client.expect("client"), writes)
}

#[tokio::test]
async fn the_session_ticket_goes_out_with_the_first_data() {
    use std::sync::atomic::Ordering::Relaxed;
    let fx = Fixture::new(&["localhost"]);
    // Clones share the client's ticket store.
    let config = fx.client(TLS13, &[]);
    let (mut server, mut client, writes) = connect_counted(&fx, config.clone()).await;
    assert_eq!(
        writes.load(Relaxed),
        1,
        "the handshake wrote more than its one flight (the ticket went out alone)"
    );
    client.write_all(b"<stream>").await.expect("client write");
    client.flush().await.expect("client flush");
    assert_eq!(read_exactly(&mut server, 8).await, b"<stream>");
    assert!(server.takes_own_records());
    server
        .write_all(b"<features/>")
        .await
        .expect("server write");
    server.flush().await.expect("server flush");
    assert_eq!(writes.load(Relaxed), 2, "ticket and data in one write");
    assert_eq!(read_exactly(&mut client, 11).await, b"<features/>");
    // The ticket arrived, whole: the next handshake resumes with it.
    resumes(&fx, config).await;
}

#[tokio::test]
async fn the_last_records_and_close_notify_go_out_in_one_write() {
    use std::sync::atomic::Ordering::Relaxed;
    let fx = Fixture::new(&["localhost"]);
    let (mut server, mut client, writes) = connect_counted(&fx, fx.client(TLS13, &[])).await;
    client.write_all(b"<stream>").await.expect("client write");
    client.flush().await.expect("client flush");
    assert_eq!(read_exactly(&mut server, 8).await, b"<stream>");
    server
        .write_all(b"<features/>")
        .await
        .expect("server write");
    server.flush().await.expect("server flush");
    assert!(server.takes_own_records());
    let before = writes.load(Relaxed);
    crate::byte_stream::end_with(&mut server, b"</stream:stream>")
        .await
        .expect("end");
    assert_eq!(
        writes.load(Relaxed) - before,
        1,
        "the last records and the close_notify went out in separate writes"
    );
    assert_eq!(read_exactly(&mut client, 11).await, b"<features/>");
    assert_eq!(read_exactly(&mut client, 16).await, b"</stream:stream>");
    // rustls reports a TCP end without close_notify as an error, not as the end.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest))
        .await
        .expect("read timed out");
    assert!(
        matches!(read, Ok(0)),
        "no clean end after the last records: {read:?}"
    );
}
