//! `carbons` (XEP-0280): copies of one resource's chats to the account's other resources
//! that asked for them, both what arrives (`<received/>`) and what is sent (`<sent/>`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// The sessions that turned carbons on, by account: a message for or from an account
/// with none is passed over without listing the account's sessions.
#[derive(Default)]
struct Enabled(Mutex<HashMap<String, Vec<SessionId>>>);

impl Enabled {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<SessionId>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, user: &str, id: SessionId, on: bool) {
        let mut accounts = self.lock();
        if on {
            let ids = accounts.entry(user.to_string()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        } else if let Some(ids) = accounts.get_mut(user) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                accounts.remove(user);
            }
        }
    }

    /// The account's sessions with carbons on: usually none, and then no allocation.
    fn of(&self, user: &str) -> Vec<SessionId> {
        self.lock().get(user).cloned().unwrap_or_default()
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
                    let (Some(session), Some(user)) = (
                        request
                            .session
                            .as_ref()
                            .filter(|_| request.to.to_bare() == request.from.to_bare()),
                        request.from.node(),
                    ) else {
                        return Err(StanzaError::new(Condition::NotAllowed).into());
                    };
                    enabled.set(user.as_str(), session.id, on);
                    Ok(None)
                }
            },
        );
    }

    let e = enabled.clone();
    ctx.hook::<SessionClosed, _>(0, move |event| {
        if let Some(user) = event.session.jid().node() {
            e.set(user.as_str(), event.session.id(), false);
        }
        pass()
    });

    // Received: before the router delivers, copy to enabled resources that will not get it.
    let e = enabled.clone();
    ctx.hook::<StanzaEvent, _>(50, move |event| {
        if event.kind != StanzaKind::Message {
            return pass();
        }
        let user = match &event.target {
            Target::Full(jid) => jid.node(),
            Target::Bare(jid) => jid.node(),
            Target::Host => None,
        };
        let Some(user) = user else {
            return pass();
        };
        // Who wants copies first: nobody, usually, and then the message is not read.
        let enabled = e.of(user.as_str());
        if enabled.is_empty() || !eligible(&event.stanza) {
            return pass();
        }
        let user = user.to_string();
        Box::pin(async move {
            let direct = match &event.target {
                Target::Full(jid) => event.host.session(jid).map(|s| s.id()),
                Target::Bare(_) | Target::Host => None,
            };
            let sessions = event.host.sessions_of(&user);
            if !sessions.iter().any(|s| enabled.contains(&s.id())) {
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
            let message = event.stanza.element();
            for session in sessions
                .iter()
                .filter(|s| enabled.contains(&s.id()) && !delivered.contains(&s.id()))
            {
                session.send(wrap("received", session, message));
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
        let user = event.origin.jid.as_ref().and_then(|own| own.node());
        let enabled = user.map(|u| e.of(u.as_str())).unwrap_or_default();
        let private = event.stanza.has_child("private", NS_CARBONS);
        if !private && enabled.iter().all(|&id| id == event.origin.id) {
            // No other resource of the sender wants a copy (and no marker to strip).
            return pass();
        }
        let user = user.map(|u| u.to_string()).unwrap_or_default();
        Box::pin(async move {
            if private {
                // XEP-0280 §7: the marker is for the sender's server only.
                event.stanza.tree().remove_child("private", NS_CARBONS);
            }
            if private || !eligible(&event.stanza) {
                return Ok(Flow::Continue);
            }
            let message = event.stanza.element();
            for session in event.host.sessions_of(&user) {
                if session.id() != event.origin.id && enabled.contains(&session.id()) {
                    session.send(wrap("sent", &session, message));
                }
            }
            Ok(Flow::Continue)
        })
    });
    Ok(())
}

/// XEP-0280 §6: chats (and normal messages with a body), not groupchat, not marked
/// private or no-copy, not carbons themselves, not MUC private messages.
fn eligible(message: &LazyStanza) -> bool {
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

#[cfg(test)]
mod tests {
    use super::Enabled;

    #[test]
    fn sessions_are_listed_by_account_and_an_emptied_account_is_forgotten() {
        let enabled = Enabled::default();
        assert!(enabled.of("romeo").is_empty());
        enabled.set("romeo", 1, true);
        enabled.set("romeo", 2, true);
        enabled.set("romeo", 2, true);
        enabled.set("juliet", 3, true);
        assert_eq!(enabled.of("romeo"), vec![1, 2]);
        assert_eq!(enabled.of("juliet"), vec![3]);
        enabled.set("romeo", 1, false);
        assert_eq!(enabled.of("romeo"), vec![2]);
        enabled.set("romeo", 2, false);
        assert!(enabled.of("romeo").is_empty());
        assert!(!enabled.lock().contains_key("romeo"));
        // Turning off what was never on changes nothing.
        enabled.set("nobody", 9, false);
        assert_eq!(enabled.lock().len(), 1);
    }
}
