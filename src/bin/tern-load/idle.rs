//! `idle`: log in C clients, hold them, and see what they cost the server: memory per
//! connection (RSS and PSS), CPU per login during the ramp, CPU while they sit idle.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::Target;
use crate::common::{base_report, check_fd_limit, close_all, login_many, sample, wait_until, Conn};
use crate::procfs::{round, Window};
use crate::stats::{Errors, Latencies};
use crate::Common;

pub struct IdleArgs {
    pub connections: u64,
    pub hold_s: f64,
    /// Logins per second during the ramp (None: `--concurrency` at a time).
    pub ramp_rate: Option<f64>,
    /// Written (with the number connected) once every login finished, so a script can
    /// run other scenarios while these connections are held; removing it ends the hold.
    pub ready_file: Option<std::path::PathBuf>,
}

pub async fn run(common: &Common, target: Arc<Target>, args: IdleArgs) -> anyhow::Result<Value> {
    let mut warnings = Vec::new();
    check_fd_limit(args.connections, &mut warnings);
    let server = &common.server_pid;
    let errors = Errors::default();
    let latency = Latencies::new();

    let before = sample(server);
    let indices: Vec<u64> = (0..args.connections).collect();
    let sessions = login_many(
        &target,
        &indices,
        common.concurrency,
        args.ramp_rate,
        true,
        &errors,
        &latency,
    )
    .await;
    let ramp_end = sample(server);
    let ramp = Window::between(&before, &ramp_end, server);
    let connected = sessions.iter().filter(|s| s.is_some()).count() as u64;
    let rosters: Vec<usize> = sessions.iter().flatten().map(|s| s.roster_items).collect();

    // Hold: every connection keeps a reader (answering the server's pings) that notices
    // if the server drops it.
    let sent = Arc::new(AtomicU64::new(0));
    let conns: Vec<Conn> = sessions
        .into_iter()
        .flatten()
        .map(|session| Conn::start(session, sent.clone(), errors.clone(), |_, _| {}))
        .collect();
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{connected}\n"))
            .map_err(|err| anyhow::anyhow!("writing {}: {err}", path.display()))?;
    }
    let hold_start = sample(server);
    let hold_limit = Duration::from_secs_f64(args.hold_s);
    match &args.ready_file {
        // The script that waited for the file ends the hold early by removing it.
        Some(path) => {
            wait_until(hold_limit, || !path.exists()).await;
        }
        None => tokio::time::sleep(hold_limit).await,
    }
    let hold_end = sample(server);
    let hold = Window::between(&hold_start, &hold_end, server);
    let dropped = conns.iter().filter(|c| c.is_finished()).count() as u64;
    let unclosed = close_all(conns, Duration::from_secs(10)).await;

    let have_server = !server.is_empty();
    let per_conn = |a: u64, b: u64| {
        if connected == 0 {
            Value::Null
        } else {
            json!(round((b as f64 - a as f64) / connected as f64, 2))
        }
    };
    let mem_before = ramp.memory_before;
    // With --ready-file other load may run during the hold (bench/compare.sh measures
    // logins and messages on top of these connections): memory is taken as the hold
    // starts. Otherwise at its end, after the server has settled.
    let mem_after = if args.ready_file.is_some() {
        hold.memory_before
    } else {
        hold.memory_after
    };
    let params = json!({
        "addr": common.addr.to_string(),
        "connections": args.connections,
        "hold_s": args.hold_s,
        "concurrency": common.concurrency,
        "ramp_rate": args.ramp_rate,
        "users": common.users,
    });
    let mut report = base_report(
        "idle",
        &common.label,
        params,
        &ramp,
        connected,
        have_server,
        &mut warnings,
    );
    if hold.generator_bound() {
        warnings.push("generator bound during the hold".into());
    }
    report.insert(
        "connections".into(),
        json!({
            "requested": args.connections,
            "connected": connected,
            "failed": args.connections - connected,
            "dropped_during_hold": dropped,
            "not_closed_by_server": unclosed,
        }),
    );
    report.insert("login_latency".into(), latency.to_json());
    if target.fetch_roster {
        report.insert(
            "roster_items".into(),
            json!({
                "min": rosters.iter().min(),
                "max": rosters.iter().max(),
                "total": rosters.iter().sum::<usize>(),
            }),
        );
    }
    report.insert(
        "hold".into(),
        json!({
            "wall_s": round(hold.wall_s, 3),
            "server_cpu_us": hold.server_cpu_us,
            "server_cpu_cores": round(hold.server_cpu_us as f64 / 1e6 / hold.wall_s.max(1e-9), 4),
            "server_cpu_us_per_connection_s": if connected == 0 { Value::Null } else {
                json!(round(hold.server_cpu_us as f64 / connected as f64 / hold.wall_s.max(1e-9), 3))
            },
            "generator_cpu_cores": round(hold.generator_cores(), 4),
        }),
    );
    if have_server {
        report.insert(
            "memory".into(),
            json!({
                "rss_kb_before": mem_before.rss_kb,
                "rss_kb_after": mem_after.rss_kb,
                "pss_kb_before": mem_before.pss_kb,
                "pss_kb_after": mem_after.pss_kb,
                "rss_kb_per_connection": per_conn(mem_before.rss_kb, mem_after.rss_kb),
                "pss_kb_per_connection": per_conn(mem_before.pss_kb, mem_after.pss_kb),
            }),
        );
    }
    report.insert("errors".into(), errors.to_json());
    report.insert("warnings".into(), json!(warnings));
    Ok(Value::Object(report))
}
