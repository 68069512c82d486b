//! Typed items: values modules publish for other modules to consume (Prosody's
//! `module:add_item`). Adding or removing one fires [`ItemAdded`] / [`ItemRemoved`] on
//! the host, so consumers can react (external_services pushes new services that way).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Identifies one added item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ItemId(u64);

/// Fired after an item of type `T` was added.
pub struct ItemAdded<T> {
    pub owner: String,
    pub item: Arc<T>,
}

/// Fired after an item of type `T` was removed (explicitly or by unloading its module).
pub struct ItemRemoved<T> {
    pub owner: String,
    pub item: Arc<T>,
}

struct Entry<T> {
    id: ItemId,
    owner: String,
    item: Arc<T>,
}

/// A removal, with its type erased, waiting to be announced.
pub(crate) type Removal = Box<dyn FnOnce(&Arc<crate::host::Host>) + Send>;

type OwnerRemover = fn(&mut (dyn Any + Send + Sync), &str) -> Vec<Removal>;

struct Slot {
    list: Box<dyn Any + Send + Sync>,
    remove_owner: OwnerRemover,
}

#[derive(Default)]
pub struct Items {
    slots: RwLock<HashMap<TypeId, Slot>>,
    next_id: AtomicU64,
}

fn remove_owner_of<T: Send + Sync + 'static>(
    list: &mut (dyn Any + Send + Sync),
    owner: &str,
) -> Vec<Removal> {
    let Some(list) = list.downcast_mut::<Vec<Entry<T>>>() else {
        return Vec::new();
    };
    let mut removals: Vec<Removal> = Vec::new();
    list.retain(|entry| {
        if entry.owner != owner {
            return true;
        }
        let item = entry.item.clone();
        let owner = entry.owner.clone();
        removals.push(Box::new(move |host: &Arc<crate::host::Host>| {
            host.announce(ItemRemoved { owner, item });
        }));
        false
    });
    removals
}

impl Items {
    pub(crate) fn add<T: Send + Sync + 'static>(&self, owner: &str, item: Arc<T>) -> ItemId {
        let id = ItemId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(TypeId::of::<T>()).or_insert_with(|| Slot {
            list: Box::new(Vec::<Entry<T>>::new()),
            remove_owner: remove_owner_of::<T>,
        });
        if let Some(list) = slot.list.downcast_mut::<Vec<Entry<T>>>() {
            list.push(Entry {
                id,
                owner: owner.to_string(),
                item,
            });
        }
        id
    }

    pub(crate) fn remove<T: Send + Sync + 'static>(&self, id: ItemId) -> Option<(String, Arc<T>)> {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let list = slots
            .get_mut(&TypeId::of::<T>())?
            .list
            .downcast_mut::<Vec<Entry<T>>>()?;
        let index = list.iter().position(|e| e.id == id)?;
        let entry = list.remove(index);
        Some((entry.owner, entry.item))
    }

    pub(crate) fn remove_owner(&self, owner: &str) -> Vec<Removal> {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        slots
            .values_mut()
            .flat_map(|slot| (slot.remove_owner)(slot.list.as_mut(), owner))
            .collect()
    }

    /// Calls `f` on every item of type `T`, in order, without collecting them (hot paths).
    pub fn for_each<T: Send + Sync + 'static>(&self, mut f: impl FnMut(&T)) {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = slots
            .get(&TypeId::of::<T>())
            .and_then(|slot| slot.list.downcast_ref::<Vec<Entry<T>>>())
        {
            for entry in list {
                f(&entry.item);
            }
        }
    }

    /// Whether some item of type `T` satisfies `predicate`.
    pub fn any<T: Send + Sync + 'static>(&self, predicate: impl Fn(&T) -> bool) -> bool {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots
            .get(&TypeId::of::<T>())
            .and_then(|slot| slot.list.downcast_ref::<Vec<Entry<T>>>())
            .is_some_and(|list| list.iter().any(|e| predicate(&e.item)))
    }

    /// Every item of type `T`, in the order they were added.
    pub fn all<T: Send + Sync + 'static>(&self) -> Vec<Arc<T>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots
            .get(&TypeId::of::<T>())
            .and_then(|slot| slot.list.downcast_ref::<Vec<Entry<T>>>())
            .map(|list| list.iter().map(|e| e.item.clone()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_remove() {
        let items = Items::default();
        let a = items.add("m1", Arc::new(1u32));
        items.add("m2", Arc::new(2u32));
        items.add("m1", Arc::new("text"));
        assert_eq!(
            items.all::<u32>().iter().map(|v| **v).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            items.remove::<u32>(a).map(|(o, v)| (o, *v)),
            Some(("m1".to_string(), 1))
        );
        assert!(items.remove::<u32>(a).is_none());
        assert_eq!(items.remove_owner("m1").len(), 1);
        assert!(items.all::<&str>().is_empty());
        assert_eq!(items.all::<u32>().len(), 1);
    }
}
