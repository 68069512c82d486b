//! `tern-load`: a load generator for XMPP servers (Tern, Prosody, ejabberd).
//!
//! Thousands of clients over STARTTLS with SASL SCRAM-SHA-1 (PBKDF2 once per account,
//! see `scram`), open-loop constant arrival rates with latencies measured from each
//! operation's due time (`stats`), delivery accounting, and the cost to the server read
//! from /proc (`procfs`): CPU microseconds per operation, RSS and PSS. One JSON object on
//! standard output per run; `bench/run.sh` drives it.
//!
//! Scenarios: `idle`, `logins`, `messages`, `extdisco`, `startup`, and `rosters` (set-up:
//! mutual subscriptions between neighbouring accounts) (see `--help` of each).

mod client;
mod common;
mod extdisco;
mod idle;
mod logins;
mod messages;
mod procfs;
mod rosters;
mod scram;
mod startup;
mod stats;
mod waits;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "tern-load",
    version,
    about = "Load generator for XMPP servers: STARTTLS + SCRAM-SHA-1 clients, open-loop rates, server CPU per operation from /proc"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Options of every scenario.
#[derive(Args, Clone)]
pub struct Common {
    /// Server address (STARTTLS port).
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub addr: SocketAddr,
    /// XMPP domain (also the TLS server name).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Number of accounts PREFIX0..PREFIX{N-1}; clients use them round-robin.
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// Account name prefix.
    #[arg(long, default_value = "u")]
    pub user_prefix: String,
    /// Number of the first account: `--users N --first-user F` uses PREFIX{F}..PREFIX{F+N-1}
    /// (so a second generator can hold other accounts online meanwhile).
    #[arg(long, default_value_t = 0)]
    pub first_user: u64,
    /// Fetch the roster after binding and before the initial presence, as interactive
    /// clients do.
    #[arg(long)]
    pub fetch_roster: bool,
    /// Also offer TLS 1.2 (by default only TLS 1.3, so every server compared negotiates
    /// the same protocol).
    #[arg(long)]
    pub allow_tls12: bool,
    /// Password of every account.
    #[arg(long, default_value = "pw")]
    pub password: String,
    /// PEM certificate(s) to trust for the server.
    #[arg(long)]
    pub ca: PathBuf,
    /// Server process to measure (CPU, RSS, PSS; its descendants included). Repeatable or
    /// comma-separated.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Seconds a login (or, in set-up, any step) may take before it counts as failed.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Logins at once while setting up clients (closed loop; not the measured load).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    pub threads: Option<usize>,
    /// File of SCRAM keys derived by earlier runs (read if it exists, written back at the
    /// end when new keys were derived), so PBKDF2 does not run in the measured window.
    #[arg(long)]
    pub key_cache: Option<PathBuf>,
    /// Free-form label copied into the report (e.g. the server's name).
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(Subcommand)]
enum Scenario {
    /// Log in C clients (bind, presence), hold them, report memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Clients to log in and hold.
        #[arg(long, default_value_t = 200)]
        connections: u64,
        /// Seconds to hold them after all logged in (idle CPU is measured then).
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
        /// Log in at this many per second (open loop) instead of `--concurrency` at a time.
        #[arg(long)]
        ramp_rate: Option<f64>,
        /// File to write once every login finished (the hold then starts; removing the
        /// file ends it early, and memory is then taken at its start).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Full logins (TCP, STARTTLS, SCRAM, bind, presence, close) at a constant rate.
    Logins {
        #[command(flatten)]
        common: Common,
        /// Logins per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of load.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Logins running at once beyond which new ones count as failed (overload).
        #[arg(long, default_value_t = 4096)]
        max_inflight: u64,
    },
    /// P online pairs exchanging chat messages at R per second in total.
    Messages {
        #[command(flatten)]
        common: Common,
        /// Sender/receiver pairs (accounts 2i send to 2i+1).
        #[arg(long, default_value_t = 50)]
        pairs: u64,
        /// Messages per second, all pairs together.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Seconds of load.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds to wait after the last send for everything to arrive.
        #[arg(long, default_value_t = 10.0)]
        drain: f64,
        /// Extra body bytes per message.
        #[arg(long, default_value_t = 0)]
        payload: usize,
    },
    /// XEP-0215 services and credentials requests at a constant rate.
    Extdisco {
        #[command(flatten)]
        common: Common,
        /// Online clients the requests are spread over.
        #[arg(long, default_value_t = 20)]
        clients: u64,
        /// Requests per second, all clients together (services and credentials alternate).
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Seconds of load.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds to wait after the last request for the answers.
        #[arg(long, default_value_t = 10.0)]
        drain: f64,
        /// Host of the TURN services asked for in credentials requests.
        #[arg(long, default_value = "turn.example.org")]
        turn_host: String,
        /// Which requests to send.
        #[arg(long, value_enum, default_value_t = extdisco::Kind::Both)]
        kind: extdisco::Kind,
    },
    /// Exec the server (the command after `--`), time it to the first successful login,
    /// then measure it idle with no connection, then stop it.
    Startup {
        #[command(flatten)]
        common: Common,
        /// Seconds to watch the idle server (no connection).
        #[arg(long, default_value_t = 10.0)]
        idle: f64,
        /// Milliseconds between connection or login attempts while it starts.
        #[arg(long, default_value_t = 2)]
        retry_ms: u64,
        /// Shell command that stops the server ($SERVER_PID is set); SIGTERM without it.
        #[arg(long)]
        stop_command: Option<String>,
        /// File for the server's standard output and error.
        #[arg(long, default_value = "/dev/null")]
        server_log: PathBuf,
        /// The server command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Set-up, not a benchmark: mutual subscriptions between each account and its
    /// `--contacts` nearest accounts, so every roster has that many items.
    Rosters {
        #[command(flatten)]
        common: Common,
        /// Contacts per account (neighbours i±1..i±K/2).
        #[arg(long, default_value_t = 20)]
        contacts: u64,
        /// `set`: roster sets (subscription none); `subscribe`: mutual subscriptions.
        #[arg(long, value_enum, default_value_t = rosters::Mode::Set)]
        mode: rosters::Mode,
        /// Subscription requests per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds to wait for the last approvals.
        #[arg(long, default_value_t = 60.0)]
        drain: f64,
        /// Requests unanswered at once at most (then the server's pace wins over --rate).
        #[arg(long, default_value_t = 100_000)]
        window: u64,
        /// Send every account's first contact, then every second one, ... instead of
        /// account by account (with a small --window this stalls Tern's roster handler).
        #[arg(long)]
        interleave: bool,
    },
}

impl Scenario {
    fn common(&self) -> &Common {
        match self {
            Scenario::Idle { common, .. }
            | Scenario::Logins { common, .. }
            | Scenario::Messages { common, .. }
            | Scenario::Extdisco { common, .. }
            | Scenario::Startup { common, .. }
            | Scenario::Rosters { common, .. } => common,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = cli.scenario.common().clone();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = common.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tern-load: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.scenario, common)) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("JSON report")
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tern-load: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(scenario: Scenario, common: Common) -> anyhow::Result<Value> {
    if let Scenario::Logins { rate, .. }
    | Scenario::Messages { rate, .. }
    | Scenario::Extdisco { rate, .. }
    | Scenario::Rosters { rate, .. } = &scenario
    {
        if !(*rate > 0.0 && rate.is_finite()) {
            anyhow::bail!("--rate must be a positive number");
        }
    }
    let target = Arc::new(client::Target::new(
        common.addr,
        &common.domain,
        &common.user_prefix,
        common.users,
        &common.password,
        &common.ca,
        Duration::from_secs_f64(common.timeout.max(0.001)),
        client::LoginOptions {
            first_user: common.first_user,
            // Servers deliver subscription approvals only to "interested" resources,
            // those that fetched the roster (RFC 6121 §2.1.6), so `rosters` always does.
            fetch_roster: common.fetch_roster || matches!(scenario, Scenario::Rosters { .. }),
            allow_tls12: common.allow_tls12,
        },
    )?);
    let mut cached_keys = 0;
    if let Some(path) = common.key_cache.as_ref().filter(|p| p.exists()) {
        cached_keys = target.keys.load(path)?;
    }
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let mut report = match scenario {
        Scenario::Idle {
            connections,
            hold,
            ramp_rate,
            ready_file,
            ..
        } => {
            if ramp_rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                anyhow::bail!("--ramp-rate must be a positive number");
            }
            idle::run(
                &common,
                target.clone(),
                idle::IdleArgs {
                    connections,
                    hold_s: hold,
                    ramp_rate,
                    ready_file,
                },
            )
            .await?
        }
        Scenario::Logins {
            rate,
            duration,
            max_inflight,
            ..
        } => {
            logins::run(
                &common,
                target.clone(),
                logins::LoginsArgs {
                    rate,
                    duration_s: duration,
                    max_inflight,
                },
            )
            .await?
        }
        Scenario::Messages {
            pairs,
            rate,
            duration,
            drain,
            payload,
            ..
        } => {
            messages::run(
                &common,
                target.clone(),
                messages::MessagesArgs {
                    pairs,
                    rate,
                    duration_s: duration,
                    drain_s: drain,
                    payload,
                },
            )
            .await?
        }
        Scenario::Extdisco {
            clients,
            rate,
            duration,
            drain,
            turn_host,
            kind,
            ..
        } => {
            extdisco::run(
                &common,
                target.clone(),
                extdisco::ExtdiscoArgs {
                    kind,
                    clients,
                    rate,
                    duration_s: duration,
                    drain_s: drain,
                    turn_host,
                },
            )
            .await?
        }
        Scenario::Startup {
            idle,
            retry_ms,
            stop_command,
            server_log,
            command,
            ..
        } => {
            startup::run(
                &common,
                target.clone(),
                startup::StartupArgs {
                    command,
                    idle_s: idle,
                    retry_ms,
                    stop_command,
                    server_log,
                },
            )
            .await?
        }
        Scenario::Rosters {
            mode,
            contacts,
            rate,
            drain,
            window,
            interleave,
            ..
        } => {
            rosters::run(
                &common,
                target.clone(),
                rosters::RostersArgs {
                    mode,
                    contacts,
                    rate,
                    drain_s: drain,
                    window,
                    interleave,
                },
            )
            .await?
        }
    };
    let derivations = target.keys.derivations.load(Ordering::Relaxed);
    if let (Some(path), true) = (&common.key_cache, derivations > 0) {
        target.keys.save(path)?;
    }
    if let Value::Object(map) = &mut report {
        if derivations > 0 {
            if let Some(Value::Array(warnings)) = map.get_mut("warnings") {
                warnings.push(json!(format!(
                    "{derivations} PBKDF2 derivations (4096 HMAC-SHA-1 rounds each) ran in this process, some perhaps in the measured window: warm a --key-cache file first"
                )));
            }
        }
        map.insert("started_at".into(), json!(started_at));
        map.insert(
            "generator_runtime".into(),
            json!({
                "worker_threads": workers,
                "pbkdf2_derivations": derivations,
                "keys_loaded_from_cache_file": cached_keys,
                "pbkdf2_cache_hits": target.keys.hits.load(Ordering::Relaxed),
            }),
        );
    }
    Ok(report)
}
