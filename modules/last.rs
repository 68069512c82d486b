//! `last` (XEP-0012, Last Activity): the server's uptime, and for a contact how long ago
//! they went offline (0 when online), answered only to those subscribed to the contact's
//! presence, so presence does not leak.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::api::*;
use crate::modules::roster;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "last",
    depends: &["roster"],
    load,
};

pub const NS_LAST: &str = "jabber:iq:last";
const STORE: &str = "lastlogout";

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let started = Arc::new(Instant::now());
    ctx.add_feature(NS_LAST);
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        NS_LAST,
        "query",
        move |_request| {
            let started = started.clone();
            async move {
                Ok(Some(
                    element("query", NS_LAST)
                        .with("seconds", started.elapsed().as_secs().to_string()),
                ))
            }
        },
    );
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        NS_LAST,
        "query",
        |request| async move {
            let host = request.host.clone();
            let contact = request.to.to_bare();
            let user = contact.node().map(|n| n.to_string()).unwrap_or_default();
            let requester = request.from.to_bare();
            let allowed = requester == contact
                || roster::service(&host)
                    .and_then(|service| service.read(&host, &user).ok())
                    .and_then(|roster| {
                        roster
                            .items
                            .get(&requester.to_string())
                            .map(|item| item.subscription.from())
                    })
                    .unwrap_or(false);
            if !allowed {
                return Err(StanzaError::new(Condition::Forbidden).into());
            }
            if host
                .sessions_of(&user)
                .iter()
                .any(SessionHandle::is_available)
            {
                return Ok(Some(element("query", NS_LAST).with("seconds", "0")));
            }
            let stored = host
                .storage()
                .get(&host.name, STORE, &user)
                .map_err(|e| anyhow::anyhow!(e))?;
            let Some((at, status)) =
                stored.and_then(|b| serde_json::from_slice::<(u64, String)>(&b).ok())
            else {
                return Err(StanzaError::new(Condition::ItemNotFound).into());
            };
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(at);
            Ok(Some(
                element("query", NS_LAST)
                    .with("seconds", now.saturating_sub(at).to_string())
                    .with_text(status),
            ))
        },
    );
    ctx.hook::<SessionClosed, _>(-10, |event| {
        Box::pin(async move {
            let host = &event.host;
            let user = event
                .session
                .jid()
                .node()
                .map(|n| n.to_string())
                .unwrap_or_default();
            // Only when the account's last session ends.
            if !host.sessions_of(&user).is_empty() {
                return Ok(Flow::Continue);
            }
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let record = serde_json::to_vec(&(now, String::new())).unwrap_or_default();
            if let Err(err) = host
                .storage()
                .put_unsynced(&host.name, STORE, &user, &record)
                .await
            {
                tracing::warn!(%err, "cannot record the last logout");
            }
            Ok(Flow::Continue)
        })
    });
    Ok(())
}
