//! The bound session: a reader loop in the connection task, a writer task draining the
//! session's queue. Stanzas from one session are processed one at a time, in order.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::connection::{stream_error_xml, BoxIo, Conn, ReadError};
use crate::server::ServerInner;
use crate::session::{
    Outbound, SessionBound, SessionClosed, SessionHandle, SessionInfo, TopLevelElement,
};
use crate::stanza::{iq_result, StreamError, StreamErrorCondition};
use crate::xml::framer::{Frame, Framer};
use crate::xml::{ns, writer};

pub(crate) async fn run(server: Arc<ServerInner>, conn: Conn, info: SessionInfo) {
    let Some(host) = server.host(&info.host) else {
        return;
    };
    let Some(jid) = info.jid.clone() else {
        return;
    };
    let info = Arc::new(info);
    let Conn {
        io, framer, limits, ..
    } = conn;
    let (reader, writer_half) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel(server.config().limits.outbound_queue);
    let (done_tx, mut done_rx) = oneshot::channel();
    let writer_task = tokio::spawn(write_loop(writer_half, rx, done_tx));

    let handle = SessionHandle::new(info.clone(), jid.clone(), tx);
    host.add_session(handle.clone());
    tracing::info!(jid = %jid, peer = %info.peer, "session bound");
    let mut bound = SessionBound {
        host: host.clone(),
        session: handle.clone(),
    };
    if let Err(err) = host.events.fire(&mut bound).await {
        tracing::warn!(%err, "session-bound handler failed");
    }

    let mut conn = ReaderConn::new(reader, framer, limits);
    let mut shutdown = server.shutdown_signal();
    let reason = loop {
        let frame = tokio::select! {
            frame = conn.read_frame() => frame,
            _ = &mut done_rx => break "stream closed by the server".to_string(),
            _ = crate::server::until_shutdown(&mut shutdown) => {
                handle.close(Some(StreamError::new(StreamErrorCondition::SystemShutdown)));
                break "server shutting down".to_string();
            }
        };
        match frame {
            Ok(Frame::Stanza(stanza)) => {
                let nonza = stanza.ns() != ns::CLIENT
                    && !stanza.ns().is_empty()
                    && !matches!(stanza.name(), "message" | "presence" | "iq");
                if nonza {
                    let mut event = TopLevelElement {
                        host: host.clone(),
                        session: handle.clone(),
                        element: stanza,
                    };
                    match host.events.fire(&mut event).await {
                        Ok(crate::events::Flow::Handled) => continue,
                        Ok(crate::events::Flow::Continue) => {}
                        Err(err) => tracing::warn!(%err, "a top-level element handler failed"),
                    }
                    let error = StreamError::with_text(
                        StreamErrorCondition::UnsupportedStanzaType,
                        format!(
                            "unexpected element {{{}}}{}",
                            event.element.ns(),
                            event.element.name()
                        ),
                    );
                    let reason = error.to_string();
                    handle.close(Some(error));
                    break reason;
                }
                if is_legacy_session(&stanza) {
                    let mut reply = iq_result(&stanza, None);
                    reply.set_attr_to(&jid);
                    handle.send(reply);
                    continue;
                }
                if let Err(error) =
                    crate::router::from_session(&server, &host, &handle, stanza).await
                {
                    tracing::debug!(jid = %jid, %error, "closing the session");
                    let reason = error.to_string();
                    handle.close(Some(error));
                    break reason;
                }
            }
            Ok(Frame::Close) => {
                handle.close(None);
                break "closed by the client".to_string();
            }
            Ok(Frame::Open(_)) => {
                let error = StreamError::with_text(
                    StreamErrorCondition::NotWellFormed,
                    "unexpected stream header",
                );
                handle.close(Some(error));
                break "unexpected stream header".to_string();
            }
            Err(ReadError::Stream(error)) => {
                let reason = error.to_string();
                handle.close(Some(error));
                break reason;
            }
            Err(ReadError::Closed(reason)) => {
                handle.close(None);
                break reason;
            }
        }
    };

    host.remove_session(&handle);
    tracing::info!(jid = %jid, reason, "session closed");
    let mut closed = SessionClosed {
        host: host.clone(),
        session: handle.clone(),
        reason,
    };
    if let Err(err) = host.events.fire(&mut closed).await {
        tracing::warn!(%err, "session-closed handler failed");
    }
    drop(handle);
    // The writer ends after writing the close; do not let a stuck peer hold the task.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), writer_task).await;
}

fn is_legacy_session(stanza: &crate::xml::Element) -> bool {
    stanza.is("iq", ns::CLIENT)
        && stanza.attr("type") == Some("set")
        && stanza.get_child("session", ns::SESSION).is_some()
        && stanza.attr("to").is_none_or(|to| !to.contains('@'))
}

trait SetTo {
    fn set_attr_to(&mut self, jid: &jid::FullJid);
}

impl SetTo for crate::xml::Element {
    fn set_attr_to(&mut self, jid: &jid::FullJid) {
        use crate::xml::ElementExt;
        self.set("to", jid.to_string());
        self.remove_attr("from");
    }
}

/// The reading half, with the framer that survived negotiation.
struct ReaderConn {
    inner: Conn,
}

impl ReaderConn {
    fn new(
        reader: tokio::io::ReadHalf<BoxIo>,
        framer: Framer,
        limits: crate::xml::framer::FramerLimits,
    ) -> Self {
        let mut inner = Conn::new(Box::new(ReadOnly(reader)), limits);
        inner.framer = framer;
        ReaderConn { inner }
    }

    async fn read_frame(&mut self) -> Result<Frame, ReadError> {
        self.inner.read_frame().await
    }
}

/// Adapts a read half to the `Io` the framing code expects; writes go nowhere (the
/// writer task owns the other half).
struct ReadOnly(tokio::io::ReadHalf<BoxIo>);

impl tokio::io::AsyncRead for ReadOnly {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ReadOnly {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Drains the session's queue to the socket, batching what is already queued into one
/// write. Ends after a close request (or when every handle is gone).
async fn write_loop(
    mut out: WriteHalf<BoxIo>,
    mut rx: mpsc::Receiver<Outbound>,
    done: oneshot::Sender<()>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut closing: Option<Option<StreamError>> = None;
    'outer: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Outbound::Stanza(stanza) => buf.extend_from_slice(&writer::to_bytes(&stanza)),
                Outbound::Close(error) => {
                    closing = Some(error);
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
                break 'outer;
            }
            buf.clear();
        }
        if closing.is_some() {
            break;
        }
    }
    let error = closing.flatten();
    let mut tail = String::new();
    if let Some(error) = &error {
        tail.push_str(&stream_error_xml(error));
    }
    tail.push_str(writer::STREAM_CLOSE);
    let finish = async {
        out.write_all(tail.as_bytes()).await?;
        out.flush().await?;
        out.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), finish).await;
    let _ = done.send(());
}
