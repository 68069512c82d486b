//! The server: hosts, storage, TLS and listeners, with no process globals, so several
//! servers can live in one test binary.
//!
//! The caller binds the listeners and passes a shutdown future (mini-redis style):
//! `Server::build(config)?.serve(Listeners::bind(&config).await?, ctrl_c()).await`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::host::Host;
use crate::module::ModuleDescriptor;
use crate::stanza::{StreamError, StreamErrorCondition};
use crate::storage::SharedStorage;
use crate::tls::{HostCert, TlsSetup};

/// State shared by every task of one server.
pub struct ServerInner {
    config: RwLock<Arc<Config>>,
    /// Ordered, not hashed: a few names set by the operator, looked up for every stanza,
    /// where comparing them costs less than hashing the name.
    hosts: RwLock<BTreeMap<String, Arc<Host>>>,
    storage: SharedStorage,
    tls: RwLock<Option<TlsSetup>>,
    modules: Vec<ModuleDescriptor>,
    /// Keys fake SCRAM salts for unknown users, so they look stable (no enumeration).
    fake_salt_key: [u8; 32],
    next_session_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
    connections_done: Notify,
    memory_trim: Arc<crate::memory_trim::MemoryTrim>,
    /// Open connections per remote address, for `max_connections_per_ip`.
    per_ip: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Recent failed authentications per address: (count, last failure).
    auth_failures: std::sync::Mutex<HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
    /// Recent failed authentications per account, across addresses.
    account_backoff: crate::sasl::backoff::AccountBackoff,
}

impl ServerInner {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn host(&self, name: &str) -> Option<Arc<Host>> {
        self.hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn hosts(&self) -> Vec<Arc<Host>> {
        self.hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn default_host_name(&self) -> String {
        self.config()
            .hosts
            .first()
            .map(|h| h.name.clone())
            .unwrap_or_default()
    }

    pub fn storage(&self) -> &SharedStorage {
        &self.storage
    }

    pub(crate) fn tls(&self) -> Option<TlsSetup> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn fake_salt_key(&self) -> [u8; 32] {
        self.fake_salt_key
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        let open = self.connections.fetch_add(1, Ordering::AcqRel) + 1;
        self.memory_trim.opened(open);
        ConnectionGuard(self.clone())
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}

/// Resolves once shutdown has begun. (A helper rather than `wait_for` inline: its guard
/// must not live across an `.await` in a `Send` future.)
pub(crate) async fn until_shutdown(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

/// Failures from one address are free up to this many; then each costs twice the last
/// delay, up to [`MAX_AUTH_DELAY`]. Forgotten after [`AUTH_FAILURE_MEMORY`] of quiet.
const FREE_AUTH_FAILURES: u32 = 3;
const MAX_AUTH_DELAY: Duration = Duration::from_secs(16);
const AUTH_FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

impl ServerInner {
    /// Records a failed authentication from `ip`; returns how long to wait before
    /// answering it.
    pub(crate) fn auth_failed(&self, ip: std::net::IpAddr) -> Duration {
        let now = std::time::Instant::now();
        let mut failures = self.auth_failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, (_, last)| now.duration_since(*last) < AUTH_FAILURE_MEMORY);
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) > AUTH_FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        backoff(entry.0)
    }

    /// What a failure from `ip` would wait now, without counting one: a success waits
    /// as long, or a guesser could run attempts in parallel and take any quick answer
    /// for the right password without waiting for the slow ones.
    pub(crate) fn auth_pending_delay(&self, ip: std::net::IpAddr) -> Duration {
        let now = std::time::Instant::now();
        let failures = self.auth_failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&ip) {
            Some((count, last)) if now.duration_since(*last) <= AUTH_FAILURE_MEMORY => {
                backoff(count + 1)
            }
            _ => Duration::ZERO,
        }
    }

    /// The per-account back-off (see [`crate::sasl::backoff`]).
    pub(crate) fn account_backoff(&self) -> &crate::sasl::backoff::AccountBackoff {
        &self.account_backoff
    }

    pub(crate) fn auth_succeeded(&self, ip: std::net::IpAddr) {
        self.auth_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

fn backoff(failures: u32) -> Duration {
    if failures <= FREE_AUTH_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_AUTH_FAILURES - 1).min(8);
    (Duration::from_secs(1) * (1u32 << doublings)).min(MAX_AUTH_DELAY)
}

/// Admits a connection from `ip` under `max_connections_per_ip`; released on drop.
pub(crate) struct IpSlot(Arc<ServerInner>, std::net::IpAddr);

impl ServerInner {
    pub(crate) fn admit_ip(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<IpSlot> {
        let limit = self.config().limits.max_connections_per_ip;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if limit > 0 && !ip.is_loopback() && *count >= limit {
            return None;
        }
        *count += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.0.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.1);
            }
        }
    }
}

pub(crate) struct ConnectionGuard(Arc<ServerInner>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = self.0.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        if open == 0 {
            self.0.connections_done.notify_waiters();
        }
        self.0.memory_trim.closed(open);
    }
}

/// Bound listening sockets. Binding is separate from serving so that callers (tests)
/// can bind port 0 and learn the port before the server runs.
pub struct Listeners {
    pub c2s: Vec<TcpListener>,
    pub c2s_direct_tls: Vec<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let mut c2s = Vec::new();
        for addr in &config.c2s {
            c2s.push(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (c2s)"))?,
            );
        }
        let mut c2s_direct_tls = Vec::new();
        for addr in &config.c2s_direct_tls {
            c2s_direct_tls.push(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (c2s direct TLS)"))?,
            );
        }
        Ok(Listeners {
            c2s,
            c2s_direct_tls,
        })
    }

    pub fn c2s_addrs(&self) -> Vec<SocketAddr> {
        self.c2s
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn direct_tls_addrs(&self) -> Vec<SocketAddr> {
        self.c2s_direct_tls
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// Assembles a server.
pub struct ServerBuilder {
    config: Config,
    storage: Option<SharedStorage>,
    modules: Vec<ModuleDescriptor>,
    generate_certificates: bool,
}

impl ServerBuilder {
    pub fn new(config: Config) -> Self {
        ServerBuilder {
            config,
            storage: None,
            modules: crate::modules::BUILTIN.to_vec(),
            generate_certificates: true,
        }
    }

    /// Uses this storage instead of opening the configured one.
    pub fn storage(mut self, storage: SharedStorage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Makes a module available (enable it with `modules_enabled`), e.g. one of an
    /// embedding application's own.
    pub fn module(mut self, module: ModuleDescriptor) -> Self {
        self.modules.retain(|m| m.name != module.name);
        self.modules.push(module);
        self
    }

    /// Whether missing certificates are generated (default: yes).
    pub fn generate_certificates(mut self, yes: bool) -> Self {
        self.generate_certificates = yes;
        self
    }

    pub fn build(self) -> anyhow::Result<Server> {
        let config = self.config;
        let storage = match self.storage {
            Some(storage) => storage,
            None => crate::storage::open(&config)?,
        };
        let tls = load_tls(&config, self.generate_certificates)?;
        let mut fake_salt_key = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut fake_salt_key[..]);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(ServerInner {
            config: RwLock::new(Arc::new(config.clone())),
            hosts: RwLock::new(BTreeMap::new()),
            storage: storage.clone(),
            tls: RwLock::new(tls),
            modules: self.modules,
            fake_salt_key,
            next_session_id: AtomicU64::new(1),
            shutdown,
            connections: AtomicUsize::new(0),
            connections_done: Notify::new(),
            memory_trim: Default::default(),
            per_ip: Default::default(),
            auth_failures: Default::default(),
            account_backoff: Default::default(),
        });
        for host_config in &config.hosts {
            let domain = jid::BareJid::new(&host_config.name)
                .with_context(|| format!("invalid host name {}", host_config.name))?;
            let host = Arc::new(Host::new(domain, Arc::downgrade(&inner), storage.clone()));
            inner
                .hosts
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(host_config.name.clone(), host);
        }
        Ok(Server { inner })
    }
}

fn load_tls(config: &Config, generate: bool) -> anyhow::Result<Option<TlsSetup>> {
    let mut certs = Vec::new();
    for host in &config.hosts {
        if generate {
            let generated = crate::tls::ensure_certificate(
                &host.certificate,
                &host.key,
                std::slice::from_ref(&host.name),
            )?;
            if generated {
                tracing::info!(
                    host = %host.name,
                    certificate = %host.certificate.display(),
                    "no certificate found: generated a self-signed one (clients will need to trust it)"
                );
            }
        }
        if host.certificate.exists() && host.key.exists() {
            certs.push(HostCert {
                host: host.name.clone(),
                cert_path: host.certificate.clone(),
                key_path: host.key.clone(),
            });
        } else {
            tracing::warn!(host = %host.name, "no TLS certificate; this host cannot offer TLS");
        }
    }
    if certs.is_empty() {
        return Ok(None);
    }
    Ok(Some(TlsSetup::load(&certs)?))
}

/// Fired on every host after a successful reload swapped in the new config. Modules
/// that cached options re-read them here (`host.module_options(name)`).
pub struct ConfigReloaded {
    pub host: Arc<Host>,
}

/// A running (or ready to run) server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<ServerInner>,
}

/// What differs between two configs that a running server cannot apply: its hosts,
/// listeners, data folder and storage backend. One error per changed key.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<crate::config::Diagnostic> {
    let mut changes = Vec::new();
    let mut changed = |key: &str, what: &str| {
        changes.push(crate::config::Diagnostic {
            severity: crate::config::Severity::Error,
            key: key.to_string(),
            line: new.diagnostics.line_of(key),
            message: format!("{what} changed; that needs a restart, not a reload"),
        });
    };
    let names = |config: &Config| -> Vec<String> {
        let mut names: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
        names.sort();
        names
    };
    if names(old) != names(new) {
        changed("hosts", "the list of hosts");
    }
    if old.c2s != new.c2s || old.c2s_direct_tls != new.c2s_direct_tls {
        changed("listen", "the listening addresses");
    }
    if old.data_dir != new.data_dir {
        changed("data_dir", "the data folder");
    }
    if old.storage != new.storage {
        changed("storage", "the storage backend");
    }
    changes
}

impl Server {
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder::new(config)
    }

    pub(crate) fn from_inner(inner: Arc<ServerInner>) -> Server {
        Server { inner }
    }

    pub fn inner(&self) -> &Arc<ServerInner> {
        &self.inner
    }

    pub fn host(&self, name: &str) -> Option<Arc<Host>> {
        self.inner.host(name)
    }

    pub fn storage(&self) -> &SharedStorage {
        self.inner.storage()
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner.config()
    }

    /// Loads every host's modules. Called by `serve`; separate for callers that want
    /// the modules running before they accept connections.
    pub fn load_modules(&self) -> anyhow::Result<()> {
        let config = self.inner.config();
        for host_config in &config.hosts {
            let Some(host) = self.inner.host(&host_config.name) else {
                continue;
            };
            for name in &host_config.modules {
                match self.inner.modules.iter().find(|m| m.name == name.as_str()) {
                    Some(descriptor) => {
                        if let Err(err) =
                            crate::module::load(&host, descriptor, &self.inner.modules)
                        {
                            // A broken module does not take the server down with it.
                            tracing::error!("{err:#}");
                            config.diagnostics.error(
                                &format!("hosts.{}.modules_enabled", host.name),
                                format!("{err:#}"),
                            );
                        }
                    }
                    None => config.diagnostics.error(
                        "modules_enabled",
                        format!(
                            "unknown module {name:?} (available: {})",
                            self.available_modules().join(", ")
                        ),
                    ),
                }
            }
        }
        Ok(())
    }

    /// Applies a new config without dropping sessions: module options, enabled modules
    /// per host and limits. A config with errors is rejected (the old one keeps running)
    /// and its diagnostics returned, and so is one that changes hosts, listeners, data
    /// folder or storage (they need a restart; one error per key). TLS needs a restart.
    pub async fn reload(
        &self,
        config: Config,
    ) -> Result<Vec<crate::config::Diagnostic>, Vec<crate::config::Diagnostic>> {
        let diagnostics = config.diagnostics.all();
        if config.diagnostics.has_errors() {
            tracing::error!(
                "reload rejected: the new config has errors; the old one keeps running"
            );
            return Err(diagnostics);
        }
        let old = self.inner.config();
        let needs_restart = restart_only_changes(&old, &config);
        if !needs_restart.is_empty() {
            // Applying the rest would leave the running server and its config disagreeing
            // (a host in the config with no host object behind it, say).
            tracing::error!(
                "reload rejected: the new config changes what only a restart applies; the old one keeps running"
            );
            let mut diagnostics = diagnostics;
            diagnostics.extend(needs_restart);
            return Err(diagnostics);
        }
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config.clone());
        for host in self.inner.hosts() {
            let Some(host_config) = config.host(&host.name) else {
                continue;
            };
            for loaded in crate::module::loaded(&host) {
                if !host_config.modules.contains(&loaded) {
                    crate::module::unload(&host, &loaded);
                    tracing::info!(host = %host.name, module = %loaded, "module unloaded by reload");
                }
            }
            for name in &host_config.modules {
                if crate::module::is_loaded(&host, name) {
                    continue;
                }
                match self.inner.modules.iter().find(|m| m.name == name.as_str()) {
                    Some(descriptor) => {
                        match crate::module::load(&host, descriptor, &self.inner.modules) {
                            Ok(()) => {
                                tracing::info!(host = %host.name, module = %name, "module loaded by reload")
                            }
                            Err(err) => tracing::error!("{err:#}"),
                        }
                    }
                    None => tracing::error!(module = %name, "reload: unknown module"),
                }
            }
            let mut event = ConfigReloaded { host: host.clone() };
            if let Err(err) = host.events.fire(&mut event).await {
                tracing::error!(host = %host.name, %err, "a module failed to apply the reloaded config");
            }
        }
        tracing::info!("config reloaded");
        Ok(config.diagnostics.all())
    }

    /// Re-reads the config file the server was started with.
    pub async fn reload_from_file(&self) -> anyhow::Result<Vec<crate::config::Diagnostic>> {
        let current = self.inner.config();
        let config = match &current.source_path {
            Some(path) => Config::load(path)?,
            None => Config::load_default()?,
        };
        self.reload(config).await.map_err(|diagnostics| {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the new config was rejected:\n{}", lines.join("\n"))
        })
    }

    pub fn available_modules(&self) -> Vec<&'static str> {
        self.inner.modules.iter().map(|m| m.name).collect()
    }

    /// Serves until `shutdown` resolves, then closes every stream and returns.
    pub async fn serve(
        &self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.load_modules()?;
        let socket = self.inner.config().admin_socket_path();
        if let Err(err) = crate::admin::serve_socket(self.inner.clone(), &socket).await {
            // Account commands then need the server stopped; serving clients matters more.
            tracing::warn!("admin socket unavailable: {err:#}");
        }
        for listener in listeners.c2s {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "listening for clients (STARTTLS)");
            }
            tokio::spawn(crate::c2s::accept_loop(self.inner.clone(), listener, false));
        }
        for listener in listeners.c2s_direct_tls {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "listening for clients (direct TLS, XEP-0368)");
            }
            tokio::spawn(crate::c2s::accept_loop(self.inner.clone(), listener, true));
        }
        shutdown.await;
        self.shutdown().await;
        Ok(())
    }

    /// Closes every stream with `system-shutdown`, waits (bounded) for connections to
    /// finish, and unloads the modules.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.send_replace(true) {
            return;
        }
        tracing::info!("shutting down");
        // Bound sessions are told through their queues (their readers do not each watch
        // the signal: that would cost every connection a waiter). A session bound after
        // this sweep sees the flag set when it starts.
        for host in self.inner.hosts() {
            for session in host.all_sessions() {
                session.close(Some(StreamError::new(StreamErrorCondition::SystemShutdown)));
            }
        }
        let wait = async {
            loop {
                let notified = self.inner.connections_done.notified();
                if self.inner.connection_count() == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.inner.connection_count(),
                "connections still open after 10 s; exiting anyway"
            );
        }
        for host in self.inner.hosts() {
            crate::module::unload_all(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_backoff_doubles_and_caps() {
        let delays: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, vec![0, 0, 0, 1, 2, 4, 8, 16, 16, 16]);
    }

    #[tokio::test]
    async fn connections_per_ip_are_limited_except_loopback() {
        let config = Config::parse(
            "storage = 'memory'\n[limits]\nmax_connections_per_ip = 2\n[hosts.localhost]\n",
            std::path::Path::new("."),
        )
        .expect("config");
        let server = Server::builder(config)
            .generate_certificates(false)
            .build()
            .expect("server");
        let inner = server.inner();
        let remote: std::net::IpAddr = "203.0.113.9".parse().expect("ip");
        let a = inner.admit_ip(remote).expect("first");
        let _b = inner.admit_ip(remote).expect("second");
        assert!(inner.admit_ip(remote).is_none(), "third refused");
        drop(a);
        assert!(inner.admit_ip(remote).is_some(), "a slot freed up");
        let local: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
        let held: Vec<IpSlot> = (0..10).filter_map(|_| inner.admit_ip(local)).collect();
        assert_eq!(held.len(), 10, "loopback is exempt");
    }
}
