//! `presence` (RFC 6121 §3, §4): presence broadcast to subscribers and probes to
//! contacts, directed presence, unavailable on disconnect, and the subscription state
//! machine with pre-approval and pending inbound requests re-sent at login.
//!
//! Outbound processing (the sender's roster) hooks [`OutgoingStanza`]; inbound processing
//! (the recipient's roster) hooks [`StanzaEvent`] on the recipient's host. Both are local,
//! since Tern has no server-to-server.

mod broadcast;
mod subscription;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::api::*;
use crate::modules::roster::{self, RosterService};
use crate::session::SessionId;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "presence",
    depends: &["roster"],
    load,
};

/// Fired when a session sends its initial presence (becomes available): offline
/// messages are delivered on it.
pub struct InitialPresence {
    pub host: Arc<Host>,
    pub session: SessionHandle,
}

/// What the module remembers of each available session.
#[derive(Default)]
struct SessionPresence {
    /// The last broadcast presence, without `from` and `to` (see [`kept_presence`]).
    last: Option<Element>,
    /// Who received directed presence and must hear of unavailability (RFC 6121 §4.6).
    directed: HashSet<String>,
}

pub(crate) struct State {
    host: Arc<Host>,
    roster: Arc<RosterService>,
    sessions: Mutex<HashMap<SessionId, SessionPresence>>,
    /// Serialises each account's broadcasts with the ends of its sessions.
    accounts: crate::keyed_lock::KeyedLocks,
}

impl State {
    /// The session's last broadcast presence, from its full JID.
    fn last_presence(&self, session: &SessionHandle) -> Option<Element> {
        let mut last = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session.id())
            .and_then(|s| s.last.clone())?;
        last.set("from", session.jid().to_string());
        Some(last)
    }
}

/// A presence as kept between broadcasts: without `from` and `to`, which every copy
/// gets anew. Every available session keeps one, and in minidom an element's first
/// attribute costs about a kilobyte (two levels of B-tree nodes); a plain `<presence/>`
/// kept this way has none.
fn kept_presence(stanza: &Element) -> Element {
    let mut kept = Element::bare(stanza.name(), stanza.ns());
    for ((namespace, name), value) in stanza.attrs().iter() {
        let addressing = namespace.is_none() && matches!(name.as_str(), "from" | "to");
        if !addressing {
            kept.attrs_mut()
                .insert(namespace.clone(), name.clone(), value.clone());
        }
    }
    for node in stanza.nodes() {
        kept.append_node(node.clone());
    }
    kept
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let Some(roster) = roster::service(ctx.host()) else {
        anyhow::bail!("presence needs the roster module");
    };
    let state = Arc::new(State {
        host: ctx.host().clone(),
        roster,
        sessions: Mutex::new(HashMap::new()),
        accounts: Default::default(),
    });
    // RFC 6121 §3.4: pre-approvals are supported, so they MUST be advertised.
    ctx.add_item(Arc::new(crate::host::StreamFeature(element(
        "sub",
        "urn:xmpp:features:pre-approval",
    ))));

    let s = state.clone();
    ctx.hook::<OutgoingStanza, _>(0, move |event| {
        if event.kind != StanzaKind::Presence {
            return pass();
        }
        let state = s.clone();
        Box::pin(async move { outbound(&state, event).await })
    });

    let s = state.clone();
    ctx.hook::<StanzaEvent, _>(0, move |event| {
        if event.kind != StanzaKind::Presence {
            return pass();
        }
        let state = s.clone();
        Box::pin(async move { inbound(&state, event).await })
    });

    let s = state;
    ctx.hook::<SessionClosed, _>(0, move |event| {
        let state = s.clone();
        Box::pin(async move {
            broadcast::session_gone(&state, &event.session).await;
            Ok(Flow::Continue)
        })
    });
    Ok(())
}

/// A presence a local client sent.
async fn outbound(state: &Arc<State>, event: &mut OutgoingStanza) -> HandlerResult {
    let presence_type = event.stanza.attr("type").unwrap_or("").to_string();
    let Some(session) = event
        .origin
        .jid
        .as_ref()
        .and_then(|jid| state.host.session(jid))
    else {
        return Ok(Flow::Continue);
    };
    if session.id() != event.origin.id {
        // The sender's session was replaced by a new bind of the same full JID: what it
        // said must not be taken as the newcomer's presence.
        return Ok(Flow::Handled);
    }
    match (event.stanza.attr("to").is_some(), presence_type.as_str()) {
        (false, "" | "unavailable") => {
            broadcast::from_session(state, &session, event.stanza.element().clone()).await;
            Ok(Flow::Handled)
        }
        (true, "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
            subscription::outbound(state, &session, event.stanza.tree(), &presence_type).await
        }
        (true, "" | "unavailable") => {
            // Directed presence: remember who must hear when this session goes away.
            if let Some(to) = event.stanza.attr("to") {
                let mut sessions = state.sessions.lock().unwrap_or_else(|p| p.into_inner());
                let entry = sessions.entry(session.id()).or_default();
                if presence_type.is_empty() {
                    entry.directed.insert(to.to_string());
                } else {
                    entry.directed.remove(to);
                }
            }
            Ok(Flow::Continue)
        }
        // Probes are the server's business (RFC 6121 §4.3); errors pass through.
        (_, "probe") => Ok(Flow::Handled),
        _ => Ok(Flow::Continue),
    }
}

/// A presence addressed to a local account.
async fn inbound(state: &Arc<State>, event: &mut StanzaEvent) -> HandlerResult {
    let presence_type = event.stanza.attr("type").unwrap_or("").to_string();
    let user = match &event.target {
        Target::Bare(jid) => jid.node().map(|n| n.to_string()),
        Target::Full(jid) => jid.node().map(|n| n.to_string()),
        Target::Host => None,
    };
    let Some(user) = user else {
        return Ok(Flow::Continue);
    };
    let Some(from) = event.stanza.attr("from").and_then(|f| Jid::new(f).ok()) else {
        return Ok(Flow::Handled);
    };
    match presence_type.as_str() {
        "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" => {
            subscription::inbound(
                state,
                &user,
                &from.to_bare(),
                event.stanza.element(),
                &presence_type,
            )
            .await?;
            Ok(Flow::Handled)
        }
        "probe" => {
            broadcast::answer_probe(state, &user, &from).await;
            Ok(Flow::Handled)
        }
        _ => Ok(Flow::Continue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_presence_loses_only_its_addressing() {
        let sent: Element = "<presence xmlns='jabber:client' from='a@h/r' to='b@h' id='p1' xml:lang='fr'>\
             <show>away</show><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>\
             </presence>"
            .parse()
            .expect("presence");
        let kept = kept_presence(&sent);
        assert_eq!(kept.attr("from"), None);
        assert_eq!(kept.attr("to"), None);
        assert_eq!(kept.attr("id"), Some("p1"));
        assert_eq!(kept.lang(), Some("fr"));
        assert_eq!(kept.nodes().count(), sent.nodes().count());
        assert_eq!(
            kept.get_child("c", "http://jabber.org/protocol/caps")
                .and_then(|c| c.attr("ver")),
            Some("v")
        );
        let plain: Element = "<presence xmlns='jabber:client' from='a@h/r'/>"
            .parse()
            .expect("presence");
        assert_eq!(kept_presence(&plain).attrs().iter().count(), 0);
    }
}
