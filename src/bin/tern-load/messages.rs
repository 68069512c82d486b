//! `messages`: P online pairs; chat messages arrive at R per second in total (message k
//! goes from the sender of pair k mod P to the receiver's bare JID). Each body carries the
//! sequence number and the due time; the receiver records the latency and ticks the
//! sequence number off, so every message sent is accounted for (delivered, lost,
//! duplicated, bounced).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tern::xml::ns;
use tokio::time::Instant;

use crate::client::Target;
use crate::common::{
    base_report, check_fd_limit, close_all, login_all, sample, wait_until, Conn, Out,
};
use crate::procfs::{round, Window};
use crate::stats::{Errors, Latencies, Schedule};
use crate::Common;

pub struct MessagesArgs {
    pub pairs: u64,
    pub rate: f64,
    pub duration_s: f64,
    pub drain_s: f64,
    pub payload: usize,
}

struct Tally {
    /// Arrivals per sequence number.
    seen: Vec<AtomicU8>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    other_stanzas: AtomicU64,
}

pub async fn run(
    common: &Common,
    target: Arc<Target>,
    args: MessagesArgs,
) -> anyhow::Result<Value> {
    let mut warnings = Vec::new();
    let server = &common.server_pid;
    if args.pairs == 0 {
        anyhow::bail!("--pairs must be at least 1");
    }
    check_fd_limit(2 * args.pairs, &mut warnings);
    if 2 * args.pairs > common.users {
        warnings.push(format!(
            "{} pairs need {} accounts but --users is {}: accounts are reused (several resources)",
            args.pairs,
            2 * args.pairs,
            common.users
        ));
    }
    let errors = Errors::default();
    let setup_errors = Errors::default();
    let login_latency = Latencies::new();
    let latency = Latencies::new();
    let latency_from_dispatch = Latencies::new();
    let lag = Latencies::new();

    // Set-up (not measured): sender of pair i is account 2i, receiver 2i+1.
    let indices: Vec<u64> = (0..2 * args.pairs).collect();
    let sessions = login_all(
        &target,
        &indices,
        common.concurrency,
        &setup_errors,
        &login_latency,
    )
    .await?;

    let schedule = Schedule::new(args.rate, args.duration_s);
    let base = schedule.start;
    let tally = Arc::new(Tally {
        seen: (0..schedule.total).map(|_| AtomicU8::new(0)).collect(),
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        other_stanzas: AtomicU64::new(0),
    });
    let sent = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for session in sessions {
        let tally = tally.clone();
        let latency = latency.clone();
        let latency_from_dispatch = latency_from_dispatch.clone();
        let reader_errors = errors.clone();
        conns.push(Conn::start(
            session,
            sent.clone(),
            errors.clone(),
            move |stanza, arrived| {
                if stanza.name() != "message" {
                    tally.other_stanzas.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if stanza.attr("type") == Some("error") {
                    reader_errors.add("bounced", tern::xml::writer::to_string(&stanza));
                    return;
                }
                let Some(body) = stanza.get_child("body", ns::CLIENT) else {
                    tally.other_stanzas.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let text = body.text();
                let mut parts = text.split_whitespace();
                let seq = parts.next().and_then(|p| p.parse::<usize>().ok());
                let due_us = parts.next().and_then(|p| p.parse::<u64>().ok());
                let dispatched_us = parts.next().and_then(|p| p.parse::<u64>().ok());
                let (Some(seq), Some(due_us), Some(dispatched_us)) = (seq, due_us, dispatched_us)
                else {
                    reader_errors.add("malformed", text);
                    return;
                };
                let Some(slot) = tally.seen.get(seq) else {
                    reader_errors.add("malformed", format!("sequence {seq} out of range"));
                    return;
                };
                if slot.fetch_add(1, Ordering::Relaxed) == 0 {
                    tally.delivered.fetch_add(1, Ordering::Relaxed);
                    let due = base + Duration::from_micros(due_us);
                    latency.record(arrived.saturating_duration_since(due));
                    let dispatched = base + Duration::from_micros(dispatched_us);
                    latency_from_dispatch.record(arrived.saturating_duration_since(dispatched));
                } else {
                    tally.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            },
        ));
    }
    // Pair i: connection 2i sends, 2i+1 receives.
    let senders: Vec<_> = conns.iter().step_by(2).map(|c| c.tx.clone()).collect();
    let receivers: Vec<String> = (0..args.pairs)
        .map(|i| target.bare_jid(2 * i + 1))
        .collect();
    let padding = "x".repeat(args.payload);

    let before = sample(server);
    let pairs = args.pairs;
    schedule
        .run(&lag, move |k, due, dispatched| {
            let pair = (k % pairs) as usize;
            let due_us = (due - base).as_micros();
            let dispatched_us = (dispatched - base).as_micros();
            let _ = senders[pair].send(Out::Op(format!(
                "<message to='{}' type='chat' id='m{k}'><body>{k} {due_us} {dispatched_us} {padding}</body></message>",
                receivers[pair]
            )));
        })
        .await;
    let send_end = Instant::now();
    let total = schedule.total;
    let drained = wait_until(Duration::from_secs_f64(args.drain_s), || {
        let sent_now = sent.load(Ordering::Relaxed);
        sent_now + errors.total() >= total && tally.delivered.load(Ordering::Relaxed) >= sent_now
    })
    .await;
    let after = sample(server);
    let window = Window::between(&before, &after, server);

    let unclosed = close_all(conns, Duration::from_secs(10)).await;
    if unclosed > 0 {
        warnings.push(format!(
            "{unclosed} streams not closed by the server within 10 s"
        ));
    }

    let sent = sent.load(Ordering::Relaxed);
    let delivered = tally.delivered.load(Ordering::Relaxed);
    if !drained {
        warnings.push(format!(
            "not every message arrived within --drain {} s: {} of {} sent",
            args.drain_s, delivered, sent
        ));
    }
    let send_s = (send_end - schedule.start).as_secs_f64();
    let params = json!({
        "addr": common.addr.to_string(),
        "pairs": args.pairs,
        "rate": args.rate,
        "duration_s": args.duration_s,
        "payload_bytes": args.payload,
        "users": common.users,
    });
    let mut report = base_report(
        "messages",
        &common.label,
        params,
        &window,
        delivered,
        !server.is_empty(),
        &mut warnings,
    );
    report.insert(
        "messages".into(),
        json!({
            "scheduled": total,
            "sent": sent,
            "delivered": delivered,
            "lost": sent.saturating_sub(delivered),
            "duplicates": tally.duplicates.load(Ordering::Relaxed),
            "delivered_ratio": if sent == 0 { Value::Null } else { json!(round(delivered as f64 / sent as f64, 6)) },
            "all_delivered": delivered == sent && sent == total,
            "sent_per_s": round(sent as f64 / send_s.max(1e-9), 2),
            "other_stanzas": tally.other_stanzas.load(Ordering::Relaxed),
        }),
    );
    report.insert("latency".into(), latency.to_json());
    report.insert(
        "latency_from_dispatch".into(),
        latency_from_dispatch.to_json(),
    );
    report.insert("schedule_lag".into(), lag.to_json());
    report.insert("setup_login_latency".into(), login_latency.to_json());
    report.insert("errors".into(), errors.to_json());
    report.insert("warnings".into(), json!(warnings));
    Ok(Value::Object(report))
}
