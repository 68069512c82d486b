//! SASL back-off per account, across connections and addresses: `[limits]
//! account_auth_failures`, `account_auth_max_delay`, `account_auth_memory`.
//!
//! The per-address back-off (`server.rs`) does not stop a guesser with many addresses.
//! Here, after N failures for one account, every further attempt for it waits for a
//! slot: the slots are spaced by a delay that doubles with each failure (1 s, 2 s, 4 s
//! … up to the maximum), so parallel connections queue instead of guessing side by
//! side. Success clears the account's record; quiet time forgets it.
//!
//! The wait applies before the outcome is sent, to right and wrong passwords alike, and
//! the key is the name the client claimed, whether or not such an account exists: the
//! delay tells nothing about the password or the account. (A guesser can make the
//! rightful owner wait up to the maximum delay per login: the price of any per-account
//! limit, bounded here by the cap on each wait.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Limits;

/// Records beyond this are pruned of forgotten ones (random names from a guesser).
const PRUNE_ABOVE: usize = 100_000;

#[derive(Debug)]
struct Record {
    failures: u32,
    last_failure: Instant,
    /// The earliest time the next attempt may be answered.
    next_slot: Instant,
}

#[derive(Debug, Default)]
pub struct AccountBackoff {
    records: Mutex<HashMap<String, Record>>,
}

/// The delay after `failures` failures with `free` of them free: 1 s for the first
/// beyond, doubling, capped.
fn delay(failures: u32, free: u32, max: Duration) -> Duration {
    let beyond = failures.saturating_sub(free);
    if beyond == 0 {
        return Duration::ZERO;
    }
    let seconds = 1u64 << (beyond - 1).min(20);
    Duration::from_secs(seconds).min(max)
}

impl AccountBackoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long this attempt for `account` (`user@host`) must wait before its outcome is
    /// sent. Takes a slot, so the next attempt waits one delay longer.
    pub fn reserve(&self, account: &str, limits: &Limits, now: Instant) -> Duration {
        if limits.account_auth_failures == 0 {
            return Duration::ZERO;
        }
        let mut records = self.lock();
        let Some(record) = records.get_mut(account) else {
            return Duration::ZERO;
        };
        if now.duration_since(record.last_failure) > limits.account_auth_memory {
            records.remove(account);
            return Duration::ZERO;
        }
        let step = delay(
            record.failures,
            limits.account_auth_failures,
            limits.account_auth_max_delay,
        );
        if step.is_zero() {
            return Duration::ZERO;
        }
        // Never more than the maximum ahead: a flood of parallel attempts must not
        // push the owner's next login out indefinitely.
        let slot = record
            .next_slot
            .max(now)
            .min(now + limits.account_auth_max_delay);
        record.next_slot = slot + step;
        slot - now
    }

    /// A failed attempt for `account`. `true` when this failure put the account into
    /// back-off (for one log line, not one per attempt).
    pub fn failed(&self, account: &str, limits: &Limits, now: Instant) -> bool {
        if limits.account_auth_failures == 0 {
            return false;
        }
        let mut records = self.lock();
        if records.len() > PRUNE_ABOVE {
            records.retain(|_, r| now.duration_since(r.last_failure) <= limits.account_auth_memory);
        }
        let record = records.entry(account.to_string()).or_insert(Record {
            failures: 0,
            last_failure: now,
            next_slot: now,
        });
        if now.duration_since(record.last_failure) > limits.account_auth_memory {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let step = delay(
            record.failures,
            limits.account_auth_failures,
            limits.account_auth_max_delay,
        );
        record.next_slot = record.next_slot.max(now + step);
        record.failures == limits.account_auth_failures + 1
    }

    /// A successful login: the account starts afresh.
    pub fn succeeded(&self, account: &str) {
        self.lock().remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            account_auth_failures: 2,
            account_auth_max_delay: Duration::from_secs(8),
            account_auth_memory: Duration::from_secs(60),
            ..Limits::default()
        }
    }

    #[test]
    fn free_failures_then_doubling_slots_capped_and_forgotten() {
        let limits = limits();
        let backoff = AccountBackoff::default();
        let t0 = Instant::now();
        let a = "romeo@h";
        for _ in 0..2 {
            assert_eq!(backoff.reserve(a, &limits, t0), Duration::ZERO);
            backoff.failed(a, &limits, t0);
        }
        // Two free failures: the third attempt is not delayed.
        assert_eq!(backoff.reserve(a, &limits, t0), Duration::ZERO);
        assert!(
            backoff.failed(a, &limits, t0),
            "the 3rd failure starts the back-off"
        );
        assert_eq!(backoff.reserve(a, &limits, t0), Duration::from_secs(1));
        // A parallel attempt queues behind it.
        assert_eq!(backoff.reserve(a, &limits, t0), Duration::from_secs(2));
        assert!(!backoff.failed(a, &limits, t0), "logged once"); // 4th: 2 s steps
        backoff.failed(a, &limits, t0); // 5th: 4 s
        backoff.failed(a, &limits, t0); // 6th: 8 s (the cap)
        backoff.failed(a, &limits, t0); // 7th: still 8 s
        let wait = backoff.reserve(a, &limits, t0);
        assert!(wait <= Duration::from_secs(8), "{wait:?}");
        for _ in 0..100 {
            assert!(backoff.reserve(a, &limits, t0) <= Duration::from_secs(8));
        }
        // Other accounts are not affected.
        assert_eq!(backoff.reserve("juliet@h", &limits, t0), Duration::ZERO);
        // Forgotten after quiet time.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(backoff.reserve(a, &limits, later), Duration::ZERO);
    }

    #[test]
    fn success_clears_and_zero_turns_it_off() {
        let limits = limits();
        let backoff = AccountBackoff::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            backoff.failed("a@h", &limits, t0);
        }
        assert!(!backoff.reserve("a@h", &limits, t0).is_zero());
        backoff.succeeded("a@h");
        assert!(backoff.reserve("a@h", &limits, t0).is_zero());
        let off = Limits {
            account_auth_failures: 0,
            ..limits
        };
        for _ in 0..50 {
            backoff.failed("b@h", &off, t0);
        }
        assert!(backoff.reserve("b@h", &off, t0).is_zero());
    }
}
