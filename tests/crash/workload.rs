//! The clients that write while the server may die at any moment.
//!
//! What "acknowledged" means, per write:
//! - an IQ (registration, roster set/remove, private storage, vCard): its `result`;
//! - a presence (subscribe, pre-approving `subscribed`) or a message (to an offline
//!   account): these have no reply, so the client sends a ping IQ right behind it on the
//!   same stream and counts the write as acknowledged when the ping's `result` arrives
//!   with no error bounced for the write before it. That is honest because the server
//!   handles a session's stanzas one at a time, in order, and finishing a stanza
//!   includes awaiting its durable storage write (a failed write bounces an error, which
//!   is queued before the ping's result). A XEP-0198 `<a h='n'/>` answers an `<r/>`
//!   read after the same stanzas and would mean the same; the ping keeps the client
//!   simple.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern::testing::{ClientOptions, RawClient, TestClient, TlsMode};
use tern::xml::writer;

use crate::ledger::Ledger;
use crate::server::{HOST, PASSWORD};

/// Accounts made before the loop: three writers and one that is never online.
pub const WRITERS: [&str; 3] = ["w0", "w1", "w2"];
pub const OFFLINE: &str = "off";
/// Roster contacts of w0 (set and removed over and over) and private namespaces of w1.
const CONTACTS: u32 = 12;
const NAMESPACES: u32 = 8;

/// What outlives one server process.
#[derive(Default)]
pub struct Book {
    pub ledger: Ledger,
    /// Registered accounts whose registration was acknowledged, in order.
    pub registered: Vec<String>,
    /// How many of `registered` w1 subscribed to / w2 pre-approved.
    subscribed: usize,
    approved: usize,
}

/// Shared by the writers of one server run.
pub struct Run {
    pub book: Arc<Mutex<Book>>,
    /// Set just before SIGKILL: from then on a broken connection is expected.
    pub killed: AtomicBool,
    pub seq: Arc<AtomicU64>,
    pub addr: std::net::SocketAddr,
}

impl Run {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// An error of a writer: expected once the server is being killed.
    fn settle(&self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        match result {
            Err(_) if self.killed.load(Ordering::SeqCst) => Ok(()),
            other => other,
        }
    }
}

pub fn options(addr: std::net::SocketAddr, user: &str) -> ClientOptions {
    ClientOptions {
        addr,
        host: HOST.into(),
        username: user.into(),
        password: PASSWORD.into(),
        tls: TlsMode::None,
        ca_cert: None,
        mechanism: "SCRAM-SHA-1".into(),
        resource: None,
    }
}

/// Sends `xml` and waits for the IQ reply with `id`. An error reply (or an error bounced
/// for anything sent) fails: nothing in this workload should be refused.
async fn round_trip(raw: &mut RawClient, xml: &str, id: &str) -> anyhow::Result<()> {
    raw.send_raw(xml).await?;
    loop {
        let stanza = raw.read_element().await?;
        if stanza.attr("type") == Some("error") {
            bail!("the server refused a write: {}", writer::to_string(&stanza));
        }
        if stanza.name() == "iq" && stanza.attr("id") == Some(id) {
            return Ok(());
        }
    }
}

/// Sends a stanza without a reply, then a ping: see the module comment.
async fn with_ping(raw: &mut RawClient, xml: &str, seq: u64) -> anyhow::Result<()> {
    let id = format!("ping-{seq}");
    let ping = format!("<iq type='get' id='{id}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>");
    round_trip(raw, &format!("{xml}{ping}"), &id).await
}

fn token(rng: &mut StdRng) -> String {
    format!("t{:08x}", rng.gen::<u32>())
}

/// w0: roster items set and removed, messages to the offline account.
pub async fn roster_and_offline(
    run: Arc<Run>,
    mut client: TestClient,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let result = async {
        loop {
            let seq = run.next();
            if rng.gen_bool(0.6) {
                let contact = format!("c{}@{HOST}", rng.gen_range(0..CONTACTS));
                let key = format!("roster/w0/{contact}");
                let present = run.book().ledger.acked(&key).is_some();
                let (xml, value, kind) = if present && rng.gen_bool(0.4) {
                    (
                        format!("<iq type='set' id='w-{seq}'><query xmlns='jabber:iq:roster'><item jid='{contact}' subscription='remove'/></query></iq>"),
                        None,
                        "roster-remove",
                    )
                } else {
                    let name = token(&mut rng);
                    let group = format!("g{}", rng.gen_range(0..3));
                    (
                        format!("<iq type='set' id='w-{seq}'><query xmlns='jabber:iq:roster'><item jid='{contact}' name='{name}'><group>{group}</group></item></query></iq>"),
                        Some(format!("sub=none ask=false approved=false name={name} groups={group}")),
                        "roster-set",
                    )
                };
                run.book().ledger.begin(&key, value);
                round_trip(client.raw(), &xml, &format!("w-{seq}")).await?;
                let mut book = run.book();
                book.ledger.ack(&key);
                book.ledger.count(kind);
            } else {
                let body = format!("m{seq}");
                let key = format!("offline/{OFFLINE}/{body}");
                run.book().ledger.begin(&key, Some("1".into()));
                let xml = format!("<message to='{OFFLINE}@{HOST}' type='chat' id='m-{seq}'><body>{body}</body></message>");
                with_ping(client.raw(), &xml, seq).await?;
                let mut book = run.book();
                book.ledger.ack(&key);
                book.ledger.count("offline-message");
            }
        }
    }
    .await;
    run.settle(result)
}

/// w1: private XML storage, and subscription requests to newly registered accounts.
pub async fn private_and_subscribe(
    run: Arc<Run>,
    mut client: TestClient,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let result = async {
        loop {
            let seq = run.next();
            let contact = {
                let mut book = run.book();
                let next = book.registered.get(book.subscribed).cloned();
                if next.is_some() && rng.gen_bool(0.5) {
                    book.subscribed += 1;
                    next
                } else {
                    None
                }
            };
            if let Some(contact) = contact {
                let item = format!("roster/w1/{contact}@{HOST}");
                let pending = format!("pending/{contact}/w1@{HOST}");
                {
                    let mut book = run.book();
                    book.ledger.begin(&item, Some("sub=none ask=true approved=false name= groups=".into()));
                    book.ledger.begin(&pending, Some("1".into()));
                }
                let xml = format!("<presence to='{contact}@{HOST}' type='subscribe'/>");
                with_ping(client.raw(), &xml, seq).await?;
                let mut book = run.book();
                book.ledger.ack(&item);
                book.ledger.ack(&pending);
                book.ledger.count("subscribe");
            } else {
                let namespace = format!("urn:crash:{}", rng.gen_range(0..NAMESPACES));
                let key = format!("private/w1/{namespace}");
                let value = token(&mut rng);
                run.book().ledger.begin(&key, Some(value.clone()));
                let xml = format!("<iq type='set' id='w-{seq}'><query xmlns='jabber:iq:private'><v xmlns='{namespace}'>{value}</v></query></iq>");
                round_trip(client.raw(), &xml, &format!("w-{seq}")).await?;
                let mut book = run.book();
                book.ledger.ack(&key);
                book.ledger.count("private");
            }
        }
    }
    .await;
    run.settle(result)
}

/// w2: its vCard, and pre-approvals (`subscribed` before any request) of new accounts.
pub async fn vcard_and_preapprove(
    run: Arc<Run>,
    mut client: TestClient,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let result = async {
        loop {
            let seq = run.next();
            let contact = {
                let mut book = run.book();
                let next = book.registered.get(book.approved).cloned();
                if next.is_some() && rng.gen_bool(0.5) {
                    book.approved += 1;
                    next
                } else {
                    None
                }
            };
            if let Some(contact) = contact {
                let key = format!("roster/w2/{contact}@{HOST}");
                run.book().ledger.begin(&key, Some("sub=none ask=false approved=true name= groups=".into()));
                let xml = format!("<presence to='{contact}@{HOST}' type='subscribed'/>");
                with_ping(client.raw(), &xml, seq).await?;
                let mut book = run.book();
                book.ledger.ack(&key);
                book.ledger.count("pre-approve");
            } else {
                let name = token(&mut rng);
                run.book().ledger.begin("vcard/w2", Some(name.clone()));
                let xml = format!("<iq type='set' id='w-{seq}'><vCard xmlns='vcard-temp'><FN>{name}</FN></vCard></iq>");
                round_trip(client.raw(), &xml, &format!("w-{seq}")).await?;
                let mut book = run.book();
                book.ledger.ack("vcard/w2");
                book.ledger.count("vcard");
            }
        }
    }
    .await;
    run.settle(result)
}

/// In-band registration (XEP-0077) of new accounts, one connection each.
pub async fn register(run: Arc<Run>) -> anyhow::Result<()> {
    let result = async {
        loop {
            let seq = run.next();
            let user = format!("r{seq}");
            let key = format!("account/{user}");
            let mut raw = RawClient::connect(run.addr).await?;
            raw.open_stream(HOST).await?;
            run.book().ledger.begin(&key, Some("ok".into()));
            let xml = format!("<iq type='set' id='reg-{seq}'><query xmlns='jabber:iq:register'><username>{user}</username><password>{PASSWORD}</password></query></iq>");
            round_trip(&mut raw, &xml, &format!("reg-{seq}")).await?;
            let mut book = run.book();
            book.ledger.ack(&key);
            book.ledger.count("register");
            book.registered.push(user);
        }
    }
    .await;
    run.settle(result)
}

/// Logs the writers in and runs every writer until the server dies; returns their errors
/// (none expected).
pub async fn start_writers(
    run: &Arc<Run>,
    seed: u64,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let mut clients = Vec::new();
    for user in WRITERS {
        let client = TestClient::connect(options(run.addr, user))
            .await
            .with_context(|| format!("logging {user} in after a restart"))?;
        clients.push(client);
    }
    let mut clients = clients.into_iter();
    let mut next = || clients.next().ok_or_else(|| anyhow!("missing client"));
    Ok(vec![
        tokio::spawn(roster_and_offline(run.clone(), next()?, seed)),
        tokio::spawn(private_and_subscribe(run.clone(), next()?, seed ^ 1)),
        tokio::spawn(vcard_and_preapprove(run.clone(), next()?, seed ^ 2)),
        tokio::spawn(register(run.clone())),
    ])
}
