//! A session's outbound queue: bounded, many senders, one receiver (the session task).
//!
//! Not tokio's mpsc channel: that allocates about a kilobyte per session before its
//! first stanza (a channel aligned to 128 bytes, then a first block of 32 slots), and
//! most sessions sit idle with nothing queued. This queue lives in the session's shared
//! state and holds memory only while stanzas wait.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// A queue emptied with more room than this left gives its memory back.
const KEEP_CAPACITY: usize = 16;

pub(crate) struct SessionQueue<T> {
    state: Mutex<State<T>>,
    /// Senders waiting for room ([`SessionQueue::send`]).
    room: Notify,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// The receiver, when it waits for an item.
    receiver: Option<Waker>,
    /// Senders waiting for room: while any waits, `try_send` finds the queue full, so
    /// that nothing overtakes what they are waiting to queue.
    waiting: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) enum TrySendError<T> {
    Full(T),
    Closed(T),
}

impl<T> SessionQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        SessionQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                receiver: None,
                waiting: 0,
                closed: false,
            }),
            room: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` if there is room and nobody is waiting for room.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.push(item, false)
    }

    fn push(&self, item: T, waiter: bool) -> Result<(), TrySendError<T>> {
        let receiver = {
            let mut state = self.lock();
            if state.closed {
                return Err(TrySendError::Closed(item));
            }
            // Room made while senders wait is theirs: they compete for it among
            // themselves, and `try_send` must not overtake them.
            let reserved = !waiter && state.waiting > 0;
            if state.items.len() >= self.capacity || reserved {
                return Err(TrySendError::Full(item));
            }
            state.items.push_back(item);
            state.receiver.take()
        };
        if let Some(receiver) = receiver {
            receiver.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room; `Err` once the receiver has closed the queue.
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        let mut item = match self.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(item)) => return Err(item),
            Err(TrySendError::Full(item)) => item,
        };
        let _waiting = WaitingSender::new(self);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before looking, so room made in between is not missed.
            room.as_mut().enable();
            match self.push(item, true) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(back),
                Err(TrySendError::Full(back)) => item = back,
            }
            room.await;
        }
    }

    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.lock();
        if let Some(item) = self.take(&mut state) {
            return Poll::Ready(Some(item));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        if !state
            .receiver
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.receiver = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next item; `None` once the queue is closed and empty.
    pub(crate) async fn recv(&self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub(crate) fn try_recv(&self) -> Option<T> {
        let mut state = self.lock();
        self.take(&mut state)
    }

    fn take(&self, state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > KEEP_CAPACITY {
            state.items = VecDeque::new();
        }
        if state.waiting > 0 {
            // Under the lock, so no waiter can be between its check and its wait.
            self.room.notify_waiters();
        }
        Some(item)
    }

    /// No more items are accepted; those queued can still be received.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_waiters();
    }
}

/// Counts a sender in [`State::waiting`] for as long as its `send` waits (or until the
/// `send` future is dropped).
struct WaitingSender<'a, T> {
    queue: &'a SessionQueue<T>,
}

impl<'a, T> WaitingSender<'a, T> {
    fn new(queue: &'a SessionQueue<T>) -> Self {
        queue.lock().waiting += 1;
        WaitingSender { queue }
    }
}

impl<T> Drop for WaitingSender<'_, T> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.waiting -= 1;
        if state.waiting > 0 && state.items.len() < self.queue.capacity {
            // The room this sender was woken for and did not use (it was dropped).
            self.queue.room.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn full_at_capacity_and_closed_after_close() {
        let queue = SessionQueue::new(2);
        assert!(queue.try_send(1).is_ok());
        assert!(queue.try_send(2).is_ok());
        assert!(matches!(queue.try_send(3), Err(TrySendError::Full(3))));
        queue.close();
        assert!(matches!(queue.try_send(4), Err(TrySendError::Closed(4))));
        // What was queued before the close can still be taken.
        assert_eq!(queue.try_recv(), Some(1));
        assert_eq!(queue.try_recv(), Some(2));
        assert_eq!(queue.try_recv(), None);
    }

    #[tokio::test]
    async fn the_receiver_wakes_for_an_item_sent_while_it_waits() {
        let queue = Arc::new(SessionQueue::new(4));
        let receiver = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.recv().await })
        };
        tokio::task::yield_now().await;
        assert!(!receiver.is_finished());
        assert!(queue.try_send(7).is_ok());
        assert_eq!(receiver.await.expect("receiver"), Some(7));
    }

    #[tokio::test]
    async fn a_waiting_sender_is_not_overtaken_and_gets_the_freed_room() {
        let queue = Arc::new(SessionQueue::new(1));
        assert!(queue.try_send("first").is_ok());
        let sender = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.send("waited").await })
        };
        tokio::task::yield_now().await;
        assert!(!sender.is_finished());
        assert_eq!(queue.try_recv(), Some("first"));
        // Room was made, but it is the waiting sender's.
        assert!(matches!(queue.try_send("late"), Err(TrySendError::Full(_))));
        assert!(sender.await.expect("sender").is_ok());
        assert_eq!(queue.try_recv(), Some("waited"));
        assert!(queue.try_send("late").is_ok());
    }

    #[tokio::test]
    async fn closing_releases_waiting_senders_with_their_item() {
        let queue = Arc::new(SessionQueue::new(1));
        assert!(queue.try_send(1).is_ok());
        let sender = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.send(2).await })
        };
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(sender.await.expect("sender"), Err(2));
    }

    #[tokio::test]
    async fn a_dropped_waiting_sender_leaves_the_room_to_the_others() {
        let queue = Arc::new(SessionQueue::new(1));
        assert!(queue.try_send(1).is_ok());
        let dropped = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.send(2).await })
        };
        tokio::task::yield_now().await;
        dropped.abort();
        let _ = dropped.await;
        assert_eq!(queue.try_recv(), Some(1));
        assert!(queue.try_send(3).is_ok(), "a dropped sender still counted");
    }

    #[test]
    fn an_emptied_queue_gives_its_memory_back() {
        let queue = SessionQueue::new(4096);
        for i in 0..1000 {
            assert!(queue.try_send(i).is_ok());
        }
        while queue.try_recv().is_some() {}
        assert_eq!(queue.lock().items.capacity(), 0);
    }
}
