//! Sessions as the rest of the server sees them.
//!
//! A connection task owns the socket and all mutable negotiation state. Everyone else
//! holds either an immutable [`SessionInfo`] snapshot (what hooks receive: decisions such
//! as credentials read the JID from here, never from stanza attributes) or a cheap
//! [`SessionHandle`] to queue stanzas for the session's writer task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;

use jid::{BareJid, FullJid};

use crate::session_queue::{SessionQueue, TrySendError};
use crate::stanza::{StreamError, StreamErrorCondition};
use crate::xml::raw_message::FromStamp;
use crate::xml::{Element, LazyStanza};

pub type SessionId = u64;

/// An immutable view of a session at one point of its life. A new snapshot is made when
/// the session authenticates and when it binds.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: SessionId,
    /// The virtual host the client addressed in its stream header.
    pub host: String,
    pub peer: SocketAddr,
    /// TLS is in place (STARTTLS done, or direct TLS).
    pub secure: bool,
    pub direct_tls: bool,
    /// The authenticated localpart, after SASL.
    pub username: Option<String>,
    /// The bound full JID, after resource binding.
    pub jid: Option<FullJid>,
    /// The stream's `xml:lang`.
    pub lang: String,
}

impl SessionInfo {
    pub fn bare_jid(&self) -> Option<BareJid> {
        self.jid.as_ref().map(|j| j.to_bare())
    }

    pub fn is_authenticated(&self) -> bool {
        self.username.is_some()
    }
}

/// Keeps only the newest presence of each sender: an inactive phone needs the state
/// when it wakes, not the history.
fn hold(held: &mut Vec<Element>, presence: Element) {
    let from = presence.attr("from").map(str::to_string);
    let subscription = matches!(
        presence.attr("type"),
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
    );
    if !subscription {
        held.retain(|p| {
            p.attr("from").map(str::to_string) != from
                || matches!(
                    p.attr("type"),
                    Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
                )
        });
    }
    held.push(presence);
}

/// What the session task is asked to do, in order. Every variant is a pointer: the
/// queue allocates its slots 32 at a time, so a large variant would cost each session
/// kilobytes before its first stanza.
pub(crate) enum Outbound {
    Stanza(Box<LazyStanza>),
    /// Send the stream error (if any) and `</stream:stream>`, then end the session.
    Close(Option<Box<StreamError>>),
    /// XEP-0198 stream management.
    Sm(Box<crate::c2s::SmCommand>),
    /// A top-level element that is not a stanza (never counted by XEP-0198).
    Nonza(Box<Element>),
}

struct Shared {
    info: Arc<SessionInfo>,
    jid: FullJid,
    queue: SessionQueue<Outbound>,
    available: AtomicBool,
    priority: AtomicI32,
    closing: AtomicBool,
    /// XEP-0352: the client is inactive; presence is held back (the latest per sender)
    /// until it is active again.
    inactive: AtomicBool,
    held: std::sync::Mutex<Vec<Element>>,
    /// XEP-0198: enabled, and how many stanzas from the client were handled (mod 2^32).
    sm_enabled: AtomicBool,
    sm_handled: AtomicU32,
    sm_resume_id: std::sync::Mutex<Option<String>>,
    /// Made at the first message the client sends (see [`FromStamp`]).
    from_stamp: std::sync::OnceLock<Arc<FromStamp>>,
}

/// A bound session, as held by the host's session table and by routing code.
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("jid", &self.shared.jid)
            .field("id", &self.shared.info.id)
            .finish()
    }
}

impl SessionHandle {
    /// `info` must be bound (`jid` set).
    /// `info` must be bound (`jid` set). At most `queue` stanzas wait for the client.
    pub(crate) fn new(info: Arc<SessionInfo>, jid: FullJid, queue: usize) -> Self {
        SessionHandle {
            shared: Arc::new(Shared {
                info,
                jid,
                queue: SessionQueue::new(queue),
                available: AtomicBool::new(false),
                priority: AtomicI32::new(0),
                closing: AtomicBool::new(false),
                inactive: AtomicBool::new(false),
                held: std::sync::Mutex::new(Vec::new()),
                sm_enabled: AtomicBool::new(false),
                sm_handled: AtomicU32::new(0),
                sm_resume_id: std::sync::Mutex::new(None),
                from_stamp: std::sync::OnceLock::new(),
            }),
        }
    }

    /// What waits for the session task to write it.
    pub(crate) fn queue(&self) -> &SessionQueue<Outbound> {
        &self.shared.queue
    }

    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.shared.info
    }

    pub fn id(&self) -> SessionId {
        self.shared.info.id
    }

    pub fn jid(&self) -> &FullJid {
        &self.shared.jid
    }

    /// The `from` the router stamps on what this session's client sends.
    pub fn from_stamp(&self) -> &Arc<FromStamp> {
        self.shared
            .from_stamp
            .get_or_init(|| FromStamp::new(self.shared.jid.as_str()))
    }

    /// Queues a stanza for the client. A client that does not read and lets its queue
    /// fill up is disconnected rather than allowed to grow the server's memory.
    pub fn send(&self, stanza: impl Into<LazyStanza>) -> bool {
        if self.shared.closing.load(Ordering::Relaxed) {
            return false;
        }
        let stanza = stanza.into();
        if stanza.name() == "presence" {
            let stanza = stanza.into_element();
            // Decided and queued under the lock `set_inactive` flushes under, so a
            // presence can neither overtake an older held one nor be stranded in `held`.
            let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
            if self.shared.inactive.load(Ordering::Acquire) {
                hold(&mut held, stanza);
                return true;
            }
            return self.enqueue(stanza.into());
        }
        self.enqueue(stanza)
    }

    fn enqueue(&self, stanza: LazyStanza) -> bool {
        match self
            .shared
            .queue
            .try_send(Outbound::Stanza(Box::new(stanza)))
        {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!(jid = %self.jid(), "outbound queue full; disconnecting the session");
                self.close(Some(StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    "too many stanzas waiting to be read",
                )));
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// XEP-0352 client state: inactive holds presence back; active flushes what was held.
    pub fn set_inactive(&self, inactive: bool) {
        let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.inactive.store(inactive, Ordering::Release);
        if !inactive {
            for stanza in std::mem::take(&mut *held) {
                self.enqueue(stanza.into());
            }
        }
    }
    /// Sends a control command to the session task, in order with the stanzas. Waits for
    /// room when the queue is full: control must not be dropped, nor overtaken by a
    /// stanza queued after it (as a command parked in a task of its own would be).
    pub(crate) async fn control(&self, command: Outbound) {
        // Err only when the session task is gone, and then there is nobody to tell.
        let _ = self.shared.queue.send(command).await;
    }

    /// XEP-0198: turns stream management on. With `resume`, the session survives a lost
    /// connection for `resume_timeout` and can be resumed with the returned id. `None`
    /// when it was already enabled.
    pub async fn sm_enable(
        &self,
        host: &crate::host::Host,
        resume: bool,
        resume_timeout: std::time::Duration,
    ) -> Option<Option<String>> {
        if self.shared.sm_enabled.swap(true, Ordering::AcqRel) {
            return None;
        }
        let id = resume.then(|| {
            let id = crate::util::random_id();
            host.register_resumable(&id, self.clone());
            *self
                .shared
                .sm_resume_id
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
            id
        });
        self.control(Outbound::Sm(Box::new(crate::c2s::SmCommand::Enable {
            id: id.clone(),
            resume_timeout: resume.then_some(resume_timeout),
        })))
        .await;
        Some(id)
    }

    pub fn sm_enabled(&self) -> bool {
        self.shared.sm_enabled.load(Ordering::Acquire)
    }

    /// The resumption id, when resumable.
    pub fn sm_resume_id(&self) -> Option<String> {
        self.shared
            .sm_resume_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts one stanza handled from the client.
    pub(crate) fn sm_count_inbound(&self) {
        if self.sm_enabled() {
            self.shared.sm_handled.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn sm_handled(&self) -> u32 {
        self.shared.sm_handled.load(Ordering::Acquire)
    }

    /// Writes a top-level element that is not a stanza (e.g. XEP-0198's `<failed/>`).
    pub async fn send_nonza(&self, element: Element) {
        self.control(Outbound::Nonza(Box::new(element))).await;
    }

    /// The client asked `<r/>`: answer `<a h=.../>` in order with the stanzas.
    pub async fn sm_answer(&self) {
        self.control(Outbound::Sm(Box::new(crate::c2s::SmCommand::Answer)))
            .await;
    }

    /// The client acknowledged `h` stanzas.
    pub async fn sm_client_ack(&self, h: u32) {
        self.control(Outbound::Sm(Box::new(crate::c2s::SmCommand::Acked(h))))
            .await;
    }

    pub fn is_inactive(&self) -> bool {
        self.shared.inactive.load(Ordering::Relaxed)
    }

    /// Asks the writer to end the stream. Idempotent.
    pub fn close(&self, error: Option<StreamError>) {
        if self.shared.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        // The queue may be full (that is one reason to close); wait for room in the
        // background rather than block the caller.
        if let Err(TrySendError::Full(message)) = self
            .shared
            .queue
            .try_send(Outbound::Close(error.map(Box::new)))
        {
            let session = self.clone();
            tokio::spawn(async move {
                let _ = session.shared.queue.send(message).await;
            });
        }
    }

    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Relaxed)
    }

    /// Whether the session has sent available presence (and not since gone unavailable).
    pub fn is_available(&self) -> bool {
        self.shared.available.load(Ordering::Relaxed)
    }

    pub fn priority(&self) -> i32 {
        self.shared.priority.load(Ordering::Relaxed)
    }

    pub fn set_presence(&self, available: bool, priority: i32) {
        self.shared.priority.store(priority, Ordering::Relaxed);
        self.shared.available.store(available, Ordering::Relaxed);
    }

    pub fn same_session(&self, other: &SessionHandle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// Fired on the host after a session bound its resource and joined the session table.
pub struct SessionBound {
    pub host: std::sync::Arc<crate::host::Host>,
    pub session: SessionHandle,
}

/// Fired on the host after a bound session ended, however it ended (clean close, error,
/// dropped TCP connection, replaced by a conflicting bind, shutdown). The session is no
/// longer in the table.
pub struct SessionClosed {
    pub host: std::sync::Arc<crate::host::Host>,
    pub session: SessionHandle,
    /// Why, for logs and for modules that care (e.g. "connection reset").
    pub reason: String,
}

/// Fired for a top-level element of a bound stream that is not a stanza (a "nonza", e.g.
/// XEP-0352's `<active/>` or XEP-0198's `<r/>`). Unhandled ones end the stream with
/// `unsupported-stanza-type`.
pub struct TopLevelElement {
    pub host: std::sync::Arc<crate::host::Host>,
    pub session: SessionHandle,
    pub element: Element,
}

/// A bound session's info for unit tests (plain TCP from loopback).
#[cfg(test)]
pub(crate) fn bound_info(jid: &FullJid) -> SessionInfo {
    SessionInfo {
        id: 1,
        host: jid.domain().to_string(),
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 5222)),
        secure: false,
        direct_tls: false,
        username: jid.node().map(|n| n.to_string()),
        jid: Some(jid.clone()),
        lang: "en".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::ElementExt;

    fn handle(capacity: usize) -> SessionHandle {
        let jid = FullJid::new("romeo@localhost/phone").expect("jid");
        SessionHandle::new(Arc::new(bound_info(&jid)), jid, capacity)
    }

    fn describe(message: Option<Outbound>) -> String {
        match message {
            Some(Outbound::Stanza(stanza)) => stanza.attr("id").unwrap_or("?").to_string(),
            Some(Outbound::Nonza(element)) => element.name().to_string(),
            Some(Outbound::Close(_)) => "close".into(),
            Some(Outbound::Sm(_)) => "sm".into(),
            None => "nothing".into(),
        }
    }

    #[tokio::test]
    async fn a_command_on_a_full_queue_waits_its_turn_and_is_not_overtaken() {
        let session = handle(2);
        let rx = session.queue();
        for id in ["a1", "a2"] {
            assert!(session.send(Element::bare("message", "jabber:client").with("id", id)));
        }
        let caller = {
            let session = session.clone();
            tokio::spawn(async move {
                session
                    .send_nonza(Element::bare("r", "urn:xmpp:sm:3"))
                    .await;
                session.send(Element::bare("message", "jabber:client").with("id", "b"))
            })
        };
        // The command is waiting for room.
        tokio::task::yield_now().await;
        assert!(!caller.is_finished());
        let mut order = vec![describe(rx.recv().await), describe(rx.recv().await)];
        assert!(
            caller.await.expect("caller"),
            "the stanza after it was refused"
        );
        order.push(describe(rx.recv().await));
        order.push(describe(rx.recv().await));
        assert_eq!(order, ["a1", "a2", "r", "b"]);
        assert!(!session.is_closing());
    }
}
