//! `extdisco`: XEP-0215 requests at a constant rate from C online clients, alternating
//! `<services xmlns='urn:xmpp:extdisco:2'/>` (every service, TURN credentials minted
//! inline) and `<credentials>` for the TURN services on `--turn-host`. Every request is
//! matched with its answer by id; latency is from the due time. `--kind` restricts the
//! run to one of the two, so each gets a CPU figure of its own. `--kind ping` sends
//! XEP-0199 pings instead: the smallest IQ round trip every server answers, the reference
//! that separates a server's per-request cost from its XEP-0215 work.
//!
//! ejabberd 23.01 answers a `<credentials>` request with a `<services>` element carrying
//! the requested services and their credentials (fixed in 24.12). The work is done, only
//! the element's name is wrong: such answers count as answered and are reported apart
//! (`credentials_answered_as_services`) instead of failing the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tern::xml::Element;
use tokio::time::Instant;

use crate::client::Target;
use crate::common::{
    base_report, check_fd_limit, close_all, login_all, sample, wait_until, Conn, Out,
};
use crate::procfs::{round, Window};
use crate::stats::{Errors, Latencies, Schedule};
use crate::Common;

const EXTDISCO: &str = "urn:xmpp:extdisco:2";

/// Which requests a run sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Kind {
    /// `services` and `credentials` alternately.
    Both,
    Services,
    Credentials,
    /// XEP-0199 pings to the server: not XEP-0215, the reference round trip.
    Ping,
}

impl Kind {
    /// Whether request `k` is a `services` request (else a `credentials` one).
    fn is_services(self, k: u64) -> bool {
        match self {
            Kind::Both => k % 2 == 0,
            Kind::Services => true,
            Kind::Credentials | Kind::Ping => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Both => "both",
            Kind::Services => "services",
            Kind::Credentials => "credentials",
            Kind::Ping => "ping",
        }
    }
}

pub struct ExtdiscoArgs {
    pub kind: Kind,
    pub clients: u64,
    pub rate: f64,
    pub duration_s: f64,
    pub drain_s: f64,
    pub turn_host: String,
}

struct Tally {
    kind: Kind,
    answered: Vec<AtomicU8>,
    /// When each request was handed to its writer, microseconds after the schedule start.
    dispatched_us: Vec<AtomicU64>,
    ok: AtomicU64,
    bad_answers: AtomicU64,
    duplicates: AtomicU64,
    /// Credentials requests answered with `<services>` (ejabberd 23.01).
    credentials_as_services: AtomicU64,
    /// How many services each `services` answer listed.
    services_listed: Mutex<BTreeMap<usize, u64>>,
}

/// Whether a result carries what was asked: services (restricted ones with credentials)
/// or, for credentials, at least one service with a username and password.
fn check_answer(k: u64, iq: &Element, tally: &Tally) -> bool {
    if tally.kind == Kind::Ping {
        // XEP-0199 §4: an empty result.
        return iq.children().next().is_none();
    }
    let Some(payload) = iq.children().find(|c| c.ns() == EXTDISCO) else {
        return false;
    };
    let services: Vec<&Element> = payload
        .children()
        .filter(|c| c.name() == "service")
        .collect();
    let with_credentials = services
        .iter()
        .filter(|s| s.attr("username").is_some() && s.attr("password").is_some())
        .count();
    if tally.kind.is_services(k) {
        *tally
            .services_listed
            .lock()
            .expect("tally")
            .entry(services.len())
            .or_default() += 1;
        payload.name() == "services" && !services.is_empty()
    } else if payload.name() == "services" && with_credentials > 0 {
        tally
            .credentials_as_services
            .fetch_add(1, Ordering::Relaxed);
        true
    } else {
        payload.name() == "credentials" && with_credentials > 0
    }
}

pub async fn run(
    common: &Common,
    target: Arc<Target>,
    args: ExtdiscoArgs,
) -> anyhow::Result<Value> {
    let mut warnings = Vec::new();
    let server = &common.server_pid;
    if args.clients == 0 {
        anyhow::bail!("--clients must be at least 1");
    }
    check_fd_limit(args.clients, &mut warnings);
    let errors = Errors::default();
    let setup_errors = Errors::default();
    let login_latency = Latencies::new();
    let latency = Latencies::new();
    let latency_from_dispatch = Latencies::new();
    let services_latency = Latencies::new();
    let credentials_latency = Latencies::new();
    let lag = Latencies::new();

    let indices: Vec<u64> = (0..args.clients).collect();
    let sessions = login_all(
        &target,
        &indices,
        common.concurrency,
        &setup_errors,
        &login_latency,
    )
    .await?;

    let schedule = Schedule::new(args.rate, args.duration_s);
    let kind = args.kind;
    let tally = Arc::new(Tally {
        kind,
        answered: (0..schedule.total).map(|_| AtomicU8::new(0)).collect(),
        dispatched_us: (0..schedule.total).map(|_| AtomicU64::new(0)).collect(),
        ok: AtomicU64::new(0),
        bad_answers: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        credentials_as_services: AtomicU64::new(0),
        services_listed: Mutex::new(BTreeMap::new()),
    });
    let sent = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for session in sessions {
        let tally = tally.clone();
        let latency = latency.clone();
        let latency_from_dispatch = latency_from_dispatch.clone();
        let services_latency = services_latency.clone();
        let credentials_latency = credentials_latency.clone();
        let reader_errors = errors.clone();
        conns.push(Conn::start(
            session,
            sent.clone(),
            errors.clone(),
            move |stanza, arrived| {
                if stanza.name() != "iq" {
                    return;
                }
                let Some(k) = stanza
                    .attr("id")
                    .and_then(|id| id.strip_prefix('e'))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    return; // a push (answered already) or something else
                };
                let Some(slot) = tally.answered.get(k as usize) else {
                    return;
                };
                if slot.fetch_add(1, Ordering::Relaxed) > 0 {
                    tally.duplicates.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let elapsed = arrived.saturating_duration_since(schedule.due(k));
                match stanza.attr("type") {
                    Some("result") => {
                        if check_answer(k, &stanza, &tally) {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            latency.record(elapsed);
                            let dispatched = schedule.start
                                + Duration::from_micros(
                                    tally.dispatched_us[k as usize].load(Ordering::Relaxed),
                                );
                            latency_from_dispatch
                                .record(arrived.saturating_duration_since(dispatched));
                            if kind.is_services(k) {
                                services_latency.record(elapsed);
                            } else if kind != Kind::Ping {
                                credentials_latency.record(elapsed);
                            }
                        } else {
                            tally.bad_answers.fetch_add(1, Ordering::Relaxed);
                            reader_errors.add("bad-answer", tern::xml::writer::to_string(&stanza));
                        }
                    }
                    _ => {
                        let condition = stanza
                            .get_child("error", tern::xml::ns::CLIENT)
                            .and_then(|e| {
                                e.children()
                                    .find(|c| c.ns() == tern::xml::ns::STANZAS_ERR)
                                    .map(|c| c.name().to_string())
                            })
                            .unwrap_or_else(|| "unknown".into());
                        reader_errors.add(&condition, tern::xml::writer::to_string(&stanza));
                    }
                }
            },
        ));
    }
    let senders: Vec<_> = conns.iter().map(|c| c.tx.clone()).collect();

    let domain = target.domain.clone();
    let services_request = format!("' to='{domain}'><services xmlns='{EXTDISCO}'/></iq>");
    let ping_request = format!("' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>");
    let credentials_request = format!(
        "' to='{domain}'><credentials xmlns='{EXTDISCO}'><service type='turn' host='{}'/></credentials></iq>",
        args.turn_host
    );
    let before = sample(server);
    let clients = args.clients;
    let dispatch_tally = tally.clone();
    schedule
        .run(&lag, move |k, _due, dispatched| {
            dispatch_tally.dispatched_us[k as usize].store(
                (dispatched - schedule.start).as_micros() as u64,
                Ordering::Relaxed,
            );
            let client = (k % clients) as usize;
            let rest = if kind == Kind::Ping {
                &ping_request
            } else if kind.is_services(k) {
                &services_request
            } else {
                &credentials_request
            };
            let _ = senders[client].send(Out::Op(format!("<iq type='get' id='e{k}{rest}")));
        })
        .await;
    let send_end = Instant::now();
    let total = schedule.total;
    // Errors include bad answers and failed writes.
    let answered = || tally.ok.load(Ordering::Relaxed) + errors.total();
    let drained = wait_until(Duration::from_secs_f64(args.drain_s), || {
        answered() >= total
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

    let ok = tally.ok.load(Ordering::Relaxed);
    let sent = sent.load(Ordering::Relaxed);
    let unanswered = tally
        .answered
        .iter()
        .filter(|a| a.load(Ordering::Relaxed) == 0)
        .count();
    if !drained {
        warnings.push(format!(
            "{unanswered} of {total} requests unanswered after --drain {} s",
            args.drain_s
        ));
    }
    let send_s = (send_end - schedule.start).as_secs_f64();
    let as_services = tally.credentials_as_services.load(Ordering::Relaxed);
    if as_services > 0 {
        warnings.push(format!(
            "{as_services} credentials requests were answered with <services> instead of <credentials> (ejabberd before 24.12 does this); counted as answered"
        ));
    }
    let params = json!({
        "addr": common.addr.to_string(),
        "kind": args.kind.name(),
        "clients": args.clients,
        "rate": args.rate,
        "duration_s": args.duration_s,
        "turn_host": args.turn_host,
        "users": common.users,
    });
    let mut report = base_report(
        "extdisco",
        &common.label,
        params,
        &window,
        ok,
        !server.is_empty(),
        &mut warnings,
    );
    let listed: BTreeMap<String, u64> = tally
        .services_listed
        .lock()
        .expect("tally")
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
    report.insert(
        "requests".into(),
        json!({
            "scheduled": total,
            "sent": sent,
            "ok": ok,
            "errors": errors.total(),
            "bad_answers": tally.bad_answers.load(Ordering::Relaxed),
            "unanswered": unanswered,
            "duplicates": tally.duplicates.load(Ordering::Relaxed),
            "credentials_answered_as_services": as_services,
            "all_answered_ok": ok == total,
            "sent_per_s": round(sent as f64 / send_s.max(1e-9), 2),
            "services_per_answer": listed,
        }),
    );
    report.insert("latency".into(), latency.to_json());
    report.insert(
        "latency_from_dispatch".into(),
        latency_from_dispatch.to_json(),
    );
    report.insert("services_latency".into(), services_latency.to_json());
    report.insert("credentials_latency".into(), credentials_latency.to_json());
    report.insert("schedule_lag".into(), lag.to_json());
    report.insert("setup_login_latency".into(), login_latency.to_json());
    report.insert("errors".into(), errors.to_json());
    report.insert("warnings".into(), json!(warnings));
    Ok(Value::Object(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(kind: Kind) -> Tally {
        Tally {
            kind,
            answered: Vec::new(),
            dispatched_us: Vec::new(),
            ok: AtomicU64::new(0),
            bad_answers: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            credentials_as_services: AtomicU64::new(0),
            services_listed: Mutex::new(BTreeMap::new()),
        }
    }

    fn parse(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    #[test]
    fn credentials_answered_with_services_count_apart() {
        let t = tally(Kind::Credentials);
        let proper = parse("<iq xmlns='jabber:client' type='result' id='e1'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='h' username='u' password='p'/></credentials></iq>");
        assert!(check_answer(1, &proper, &t));
        assert_eq!(t.credentials_as_services.load(Ordering::Relaxed), 0);
        // ejabberd 23.01: the right services and credentials in a <services> element.
        let ejabberd = parse("<iq xmlns='jabber:client' type='result' id='e1'><services xmlns='urn:xmpp:extdisco:2'><service type='turn' host='h' username='u' password='p'/></services></iq>");
        assert!(check_answer(1, &ejabberd, &t));
        assert_eq!(t.credentials_as_services.load(Ordering::Relaxed), 1);
        // Without credentials it is a wrong answer.
        let empty = parse("<iq xmlns='jabber:client' type='result' id='e1'><services xmlns='urn:xmpp:extdisco:2'/></iq>");
        assert!(!check_answer(1, &empty, &t));
    }

    #[test]
    fn a_ping_is_answered_by_an_empty_result() {
        let t = tally(Kind::Ping);
        assert!(check_answer(
            1,
            &parse("<iq xmlns='jabber:client' type='result' id='e1'/>"),
            &t
        ));
        let with_payload = parse(
            "<iq xmlns='jabber:client' type='result' id='e1'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        assert!(!check_answer(1, &with_payload, &t));
    }

    #[test]
    fn kinds_choose_the_request() {
        assert!(Kind::Both.is_services(0) && !Kind::Both.is_services(1));
        assert!(Kind::Services.is_services(1));
        assert!(!Kind::Credentials.is_services(0));
    }
}
