//! `roster` (RFC 6121 §2): get, set and remove, pushes to every interested resource,
//! item validation, roster versioning (XEP-0237), stored durably.
//!
//! The [`RosterService`] item is how other modules (presence) read and change rosters:
//! it serialises changes per account and pushes what changed.

pub mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::api::*;
use crate::session::SessionId;
use crate::xml::prerendered::{Unrenderable, Xml};
pub use store::{PresenceLinks, Roster, RosterItem, Subscription};

pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const NS_ROSTER_VER: &str = "urn:xmpp:features:rosterver";

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "roster",
    depends: &[],
    load,
};

/// Shared roster access, published as an item by the roster module.
#[derive(Default)]
pub struct RosterService {
    /// One lock per account: read-modify-write of a roster must not interleave.
    locks: crate::keyed_lock::KeyedLocks,
    /// Sessions that asked for the roster get pushes (RFC 6121 §2.1.6).
    interested: Mutex<HashSet<SessionId>>,
}

impl RosterService {
    pub fn read(&self, host: &Host, user: &str) -> Result<Roster, StanzaError> {
        Roster::load(host, user).map_err(internal)
    }

    /// The part of `user`'s roster presence routing needs, without building the roster.
    pub fn presence_links(&self, host: &Host, user: &str) -> Result<PresenceLinks, StanzaError> {
        PresenceLinks::load(host, user).map_err(internal)
    }

    /// Changes `user`'s roster under its lock. `change` returns its result and the JIDs
    /// of the items it changed; those are saved durably, then pushed.
    pub async fn update<R>(
        &self,
        host: &Arc<Host>,
        user: &str,
        change: impl FnOnce(&mut Roster) -> (R, Vec<String>),
    ) -> Result<R, StanzaError> {
        let _guard = self.locks.lock(user).await;
        let mut roster = Roster::load(host, user).map_err(internal)?;
        let before = roster.clone();
        let (result, changed) = change(&mut roster);
        if roster != before {
            roster.save(host, user).await.map_err(internal)?;
            for jid in changed {
                self.push(host, user, &roster, &jid);
            }
        }
        Ok(result)
    }

    /// Sends a roster push for `jid` (removed when no longer in the roster).
    fn push(&self, host: &Host, user: &str, roster: &Roster, jid: &str) {
        let item = match roster.items.get(jid) {
            Some(item) => item_element(jid, item),
            None => element("item", NS_ROSTER)
                .with("jid", jid)
                .with("subscription", "remove"),
        };
        let query = element("query", NS_ROSTER)
            .with("ver", roster.version.to_string())
            .with_child(item);
        let interested = self
            .interested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for session in host.sessions_of(user) {
            if !interested.contains(&session.id()) {
                continue;
            }
            let push = element("iq", ns::CLIENT)
                .with("type", "set")
                .with("id", format!("push-{}", crate::util::random_id()))
                .with("from", session.jid().to_bare().to_string())
                .with("to", session.jid().to_string())
                .with_child(query.clone());
            session.send(push);
        }
    }
}

fn internal(err: crate::storage::StorageError) -> StanzaError {
    tracing::error!(%err, "roster storage failed");
    StanzaError::new(Condition::InternalServerError)
}

/// One roster item as a tree (pushes).
pub fn item_element(jid: &str, item: &RosterItem) -> Element {
    let mut xml = Xml::with_capacity(128);
    let tree = match write_item(&mut xml, jid, item, Some(NS_ROSTER)) {
        Ok(()) => xml.into_tree(),
        Err(_) => None,
    };
    // A name or group XML cannot carry could only come from a damaged store: the item
    // is still pushed, without them.
    tree.unwrap_or_else(|| {
        element("item", NS_ROSTER)
            .with("jid", jid)
            .with("subscription", item.subscription.name())
    })
}

/// The roster result, written straight to text: a roster of twenty contacts built as a
/// tree took about a hundred allocations, at every login. An item holding a character
/// XML cannot carry is left out, with a log line.
fn roster_result(roster: &Roster) -> Element {
    let mut xml = Xml::with_capacity(64 + 96 * roster.items.len());
    xml.open("query", Some(NS_ROSTER));
    xml.attr_u64("ver", roster.version);
    xml.content();
    for (jid, item) in &roster.items {
        if let Err(err) = xml.whole(|xml| write_item(xml, jid, item, None)) {
            tracing::error!(contact = %jid, "roster item left out of the result: {err}");
        }
    }
    xml.close("query");
    xml.into_element()
}

fn write_item(
    xml: &mut Xml,
    jid: &str,
    item: &RosterItem,
    namespace: Option<&'static str>,
) -> Result<(), Unrenderable> {
    xml.open("item", namespace);
    xml.attr("jid", jid)?;
    xml.attr("subscription", item.subscription.name())?;
    if let Some(name) = &item.name {
        xml.attr("name", name)?;
    }
    if item.ask {
        xml.attr("ask", "subscribe")?;
    }
    if item.approved {
        xml.attr("approved", "true")?;
    }
    if item.groups.is_empty() {
        xml.close_empty();
        return Ok(());
    }
    xml.content();
    for group in &item.groups {
        xml.open("group", None);
        xml.content();
        xml.text(group)?;
        xml.close("group");
    }
    xml.close("item");
    Ok(())
}

/// The roster service of `host`, when the roster module is loaded.
pub fn service(host: &Host) -> Option<Arc<RosterService>> {
    host.items.all::<RosterService>().into_iter().next()
}

/// The requesting account, which must be the one addressed (RFC 6121 §2.1.5).
fn own_account(request: &IqRequest) -> Result<(String, BareJid), StanzaError> {
    let from = request.from.to_bare();
    if request.to.to_bare() != from {
        return Err(
            StanzaError::new(Condition::Forbidden).text("a roster belongs to its own account")
        );
    }
    let user = from
        .node()
        .map(|n| n.to_string())
        .ok_or_else(|| StanzaError::new(Condition::Forbidden))?;
    Ok((user, from))
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let roster = Arc::new(RosterService::default());
    ctx.add_item(roster.clone());
    ctx.add_item(Arc::new(crate::host::StreamFeature(element(
        "ver",
        NS_ROSTER_VER,
    ))));

    let service = roster.clone();
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        NS_ROSTER,
        "query",
        move |request| {
            let service = service.clone();
            async move {
                let (user, _) = own_account(&request)?;
                if let Some(session) = &request.session {
                    service
                        .interested
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(session.id);
                }
                let roster = service.read(&request.host, &user)?;
                let version = roster.version.to_string();
                // XEP-0237: the client's copy is current: an empty result, pushes follow.
                if request.payload().attr("ver") == Some(version.as_str()) {
                    return Ok(None);
                }
                Ok(Some(roster_result(&roster)))
            }
        },
    );

    let service = roster.clone();
    ctx.hook_iq(
        IqType::Set,
        IqTarget::Bare,
        NS_ROSTER,
        "query",
        move |request| {
            let service = service.clone();
            async move { roster_set(&service, request).await }
        },
    );

    let service = roster;
    ctx.hook::<SessionClosed, _>(0, move |event| {
        let service = service.clone();
        Box::pin(async move {
            service
                .interested
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&event.session.id());
            Ok(Flow::Continue)
        })
    });
    Ok(())
}

/// A validated roster set.
struct SetItem {
    jid: String,
    remove: bool,
    name: Option<String>,
    groups: Vec<String>,
}

fn parse_set(payload: &Element) -> Result<SetItem, StanzaError> {
    let items: Vec<&Element> = payload
        .children()
        .filter(|c| c.is("item", NS_ROSTER))
        .collect();
    if items.len() != 1 || payload.children().count() != 1 {
        return Err(StanzaError::bad_request(
            "a roster set carries exactly one <item/>",
        ));
    }
    let item = items[0];
    let jid = item
        .attr("jid")
        .and_then(|j| Jid::new(j).ok())
        .filter(|j| j.resource().is_none())
        .map(|j| j.to_bare())
        .ok_or_else(|| StanzaError::bad_request("the item needs a valid bare 'jid'"))?;
    // Clients may only send subscription='remove'; other values (slixmpp sends 'none')
    // are ignored, as RFC 6121 §2.1.2.5 allows.
    let remove = item.attr("subscription") == Some("remove");
    let name = item
        .attr("name")
        .map(str::to_string)
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > 1023) {
        return Err(StanzaError::new(Condition::NotAcceptable).text("the name is too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for group in item.children().filter(|c| c.is("group", NS_ROSTER)) {
        let text = group.text();
        if text.is_empty() {
            return Err(StanzaError::new(Condition::NotAcceptable).text("an empty group name"));
        }
        if text.len() > 1023 {
            return Err(StanzaError::new(Condition::NotAcceptable).text("a group name is too long"));
        }
        if groups.contains(&text) {
            return Err(StanzaError::bad_request("the same group twice"));
        }
        groups.push(text);
    }
    Ok(SetItem {
        jid: jid.to_string(),
        remove,
        name,
        groups,
    })
}

async fn roster_set(service: &Arc<RosterService>, request: IqRequest) -> IqResult {
    let (user, own) = own_account(&request)?;
    let set = parse_set(request.payload())?;
    let host = request.host.clone();
    if set.remove {
        // Cancel both directions of the subscription before forgetting the contact
        // (RFC 6121 §2.5.2).
        let removed = service
            .update(&host, &user, |roster| {
                let removed = roster.items.remove(&set.jid);
                roster.pending_in.remove(&set.jid);
                (removed, vec![set.jid.clone()])
            })
            .await?;
        let Some(item) = removed else {
            return Err(StanzaError::new(Condition::ItemNotFound).into());
        };
        let announce = |kind: &str| {
            element("presence", ns::CLIENT)
                .with("type", kind)
                .with("from", own.to_string())
                .with("to", set.jid.clone())
        };
        if item.subscription.to() || item.ask {
            host.send(announce("unsubscribe")).await;
        }
        if item.subscription.from() {
            // The contact no longer sees the user: it hears the user's resources go
            // unavailable, first, as for any cancellation (RFC 6121 §3.2.2).
            for session in host
                .sessions_of(&user)
                .into_iter()
                .filter(SessionHandle::is_available)
            {
                let unavailable = element("presence", ns::CLIENT)
                    .with("type", "unavailable")
                    .with("from", session.jid().to_string())
                    .with("to", set.jid.clone());
                host.send(unavailable).await;
            }
            host.send(announce("unsubscribed")).await;
        }
        return Ok(None);
    }
    service
        .update(&host, &user, |roster| {
            let entry = roster.items.entry(set.jid.clone()).or_default();
            entry.name = set.name.clone();
            entry.groups = set.groups.clone();
            ((), vec![set.jid.clone()])
        })
        .await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::writer;

    /// The result a client reads: every item with its attributes and groups, escaped,
    /// and the same item a push would carry.
    #[test]
    fn the_roster_result_reads_back() {
        let mut roster = Roster {
            version: 7,
            ..Default::default()
        };
        roster.items.insert(
            "juliet@capulet.lit".into(),
            RosterItem {
                name: Some("Juliet <3 & 'co'".into()),
                groups: vec!["Friends".into(), "Verona & Mantua".into()],
                subscription: Subscription::Both,
                ask: false,
                approved: true,
            },
        );
        roster.items.insert(
            "nurse@capulet.lit".into(),
            RosterItem {
                ask: true,
                ..Default::default()
            },
        );
        let written = writer::to_string(&roster_result(&roster));
        let query: Element = written.parse().expect("well formed");
        assert!(query.is("query", NS_ROSTER));
        assert_eq!(query.attr("ver"), Some("7"));
        let items: Vec<&Element> = query.children().collect();
        assert_eq!(items.len(), 2);
        let juliet = items[0];
        assert!(juliet.is("item", NS_ROSTER));
        assert_eq!(juliet.attr("jid"), Some("juliet@capulet.lit"));
        assert_eq!(juliet.attr("name"), Some("Juliet <3 & 'co'"));
        assert_eq!(juliet.attr("subscription"), Some("both"));
        assert_eq!(juliet.attr("approved"), Some("true"));
        assert_eq!(juliet.attr("ask"), None);
        let groups: Vec<String> = juliet.children().map(|g| g.text()).collect();
        assert_eq!(groups, ["Friends", "Verona & Mantua"]);
        assert_eq!(items[1].attr("ask"), Some("subscribe"));
        assert_eq!(items[1].attr("subscription"), Some("none"));
        assert_eq!(
            juliet,
            &item_element("juliet@capulet.lit", &roster.items["juliet@capulet.lit"])
        );
    }

    #[test]
    fn an_item_xml_cannot_carry_is_left_out() {
        let mut roster = Roster::default();
        roster.items.insert(
            "a@example.org".into(),
            RosterItem {
                name: Some("bell\u{7}".into()),
                ..Default::default()
            },
        );
        roster
            .items
            .insert("b@example.org".into(), RosterItem::default());
        let query: Element = writer::to_string(&roster_result(&roster))
            .parse()
            .expect("well formed");
        let jids: Vec<_> = query.children().filter_map(|i| i.attr("jid")).collect();
        assert_eq!(jids, ["b@example.org"]);
        let pushed = item_element("a@example.org", &roster.items["a@example.org"]);
        assert_eq!(pushed.attr("jid"), Some("a@example.org"));
        assert_eq!(pushed.attr("name"), None);
    }
}
