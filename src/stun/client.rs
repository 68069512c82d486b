//! Transports (UDP with retransmission, TCP framing), the long-term credential dance,
//! and the two checks.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use super::message::{self, attr, method, Attribute, Class, Decoded, Message, TransactionId};
use super::{CheckOutcome, CheckTarget, Transport};

const SOFTWARE: &str = concat!("tern ", env!("CARGO_PKG_VERSION"), " check");
/// First retransmission timeout over UDP; doubled after each retransmission.
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// Time granted to release an allocation even when the check's budget is spent.
const RELEASE_GRACE: Duration = Duration::from_secs(1);
/// How many 438 (Stale Nonce) answers are followed by a retry.
const STALE_NONCE_RETRIES: u32 = 2;

#[derive(Clone, Copy, Debug)]
pub(super) enum Check {
    Binding,
    Allocate,
}

/// Why a step failed. `Refused` lets [`run`] try the next resolved address.
#[derive(Debug)]
enum Error {
    Refused(String),
    Other(String),
}

impl Error {
    fn reason(self) -> String {
        match self {
            Error::Refused(reason) | Error::Other(reason) => reason,
        }
    }
}

/// Transport-level failures, described with the peer by [`Client::describe`].
#[derive(Debug)]
enum LinkError {
    Timeout { requests: u32 },
    Refused,
    Closed,
    NotStun,
    Io(io::Error),
}

pub(super) async fn run(target: &CheckTarget, timeout: Duration, check: Check) -> CheckOutcome {
    let deadline = Instant::now() + timeout;
    let addrs = match resolve(target, deadline, timeout).await {
        Ok(addrs) => addrs,
        Err(reason) => return CheckOutcome::Failed { reason },
    };
    let mut refused = Vec::new();
    for addr in addrs {
        let result = match Conn::open(addr, target.transport, deadline, timeout).await {
            Ok(conn) => {
                let mut client = Client {
                    conn,
                    peer: addr,
                    transport: target.transport,
                    deadline,
                    timeout,
                    credentials: target.credentials.clone(),
                    auth: None,
                };
                match check {
                    Check::Binding => client.binding().await,
                    Check::Allocate => client.allocate().await,
                }
            }
            Err(err) => Err(err),
        };
        match result {
            Ok(detail) => return CheckOutcome::Ok { detail },
            Err(Error::Refused(reason)) => refused.push(reason),
            Err(Error::Other(reason)) => return CheckOutcome::Failed { reason },
        }
    }
    CheckOutcome::Failed {
        reason: refused.join("; "),
    }
}

async fn resolve(
    target: &CheckTarget,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, String> {
    let host = target.host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("no host given".to_string());
    }
    match timeout_at(deadline, tokio::net::lookup_host((host, target.port))).await {
        Err(_) => Err(format!(
            "timeout after {} resolving {host}",
            seconds(timeout)
        )),
        Ok(Err(err)) => Err(format!("cannot resolve {host}: {err}")),
        Ok(Ok(found)) => {
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for addr in found {
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            if addrs.is_empty() {
                Err(format!("{host} has no address"))
            } else {
                Ok(addrs)
            }
        }
    }
}

/// "5s", "1.5s".
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

enum Conn {
    Udp(UdpSocket),
    /// The stream and the bytes read but not yet framed.
    Tcp(TcpStream, Vec<u8>),
}

impl Conn {
    async fn open(
        addr: SocketAddr,
        transport: Transport,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Conn, Error> {
        match transport {
            Transport::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)
                    .await
                    .map_err(|e| Error::Other(format!("cannot open a UDP socket: {e}")))?;
                socket
                    .connect(addr)
                    .await
                    .map_err(|e| Error::Other(format!("cannot reach {addr}/udp: {e}")))?;
                Ok(Conn::Udp(socket))
            }
            Transport::Tcp => match timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => Err(Error::Other(format!(
                    "timeout after {} connecting to {addr}/tcp",
                    seconds(timeout)
                ))),
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    Err(Error::Refused(format!("connection refused ({addr}/tcp)")))
                }
                Ok(Err(e)) => Err(Error::Other(format!("cannot connect to {addr}/tcp: {e}"))),
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    Ok(Conn::Tcp(stream, Vec::new()))
                }
            },
        }
    }
}

fn io_error(err: io::Error) -> LinkError {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => LinkError::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => LinkError::Closed,
        _ => LinkError::Io(err),
    }
}

/// A response to our request: same transaction, response class, and a correct
/// FINGERPRINT when there is one.
fn answers(decoded: &Decoded, tid: &TransactionId) -> bool {
    decoded.message.transaction_id == *tid
        && matches!(decoded.message.class, Class::Success | Class::Error)
        && decoded.fingerprint_ok()
}

/// Sends `request` and retransmits it (500 ms, then doubling) until a response arrives
/// or the deadline passes. Datagrams that are not a response to it are ignored.
async fn udp_transact(
    socket: &UdpSocket,
    request: &[u8],
    tid: &TransactionId,
    deadline: Instant,
) -> Result<Decoded, LinkError> {
    let mut buf = vec![0u8; 65536];
    let mut rto = INITIAL_RTO;
    let mut requests = 0;
    loop {
        if Instant::now() >= deadline {
            return Err(LinkError::Timeout { requests });
        }
        socket.send(request).await.map_err(io_error)?;
        requests += 1;
        let window_end = (Instant::now() + rto).min(deadline);
        rto *= 2;
        loop {
            match timeout_at(window_end, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(err)) => return Err(io_error(err)),
                Ok(Ok(n)) => {
                    if let Ok(decoded) = message::decode(&buf[..n]) {
                        if answers(&decoded, tid) {
                            return Ok(decoded);
                        }
                    }
                }
            }
        }
    }
}

/// Writes `request` and reads messages off the stream until the response arrives.
async fn tcp_transact(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    request: &[u8],
    tid: &TransactionId,
    deadline: Instant,
) -> Result<Decoded, LinkError> {
    match timeout_at(deadline, stream.write_all(request)).await {
        Err(_) => return Err(LinkError::Timeout { requests: 1 }),
        Ok(Err(err)) => return Err(io_error(err)),
        Ok(Ok(())) => {}
    }
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(frame_len) = message::frame_len(pending) {
            let frame_len = frame_len.map_err(|_| LinkError::NotStun)?;
            if pending.len() < frame_len {
                break;
            }
            let frame: Vec<u8> = pending.drain(..frame_len).collect();
            if let Ok(decoded) = message::decode(&frame) {
                if answers(&decoded, tid) {
                    return Ok(decoded);
                }
            }
        }
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Err(LinkError::Timeout { requests: 1 }),
            Ok(Err(err)) => return Err(io_error(err)),
            Ok(Ok(0)) => return Err(LinkError::Closed),
            Ok(Ok(n)) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Realm, nonce and key of the long-term credential mechanism, once the server sent
/// its 401.
struct Auth {
    realm: String,
    nonce: String,
    key: [u8; 16],
}

struct Client {
    conn: Conn,
    peer: SocketAddr,
    transport: Transport,
    deadline: Instant,
    timeout: Duration,
    credentials: Option<(String, String)>,
    auth: Option<Auth>,
}

fn method_name(m: u16) -> &'static str {
    match m {
        method::BINDING => "Binding",
        method::ALLOCATE => "Allocate",
        method::REFRESH => "Refresh",
        _ => "STUN",
    }
}

impl Client {
    fn describe(&self, err: LinkError, method: u16) -> Error {
        let peer = format!("{}/{}", self.peer, self.transport);
        let name = method_name(method);
        match err {
            LinkError::Timeout { requests } => Error::Other(format!(
                "timeout after {} (no response from {peer} to {requests} {name} request{})",
                seconds(self.timeout),
                if requests == 1 { "" } else { "s" }
            )),
            LinkError::Refused => Error::Refused(format!("connection refused ({peer})")),
            LinkError::Closed => Error::Other(format!(
                "connection closed by {peer} before the {name} response"
            )),
            LinkError::NotStun => Error::Other(format!(
                "{peer} sent data that is not STUN (is this a TURN server?)"
            )),
            LinkError::Io(err) => Error::Other(format!("{peer}: {err}")),
        }
    }

    async fn transact(&mut self, request: &Message) -> Result<Decoded, Error> {
        let key = self.auth.as_ref().map(|a| a.key);
        let bytes = request
            .encode(key.as_ref().map(|k| &k[..]), false)
            .map_err(|e| Error::Other(format!("cannot encode the request: {e}")))?;
        let tid = request.transaction_id;
        let result = match &mut self.conn {
            Conn::Udp(socket) => udp_transact(socket, &bytes, &tid, self.deadline).await,
            Conn::Tcp(stream, pending) => {
                tcp_transact(stream, pending, &bytes, &tid, self.deadline).await
            }
        };
        result.map_err(|e| self.describe(e, request.method))
    }

    /// One request with the long-term credential mechanism: 401 -> authenticate and
    /// retry, 438 -> new nonce and retry. Returns the (verified) success response.
    async fn request(&mut self, method: u16, attributes: &[Attribute]) -> Result<Decoded, Error> {
        let name = method_name(method);
        let mut stale_retries = 0;
        loop {
            let mut request = Message::request(method);
            request.attributes.extend(attributes.iter().cloned());
            request.push(attr::SOFTWARE, SOFTWARE);
            if let (Some(auth), Some((username, _))) = (&self.auth, &self.credentials) {
                request.push(attr::USERNAME, username.as_bytes());
                request.push(attr::REALM, auth.realm.as_bytes());
                request.push(attr::NONCE, auth.nonce.as_bytes());
            }
            let response = self.transact(&request).await?;
            let m = &response.message;
            if m.class == Class::Success {
                if let Some(auth) = &self.auth {
                    if !response.has_integrity() {
                        return Err(Error::Other(format!(
                            "{name} success response without MESSAGE-INTEGRITY (not trusted)"
                        )));
                    }
                    if !response.check_integrity(&auth.key) {
                        return Err(Error::Other(format!(
                            "{name} success response with a wrong MESSAGE-INTEGRITY (the server does not share our key)"
                        )));
                    }
                }
                return Ok(response);
            }
            let Some((code, reason)) = m.error_code() else {
                return Err(Error::Other(format!(
                    "{name} error response without ERROR-CODE"
                )));
            };
            let reason = if reason.is_empty() {
                message::reason_phrase(code).to_string()
            } else {
                reason
            };
            match code {
                401 if self.auth.is_none() => {
                    let realm = m.text(attr::REALM);
                    let Some((username, password)) = &self.credentials else {
                        return Err(Error::Other(format!(
                            "{code} {reason}: the server requires credentials{} and none were given",
                            realm.map(|r| format!(" (realm {r:?})")).unwrap_or_default()
                        )));
                    };
                    let (Some(realm), Some(nonce)) = (realm, m.text(attr::NONCE)) else {
                        return Err(Error::Other(format!(
                            "{code} {reason} without REALM and NONCE (not the long-term credential mechanism)"
                        )));
                    };
                    self.auth = Some(Auth {
                        key: message::long_term_key(username, &realm, password),
                        realm,
                        nonce,
                    });
                }
                401 => {
                    return Err(Error::Other(format!(
                        "{code} {reason} (wrong password or expired credentials)"
                    )))
                }
                438 if stale_retries < STALE_NONCE_RETRIES && self.auth.is_some() => {
                    let Some(nonce) = m.text(attr::NONCE) else {
                        return Err(Error::Other(format!("{code} {reason} without NONCE")));
                    };
                    stale_retries += 1;
                    if let (Some(auth), Some((username, password))) =
                        (self.auth.as_mut(), &self.credentials)
                    {
                        auth.nonce = nonce;
                        if let Some(realm) = m.text(attr::REALM) {
                            if realm != auth.realm {
                                auth.key = message::long_term_key(username, &realm, password);
                                auth.realm = realm;
                            }
                        }
                    }
                }
                _ => return Err(Error::Other(explain(code, &reason, m))),
            }
        }
    }

    async fn binding(&mut self) -> Result<String, Error> {
        let response = self.request(method::BINDING, &[]).await?;
        let m = &response.message;
        let mapped = m.xor_address(attr::XOR_MAPPED_ADDRESS).or_else(|| {
            m.get(attr::MAPPED_ADDRESS)
                .and_then(message::decode_plain_address)
        });
        let Some(mapped) = mapped else {
            return Err(Error::Other(
                "Binding success response without XOR-MAPPED-ADDRESS".to_string(),
            ));
        };
        let mut detail = format!("binding: mapped {mapped}");
        if let Some(software) = m.text(attr::SOFTWARE) {
            detail.push_str(&format!(" (server {software:?})"));
        }
        Ok(detail)
    }

    async fn allocate(&mut self) -> Result<String, Error> {
        let requested_transport = Attribute {
            kind: attr::REQUESTED_TRANSPORT,
            value: vec![message::PROTOCOL_UDP, 0, 0, 0],
        };
        let response = self
            .request(method::ALLOCATE, &[requested_transport])
            .await?;
        let m = &response.message;
        let Some(relayed) = m.xor_address(attr::XOR_RELAYED_ADDRESS) else {
            return Err(Error::Other(
                "Allocate success response without XOR-RELAYED-ADDRESS".to_string(),
            ));
        };
        let mut detail = match m.u32(attr::LIFETIME) {
            Some(lifetime) => format!("allocated relay {relayed}, lifetime {lifetime} s"),
            None => format!("allocated relay {relayed}, no lifetime given"),
        };
        if let Some(mapped) = m.xor_address(attr::XOR_MAPPED_ADDRESS) {
            detail.push_str(&format!(", mapped {mapped}"));
        }
        if self.auth.is_none() {
            detail.push_str(", WITHOUT authentication (an open relay)");
        }
        // Release the allocation; a failure here does not undo the successful check.
        self.deadline = self.deadline.max(Instant::now() + RELEASE_GRACE);
        let lifetime_zero = Attribute {
            kind: attr::LIFETIME,
            value: 0u32.to_be_bytes().to_vec(),
        };
        match self.request(method::REFRESH, &[lifetime_zero]).await {
            Ok(_) => detail.push_str("; released"),
            Err(err) => detail.push_str(&format!("; release failed: {}", err.reason())),
        }
        Ok(detail)
    }
}

/// "code reason" with a hint for the TURN errors an operator can act on.
fn explain(code: u16, reason: &str, m: &Message) -> String {
    let hint = match code {
        300 => m
            .get(attr::ALTERNATE_SERVER)
            .and_then(message::decode_plain_address)
            .map(|a| format!("redirected to {a}")),
        403 => Some("the server refuses this request or user".to_string()),
        420 => m.get(attr::UNKNOWN_ATTRIBUTES).map(|v| {
            let kinds: Vec<String> = v
                .chunks_exact(2)
                .map(|c| format!("0x{:04x}", u16::from_be_bytes([c[0], c[1]])))
                .collect();
            format!("the server does not know {}", kinds.join(", "))
        }),
        437 => Some("an allocation already exists for this client address".to_string()),
        441 => Some("the credentials do not match the allocation".to_string()),
        442 => Some("the server does not relay UDP".to_string()),
        486 => Some("too many allocations for this user".to_string()),
        508 => Some("the server has no relay capacity left".to_string()),
        _ => None,
    };
    match hint {
        Some(hint) => format!("{code} {reason} ({hint})"),
        None => format!("{code} {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;

    use super::message::{encode_error_code, encode_xor_address, long_term_key};
    use super::*;

    const RELAY: &str = "127.0.0.1:49160";

    /// A minimal in-process STUN/TURN server: Binding without authentication; Allocate
    /// and Refresh with the long-term credential mechanism.
    #[derive(Default)]
    struct Fake {
        username: String,
        password: String,
        /// Requests to drop (UDP retransmission).
        drop_first: u32,
        /// Answer the first authenticated request with 438 and a new nonce.
        stale_once: bool,
        /// Sign success responses with a wrong key.
        bad_signature: bool,
        /// What was received: "allocate", "refresh lifetime=N", ...
        log: Vec<String>,
        nonce: u32,
    }

    const REALM: &str = "fake.realm";

    fn error(m: &Message, code: u16, nonce: u32) -> Vec<u8> {
        Message::new(m.method, Class::Error, m.transaction_id)
            .with(attr::ERROR_CODE, encode_error_code(code, ""))
            .with(attr::REALM, REALM)
            .with(attr::NONCE, format!("nonce-{nonce}"))
            .encode(None, true)
            .expect("encodes")
    }

    impl Fake {
        fn answer(&mut self, raw: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
            let decoded = message::decode(raw).ok()?;
            let m = decoded.message.clone();
            if m.class != Class::Request {
                return None;
            }
            if self.drop_first > 0 {
                self.drop_first -= 1;
                self.log.push("dropped".into());
                return None;
            }
            let tid = m.transaction_id;
            if m.method == method::BINDING {
                self.log.push("binding".into());
                return Message::new(method::BINDING, Class::Success, tid)
                    .with(attr::XOR_MAPPED_ADDRESS, encode_xor_address(peer, &tid))
                    .with(attr::SOFTWARE, "fake")
                    .encode(None, true)
                    .ok();
            }
            if !decoded.has_integrity() {
                self.log.push("401 no credentials".into());
                return Some(error(&m, 401, self.nonce));
            }
            let username = m.text(attr::USERNAME).unwrap_or_default();
            let key = long_term_key(&username, REALM, &self.password);
            if username != self.username || !decoded.check_integrity(&key) {
                self.log.push("401 bad credentials".into());
                return Some(error(&m, 401, self.nonce));
            }
            if self.stale_once {
                self.stale_once = false;
                self.nonce += 1;
                self.log.push("438".into());
                return Some(error(&m, 438, self.nonce));
            }
            if m.text(attr::NONCE) != Some(format!("nonce-{}", self.nonce)) {
                self.log.push("438 wrong nonce".into());
                return Some(error(&m, 438, self.nonce));
            }
            let sign = if self.bad_signature {
                long_term_key(&username, REALM, "other")
            } else {
                key
            };
            let reply = match m.method {
                method::ALLOCATE => {
                    if m.get(attr::REQUESTED_TRANSPORT) != Some(&[17, 0, 0, 0][..]) {
                        return Some(error(&m, 400, self.nonce));
                    }
                    self.log.push("allocate".into());
                    Message::new(method::ALLOCATE, Class::Success, tid)
                        .with(
                            attr::XOR_RELAYED_ADDRESS,
                            encode_xor_address(RELAY.parse().expect("addr"), &tid),
                        )
                        .with(attr::LIFETIME, 600u32.to_be_bytes())
                        .with(attr::XOR_MAPPED_ADDRESS, encode_xor_address(peer, &tid))
                }
                method::REFRESH => {
                    let lifetime = m.u32(attr::LIFETIME).unwrap_or(600);
                    self.log.push(format!("refresh lifetime={lifetime}"));
                    Message::new(method::REFRESH, Class::Success, tid)
                        .with(attr::LIFETIME, lifetime.to_be_bytes())
                }
                _ => return Some(error(&m, 400, self.nonce)),
            };
            reply.encode(Some(&sign), true).ok()
        }
    }

    fn fake(username: &str, password: &str) -> Arc<Mutex<Fake>> {
        Arc::new(Mutex::new(Fake {
            username: username.into(),
            password: password.into(),
            ..Default::default()
        }))
    }

    fn log(fake: &Arc<Mutex<Fake>>) -> Vec<String> {
        fake.lock().expect("lock").log.clone()
    }

    /// Serves `fake` on a UDP port; junk is sent before every answer.
    async fn udp_server(fake: Arc<Mutex<Fake>>) -> u16 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = socket.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let reply = fake.lock().expect("lock").answer(&buf[..n], peer);
                if let Some(reply) = reply {
                    let _ = socket.send_to(b"junk that is not STUN", peer).await;
                    let mut other = reply.clone();
                    other[8] ^= 0xFF; // another transaction
                    let _ = socket.send_to(&other, peer).await;
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        port
    }

    /// Serves `fake` on a TCP port: each answer follows an unrelated indication, and is
    /// written in two pieces.
    async fn tcp_server(fake: Arc<Mutex<Fake>>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, peer)) = listener.accept().await {
                let fake = fake.clone();
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(Ok(len)) = message::frame_len(&pending) {
                            if pending.len() < len {
                                break;
                            }
                            let frame: Vec<u8> = pending.drain(..len).collect();
                            let reply = fake.lock().expect("lock").answer(&frame, peer);
                            if let Some(reply) = reply {
                                let mut out = Message::new(0x007, Class::Indication, [9; 12])
                                    .encode(None, false)
                                    .expect("encodes");
                                out.extend_from_slice(&reply);
                                let (a, b) = out.split_at(out.len() / 2);
                                let _ = stream.write_all(a).await;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                let _ = stream.write_all(b).await;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        port
    }

    async fn server(fake: Arc<Mutex<Fake>>, transport: Transport) -> u16 {
        match transport {
            Transport::Udp => udp_server(fake).await,
            Transport::Tcp => tcp_server(fake).await,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn detail(outcome: CheckOutcome) -> String {
        match outcome {
            CheckOutcome::Ok { detail } => detail,
            CheckOutcome::Failed { reason } => panic!("check failed: {reason}"),
        }
    }

    fn failure(outcome: CheckOutcome) -> String {
        match outcome {
            CheckOutcome::Ok { detail } => panic!("check unexpectedly passed: {detail}"),
            CheckOutcome::Failed { reason } => reason,
        }
    }

    #[tokio::test]
    async fn binding_over_udp_and_tcp() {
        for transport in [Transport::Udp, Transport::Tcp] {
            let fake = fake("u", "p");
            let port = server(fake.clone(), transport).await;
            let target = CheckTarget::new("127.0.0.1", port, transport);
            let detail = detail(super::super::stun_binding(&target, TIMEOUT).await);
            assert!(
                detail.starts_with("binding: mapped 127.0.0.1:"),
                "{transport}: {detail}"
            );
            assert!(detail.ends_with("(server \"fake\")"), "{detail}");
            assert_eq!(log(&fake), ["binding"]);
        }
    }

    #[tokio::test]
    async fn binding_through_the_resolver() {
        let fake = fake("u", "p");
        let port = udp_server(fake.clone()).await;
        // "localhost" may resolve to ::1 first, where nothing listens: the refused
        // address is skipped.
        let target = CheckTarget::new("localhost", port, Transport::Udp);
        let detail = detail(super::super::stun_binding(&target, TIMEOUT).await);
        assert!(detail.starts_with("binding: mapped 127.0.0.1:"), "{detail}");
    }

    #[tokio::test]
    async fn udp_retransmits() {
        let fake = fake("u", "p");
        fake.lock().expect("lock").drop_first = 2;
        let port = udp_server(fake.clone()).await;
        let target = CheckTarget::new("127.0.0.1", port, Transport::Udp);
        detail(super::super::stun_binding(&target, TIMEOUT).await);
        assert_eq!(log(&fake), ["dropped", "dropped", "binding"]);
    }

    #[tokio::test]
    async fn allocate_with_long_term_credentials() {
        for transport in [Transport::Udp, Transport::Tcp] {
            let fake = fake("1700000000:alice", "pw");
            let port = server(fake.clone(), transport).await;
            let target = CheckTarget::new("127.0.0.1", port, transport)
                .with_credentials("1700000000:alice", "pw");
            let detail = detail(super::super::turn_allocate(&target, TIMEOUT).await);
            assert!(
                detail.starts_with(&format!(
                    "allocated relay {RELAY}, lifetime 600 s, mapped 127.0.0.1:"
                )),
                "{transport}: {detail}"
            );
            assert!(detail.ends_with("; released"), "{detail}");
            assert_eq!(
                log(&fake),
                ["401 no credentials", "allocate", "refresh lifetime=0"]
            );
        }
    }

    #[tokio::test]
    async fn allocate_follows_a_stale_nonce() {
        let fake = fake("u", "p");
        fake.lock().expect("lock").stale_once = true;
        let port = udp_server(fake.clone()).await;
        let target = CheckTarget::new("127.0.0.1", port, Transport::Udp).with_credentials("u", "p");
        detail(super::super::turn_allocate(&target, TIMEOUT).await);
        assert_eq!(
            log(&fake),
            [
                "401 no credentials",
                "438",
                "allocate",
                "refresh lifetime=0"
            ]
        );
    }

    #[tokio::test]
    async fn allocate_refused() {
        for transport in [Transport::Udp, Transport::Tcp] {
            let fake = fake("u", "p");
            let port = server(fake.clone(), transport).await;
            let wrong =
                CheckTarget::new("127.0.0.1", port, transport).with_credentials("u", "nope");
            assert_eq!(
                failure(super::super::turn_allocate(&wrong, TIMEOUT).await),
                "401 Unauthorized (wrong password or expired credentials)"
            );
            let anonymous = CheckTarget::new("127.0.0.1", port, transport);
            assert_eq!(
                failure(super::super::turn_allocate(&anonymous, TIMEOUT).await),
                "401 Unauthorized: the server requires credentials (realm \"fake.realm\") and none were given"
            );
        }
    }

    #[tokio::test]
    async fn allocate_rejects_a_forged_success() {
        let fake = fake("u", "p");
        fake.lock().expect("lock").bad_signature = true;
        let port = udp_server(fake.clone()).await;
        let target = CheckTarget::new("127.0.0.1", port, Transport::Udp).with_credentials("u", "p");
        let reason = failure(super::super::turn_allocate(&target, TIMEOUT).await);
        assert!(reason.contains("wrong MESSAGE-INTEGRITY"), "{reason}");
    }

    #[tokio::test]
    async fn silence_times_out() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let target = CheckTarget::new("127.0.0.1", port, Transport::Udp);
        let reason = failure(super::super::stun_binding(&target, Duration::from_secs(1)).await);
        assert_eq!(
            reason,
            format!(
                "timeout after 1s (no response from 127.0.0.1:{port}/udp to 2 Binding requests)"
            )
        );
        drop(silent);
    }

    #[tokio::test]
    async fn nothing_listening() {
        let port = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.local_addr().expect("addr").port()
        };
        let target = CheckTarget::new("127.0.0.1", port, Transport::Udp);
        let reason = failure(super::super::stun_binding(&target, TIMEOUT).await);
        assert_eq!(reason, format!("connection refused (127.0.0.1:{port}/udp)"));

        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let target = CheckTarget::new("127.0.0.1", port, Transport::Tcp);
        let reason = failure(super::super::turn_allocate(&target, TIMEOUT).await);
        assert_eq!(reason, format!("connection refused (127.0.0.1:{port}/tcp)"));
    }

    #[tokio::test]
    async fn not_stun_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        let target = CheckTarget::new("127.0.0.1", port, Transport::Tcp);
        let reason = failure(super::super::stun_binding(&target, TIMEOUT).await);
        assert!(reason.contains("not STUN"), "{reason}");
    }

    #[tokio::test]
    async fn unresolvable_host() {
        let target = CheckTarget::new("", 3478, Transport::Udp);
        assert_eq!(
            failure(super::super::stun_binding(&target, TIMEOUT).await),
            "no host given"
        );
        let target = CheckTarget::new("no-such-host.invalid", 3478, Transport::Udp);
        let reason = failure(super::super::stun_binding(&target, TIMEOUT).await);
        // Without a reachable resolver the lookup may time out instead.
        assert!(
            reason.starts_with("cannot resolve no-such-host.invalid")
                || reason.starts_with("timeout after 5s resolving"),
            "{reason}"
        );
    }

    #[test]
    fn explanations() {
        let m = Message::new(method::ALLOCATE, Class::Error, [0; 12])
            .with(attr::UNKNOWN_ATTRIBUTES, vec![0x00, 0x19, 0x80, 0x2a]);
        assert_eq!(
            explain(420, "Unknown Attribute", &m),
            "420 Unknown Attribute (the server does not know 0x0019, 0x802a)"
        );
        assert_eq!(
            explain(486, "Allocation Quota Reached", &m),
            "486 Allocation Quota Reached (too many allocations for this user)"
        );
        assert_eq!(explain(599, "Odd", &m), "599 Odd");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
    }

    /// Against a real TURN server using TURN REST (coturn `use-auth-secret`):
    /// `TERN_TURN_LIVE=127.0.0.1:3478:SECRET cargo test stun -- --ignored`.
    #[tokio::test]
    #[ignore = "needs a TURN server: TERN_TURN_LIVE=host:port:secret"]
    async fn live_turn_server() {
        use crate::modules::external_services::credentials::turn_rest;
        let spec = std::env::var("TERN_TURN_LIVE").expect("TERN_TURN_LIVE=host:port:secret");
        let mut parts = spec.splitn(3, ':');
        let host = parts.next().expect("host").to_string();
        let port: u16 = parts.next().expect("port").parse().expect("port number");
        let secret = parts.next().expect("secret");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        for transport in [Transport::Udp, Transport::Tcp] {
            let base = CheckTarget::new(host.clone(), port, transport);
            let outcome = super::super::stun_binding(&base, TIMEOUT).await;
            println!("{transport} binding: {outcome}");
            assert!(outcome.is_ok());
            let (user, pass) = turn_rest(secret, now + 600, Some("live"));
            let outcome = super::super::turn_allocate(
                &base.clone().with_credentials(user.clone(), pass),
                TIMEOUT,
            )
            .await;
            println!("{transport} allocate: {outcome}");
            assert!(outcome.is_ok());
            let outcome =
                super::super::turn_allocate(&base.clone().with_credentials(user, "wrong"), TIMEOUT)
                    .await;
            println!("{transport} wrong password: {outcome}");
            assert!(!outcome.is_ok());
            let (user, pass) = turn_rest(secret, now - 60, Some("live"));
            let outcome =
                super::super::turn_allocate(&base.clone().with_credentials(user, pass), TIMEOUT)
                    .await;
            println!("{transport} expired: {outcome}");
            assert!(!outcome.is_ok());
            let outcome = super::super::turn_allocate(&base, TIMEOUT).await;
            println!("{transport} anonymous: {outcome}");
            assert!(!outcome.is_ok());
        }
    }
}
