//! `offline` (XEP-0160): chat and normal messages to an account with no available
//! resource are stored, then delivered in order with a delay stamp (XEP-0203) after the
//! account's next initial presence.
//!
//! Options: `max_messages` per account (default 1000); past it the sender gets
//! `service-unavailable` with a text saying the store is full.
//!
//! Storing and delivering take the account's lock, and a resource is marked available
//! before delivery starts: a message that raced a login is either in the store when
//! delivery reads it or finds the new resource when it takes the lock, and two logins
//! at once cannot both receive the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::api::*;
use crate::keyed_lock::KeyedLocks;
use crate::modules::presence::InitialPresence;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "offline",
    depends: &["presence"],
    load,
};

const STORE: &str = "offline";
const NS_DELAY: &str = "urn:xmpp:delay";

struct State {
    max_messages: usize,
    /// Orders messages stored within the same nanosecond.
    counter: AtomicU64,
    accounts: KeyedLocks,
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let state = Arc::new(State {
        max_messages: ctx
            .options()
            .integer("max_messages", 1..=1_000_000)
            .unwrap_or(1000) as usize,
        counter: AtomicU64::new(0),
        accounts: KeyedLocks::default(),
    });
    ctx.add_feature("msgoffline");

    let s = state.clone();
    ctx.hook::<UndeliverableMessage, _>(0, move |event| {
        let state = s.clone();
        Box::pin(async move { store(&state, event).await })
    });
    let s = state.clone();
    ctx.hook::<InitialPresence, _>(0, move |event| {
        let state = s.clone();
        Box::pin(async move {
            deliver(&state, &event.host, &event.session).await;
            Ok(Flow::Continue)
        })
    });
    Ok(())
}

async fn store(state: &State, event: &mut UndeliverableMessage) -> HandlerResult {
    let kind = event.stanza.attr("type").unwrap_or("normal");
    if kind != "normal" && kind != "chat" {
        return Ok(Flow::Continue);
    }
    // XEP-0334: the sender asked for the message not to be stored.
    if event.stanza.has_child("no-store", "urn:xmpp:hints") {
        return Ok(Flow::Continue);
    }
    let host = &event.host;
    let _account = state.accounts.lock(&event.user).await;
    // A resource became available since the router looked: it gets the message now,
    // since its login delivery has run or waits behind this lock and would miss it.
    let available = crate::router::available_resources(host, &event.user);
    if !available.is_empty() {
        for session in crate::router::top_priority(available) {
            session.send(event.stanza.clone());
        }
        return Ok(Flow::Handled);
    }
    let prefix = format!("{}/", event.user);
    let stored = host
        .storage()
        .scan(&host.name, STORE, &prefix)
        .map_err(|e| anyhow::anyhow!(e))?;
    if stored.len() >= state.max_messages {
        return Err(StanzaError::new(Condition::ServiceUnavailable)
            .text("the recipient's offline message store is full")
            .into());
    }
    let now = SystemTime::now();
    let mut message = event.stanza.clone();
    message.append_child(
        element("delay", NS_DELAY)
            .with("from", host.name.clone())
            .with(
                "stamp",
                chrono::DateTime::<chrono::Utc>::from(now)
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string(),
            )
            .with_text("Offline Storage"),
    );
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!(
        "{prefix}{nanos:024}-{:08}",
        state.counter.fetch_add(1, Ordering::Relaxed) % 100_000_000
    );
    let bytes = crate::xml::writer::to_bytes(&message);
    host.storage()
        .put(&host.name, STORE, &key, &bytes)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Flow::Handled)
}

async fn deliver(state: &State, host: &Arc<Host>, session: &SessionHandle) {
    let Some(user) = session.jid().node().map(|n| n.to_string()) else {
        return;
    };
    let _account = state.accounts.lock(&user).await;
    let prefix = format!("{user}/");
    let stored = match host.storage().scan(&host.name, STORE, &prefix) {
        Ok(stored) => stored,
        Err(err) => {
            tracing::error!(%err, "cannot read offline messages");
            return;
        }
    };
    for (key, bytes) in stored {
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        match text.parse::<Element>() {
            Ok(mut message) => {
                message.set("to", session.jid().to_string());
                if !session.send(message) {
                    // The session went away: keep the rest for the next one.
                    return;
                }
            }
            Err(err) => tracing::error!(%err, key, "unreadable offline message dropped"),
        }
        if let Err(err) = host.storage().delete(&host.name, STORE, &key).await {
            tracing::error!(%err, "cannot delete a delivered offline message");
        }
    }
}
