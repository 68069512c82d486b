//! A virtual host: its own events, items, IQ handlers, modules and session table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use jid::{BareJid, FullJid, Jid};
use tokio::sync::oneshot;

use crate::config::ModuleOptions;
use crate::events::{Event, EventBus, HandlerError};
use crate::items::{ItemAdded, ItemId, ItemRemoved, Items};
use crate::module::LoadedModule;
use crate::server::ServerInner;
use crate::session::{SessionHandle, SessionInfo};
use crate::stanza::{StanzaError, StreamError, StreamErrorCondition};
use crate::storage::SharedStorage;
use crate::xml::{ns, Element, ElementExt};

/// IQ request type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqType {
    Get,
    Set,
}

/// What an IQ is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// The server itself (`to` = the domain).
    Host,
    /// An account's bare JID (also: no `to` at all, which means the sender's own account).
    Bare,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IqKey {
    pub iq_type: IqType,
    pub target: IqTarget,
    pub namespace: String,
    pub name: String,
}

/// An IQ get or set handed to a handler.
pub struct IqRequest {
    pub host: Arc<Host>,
    /// The requesting session, when the request came from a local client.
    pub session: Option<Arc<SessionInfo>>,
    /// Shared with the router, which answers from it once the handler is done: a handler
    /// that only reads its request costs no copy of it.
    pub stanza: Arc<Element>,
    /// The stamped sender.
    pub from: Jid,
    /// The addressee (the domain, or a bare JID).
    pub to: Jid,
}

impl IqRequest {
    /// The single child element (validated before any handler runs).
    pub fn payload(&self) -> &Element {
        // The router only dispatches get/set IQs that have exactly one child.
        self.stanza.first_child().unwrap_or(&self.stanza)
    }

    pub fn iq_type(&self) -> IqType {
        if self.stanza.attr("type") == Some("set") {
            IqType::Set
        } else {
            IqType::Get
        }
    }

    /// The request's `xml:lang`, else the session's.
    pub fn lang(&self) -> Option<String> {
        self.stanza
            .lang()
            .map(str::to_string)
            .or_else(|| self.session.as_ref().map(|s| s.lang.clone()))
    }
}

/// What an IQ handler answers: a payload for the result (or none), or an error.
pub type IqResult = Result<Option<Element>, HandlerError>;

pub(crate) type IqHandler = Arc<dyn Fn(IqRequest) -> BoxFuture<'static, IqResult> + Send + Sync>;

/// A disco#info feature a module advertises (an item, so disco gathers them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoFeature(pub String);

/// A disco#info identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoIdentity {
    pub category: String,
    pub kind: String,
    pub name: Option<String>,
}

/// A stream feature a module offers to clients after authentication (e.g. roster
/// versioning), listed beside `<bind/>`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamFeature(pub Element);

/// A stream feature offered before authentication (e.g. in-band registration).
#[derive(Clone, Debug, PartialEq)]
pub struct PreAuthStreamFeature(pub Element);

/// An IQ an unauthenticated client sent during negotiation (in-band registration). A
/// handler that takes it sets `reply`; without one the stream ends with `not-authorized`.
pub struct PreAuthIq {
    pub host: std::sync::Arc<Host>,
    pub peer: std::net::SocketAddr,
    /// TLS is in place.
    pub secure: bool,
    pub stanza: Element,
    pub reply: Option<Element>,
}

/// Fired after an account and all its records were deleted: modules forget what they
/// keep in memory about it, so that a new account of the same name starts clean.
pub struct AccountDeleted {
    pub host: Arc<Host>,
    pub user: String,
}

struct PendingIq {
    expected_from: Jid,
    reply: oneshot::Sender<Element>,
}

pub struct Host {
    pub name: String,
    domain: Jid,
    pub events: EventBus,
    pub items: Items,
    pub(crate) server: Weak<ServerInner>,
    storage: SharedStorage,
    /// localpart -> resource -> session.
    sessions: RwLock<HashMap<String, HashMap<String, SessionHandle>>>,
    /// Scanned, not hashed: a host has a few dozen handlers, and a key to hash would copy
    /// every request's payload name and namespace into strings of their own.
    iq_handlers: RwLock<Vec<(IqKey, IqHandler)>>,
    pending_iqs: Mutex<HashMap<String, PendingIq>>,
    pub(crate) modules: Mutex<Vec<LoadedModule>>,
    /// XEP-0198 resumable sessions by resumption id.
    resumable: Mutex<HashMap<String, SessionHandle>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Host {
    pub(crate) fn new(domain: BareJid, server: Weak<ServerInner>, storage: SharedStorage) -> Self {
        Host {
            name: domain.to_string(),
            domain: Jid::from(domain),
            events: EventBus::new(),
            items: Items::default(),
            server,
            storage,
            sessions: Default::default(),
            iq_handlers: Default::default(),
            pending_iqs: Default::default(),
            modules: Default::default(),
            resumable: Default::default(),
        }
    }

    pub fn storage(&self) -> &SharedStorage {
        &self.storage
    }

    /// The host's domain as a JID.
    pub fn jid(&self) -> Jid {
        self.domain.clone()
    }

    /// Options of `module` on this host, from the server's current config.
    pub fn module_options(&self, module: &str) -> ModuleOptions {
        match self.server.upgrade() {
            Some(server) => server.config().module_options(&self.name, module),
            None => ModuleOptions::empty(),
        }
    }

    // ---- items ----

    /// Adds an item and announces it with [`ItemAdded`].
    pub fn add_item<T: Send + Sync + 'static>(
        self: &Arc<Self>,
        owner: &str,
        item: Arc<T>,
    ) -> ItemId {
        let id = self.items.add(owner, item.clone());
        self.announce(ItemAdded {
            owner: owner.to_string(),
            item,
        });
        id
    }

    /// Removes an item and announces it with [`ItemRemoved`].
    pub fn remove_item<T: Send + Sync + 'static>(self: &Arc<Self>, id: ItemId) -> bool {
        match self.items.remove::<T>(id) {
            Some((owner, item)) => {
                self.announce(ItemRemoved { owner, item });
                true
            }
            None => false,
        }
    }

    /// Fires an event in the background: item announcements must not make the caller
    /// (often a module's synchronous `load`) wait for consumers.
    pub(crate) fn announce<E: Event>(self: &Arc<Self>, mut event: E) {
        if !self.events.has_handlers::<E>() {
            return;
        }
        let host = self.clone();
        tokio::spawn(async move {
            if let Err(err) = host.events.fire(&mut event).await {
                tracing::warn!(host = %host.name, %err, "item event handler failed");
            }
        });
    }

    // ---- IQ handlers ----

    pub(crate) fn set_iq_handler(&self, key: IqKey, handler: IqHandler) -> bool {
        let mut handlers = self.iq_handlers.write().unwrap_or_else(|p| p.into_inner());
        if handlers.iter().any(|(registered, _)| *registered == key) {
            return false;
        }
        handlers.push((key, handler));
        true
    }

    pub(crate) fn remove_iq_handler(&self, key: &IqKey) {
        self.iq_handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(registered, _)| registered != key);
    }

    /// The handler of `iq_type` requests to `target` whose payload is `payload`'s element.
    pub(crate) fn iq_handler(
        &self,
        iq_type: IqType,
        target: IqTarget,
        payload: &Element,
    ) -> Option<IqHandler> {
        self.iq_handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(key, _)| {
                key.iq_type == iq_type
                    && key.target == target
                    && payload.is(key.name.as_str(), key.namespace.as_str())
            })
            .map(|(_, handler)| handler.clone())
    }

    // ---- accounts ----

    /// Deletes the account and its records in one durable step, then fires
    /// [`AccountDeleted`]. `Ok(false)`: there was no such account. Closing the
    /// account's sessions is the caller's (with its own words for why).
    pub async fn delete_account(
        self: &Arc<Self>,
        user: &str,
    ) -> crate::storage::StorageResult<bool> {
        if !self.storage.delete_account(&self.name, user).await? {
            return Ok(false);
        }
        let mut event = AccountDeleted {
            host: self.clone(),
            user: user.to_string(),
        };
        if let Err(err) = self.events.fire(&mut event).await {
            tracing::warn!(host = %self.name, user, %err, "an account-deleted handler failed");
        }
        Ok(true)
    }

    // ---- sessions ----

    /// Adds a bound session, unless the account already has `limit` sessions and this
    /// one does not replace one of them (counted and added under one lock, so binds at
    /// the same moment cannot both pass). A replaced session (same full JID) is closed
    /// with a `conflict` stream error (RFC 6120 §7.7.2.2).
    pub(crate) fn add_session(&self, handle: SessionHandle, limit: usize) -> bool {
        let jid = handle.jid().clone();
        let user = jid.node().map(|n| n.to_string()).unwrap_or_default();
        let resource = jid.resource().to_string();
        let old = {
            let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
            let resources = sessions.entry(user).or_default();
            // `limit` is at least 1, so a refusal never leaves an empty entry behind.
            if resources.len() >= limit && !resources.contains_key(&resource) {
                return false;
            }
            resources.insert(resource, handle)
        };
        if let Some(old) = old {
            old.close(Some(StreamError::with_text(
                StreamErrorCondition::Conflict,
                "replaced by a new session with the same resource",
            )));
        }
        true
    }

    /// Removes the session if it is still the one registered under its JID.
    pub(crate) fn remove_session(&self, handle: &SessionHandle) -> bool {
        let jid = handle.jid();
        let user = jid.node().map(|n| n.to_string()).unwrap_or_default();
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let Some(resources) = sessions.get_mut(&user) else {
            return false;
        };
        let is_current = resources
            .get(jid.resource().as_str())
            .is_some_and(|current| current.same_session(handle));
        if is_current {
            resources.remove(jid.resource().as_str());
            if resources.is_empty() {
                sessions.remove(&user);
            }
        }
        is_current
    }

    pub fn session(&self, jid: &FullJid) -> Option<SessionHandle> {
        let user = jid.node()?.as_str();
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)?
            .get(jid.resource().as_str())
            .cloned()
    }

    /// All sessions of an account.
    pub fn sessions_of(&self, user: &str) -> Vec<SessionHandle> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the account has a session (of any state) right now.
    pub fn has_sessions(&self, user: &str) -> bool {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_some_and(|r| !r.is_empty())
    }

    pub fn resource_in_use(&self, user: &str, resource: &str) -> bool {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_some_and(|r| r.contains_key(resource))
    }

    pub fn all_sessions(&self) -> Vec<SessionHandle> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|r| r.values().cloned())
            .collect()
    }

    pub fn session_count(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(HashMap::len)
            .sum()
    }

    pub(crate) fn register_resumable(&self, id: &str, session: SessionHandle) {
        self.resumable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), session);
    }

    pub(crate) fn forget_resumable(&self, id: &str) {
        self.resumable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The resumable session `id`, if it belongs to `user`.
    pub(crate) fn resumable(&self, id: &str, user: &str) -> Option<SessionHandle> {
        let resumable = self.resumable.lock().unwrap_or_else(|p| p.into_inner());
        resumable
            .get(id)
            .filter(|s| s.jid().node().is_some_and(|n| n.as_str() == user))
            .cloned()
    }

    // ---- sending ----

    /// Routes a stanza from this host (stamps `from` with the domain when absent).
    pub async fn send(self: &Arc<Self>, mut stanza: Element) {
        if stanza.attr("from").is_none() {
            stanza.set("from", self.name.clone());
        }
        if let Some(server) = self.server.upgrade() {
            crate::router::route(&server, stanza, None).await;
        }
    }

    /// Sends an IQ get/set from this host and waits for the reply (result or error
    /// stanza). Fails with `remote-server-timeout` when none comes within `timeout`.
    pub async fn send_iq(
        self: &Arc<Self>,
        to: &Jid,
        mut iq: Element,
        timeout: Duration,
    ) -> Result<Element, StanzaError> {
        let id = match iq.attr("id") {
            Some(id) => id.to_string(),
            None => {
                let id = crate::util::random_id();
                iq.set("id", id.clone());
                id
            }
        };
        iq.set("to", to.to_string());
        let (tx, rx) = oneshot::channel();
        self.pending_iqs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                PendingIq {
                    expected_from: to.clone(),
                    reply: tx,
                },
            );
        self.send(iq).await;
        let outcome = tokio::time::timeout(timeout, rx).await;
        self.pending_iqs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(StanzaError::new(
                crate::stanza::Condition::RecipientUnavailable,
            )),
            Err(_) => Err(StanzaError::new(
                crate::stanza::Condition::RemoteServerTimeout,
            )),
        }
    }

    /// Completes a pending [`Host::send_iq`] if `reply` answers one. The sender must be the
    /// entity the request went to, so nobody can answer on another's behalf.
    pub(crate) fn take_iq_reply(&self, reply: &Element, from: &Jid) -> Option<Element> {
        let id = reply.attr("id")?;
        let mut pending = self.pending_iqs.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.get(id)?;
        let matches = entry.expected_from == *from
            || (entry.expected_from.is_bare() && entry.expected_from.to_bare() == from.to_bare());
        if !matches {
            return None;
        }
        let entry = pending.remove(id)?;
        let _ = entry.reply.send(reply.clone());
        Some(reply.clone())
    }

    /// Builds a `<message/>`, `<presence/>` or `<iq/>` in `jabber:client`.
    pub fn stanza(name: &str) -> Element {
        Element::bare(name, ns::CLIENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::bound_info;

    fn session(resource: &str) -> SessionHandle {
        let jid = FullJid::new(&format!("romeo@localhost/{resource}")).expect("jid");
        // Nothing reads the queue: these sessions are only counted.
        SessionHandle::new(Arc::new(bound_info(&jid)), jid, 1)
    }

    #[test]
    fn adding_sessions_from_many_threads_never_passes_the_limit() {
        let host = Host::new(
            BareJid::new("localhost").expect("jid"),
            Weak::new(),
            Arc::new(crate::storage::memory::MemoryStorage::default()),
        );
        let added: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..16)
                .map(|i| {
                    let host = &host;
                    scope.spawn(move || usize::from(host.add_session(session(&format!("r{i}")), 3)))
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        });
        assert_eq!(added, 3);
        assert_eq!(host.session_count(), 3);
        // At the limit, a bind that replaces one of the sessions still gets in.
        let taken = host.sessions_of("romeo")[0].jid().resource().to_string();
        assert!(host.add_session(session(&taken), 3));
        assert!(!host.add_session(session("another"), 3));
        assert_eq!(host.session_count(), 3);
    }

    fn key(iq_type: IqType, target: IqTarget, namespace: &str, name: &str) -> IqKey {
        IqKey {
            iq_type,
            target,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// A handler that answers with an element named `tag`, to tell handlers apart.
    fn answering(tag: &'static str) -> IqHandler {
        Arc::new(move |_| Box::pin(async move { Ok(Some(Element::bare(tag, "urn:test"))) }))
    }

    async fn answer_of(handler: Option<IqHandler>, host: &Arc<Host>) -> Option<String> {
        let request = IqRequest {
            host: host.clone(),
            session: None,
            stanza: Arc::new(Element::bare("iq", ns::CLIENT)),
            from: Jid::new("romeo@localhost/a").expect("jid"),
            to: Jid::new("localhost").expect("jid"),
        };
        let payload = handler?(request).await.ok()??;
        Some(payload.name().to_string())
    }

    #[tokio::test]
    async fn iq_handlers_are_found_by_type_target_namespace_and_name() {
        use IqTarget::{Bare, Host as ToHost};
        use IqType::{Get, Set};
        let host = Arc::new(Host::new(
            BareJid::new("localhost").expect("jid"),
            Weak::new(),
            Arc::new(crate::storage::memory::MemoryStorage::default()),
        ));
        let registered = [
            (Get, ToHost, "urn:a", "get-host-a"),
            (Set, ToHost, "urn:a", "set-host-a"),
            (Get, Bare, "urn:a", "get-bare-a"),
            (Get, ToHost, "urn:b", "get-host-b"),
        ];
        for (iq_type, target, namespace, tag) in registered {
            assert!(host.set_iq_handler(key(iq_type, target, namespace, "q"), answering(tag)));
        }
        // A second handler for a taken key is refused; the first stays.
        assert!(!host.set_iq_handler(key(Get, ToHost, "urn:a", "q"), answering("second")));

        // Each of type, target, namespace and name tells handlers apart.
        let lookups = [
            (Get, ToHost, "urn:a", "q", Some("get-host-a")),
            (Set, ToHost, "urn:a", "q", Some("set-host-a")),
            (Get, Bare, "urn:a", "q", Some("get-bare-a")),
            (Get, ToHost, "urn:b", "q", Some("get-host-b")),
            (Set, ToHost, "urn:b", "q", None),
            (Get, ToHost, "urn:a", "other", None),
            (Get, ToHost, "urn:c", "q", None),
        ];
        for (iq_type, target, namespace, name, expected) in lookups {
            let handler = host.iq_handler(iq_type, target, &Element::bare(name, namespace));
            assert_eq!(
                answer_of(handler, &host).await.as_deref(),
                expected,
                "{iq_type:?} {target:?} {{{namespace}}}{name}"
            );
        }

        let a = Element::bare("q", "urn:a");
        host.remove_iq_handler(&key(Get, ToHost, "urn:a", "q"));
        assert!(host.iq_handler(Get, ToHost, &a).is_none());
        assert!(
            host.iq_handler(Set, ToHost, &a).is_some(),
            "only that key is removed"
        );
        // Once removed, the key may be taken again.
        assert!(host.set_iq_handler(key(Get, ToHost, "urn:a", "q"), answering("again")));
        let again = host.iq_handler(Get, ToHost, &a);
        assert_eq!(answer_of(again, &host).await.as_deref(), Some("again"));
    }
}
