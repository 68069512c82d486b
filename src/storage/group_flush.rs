//! Group commit: one blocking flush at a time, shared by every write made before it began.
//!
//! Not sled's `flush_async`: in sled 0.34.7 concurrent `flush_async` calls never complete
//! (sled issue #1308, fixed only on its unreleased main branch). 100 tasks that each
//! insert and then await `flush_async` stalled in their first round in 3 runs of 3 here,
//! with every thread idle; Tern's roster writes from many accounts at once hung the same
//! way. A blocking `flush` per write would work but costs an fsync per write; here writes
//! that arrive while a flush runs wait for the next one, which covers them all.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

type FlushFn = dyn Fn() -> Result<(), String> + Send + Sync;

pub struct GroupFlush {
    inner: Arc<Inner>,
}

struct Inner {
    flush: Box<FlushFn>,
    state: Mutex<State>,
    finished: watch::Sender<Finished>,
}

#[derive(Default)]
struct State {
    /// Requests so far; a request's number is its ticket.
    requested: u64,
    /// Whether a flusher is running (it keeps going while requests arrive).
    running: bool,
}

/// The latest finished flush: it began after every ticket up to `covered` was taken, so
/// it made their writes durable, unless it failed.
#[derive(Clone, Default)]
struct Finished {
    covered: u64,
    error: Option<String>,
}

impl GroupFlush {
    pub fn new(flush: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> GroupFlush {
        GroupFlush {
            inner: Arc::new(Inner {
                flush: Box::new(flush),
                state: Mutex::new(State::default()),
                finished: watch::Sender::new(Finished::default()),
            }),
        }
    }

    /// Resolves once a flush that began after this call has finished: everything written
    /// before the call is durable then. An error means that flush failed (a later one may
    /// have made the write durable anyway: the error errs on the side of caution).
    pub async fn flush(&self) -> Result<(), String> {
        let mut finished = self.inner.finished.subscribe();
        let ticket = {
            let mut state = self.inner.lock();
            state.requested += 1;
            if !state.running {
                state.running = true;
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || inner.run());
            }
            state.requested
        };
        let outcome = finished
            .wait_for(|f| f.covered >= ticket)
            .await
            .map_err(|_| "the storage flusher stopped".to_string())?
            .clone();
        match outcome.error {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters, consistent at every unlock: a panic elsewhere while
        // it was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flushes until no request is waiting.
    fn run(&self) {
        let _stop_on_unwind = StopOnUnwind(self);
        loop {
            let covered = self.lock().requested;
            let error = (self.flush)().err();
            self.finished.send_replace(Finished { covered, error });
            let mut state = self.lock();
            if state.requested == covered {
                state.running = false;
                return;
            }
        }
    }
}

/// A flush that panicked must not leave `running` set: every later write would wait for a
/// flusher that is gone. Its waiters get an error instead.
struct StopOnUnwind<'a>(&'a Inner);

impl Drop for StopOnUnwind<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut state = self.0.lock();
        state.running = false;
        let covered = state.requested;
        drop(state);
        self.0.finished.send_replace(Finished {
            covered,
            error: Some("the storage flush panicked".to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// A store whose "disk" is a counter: a flush makes every write so far durable.
    struct FakeDisk {
        written: AtomicU64,
        durable: AtomicU64,
        flushes: AtomicU64,
    }

    fn fake_disk(delay: Duration) -> (Arc<FakeDisk>, GroupFlush) {
        let disk = Arc::new(FakeDisk {
            written: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        });
        let d = disk.clone();
        let group = GroupFlush::new(move || {
            let upto = d.written.load(Ordering::SeqCst);
            std::thread::sleep(delay);
            d.durable.fetch_max(upto, Ordering::SeqCst);
            d.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        (disk, group)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_write_is_durable_when_its_flush_returns_and_flushes_are_shared() {
        let (disk, group) = fake_disk(Duration::from_millis(2));
        let group = Arc::new(group);
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (disk, group) = (disk.clone(), group.clone());
            tasks.push(tokio::spawn(async move {
                let mine = disk.written.fetch_add(1, Ordering::SeqCst) + 1;
                group.flush().await.expect("flush");
                assert!(
                    disk.durable.load(Ordering::SeqCst) >= mine,
                    "write {mine} was acknowledged before it was durable"
                );
            }));
        }
        let all = futures::future::join_all(tasks);
        for result in tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("200 concurrent flushes stalled")
        {
            result.expect("task");
        }
        let flushes = disk.flushes.load(Ordering::SeqCst);
        assert!(
            flushes < 200,
            "{flushes} flushes for 200 concurrent writes: none was shared"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_is_reported_and_the_next_one_runs() {
        let fail = Arc::new(AtomicU64::new(1));
        let f = fail.clone();
        let group = GroupFlush::new(move || {
            if f.fetch_sub(1, Ordering::SeqCst) > 0 {
                Err("disk full".to_string())
            } else {
                Ok(())
            }
        });
        assert_eq!(group.flush().await, Err("disk full".to_string()));
        assert_eq!(group.flush().await, Ok(()));
    }

    #[tokio::test]
    async fn a_panicking_flush_fails_its_waiters_and_does_not_block_later_ones() {
        let panics = Arc::new(AtomicU64::new(1));
        let p = panics.clone();
        let group = GroupFlush::new(move || {
            if p.fetch_sub(1, Ordering::SeqCst) > 0 {
                panic!("flush exploded");
            }
            Ok(())
        });
        assert!(group.flush().await.is_err());
        let next = tokio::time::timeout(Duration::from_secs(5), group.flush()).await;
        assert_eq!(next.expect("the flush after a panic hung"), Ok(()));
    }
}
