//! The same floors with TLS 1.3, as every compared server runs them: rustls with ring
//! (what Tern uses), an ECDSA P-256 certificate, x25519, AES-128-GCM-SHA256 (Tern's
//! choice), one session ticket per handshake, and no resumption: every login is a full
//! handshake with a signature, as tern-load's are. Nothing XMPP: no XML, no SASL,
//! no storage, no routing table. What it measures is what a login, a message or a
//! XEP-0215 request costs a server before it does any of its own work.
//!
//!   taskset -c 0 floor tls-server &
//!   taskset -c 1 floor tls-logins PID RATE COUNT     # 2 plain round trips, handshake, 7 over TLS
//!   taskset -c 1 floor tls-messages PID RATE COUNT [PAIRS]     # 140-byte writes relayed (50 pairs)
//!   taskset -c 1 floor tls-requests PID RATE COUNT [CLIENTS]   # 150 bytes in, REPLY_BYTES out (20)
//!
//! Each client command prints one JSON line: the scenario, the rate, the operations and
//! the server's CPU (utime+stime from /proc) in all and per operation.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// Below Linux's ephemeral range (32768–60999 by default), so that no outgoing connection
// of an earlier step (a benchmark's thousands of clients) can hold one of them: the smoke
// run's server once died at start-up, likely on exactly that.
const LOGIN_PORT: u16 = 27003;
const RELAY_PORT: u16 = 27004;
const REQUEST_PORT: u16 = 27005;
/// Round trips before STARTTLS (stream header and features, then `<starttls/>` and
/// `<proceed/>`) and after it (stream restart, SASL challenge, success, stream restart,
/// bind, roster, presence), as tern-load's login makes them.
const PLAIN_ROUNDS: usize = 2;
const TLS_ROUNDS: usize = 7;
/// The size of Tern's XEP-0215 `services` reply in the benchmark (one STUN and three TURN
/// services with REST credentials): 867 bytes serialised with its `xmlns`, which the
/// stream's default namespace leaves out on the wire.
const REPLY_BYTES: usize = 850;
/// The size of a delivered message in the benchmark (tern-load's `<message>` with the
/// `from` the server adds).
const MESSAGE_BYTES: usize = 140;
const CERT_FILE: &str = "/tmp/tern-bench-floor-cert.der";

fn server_config() -> Arc<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(CERT_FILE, cert.der()).unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    );
    // Tern's own order, not the client's (which puts AES-256-GCM-SHA384 first): SHA-256
    // runs on this CPU's SHA instructions, while ring hashes SHA-384 with portable code on
    // AMD, about 50 µs more per login here. A floor is what the cheapest choice costs.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    let provider = Arc::new(provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
    config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    config.send_tls13_tickets = 1;
    config.ignore_client_order = true;
    Arc::new(config)
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let der = std::fs::read(CERT_FILE).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // tern-load's logins never resume, so every server signs a CertificateVerify per
    // login; with rustls's default in-memory session cache the floor's logins resumed with
    // the last ticket and skipped that signature (about 50 µs here).
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

async fn connect_tls(
    connector: &tokio_rustls::TlsConnector,
    tcp: TcpStream,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

async fn connect(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp
}

async fn accept(listener: &TcpListener) -> TcpStream {
    let (tcp, _) = listener.accept().await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp
}

/// Answers every read with `reply` until the peer closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, reply: &[u8]) {
    let mut buf = vec![0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if stream.write_all(reply).await.is_err() {
            break;
        }
    }
}

/// One JSON line per run, for bench/compare.sh to collect (no serde: the strings are
/// ours and need no escaping).
fn report(scenario: &str, rate: f64, operations: usize, server_cpu_us: f64, what: &str) {
    println!(
        "{{\"scenario\": \"{scenario}\", \"rate\": {rate}, \"operations\": {operations}, \
         \"server_cpu_us\": {server_cpu_us:.0}, \"cpu_us_per_op\": {:.2}, \"what\": \"{what}\"}}",
        server_cpu_us / operations as f64
    );
}

async fn read_exactly<S: AsyncRead + Unpin>(stream: &mut S, bytes: usize) {
    let mut buf = vec![0u8; 16384];
    let mut got = 0;
    while got < bytes {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed early");
        got += n;
    }
}

async fn login_server(acceptor: tokio_rustls::TlsAcceptor) {
    let listener = TcpListener::bind(("127.0.0.1", LOGIN_PORT)).await.unwrap();
    loop {
        let mut tcp = accept(&listener).await;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            for _ in 0..PLAIN_ROUNDS {
                if matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)) {
                    return;
                }
                if tcp.write_all(&[b'p'; 200]).await.is_err() {
                    return;
                }
            }
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                answer(&mut tls, &[b'x'; 200]).await;
            }
        });
    }
}

async fn relay_server(acceptor: tokio_rustls::TlsAcceptor) {
    let listener = TcpListener::bind(("127.0.0.1", RELAY_PORT)).await.unwrap();
    loop {
        // Paired in accept order: what the first of a pair sends goes to the second. A
        // connection without a handshake (a port probe) is no one's partner.
        let Ok(a) = acceptor.accept(accept(&listener).await).await else {
            continue;
        };
        let b = loop {
            if let Ok(b) = acceptor.accept(accept(&listener).await).await {
                break b;
            }
        };
        tokio::spawn(async move {
            let (mut a, mut b) = (a, b);
            crate::relay(&mut a, &mut b).await;
        });
    }
}

async fn request_server(acceptor: tokio_rustls::TlsAcceptor) {
    let listener = TcpListener::bind(("127.0.0.1", REQUEST_PORT))
        .await
        .unwrap();
    loop {
        let tcp = accept(&listener).await;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                answer(&mut tls, &[b'r'; REPLY_BYTES]).await;
            }
        });
    }
}

pub async fn server() {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config());
    tokio::join!(
        login_server(acceptor.clone()),
        relay_server(acceptor.clone()),
        request_server(acceptor)
    );
}

pub async fn logins(pid: u32, rate: f64, count: usize) {
    let connector = tokio_rustls::TlsConnector::from(client_config());
    let before = crate::cpu_us(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..count {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut tcp = connect(LOGIN_PORT).await;
            for _ in 0..PLAIN_ROUNDS {
                tcp.write_all(&[b'y'; 150]).await.unwrap();
                read_exactly(&mut tcp, 200).await;
            }
            let mut tls = connect_tls(&connector, tcp).await;
            for _ in 0..TLS_ROUNDS {
                tls.write_all(&[b'y'; 150]).await.unwrap();
                read_exactly(&mut tls, 200).await;
            }
            tls.shutdown().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = crate::cpu_us(pid);
    report(
        "logins",
        rate,
        count,
        after - before,
        &format!(
            "{PLAIN_ROUNDS} plain round trips, a full TLS 1.3 handshake (no resumption), \
             {TLS_ROUNDS} round trips over TLS, close; one connection per operation"
        ),
    );
}

pub async fn messages(pid: u32, rate: f64, count: usize, pairs: usize) {
    let connector = tokio_rustls::TlsConnector::from(client_config());
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..pairs {
        senders.push(connect_tls(&connector, connect(RELAY_PORT).await).await);
        let mut receiver = connect_tls(&connector, connect(RELAY_PORT).await).await;
        let expect = count / pairs * MESSAGE_BYTES;
        readers.push(tokio::spawn(async move {
            read_exactly(&mut receiver, expect).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = crate::cpu_us(pid);
    let start = Instant::now();
    for k in 0..count / pairs * pairs {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        senders[k % pairs]
            .write_all(&[b'm'; MESSAGE_BYTES])
            .await
            .unwrap();
    }
    for reader in readers {
        reader.await.unwrap();
    }
    let after = crate::cpu_us(pid);
    report(
        "messages",
        rate,
        count / pairs * pairs,
        after - before,
        &format!("{MESSAGE_BYTES}-byte writes relayed between {pairs} pairs of TLS connections"),
    );
}

pub async fn requests(pid: u32, rate: f64, count: usize, clients: usize) {
    let connector = tokio_rustls::TlsConnector::from(client_config());
    let per_client = count / clients;
    let mut streams = Vec::new();
    for _ in 0..clients {
        streams.push(connect_tls(&connector, connect(REQUEST_PORT).await).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = crate::cpu_us(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        // Open loop per client, the clients interleaved: request k of client i is due at
        // (k * clients + i) / rate.
        tasks.push(tokio::spawn(async move {
            for k in 0..per_client {
                let due = start + Duration::from_secs_f64((k * clients + i) as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                stream.write_all(&[b'q'; 150]).await.unwrap();
                read_exactly(&mut stream, REPLY_BYTES).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let after = crate::cpu_us(pid);
    report(
        "requests",
        rate,
        per_client * clients,
        after - before,
        &format!("150-byte request, {REPLY_BYTES}-byte reply over TLS, {clients} clients"),
    );
}
