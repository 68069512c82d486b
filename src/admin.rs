//! Account administration, shared by the CLI and the admin socket.
//!
//! sled lets one process open the database. While the server runs it listens on a Unix
//! socket (mode 0600, in the data directory), and the CLI sends its request there;
//! otherwise the CLI opens the database itself. One JSON object per line each way.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::Config;
use crate::sasl::{normalize_username, StoredCredentials, DEFAULT_ITERATIONS};
use crate::server::ServerInner;
use crate::stanza::{StreamError, StreamErrorCondition};
use crate::storage::SharedStorage;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminRequest {
    AddUser {
        jid: String,
        password: String,
    },
    Passwd {
        jid: String,
        password: String,
    },
    DelUser {
        jid: String,
    },
    Users {
        host: Option<String>,
    },
    /// Re-read the config file (as SIGHUP does). Only through a running server.
    Reload,
    /// What `jid` would receive from external_services now, credentials included.
    Extdisco {
        jid: String,
        kind: Option<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AdminResponse {
    pub ok: bool,
    /// Human-readable outcome or error.
    pub message: String,
    /// Output lines (accounts, services).
    #[serde(default)]
    pub lines: Vec<String>,
}

impl AdminResponse {
    fn ok(message: impl Into<String>) -> Self {
        AdminResponse {
            ok: true,
            message: message.into(),
            lines: Vec::new(),
        }
    }
}

/// Splits and normalises `user@host`, checking the host is served.
pub fn parse_account(config: &Config, jid: &str) -> anyhow::Result<(String, String)> {
    let bare = jid::BareJid::new(jid).with_context(|| format!("{jid:?} is not a valid JID"))?;
    let Some(node) = bare.node() else {
        bail!("{jid:?} has no user part; write user@{}", bare.domain());
    };
    let user =
        normalize_username(node.as_str()).with_context(|| format!("{jid:?}: invalid user name"))?;
    let host = bare.domain().to_string();
    if config.host(&host).is_none() {
        let served: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "this server does not serve {host} (configured hosts: {})",
            served.join(", ")
        );
    }
    Ok((user, host))
}

/// Runs one request against storage. `server`, when running, lets us close the
/// sessions of a deleted account.
pub async fn execute(
    config: &Config,
    storage: &SharedStorage,
    server: Option<&Arc<ServerInner>>,
    request: AdminRequest,
) -> anyhow::Result<AdminResponse> {
    match request {
        AdminRequest::AddUser { jid, password } => {
            let (user, host) = parse_account(config, &jid)?;
            let credentials = StoredCredentials::derive(&password, DEFAULT_ITERATIONS)
                .context("unusable password")?;
            if !storage.create_account(&host, &user, &credentials).await? {
                bail!("{user}@{host} already exists (use `tern passwd` to change its password)");
            }
            Ok(AdminResponse::ok(format!("created {user}@{host}")))
        }
        AdminRequest::Passwd { jid, password } => {
            let (user, host) = parse_account(config, &jid)?;
            let credentials = StoredCredentials::derive(&password, DEFAULT_ITERATIONS)
                .context("unusable password")?;
            if !storage.set_credentials(&host, &user, &credentials).await? {
                bail!("{user}@{host} does not exist");
            }
            Ok(AdminResponse::ok(format!(
                "changed the password of {user}@{host}"
            )))
        }
        AdminRequest::DelUser { jid } => {
            let (user, host) = parse_account(config, &jid)?;
            // With the server running, through its host: modules forget the account too.
            let running = server.and_then(|s| s.host(&host));
            let existed = match &running {
                Some(h) => h.delete_account(&user).await?,
                None => storage.delete_account(&host, &user).await?,
            };
            if !existed {
                bail!("{user}@{host} does not exist");
            }
            if let Some(h) = running {
                for session in h.sessions_of(&user) {
                    session.close(Some(StreamError::with_text(
                        StreamErrorCondition::NotAuthorized,
                        "account deleted",
                    )));
                }
            }
            Ok(AdminResponse::ok(format!("deleted {user}@{host}")))
        }
        AdminRequest::Users { host } => {
            let hosts: Vec<String> = match host {
                Some(host) => {
                    if config.host(&host).is_none() {
                        bail!("this server does not serve {host}");
                    }
                    vec![host]
                }
                None => config.hosts.iter().map(|h| h.name.clone()).collect(),
            };
            let mut users = Vec::new();
            for host in hosts {
                for user in storage.list_accounts(&host)? {
                    users.push(format!("{user}@{host}"));
                }
            }
            Ok(AdminResponse {
                ok: true,
                message: format!("{} account(s)", users.len()),
                lines: users,
            })
        }
        AdminRequest::Reload => {
            let Some(server) = server else {
                bail!("the server is not running; nothing to reload");
            };
            let diagnostics = crate::server::Server::from_inner(server.clone())
                .reload_from_file()
                .await?;
            Ok(AdminResponse {
                ok: true,
                message: "config reloaded".to_string(),
                lines: diagnostics.iter().map(ToString::to_string).collect(),
            })
        }
        AdminRequest::Extdisco { jid, kind } => {
            let (user, host_name) = parse_account(config, &jid)?;
            let bare = jid::BareJid::new(&format!("{user}@{host_name}"))?;
            let preview = |host: Arc<crate::host::Host>| async move {
                if !crate::module::is_loaded(&host, crate::modules::external_services::MODULE.name)
                {
                    bail!("external_services is not enabled on {}", host.name);
                }
                crate::modules::external_services::preview(&host, &bare, kind.as_deref()).await
            };
            let services = match server {
                Some(server) => {
                    let host = server.host(&host_name).context("unknown host")?;
                    preview(host).await?
                }
                None => {
                    // Offline: the same modules on an in-memory store.
                    let offline = crate::server::Server::builder(config.clone())
                        .storage(Arc::new(crate::storage::memory::MemoryStorage::default()))
                        .generate_certificates(false)
                        .build()?;
                    offline.load_modules()?;
                    let host = offline.host(&host_name).context("unknown host")?;
                    let services = preview(host.clone()).await;
                    crate::module::unload_all(&host);
                    services?
                }
            };
            let lines = services
                .iter()
                .map(crate::modules::external_services::describe)
                .collect();
            Ok(AdminResponse {
                ok: true,
                message: format!("{} service(s) for {user}@{host_name}", services.len()),
                lines,
            })
        }
    }
}

/// Serves the admin socket until the server shuts down.
pub(crate) async fn serve_socket(server: Arc<ServerInner>, path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // A stale socket from a crashed run: remove it, but never steal a live one.
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!(
                "another server is already running (admin socket {} answers)",
                path.display()
            );
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    let path = path.to_path_buf();
    tokio::spawn(async move {
        let mut shutdown = server.shutdown_signal();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let server = server.clone();
                        tokio::spawn(async move {
                            if let Err(err) = answer(server, stream).await {
                                tracing::warn!("admin socket: {err:#}");
                            }
                        });
                    }
                }
                _ = crate::server::until_shutdown(&mut shutdown) => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

async fn answer(server: Arc<ServerInner>, stream: UnixStream) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let response = match serde_json::from_str::<AdminRequest>(&line) {
            Ok(request) => {
                let config = server.config();
                match execute(&config, server.storage(), Some(&server), request).await {
                    Ok(response) => response,
                    Err(err) => AdminResponse {
                        ok: false,
                        message: format!("{err:#}"),
                        lines: Vec::new(),
                    },
                }
            }
            Err(err) => AdminResponse {
                ok: false,
                message: format!("bad request: {err}"),
                lines: Vec::new(),
            },
        };
        let mut out = serde_json::to_vec(&response)?;
        out.push(b'\n');
        write.write_all(&out).await?;
    }
    Ok(())
}

/// Sends a request to a running server. `Ok(None)` when no server listens.
pub async fn request_via_socket(
    path: &Path,
    request: &AdminRequest,
) -> anyhow::Result<Option<AdminResponse>> {
    let Ok(stream) = UnixStream::connect(path).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(request)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    let mut lines = BufReader::new(read).lines();
    let line = lines
        .next_line()
        .await?
        .context("the server closed the admin socket without answering")?;
    Ok(Some(
        serde_json::from_str(&line).context("unreadable answer from the admin socket")?,
    ))
}
