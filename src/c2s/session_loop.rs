//! The bound session: a reader loop in the connection task, and the session task
//! ([`super::session_actor`]) that writes. Stanzas from one session are processed one at
//! a time, in order.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::connection::{Conn, ReadError};
use super::session_actor::{SessionTask, SmCommand};
use crate::byte_stream::{self, ReadHalf};
use crate::host::Host;
use crate::server::ServerInner;
use crate::session::{Outbound, SessionBound, SessionHandle, SessionInfo, TopLevelElement};
use crate::stanza::{iq_result, StreamError, StreamErrorCondition};
use crate::xml::framer::{Frame, Framer};
use crate::xml::{ns, ElementExt};

/// A session that has bound its resource and is in the host's table, before its tasks
/// run. Dropped unused (the bind's result could not be written), it leaves the table.
pub(crate) struct NewSession {
    host: Arc<Host>,
    handle: SessionHandle,
    /// Not yet handed to its tasks.
    pending: bool,
}

impl NewSession {
    /// Enters the bound session (`info.jid` set) in the host's table, unless the
    /// account is at `limit` sessions and this one replaces none of them.
    pub(crate) fn enter(
        server: &ServerInner,
        host: &Arc<Host>,
        info: SessionInfo,
        limit: usize,
    ) -> Option<NewSession> {
        let jid = info.jid.clone()?;
        let handle = SessionHandle::new(Arc::new(info), jid, server.config().limits.outbound_queue);
        host.add_session(handle.clone(), limit).then(|| NewSession {
            host: host.clone(),
            handle,
            pending: true,
        })
    }
}

impl Drop for NewSession {
    fn drop(&mut self) {
        if self.pending {
            self.host.remove_session(&self.handle);
            // Nobody will read it: senders must not wait for room.
            self.handle.queue().close();
        }
    }
}

/// The future of a bound session, boxed: it is what every connected client holds for
/// as long as it stays. Built by plain functions around `async move` blocks because an
/// `async fn` keeps a second, dead copy of each argument it moves (rust-lang/rust#62958),
/// and the reading side's `Conn` is 400 bytes.
pub(crate) type SessionFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub(crate) fn run(server: Arc<ServerInner>, conn: Conn, mut new: NewSession) -> SessionFuture {
    if !std::mem::replace(&mut new.pending, false) {
        return Box::pin(async {});
    }
    let (host, handle) = (new.host.clone(), new.handle.clone());
    drop(new);
    let peer = handle.info().peer;
    let Conn {
        io, framer, limits, ..
    } = conn;
    let (reader, writer_half) = byte_stream::split(io);
    let (done_tx, mut done_rx) = oneshot::channel();
    let task = SessionTask {
        server: server.clone(),
        host: host.clone(),
        handle: handle.clone(),
        writer: Some(writer_half),
        done: Some(done_tx),
        connection: 0,
        _guard: server.track_connection(),
    };
    tokio::spawn(task.run());
    let mut reader = ReaderConn::new(reader, framer, limits, &server, peer);
    Box::pin(async move {
        tracing::info!(jid = %handle.jid(), %peer, "session bound");
        let mut bound = SessionBound {
            host: host.clone(),
            session: handle.clone(),
        };
        if let Err(err) = Box::pin(host.events.fire(&mut bound)).await {
            tracing::warn!(%err, "session-bound handler failed");
        }
        drop(bound);
        close_if_shutting_down(&server, &handle);
        read_loop(&server, &host, &handle, &mut reader, &mut done_rx, 0).await;
    })
}

/// A new connection resumed `handle` (XEP-0198): hand its writer to the session task and
/// read from it.
pub(crate) fn resume(
    server: Arc<ServerInner>,
    conn: Conn,
    handle: SessionHandle,
    client_h: u32,
) -> SessionFuture {
    let Some(host) = server.host(&handle.info().host) else {
        return Box::pin(async {});
    };
    let Conn {
        io, framer, limits, ..
    } = conn;
    let (reader, writer_half) = byte_stream::split(io);
    let (done_tx, mut done_rx) = oneshot::channel();
    let connection = server.next_session_id();
    let mut reader = ReaderConn::new(reader, framer, limits, &server, handle.info().peer);
    let attach = Outbound::Sm(Box::new(SmCommand::Attach {
        connection,
        writer: writer_half,
        done: done_tx,
        client_h,
    }));
    Box::pin(async move {
        handle.control(attach).await;
        close_if_shutting_down(&server, &handle);
        read_loop(
            &server,
            &host,
            &handle,
            &mut reader,
            &mut done_rx,
            connection,
        )
        .await;
    })
}

/// A session that started after the shutdown's sweep of the session tables missed it.
fn close_if_shutting_down(server: &ServerInner, handle: &SessionHandle) {
    if server.is_shutting_down() {
        handle.close(Some(StreamError::new(StreamErrorCondition::SystemShutdown)));
    }
}

/// When the read loop's one timer must next wake it: the parser's release after a short
/// silence, then the idle ping.
struct ReadTimer {
    last_frame: tokio::time::Instant,
    dormant: bool,
    idle_timeout: std::time::Duration,
}

/// What a fired read timer calls for.
#[derive(Debug, PartialEq, Eq)]
enum TimerDue {
    /// Not due after all. Each frame moves the timer, so tokio does not report it
    /// elapsed before the release time; kept so that an early report never releases a
    /// talking client's parser.
    NotYet,
    /// A short silence: release the parser.
    Release,
    /// A long silence: ping the client.
    Ping,
}

impl ReadTimer {
    fn new(idle_timeout: std::time::Duration) -> Self {
        ReadTimer {
            last_frame: tokio::time::Instant::now(),
            dormant: false,
            idle_timeout,
        }
    }

    /// When to wake next, or `None` when nothing is due (dormant, no idle pings).
    fn next_wake(&self) -> Option<tokio::time::Instant> {
        if !self.dormant {
            Some(timer_slot(self.last_frame + DORMANT_AFTER))
        } else if self.idle_timeout.is_zero() {
            None
        } else {
            Some(timer_slot(self.last_frame + self.idle_timeout))
        }
    }

    /// A frame came: `sleep` moves to the new release time. Moving a registered timer
    /// later only updates its entry (tokio files it again when the old time comes,
    /// without waking the task), and while the release time stays within the slot
    /// already set, one comparison is all a stanza pays. A timer left to fire and find
    /// itself not due woke the task about four times a second per talking client, each
    /// time registering again with a wake-up write to the runtime. Back from silence,
    /// the timer moves earlier: a registration, once.
    fn frame(&mut self, sleep: Pin<&mut tokio::time::Sleep>) {
        self.last_frame = tokio::time::Instant::now();
        let release_at = self.last_frame + DORMANT_AFTER;
        if std::mem::replace(&mut self.dormant, false) || release_at > sleep.deadline() {
            sleep.reset(timer_slot(release_at));
        }
    }

    /// `sleep` fired: what is due, with `sleep` set for the next time.
    fn fired(&mut self, sleep: Pin<&mut tokio::time::Sleep>) -> TimerDue {
        let now = tokio::time::Instant::now();
        let due = match self.next_wake() {
            Some(at) if at > now => TimerDue::NotYet,
            _ if !self.dormant => {
                self.dormant = true;
                TimerDue::Release
            }
            _ => {
                self.last_frame = now;
                TimerDue::Ping
            }
        };
        // Far off when nothing is due: a `Sleep` cannot be disarmed, only moved.
        sleep.reset(self.next_wake().unwrap_or_else(|| now + FAR_OFF));
        due
    }
}

/// A deadline that never comes in practice (a year).
const FAR_OFF: std::time::Duration = std::time::Duration::from_secs(86_400 * 365);

/// Granularity of the read timers: deadlines are rounded up to the end of their slot.
const TIMER_SLOT: std::time::Duration = std::time::Duration::from_millis(128);

/// `deadline` rounded up to the end of its `TIMER_SLOT`, counted from a process-wide
/// origin, so that the timers of all sessions falling due in one slot fire together and
/// one wake-up of the runtime serves them all. Without it a client that talks every
/// fraction of a second re-armed its own timer four times a second, and on this kind of
/// machine a wake-up costs as much as a stanza: 50 chatting clients woke the server 200
/// times a second, about one wake-up per five messages. Never earlier than `deadline`.
fn timer_slot(deadline: tokio::time::Instant) -> tokio::time::Instant {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    // A deadline before the origin (set before the first call) maps to the origin,
    // which is later: still not early.
    let since = deadline.saturating_duration_since(origin).as_nanos();
    let slot = TIMER_SLOT.as_nanos();
    let rounded = since.div_ceil(slot).saturating_mul(slot);
    u64::try_from(rounded)
        .ok()
        .and_then(|nanos| origin.checked_add(std::time::Duration::from_nanos(nanos)))
        .unwrap_or(deadline)
}

/// Reads and processes the client's stanzas until the stream ends for this connection.
async fn read_loop(
    server: &Arc<ServerInner>,
    host: &Arc<Host>,
    handle: &SessionHandle,
    conn: &mut ReaderConn,
    done_rx: &mut oneshot::Receiver<()>,
    connection: u64,
) {
    let (idle_timeout, ping_timeout) = {
        let limits = &server.config().limits;
        (limits.idle_timeout, limits.ping_timeout)
    };
    let mut timer = ReadTimer::new(idle_timeout);
    let sleep = tokio::time::sleep_until(
        timer
            .next_wake()
            .unwrap_or_else(|| tokio::time::Instant::now() + FAR_OFF),
    );
    tokio::pin!(sleep);
    let mut last_to = crate::router::LastAddress::default();
    // Bound: plain messages may now travel as the text the client wrote.
    conn.inner.framer.keep_messages_as_text();
    loop {
        let frame = tokio::select! {
            frame = conn.read_frame() => frame,
            // The session task closed the stream, or another connection took over.
            _ = &mut *done_rx => return,
            // (Shutdown comes as a close through the session's queue.)
            () = &mut sleep => {
                match timer.fired(sleep.as_mut()) {
                    TimerDue::NotYet => {}
                    TimerDue::Release => {
                        conn.inner.framer.hibernate();
                    }
                    // A silent client: is anyone still there? (Dead TCP connections
                    // otherwise linger until the kernel gives up, hours later.)
                    TimerDue::Ping => ping_idle_client(host, handle, ping_timeout),
                }
                continue;
            }
        };
        timer.frame(sleep.as_mut());
        match frame {
            Ok(Frame::Stanza(stanza)) => {
                // (`has_ns`, not `ns()`: that allocates a copy, twice per stanza here.)
                let nonza = !stanza.has_ns(ns::CLIENT)
                    && !stanza.has_ns("")
                    && !matches!(stanza.name(), "message" | "presence" | "iq");
                if nonza {
                    let mut event = TopLevelElement {
                        host: host.clone(),
                        session: handle.clone(),
                        element: stanza,
                    };
                    match Box::pin(host.events.fire(&mut event)).await {
                        Ok(crate::events::Flow::Handled) => continue,
                        Ok(crate::events::Flow::Continue) => {}
                        Err(err) => tracing::warn!(%err, "a top-level element handler failed"),
                    }
                    handle.close(Some(StreamError::with_text(
                        StreamErrorCondition::UnsupportedStanzaType,
                        format!(
                            "unexpected element {{{}}}{}",
                            event.element.ns(),
                            event.element.name()
                        ),
                    )));
                    return;
                }
                handle.sm_count_inbound();
                if is_legacy_session(&stanza) {
                    let mut reply = iq_result(&stanza, None);
                    reply.set_attr_to(handle.jid());
                    handle.send(reply);
                    continue;
                }
                if !route(server, host, handle, stanza.into(), &mut last_to).await {
                    return;
                }
            }
            Ok(Frame::Message(message)) => {
                handle.sm_count_inbound();
                if !route(server, host, handle, message.into(), &mut last_to).await {
                    return;
                }
            }
            Ok(Frame::Close) => {
                handle.close(None);
                return;
            }
            Ok(Frame::Open(_)) => {
                handle.close(Some(StreamError::with_text(
                    StreamErrorCondition::NotWellFormed,
                    "unexpected stream header",
                )));
                return;
            }
            Err(ReadError::Stream(error)) => {
                handle.close(Some(error));
                return;
            }
            Err(ReadError::Closed(reason)) => {
                // XEP-0198: a resumable session waits for the client to come back.
                if handle.sm_resume_id().is_some() {
                    tracing::debug!(jid = %handle.jid(), reason, "connection lost");
                    let detach =
                        handle.control(Outbound::Sm(Box::new(SmCommand::Detach { connection })));
                    // Boxed: held inline, the send would enlarge every idle session.
                    Box::pin(detach).await;
                } else {
                    handle.close(None);
                }
                return;
            }
        }
    }
}

/// Routes one stanza from the client; `false` when that ended the session.
async fn route(
    server: &Arc<ServerInner>,
    host: &Arc<Host>,
    handle: &SessionHandle,
    stanza: crate::xml::LazyStanza,
    last_to: &mut crate::router::LastAddress,
) -> bool {
    // Boxed (as the other handler calls here): routing's future is large, and held
    // inline it would be part of every idle session's memory.
    let routed = Box::pin(crate::router::from_session(
        server, host, handle, stanza, last_to,
    ));
    match routed.await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(jid = %handle.jid(), %error, "closing the session");
            handle.close(Some(error));
            false
        }
    }
}

/// Silence after which a session's parser is released (it is rebuilt when the client
/// speaks again): most clients sit idle most of the time, and a parser costs kilobytes.
/// Short, because the parsers alive at once are about the stanza bursts of this long
/// (after a wave of logins: 500/s x 1 s left 500 parsers' 8 KiB token buffers as holes
/// among long-lived allocations, 3.2 KiB RSS per connection more than at 200 ms); a
/// wake costs about 2.4 µs, paid only after a pause this long.
const DORMANT_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// The configured read throttles (bytes, stanzas), if any.
fn throttles(
    server: &ServerInner,
) -> (
    Option<super::connection::Throttle>,
    Option<super::connection::Throttle>,
) {
    let limits = server.config().limits.clone();
    let bytes = (limits.rate > 0)
        .then(|| super::connection::Throttle::new(limits.rate, limits.rate_burst.max(limits.rate)));
    let stanzas = (limits.stanza_rate > 0).then(|| {
        super::connection::Throttle::new(
            limits.stanza_rate,
            limits.stanza_burst.max(limits.stanza_rate),
        )
    });
    (bytes, stanzas)
}

/// Pings the client; no answer (result or error) within `timeout` ends the stream.
fn ping_idle_client(host: &Arc<Host>, handle: &SessionHandle, timeout: std::time::Duration) {
    let host = host.clone();
    let handle = handle.clone();
    tokio::spawn(async move {
        let ping = crate::xml::Element::bare("iq", ns::CLIENT)
            .with("type", "get")
            .with_child(crate::xml::Element::bare("ping", ns::PING));
        let to = jid::Jid::from(handle.jid().clone());
        if host.send_iq(&to, ping, timeout).await.is_err() && !handle.is_closing() {
            tracing::info!(jid = %handle.jid(), "no answer to a ping; closing the stream");
            handle.close(Some(StreamError::with_text(
                StreamErrorCondition::ConnectionTimeout,
                "no answer to a ping",
            )));
        }
    });
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
        reader: ReadHalf,
        framer: Framer,
        limits: crate::xml::framer::FramerLimits,
        server: &ServerInner,
        peer: std::net::SocketAddr,
    ) -> Self {
        let mut inner = Conn::new(Box::new(ReadOnly(reader)), limits);
        inner.framer = framer;
        (inner.throttle, inner.stanza_throttle) = throttles(server);
        inner.peer = Some(peer);
        ReaderConn { inner }
    }

    async fn read_frame(&mut self) -> Result<Frame, ReadError> {
        self.inner.read_frame().await
    }
}

/// Adapts a read half to the `ByteStream` the framing code expects; writes go nowhere (the
/// writer task owns the other half).
struct ReadOnly(ReadHalf);

impl crate::byte_stream::ByteStream for ReadOnly {}

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

#[cfg(test)]
mod tests {
    use super::{timer_slot, ReadTimer, TimerDue, DORMANT_AFTER, TIMER_SLOT};
    use std::time::Duration;
    use tokio::time::Instant;

    /// A client that talks every 100 ms never has its read timer fire (each fire is a
    /// wake-up of the session's task), and once it falls silent the timer fires to
    /// release its parser, then for the idle ping.
    #[tokio::test(start_paused = true)]
    async fn a_talking_client_wakes_no_timer_and_silence_releases_its_parser() {
        let idle_timeout = Duration::from_secs(300);
        let mut timer = ReadTimer::new(idle_timeout);
        let sleep = tokio::time::sleep_until(timer.next_wake().expect("a release is due"));
        tokio::pin!(sleep);
        let started = Instant::now();
        let mut fired = Vec::new();
        let mut next_frame = started;
        let mut last_frame = started;
        while fired.len() < 2 {
            next_frame += Duration::from_millis(100);
            let talking = next_frame - started < Duration::from_secs(3);
            tokio::select! {
                biased;
                () = &mut sleep => {
                    fired.push((timer.fired(sleep.as_mut()), Instant::now()));
                    // The frame due next has not come yet.
                    next_frame -= Duration::from_millis(100);
                }
                () = tokio::time::sleep_until(next_frame), if talking => {
                    timer.frame(sleep.as_mut());
                    last_frame = Instant::now();
                }
            }
        }
        assert_eq!(last_frame - started, Duration::from_millis(2900));
        let (first, at) = &fired[0];
        assert_eq!(
            *first,
            TimerDue::Release,
            "fired while the client talked: {fired:?}"
        );
        let silence = *at - last_frame;
        assert!(
            silence >= DORMANT_AFTER && silence < DORMANT_AFTER + TIMER_SLOT,
            "released after {silence:?} of silence"
        );
        let (second, at) = &fired[1];
        assert_eq!(*second, TimerDue::Ping);
        let silence = *at - last_frame;
        assert!(silence >= idle_timeout && silence < idle_timeout + TIMER_SLOT);
    }

    #[test]
    fn a_deadline_is_rounded_up_by_less_than_one_slot() {
        let now = Instant::now();
        for offset_ms in [0, 1, 127, 128, 129, 250, 1000, 300_000] {
            let deadline = now + Duration::from_millis(offset_ms);
            let slot_end = timer_slot(deadline);
            assert!(slot_end >= deadline, "{offset_ms} ms: early");
            assert!(
                slot_end - deadline < TIMER_SLOT,
                "{offset_ms} ms: a slot late"
            );
            assert_eq!(
                timer_slot(slot_end),
                slot_end,
                "{offset_ms} ms: not a slot end"
            );
        }
    }

    #[test]
    fn deadlines_in_one_slot_fire_together() {
        let first = timer_slot(Instant::now() + Duration::from_secs(1));
        let in_same_slot = first - TIMER_SLOT + Duration::from_millis(1);
        assert_eq!(timer_slot(in_same_slot), first);
        assert_eq!(timer_slot(first - Duration::from_millis(60)), first);
        assert_eq!(
            timer_slot(first + Duration::from_millis(1)),
            first + TIMER_SLOT
        );
    }
}
