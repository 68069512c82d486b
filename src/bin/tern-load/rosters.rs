//! `rosters`: set-up, not a measurement. Gives every account a roster of `--contacts`
//! contacts, its neighbours i±1..i±K/2 (mod N), through the protocol itself so it works on
//! any server. All accounts log in, then, by `--mode`:
//! - `set`: each account adds its contacts with `jabber:iq:roster` sets, one item per set
//!   (RFC 6121 §2.3); items have subscription `none`. Done when every set is answered.
//! - `subscribe`: account i sends `subscribe` to each contact and every client approves
//!   each `subscribe` it receives with `subscribed`, so the items end `both` and presence
//!   flows between online contacts (RFC 6121 §3). Done when every expected `subscribed`
//!   has arrived. Clients fetch their roster at login: servers deliver approvals only to
//!   resources that did. Several times slower on some servers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tern::xml::writer::escape;

use crate::client::Target;
use crate::common::{
    base_report, check_fd_limit, close_all, login_all, sample, wait_until, Conn, Out,
};
use crate::procfs::{round, Window};
use crate::stats::{Errors, Latencies, Schedule};
use crate::Common;

/// How rosters are filled.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Mode {
    Set,
    Subscribe,
}

pub struct RostersArgs {
    pub mode: Mode,
    pub contacts: u64,
    /// Subscription requests per second (open loop), all clients together.
    pub rate: f64,
    /// Seconds to wait after the last request for the approvals.
    pub drain_s: f64,
    /// Requests at most unanswered at once.
    pub window: u64,
    /// Order the requests contact by contact instead of account by account.
    pub interleave: bool,
}

/// The contacts of account `i` among `n`: its neighbours at distance 1..=half on either
/// side, without itself and without repeats (they coincide when `n` is small).
pub fn contacts_of(i: u64, n: u64, contacts: u64) -> BTreeSet<u64> {
    let half = contacts / 2;
    let mut set = BTreeSet::new();
    for d in 1..=half {
        set.insert((i + d) % n);
        set.insert((i + n - d % n) % n);
    }
    set.remove(&i);
    set
}

pub async fn run(common: &Common, target: Arc<Target>, args: RostersArgs) -> anyhow::Result<Value> {
    let mut warnings = Vec::new();
    let n = common.users;
    check_fd_limit(n, &mut warnings);
    let server = &common.server_pid;
    let setup_errors = Errors::default();
    let errors = Errors::default();
    let login_latency = Latencies::new();
    let lag = Latencies::new();

    let indices: Vec<u64> = (0..n).collect();
    let sessions = login_all(
        &target,
        &indices,
        common.concurrency,
        &setup_errors,
        &login_latency,
    )
    .await?;
    let approved = Arc::new(AtomicU64::new(0));
    let requests_seen = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let conns: Vec<Conn> = sessions
        .into_iter()
        .map(|session| {
            let approved = approved.clone();
            let requests_seen = requests_seen.clone();
            let set_errors = errors.clone();
            // The approvals go out through the connection's own writer: the handler
            // only sees stanzas, so it gets a sender once the connection exists.
            let (tx_slot, rx_slot) =
                std::sync::mpsc::channel::<tokio::sync::mpsc::UnboundedSender<Out>>();
            let mut tx = None;
            let conn = Conn::start(session, sent.clone(), errors.clone(), move |stanza, _| {
                if stanza.name() == "iq"
                    && stanza
                        .attr("id")
                        .is_some_and(|id| id.starts_with("tl-roster-"))
                    && matches!(stanza.attr("type"), Some("result") | Some("error"))
                {
                    if stanza.attr("type") == Some("result") {
                        approved.fetch_add(1, Ordering::Relaxed);
                    } else {
                        set_errors.add("roster-set", tern::xml::writer::to_string(&stanza));
                    }
                    return;
                }
                if stanza.name() != "presence" {
                    return;
                }
                match stanza.attr("type") {
                    Some("subscribe") => {
                        requests_seen.fetch_add(1, Ordering::Relaxed);
                        if tx.is_none() {
                            tx = rx_slot.try_recv().ok();
                        }
                        if let (Some(tx), Some(from)) = (&tx, stanza.attr("from")) {
                            let _ = tx.send(Out::Other(format!(
                                "<presence to='{}' type='subscribed'/>",
                                escape(from)
                            )));
                        }
                    }
                    Some("subscribed") => {
                        approved.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            });
            let _ = tx_slot.send(conn.tx.clone());
            conn
        })
        .collect();

    // Every (i, contact) pair is one request from i: account by account (an account's
    // requests pipelined on its session), or with --interleave every account's first
    // contact, then every second one, ... (one request per account in flight; this order
    // made Tern's roster handler stall: "IQ handler timed out after 30s", server idle).
    let lists: Vec<Vec<u64>> = (0..n)
        .map(|i| contacts_of(i, n, args.contacts).into_iter().collect())
        .collect();
    let pairs: Vec<(u64, u64)> = if args.interleave {
        let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
        (0..longest)
            .flat_map(|c| {
                lists
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, list)| list.get(c).map(|&j| (i as u64, j)))
            })
            .collect()
    } else {
        lists
            .iter()
            .enumerate()
            .flat_map(|(i, list)| list.iter().map(move |&j| (i as u64, j)))
            .collect()
    };
    let expected = pairs.len() as u64;
    let senders: Vec<_> = conns.iter().map(|c| c.tx.clone()).collect();
    let jids: Vec<String> = (0..n).map(|j| target.bare_jid(j)).collect();
    let before = sample(server);
    let schedule = Schedule::new(args.rate, expected as f64 / args.rate);
    let total = schedule.total.min(expected);
    let mode = args.mode;
    let window = args.window.max(1);
    let in_flight = {
        let approved = approved.clone();
        let errors = errors.clone();
        move |k: u64| k.saturating_sub(approved.load(Ordering::Relaxed) + errors.total())
    };
    schedule
        .run(&lag, move |k, _, _| {
            // At most `window` requests unanswered: a server slower than `--rate` (Tern
            // flushes its store on every roster write) sets the pace instead of timing
            // requests out. This runs on the schedule's own thread, so it may block.
            while in_flight(k) >= window {
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Some(&(i, j)) = pairs.get(k as usize) {
                let jid = &jids[j as usize];
                let _ = senders[i as usize].send(Out::Op(match mode {
                    Mode::Subscribe => format!("<presence to='{jid}' type='subscribe'/>"),
                    Mode::Set => format!(
                        "<iq type='set' id='tl-roster-{k}'><query xmlns='jabber:iq:roster'><item jid='{jid}'/></query></iq>"
                    ),
                }));
            }
        })
        .await;
    let done = wait_until(Duration::from_secs_f64(args.drain_s), || {
        approved.load(Ordering::Relaxed) + errors.total() >= expected
    })
    .await;
    let after = sample(server);
    let window = Window::between(&before, &after, server);
    if !done {
        warnings.push(format!(
            "{} of {expected} roster items confirmed within --drain {} s (in subscribe mode: already subscribed from an earlier run?)",
            approved.load(Ordering::Relaxed),
            args.drain_s
        ));
    }
    // Let the last roster pushes and presences be answered before closing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unclosed = close_all(conns, Duration::from_secs(10)).await;
    let params = json!({
        "addr": common.addr.to_string(),
        "users": n,
        "contacts": args.contacts,
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "rate": args.rate,
        "window": args.window,
        "interleave": args.interleave,
    });
    let mut report = base_report(
        "rosters",
        &common.label,
        params,
        &window,
        approved.load(Ordering::Relaxed),
        !server.is_empty(),
        &mut warnings,
    );
    report.insert(
        "items".into(),
        json!({
            "expected": expected,
            "requested": total,
            "subscribe_requests_received": requests_seen.load(Ordering::Relaxed),
            "confirmed": approved.load(Ordering::Relaxed),
            "complete": done,
            "not_closed_by_server": unclosed,
            "contacts_per_account": round(expected as f64 / n as f64, 2),
        }),
    );
    report.insert("setup_login_latency".into(), login_latency.to_json());
    report.insert("errors".into(), errors.to_json());
    report.insert("warnings".into(), json!(warnings));
    Ok(Value::Object(report))
}

#[cfg(test)]
mod tests {
    use super::contacts_of;

    #[test]
    fn neighbours_are_symmetric_and_exclude_self() {
        for n in [1u64, 2, 3, 5, 21, 100] {
            for i in 0..n {
                let mine = contacts_of(i, n, 20);
                assert!(!mine.contains(&i));
                assert!(mine.len() as u64 <= 20.min(n - 1));
                for &j in &mine {
                    assert!(contacts_of(j, n, 20).contains(&i), "n={n} i={i} j={j}");
                }
            }
        }
        assert_eq!(contacts_of(50, 100, 20).len(), 20);
    }
}
