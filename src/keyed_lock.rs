//! One async lock per key (an account, usually), held across awaits, kept in memory only
//! while someone holds or waits for it: a server with 100k accounts does not keep 100k
//! mutexes, and finding a lock is a hash lookup, not a sweep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the lock of one key; dropping it releases the lock (and its memory when
/// nobody else wants it).
pub struct KeyedGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        // Made before the wait, so that a caller giving up mid-wait still forgets the key.
        let mut held = KeyedGuard {
            owner: self,
            key: key.to_string(),
            guard: None,
        };
        let mutex = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        held.guard = Some(mutex.lock_owned().await);
        held
    }

    /// Keys with a holder or a waiter.
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Every holder and waiter has a clone, taken under this map lock: one reference
        // left (the map's) means nobody else wants the key.
        if locks
            .get(&self.key)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn holders_of_one_key_take_turns_and_other_keys_do_not_wait() {
        let locks = Arc::new(KeyedLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most_inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (locks, inside, most) = (locks.clone(), inside.clone(), most_inside.clone());
            tasks.push(tokio::spawn(async move {
                let _guard = locks.lock("romeo").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        let held = locks.lock("romeo").await;
        let other = tokio::time::timeout(Duration::from_secs(1), locks.lock("juliet")).await;
        assert!(other.is_ok(), "another key waited for romeo's lock");
        drop(other);
        drop(held);
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(most_inside.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_released_key_is_forgotten_but_not_while_someone_waits() {
        let locks = Arc::new(KeyedLocks::default());
        let first = locks.lock("romeo").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _guard = locks.lock("romeo").await;
            })
        };
        // Let the waiter queue up behind the holder.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert_eq!(locks.len(), 1, "the waiter's key was forgotten");
        waiter.await.expect("waiter");
        assert!(locks.is_empty(), "{} keys left", locks.len());
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_waiting_leaves_nothing_behind() {
        let locks = KeyedLocks::default();
        let held = locks.lock("romeo").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), locks.lock("romeo")).await;
        assert!(gave_up.is_err());
        drop(held);
        assert!(locks.is_empty(), "{} keys left", locks.len());
    }
}
