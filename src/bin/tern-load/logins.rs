//! `logins`: full logins (TCP, STARTTLS, SCRAM-SHA-1, bind, presence, close) arriving at
//! a constant rate, whatever the server's pace. Latency is from the login's due time to
//! the bind result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::{Session, Target};
use crate::common::{base_report, check_fd_limit, sample, wait_until};
use crate::procfs::{round, Window};
use crate::stats::{Errors, Latencies, Schedule};
use crate::Common;

pub struct LoginsArgs {
    pub rate: f64,
    pub duration_s: f64,
    pub max_inflight: u64,
}

pub async fn run(common: &Common, target: Arc<Target>, args: LoginsArgs) -> anyhow::Result<Value> {
    let mut warnings = Vec::new();
    check_fd_limit(args.max_inflight, &mut warnings);
    let server = &common.server_pid;
    let errors = Errors::default();
    let close_errors = Errors::default();
    let latency = Latencies::new();
    let latency_from_dispatch = Latencies::new();
    let lag = Latencies::new();
    let inflight = Arc::new(AtomicU64::new(0));
    let peak_inflight = Arc::new(AtomicU64::new(0));
    let succeeded = Arc::new(AtomicU64::new(0));

    let before = sample(server);
    let schedule = Schedule::new(args.rate, args.duration_s);
    let dispatch = {
        let runtime = tokio::runtime::Handle::current();
        let target = target.clone();
        let errors = errors.clone();
        let close_errors = close_errors.clone();
        let latency = latency.clone();
        let latency_from_dispatch = latency_from_dispatch.clone();
        let inflight = inflight.clone();
        let peak_inflight = peak_inflight.clone();
        let succeeded = succeeded.clone();
        let max_inflight = args.max_inflight;
        move |k: u64, due: Instant, dispatched: Instant| {
            let now_inflight = inflight.load(Ordering::Relaxed);
            if now_inflight >= max_inflight {
                errors.add("overload", "--max-inflight logins already running");
                return;
            }
            inflight.fetch_add(1, Ordering::Relaxed);
            peak_inflight.fetch_max(now_inflight + 1, Ordering::Relaxed);
            let target = target.clone();
            let errors = errors.clone();
            let close_errors = close_errors.clone();
            let latency = latency.clone();
            let latency_from_dispatch = latency_from_dispatch.clone();
            let inflight = inflight.clone();
            let succeeded = succeeded.clone();
            runtime.spawn(async move {
                let login = tokio::time::timeout_at(
                    Instant::now() + target.timeout,
                    Session::login(&target, k, false),
                )
                .await;
                match login {
                    Ok(Ok(session)) => {
                        let now = Instant::now();
                        latency.record(now.saturating_duration_since(due));
                        latency_from_dispatch.record(now.saturating_duration_since(dispatched));
                        succeeded.fetch_add(1, Ordering::Relaxed);
                        if let Err(err) = session.close(Duration::from_secs(5)).await {
                            close_errors.add("close", format!("{err:#}"));
                        }
                    }
                    Ok(Err(err)) => errors.add(err.stage, &err),
                    Err(_) => errors.add("timeout", "login took longer than --timeout"),
                }
                inflight.fetch_sub(1, Ordering::Relaxed);
            });
        }
    };
    schedule.run(&lag, dispatch).await;
    let send_end = Instant::now();
    let finished = wait_until(target.timeout + Duration::from_secs(6), || {
        inflight.load(Ordering::Relaxed) == 0
    })
    .await;
    if !finished {
        warnings.push(format!(
            "{} logins still running when the report was made",
            inflight.load(Ordering::Relaxed)
        ));
    }
    let after = sample(server);
    let window = Window::between(&before, &after, server);
    let ok = succeeded.load(Ordering::Relaxed);
    let schedule_s = (send_end - schedule.start).as_secs_f64();

    let params = json!({
        "addr": common.addr.to_string(),
        "rate": args.rate,
        "duration_s": args.duration_s,
        "max_inflight": args.max_inflight,
        "users": common.users,
    });
    let mut report = base_report(
        "logins",
        &common.label,
        params,
        &window,
        ok,
        !server.is_empty(),
        &mut warnings,
    );
    report.insert(
        "logins".into(),
        json!({
            "attempted": schedule.total,
            "succeeded": ok,
            "failed": errors.total(),
            "close_failures": close_errors.total(),
            "peak_inflight": peak_inflight.load(Ordering::Relaxed),
            "achieved_per_s": round(ok as f64 / schedule_s.max(1e-9), 2),
        }),
    );
    report.insert("latency".into(), latency.to_json());
    report.insert(
        "latency_from_dispatch".into(),
        latency_from_dispatch.to_json(),
    );
    report.insert("schedule_lag".into(), lag.to_json());
    report.insert("errors".into(), errors.to_json());
    report.insert("close_errors".into(), close_errors.to_json());
    report.insert("warnings".into(), json!(warnings));
    Ok(Value::Object(report))
}
