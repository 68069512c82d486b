//! The real `tern` process: a config in a temporary folder, start, wait for the port,
//! SIGKILL, and opening its database from the test once it is dead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

pub const HOST: &str = "localhost";
pub const PASSWORD: &str = "crash-test-pw";

/// A server installation: config file, data folder, port.
pub struct Install {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub addr: SocketAddr,
}

impl Install {
    pub fn new(dir: &Path, storage: Option<&str>) -> anyhow::Result<Install> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let storage_line = storage
            .map(|s| format!("storage = \"{s}\"\n"))
            .unwrap_or_default();
        // Registration open to everyone at any rate, offline storage without a practical
        // cap: the loop makes hundreds of both. No pings: a killed client is not idle.
        let source = format!(
            "data_dir = \"data\"\n{storage_line}require_encryption = false\n\
             modules_enabled = [\"disco\", \"ping\", \"roster\", \"presence\", \"offline\", \"vcard\", \"private\", \"register\"]\n\
             [listen]\nc2s = [\"127.0.0.1:{port}\"]\nc2s_direct_tls = []\n\
             [limits]\nidle_timeout = 0\nrate = 0\n\
             [tls]\ncerts_dir = \"certs\"\n\
             [modules.register]\nallow_registration = true\nregistrations_per_hour = 10000\nmin_password_length = 4\n\
             [modules.offline]\nmax_messages = 1000000\n\
             [hosts.localhost]\n"
        );
        let config = dir.join("tern.toml");
        std::fs::write(&config, &source)
            .with_context(|| format!("writing {}", config.display()))?;
        Ok(Install {
            dir: dir.to_path_buf(),
            config,
            addr: format!("127.0.0.1:{port}").parse()?,
        })
    }

    /// `tern adduser` while no server runs (it writes the database directly).
    pub fn adduser(&self, user: &str) -> anyhow::Result<()> {
        let status = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["adduser", &format!("{user}@{HOST}"), "--password", PASSWORD])
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running tern adduser")?;
        anyhow::ensure!(status.success(), "tern adduser {user} failed: {status}");
        Ok(())
    }

    pub fn spawn(&self) -> anyhow::Result<Running> {
        let log = self.dir.join("server.log");
        // Appended across restarts: the evidence if a restart fails.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("spawning tern")?;
        Ok(Running { child: Some(child) })
    }

    /// Opens the database as the server does (same config, same backend) to read it.
    pub fn open_storage(&self) -> anyhow::Result<tern::storage::SharedStorage> {
        let source = std::fs::read_to_string(&self.config)?;
        let config = tern::config::Config::parse(&source, &self.dir)?;
        tern::storage::open(&config)
    }
}

/// A running server; killed when dropped (a failing test leaves no process behind).
pub struct Running {
    child: Option<Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Running {
    /// Waits until the server accepts connections; fails if it exited (e.g. the database
    /// did not open).
    pub async fn wait_listening(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        // Generous: a debug build recovering a large sled log on a busy 2-core machine.
        let child = self.child.as_mut().context("already killed")?;
        for _ in 0..2400 {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("tern exited during start-up: {status} (see server.log)");
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("tern did not listen on {addr} within 60 s")
    }

    /// SIGKILL, and reap the process (its file locks are gone after this).
    pub fn kill(mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("already killed")?;
        child.kill().context("SIGKILL")?;
        child.wait().context("reaping tern")?;
        Ok(())
    }
}
