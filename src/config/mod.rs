//! Configuration: TOML, loaded leniently.
//!
//! A syntax error is fatal (with line and column). Everything else becomes a
//! [`Diagnostic`]: the value is ignored, the default used, and `tern check` lists it.
//! Relative paths resolve against the folder of the config file.
//!
//! Module lists follow Prosody: a host runs
//! `(global modules_enabled - global modules_disabled) + host modules_enabled - host modules_disabled`.

pub mod diagnostics;
pub mod options;
mod secret_file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use toml::{Table, Value};

pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use options::ModuleOptions;

/// The configuration compiled into the binary: what `tern` runs with when no file is given
/// and `config/tern.toml` does not exist.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/tern.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    Sled,
    Memory,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_stanza_size: usize,
    pub max_depth: usize,
    pub negotiation_timeout: Duration,
    pub iq_timeout: Duration,
    pub max_auth_failures: u32,
    /// Stanzas waiting to be written to one slow client before it is disconnected.
    pub outbound_queue: usize,
    /// Simultaneous connections from one IP address (loopback is exempt: local tools,
    /// tests and benchmarks); 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Simultaneous sessions (resources) of one account.
    pub max_sessions_per_account: usize,
    /// A session silent this long is pinged (XEP-0199); zero turns pings off.
    pub idle_timeout: Duration,
    /// How long a ping may go unanswered before the stream is closed.
    pub ping_timeout: Duration,
    /// Bytes per second a bound client may send before reading from it slows down
    /// (0: no limit), and the burst allowed above that rate.
    pub rate: u64,
    pub rate_burst: u64,
    /// Attributes per element, and bytes per attribute value (framer: `policy-violation`).
    pub max_attributes: usize,
    pub max_attribute_length: usize,
    /// Stanzas per second a bound client may send before reading from it slows down
    /// (0: no limit), and the burst allowed above that rate.
    pub stanza_rate: u64,
    pub stanza_burst: u64,
    /// Bytes and top-level elements a connection may send before SASL succeeds
    /// (0: no limit); more end the stream with `policy-violation`.
    pub pre_auth_bytes: u64,
    pub pre_auth_stanzas: u64,
    /// Failed authentications of one account (from any connection) that cost nothing;
    /// past them every attempt for that account waits a doubling delay, up to
    /// `account_auth_max_delay`, forgotten after `account_auth_memory` of quiet.
    /// 0 failures: no per-account back-off.
    pub account_auth_failures: u32,
    pub account_auth_max_delay: Duration,
    pub account_auth_memory: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_size: 256 * 1024,
            max_depth: 64,
            negotiation_timeout: Duration::from_secs(30),
            iq_timeout: Duration::from_secs(30),
            max_auth_failures: 3,
            outbound_queue: 4096,
            max_connections_per_ip: 100,
            max_sessions_per_account: 16,
            idle_timeout: Duration::from_secs(300),
            ping_timeout: Duration::from_secs(60),
            rate: 64 * 1024,
            rate_burst: 1024 * 1024,
            max_attributes: 64,
            max_attribute_length: 8192,
            stanza_rate: 50,
            stanza_burst: 200,
            pre_auth_bytes: 64 * 1024,
            pre_auth_stanzas: 50,
            account_auth_failures: 5,
            account_auth_max_delay: Duration::from_secs(60),
            account_auth_memory: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HostConfig {
    pub name: String,
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// Modules this host runs, after applying the enabled/disabled lists.
    pub modules: Vec<String>,
    /// `[hosts.NAME.modules]`: per-module option overrides.
    pub module_options: Table,
}

#[derive(Clone)]
pub struct Config {
    /// The file this came from (None: the embedded default or an in-memory string).
    pub source_path: Option<PathBuf>,
    /// Folder relative paths resolve against.
    pub base_dir: PathBuf,
    pub data_dir: PathBuf,
    pub storage: StorageKind,
    pub require_encryption: bool,
    pub c2s: Vec<SocketAddr>,
    pub c2s_direct_tls: Vec<SocketAddr>,
    pub certs_dir: PathBuf,
    pub admin_socket: Option<PathBuf>,
    pub limits: Limits,
    pub hosts: Vec<HostConfig>,
    /// `[modules]`: global per-module options.
    pub module_options: Table,
    pub diagnostics: Diagnostics,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("source_path", &self.source_path)
            .field(
                "hosts",
                &self.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "storage",
    "require_encryption",
    "modules_enabled",
    "modules_disabled",
    "admin_socket",
    "listen",
    "limits",
    "tls",
    "hosts",
    "modules",
];

impl Config {
    /// Loads a config file. Only unreadable files and TOML syntax errors fail.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        let (root, diagnostics) =
            parse_table(&source).with_context(|| format!("in config file {}", path.display()))?;
        secret_file::warn_if_world_readable(path, &root, &diagnostics);
        let mut config = Config::from_table(&root, &base_dir, diagnostics);
        config.source_path = Some(path.to_path_buf());
        Ok(config)
    }

    /// The default file when it exists (`config/tern.toml` under the working directory),
    /// else the embedded default with paths relative to the working directory's `config/`.
    pub fn load_default() -> anyhow::Result<Config> {
        let path = Path::new("config/tern.toml");
        if path.exists() {
            Config::load(path)
        } else {
            Config::parse(EMBEDDED_DEFAULT, Path::new("config"))
        }
    }

    /// Parses TOML text; relative paths resolve against `base_dir`.
    pub fn parse(source: &str, base_dir: &Path) -> anyhow::Result<Config> {
        let (root, diagnostics) = parse_table(source)?;
        Ok(Config::from_table(&root, base_dir, diagnostics))
    }

    fn from_table(root: &Table, base_dir: &Path, diagnostics: Diagnostics) -> Config {
        let top = ModuleOptions::new(root.clone(), "", diagnostics.clone());
        // Top-level keys have no prefix; ModuleOptions would print ".key".
        let top_path = |key: &str| key.to_string();
        for key in root.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                diagnostics.warn(&top_path(key), "unknown setting; ignored");
            }
        }
        let resolve = |p: &str| -> PathBuf {
            let path = PathBuf::from(p);
            if path.is_absolute() {
                path
            } else {
                base_dir.join(path)
            }
        };

        let data_dir = resolve(&top_string(&top, "data_dir").unwrap_or_else(|| "data".into()));
        let storage = match top_string(&top, "storage").as_deref() {
            None | Some("sled") => StorageKind::Sled,
            Some("memory") => StorageKind::Memory,
            Some(other) => {
                diagnostics.error(
                    "storage",
                    format!("unknown storage backend {other:?} (expected \"sled\" or \"memory\"); using sled"),
                );
                StorageKind::Sled
            }
        };
        let require_encryption = match root.get("require_encryption") {
            None => true,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                diagnostics.error(
                    "require_encryption",
                    format!(
                        "expected true or false, found {}; using true",
                        options::describe(other)
                    ),
                );
                true
            }
        };
        let admin_socket = top_string(&top, "admin_socket").map(|p| resolve(&p));

        let listen = section(root, "listen", &diagnostics);
        let c2s = addresses(listen, "listen.c2s", "c2s", "127.0.0.1:5222", &diagnostics);
        let c2s_direct_tls = addresses(
            listen,
            "listen.c2s_direct_tls",
            "c2s_direct_tls",
            "127.0.0.1:5223",
            &diagnostics,
        );
        if let Some(listen) = listen {
            for key in listen.keys() {
                if key != "c2s" && key != "c2s_direct_tls" {
                    diagnostics.warn(&format!("listen.{key}"), "unknown listener; ignored");
                }
            }
        }

        let limits = read_limits(section(root, "limits", &diagnostics), &diagnostics);

        let tls = section(root, "tls", &diagnostics)
            .cloned()
            .unwrap_or_default();
        let tls_opts = ModuleOptions::new(tls, "tls", diagnostics.clone());
        let certs_dir = resolve(
            &tls_opts
                .string("certs_dir")
                .unwrap_or_else(|| "certs".into()),
        );
        tls_opts.report_unknown();

        let global_enabled = module_list(root, "modules_enabled", "", &diagnostics)
            .unwrap_or_else(|| DEFAULT_MODULES.iter().map(|s| s.to_string()).collect());
        let global_disabled =
            module_list(root, "modules_disabled", "", &diagnostics).unwrap_or_default();
        let module_options = section(root, "modules", &diagnostics)
            .cloned()
            .unwrap_or_default();

        let mut hosts = Vec::new();
        if let Some(table) = section(root, "hosts", &diagnostics) {
            for (name, value) in table {
                let prefix = format!("hosts.{name}");
                let normalised = match jid::BareJid::new(name) {
                    Ok(jid) if jid.node().is_none() => jid.domain().to_string(),
                    _ => {
                        diagnostics.error(&prefix, "not a valid domain name; host ignored");
                        continue;
                    }
                };
                let Value::Table(host) = value else {
                    diagnostics.error(&prefix, "expected a table; host ignored");
                    continue;
                };
                let host_opts =
                    ModuleOptions::new(host.clone(), prefix.clone(), diagnostics.clone());
                let certificate = host_opts
                    .string("certificate")
                    .map(|p| resolve(&p))
                    .unwrap_or_else(|| certs_dir.join(format!("{normalised}.crt")));
                let key = host_opts
                    .string("key")
                    .map(|p| resolve(&p))
                    .unwrap_or_else(|| certs_dir.join(format!("{normalised}.key")));
                let enabled =
                    module_list(host, "modules_enabled", &prefix, &diagnostics).unwrap_or_default();
                let disabled = module_list(host, "modules_disabled", &prefix, &diagnostics)
                    .unwrap_or_default();
                let host_module_options = host_opts
                    .table_value("modules")
                    .cloned()
                    .unwrap_or_default();
                host_opts.raw("modules_enabled");
                host_opts.raw("modules_disabled");
                host_opts.report_unknown();
                let mut modules: Vec<String> = global_enabled
                    .iter()
                    .filter(|m| !global_disabled.contains(m))
                    .cloned()
                    .collect();
                for module in enabled {
                    if !modules.contains(&module) {
                        modules.push(module);
                    }
                }
                modules.retain(|m| !disabled.contains(m));
                hosts.push(HostConfig {
                    name: normalised,
                    certificate,
                    key,
                    modules,
                    module_options: host_module_options,
                });
            }
        }
        if hosts.is_empty() {
            diagnostics.error(
                "hosts",
                "no virtual host is configured; add a [hosts.\"example.org\"] table",
            );
        }

        Config {
            source_path: None,
            base_dir: base_dir.to_path_buf(),
            data_dir,
            storage,
            require_encryption,
            c2s,
            c2s_direct_tls,
            certs_dir,
            admin_socket,
            limits,
            hosts,
            module_options,
            diagnostics,
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostConfig> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The options of `module` on `host`: global `[modules.M]` under `[hosts.H.modules.M]`.
    pub fn module_options(&self, host: &str, module: &str) -> ModuleOptions {
        let global = self.module_options.get(module).and_then(Value::as_table);
        let host_table = self
            .host(host)
            .and_then(|h| h.module_options.get(module))
            .and_then(Value::as_table);
        ModuleOptions::layered(
            global,
            &format!("modules.{module}"),
            host_table,
            &format!("hosts.{host}.modules.{module}"),
            self.diagnostics.clone(),
        )
    }

    /// Where the admin socket lives: configured, or `DATA_DIR/admin.sock`.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }
}

/// Modules a host runs when `modules_enabled` is not set.
pub const DEFAULT_MODULES: &[&str] = &[
    "disco",
    "ping",
    "version",
    "time",
    "roster",
    "presence",
    "offline",
    "vcard",
    "last",
    "private",
    "blocklist",
    "carbons",
    "register",
    "csi",
    "smacks",
];

fn top_string(top: &ModuleOptions, key: &str) -> Option<String> {
    match top.table().get(key)? {
        Value::String(s) => Some(s.clone()),
        other => {
            top.diagnostics().error(
                key,
                format!(
                    "expected a string, found {}; using the default",
                    options::describe(other)
                ),
            );
            None
        }
    }
}

fn section<'a>(root: &'a Table, key: &str, diagnostics: &Diagnostics) -> Option<&'a Table> {
    match root.get(key)? {
        Value::Table(t) => Some(t),
        other => {
            diagnostics.error(
                key,
                format!(
                    "expected a table, found {}; ignored",
                    options::describe(other)
                ),
            );
            None
        }
    }
}

fn module_list(
    table: &Table,
    key: &str,
    prefix: &str,
    diagnostics: &Diagnostics,
) -> Option<Vec<String>> {
    let path = if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    };
    let opts = ModuleOptions::new(Table::new(), "", diagnostics.clone());
    let _ = opts;
    match table.get(key)? {
        Value::Array(items) => {
            let mut out = Vec::new();
            for (index, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(name) => out.push(name.to_string()),
                    None => diagnostics.error(
                        &format!("{path}[{index}]"),
                        format!(
                            "expected a module name, found {}; ignored",
                            options::describe(item)
                        ),
                    ),
                }
            }
            Some(out)
        }
        other => {
            diagnostics.error(
                &path,
                format!(
                    "expected a list of module names, found {}; ignored",
                    options::describe(other)
                ),
            );
            None
        }
    }
}

fn addresses(
    listen: Option<&Table>,
    path: &str,
    key: &str,
    default: &str,
    diagnostics: &Diagnostics,
) -> Vec<SocketAddr> {
    let fallback = || default.parse().map(|a| vec![a]).unwrap_or_default();
    let Some(value) = listen.and_then(|l| l.get(key)) else {
        return fallback();
    };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = if matches!(value, Value::Array(_)) {
            format!("{path}[{index}]")
        } else {
            path.to_string()
        };
        match item.as_str().map(str::parse::<SocketAddr>) {
            Some(Ok(addr)) => out.push(addr),
            Some(Err(err)) => diagnostics.error(
                &item_path,
                format!("{err} (expected \"IP:PORT\", e.g. \"127.0.0.1:5222\"); ignored"),
            ),
            None => diagnostics.error(
                &item_path,
                format!(
                    "expected \"IP:PORT\", found {}; ignored",
                    options::describe(item)
                ),
            ),
        }
    }
    out
}

fn read_limits(table: Option<&Table>, diagnostics: &Diagnostics) -> Limits {
    let mut limits = Limits::default();
    let Some(table) = table else {
        return limits;
    };
    let opts = ModuleOptions::new(table.clone(), "limits", diagnostics.clone());
    if let Some(v) = opts.integer("max_stanza_size", 1024..=64 * 1024 * 1024) {
        limits.max_stanza_size = v as usize;
    }
    if let Some(v) = opts.integer("max_depth", 4..=1024) {
        limits.max_depth = v as usize;
    }
    if let Some(v) = opts.integer("negotiation_timeout", 1..=3600) {
        limits.negotiation_timeout = Duration::from_secs(v as u64);
    }
    if let Some(v) = opts.integer("iq_timeout", 1..=3600) {
        limits.iq_timeout = Duration::from_secs(v as u64);
    }
    if let Some(v) = opts.integer("max_auth_failures", 1..=100) {
        limits.max_auth_failures = v as u32;
    }
    if let Some(v) = opts.integer("outbound_queue", 16..=1_000_000) {
        limits.outbound_queue = v as usize;
    }
    if let Some(v) = opts.integer("max_connections_per_ip", 0..=1_000_000) {
        limits.max_connections_per_ip = v as usize;
    }
    if let Some(v) = opts.integer("max_sessions_per_account", 1..=10_000) {
        limits.max_sessions_per_account = v as usize;
    }
    if let Some(v) = opts.integer("idle_timeout", 0..=86_400) {
        limits.idle_timeout = Duration::from_secs(v as u64);
    }
    if let Some(v) = opts.integer("ping_timeout", 1..=3600) {
        limits.ping_timeout = Duration::from_secs(v as u64);
    }
    if let Some(v) = opts.integer("rate", 0..=1 << 40) {
        limits.rate = v as u64;
    }
    if let Some(v) = opts.integer("rate_burst", 1024..=1 << 40) {
        limits.rate_burst = v as u64;
    }
    if let Some(v) = opts.integer("max_attributes", 4..=100_000) {
        limits.max_attributes = v as usize;
    }
    if let Some(v) = opts.integer("max_attribute_length", 256..=64 * 1024 * 1024) {
        limits.max_attribute_length = v as usize;
    }
    if let Some(v) = opts.integer("stanza_rate", 0..=1_000_000) {
        limits.stanza_rate = v as u64;
    }
    if let Some(v) = opts.integer("stanza_burst", 1..=1_000_000) {
        limits.stanza_burst = v as u64;
    }
    if let Some(v) = opts.integer("pre_auth_bytes", 0..=1 << 40) {
        // Below a stream header, STARTTLS and one SASL exchange nothing could log in.
        limits.pre_auth_bytes = if v == 0 { 0 } else { v.max(4096) as u64 };
    }
    if let Some(v) = opts.integer("pre_auth_stanzas", 0..=1_000_000) {
        limits.pre_auth_stanzas = if v == 0 { 0 } else { v.max(8) as u64 };
    }
    if let Some(v) = opts.integer("account_auth_failures", 0..=1_000_000) {
        limits.account_auth_failures = v as u32;
    }
    if let Some(v) = opts.integer("account_auth_max_delay", 1..=3600) {
        limits.account_auth_max_delay = Duration::from_secs(v as u64);
    }
    if let Some(v) = opts.integer("account_auth_memory", 1..=86_400) {
        limits.account_auth_memory = Duration::from_secs(v as u64);
    }
    opts.report_unknown();
    limits
}

/// The TOML table and a diagnostics sink that knows each key's line.
fn parse_table(source: &str) -> anyhow::Result<(Table, Diagnostics)> {
    let root: Table = source.parse().map_err(|err: toml::de::Error| {
        let position = err.span().map(|span| line_col(source, span.start));
        match position {
            Some((line, col)) => anyhow::anyhow!(
                "TOML syntax error at line {line}, column {col}: {}",
                err.message()
            ),
            None => anyhow::anyhow!("TOML syntax error: {}", err.message()),
        }
    })?;
    Ok((root, Diagnostics::new(diagnostics::key_lines(source))))
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before.len() - i)
        .unwrap_or(before.len() + 1);
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_clean() {
        let config = Config::parse(EMBEDDED_DEFAULT, Path::new("config")).expect("parses");
        assert!(
            config.diagnostics.all().is_empty(),
            "{:?}",
            config.diagnostics.all()
        );
        assert_eq!(config.hosts.len(), 1);
        assert_eq!(config.hosts[0].name, "localhost");
        assert_eq!(
            config.c2s,
            vec!["127.0.0.1:5222".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            config.c2s_direct_tls,
            vec!["127.0.0.1:5223".parse::<SocketAddr>().expect("addr")]
        );
        assert!(config.require_encryption);
        assert_eq!(config.certs_dir, Path::new("config/../certs"));
        assert_eq!(
            config.hosts[0].certificate,
            Path::new("config/../certs/localhost.crt")
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = Config::parse("a = 1\nb = = 2\n", Path::new(".")).expect_err("fails");
        let text = format!("{err:#}");
        assert!(text.contains("line 2, column"), "{text}");
    }

    #[test]
    fn module_lists_follow_prosody() {
        let src = r#"
modules_enabled = ["disco", "ping", "version"]
modules_disabled = ["version"]
[hosts.a]
modules_enabled = ["time"]
modules_disabled = ["ping"]
[hosts.b]
"#;
        let config = Config::parse(src, Path::new("/etc/tern")).expect("parses");
        assert_eq!(
            config.host("a").map(|h| h.modules.clone()),
            Some(vec!["disco".to_string(), "time".to_string()])
        );
        assert_eq!(
            config.host("b").map(|h| h.modules.clone()),
            Some(vec!["disco".to_string(), "ping".to_string()])
        );
        assert_eq!(config.data_dir, Path::new("/etc/tern/data"));
    }

    #[test]
    fn bad_values_are_diagnostics_not_failures() {
        let src = "storage = 'mysql'\nrequire_encryption = 'yes'\nbogus = 1\n[listen]\nc2s = ['nope', '127.0.0.1:1']\n[limits]\nmax_stanza_size = 'big'\n[hosts.localhost]\n[modules.ping]\ninterval = 'x'\n";
        let config = Config::parse(src, Path::new(".")).expect("parses");
        let text: Vec<String> = config
            .diagnostics
            .all()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert!(
            text.iter().any(|t| t.contains("line 1: storage")),
            "{text:?}"
        );
        assert!(text
            .iter()
            .any(|t| t.contains("line 2: require_encryption")));
        assert!(text
            .iter()
            .any(|t| t.contains("line 3: bogus: unknown setting")));
        assert!(text.iter().any(|t| t.contains("listen.c2s[0]")));
        assert!(text
            .iter()
            .any(|t| t.contains("line 7: limits.max_stanza_size")));
        assert_eq!(
            config.c2s,
            vec!["127.0.0.1:1".parse::<SocketAddr>().expect("addr")]
        );
        assert!(config.require_encryption);
        assert_eq!(
            config.limits.max_stanza_size,
            Limits::default().max_stanza_size
        );
        let ping = config.module_options("localhost", "ping");
        assert_eq!(ping.integer("interval", 1..=100), None);
        let text: Vec<String> = config
            .diagnostics
            .all()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert!(
            text.iter()
                .any(|t| t.contains("line 10: modules.ping.interval: expected an integer")),
            "{text:?}"
        );
    }

    #[test]
    fn host_overrides_module_options() {
        let src =
            "[modules.version]\nname = 'g'\nos = true\n[hosts.x.modules.version]\nname = 'h'\n";
        let config = Config::parse(src, Path::new(".")).expect("parses");
        let opts = config.module_options("x", "version");
        assert_eq!(opts.string("name").as_deref(), Some("h"));
        assert_eq!(opts.bool("os"), Some(true));
        assert_eq!(opts.path("name"), "hosts.x.modules.version.name");
    }
}
