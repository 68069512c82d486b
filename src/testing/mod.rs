//! An in-process Tern for tests, ours and other projects': a real server on
//! 127.0.0.1:0 with memory storage and pre-made users, plus a client that logs in.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tern::testing::TestServer;
//! let server = TestServer::builder().user("romeo", "pw").user("juliet", "pw").start().await?;
//! let mut romeo = server.client("romeo").await?;
//! let mut juliet = server.client("juliet").await?;
//! romeo.send_str("<message to='juliet@localhost' type='chat'><body>hi</body></message>").await?;
//! let message = juliet.expect().await?;
//! assert_eq!(message.attr("from"), Some(romeo.jid().to_string().as_str()));
//! # Ok(()) }
//! ```

mod client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use toml::{Table, Value};

pub use client::{ClientOptions, RawClient, SaslRefusal, TestClient, TlsMode};

use crate::config::Config;
use crate::host::Host;
use crate::module::ModuleDescriptor;
use crate::sasl::StoredCredentials;
use crate::server::{Listeners, Server};

pub struct TestServerBuilder {
    hosts: Vec<String>,
    users: Vec<(String, String)>,
    extra_config: Vec<String>,
    tls: bool,
    modules: Vec<ModuleDescriptor>,
}

impl TestServerBuilder {
    /// Adds a virtual host (the first is the default; `localhost` if none is added).
    pub fn host(mut self, name: &str) -> Self {
        self.hosts.push(name.to_string());
        self
    }

    /// Adds an account: `romeo` (on the first host) or `romeo@example.org`.
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.users.push((user.to_string(), password.to_string()));
        self
    }

    /// TOML merged over the generated config (tables merge key by key), e.g.
    /// `[modules.version]\nname = "x"` or `modules_enabled = [...]`.
    pub fn config_toml(mut self, toml: &str) -> Self {
        self.extra_config.push(toml.to_string());
        self
    }

    /// TLS with a generated certificate: STARTTLS required and a direct TLS listener.
    /// Without it (the default) clients authenticate over plain TCP: fast tests.
    pub fn tls(mut self, yes: bool) -> Self {
        self.tls = yes;
        self
    }

    /// Makes a module available; enable it with `config_toml("modules_enabled = [..]")`.
    pub fn module(mut self, module: ModuleDescriptor) -> Self {
        self.modules.push(module);
        self
    }

    pub async fn start(self) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let hosts = if self.hosts.is_empty() {
            vec!["localhost".to_string()]
        } else {
            self.hosts.clone()
        };
        let mut root = Table::new();
        root.insert("storage".into(), Value::String("memory".into()));
        root.insert(
            "data_dir".into(),
            Value::String(dir.path().join("data").display().to_string()),
        );
        root.insert("require_encryption".into(), Value::Boolean(self.tls));
        let mut listen = Table::new();
        listen.insert(
            "c2s".into(),
            Value::Array(vec![Value::String("127.0.0.1:0".into())]),
        );
        let direct = if self.tls {
            vec![Value::String("127.0.0.1:0".into())]
        } else {
            vec![]
        };
        listen.insert("c2s_direct_tls".into(), Value::Array(direct));
        root.insert("listen".into(), Value::Table(listen));
        let mut tls = Table::new();
        tls.insert(
            "certs_dir".into(),
            Value::String(dir.path().join("certs").display().to_string()),
        );
        root.insert("tls".into(), Value::Table(tls));
        let mut host_tables = Table::new();
        for host in &hosts {
            host_tables.insert(host.clone(), Value::Table(Table::new()));
        }
        root.insert("hosts".into(), Value::Table(host_tables));
        let base = root.clone();
        for extra in &self.extra_config {
            let table: Table = extra.parse().context("TestServer config_toml")?;
            merge(&mut root, table);
        }
        let source = toml::to_string(&root).context("serialising the test config")?;
        let config = Config::parse(&source, dir.path()).context("test config")?;

        let mut builder = Server::builder(config.clone())
            .storage(Arc::new(crate::storage::memory::MemoryStorage::default()))
            .generate_certificates(self.tls);
        for module in self.modules {
            builder = builder.module(module);
        }
        let server = builder.build()?;
        for (user, password) in &self.users {
            let (local, host) = match user.split_once('@') {
                Some((local, host)) => (local.to_string(), host.to_string()),
                None => (user.clone(), hosts[0].clone()),
            };
            // Fewer iterations than production: tests create many accounts.
            let credentials = StoredCredentials::derive(password, 4096)?;
            server
                .storage()
                .create_account(&host, &local, &credentials)
                .await?;
        }
        let listeners = Listeners::bind(&config).await?;
        let addr = *listeners.c2s_addrs().first().context("no c2s listener")?;
        let direct_tls_addr = listeners.direct_tls_addrs().first().copied();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = server.clone();
        let serving = tokio::spawn(async move {
            let stop = async {
                let _ = stop_rx.await;
            };
            if let Err(err) = running.serve(listeners, stop).await {
                tracing::error!("test server failed: {err:#}");
            }
        });
        // serve() loads modules before accepting; wait until they are in.
        let first_host = server.host(&hosts[0]).context("host missing")?;
        for _ in 0..200 {
            if !crate::module::loaded(&first_host).is_empty() || config.hosts[0].modules.is_empty()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let ca_cert = self.tls.then(|| config.hosts[0].certificate.clone());
        Ok(TestServer {
            server,
            addr,
            direct_tls_addr,
            hosts,
            ca_cert,
            stop: Some(stop_tx),
            serving: Some(serving),
            base,
            _dir: dir,
        })
    }
}

fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(new)) => merge(existing, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// A running in-process server. Shuts down when dropped (or call [`TestServer::shutdown`]).
pub struct TestServer {
    server: Server,
    addr: SocketAddr,
    direct_tls_addr: Option<SocketAddr>,
    hosts: Vec<String>,
    ca_cert: Option<PathBuf>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
    /// The generated config before `config_toml` additions, for reloads.
    base: Table,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            hosts: Vec::new(),
            users: Vec::new(),
            extra_config: Vec::new(),
            tls: false,
            modules: Vec::new(),
        }
    }

    /// The STARTTLS (or plain, without TLS) client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The direct TLS address, when TLS is on.
    pub fn direct_tls_addr(&self) -> Option<SocketAddr> {
        self.direct_tls_addr
    }

    /// The generated certificate (PEM file) clients must trust, when TLS is on.
    pub fn ca_cert(&self) -> Option<&PathBuf> {
        self.ca_cert.as_ref()
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn domain(&self) -> &str {
        &self.hosts[0]
    }

    pub fn host(&self, name: &str) -> Option<Arc<Host>> {
        self.server.host(name)
    }

    /// Connection options for `user` (`romeo` or `romeo@host`) with the password the
    /// builder gave; adjust and pass to [`TestClient::connect`].
    pub fn options(&self, user: &str, password: &str) -> ClientOptions {
        let (local, host) = match user.split_once('@') {
            Some((local, host)) => (local.to_string(), host.to_string()),
            None => (user.to_string(), self.hosts[0].clone()),
        };
        ClientOptions {
            addr: self.addr,
            host,
            username: local,
            password: password.to_string(),
            tls: if self.ca_cert.is_some() {
                TlsMode::StartTls
            } else {
                TlsMode::None
            },
            ca_cert: self.ca_cert.clone(),
            mechanism: "SCRAM-SHA-1".to_string(),
            resource: None,
        }
    }

    /// An authenticated, bound client for `user`, whose password must be `pw` unless
    /// given with [`TestServer::client_with`].
    pub async fn client(&self, user: &str) -> anyhow::Result<TestClient> {
        TestClient::connect(self.options(user, "pw")).await
    }

    pub async fn client_with(&self, options: ClientOptions) -> anyhow::Result<TestClient> {
        TestClient::connect(options).await
    }

    /// Reloads the server with the generated base config plus `toml` (replacing what
    /// `config_toml` added), as SIGHUP does. Returns the diagnostics, or those that made
    /// the reload fail.
    pub async fn reload_toml(
        &self,
        toml: &str,
    ) -> Result<Vec<crate::config::Diagnostic>, Vec<crate::config::Diagnostic>> {
        let mut root = self.base.clone();
        match toml.parse::<Table>() {
            Ok(table) => merge(&mut root, table),
            Err(err) => {
                return Err(vec![crate::config::Diagnostic {
                    severity: crate::config::Severity::Error,
                    key: String::new(),
                    line: None,
                    message: format!("TOML syntax error: {err}"),
                }])
            }
        }
        let source = toml::to_string(&root).unwrap_or_default();
        let config = match Config::parse(&source, self._dir.path()) {
            Ok(config) => config,
            Err(err) => {
                return Err(vec![crate::config::Diagnostic {
                    severity: crate::config::Severity::Error,
                    key: String::new(),
                    line: None,
                    message: format!("{err:#}"),
                }])
            }
        };
        self.server.reload(config).await
    }

    /// A raw TCP connection, for negotiation tests.
    pub async fn raw(&self) -> anyhow::Result<RawClient> {
        RawClient::connect(self.addr).await
    }

    /// Closes every stream and stops the server.
    pub async fn shutdown(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
