//! Presence broadcast (RFC 6121 §4): initial presence, updates, unavailable (also when
//! the connection drops), probes and their answers.

use std::sync::Arc;

use super::{InitialPresence, State};
use crate::api::*;

fn account_of(session: &SessionHandle) -> String {
    session
        .jid()
        .node()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// A session's undirected presence, as its client sent it. The account's presence
/// changes take turns with the end of its sessions: a session that has already left
/// the table (its end is being, or has been, announced) announces nothing more, so an
/// "available" cannot overtake the "unavailable" that ends it.
pub(super) async fn from_session(state: &Arc<State>, session: &SessionHandle, stanza: Element) {
    let _account = state.accounts.lock(&account_of(session)).await;
    let current = state
        .host
        .session(session.jid())
        .is_some_and(|s| s.same_session(session));
    if current {
        broadcast(state, session, stanza).await;
    }
}

/// Tells the session's subscribers and the account's resources; the caller holds the
/// account's lock.
async fn broadcast(state: &Arc<State>, session: &SessionHandle, mut stanza: Element) {
    let full = session.jid().to_string();
    let own = session.jid().to_bare();
    let user = own.node().map(|n| n.to_string()).unwrap_or_default();
    stanza.set("from", full.clone());
    stanza.remove_attr("to");
    let unavailable = stanza.attr("type") == Some("unavailable");
    let (initial, directed) = {
        let mut sessions = state.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let entry = sessions.entry(session.id()).or_default();
        let initial = entry.last.is_none() && !unavailable;
        let directed: Vec<String> = if unavailable {
            entry.directed.drain().collect()
        } else {
            Vec::new()
        };
        if unavailable {
            sessions.remove(&session.id());
        } else {
            entry.last = Some(super::kept_presence(&stanza));
        }
        (initial, directed)
    };
    let links = match state.roster.presence_links(&state.host, &user) {
        Ok(links) => links,
        Err(err) => {
            tracing::error!(%err, "cannot read the roster for a presence broadcast");
            return;
        }
    };
    // Subscribers (from/both) get it at their bare JID; the router hands it to their
    // available resources.
    for jid in &links.subscribers {
        let mut copy = stanza.clone();
        copy.set("to", jid.clone());
        state.host.send(copy).await;
    }
    for jid in directed {
        let bare = Jid::new(&jid)
            .map(|j| j.to_bare().to_string())
            .unwrap_or_default();
        if !links.subscribers.contains(&bare) {
            let mut copy = stanza.clone();
            copy.set("to", jid);
            state.host.send(copy).await;
        }
    }
    // The account's own available resources, the sender included (§4.2.2).
    for other in state.host.sessions_of(&user) {
        if other.is_available() || other.id() == session.id() {
            let mut copy = stanza.clone();
            copy.set("to", other.jid().to_string());
            other.send(copy);
        }
    }
    if initial {
        // Probes to the contacts whose presence the user wants (§4.3.1), from the bare JID.
        for jid in &links.subscribed_to {
            let probe = element("presence", ns::CLIENT)
                .with("type", "probe")
                .with("from", own.to_string())
                .with("to", jid.clone());
            state.host.send(probe).await;
        }
        // The other resources' presence to the new one (§4.4.2).
        for other in state.host.sessions_of(&user) {
            if other.id() != session.id() && other.is_available() {
                if let Some(mut last) = state.last_presence(&other) {
                    last.set("to", full.clone());
                    session.send(last);
                }
            }
        }
        // Subscription requests that arrived while the user was away (§3.1.3).
        for raw in &links.pending_in {
            if let Ok(request) = raw.parse::<Element>() {
                session.send(request);
            }
        }
        let mut event = InitialPresence {
            host: state.host.clone(),
            session: session.clone(),
        };
        if let Err(err) = state.host.events.fire(&mut event).await {
            tracing::warn!(%err, "initial-presence handler failed");
        }
    }
}

/// The session ended: if it was available, everyone who saw it gets unavailable.
pub(super) async fn session_gone(state: &Arc<State>, session: &SessionHandle) {
    let _account = state.accounts.lock(&account_of(session)).await;
    let was_available = state
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&session.id())
        .is_some_and(|s| s.last.is_some() || !s.directed.is_empty());
    // Replaced by a bind of the same full JID (RFC 6120 §7.7.2.2) that is already
    // available: its presence superseded this one, and an 'unavailable' from the same
    // full JID now would mark the successor offline.
    let superseded = state
        .host
        .session(session.jid())
        .is_some_and(|current| !current.same_session(session) && current.is_available());
    if was_available && !superseded {
        let unavailable = element("presence", ns::CLIENT).with("type", "unavailable");
        broadcast(state, session, unavailable).await;
    }
    state
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&session.id());
}

/// Sends `user`'s current presence (each available resource, or unavailable) to `to`.
pub(super) async fn send_current_presence(state: &Arc<State>, user: &str, to: &Jid) {
    let mut any = false;
    for session in state.host.sessions_of(user) {
        if !session.is_available() {
            continue;
        }
        if let Some(mut last) = state.last_presence(&session) {
            last.set("to", to.to_string());
            state.host.send(last).await;
            any = true;
        }
    }
    if !any {
        let unavailable = element("presence", ns::CLIENT)
            .with("type", "unavailable")
            .with("from", format!("{user}@{}", state.host.name))
            .with("to", to.to_string());
        state.host.send(unavailable).await;
    }
}

/// Tells `to` that each of `user`'s available resources is gone (a subscription ended).
pub(super) async fn send_unavailable(state: &Arc<State>, user: &str, to: &str) {
    for session in state
        .host
        .sessions_of(user)
        .into_iter()
        .filter(SessionHandle::is_available)
    {
        let unavailable = element("presence", ns::CLIENT)
            .with("type", "unavailable")
            .with("from", session.jid().to_string())
            .with("to", to);
        state.host.send(unavailable).await;
    }
}

/// A probe from `from` for local `user`: answered only for subscribers (§4.3.2).
pub(super) async fn answer_probe(state: &Arc<State>, user: &str, from: &Jid) {
    let Ok(links) = state.roster.presence_links(&state.host, user) else {
        return;
    };
    if links.subscribers.contains(&from.to_bare().to_string()) {
        send_current_presence(state, user, from).await;
    }
}
