//! `blocklist` (XEP-0191): block and unblock JIDs, list them, push changes to every
//! resource that asked for the list; blocked entities' stanzas are dropped (IQs get
//! `service-unavailable`) and the user's stanzas to them bounce with `not-acceptable`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::api::*;
use crate::session::SessionId;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "blocklist",
    depends: &[],
    load,
};

pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
const STORE: &str = "blocklist";
/// Lists kept in memory at most; past it the cache starts over.
const MAX_CACHED: usize = 10_000;

#[derive(Default)]
struct State {
    /// Lists read so far (per account), so the per-stanza checks do not hit storage.
    cache: Mutex<HashMap<String, Arc<Vec<String>>>>,
    interested: Mutex<HashSet<SessionId>>,
    /// Serialises read-modify-write of lists: two resources blocking at once must not
    /// lose one of the entries. Changes are rare, so one lock for all accounts does.
    changing: tokio::sync::Mutex<()>,
}

impl State {
    fn list(&self, host: &Host, user: &str) -> Arc<Vec<String>> {
        if let Some(list) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
        {
            return list.clone();
        }
        let list: Vec<String> = host
            .storage()
            .get(&host.name, STORE, user)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Stanzas to any localpart (existing or not) land here: keep the map bounded.
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        // A `save` that ran since the read above has the newer list: keep it.
        cache
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(list))
            .clone()
    }

    async fn save(&self, host: &Host, user: &str, list: Vec<String>) -> Result<(), HandlerError> {
        let bytes = serde_json::to_vec(&list).map_err(|e| anyhow::anyhow!(e))?;
        host.storage()
            .put(&host.name, STORE, user, &bytes)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_string(), Arc::new(list));
        Ok(())
    }
}

/// Whether `jid` is covered by a blocklist item (XEP-0191 §3.4 matching rules).
pub fn blocked(list: &[String], jid: &Jid) -> bool {
    list.iter().any(|item| {
        let Ok(item) = Jid::new(item) else {
            return false;
        };
        match (item.node(), item.resource()) {
            (Some(_), Some(_)) => item == *jid,
            (Some(_), None) => item.to_bare() == jid.to_bare(),
            (None, Some(resource)) => {
                jid.node().is_none()
                    && jid.domain() == item.domain()
                    && jid.resource() == Some(resource)
            }
            (None, None) => jid.domain() == item.domain(),
        }
    })
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let state = Arc::new(State::default());
    ctx.add_feature(NS_BLOCKING);

    let s = state.clone();
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        NS_BLOCKING,
        "blocklist",
        move |request| {
            let state = s.clone();
            async move {
                let user = own(&request)?;
                if let Some(session) = &request.session {
                    state
                        .interested
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(session.id);
                }
                let mut list = element("blocklist", NS_BLOCKING);
                for jid in state.list(&request.host, &user).iter() {
                    list.append_child(element("item", NS_BLOCKING).with("jid", jid.clone()));
                }
                Ok(Some(list))
            }
        },
    );
    for name in ["block", "unblock"] {
        let s = state.clone();
        ctx.hook_iq(
            IqType::Set,
            IqTarget::Bare,
            NS_BLOCKING,
            name,
            move |request| {
                let state = s.clone();
                async move { change(&state, request, name == "block").await }
            },
        );
    }

    let s = state.clone();
    ctx.hook::<AccountDeleted, _>(0, move |event| {
        s.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&event.user);
        Box::pin(async { Ok(Flow::Continue) })
    });

    let s = state.clone();
    ctx.hook::<SessionClosed, _>(0, move |event| {
        let state = s.clone();
        Box::pin(async move {
            state
                .interested
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&event.session.id());
            Ok(Flow::Continue)
        })
    });

    // Inbound: from a blocked entity.
    let s = state.clone();
    ctx.hook::<StanzaEvent, _>(100, move |event| {
        let state = s.clone();
        Box::pin(async move {
            let user = match &event.target {
                Target::Bare(jid) => jid.node().map(|n| n.to_string()),
                Target::Full(jid) => jid.node().map(|n| n.to_string()),
                Target::Host => None,
            };
            let (Some(user), Some(from)) = (
                user,
                event.stanza.attr("from").and_then(|f| Jid::new(f).ok()),
            ) else {
                return Ok(Flow::Continue);
            };
            // What the server sends on behalf of a local user who blocked the recipient
            // (presence broadcasts, probe answers) does not go out either.
            // Errors are exempt: they are the server's answers to the blocked entity.
            let is_error = event.stanza.attr("type") == Some("error");
            if let Some(sender) = from
                .node()
                .filter(|_| !is_error && from.domain().as_str() == event.host.name)
            {
                let recipient = match &event.target {
                    Target::Bare(jid) => Jid::from(jid.clone()),
                    Target::Full(jid) => Jid::from(jid.clone()),
                    Target::Host => return Ok(Flow::Continue),
                };
                let senders_list = state.list(&event.host, sender.as_str());
                if !senders_list.is_empty() && blocked(&senders_list, &recipient) {
                    return Ok(Flow::Handled);
                }
            }
            let list = state.list(&event.host, &user);
            if list.is_empty() || !blocked(&list, &from) {
                return Ok(Flow::Continue);
            }
            let request = event.kind == StanzaKind::Iq
                && matches!(event.stanza.attr("type"), Some("get") | Some("set"));
            if request {
                return Err(StanzaError::new(Condition::ServiceUnavailable).into());
            }
            Ok(Flow::Handled)
        })
    });

    // Outbound: to a blocked entity.
    let s = state;
    ctx.hook::<OutgoingStanza, _>(100, move |event| {
        let state = s.clone();
        Box::pin(async move {
            let (Some(own), Some(to)) = (
                event.origin.jid.clone(),
                event.stanza.attr("to").and_then(|t| Jid::new(t).ok()),
            ) else {
                return Ok(Flow::Continue);
            };
            let user = own.node().map(|n| n.to_string()).unwrap_or_default();
            let list = state.list(&event.host, &user);
            if list.is_empty() || !blocked(&list, &to) {
                return Ok(Flow::Continue);
            }
            let mut error =
                StanzaError::new(Condition::NotAcceptable).text("you have blocked this contact");
            error.app_condition = Some(Box::new(element("blocked", NS_BLOCKING_ERRORS)));
            Err(error.into())
        })
    });
    Ok(())
}

fn own(request: &IqRequest) -> Result<String, StanzaError> {
    if request.to.to_bare() != request.from.to_bare() {
        return Err(StanzaError::new(Condition::Forbidden));
    }
    request
        .from
        .node()
        .map(|n| n.to_string())
        .ok_or_else(|| StanzaError::new(Condition::Forbidden))
}

async fn change(state: &Arc<State>, request: IqRequest, block: bool) -> IqResult {
    let user = own(&request)?;
    let host = request.host.clone();
    let mut items = Vec::new();
    for item in request
        .payload()
        .children()
        .filter(|c| c.is("item", NS_BLOCKING))
    {
        let jid = item
            .attr("jid")
            .and_then(|j| Jid::new(j).ok())
            .ok_or_else(|| {
                StanzaError::new(Condition::JidMalformed).text("each item needs a valid 'jid'")
            })?;
        items.push(jid.to_string());
    }
    if block && items.is_empty() {
        return Err(StanzaError::bad_request("block at least one JID").into());
    }
    let _serial = state.changing.lock().await;
    let mut list: Vec<String> = state.list(&host, &user).as_ref().clone();
    let mut newly_blocked = Vec::new();
    if block {
        for jid in &items {
            if !list.contains(jid) {
                list.push(jid.clone());
                newly_blocked.push(jid.clone());
            }
        }
    } else if items.is_empty() {
        list.clear();
    } else {
        list.retain(|j| !items.contains(j));
    }
    state.save(&host, &user, list).await?;

    // XEP-0191 §3.3: blocked contacts see the user go offline.
    for jid in &newly_blocked {
        for session in host
            .sessions_of(&user)
            .into_iter()
            .filter(SessionHandle::is_available)
        {
            let unavailable = element("presence", ns::CLIENT)
                .with("type", "unavailable")
                .with("from", session.jid().to_string())
                .with("to", jid.clone());
            host.send(unavailable).await;
        }
    }
    // Push to every resource that asked for the list.
    let mut push = element(if block { "block" } else { "unblock" }, NS_BLOCKING);
    for jid in &items {
        push.append_child(element("item", NS_BLOCKING).with("jid", jid.clone()));
    }
    let interested = state
        .interested
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for session in host.sessions_of(&user) {
        if interested.contains(&session.id()) {
            session.send(
                element("iq", ns::CLIENT)
                    .with("type", "set")
                    .with("id", format!("block-{}", crate::util::random_id()))
                    .with("to", session.jid().to_string())
                    .with_child(push.clone()),
            );
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inbound stanzas to made-up localparts each look a list up: the cache must not
    /// grow with them.
    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let server = crate::testing::TestServer::builder()
            .start()
            .await
            .expect("server");
        let host = server.host("localhost").expect("host");
        let state = State::default();
        for i in 0..(MAX_CACHED + 500) {
            state.list(&host, &format!("nobody{i}"));
        }
        let cached = state.cache.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert!(cached <= MAX_CACHED, "{cached} lists cached");
    }
}
