//! The subscription state machine (RFC 6121 §3 and Appendix A).

use std::sync::Arc;

use super::{broadcast, State};
use crate::api::*;

/// The user sent a subscription stanza to a contact. Updates the user's roster, stamps
/// the bare JID (§3.1.2) and decides whether the stanza is routed on.
pub(super) async fn outbound(
    state: &Arc<State>,
    session: &SessionHandle,
    stanza: &mut Element,
    kind: &str,
) -> HandlerResult {
    let own = session.jid().to_bare();
    let user = own.node().map(|n| n.to_string()).unwrap_or_default();
    let Some(contact) = stanza
        .attr("to")
        .and_then(|t| Jid::new(t).ok())
        .map(|j| j.to_bare())
    else {
        return Ok(Flow::Handled);
    };
    if contact == own {
        return Ok(Flow::Handled);
    }
    let key = contact.to_string();
    stanza.set("from", own.to_string());
    stanza.set("to", key.clone());
    enum After {
        Route,
        RouteAndSendPresence,
        RouteAndSendUnavailable,
        Drop,
    }
    let after = state
        .roster
        .update(&state.host, &user, |roster| match kind {
            "subscribe" => {
                let item = roster.items.entry(key.clone()).or_default();
                if !item.subscription.to() {
                    item.ask = true;
                }
                (After::Route, vec![key.clone()])
            }
            "subscribed" => {
                if roster.pending_in.remove(&key).is_some() {
                    let item = roster.items.entry(key.clone()).or_default();
                    item.subscription = item.subscription.with_from(true);
                    item.approved = false;
                    (After::RouteAndSendPresence, vec![key.clone()])
                } else {
                    // Pre-approval (§3.4): remembered, not routed.
                    let item = roster.items.entry(key.clone()).or_default();
                    if !item.subscription.from() {
                        item.approved = true;
                    }
                    (After::Drop, vec![key.clone()])
                }
            }
            "unsubscribe" => match roster.items.get_mut(&key) {
                Some(item) if item.subscription.to() || item.ask => {
                    item.subscription = item.subscription.with_to(false);
                    item.ask = false;
                    (After::Route, vec![key.clone()])
                }
                _ => (After::Route, vec![]),
            },
            "unsubscribed" => {
                let was_pending = roster.pending_in.remove(&key).is_some();
                match roster.items.get_mut(&key) {
                    Some(item) if item.subscription.from() => {
                        item.subscription = item.subscription.with_from(false);
                        item.approved = false;
                        (After::RouteAndSendUnavailable, vec![key.clone()])
                    }
                    Some(item) if item.approved => {
                        item.approved = false;
                        (After::Drop, vec![key.clone()])
                    }
                    _ if was_pending => (After::Route, vec![]),
                    _ => (After::Drop, vec![]),
                }
            }
            _ => (After::Drop, vec![]),
        })
        .await?;
    match after {
        After::Route => Ok(Flow::Continue),
        After::Drop => Ok(Flow::Handled),
        After::RouteAndSendPresence => {
            state.host.send(stanza.clone()).await;
            broadcast::send_current_presence(state, &user, &Jid::from(contact)).await;
            Ok(Flow::Handled)
        }
        After::RouteAndSendUnavailable => {
            // Unavailable first, while the contact is still a subscriber (§3.2.2).
            broadcast::send_unavailable(state, &user, &contact.to_string()).await;
            state.host.send(stanza.clone()).await;
            Ok(Flow::Handled)
        }
    }
}

/// A contact's subscription stanza arrived for local `user`.
pub(super) async fn inbound(
    state: &Arc<State>,
    user: &str,
    contact: &BareJid,
    stanza: &Element,
    kind: &str,
) -> Result<(), HandlerError> {
    let key = contact.to_string();
    let Ok(own) = BareJid::new(&format!("{user}@{}", state.host.name)) else {
        return Ok(());
    };
    if !state
        .host
        .storage()
        .account_exists(&state.host.name, user)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let mut stanza = stanza.clone();
    stanza.set("from", key.clone());
    stanza.set("to", own.to_string());
    enum After {
        Deliver,
        /// The contact stopped watching: it also hears the user go unavailable (§3.3.3).
        DeliverAndSendUnavailable,
        /// Already subscribed or pre-approved: answer `subscribed` and send presence.
        AutoApprove,
        Nothing,
    }
    let raw = crate::xml::writer::to_string(&stanza);
    let after = state
        .roster
        .update(&state.host, user, |roster| match kind {
            "subscribe" => match roster.items.get_mut(&key) {
                Some(item) if item.subscription.from() => (After::AutoApprove, vec![]),
                Some(item) if item.approved => {
                    item.subscription = item.subscription.with_from(true);
                    item.approved = false;
                    (After::AutoApprove, vec![key.clone()])
                }
                // Already pending: not delivered again (A.3.1); the first request is kept.
                _ if roster.pending_in.contains_key(&key) => (After::Nothing, vec![]),
                _ => {
                    roster.pending_in.insert(key.clone(), raw.clone());
                    (After::Deliver, vec![])
                }
            },
            "subscribed" => match roster.items.get_mut(&key) {
                Some(item) if item.ask => {
                    item.subscription = item.subscription.with_to(true);
                    item.ask = false;
                    (After::Deliver, vec![key.clone()])
                }
                _ => (After::Nothing, vec![]),
            },
            "unsubscribe" => {
                let was_pending = roster.pending_in.remove(&key).is_some();
                match roster.items.get_mut(&key) {
                    Some(item) if item.subscription.from() => {
                        item.subscription = item.subscription.with_from(false);
                        (After::DeliverAndSendUnavailable, vec![key.clone()])
                    }
                    _ if was_pending => (After::Deliver, vec![]),
                    _ => (After::Nothing, vec![]),
                }
            }
            "unsubscribed" => match roster.items.get_mut(&key) {
                Some(item) if item.subscription.to() || item.ask => {
                    item.subscription = item.subscription.with_to(false);
                    item.ask = false;
                    (After::Deliver, vec![key.clone()])
                }
                _ => (After::Nothing, vec![]),
            },
            _ => (After::Nothing, vec![]),
        })
        .await?;
    match after {
        After::Deliver => {
            for session in state
                .host
                .sessions_of(user)
                .into_iter()
                .filter(SessionHandle::is_available)
            {
                session.send(stanza.clone());
            }
        }
        After::DeliverAndSendUnavailable => {
            for session in state
                .host
                .sessions_of(user)
                .into_iter()
                .filter(SessionHandle::is_available)
            {
                session.send(stanza.clone());
            }
            broadcast::send_unavailable(state, user, &key).await;
        }
        After::AutoApprove => {
            let reply = element("presence", ns::CLIENT)
                .with("type", "subscribed")
                .with("from", own.to_string())
                .with("to", key.clone());
            state.host.send(reply).await;
            broadcast::send_current_presence(state, user, &Jid::from(contact.clone())).await;
        }
        After::Nothing => {}
    }
    Ok(())
}
