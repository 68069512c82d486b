//! Client-to-server connections: listeners, stream negotiation (TLS, SASL, binding) and
//! the bound session loop.

mod budget;
mod connection;
mod negotiation;
mod session_actor;
mod session_loop;

pub(crate) use session_actor::SmCommand;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::server::ServerInner;

/// Accepts connections until shutdown; one task per connection.
pub(crate) async fn accept_loop(server: Arc<ServerInner>, listener: TcpListener, direct_tls: bool) {
    let mut shutdown = server.shutdown_signal();
    let mut last_refusal_log: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Some(slot) = server.admit_ip(peer.ip()) else {
                        refuse(tcp, peer, direct_tls, &mut last_refusal_log);
                        continue;
                    };
                    let server = server.clone();
                    let guard = server.track_connection();
                    let connection = connection::handle(server, tcp, peer, direct_tls);
                    tokio::spawn(async move {
                        connection.await;
                        drop(guard);
                        drop(slot);
                    });
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = crate::server::until_shutdown(&mut shutdown) => break,
        }
    }
}

/// Over `max_connections_per_ip`: a plaintext client gets a stream error saying so (a
/// direct TLS one just a closed socket). Logged at most once a minute, not per attempt.
fn refuse(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    direct_tls: bool,
    last_log: &mut Option<std::time::Instant>,
) {
    if last_log.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(60)) {
        tracing::warn!(ip = %peer.ip(), "too many connections from one address; refusing more (logged once a minute)");
        *last_log = Some(std::time::Instant::now());
    }
    if direct_tls {
        return;
    }
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tcp;
        let error = crate::stanza::StreamError::with_text(
            crate::stanza::StreamErrorCondition::PolicyViolation,
            "too many connections from your address",
        );
        let mut out = crate::xml::writer::stream_header("", None, &crate::util::random_id(), "en");
        out.push_str(&connection::stream_error_xml(&error));
        out.push_str(crate::xml::writer::STREAM_CLOSE);
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tcp.write_all(out.as_bytes()),
        )
        .await;
        let _ = tcp.shutdown().await;
    });
}
