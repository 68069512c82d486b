//! Typed events with prioritised async handlers (Prosody's `util.events`, typed).
//!
//! Handlers run highest priority first, ties in registration order; the first that
//! returns [`Flow::Handled`] stops the chain. Conventions: `> 0` interceptors, `0` the
//! implementation, `< 0` fallbacks and post-processing.
//!
//! Each event type's handler list is an immutable snapshot behind an `Arc`; hooking or
//! unhooking swaps the snapshot, and firing clones the `Arc` and releases the lock before
//! any handler runs, so no lock is ever held across an `.await`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

/// What a handler tells the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Let lower-priority handlers run too.
    Continue,
    /// Stop: this handler took care of the event.
    Handled,
}

/// A handler failure. The bus stops the chain and hands the error to whoever fired.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Fail the request with this stanza error (sent to the requester as-is).
    #[error("{0}")]
    Stanza(crate::stanza::StanzaError),
    /// Anything else: the requester sees `internal-server-error`, the log sees this.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::stanza::StanzaError> for HandlerError {
    fn from(err: crate::stanza::StanzaError) -> Self {
        HandlerError::Stanza(err)
    }
}

pub type HandlerResult = Result<Flow, HandlerError>;

/// What a handler returns for an event that is not for it (a presence hook seeing a
/// message): `Continue`, without allocating. Several hooks see every stanza, and a boxed
/// `async` block per hook per stanza is an allocation each; a box of this zero-sized
/// future is none.
pub fn pass<'a>() -> BoxFuture<'a, HandlerResult> {
    Box::pin(Pass)
}

struct Pass;

impl std::future::Future for Pass {
    type Output = HandlerResult;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<HandlerResult> {
        std::task::Poll::Ready(Ok(Flow::Continue))
    }
}

/// Marker for values that can be fired. Any `Send + 'static` type qualifies.
pub trait Event: Send + 'static {}
impl<T: Send + 'static> Event for T {}

type Handler<E> = Arc<dyn for<'a> Fn(&'a mut E) -> BoxFuture<'a, HandlerResult> + Send + Sync>;

struct Entry<E> {
    id: HookId,
    priority: i32,
    handler: Handler<E>,
}

impl<E> Clone for Entry<E> {
    fn clone(&self) -> Self {
        Entry {
            id: self.id,
            priority: self.priority,
            handler: self.handler.clone(),
        }
    }
}

/// Hashes a `TypeId` as the hash it already is. Every stanza fires two or three events
/// and a login about twenty, and SipHash over a `TypeId` cost about 160 instructions per
/// look-up; keys chosen by the compiler need no protection from collisions an attacker
/// picks.
type TypeIdHash = std::hash::BuildHasherDefault<TypeIdHasher>;

#[derive(Default)]
struct TypeIdHasher(u64);

impl std::hash::Hasher for TypeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }

    // `TypeId` hashes through `write_u64` today; any other way in still spreads its bytes.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Identifies one registration, for unhooking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HookId(u64);

type Snapshot<E> = Arc<Vec<Entry<E>>>;

#[derive(Default)]
pub struct EventBus {
    // TypeId of E -> Snapshot<E>
    lists: RwLock<HashMap<TypeId, Slot, TypeIdHash>>,
    // HookId -> TypeId, so unhook needs no type parameter (module unloading).
    owners: RwLock<HashMap<HookId, TypeId>>,
    next_id: AtomicU64,
}

impl EventBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for events of type `E`.
    pub fn hook<E, F>(&self, priority: i32, handler: F) -> HookId
    where
        E: Event,
        F: for<'a> Fn(&'a mut E) -> BoxFuture<'a, HandlerResult> + Send + Sync + 'static,
    {
        let id = HookId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let entry = Entry {
            id,
            priority,
            handler: Arc::new(handler),
        };
        let mut lists = self.lists.write().unwrap_or_else(|p| p.into_inner());
        let slot = lists.entry(TypeId::of::<E>()).or_insert_with(|| Slot {
            list: Box::new(Snapshot::<E>::default()),
            remove: remover_for::<E>,
        });
        if let Some(snapshot) = slot.list.downcast_mut::<Snapshot<E>>() {
            let mut next: Vec<Entry<E>> = snapshot.as_ref().clone();
            // Stable: equal priorities keep registration order.
            let at = next.partition_point(|e| e.priority >= priority);
            next.insert(at, entry);
            *snapshot = Arc::new(next);
        }
        drop(lists);
        self.owners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, TypeId::of::<E>());
        id
    }

    /// Removes one registration. Returns whether it existed.
    pub fn unhook(&self, id: HookId) -> bool {
        let Some(type_id) = self
            .owners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        else {
            return false;
        };
        let mut lists = self.lists.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = lists.get_mut(&type_id) {
            (slot.remove)(slot.list.as_mut(), id);
        }
        true
    }

    fn snapshot<E: Event>(&self) -> Option<Snapshot<E>> {
        let lists = self.lists.read().unwrap_or_else(|p| p.into_inner());
        lists
            .get(&TypeId::of::<E>())
            .and_then(|slot| slot.list.downcast_ref::<Snapshot<E>>())
            .cloned()
    }

    /// Whether anything listens for `E` (lets hot paths skip building an event).
    pub fn has_handlers<E: Event>(&self) -> bool {
        self.snapshot::<E>().is_some_and(|s| !s.is_empty())
    }

    /// Runs the handlers for `event` in order. Returns `Handled` if one stopped the chain.
    pub async fn fire<E: Event>(&self, event: &mut E) -> HandlerResult {
        let Some(handlers) = self.snapshot::<E>() else {
            return Ok(Flow::Continue);
        };
        for entry in handlers.iter() {
            if (entry.handler)(event).await? == Flow::Handled {
                return Ok(Flow::Handled);
            }
        }
        Ok(Flow::Continue)
    }
}

type Remover = fn(&mut (dyn Any + Send + Sync), HookId);

/// One event type's handlers, type-erased, with the function that knows how to drop an
/// entry from them (unhooking has only a `HookId`, not the event type).
struct Slot {
    list: Box<dyn Any + Send + Sync>,
    remove: Remover,
}

fn remover_for<E: Event>(list: &mut (dyn Any + Send + Sync), id: HookId) {
    if let Some(snapshot) = list.downcast_mut::<Snapshot<E>>() {
        let next: Vec<Entry<E>> = snapshot.iter().filter(|e| e.id != id).cloned().collect();
        *snapshot = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ping(Vec<&'static str>);

    #[tokio::test]
    async fn priority_order_and_handled_stops() {
        let bus = EventBus::new();
        bus.hook::<Ping, _>(0, |p| {
            Box::pin(async move {
                p.0.push("zero-a");
                Ok(Flow::Continue)
            })
        });
        bus.hook::<Ping, _>(10, |p| {
            Box::pin(async move {
                p.0.push("ten");
                Ok(Flow::Continue)
            })
        });
        bus.hook::<Ping, _>(0, |p| {
            Box::pin(async move {
                tokio::task::yield_now().await;
                p.0.push("zero-b");
                Ok(Flow::Handled)
            })
        });
        bus.hook::<Ping, _>(-5, |p| {
            Box::pin(async move {
                p.0.push("never");
                Ok(Flow::Continue)
            })
        });
        let mut ev = Ping(vec![]);
        assert_eq!(bus.fire(&mut ev).await.ok(), Some(Flow::Handled));
        assert_eq!(ev.0, vec!["ten", "zero-a", "zero-b"]);
    }

    struct Pong(Vec<&'static str>);
    struct Other(u32);

    #[tokio::test]
    async fn each_event_type_fires_only_its_own_handlers() {
        let bus = EventBus::new();
        bus.hook::<Ping, _>(0, |p| {
            p.0.push("ping");
            pass()
        });
        bus.hook::<Pong, _>(0, |p| {
            p.0.push("pong");
            pass()
        });
        bus.hook::<Other, _>(0, |o| {
            o.0 += 1;
            pass()
        });
        let (mut ping, mut pong, mut other) = (Ping(vec![]), Pong(vec![]), Other(0));
        assert!(bus.fire(&mut ping).await.is_ok());
        assert!(bus.fire(&mut pong).await.is_ok());
        assert!(bus.fire(&mut other).await.is_ok());
        assert_eq!(ping.0, vec!["ping"]);
        assert_eq!(pong.0, vec!["pong"]);
        assert_eq!(other.0, 1);
        assert!(
            !bus.has_handlers::<String>(),
            "no handler for a type never hooked"
        );
        let hash_of = |id: TypeId| std::hash::BuildHasher::hash_one(&TypeIdHash::default(), id);
        assert_ne!(hash_of(TypeId::of::<Ping>()), hash_of(TypeId::of::<Pong>()));
    }

    #[tokio::test]
    async fn a_handler_that_passes_lets_the_chain_go_on() {
        let bus = EventBus::new();
        bus.hook::<Ping, _>(10, |p| {
            p.0.push("passed");
            pass()
        });
        bus.hook::<Ping, _>(0, |p| {
            Box::pin(async move {
                p.0.push("next");
                Ok(Flow::Continue)
            })
        });
        let mut ev = Ping(vec![]);
        assert_eq!(bus.fire(&mut ev).await.ok(), Some(Flow::Continue));
        assert_eq!(ev.0, vec!["passed", "next"]);
        assert_eq!(
            std::mem::size_of::<Pass>(),
            0,
            "a box of it must not allocate"
        );
    }

    #[tokio::test]
    async fn unhook_removes_only_that_handler() {
        let bus = EventBus::new();
        let a = bus.hook::<Ping, _>(0, |p| {
            Box::pin(async move {
                p.0.push("a");
                Ok(Flow::Continue)
            })
        });
        bus.hook::<Ping, _>(0, |p| {
            Box::pin(async move {
                p.0.push("b");
                Ok(Flow::Continue)
            })
        });
        assert!(bus.unhook(a));
        assert!(!bus.unhook(a));
        let mut ev = Ping(vec![]);
        bus.fire(&mut ev).await.ok();
        assert_eq!(ev.0, vec!["b"]);
    }

    #[tokio::test]
    async fn error_stops_chain() {
        let bus = EventBus::new();
        bus.hook::<Ping, _>(1, |_| {
            Box::pin(async move {
                Err(HandlerError::Stanza(crate::stanza::StanzaError::new(
                    crate::stanza::Condition::Forbidden,
                )))
            })
        });
        bus.hook::<Ping, _>(0, |p| {
            Box::pin(async move {
                p.0.push("after");
                Ok(Flow::Continue)
            })
        });
        let mut ev = Ping(vec![]);
        assert!(bus.fire(&mut ev).await.is_err());
        assert!(ev.0.is_empty());
    }
}
