//! The session task: owns the session's outbound queue, its writer (while a connection
//! is attached) and XEP-0198 state. It outlives a lost connection when the session is
//! resumable, and it ends the session: table removal, `SessionClosed`, and what happens
//! to stanzas the client never acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::connection::stream_error_xml;
use crate::byte_stream::WriteHalf;
use crate::host::Host;
use crate::server::ServerInner;
use crate::session::{Outbound, SessionClosed, SessionHandle};
use crate::stanza::{StanzaError, StreamError, StreamErrorCondition};
use crate::xml::{writer, LazyStanza};

const NS_SM: &str = "urn:xmpp:sm:3";

/// How long a closing stream's last words and shutdown may wait for a client that does
/// not read.
const CLOSE_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// XEP-0198 commands, queued in order with the stanzas.
pub(crate) enum SmCommand {
    Enable {
        id: Option<String>,
        resume_timeout: Option<Duration>,
    },
    /// Answer the client's `<r/>`.
    Answer,
    /// The client's `<a h/>`.
    Acked(u32),
    /// Connection `connection` was lost; keep the session for resumption. Ignored when
    /// another connection has taken over since (its reader may report late).
    Detach { connection: u64 },
    /// A new connection resumed the session; `client_h` is what the client received.
    Attach {
        connection: u64,
        writer: WriteHalf,
        done: oneshot::Sender<()>,
        client_h: u32,
    },
}

struct Sm {
    resume_timeout: Option<Duration>,
    id: Option<String>,
    /// Stanzas sent to the client since enabling (mod 2^32).
    sent: u32,
    /// Sent but not acknowledged, oldest first.
    unacked: VecDeque<LazyStanza>,
    /// Queued while detached: not yet sent, not counted.
    pending: Vec<LazyStanza>,
    /// `sent` when we last asked for an ack.
    requested_at: u32,
}

pub(crate) struct SessionTask {
    pub server: Arc<ServerInner>,
    pub host: Arc<Host>,
    pub handle: SessionHandle,
    pub writer: Option<WriteHalf>,
    /// Tells the attached connection's reader that the stream is over for it.
    pub done: Option<oneshot::Sender<()>>,
    /// Which connection is attached (0: the one that bound the session).
    pub connection: u64,
    /// Counts the session as open until it has fully ended (shutdown waits for it).
    pub _guard: crate::server::ConnectionGuard,
}

impl Drop for SessionTask {
    fn drop(&mut self) {
        // However the task ends (even dropped with the runtime), senders waiting for
        // room must not wait for ever.
        self.handle.queue().close();
    }
}

/// What woke a session that has no connection attached.
enum DetachedWake {
    Message(Option<Outbound>),
    Expired,
    Shutdown,
}

impl SessionTask {
    /// The task's future. A plain function around an `async move` block: an `async fn`
    /// taking `self` would hold a second, dead copy of it for the session's lifetime.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub(crate) fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            // Boxed: most sessions never enable stream management.
            let mut sm: Option<Box<Sm>> = None;
            let mut deadline: Option<Instant> = None;
            // Allocated per batch and released after it: an idle session holds no buffer.
            let mut buf: Vec<u8> = Vec::new();
            let reason = loop {
                let message = if self.writer.is_some() {
                    // Attached: nothing expires, and shutdown comes through the queue
                    // (the server closes every bound session).
                    self.handle.queue().recv().await
                } else {
                    // Boxed: rare, and its timer and shutdown watch would otherwise be
                    // part of every session's memory.
                    match Box::pin(self.wait_detached(deadline)).await {
                        DetachedWake::Message(message) => message,
                        DetachedWake::Expired => break "not resumed in time".to_string(),
                        DetachedWake::Shutdown => break "server shutting down".to_string(),
                    }
                };
                let Some(message) = message else {
                    break "session dropped".to_string();
                };
                if let Some(reason) = self
                    .process_batch(message, &mut sm, &mut deadline, &mut buf)
                    .await
                {
                    break reason;
                }
            };
            Box::pin(self.end_session(reason, sm)).await;
        }
    }

    /// A detached session waits for a stanza to hold, its resumption deadline, or the
    /// server's shutdown (it has no reader to notice that).
    async fn wait_detached(&mut self, deadline: Option<Instant>) -> DetachedWake {
        let mut shutdown = self.server.shutdown_signal();
        tokio::select! {
            message = self.handle.queue().recv() => DetachedWake::Message(message),
            _ = sleep_until(deadline) => DetachedWake::Expired,
            _ = crate::server::until_shutdown(&mut shutdown) => DetachedWake::Shutdown,
        }
    }

    /// Writes `message` and whatever else is already queued in one go. `Some(reason)`
    /// when the session is over.
    async fn process_batch(
        &mut self,
        message: Outbound,
        sm: &mut Option<Box<Sm>>,
        deadline: &mut Option<Instant>,
        buf: &mut Vec<u8>,
    ) -> Option<String> {
        // Batch what is already queued into one write. Room for a typical stanza up
        // front: grown from empty, the buffer took about six allocations per message.
        // 1 KiB holds a XEP-0215 services answer in its IQ (about 950 bytes), which
        // 512 bytes made a reallocation with a copy; it is still the largest block
        // glibc keeps in its per-thread cache (1,032 bytes).
        buf.reserve(1024);
        let mut next = Some(message);
        let mut closing: Option<Option<StreamError>> = None;
        // What the session may hold for a client that does not acknowledge (or is
        // away): as much as the outbound queue.
        let max_held = self.server.config().limits.outbound_queue;
        while let Some(message) = next.take() {
            match message {
                Outbound::Stanza(stanza) => match (&mut *sm, self.writer.is_some()) {
                    (Some(state), attached) => {
                        if attached {
                            stanza.append_to(buf);
                            state.sent = state.sent.wrapping_add(1);
                            state.unacked.push_back(*stanza);
                        } else {
                            state.pending.push(*stanza);
                        }
                        if state.unacked.len() + state.pending.len() > max_held {
                            closing = Some(Some(StreamError::with_text(
                                StreamErrorCondition::PolicyViolation,
                                "too many unacknowledged stanzas",
                            )));
                            break;
                        }
                    }
                    (None, _) => stanza.append_to(buf),
                },
                Outbound::Nonza(element) => {
                    if self.writer.is_some() {
                        writer::append_to(&element, buf);
                    }
                }
                Outbound::Close(error) => {
                    closing = Some(error.map(|error| *error));
                    break;
                }
                Outbound::Sm(command) => {
                    // Boxed, as `write_last` and `end_session`: rare steps whose
                    // futures would otherwise enlarge every session task.
                    if let Err(error) = Box::pin(self.sm_command(*command, sm, deadline, buf)).await
                    {
                        closing = Some(Some(error));
                        break;
                    }
                }
            }
            if buf.len() < 64 * 1024 {
                next = self.handle.queue().try_recv();
            }
        }
        // Ask for an acknowledgement every few stanzas, so the unacked queue stays short.
        if let Some(state) = sm.as_mut() {
            if self.writer.is_some()
                && state.sent.wrapping_sub(state.requested_at) >= 5
                && closing.is_none()
            {
                buf.extend_from_slice(b"<r xmlns='urn:xmpp:sm:3'/>");
                state.requested_at = state.sent;
            }
        }
        // The stream's end goes out with the batch: the stanzas before it, the stream
        // error if there is one, `</stream:stream>`, and the transport's end.
        if let (Some(error), true) = (&closing, self.writer.is_some()) {
            if let Some(error) = error {
                buf.extend_from_slice(stream_error_xml(error).as_bytes());
            }
            buf.extend_from_slice(writer::STREAM_CLOSE.as_bytes());
        }
        let wrote = !buf.is_empty();
        let written = if closing.is_some() {
            // Boxed, as `end_session`: a step of the session's last batch only.
            wrote && Box::pin(self.write_last(buf)).await
        } else {
            let stall = self.server.config().limits.ping_timeout;
            wrote && self.write(buf, stall).await
        };
        // Released whether or not anything was written (an acknowledgement writes
        // nothing): an idle session holds no buffer.
        *buf = Vec::new();
        if wrote && !written {
            // The connection broke under us: the reader will notice too.
            if sm.as_ref().is_some_and(|s| s.resume_timeout.is_some()) {
                self.detach(sm, deadline);
            } else if closing.is_none() {
                return Some("connection lost".to_string());
            }
        }
        if let Some(error) = closing {
            let reason = error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "closed".to_string());
            self.release_reader();
            return Some(reason);
        }
        None
    }

    async fn sm_command(
        &mut self,
        command: SmCommand,
        sm: &mut Option<Box<Sm>>,
        deadline: &mut Option<Instant>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        match command {
            SmCommand::Enable { id, resume_timeout } => {
                let mut enabled = format!("<enabled xmlns='{NS_SM}'");
                if let (Some(id), Some(timeout)) = (&id, resume_timeout) {
                    enabled.push_str(&format!(
                        " id='{}' resume='true' max='{}'",
                        writer::escape(id),
                        timeout.as_secs()
                    ));
                }
                enabled.push_str("/>");
                buf.extend_from_slice(enabled.as_bytes());
                *sm = Some(Box::new(Sm {
                    resume_timeout,
                    id,
                    sent: 0,
                    unacked: VecDeque::new(),
                    pending: Vec::new(),
                    requested_at: 0,
                }));
            }
            SmCommand::Answer => {
                if sm.is_some() {
                    buf.extend_from_slice(
                        format!("<a xmlns='{NS_SM}' h='{}'/>", self.handle.sm_handled()).as_bytes(),
                    );
                }
            }
            SmCommand::Acked(h) => {
                if let Some(state) = sm {
                    acknowledge(state, h)?;
                }
            }
            SmCommand::Detach { connection } => {
                if connection == self.connection {
                    self.detach(sm, deadline);
                }
            }
            SmCommand::Attach {
                connection,
                writer,
                done,
                client_h,
            } => {
                let Some(state) = sm else {
                    return Ok(());
                };
                // A half-open old connection: its reader stops, its writer goes.
                if let Some(old) = self.done.take() {
                    let _ = old.send(());
                }
                if let Some(mut old) = self.writer.take() {
                    let _ = old.shutdown().await;
                }
                self.writer = Some(writer);
                self.done = Some(done);
                self.connection = connection;
                *deadline = None;
                // On the new connection, so that a bad `h` is told to the client.
                acknowledge(state, client_h)?;
                let previd = state.id.clone().unwrap_or_default();
                buf.extend_from_slice(
                    format!(
                        "<resumed xmlns='{NS_SM}' h='{}' previd='{}'/>",
                        self.handle.sm_handled(),
                        writer::escape(&previd)
                    )
                    .as_bytes(),
                );
                // What the client missed, then what queued up while it was away.
                for stanza in &state.unacked {
                    stanza.append_to(buf);
                }
                for stanza in std::mem::take(&mut state.pending) {
                    stanza.append_to(buf);
                    state.sent = state.sent.wrapping_add(1);
                    state.unacked.push_back(stanza);
                }
                tracing::info!(jid = %self.handle.jid(), "session resumed");
            }
        }
        Ok(())
    }

    fn detach(&mut self, sm: &mut Option<Box<Sm>>, deadline: &mut Option<Instant>) {
        self.writer = None;
        self.release_reader();
        if let Some(timeout) = sm.as_ref().and_then(|s| s.resume_timeout) {
            *deadline = Some(Instant::now() + timeout);
            tracing::info!(jid = %self.handle.jid(), "connection lost; session kept for resumption for {timeout:?}");
        }
    }

    /// Writes to the attached connection. A client that stops reading stalls the write:
    /// past `stall` (`ping_timeout`) the connection counts as lost (otherwise the task
    /// would wait forever, with the close and everything else queued behind it).
    async fn write(&mut self, bytes: &[u8], stall: Duration) -> bool {
        let Some(writer) = self.writer.as_mut() else {
            return false;
        };
        {
            let write =
                async { writer.write_all(bytes).await.is_ok() && writer.flush().await.is_ok() };
            let mut write = std::pin::pin!(write);
            // Almost every write completes at once (the socket has room): those need no
            // timer, whose arming and removal would cost every stanza.
            if let std::task::Poll::Ready(written) = futures::poll!(write.as_mut()) {
                return written;
            }
            // Boxed: the timer would otherwise be part of every session's memory.
            if let Ok(written) = Box::pin(tokio::time::timeout(stall, write)).await {
                return written;
            }
        }
        tracing::info!(jid = %self.handle.jid(), "the client has not read for {stall:?}; dropping the connection");
        // Half a stanza may have gone out: this connection cannot be used again.
        if let Some(mut writer) = self.writer.take() {
            let _ = Box::pin(tokio::time::timeout(
                Duration::from_secs(1),
                writer.shutdown(),
            ))
            .await;
        }
        false
    }

    /// Writes a closing stream's last words and ends the transport with them (TLS
    /// close_notify, TCP FIN): one send. The connection is done with either way.
    async fn write_last(&mut self, bytes: &[u8]) -> bool {
        let Some(mut writer) = self.writer.take() else {
            return false;
        };
        let ended = tokio::time::timeout(CLOSE_WRITE_LIMIT, writer.end_with(bytes)).await;
        if ended.is_err() {
            tracing::info!(jid = %self.handle.jid(), "the client has not read for {CLOSE_WRITE_LIMIT:?}; dropping the connection");
        }
        matches!(ended, Ok(Ok(())))
    }

    /// The stream is over (its end went out with `write_last`, or its connection
    /// broke): the reader stops.
    fn release_reader(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }

    /// The session is over: out of the table, `SessionClosed`, and stanzas the client
    /// never acknowledged handled as RFC 6121 would for an unavailable resource.
    async fn end_session(self, reason: String, sm: Option<Box<Sm>>) {
        self.handle.close(None);
        self.host.remove_session(&self.handle);
        if let Some(id) = self.handle.sm_resume_id() {
            self.host.forget_resumable(&id);
        }
        tracing::info!(jid = %self.handle.jid(), reason, "session closed");
        let mut closed = SessionClosed {
            host: self.host.clone(),
            session: self.handle.clone(),
            reason,
        };
        if let Err(err) = self.host.events.fire(&mut closed).await {
            tracing::warn!(%err, "session-closed handler failed");
        }
        if let Some(state) = sm {
            let undelivered: Vec<LazyStanza> =
                state.unacked.into_iter().chain(state.pending).collect();
            for stanza in undelivered {
                redeliver(&self.server, stanza).await;
            }
        }
        // Anything still queued was never written, with or without stream management:
        // same treatment (messages re-routed, requests answered).
        self.handle.queue().close();
        while let Some(message) = self.handle.queue().try_recv() {
            if let Outbound::Stanza(stanza) = message {
                redeliver(&self.server, *stanza).await;
            }
        }
    }
}

/// Messages go back through the router (now without this resource: another resource or
/// offline storage takes them); requests are answered with an error; the rest (presence,
/// results) is dropped.
async fn redeliver(server: &Arc<ServerInner>, stanza: LazyStanza) {
    match stanza.name() {
        "message"
            if stanza.attr("type") != Some("error") && stanza.attr("type") != Some("groupchat") =>
        {
            crate::router::route(server, stanza.into_element(), None).await;
        }
        "iq" if matches!(stanza.attr("type"), Some("get") | Some("set")) => {
            let error = StanzaError::new(crate::stanza::Condition::RecipientUnavailable);
            crate::router::bounce(server, &stanza.into_element(), error).await;
        }
        _ => {}
    }
}

/// Drops acknowledged stanzas. `h` beyond what was sent is a protocol error
/// (XEP-0198 §4: `undefined-condition`).
fn acknowledge(state: &mut Sm, h: u32) -> Result<(), StreamError> {
    let acked_before = state.sent.wrapping_sub(state.unacked.len() as u32);
    let newly = h.wrapping_sub(acked_before);
    if newly as usize > state.unacked.len() {
        return Err(StreamError::with_text(
            StreamErrorCondition::UndefinedCondition,
            format!(
                "acknowledged {h} stanzas, but only {} were sent",
                state.sent
            ),
        ));
    }
    state.unacked.drain(..newly as usize);
    Ok(())
}

/// Sleeps until `deadline`; never wakes without one (a `select!` branch that is off).
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(sent: u32, unacked: usize) -> Sm {
        Sm {
            resume_timeout: None,
            id: None,
            sent,
            unacked: (0..unacked)
                .map(|i| crate::xml::Element::bare(format!("m{i}"), "jabber:client").into())
                .collect(),
            pending: Vec::new(),
            requested_at: 0,
        }
    }

    #[test]
    fn acks_drop_the_oldest_and_wrap() {
        let mut s = state(10, 4);
        acknowledge(&mut s, 8).expect("valid");
        assert_eq!(s.unacked.len(), 2);
        assert_eq!(
            s.unacked.front().map(|e| e.name().to_string()).as_deref(),
            Some("m2")
        );
        acknowledge(&mut s, 8).expect("repeated ack is fine");
        assert!(acknowledge(&mut s, 11).is_err(), "more than sent");
        // Around the 2^32 wrap.
        let mut s = state(2, 4); // sent wrapped: 2^32 - 2 .. 2
        acknowledge(&mut s, u32::MAX).expect("valid across the wrap");
        assert_eq!(s.unacked.len(), 3);
        acknowledge(&mut s, 2).expect("valid");
        assert!(s.unacked.is_empty());
    }
}
