//! `carbons` (XEP-0280): copies of one resource's chats to the account's other resources
//! that asked for them, both what arrives (`<received/>`) and what is sent (`<sent/>`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::api::*;
use crate::session::SessionId;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "carbons",
    depends: &[],
    load,
};

pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_HINTS: &str = "urn:xmpp:hints";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

#[derive(Default)]
struct Enabled(Mutex<HashSet<SessionId>>);

impl Enabled {
    fn contains(&self, id: SessionId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }
    fn set(&self, id: SessionId, on: bool) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let enabled = Arc::new(Enabled::default());
    ctx.add_feature(NS_CARBONS);
    for (name, on) in [("enable", true), ("disable", false)] {
        let enabled = enabled.clone();
        ctx.hook_iq(
            IqType::Set,
            IqTarget::Bare,
            NS_CARBONS,
            name,
            move |request| {
                let enabled = enabled.clone();
                async move {
                    let Some(session) = request
                        .session
                        .as_ref()
                        .filter(|_| request.to.to_bare() == request.from.to_bare())
                    else {
                        return Err(StanzaError::new(Condition::NotAllowed).into());
                    };
                    enabled.set(session.id, on);
                    Ok(None)
                }
            },
        );
    }

    let e = enabled.clone();
    ctx.hook::<SessionClosed, _>(0, move |event| {
        let enabled = e.clone();
        Box::pin(async move {
            enabled.set(event.session.id(), false);
            Ok(Flow::Continue)
        })
    });

    // Received: before the router delivers, copy to enabled resources that will not get it.
    let e = enabled.clone();
    ctx.hook::<StanzaEvent, _>(50, move |event| {
        if event.kind != StanzaKind::Message || !eligible(&event.stanza) {
            return pass();
        }
        let enabled = e.clone();
        Box::pin(async move {
            let (user, direct) = match &event.target {
                Target::Full(jid) => (
                    jid.node().map(|n| n.to_string()),
                    event.host.session(jid).map(|s| s.id()),
                ),
                Target::Bare(jid) => (jid.node().map(|n| n.to_string()), None),
                Target::Host => (None, None),
            };
            let Some(user) = user else {
                return Ok(Flow::Continue);
            };
            let sessions = event.host.sessions_of(&user);
            if !sessions.iter().any(|s| enabled.contains(s.id())) {
                return Ok(Flow::Continue);
            }
            // The resources the router will deliver to (RFC 6121 §8.5.2.1.1).
            let delivered: Vec<SessionId> = match direct {
                Some(id) => vec![id],
                None => crate::router::top_priority(crate::router::available_resources(
                    &event.host,
                    &user,
                ))
                .iter()
                .map(SessionHandle::id)
                .collect(),
            };
            if delivered.is_empty() {
                return Ok(Flow::Continue);
            }
            for session in sessions
                .iter()
                .filter(|s| enabled.contains(s.id()) && !delivered.contains(&s.id()))
            {
                session.send(wrap("received", session, &event.stanza));
            }
            Ok(Flow::Continue)
        })
    });

    // Sent: a copy to the sender's other enabled resources.
    let e = enabled;
    ctx.hook::<OutgoingStanza, _>(50, move |event| {
        if event.kind != StanzaKind::Message {
            return pass();
        }
        let enabled = e.clone();
        Box::pin(async move {
            let private = event.stanza.has_child("private", NS_CARBONS);
            if private {
                // XEP-0280 §7: the marker is for the sender's server only.
                event.stanza.remove_child("private", NS_CARBONS);
            }
            if private || !eligible(&event.stanza) {
                return Ok(Flow::Continue);
            }
            let Some(own) = event.origin.jid.clone() else {
                return Ok(Flow::Continue);
            };
            let user = own.node().map(|n| n.to_string()).unwrap_or_default();
            for session in event.host.sessions_of(&user) {
                if session.id() != event.origin.id && enabled.contains(session.id()) {
                    session.send(wrap("sent", &session, &event.stanza));
                }
            }
            Ok(Flow::Continue)
        })
    });
    Ok(())
}

/// XEP-0280 §6: chats (and normal messages with a body), not groupchat, not marked
/// private or no-copy, not carbons themselves, not MUC private messages.
fn eligible(message: &Element) -> bool {
    let kind = message.attr("type").unwrap_or("normal");
    let copyable = match kind {
        "chat" => true,
        "normal" => message.has_child("body", ns::CLIENT),
        _ => false,
    };
    copyable
        && !message.has_child("private", NS_CARBONS)
        && !message.has_child("no-copy", NS_HINTS)
        && !message.has_child("received", NS_CARBONS)
        && !message.has_child("sent", NS_CARBONS)
        && !message.has_child("x", NS_MUC_USER)
}

fn wrap(direction: &str, to: &SessionHandle, message: &Element) -> Element {
    element("message", ns::CLIENT)
        .with("from", to.jid().to_bare().to_string())
        .with("to", to.jid().to_string())
        .with("type", message.attr("type").unwrap_or("normal"))
        .with_child(
            element(direction, NS_CARBONS)
                .with_child(element("forwarded", NS_FORWARD).with_child(message.clone())),
        )
}
