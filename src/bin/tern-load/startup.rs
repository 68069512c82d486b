//! `startup`: what starting the server costs. Execs the server command itself (so the
//! clock starts at exec), connects every few milliseconds until the port accepts, logs in
//! until a login succeeds (time to first login), closes that session, then leaves the
//! server alone for `--idle` seconds with no connection and reports its CPU and memory
//! meanwhile; finally stops it (`--stop-command`, else SIGTERM) and waits for it to exit.
//! The report also says where the wall time to the first login went (its steps, and the
//! scheduler's and the machine's counters: `waits.rs`) and how often the idle server woke.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Session, StageClock, Target};
use crate::procfs::{self, round, Sample, Window};
use crate::stats::Errors;
use crate::waits::{proactive_reclaim, MachineTicks, Sched, WriteBacklog};
use crate::Common;

pub struct StartupArgs {
    /// The server command and its arguments.
    pub command: Vec<String>,
    pub idle_s: f64,
    /// Milliseconds between attempts while the server is starting.
    pub retry_ms: u64,
    /// Run with `sh -c` to stop the server (`$SERVER_PID` is set); SIGTERM without it.
    pub stop_command: Option<String>,
    /// Where the server's standard output and error go.
    pub server_log: PathBuf,
}

fn spawn(args: &StartupArgs) -> anyhow::Result<Child> {
    let Some((program, rest)) = args.command.split_first() else {
        anyhow::bail!("no server command given (after --)");
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.server_log)
        .map_err(|err| anyhow::anyhow!("opening {}: {err}", args.server_log.display()))?;
    let log2 = log.try_clone()?;
    Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|err| anyhow::anyhow!("starting {program}: {err}"))
}

/// Stops the server and waits (at most 60 s, then SIGKILL); returns the seconds it took
/// and whether it exited by itself.
async fn stop(mut child: Child, stop_command: Option<&str>) -> (f64, bool) {
    let pid = child.id();
    let started = Instant::now();
    match stop_command {
        Some(command) => {
            let _ = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .env("SERVER_PID", pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
        None => {
            let _ = tokio::process::Command::new("kill")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap_or(false);
    (started.elapsed().as_secs_f64(), waited)
}

pub async fn run(common: &Common, target: Arc<Target>, args: StartupArgs) -> anyhow::Result<Value> {
    let mut warnings: Vec<String> = Vec::new();
    let errors = Errors::default();
    let generator_before = Sched::of_process(std::process::id());
    let machine_before = MachineTicks::read();
    let backlog_at_exec = WriteBacklog::read();
    let exec_at = Instant::now();
    let mut child = spawn(&args)?;
    let pid = child.id();
    let deadline = exec_at + target.timeout;
    let retry = Duration::from_millis(args.retry_ms.max(1));

    // 1. The port accepts connections.
    let mut listening = None;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("the server exited during start-up: {status}");
        }
        if tokio::net::TcpStream::connect(target.addr).await.is_ok() {
            listening = Some(exec_at.elapsed());
            break;
        }
        tokio::time::sleep(retry).await;
    }
    // 2. A login succeeds (a server may accept before it can authenticate).
    let mut first_login = None;
    let mut attempts = 0u64;
    let mut session = None;
    // The successful login's steps, in ms since exec, with when it began.
    let mut steps = None;
    while listening.is_some() && Instant::now() < deadline {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let began = exec_at.elapsed();
        let mut clock = StageClock::on();
        match tokio::time::timeout(left, Session::login_clocked(&target, 0, true, &mut clock)).await
        {
            Ok(Ok(s)) => {
                first_login = Some(exec_at.elapsed());
                steps = Some((began, clock.since(exec_at)));
                session = Some(s);
                break;
            }
            Ok(Err(err)) => errors.add(err.stage, &err),
            Err(_) => errors.add("timeout", "start-up took longer than --timeout"),
        }
        tokio::time::sleep(retry).await;
    }
    // Where the wall time to the first login went, beyond the server's CPU.
    let machine_at_login = MachineTicks::read();
    let server_sched = Sched::of_tree(&[pid]);
    let generator_sched = Sched::of_process(std::process::id());
    let at_login = Sample::take(&[pid]);
    let start_cpu_us = procfs::tree_cpu_us(&[pid]);
    if let Some(session) = session {
        if let Err(err) = session.close(Duration::from_secs(5)).await {
            warnings.push(format!("closing the first session: {err:#}"));
        }
    }

    // 3. Idle: no connection at all, one second after the last one closed.
    let mut idle = None;
    if first_login.is_some() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = Sample::take(&[pid]);
        let sched_before = Sched::of_tree(&[pid]);
        tokio::time::sleep(Duration::from_secs_f64(args.idle_s)).await;
        let sched_after = Sched::of_tree(&[pid]);
        let after = Sample::take(&[pid]);
        idle = Some((
            Window::between(&before, &after, &[pid]),
            sched_after.since_json(&sched_before),
        ));
    } else {
        warnings.push("no login succeeded: nothing measured".into());
    }
    let (stop_s, stopped_cleanly) = stop(child, args.stop_command.as_deref()).await;
    if !stopped_cleanly {
        warnings.push("the server did not exit within 60 s of the stop request: killed".into());
    }

    let ms = |d: Option<Duration>| d.map(|d| round(d.as_secs_f64() * 1000.0, 2));
    let mut report = serde_json::Map::new();
    report.insert("scenario".into(), json!("startup"));
    report.insert("label".into(), json!(common.label));
    report.insert(
        "params".into(),
        json!({
            "addr": common.addr.to_string(),
            "command": args.command,
            "idle_s": args.idle_s,
            "retry_ms": args.retry_ms,
            "stop_command": args.stop_command,
        }),
    );
    report.insert("server_pid".into(), json!(pid));
    report.insert("listening_ms".into(), json!(ms(listening)));
    report.insert("first_login_ms".into(), json!(ms(first_login)));
    report.insert("login_attempts".into(), json!(attempts));
    report.insert(
        "startup_cpu_ms".into(),
        json!(round(start_cpu_us as f64 / 1000.0, 1)),
    );
    if let Some((began, marks)) = &steps {
        let ends: Vec<Value> = marks
            .iter()
            .map(|(step, at_ms)| json!({ "step": step, "ended_ms": round(*at_ms, 2) }))
            .collect();
        report.insert(
            "first_login_steps".into(),
            json!({ "began_ms": round(began.as_secs_f64() * 1000.0, 2), "ends": ends }),
        );
    }
    let server_waits = server_sched.since_json(&Sched::default());
    if server_sched.implausible_disk_waits > 0 {
        warnings.push(format!(
            "{} of the server's threads had a block I/O delay longer than their life (a kernel \
             accounting slip): left out of waiting_on_disk_ms",
            server_sched.implausible_disk_waits
        ));
    }
    report.insert(
        "waits_to_first_login".into(),
        json!({
            "server": server_waits,
            "generator": generator_sched.since_json(&generator_before),
            "machine": machine_before.delta_json(&machine_at_login),
            "write_backlog_at_exec": backlog_at_exec.json(),
            "proactive_reclaim": proactive_reclaim(),
        }),
    );
    report.insert(
        "memory_at_first_login".into(),
        json!({ "rss_kb": at_login.memory().rss_kb, "pss_kb": at_login.memory().pss_kb }),
    );
    if let Some((idle, idle_sched)) = &idle {
        report.insert(
            "idle".into(),
            json!({
                "wall_s": round(idle.wall_s, 3),
                "server_cpu_us": idle.server_cpu_us,
                "server_cpu_cores": round(idle.server_cpu_us as f64 / 1e6 / idle.wall_s.max(1e-9), 5),
                "rss_kb": idle.memory_after.rss_kb,
                "pss_kb": idle.memory_after.pss_kb,
                "processes": idle.server_pids.len(),
                "other_cpu_cores": round(idle.other_cores(), 3),
                // Exact where server_cpu_us counts 10 ms ticks: the idle server's
                // wake-ups (timeslices) and their CPU time.
                "sched": idle_sched,
            }),
        );
    }
    report.insert(
        "stop".into(),
        json!({ "seconds": round(stop_s, 3), "exited_by_itself": stopped_cleanly }),
    );
    report.insert("errors_before_first_login".into(), errors.to_json());
    report.insert("warnings".into(), json!(warnings));
    Ok(Value::Object(report))
}
