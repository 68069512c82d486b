//! # Tern
//!
//! A small, complete XMPP server (client-to-server) whose flagship is XEP-0215,
//! External Service Discovery.
//!
//! ## How the pieces fit
//! - [`server`]: a [`server::Server`] owns the config snapshot, the hosts, storage and
//!   TLS. The caller binds [`server::Listeners`] and passes a shutdown future to
//!   `serve`. No process globals: several servers can run in one test binary.
//! - [`host`]: one [`host::Host`] per virtual host, with its own [`events::EventBus`],
//!   [`items::Items`], IQ handlers, loaded modules, and the session table
//!   `localpart -> resource -> SessionHandle`.
//! - `c2s`: one task per connection. It owns the socket, frames the XML stream
//!   ([`xml::framer`]), negotiates STARTTLS or direct TLS ([`tls`]), SASL ([`sasl`]) and
//!   binding (or XEP-0198 resumption), then reads the session's stanzas one at a time, in
//!   order. A session task owns the session's bounded outbound queue, the writer and the
//!   stream-management state; it outlives a lost connection while the session can be
//!   resumed, and it ends the session (table, `SessionClosed`, unacknowledged stanzas).
//!   An idle connection is kept small (about 20 KiB with TLS): reads go through one
//!   buffer per thread, the framer releases its parser after a second of silence and
//!   rebuilds it by replaying the client's stream header, write buffers live only as long
//!   as a batch, and rare steps run in boxed futures so a task is not sized for them.
//! - [`router`]: validates and stamps what clients send, fires
//!   [`router::StanzaEvent`] on the addressed host, and applies RFC 6120/6121 delivery
//!   when no handler took the stanza. Every IQ get/set gets exactly one reply.
//! - [`module`]: modules are compiled in ([`modules::BUILTIN`], or added by embedders
//!   with [`server::ServerBuilder::module`]) and enabled per host. `load` receives a
//!   [`module::ModuleContext`] (≈ Prosody's `module`): hooks, IQ handlers, items, disco
//!   features, lenient options, background tasks. Unloading removes all of it.
//! - [`config`]: TOML; syntax errors are fatal, everything else a diagnostic.
//! - [`storage`]: a trait with sled (default) and memory backends; writes resolve once
//!   durable.
//! - [`admin`]: account commands and reloads, shared by the CLI and the admin socket.
//! - [`stun`] and [`turn_check`]: a STUN/TURN client to prove configured relays work.
//! - [`testing`]: `TestServer`, a real server on 127.0.0.1:0 with memory storage, and
//!   a logged-in test client.
//!
//! Modules should use [`api`] only, which keeps the module boundary as narrow as
//! Prosody's.

pub mod admin;
pub(crate) mod byte_stream;
pub(crate) mod c2s;
pub mod config;
pub mod events;
pub mod host;
pub mod items;
pub mod keyed_lock;
mod memory_trim;
pub mod module;
pub mod router;
pub mod sasl;
pub mod server;
pub mod session;
pub(crate) mod session_queue;
pub mod stanza;
pub mod storage;
pub mod stun;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod turn_check;
pub mod util;
pub mod xml;

#[path = "../modules/mod.rs"]
pub mod modules;

/// What modules may use.
pub mod api {
    pub use crate::config::ModuleOptions;
    pub use crate::events::{pass, Event, EventBus, Flow, HandlerError, HandlerResult, HookId};
    pub use crate::host::{
        AccountDeleted, DiscoFeature, DiscoIdentity, Host, IqRequest, IqResult, IqTarget, IqType,
        PreAuthIq, PreAuthStreamFeature, StreamFeature,
    };
    pub use crate::items::{ItemAdded, ItemId, ItemRemoved};
    pub use crate::module::{ModuleContext, ModuleDescriptor};
    pub use crate::router::{OutgoingStanza, StanzaEvent, Target, UndeliverableMessage};
    pub use crate::server::ConfigReloaded;
    pub use crate::session::{
        SessionBound, SessionClosed, SessionHandle, SessionInfo, TopLevelElement,
    };
    pub use crate::stanza::{
        error_reply, iq_result, Condition, ErrorType, StanzaError, StanzaKind,
    };
    pub use crate::xml::{element, ns, Element, ElementExt, LazyStanza};
    pub use futures::future::BoxFuture;
    pub use futures::FutureExt;
    pub use jid::{BareJid, FullJid, Jid};
}
