//! Client-to-server connections: listeners, stream negotiation (TLS, SASL, binding) and
//! the bound session loop.

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
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let server = server.clone();
                    let guard = server.track_connection();
                    tokio::spawn(async move {
                        connection::handle(server, tcp, peer, direct_tls).await;
                        drop(guard);
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
