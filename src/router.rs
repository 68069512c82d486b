//! Stanza routing: validate and stamp what clients send, fire the stanza events on the
//! addressed host, and apply the default delivery rules of RFC 6120 §10 / RFC 6121 §8
//! when no handler took the stanza.
//!
//! Invariant: every IQ get/set gets exactly one reply. A handler's payload or error is
//! that reply; a failing or slow handler yields `internal-server-error`; an IQ nobody
//! handles yields `service-unavailable`.

use std::sync::Arc;

use jid::{BareJid, FullJid, Jid};

use crate::events::{Flow, HandlerError};
use crate::host::{Host, IqRequest, IqTarget, IqType};
use crate::server::ServerInner;
use crate::session::{SessionHandle, SessionInfo};
use crate::stanza::{
    error_reply, may_bounce, Condition, StanzaError, StanzaKind, StreamError, StreamErrorCondition,
};
use crate::xml::iq_answer::IqAnswer;
use crate::xml::{ns, Element, ElementExt, LazyStanza};

/// Where a routed stanza is going on its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The server itself.
    Host,
    /// An account (also: a client's stanza with no `to`, which RFC 6120 §10.3 makes the
    /// sender's own account; such a stanza keeps its missing `to`).
    Bare(BareJid),
    /// One resource.
    Full(FullJid),
}

/// Fired on the addressed host for every stanza routed to it, before default delivery.
/// Handlers may change the stanza; `Handled` means they delivered or consumed it.
/// The server's answer to a client's own IQ request is not routed: it goes straight back
/// to the session that asked (the request itself passes here).
/// A plain message may still be text here: reading its attributes and asking for a
/// child costs little, and a handler that needs more asks for the tree
/// ([`LazyStanza::element`], or [`LazyStanza::tree`] to change it).
pub struct StanzaEvent {
    pub host: Arc<Host>,
    /// The sending session, when a local client sent it.
    pub origin: Option<Arc<SessionInfo>>,
    pub kind: StanzaKind,
    pub target: Target,
    pub stanza: LazyStanza,
}

/// Fired on the sender's host for every stanza a local client sends, after validation and
/// `from` stamping, before routing. Interceptors (rate limits, privacy lists) live here.
/// The stanza may be text, as in [`StanzaEvent`].
pub struct OutgoingStanza {
    pub host: Arc<Host>,
    pub origin: Arc<SessionInfo>,
    pub kind: StanzaKind,
    pub stanza: LazyStanza,
}

/// Fired when a message to an existing account finds no available resource. Offline
/// storage hooks it; unhandled chat/normal messages are bounced with `service-unavailable`.
pub struct UndeliverableMessage {
    pub host: Arc<Host>,
    pub user: String,
    pub stanza: Element,
}

/// The last `to` a session's client wrote, and that address parsed. A client in a
/// conversation addresses the same JID stanza after stanza, and parsing one (jid's
/// checks of each part) was about 800 instructions of a relayed message's 28 k; a copy
/// of the parsed address is one allocation. Boxed: nothing in an idle session.
#[derive(Default)]
pub(crate) struct LastAddress(Option<Box<(String, Jid)>>);

impl LastAddress {
    fn parse(&mut self, raw: &str) -> Result<Jid, jid::Error> {
        if let Some(last) = &self.0 {
            if last.0 == raw {
                return Ok(last.1.clone());
            }
        }
        let jid = Jid::new(raw)?;
        self.0 = Some(Box::new((raw.to_string(), jid.clone())));
        Ok(jid)
    }
}

/// Processes one stanza from a bound session. A `StreamError` ends the session.
/// `last_to` is the session's own (see [`LastAddress`]).
pub(crate) async fn from_session(
    server: &Arc<ServerInner>,
    host: &Arc<Host>,
    session: &SessionHandle,
    mut stanza: LazyStanza,
    last_to: &mut LastAddress,
) -> Result<(), StreamError> {
    let kind = if stanza.is_text() {
        // The framer keeps only messages in the client namespace as text.
        Some(StanzaKind::Message)
    } else {
        StanzaKind::of(stanza.element())
    };
    let Some(kind) = kind else {
        let stanza = stanza.element();
        let condition =
            if stanza.ns().is_empty() || (matches!(stanza.name(), "message" | "presence" | "iq")) {
                StreamErrorCondition::InvalidNamespace
            } else {
                StreamErrorCondition::UnsupportedStanzaType
            };
        return Err(StreamError::with_text(
            condition,
            format!("unexpected element {{{}}}{}", stanza.ns(), stanza.name()),
        ));
    };
    let own = session.jid();
    if let Some(from) = stanza.attr("from") {
        // RFC 6120 §8.1.2.1: a client may put its full or bare JID there, nothing else.
        let acceptable = Jid::new(from).is_ok_and(|f| f == *own || f == own.to_bare());
        if !acceptable {
            return Err(StreamError::with_text(
                StreamErrorCondition::InvalidFrom,
                "the 'from' address is not this session's JID",
            ));
        }
    }
    if stanza.is_text() {
        stanza.set_from(session.from_stamp());
    } else {
        // (Not the stamp: a session that never sends a message does not make one.)
        stanza.tree().set("from", own.as_str());
    }

    let to = match stanza.attr("to").map(|raw| last_to.parse(raw)) {
        None => None,
        Some(Ok(jid)) => Some(jid),
        Some(Err(err)) => {
            reply_error(
                session,
                stanza.element(),
                StanzaError::new(Condition::JidMalformed).text(format!("invalid 'to': {err}")),
            );
            return Ok(());
        }
    };
    if kind == StanzaKind::Iq {
        if let Err(error) = validate_iq(stanza.element()) {
            reply_error(session, stanza.element(), error);
            return Ok(());
        }
    }
    if kind == StanzaKind::Presence && to.is_none() {
        track_availability(session, stanza.element());
    }

    if host.events.has_handlers::<OutgoingStanza>() {
        let mut event = OutgoingStanza {
            host: host.clone(),
            origin: session.info().clone(),
            kind,
            stanza,
        };
        match host.events.fire(&mut event).await {
            Ok(Flow::Handled) => return Ok(()),
            Ok(Flow::Continue) => stanza = event.stanza,
            Err(err) => {
                let error = handler_error_to_stanza(&err, host);
                reply_error(session, event.stanza.element(), error);
                return Ok(());
            }
        }
    }

    // The delivery is boxed, and within it the delivery of each kind: glibc keeps freed
    // blocks of up to 1,032 bytes in per-thread caches, and a stanza's routing as one
    // future (1.9 KiB) took the slower path for larger blocks (and sorted the small free
    // blocks at every such allocation), where three smaller ones come from the cache.
    match to {
        None => {
            let target = Target::Bare(own.to_bare());
            let origin = Origin::Session(session);
            Box::pin(deliver_local(server, host, stanza, kind, target, origin)).await;
        }
        Some(to) => {
            Box::pin(route_to(
                server,
                stanza,
                kind,
                &to,
                Origin::Session(session),
            ))
            .await
        }
    }
    Ok(())
}

/// Routes a stanza that already carries a trusted `from` (from a module or another host).
pub async fn route(server: &Arc<ServerInner>, stanza: Element, origin: Option<Arc<SessionInfo>>) {
    let Some(kind) = StanzaKind::of(&stanza) else {
        tracing::warn!(
            name = stanza.name(),
            "refusing to route a non-stanza element"
        );
        return;
    };
    let Some(to) = stanza.attr("to").and_then(|t| Jid::new(t).ok()) else {
        tracing::warn!(
            name = stanza.name(),
            "refusing to route a stanza without a valid 'to'"
        );
        return;
    };
    route_to(server, stanza.into(), kind, &to, Origin::from(origin)).await;
}

async fn route_to(
    server: &Arc<ServerInner>,
    mut stanza: LazyStanza,
    kind: StanzaKind,
    to: &Jid,
    origin: Origin<'_>,
) {
    let Some(host) = server.host(to.domain().as_str()) else {
        // No server-to-server yet: every other domain is unreachable.
        bounce(
            server,
            stanza.element(),
            StanzaError::new(Condition::RemoteServerNotFound).text("this server does not federate"),
        )
        .await;
        return;
    };
    let target = match (to.node(), to.resource()) {
        (None, _) => Target::Host,
        // (Already bare: a copy of its text, where `to_bare` would format it anew.)
        (Some(_), None) => Target::Bare(to.clone().into_bare()),
        (Some(_), Some(_)) => match to.clone().try_into_full() {
            Ok(full) => Target::Full(full),
            Err(bare) => Target::Bare(bare),
        },
    };
    deliver_local(server, &host, stanza, kind, target, origin).await;
}

/// Sends an error reply about `stanza` back to its sender, unless that would loop.
pub async fn bounce(server: &Arc<ServerInner>, stanza: &Element, error: StanzaError) {
    if !may_bounce(stanza) || stanza.attr("from").is_none() {
        return;
    }
    let reply = error_reply(stanza, &error);
    Box::pin(route(server, reply, None)).await;
}

fn reply_error(session: &SessionHandle, stanza: &Element, error: StanzaError) {
    if may_bounce(stanza) {
        let mut reply = error_reply(stanza, &error);
        reply.set("to", session.jid().to_string());
        // The error comes from the server about the client's own stanza.
        reply.remove_attr("from");
        session.send(reply);
    }
}

fn validate_iq(stanza: &Element) -> Result<(), StanzaError> {
    if stanza.attr("id").is_none_or(str::is_empty) {
        return Err(StanzaError::bad_request("an IQ needs an 'id'"));
    }
    match stanza.attr("type") {
        Some("get") | Some("set") => {
            if stanza.children().count() != 1 {
                return Err(StanzaError::bad_request(
                    "an IQ get or set carries exactly one child element",
                ));
            }
            Ok(())
        }
        Some("result") => Ok(()),
        Some("error") => Ok(()),
        _ => Err(StanzaError::bad_request(
            "IQ 'type' must be get, set, result or error",
        )),
    }
}

fn track_availability(session: &SessionHandle, stanza: &Element) {
    match stanza.attr("type") {
        None => {
            let priority = stanza
                .get_child("priority", ns::CLIENT)
                .and_then(|p| p.text().trim().parse::<i8>().ok())
                .unwrap_or(0);
            session.set_presence(true, i32::from(priority));
        }
        Some("unavailable") => session.set_presence(false, 0),
        _ => {}
    }
}

pub(crate) fn handler_error_to_stanza(err: &HandlerError, host: &Host) -> StanzaError {
    match err {
        HandlerError::Stanza(error) => error.clone(),
        HandlerError::Internal(err) => {
            tracing::error!(host = %host.name, "handler failed: {err:#}");
            StanzaError::new(Condition::InternalServerError)
        }
    }
}

async fn deliver_local(
    server: &Arc<ServerInner>,
    host: &Arc<Host>,
    mut stanza: LazyStanza,
    kind: StanzaKind,
    target: Target,
    origin: Origin<'_>,
) {
    let is_iq_reply =
        kind == StanzaKind::Iq && matches!(stanza.attr("type"), Some("result") | Some("error"));
    // Replies to the server's own requests come back addressed to the host or account.
    if is_iq_reply && !matches!(target, Target::Full(_)) {
        if let Some(from) = stanza.attr("from").and_then(|f| Jid::new(f).ok()) {
            if host.take_iq_reply(stanza.element(), &from).is_some() {
                return;
            }
        }
    }

    let asker = origin.session();
    let mut event = StanzaEvent {
        host: host.clone(),
        origin: origin.into_info(),
        kind,
        target,
        stanza,
    };
    match host.events.fire(&mut event).await {
        Ok(Flow::Handled) => return,
        Ok(Flow::Continue) => {}
        Err(err) => {
            let error = handler_error_to_stanza(&err, host);
            bounce(server, event.stanza.element(), error).await;
            return;
        }
    }
    let StanzaEvent {
        stanza,
        target,
        origin,
        ..
    } = event;
    match kind {
        StanzaKind::Iq => {
            let origin = match asker {
                Some(session) => Origin::Session(session),
                None => Origin::from(origin),
            };
            Box::pin(deliver_iq(
                server,
                host,
                stanza.into_element(),
                target,
                origin,
            ))
            .await
        }
        StanzaKind::Message => Box::pin(deliver_message(server, host, stanza, target)).await,
        StanzaKind::Presence => deliver_presence(host, stanza.into_element(), target),
    }
}

async fn deliver_iq(
    server: &Arc<ServerInner>,
    host: &Arc<Host>,
    stanza: Element,
    target: Target,
    origin: Origin<'_>,
) {
    let iq_type = match stanza.attr("type") {
        Some("get") => IqType::Get,
        Some("set") => IqType::Set,
        _ => {
            // Results and errors go to a full JID only; others were matched or are stale.
            if let Target::Full(jid) = &target {
                if let Some(session) = open_session(host, jid) {
                    session.send(stanza);
                }
            }
            return;
        }
    };
    let (to, handler_target) = match &target {
        Target::Full(jid) => {
            match open_session(host, jid) {
                Some(session) => {
                    session.send(stanza);
                }
                None => {
                    bounce(
                        server,
                        &stanza,
                        StanzaError::new(Condition::ServiceUnavailable),
                    )
                    .await
                }
            }
            return;
        }
        Target::Host => (host.jid(), IqTarget::Host),
        Target::Bare(bare) => (Jid::from(bare.clone()), IqTarget::Bare),
    };
    let Some(payload) = stanza.first_child() else {
        bounce(server, &stanza, StanzaError::bad_request("missing payload")).await;
        return;
    };
    let mut handler = host.iq_handler(iq_type, handler_target, payload);
    // A request about one's own account that no account-level handler takes is answered
    // by the server (ping, version, time, disco without 'to').
    if handler.is_none() && origin.is_own_account(&target) {
        handler = host.iq_handler(iq_type, IqTarget::Host, payload);
    }
    let Some(handler) = handler else {
        bounce(
            server,
            &stanza,
            StanzaError::new(Condition::ServiceUnavailable),
        )
        .await;
        return;
    };
    // The answer to a client's own request goes straight back to its session, as the
    // reply to a stanza that came in on a stream is written to that stream (Prosody's
    // `origin.send`): routing it anew found the same session by its full JID, after a
    // table lookup, the stanza hooks and a boxed future of 1.8 KiB, about a tenth of
    // the instructions of a ping.
    let asker = origin
        .session()
        .filter(|session| stanza.attr("from") == Some(session.jid().as_str()));
    let Some(from) = sender_of(&stanza, origin.info()) else {
        return;
    };
    // Any other reply goes back to the sender: routed on this parsed address, not on
    // its text.
    let reply_to = asker.is_none().then(|| from.clone());
    let stanza = Arc::new(stanza);
    let request = IqRequest {
        host: host.clone(),
        session: origin.into_info(),
        stanza: stanza.clone(),
        from,
        to,
    };
    let timeout = server.config().limits.iq_timeout;
    // Awaited apart, so that the finished handler's future (and its hold on the request)
    // is gone before the answer takes the request's addresses.
    let answered = tokio::time::timeout(timeout, handler(request)).await;
    let reply: LazyStanza = match answered {
        Ok(Ok(payload)) => IqAnswer::result(stanza, payload).into(),
        Ok(Err(err)) => error_reply(&stanza, &handler_error_to_stanza(&err, host)).into(),
        Err(_) => {
            let ns = stanza.first_child().map(Element::ns).unwrap_or_default();
            tracing::error!(host = %host.name, %ns, "IQ handler timed out after {timeout:?}");
            error_reply(
                &stanza,
                &StanzaError::new(Condition::InternalServerError)
                    .text("the server took too long to answer"),
            )
            .into()
        }
    };
    match (asker, reply_to) {
        (Some(session), _) => {
            session.send(reply);
        }
        (None, Some(reply_to)) => {
            Box::pin(route_to(
                server,
                reply,
                StanzaKind::Iq,
                &reply_to,
                Origin::Other(None),
            ))
            .await;
        }
        (None, None) => {}
    }
}

/// Where a stanza on its way came from: a client's stream on this server, whose answers
/// go straight back to it, or elsewhere (a module, the server itself), with the session
/// it acts for when there is one.
enum Origin<'a> {
    Session(&'a SessionHandle),
    Other(Option<Arc<SessionInfo>>),
}

impl<'a> Origin<'a> {
    fn session(&self) -> Option<&'a SessionHandle> {
        match self {
            Origin::Session(session) => Some(session),
            Origin::Other(_) => None,
        }
    }

    fn info(&self) -> Option<&SessionInfo> {
        match self {
            Origin::Session(session) => Some(session.info()),
            Origin::Other(info) => info.as_deref(),
        }
    }

    fn into_info(self) -> Option<Arc<SessionInfo>> {
        match self {
            Origin::Session(session) => Some(session.info().clone()),
            Origin::Other(info) => info,
        }
    }

    /// Whether `target` is the account of the session this comes from.
    fn is_own_account(&self, target: &Target) -> bool {
        let Target::Bare(account) = target else {
            return false;
        };
        self.info()
            .and_then(|info| info.jid.as_ref())
            .is_some_and(|own| own.node() == account.node() && own.domain() == account.domain())
    }
}

impl From<Option<Arc<SessionInfo>>> for Origin<'_> {
    fn from(info: Option<Arc<SessionInfo>>) -> Self {
        Origin::Other(info)
    }
}

/// The request's `from` as a JID. A client's stanza carries its session's full JID (the
/// router stamps it), which is parsed already: only other senders' text is parsed here.
fn sender_of(stanza: &Element, origin: Option<&SessionInfo>) -> Option<Jid> {
    let from = stanza.attr("from")?;
    match origin.and_then(|o| o.jid.as_ref()) {
        Some(own) if own.as_str() == from => Some(Jid::from(own.clone())),
        _ => Jid::new(from).ok(),
    }
}

/// The account's resources that may receive messages to its bare JID: available,
/// non-negative priority, not closing (RFC 6121 §8.5.2).
pub fn available_resources(host: &Host, user: &str) -> Vec<SessionHandle> {
    only_available(host.sessions_of(user))
}

fn only_available(mut sessions: Vec<SessionHandle>) -> Vec<SessionHandle> {
    sessions.retain(|s| s.is_available() && s.priority() >= 0 && !s.is_closing());
    sessions
}

/// Of those, the ones a chat or normal message goes to: the highest priority
/// (RFC 6121 §8.5.2.1.1). Carbons use the same rule to know who already has a copy.
pub fn top_priority(available: Vec<SessionHandle>) -> Vec<SessionHandle> {
    let top = available
        .iter()
        .map(SessionHandle::priority)
        .max()
        .unwrap_or(0);
    available
        .into_iter()
        .filter(|s| s.priority() == top)
        .collect()
}

async fn deliver_message(
    server: &Arc<ServerInner>,
    host: &Arc<Host>,
    mut stanza: LazyStanza,
    target: Target,
) {
    // Only these types are treated apart; the others are delivered as `normal`.
    let message_type = match stanza.attr("type") {
        Some("groupchat") => "groupchat",
        Some("error") => "error",
        Some("headline") => "headline",
        _ => "normal",
    };
    let bare = match target {
        Target::Full(jid) => {
            if let Some(session) = open_session(host, &jid) {
                session.send(stanza);
                return;
            }
            // RFC 6121 §8.5.3.2: no such resource.
            match message_type {
                "groupchat" => {
                    bounce(
                        server,
                        stanza.element(),
                        StanzaError::new(Condition::ServiceUnavailable),
                    )
                    .await;
                    return;
                }
                "error" => return,
                _ => jid.to_bare(),
            }
        }
        Target::Bare(bare) => bare,
        Target::Host => {
            bounce(
                server,
                stanza.element(),
                StanzaError::new(Condition::ServiceUnavailable),
            )
            .await;
            return;
        }
    };
    let user = bare.node().map_or("", |n| n.as_str());
    // One look-up of the session table serves both questions below.
    let sessions = host.sessions_of(user);
    // A connected account exists: the storage lookup is only for one that is not.
    let exists = if !sessions.is_empty() {
        Ok(true)
    } else {
        host.storage().account_exists(&host.name, user)
    };
    let exists = match exists {
        Ok(exists) => exists,
        Err(err) => {
            tracing::error!(%err, "account lookup failed");
            bounce(
                server,
                stanza.element(),
                StanzaError::new(Condition::InternalServerError),
            )
            .await;
            return;
        }
    };
    if !exists {
        // RFC 6121 §8.5.1: the same answer as for an offline account would leak less, but
        // the RFC asks for service-unavailable here.
        bounce(
            server,
            stanza.element(),
            StanzaError::new(Condition::ServiceUnavailable),
        )
        .await;
        return;
    }
    let available = only_available(sessions);
    match message_type {
        // RFC 6121 §8.5.2.1.1 / §8.5.2.2.1: a groupchat message to a bare JID is never
        // delivered; the sender MUST get an error.
        "groupchat" => {
            bounce(
                server,
                stanza.element(),
                StanzaError::new(Condition::ServiceUnavailable),
            )
            .await;
            return;
        }
        "error" => return,
        _ => {}
    }
    if available.is_empty() {
        let mut event = UndeliverableMessage {
            host: host.clone(),
            user: user.to_string(),
            stanza: stanza.into_element(),
        };
        match host.events.fire(&mut event).await {
            Ok(Flow::Handled) => {}
            Ok(Flow::Continue) => {
                if message_type != "headline" {
                    bounce(
                        server,
                        &event.stanza,
                        StanzaError::new(Condition::ServiceUnavailable),
                    )
                    .await;
                }
            }
            Err(err) => {
                let error = handler_error_to_stanza(&err, host);
                bounce(server, &event.stanza, error).await;
            }
        }
        return;
    }
    let targets = if message_type == "headline" {
        available
    } else {
        top_priority(available)
    };
    send_to_each(&targets, stanza);
}

/// Sends `stanza` to every session of `targets`; the last gets the stanza itself, not a
/// copy (usually there is only one).
fn send_to_each(targets: &[SessionHandle], stanza: impl Into<LazyStanza> + Clone) {
    if let Some((last, others)) = targets.split_last() {
        for session in others {
            session.send(stanza.clone());
        }
        last.send(stanza);
    }
}

/// The session bound to `jid`, unless it is ending: a closing session refuses stanzas
/// (`SessionHandle::send`), so it is treated as gone (RFC 6121 §8.5.3.2 / §10.5.3).
fn open_session(host: &Host, jid: &FullJid) -> Option<SessionHandle> {
    host.session(jid).filter(|s| !s.is_closing())
}

fn deliver_presence(host: &Arc<Host>, stanza: Element, target: Target) {
    let presence_type = stanza.attr("type").unwrap_or("");
    let subscription = matches!(
        presence_type,
        "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe"
    );
    match target {
        Target::Full(jid) if !subscription => {
            if let Some(session) = host.session(&jid) {
                session.send(stanza);
            }
        }
        Target::Bare(bare) if !subscription && stanza.attr("to").is_some() => {
            let user = bare.node().map_or("", |n| n.as_str());
            let mut sessions = host.sessions_of(user);
            sessions.retain(SessionHandle::is_available);
            send_to_each(&sessions, stanza);
        }
        // Broadcasts and subscriptions are the presence module's (RFC 6121); without it
        // there is nobody to tell.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_sender_is_the_session_jid_or_its_parsed_text() {
        let own = FullJid::new("romeo@localhost/balcony").expect("jid");
        let info = crate::session::bound_info(&own);
        let iq = |from: &str| {
            let mut stanza = Element::bare("iq", ns::CLIENT);
            stanza.set("from", from);
            stanza
        };
        // The session's own address: its JID, unparsed.
        assert_eq!(
            sender_of(&iq(own.as_str()), Some(&info)),
            Some(Jid::from(own.clone()))
        );
        // Anything else is parsed (and normalised) from the text.
        assert_eq!(
            sender_of(&iq("Juliet@LOCALHOST/chamber"), Some(&info)).map(|j| j.to_string()),
            Some("juliet@localhost/chamber".to_string())
        );
        assert_eq!(
            sender_of(&iq("localhost"), None).map(|j| j.to_string()),
            Some("localhost".to_string())
        );
        assert_eq!(sender_of(&iq("@nope"), Some(&info)), None);
        assert_eq!(
            sender_of(&Element::bare("iq", ns::CLIENT), Some(&info)),
            None
        );
    }

    #[test]
    fn the_last_address_is_reused_only_for_the_same_text() {
        let mut last = LastAddress::default();
        let juliet = last.parse("juliet@example.com/balcony");
        assert_eq!(
            juliet.ok(),
            Jid::new("juliet@example.com/balcony").ok(),
            "parsed the first time"
        );
        assert!(last
            .parse("juliet@example.com/balcony")
            .is_ok_and(|j| j.resource().is_some()));
        let nurse = last.parse("nurse@example.com");
        assert_eq!(
            nurse.ok(),
            Jid::new("nurse@example.com").ok(),
            "another text, parsed anew"
        );
        assert!(
            last.parse("nurse@@example.com").is_err(),
            "an invalid address is refused"
        );
        assert_eq!(
            last.parse("nurse@example.com").ok(),
            Jid::new("nurse@example.com").ok(),
            "a refused address leaves the last good one"
        );
        assert_eq!(
            last.parse("Nurse@Example.com").ok(),
            Jid::new("nurse@example.com").ok(),
            "another spelling of the same address still comes out normalised"
        );
    }
}
