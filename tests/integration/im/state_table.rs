//! RFC 6121 Appendix A, row by row, between two local accounts.
//!
//! `a` always sends the stanza under test and `b` receives it. A row names a's state, so
//! it is a row of A.2 ("user's server", outbound); b's state is the mirror image (to <->
//! from, pending out <-> pending in), so the same stanza also exercises the A.3 row
//! ("contact's server", inbound) for b's state. Every A.2 row that routes its stanza
//! thus covers one A.3 row. The nine A.3 rows that agreeing rosters never reach (the
//! sender's server does not route the stanza there) are covered by
//! [`a3_rows_reached_only_when_the_rosters_disagree`], which hands the stanza to b's
//! server directly, as a remote server would; [`a3_every_row_inbound_alone`] does the
//! same for all 36 A.3 rows.
//!
//! Each row runs on a fresh server twice: with b online (available, roster requested)
//! and with b offline (b logs in afterwards). Starting states are reached by driving the
//! protocol. Checked for each run:
//! - both sides' stored state (subscription, ask, approved, pending inbound request) and
//!   the roster as the clients get it;
//! - whether the stanza reached b (online), or what b gets at its next login (offline:
//!   a pending `subscribe` is re-sent after initial presence; nothing else is kept);
//! - the roster pushes to each side, in order;
//! - the presence side effects: an approval sends the approver's presence, a
//!   cancellation sends `unavailable` first (§3.2.2), an unsubscribe makes the contact
//!   send `unavailable` (§3.3.3), an auto-reply (§3.1.3, §3.4) sends `subscribed` and the
//!   contact's presence; afterwards a presence broadcast reaches a subscriber and only a
//!   subscriber (online), or the login's probe and initial presence do (offline).
//!
//! A run's failures are collected and reported together with the row names.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tern::host::Host;
use tern::modules::roster::Roster;
use tern::sasl::StoredCredentials;
use tern::testing::{RawClient, TestClient, TestServer};
use tern::xml::{ns, Element};

use super::roster::IM;

// ---- states and the RFC's tables ----

/// One side's view of the relationship (RFC 6121 §3 / Appendix A).
#[derive(Clone, Copy, PartialEq, Eq)]
struct State {
    /// The user sees the contact's presence.
    to: bool,
    /// The contact sees the user's presence.
    from: bool,
    /// Pending out: the user asked (`ask='subscribe'`).
    out: bool,
    /// Pending in: the contact asked and the user has not answered.
    inn: bool,
}

const fn st(to: bool, from: bool, out: bool, inn: bool) -> State {
    State { to, from, out, inn }
}

const NONE: State = st(false, false, false, false);
const NONE_PO: State = st(false, false, true, false);
const NONE_PI: State = st(false, false, false, true);
const NONE_POPI: State = st(false, false, true, true);
const TO: State = st(true, false, false, false);
const TO_PI: State = st(true, false, false, true);
const FROM: State = st(false, true, false, false);
const FROM_PO: State = st(false, true, true, false);
const BOTH: State = st(true, true, false, false);

/// The nine states of Appendix A, in the RFC's order.
const STATES: [State; 9] = [
    NONE, NONE_PO, NONE_PI, NONE_POPI, TO, TO_PI, FROM, FROM_PO, BOTH,
];

impl State {
    /// The same relationship seen from the other side.
    fn mirror(self) -> State {
        State {
            to: self.from,
            from: self.to,
            out: self.inn,
            inn: self.out,
        }
    }

    fn subscription(self) -> &'static str {
        match (self.to, self.from) {
            (false, false) => "none",
            (true, false) => "to",
            (false, true) => "from",
            (true, true) => "both",
        }
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = match (self.to, self.from) {
            (false, false) => "None",
            (true, false) => "To",
            (false, true) => "From",
            (true, true) => "Both",
        };
        let pending = match (self.out, self.inn) {
            (true, true) => " + Pending Out+In",
            (true, false) => " + Pending Out",
            (false, true) => " + Pending In",
            (false, false) => "",
        };
        write!(f, "\"{base}{pending}\"")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Subscribe => "subscribe",
            Kind::Subscribed => "subscribed",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Unsubscribed => "unsubscribed",
        }
    }
}

use Kind::{Subscribe, Subscribed, Unsubscribe, Unsubscribed};

/// RFC 6121 A.2 (the sender's server): existing state, stanza -> route?, new state.
#[rustfmt::skip]
const OUTBOUND: [(State, Kind, bool, State); 36] = [
    // A.2.1 subscribe
    (NONE,      Subscribe, true, NONE_PO),
    (NONE_PO,   Subscribe, true, NONE_PO),
    (NONE_PI,   Subscribe, true, NONE_POPI),
    (NONE_POPI, Subscribe, true, NONE_POPI),
    (TO,        Subscribe, true, TO),
    (TO_PI,     Subscribe, true, TO_PI),
    (FROM,      Subscribe, true, FROM_PO),
    (FROM_PO,   Subscribe, true, FROM_PO),
    (BOTH,      Subscribe, true, BOTH),
    // A.2.2 unsubscribe
    (NONE,      Unsubscribe, true, NONE),
    (NONE_PO,   Unsubscribe, true, NONE),
    (NONE_PI,   Unsubscribe, true, NONE_PI),
    (NONE_POPI, Unsubscribe, true, NONE_PI),
    (TO,        Unsubscribe, true, NONE),
    (TO_PI,     Unsubscribe, true, NONE_PI),
    (FROM,      Unsubscribe, true, FROM),
    (FROM_PO,   Unsubscribe, true, FROM),
    (BOTH,      Unsubscribe, true, FROM),
    // A.2.3 subscribed (the unrouted rows in None, None + Pending Out and To record a
    // pre-approval instead, §3.4)
    (NONE,      Subscribed, false, NONE),
    (NONE_PO,   Subscribed, false, NONE_PO),
    (NONE_PI,   Subscribed, true,  FROM),
    (NONE_POPI, Subscribed, true,  FROM_PO),
    (TO,        Subscribed, false, TO),
    (TO_PI,     Subscribed, true,  BOTH),
    (FROM,      Subscribed, false, FROM),
    (FROM_PO,   Subscribed, false, FROM_PO),
    (BOTH,      Subscribed, false, BOTH),
    // A.2.4 unsubscribed
    (NONE,      Unsubscribed, false, NONE),
    (NONE_PO,   Unsubscribed, false, NONE_PO),
    (NONE_PI,   Unsubscribed, true,  NONE),
    (NONE_POPI, Unsubscribed, true,  NONE_PO),
    (TO,        Unsubscribed, false, TO),
    (TO_PI,     Unsubscribed, true,  TO),
    (FROM,      Unsubscribed, true,  NONE),
    (FROM_PO,   Unsubscribed, true,  NONE_PO),
    (BOTH,      Unsubscribed, true,  TO),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Deliver {
    Yes,
    No,
    /// Not delivered; the server SHOULD answer `subscribed` itself (A.3.1 "no *").
    AutoReply,
}

use Deliver::{AutoReply, No, Yes};

/// RFC 6121 A.3 (the recipient's server): existing state, stanza -> deliver?, new state.
#[rustfmt::skip]
const INBOUND: [(State, Kind, Deliver, State); 36] = [
    // A.3.1 subscribe
    (NONE,      Subscribe, Yes,       NONE_PI),
    (NONE_PO,   Subscribe, Yes,       NONE_POPI),
    (NONE_PI,   Subscribe, No,        NONE_PI),
    (NONE_POPI, Subscribe, No,        NONE_POPI),
    (TO,        Subscribe, Yes,       TO_PI),
    (TO_PI,     Subscribe, No,        TO_PI),
    (FROM,      Subscribe, AutoReply, FROM),
    (FROM_PO,   Subscribe, AutoReply, FROM_PO),
    (BOTH,      Subscribe, AutoReply, BOTH),
    // A.3.2 unsubscribe
    (NONE,      Unsubscribe, No,  NONE),
    (NONE_PO,   Unsubscribe, No,  NONE_PO),
    (NONE_PI,   Unsubscribe, Yes, NONE),
    (NONE_POPI, Unsubscribe, Yes, NONE_PO),
    (TO,        Unsubscribe, No,  TO),
    (TO_PI,     Unsubscribe, Yes, TO),
    (FROM,      Unsubscribe, Yes, NONE),
    (FROM_PO,   Unsubscribe, Yes, NONE_PO),
    (BOTH,      Unsubscribe, Yes, TO),
    // A.3.3 subscribed
    (NONE,      Subscribed, No,  NONE),
    (NONE_PO,   Subscribed, Yes, TO),
    (NONE_PI,   Subscribed, No,  NONE_PI),
    (NONE_POPI, Subscribed, Yes, TO_PI),
    (TO,        Subscribed, No,  TO),
    (TO_PI,     Subscribed, No,  TO_PI),
    (FROM,      Subscribed, No,  FROM),
    (FROM_PO,   Subscribed, Yes, BOTH),
    (BOTH,      Subscribed, No,  BOTH),
    // A.3.4 unsubscribed
    (NONE,      Unsubscribed, No,  NONE),
    (NONE_PO,   Unsubscribed, Yes, NONE),
    (NONE_PI,   Unsubscribed, No,  NONE_PI),
    (NONE_POPI, Unsubscribed, Yes, NONE_PI),
    (TO,        Unsubscribed, Yes, NONE),
    (TO_PI,     Unsubscribed, Yes, NONE_PI),
    (FROM,      Unsubscribed, No,  FROM),
    (FROM_PO,   Unsubscribed, Yes, FROM),
    (BOTH,      Unsubscribed, Yes, FROM),
];

fn outbound(state: State, kind: Kind) -> (bool, State) {
    OUTBOUND
        .iter()
        .find(|row| row.0 == state && row.1 == kind)
        .map(|row| (row.2, row.3))
        .expect("A.2 has every row")
}

fn inbound(state: State, kind: Kind) -> (Deliver, State) {
    INBOUND
        .iter()
        .find(|row| row.0 == state && row.1 == kind)
        .map(|row| (row.2, row.3))
        .expect("A.3 has every row")
}

/// How to reach a state from nothing, from a's side: who sends what, in order.
fn steps(state: State) -> &'static [(Who, Kind)] {
    use Who::{A, B};
    const TABLE: [(State, &[(Who, Kind)]); 9] = [
        (NONE, &[]),
        (NONE_PO, &[(A, Subscribe)]),
        (NONE_PI, &[(B, Subscribe)]),
        (NONE_POPI, &[(A, Subscribe), (B, Subscribe)]),
        (TO, &[(A, Subscribe), (B, Subscribed)]),
        (TO_PI, &[(A, Subscribe), (B, Subscribed), (B, Subscribe)]),
        (FROM, &[(B, Subscribe), (A, Subscribed)]),
        (FROM_PO, &[(B, Subscribe), (A, Subscribed), (A, Subscribe)]),
        (
            BOTH,
            &[
                (A, Subscribe),
                (B, Subscribed),
                (B, Subscribe),
                (A, Subscribed),
            ],
        ),
    ];
    TABLE
        .iter()
        .find(|(s, _)| *s == state)
        .map(|(_, steps)| *steps)
        .expect("every state has a recipe")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    A,
    B,
}

/// One side's full server state: the RFC state plus the pre-approval flag (§3.4).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Side {
    state: State,
    approved: bool,
}

impl Side {
    /// What a roster get or push shows of it (pending in is not in the roster).
    fn visible(self) -> String {
        let mut text = format!("subscription='{}'", self.state.subscription());
        if self.state.out {
            text.push_str(" ask='subscribe'");
        }
        if self.approved {
            text.push_str(" approved='true'");
        }
        text
    }
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.state)?;
        if self.approved {
            write!(f, " + pre-approved")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Row {
    /// a's state; b's is its mirror.
    state: State,
    kind: Kind,
    /// a has pre-approved b (only in None, None + Pending Out, To).
    a_approved: bool,
    /// b has pre-approved a (only where b is in None, None + Pending Out, To).
    b_approved: bool,
}

impl Row {
    fn plain(state: State, kind: Kind) -> Row {
        Row {
            state,
            kind,
            a_approved: false,
            b_approved: false,
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a in {:?} sends {} (b in {:?})",
            self.state,
            self.kind.name(),
            self.state.mirror()
        )?;
        if self.a_approved {
            write!(f, ", a pre-approved b")?;
        }
        if self.b_approved {
            write!(f, ", b pre-approved a")?;
        }
        Ok(())
    }
}

/// What RFC 6121 says happens for a row.
struct Expected {
    a0: Side,
    b0: Side,
    routed: bool,
    /// b's server delivered the stanza (to b's available resources).
    delivered: bool,
    /// b's server answered `subscribed` itself (§3.1.3 / §3.4); whether that reached a.
    reply: Option<bool>,
    a: Side,
    b: Side,
    /// The roster pushes each side gets, in order.
    a_pushes: Vec<String>,
    b_pushes: Vec<String>,
}

fn expected(row: Row) -> Expected {
    let a0 = Side {
        state: row.state,
        approved: row.a_approved,
    };
    let b0 = Side {
        state: row.state.mirror(),
        approved: row.b_approved,
    };
    let (routed, state) = outbound(a0.state, row.kind);
    let mut a1 = Side { state, ..a0 };
    match row.kind {
        // §3.4.2: an unrouted approval, not already granted, is a pre-approval.
        Subscribed if !routed && !a0.state.from => a1.approved = true,
        // §3.2.2: unsubscribed cancels a pre-approval.
        Unsubscribed => a1.approved = false,
        _ => {}
    }
    let mut a_pushes = Vec::new();
    if a1.visible() != a0.visible() {
        a_pushes.push(a1.visible());
    }
    let mut b1 = b0;
    let mut delivered = false;
    let mut answered = false;
    if routed {
        if row.kind == Subscribe && b0.approved && !b0.state.from {
            // §3.1.3, §3.4: pre-approved, b's server approves on b's behalf.
            b1 = Side {
                state: State {
                    from: true,
                    ..b0.state
                },
                approved: false,
            };
            answered = true;
        } else {
            let (deliver, state) = inbound(b0.state, row.kind);
            b1.state = state;
            delivered = deliver == Yes;
            answered = deliver == AutoReply;
        }
    }
    let mut b_pushes = Vec::new();
    if b1.visible() != b0.visible() {
        b_pushes.push(b1.visible());
    }
    let mut a2 = a1;
    let mut reply = None;
    if answered {
        let (deliver, state) = inbound(a1.state, Subscribed);
        a2.state = state;
        reply = Some(deliver == Yes);
        if a2.visible() != a1.visible() {
            a_pushes.push(a2.visible());
        }
    }
    Expected {
        a0,
        b0,
        routed,
        delivered,
        reply,
        a: a2,
        b: b1,
        a_pushes,
        b_pushes,
    }
}

// ---- client helpers ----

const A: &str = "a@localhost";
const B: &str = "b@localhost";

async fn send_sub(client: &mut TestClient, to: &str, kind: Kind) -> anyhow::Result<()> {
    client
        .send_str(&format!("<presence to='{to}' type='{}'/>", kind.name()))
        .await
}

/// Everything the server sent `client` until now: a ping round trip, and a session's
/// stanzas are handled in order, so all effects of what it sent before are in.
async fn drain(client: &mut TestClient) -> anyhow::Result<Vec<Element>> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = format!("drain-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    client
        .send_str(&format!(
            "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    let mut got = Vec::new();
    loop {
        let stanza = client.expect().await?;
        if stanza.name() == "iq" && stanza.attr("id") == Some(id.as_str()) {
            return Ok(got);
        }
        got.push(stanza);
    }
}

fn describe_item(item: Option<&Element>) -> String {
    let Some(item) = item else {
        // Not in the roster is the "None" state.
        return "subscription='none'".to_string();
    };
    let mut text = format!(
        "subscription='{}'",
        item.attr("subscription").unwrap_or("none")
    );
    if let Some(ask) = item.attr("ask") {
        text.push_str(&format!(" ask='{ask}'"));
    }
    if let Some(approved) = item.attr("approved") {
        text.push_str(&format!(" approved='{approved}'"));
    }
    text
}

/// The roster item for `contact` as a roster get shows it.
async fn roster_item(client: &mut TestClient, contact: &str) -> anyhow::Result<String> {
    let reply = client
        .iq_str("<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    if reply.attr("type") != Some("result") {
        bail!(
            "roster get failed: {}",
            tern::xml::writer::to_string(&reply)
        );
    }
    let query = reply
        .get_child("query", "jabber:iq:roster")
        .context("roster result without a query")?;
    Ok(describe_item(
        query.children().find(|i| i.attr("jid") == Some(contact)),
    ))
}

/// What `own` (a bare JID) received, sorted into roster pushes (about `contact`),
/// presence (described as `type[/show] from jid`, a full JID as `bare/*`; own presence
/// reflected back is left out) and anything else.
struct Received {
    pushes: Vec<String>,
    presence: Vec<String>,
    other: Vec<String>,
}

fn sort_out(stanzas: &[Element], own: &str, contact: &str) -> Received {
    let mut received = Received {
        pushes: Vec::new(),
        presence: Vec::new(),
        other: Vec::new(),
    };
    for stanza in stanzas {
        let query = stanza.get_child("query", "jabber:iq:roster");
        match (stanza.name(), stanza.attr("type"), query) {
            ("iq", Some("set"), Some(query)) => {
                let item = query.children().next();
                if item.and_then(|i| i.attr("jid")) == Some(contact) {
                    received.pushes.push(describe_item(item));
                } else {
                    received.other.push(tern::xml::writer::to_string(stanza));
                }
            }
            ("presence", kind, _) => {
                let from = stanza.attr("from").unwrap_or("");
                let bare = from.split('/').next().unwrap_or("");
                if bare == own {
                    continue;
                }
                let from = if from.contains('/') {
                    format!("{bare}/*")
                } else {
                    from.to_string()
                };
                let show = stanza
                    .get_child("show", ns::CLIENT)
                    .map(|s| format!("/{}", s.text()))
                    .unwrap_or_default();
                received
                    .presence
                    .push(format!("{}{show} from {from}", kind.unwrap_or("available")));
            }
            _ => received.other.push(tern::xml::writer::to_string(stanza)),
        }
    }
    received
}

fn presence_of(kind: &str, from: &str) -> String {
    format!("{kind} from {from}")
}

/// The stored state of `user`'s relationship with `contact`, pending request included.
fn stored(host: &Host, user: &str, contact: &str) -> anyhow::Result<Side> {
    let roster = Roster::load(host, user).map_err(|e| anyhow!("loading the roster: {e}"))?;
    let item = roster.items.get(contact);
    let subscription = item.map(|i| i.subscription).unwrap_or_default();
    Ok(Side {
        state: State {
            to: subscription.to(),
            from: subscription.from(),
            out: item.is_some_and(|i| i.ask),
            inn: roster.pending_in.contains_key(contact),
        },
        approved: item.is_some_and(|i| i.approved),
    })
}

fn same<T: PartialEq + fmt::Debug>(what: &str, got: T, want: T) -> anyhow::Result<()> {
    if got != want {
        bail!("{what}: got {got:?}, want {want:?}");
    }
    Ok(())
}

async fn wait_offline(host: &Host, user: &str) -> anyhow::Result<()> {
    for _ in 0..1000 {
        if host.sessions_of(user).is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{user}'s session did not end")
}

/// A server with accounts `a` and `b` (password `pw`). The credentials are derived once
/// for the whole binary: deriving them is most of what starting a server costs.
async fn start() -> anyhow::Result<(TestServer, Arc<Host>)> {
    static CREDENTIALS: OnceLock<StoredCredentials> = OnceLock::new();
    let server = TestServer::builder().config_toml(IM).start().await?;
    let credentials = CREDENTIALS
        .get_or_init(|| StoredCredentials::derive("pw", 4096).expect("deriving credentials"));
    for user in ["a", "b"] {
        server
            .server()
            .storage()
            .create_account("localhost", user, credentials)
            .await
            .map_err(|e| anyhow!("creating {user}: {e}"))?;
    }
    let host = server.host("localhost").context("no host")?;
    Ok((server, host))
}

/// Brings a and b to `row`'s starting state by sending what clients send, from two
/// sessions that are not available (so nothing is delivered to them).
async fn set_up(
    host: &Host,
    a: &mut TestClient,
    b: &mut TestClient,
    row: Row,
    exp: &Expected,
) -> anyhow::Result<()> {
    for &(who, kind) in steps(row.state) {
        match who {
            Who::A => {
                send_sub(a, B, kind).await?;
                a.sync().await?;
            }
            Who::B => {
                send_sub(b, A, kind).await?;
                b.sync().await?;
            }
        }
    }
    if row.a_approved {
        send_sub(a, B, Subscribed).await?;
        a.sync().await?;
    }
    if row.b_approved {
        send_sub(b, A, Subscribed).await?;
        b.sync().await?;
    }
    same("a's starting state", stored(host, "a", B)?, exp.a0)?;
    same("b's starting state", stored(host, "b", A)?, exp.b0)?;
    Ok(())
}

/// Makes `client` interested in roster pushes and available; checks that a pending
/// request from `contact` is re-sent after initial presence (§3.1.3), exactly once.
async fn come_online(
    client: &mut TestClient,
    own: &str,
    contact: &str,
    side: Side,
) -> anyhow::Result<Vec<String>> {
    same(
        &format!("{own}'s roster at login"),
        roster_item(client, contact).await?,
        side.visible(),
    )?;
    client.send_str("<presence/>").await?;
    let got = sort_out(&drain(client).await?, own, contact);
    let requests = got
        .presence
        .iter()
        .filter(|p| **p == presence_of("subscribe", contact))
        .count();
    same(
        &format!("pending requests re-sent to {own} after initial presence"),
        requests,
        usize::from(side.state.inn),
    )?;
    Ok(got.presence)
}

// ---- a row, end to end ----

async fn run(row: Row, online: bool) -> anyhow::Result<()> {
    let exp = expected(row);
    let (server, host) = start().await?;
    let mut a = server.client("a").await?;
    let mut b = server.client("b").await?;
    set_up(&host, &mut a, &mut b, row, &exp).await?;

    let mut b = if online {
        Some(b)
    } else {
        b.close().await?;
        wait_offline(&host, "b").await?;
        None
    };
    come_online(&mut a, A, B, exp.a0).await?;
    if let Some(b) = b.as_mut() {
        come_online(b, B, A, exp.b0).await?;
        drain(&mut a).await?;
    }

    // The stanza under test.
    send_sub(&mut a, B, row.kind).await?;
    let a_got = sort_out(&drain(&mut a).await?, A, B);
    let b_got = match b.as_mut() {
        Some(b) => sort_out(&drain(b).await?, B, A),
        None => sort_out(&[], B, A),
    };

    // What a got: pushes, the auto-reply, the contact's unavailable.
    same("roster pushes to a", a_got.pushes, exp.a_pushes.clone())?;
    let mut want = Vec::new();
    if exp.reply == Some(true) {
        want.push(presence_of("subscribed", B));
    }
    if exp.reply.is_some() {
        // Tern sends the contact's current presence with its auto-reply.
        want.push(if online {
            presence_of("available", "b@localhost/*")
        } else {
            presence_of("unavailable", B)
        });
    }
    if row.kind == Unsubscribe && exp.b0.state.from && !exp.b.state.from && online {
        // §3.3.3: the contact's server sends unavailable from the contact's resources.
        want.push(presence_of("unavailable", "b@localhost/*"));
    }
    same("presence to a", a_got.presence, want)?;
    same("other stanzas to a", a_got.other, vec![])?;

    // What b got, in order.
    if online {
        same("roster pushes to b", b_got.pushes, exp.b_pushes.clone())?;
        let mut want = Vec::new();
        if row.kind == Unsubscribed && exp.routed && exp.a0.state.from {
            // §3.2.2: unavailable first, while b is still a subscriber.
            want.push(presence_of("unavailable", "a@localhost/*"));
        }
        if exp.delivered {
            want.push(presence_of(row.kind.name(), A));
        }
        if row.kind == Subscribed && exp.routed {
            // §3.1.5: the approver's current presence follows the approval.
            want.push(presence_of("available", "a@localhost/*"));
        }
        same("presence to b", b_got.presence, want)?;
        same("other stanzas to b", b_got.other, vec![])?;
    }

    // The new state, stored and as the rosters show it.
    same("a's new state", stored(&host, "a", B)?, exp.a)?;
    same("b's new state", stored(&host, "b", A)?, exp.b)?;
    same("a's roster", roster_item(&mut a, B).await?, exp.a.visible())?;

    if let Some(b) = b.as_mut() {
        same("b's roster", roster_item(b, A).await?, exp.b.visible())?;
        // Broadcasts reach subscribers only.
        a.send_str("<presence><show>away</show></presence>").await?;
        drain(&mut a).await?;
        let b_saw = sort_out(&drain(b).await?, B, A);
        let want: Vec<String> = if exp.a.state.from {
            vec![presence_of("available/away", "a@localhost/*")]
        } else {
            vec![]
        };
        same("b sees a's broadcast", b_saw.presence, want)?;
        b.send_str("<presence><show>xa</show></presence>").await?;
        drain(b).await?;
        let a_saw = sort_out(&drain(&mut a).await?, A, B);
        let want: Vec<String> = if exp.a.state.to {
            vec![presence_of("available/xa", "b@localhost/*")]
        } else {
            vec![]
        };
        same("a sees b's broadcast", a_saw.presence, want)?;
    } else {
        // b logs in: a pending request is re-sent after initial presence, nothing else
        // that happened meanwhile is; the probe brings a's presence to a subscriber.
        let mut b = server.client("b").await?;
        let mut seen = come_online(&mut b, B, A, exp.b).await?;
        seen.sort();
        let mut want = Vec::new();
        if exp.b.state.inn {
            want.push(presence_of("subscribe", A));
        }
        if exp.b.state.to {
            want.push(presence_of("available", "a@localhost/*"));
        }
        want.sort();
        same("what b gets at login", seen, want)?;
        let a_saw = sort_out(&drain(&mut a).await?, A, B);
        let want: Vec<String> = if exp.a.state.to {
            vec![presence_of("available", "b@localhost/*")]
        } else {
            vec![]
        };
        same("a sees b log in", a_saw.presence, want)?;
        same("roster pushes to a when b logs in", a_saw.pushes, vec![])?;
    }
    Ok(())
}

/// Runs every row with b online and offline; reports all failures at once.
async fn run_all(rows: &[Row]) {
    let mut failures = Vec::new();
    for &row in rows {
        for online in [true, false] {
            if let Err(err) = run(row, online).await {
                let where_ = if online { "b online" } else { "b offline" };
                failures.push(format!("{row} [{where_}]: {err:#}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        rows.len() * 2,
        failures.join("\n")
    );
}

fn rows_for(kind: Kind) -> Vec<Row> {
    STATES.iter().map(|&s| Row::plain(s, kind)).collect()
}

#[tokio::test]
async fn a2_subscribe_from_every_state() {
    run_all(&rows_for(Subscribe)).await;
}

#[tokio::test]
async fn a2_unsubscribe_from_every_state() {
    run_all(&rows_for(Unsubscribe)).await;
}

#[tokio::test]
async fn a2_subscribed_from_every_state() {
    run_all(&rows_for(Subscribed)).await;
}

#[tokio::test]
async fn a2_unsubscribed_from_every_state() {
    run_all(&rows_for(Unsubscribed)).await;
}

/// §3.4: the states a pre-approval can exist in, on either side.
#[tokio::test]
async fn pre_approval_rows() {
    let mut rows = Vec::new();
    // a pre-approved b: each stanza from a (subscribed again changes nothing,
    // unsubscribed cancels the pre-approval, the others leave it alone).
    for state in [NONE, NONE_PO, TO] {
        for kind in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
            rows.push(Row {
                a_approved: true,
                ..Row::plain(state, kind)
            });
        }
    }
    // b pre-approved a: a's subscribe is approved by b's server at once.
    for state in [NONE, NONE_PI, FROM] {
        rows.push(Row {
            b_approved: true,
            ..Row::plain(state, Subscribe)
        });
    }
    run_all(&rows).await;
}

// ---- A.3 alone: the stanza arrives at b's server as from a remote server ----

/// b in `b_state` (set up by protocol with a), then `kind` from a handed straight to b's
/// server: a's server is not consulted, as when the two servers' rosters disagree.
async fn run_inbound(b_state: State, kind: Kind, online: bool) -> anyhow::Result<()> {
    let row = Row::plain(b_state.mirror(), kind);
    let exp = expected(row);
    let (server, host) = start().await?;
    let mut a = server.client("a").await?;
    let mut b = server.client("b").await?;
    set_up(&host, &mut a, &mut b, row, &exp).await?;
    let mut b = if online {
        Some(b)
    } else {
        b.close().await?;
        wait_offline(&host, "b").await?;
        None
    };
    come_online(&mut a, A, B, exp.a0).await?;
    if let Some(b) = b.as_mut() {
        come_online(b, B, A, exp.b0).await?;
        drain(&mut a).await?;
    }

    let (deliver, b_new) = inbound(b_state, kind);
    let stanza: Element = format!(
        "<presence xmlns='jabber:client' from='{A}' to='{B}' type='{}'/>",
        kind.name()
    )
    .parse()
    .map_err(|e| anyhow!("{e}"))?;
    host.send(stanza).await;

    let a_got = sort_out(&drain(&mut a).await?, A, B);
    let mut a_new = exp.a0;
    let mut a_pushes = Vec::new();
    let mut want = Vec::new();
    if deliver == AutoReply {
        let (delivered, state) = inbound(a_new.state, Subscribed);
        if delivered == Yes {
            want.push(presence_of("subscribed", B));
        }
        let before = a_new;
        a_new.state = state;
        if a_new.visible() != before.visible() {
            a_pushes.push(a_new.visible());
        }
        want.push(if online {
            presence_of("available", "b@localhost/*")
        } else {
            presence_of("unavailable", B)
        });
    }
    if kind == Unsubscribe && b_state.from && !b_new.from && online {
        want.push(presence_of("unavailable", "b@localhost/*"));
    }
    same("roster pushes to a", a_got.pushes, a_pushes)?;
    same("presence to a", a_got.presence, want)?;
    same("other stanzas to a", a_got.other, vec![])?;

    let b_new = Side {
        state: b_new,
        approved: false,
    };
    if let Some(b) = b.as_mut() {
        let b_got = sort_out(&drain(b).await?, B, A);
        let pushes = if b_new.visible() != exp.b0.visible() {
            vec![b_new.visible()]
        } else {
            vec![]
        };
        same("roster pushes to b", b_got.pushes, pushes)?;
        let want = if deliver == Yes {
            vec![presence_of(kind.name(), A)]
        } else {
            vec![]
        };
        same("presence to b", b_got.presence, want)?;
        same("other stanzas to b", b_got.other, vec![])?;
        same("b's roster", roster_item(b, A).await?, b_new.visible())?;
    } else {
        let mut b = server.client("b").await?;
        let mut seen = come_online(&mut b, B, A, b_new).await?;
        seen.retain(|p| !p.starts_with("available ") && !p.starts_with("unavailable "));
        let want = if b_new.state.inn {
            vec![presence_of("subscribe", A)]
        } else {
            vec![]
        };
        same("subscription stanzas b gets at login", seen, want)?;
    }
    same("b's new state", stored(&host, "b", A)?, b_new)?;
    same("a's state (not consulted)", stored(&host, "a", B)?, a_new)?;
    Ok(())
}

async fn run_inbound_all(rows: &[(State, Kind)]) {
    let mut failures = Vec::new();
    for &(state, kind) in rows {
        for online in [true, false] {
            if let Err(err) = run_inbound(state, kind, online).await {
                let where_ = if online { "b online" } else { "b offline" };
                failures.push(format!(
                    "{} arrives for b in {state:?} [{where_}]: {err:#}",
                    kind.name()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        rows.len() * 2,
        failures.join("\n")
    );
}

/// The A.3 rows no A.2 row routes to: they happen only when the servers disagree
/// (a lost stanza, a restored backup). All "not delivered, no state change".
#[tokio::test]
async fn a3_rows_reached_only_when_the_rosters_disagree() {
    let unreached: Vec<(State, Kind)> = INBOUND
        .iter()
        .filter(|(b_state, kind, _, _)| !outbound(b_state.mirror(), *kind).0)
        .map(|row| (row.0, row.1))
        .collect();
    assert_eq!(unreached.len(), 9);
    assert!(INBOUND
        .iter()
        .filter(|row| unreached.contains(&(row.0, row.1)))
        .all(|row| row.2 == No && row.3 == row.0));
    run_inbound_all(&unreached).await;
}

/// Every A.3 row on its own, the sender's server left out.
#[tokio::test]
async fn a3_every_row_inbound_alone() {
    let rows: Vec<(State, Kind)> = INBOUND.iter().map(|row| (row.0, row.1)).collect();
    run_inbound_all(&rows).await;
}

/// The two tables transcribed above agree with each other: when the sender's server
/// routes a stanza, the recipient's new state is the mirror of the sender's (before any
/// auto-reply). A typo in either table would show here.
#[test]
fn the_tables_mirror_each_other() {
    for (state, kind, route, new) in OUTBOUND {
        if !route {
            continue;
        }
        let (deliver, theirs) = inbound(state.mirror(), kind);
        if deliver == AutoReply {
            assert_eq!(theirs, state.mirror());
            assert_eq!(inbound(new, Subscribed).1, new, "{state:?} {kind:?}");
        } else {
            assert_eq!(theirs, new.mirror(), "{state:?} {kind:?}");
        }
    }
}

/// §3.4: a server that supports pre-approval MUST advertise it.
#[tokio::test]
async fn pre_approval_is_advertised() -> anyhow::Result<()> {
    let (server, _host) = start().await?;
    let mut raw: RawClient = server.raw().await?;
    let features = raw.login("localhost", "a", "pw").await?;
    assert!(
        features.has_child("sub", "urn:xmpp:features:pre-approval"),
        "{}",
        tern::xml::writer::to_string(&features)
    );
    Ok(())
}
