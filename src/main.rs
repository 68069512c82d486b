//! The `tern` command: run the server and administer it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tern::admin::{self, AdminRequest, AdminResponse};
use tern::config::{Config, Severity};
use tern::server::{Listeners, Server};

#[derive(Parser)]
#[command(name = "tern", version, about = "A small, complete XMPP server")]
struct Cli {
    /// Config file (default: config/tern.toml if it exists, else the embedded default).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum CheckWhat {
    /// Try every configured STUN/TURN service (XEP-0215) with the credentials Tern mints:
    /// a STUN binding or a TURN allocation (exit status 1 if one fails).
    Turn {
        /// Seconds to wait for each service.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run,
    /// Create an account.
    Adduser {
        /// user@host
        jid: String,
        /// The password (read from standard input when omitted).
        #[arg(long)]
        password: Option<String>,
    },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and its data.
    Deluser { jid: String },
    /// List accounts (of one host, or all).
    Users { host: Option<String> },
    /// Check the config and print every diagnostic (exit status 1 on errors).
    Check {
        #[command(subcommand)]
        what: Option<CheckWhat>,
    },
    /// Ask the running server to re-read its config (as SIGHUP does).
    Reload,
    /// Print the external services (XEP-0215) a user would receive now, credentials included.
    Extdisco {
        /// user@host
        jid: String,
        /// Only services of this type (stun, turn, ...).
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Write a self-signed certificate for the hosts into the certificate folder.
    Cert {
        #[arg(required = true)]
        hosts: Vec<String>,
    },
}

/// The log filter from `RUST_LOG` (`info` when unset): comma-separated `level` and
/// `target=level` directives. `Targets` rather than `EnvFilter` because the latter's
/// span and field matching pulls a regex engine into the binary (about 300 KiB of code,
/// most of it mapped at start-up), and nobody filters a server's log by span field.
fn log_targets(
    rust_log: Option<&str>,
) -> (
    tracing_subscriber::filter::Targets,
    Option<tracing_subscriber::filter::ParseError>,
) {
    let default = || {
        tracing_subscriber::filter::Targets::new()
            .with_default(tracing_subscriber::filter::LevelFilter::INFO)
    };
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (default(), None),
        Some(directives) => match directives.parse() {
            Ok(targets) => (targets, None),
            Err(err) => (default(), Some(err)),
        },
    }
}

/// Log lines on standard error, filtered by `targets` alone.
fn log_subscriber(
    targets: tracing_subscriber::filter::Targets,
    ansi: bool,
) -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::fmt()
        // The builder's own cap (INFO by default) would hide what `RUST_LOG` asks for.
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .finish()
        .with(targets)
}

/// The scheduler for the CPUs this process may use. On one CPU (`taskset`, a container's
/// cpuset, a one-core VM) the current-thread scheduler does the same work as a one-worker
/// multi-thread pool without its atomics, its cross-thread wake-ups and its second thread;
/// on more, work-stealing workers, one per CPU.
fn async_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scheduler = if cpus == 1 {
        "current-thread"
    } else {
        "multi-thread"
    };
    tracing::debug!(cpus, scheduler, "async runtime");
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (log_targets, log_filter_error) = log_targets(std::env::var("RUST_LOG").ok().as_deref());
    {
        use tracing_subscriber::util::SubscriberInitExt;
        // Colour codes only for a terminal: in a log file or journal they are noise.
        log_subscriber(log_targets, std::io::stderr().is_terminal()).init();
    }
    if let Some(err) = log_filter_error {
        tracing::warn!("RUST_LOG is not understood ({err}); logging at info");
    }
    let runtime = match async_runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::load(path),
        None => Config::load_default(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(cli.config.as_ref())?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config).await.map(|()| ExitCode::SUCCESS),
        Command::Check { what: None } => Ok(check(config)),
        Command::Check {
            what: Some(CheckWhat::Turn { timeout }),
        } => {
            let lines =
                tern::turn_check::check_turn(&config, std::time::Duration::from_secs(timeout))
                    .await?;
            if lines.is_empty() {
                println!("no STUN/TURN services: enable external_services (and configure services) first");
                return Ok(ExitCode::FAILURE);
            }
            for line in &lines {
                println!("{line}");
            }
            let failed = lines
                .iter()
                .filter(|l| matches!(&l.outcome, Ok(o) if !o.is_ok()))
                .count();
            println!("{} checked, {failed} failed", lines.len());
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Cert { hosts } => {
            for host in &hosts {
                let cert = config.certs_dir.join(format!("{host}.crt"));
                let key = config.certs_dir.join(format!("{host}.key"));
                let (cert_pem, key_pem) =
                    tern::tls::generate_self_signed(std::slice::from_ref(host))?;
                std::fs::create_dir_all(&config.certs_dir)
                    .with_context(|| format!("creating {}", config.certs_dir.display()))?;
                std::fs::write(&cert, cert_pem)
                    .with_context(|| format!("writing {}", cert.display()))?;
                write_private(&key, key_pem.as_bytes())?;
                println!("wrote {} and {}", cert.display(), key.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Adduser { jid, password } => {
            let password = password_or_prompt(password, &jid)?;
            account(&config, AdminRequest::AddUser { jid, password }).await
        }
        Command::Passwd { jid, password } => {
            let password = password_or_prompt(password, &jid)?;
            account(&config, AdminRequest::Passwd { jid, password }).await
        }
        Command::Deluser { jid } => account(&config, AdminRequest::DelUser { jid }).await,
        Command::Users { host } => account(&config, AdminRequest::Users { host }).await,
        Command::Reload => {
            let socket = config.admin_socket_path();
            match admin::request_via_socket(&socket, &AdminRequest::Reload).await? {
                Some(response) => print_response(response),
                None => bail!("no running server answers on {}", socket.display()),
            }
        }
        Command::Extdisco { jid, kind } => {
            account(&config, AdminRequest::Extdisco { jid, kind }).await
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    match &config.source_path {
        Some(path) => {
            tracing::info!(config = %path.display(), "starting Tern {}", env!("CARGO_PKG_VERSION"))
        }
        None => tracing::info!(
            "starting Tern {} with the embedded default config",
            env!("CARGO_PKG_VERSION")
        ),
    }
    let listeners = Listeners::bind(&config).await?;
    let server = Server::builder(config.clone()).build()?;
    let errors = config
        .diagnostics
        .all()
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        tracing::warn!(
            "the config has {errors} error(s), ignored as logged above; `tern check` lists them"
        );
    }
    let hosts: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    let example = hosts.first().copied().unwrap_or("localhost");
    let config_flag = config
        .source_path
        .as_ref()
        .map(|p| format!(" --config {}", p.display()))
        .unwrap_or_default();
    tracing::info!(
        "serving {}; add a user with: tern adduser alice@{example}{config_flag}",
        hosts.join(", ")
    );
    spawn_reload_on_sighup(server.clone());
    server.serve(listeners, shutdown_signal()).await
}

/// SIGHUP re-reads the config file; a broken one is rejected and the old one runs on.
fn spawn_reload_on_sighup(server: Server) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; use `tern reload`");
        return;
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            match server.reload_from_file().await {
                Ok(diagnostics) => {
                    for diagnostic in diagnostics {
                        tracing::warn!("config {diagnostic}");
                    }
                }
                Err(err) => {
                    tracing::error!("reload failed, the previous config stays in force: {err:#}")
                }
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn check(config: Config) -> ExitCode {
    // Load modules against an in-memory store so their option diagnostics show up too.
    let storage = std::sync::Arc::new(tern::storage::memory::MemoryStorage::default());
    let built = Server::builder(config.clone())
        .storage(storage)
        .generate_certificates(false)
        .build();
    match built {
        Ok(server) => {
            let runtime_ok = server.load_modules();
            if let Err(err) = runtime_ok {
                eprintln!("error: {err:#}");
            }
        }
        Err(err) => eprintln!("error: {err:#}"),
    }
    let diagnostics = config.diagnostics.all();
    let source = config
        .source_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "embedded default config".to_string());
    for diagnostic in &diagnostics {
        println!("{source}: {diagnostic}");
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    println!("{source}: {errors} error(s), {warnings} warning(s)");
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn password_or_prompt(password: Option<String>, jid: &str) -> anyhow::Result<String> {
    if let Some(password) = password {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {jid}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// Account commands: through the running server's admin socket, else directly.
async fn account(config: &Config, request: AdminRequest) -> anyhow::Result<ExitCode> {
    let socket = config.admin_socket_path();
    let response = match admin::request_via_socket(&socket, &request).await? {
        Some(response) => response,
        None => {
            let storage = tern::storage::open(config).context(
                "the server does not seem to be running (no admin socket), and the database cannot be opened",
            )?;
            match admin::execute(config, &storage, None, request).await {
                Ok(response) => response,
                Err(err) => AdminResponse {
                    ok: false,
                    message: format!("{err:#}"),
                    lines: Vec::new(),
                },
            }
        }
    };
    print_response(response)
}

fn print_response(response: AdminResponse) -> anyhow::Result<ExitCode> {
    for line in &response.lines {
        println!("{line}");
    }
    if response.ok {
        eprintln!("{}", response.message);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {}", response.message);
        Ok(ExitCode::FAILURE)
    }
}

fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The process's `pow`, from the `libm` crate (musl's implementation, in Rust), so the
/// binary does not load the system's libm. tokio's multi-thread scheduler is its only
/// caller (a moving average of poll times), and libm would otherwise put 300 to 600 KiB
/// of its pages in the resident set of every Tern, for that one function.
#[unsafe(no_mangle)]
pub extern "C" fn pow(base: f64, exponent: f64) -> f64 {
    libm::pow(base, exponent)
}

#[cfg(test)]
mod tests {
    use super::{log_subscriber, log_targets, pow};
    use tracing::Level;

    #[test]
    fn the_process_pow_gives_ieee_results() {
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert_eq!(pow(9.0, 0.5), 3.0);
        assert_eq!(pow(0.0, 0.0), 1.0);
        assert_eq!(pow(2.0, -1.0), 0.5);
        // tokio's use: (1 - alpha)^n, alpha = 0.1
        assert!((pow(0.9, 3.5) - 0.691_590_124_278_824_6).abs() < 1e-15);
        assert!(pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(pow(10.0, 400.0), f64::INFINITY);
    }

    fn enabled_under(rust_log: Option<&str>, level: Level) -> bool {
        let subscriber = log_subscriber(log_targets(rust_log).0, false);
        tracing::subscriber::with_default(subscriber, || match level {
            Level::TRACE => tracing::enabled!(Level::TRACE),
            Level::DEBUG => tracing::enabled!(Level::DEBUG),
            Level::INFO => tracing::enabled!(Level::INFO),
            Level::WARN => tracing::enabled!(Level::WARN),
            _ => tracing::enabled!(Level::ERROR),
        })
    }

    #[test]
    fn the_installed_subscriber_logs_what_rust_log_asks_for() {
        assert!(enabled_under(Some("debug"), Level::DEBUG));
        assert!(enabled_under(Some("trace"), Level::TRACE));
        assert!(enabled_under(None, Level::INFO));
        assert!(!enabled_under(None, Level::DEBUG));
        assert!(!enabled_under(Some("warn"), Level::INFO));
    }

    #[test]
    fn the_log_level_defaults_to_info() {
        for unset in [None, Some(""), Some("  ")] {
            let (targets, err) = log_targets(unset);
            assert!(err.is_none());
            assert!(targets.would_enable("tern::c2s", &Level::INFO));
            assert!(!targets.would_enable("tern::c2s", &Level::DEBUG));
        }
    }

    #[test]
    fn rust_log_directives_choose_targets_and_levels() {
        let (targets, err) = log_targets(Some("warn,tern::c2s=debug"));
        assert!(err.is_none());
        assert!(targets.would_enable("tern::c2s::negotiation", &Level::DEBUG));
        assert!(!targets.would_enable("tern::router", &Level::INFO));
        assert!(targets.would_enable("sled", &Level::WARN));
    }

    #[test]
    fn a_rust_log_it_cannot_read_is_reported_and_info_is_used() {
        let (targets, err) = log_targets(Some("tern=loud"));
        assert!(err.is_some());
        assert!(targets.would_enable("tern", &Level::INFO));
        assert!(!targets.would_enable("tern", &Level::DEBUG));
    }
}
