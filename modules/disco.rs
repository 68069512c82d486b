//! XEP-0030: Service Discovery for the server.
//!
//! Features and identities are the [`DiscoFeature`] / [`DiscoIdentity`] items other
//! modules add. Before answering, [`DiscoInfoRequest`] is fired with the requester, so a
//! module can show a feature only to those allowed to use it (external_services does).

use std::sync::Arc;

use crate::api::*;

pub const MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "disco",
    depends: &[],
    load,
};

/// Fired for each disco#info request to the server, after the items were gathered.
pub struct DiscoInfoRequest {
    pub host: Arc<Host>,
    pub session: Option<Arc<SessionInfo>>,
    pub from: Jid,
    pub node: Option<String>,
    pub identities: Vec<DiscoIdentity>,
    pub features: Vec<String>,
    /// XEP-0128 extended info forms.
    pub extensions: Vec<Element>,
}

/// A disco#items entry (an item, like features).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoItem {
    pub jid: String,
    pub name: Option<String>,
    pub node: Option<String>,
}

fn load(ctx: &mut ModuleContext) -> anyhow::Result<()> {
    let options = ctx.options();
    let name = options.string("name").unwrap_or_else(|| "Tern".to_string());
    ctx.add_identity("server", "im", Some(&name));
    ctx.add_feature(ns::DISCO_INFO);
    ctx.add_feature(ns::DISCO_ITEMS);

    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        ns::DISCO_INFO,
        "query",
        |request| async move {
            let node = request.payload().attr("node").map(str::to_string);
            let host = request.host.clone();
            let mut event = DiscoInfoRequest {
                host: host.clone(),
                session: request.session.clone(),
                from: request.from.clone(),
                node: node.clone(),
                // Nodes are answered by the modules that own them (through the event).
                identities: if node.is_some() {
                    Vec::new()
                } else {
                    host.items
                        .all::<DiscoIdentity>()
                        .iter()
                        .map(|i| (**i).clone())
                        .collect()
                },
                features: if node.is_some() {
                    Vec::new()
                } else {
                    host.items
                        .all::<DiscoFeature>()
                        .iter()
                        .map(|f| f.0.clone())
                        .collect()
                },
                extensions: Vec::new(),
            };
            host.events.fire(&mut event).await?;
            if node.is_some() && event.features.is_empty() && event.identities.is_empty() {
                return Err(StanzaError::new(Condition::ItemNotFound).into());
            }
            let mut query = element("query", ns::DISCO_INFO);
            if let Some(node) = &node {
                query.set("node", node.clone());
            }
            let mut identities = event.identities;
            identities.dedup();
            for identity in identities {
                let mut el = element("identity", ns::DISCO_INFO)
                    .with("category", identity.category)
                    .with("type", identity.kind);
                if let Some(name) = identity.name {
                    el.set("name", name);
                }
                query.append_child(el);
            }
            let mut features = event.features;
            features.sort();
            features.dedup();
            for feature in features {
                query.append_child(element("feature", ns::DISCO_INFO).with("var", feature));
            }
            for extension in event.extensions {
                query.append_child(extension);
            }
            Ok(Some(query))
        },
    );

    // An account's bare JID (RFC 6121 §10.5 / XEP-0030): answered by the server for the
    // owner and for contacts subscribed to the account's presence; others learn nothing,
    // not even whether the account exists.
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        ns::DISCO_INFO,
        "query",
        |request| async move {
            if !may_see_account(&request) {
                return Err(StanzaError::new(Condition::ServiceUnavailable).into());
            }
            let mut query = element("query", ns::DISCO_INFO).with_child(
                element("identity", ns::DISCO_INFO)
                    .with("category", "account")
                    .with("type", "registered"),
            );
            query.append_child(element("feature", ns::DISCO_INFO).with("var", ns::DISCO_INFO));
            Ok(Some(query))
        },
    );
    ctx.hook_iq(
        IqType::Get,
        IqTarget::Bare,
        ns::DISCO_ITEMS,
        "query",
        |request| async move {
            if !may_see_account(&request) {
                return Err(StanzaError::new(Condition::ServiceUnavailable).into());
            }
            Ok(Some(element("query", ns::DISCO_ITEMS)))
        },
    );

    ctx.hook_iq(
        IqType::Get,
        IqTarget::Host,
        ns::DISCO_ITEMS,
        "query",
        |request| async move {
            let mut query = element("query", ns::DISCO_ITEMS);
            if let Some(node) = request.payload().attr("node") {
                query.set("node", node);
                return Ok(Some(query));
            }
            for item in request.host.items.all::<DiscoItem>() {
                let mut el = element("item", ns::DISCO_ITEMS).with("jid", item.jid.clone());
                if let Some(name) = &item.name {
                    el.set("name", name.clone());
                }
                if let Some(node) = &item.node {
                    el.set("node", node.clone());
                }
                query.append_child(el);
            }
            Ok(Some(query))
        },
    );
    Ok(())
}

fn may_see_account(request: &IqRequest) -> bool {
    let host = &request.host;
    let account = request.to.to_bare();
    let requester = request.from.to_bare();
    let Some(user) = account.node().map(|n| n.to_string()) else {
        return false;
    };
    if !host
        .storage()
        .account_exists(&host.name, &user)
        .unwrap_or(false)
    {
        return false;
    }
    requester == account
        || crate::modules::roster::service(host)
            .and_then(|service| service.read(host, &user).ok())
            .and_then(|roster| {
                roster
                    .items
                    .get(&requester.to_string())
                    .map(|i| i.subscription.from())
            })
            .unwrap_or(false)
}
