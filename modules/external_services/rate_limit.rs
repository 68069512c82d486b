//! Per-account limit on credential issuance: a token bucket per bare JID.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Requests allowed in a burst.
    pub burst: u32,
    /// Sustained requests per minute.
    pub per_minute: u32,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Takes one token for `account`; `false` when the account must wait.
    pub fn try_take(&self, account: &str, rate: Rate, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget accounts whose bucket refilled long ago, so the map stays small.
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.updated) < Duration::from_secs(600));
        }
        let bucket = buckets.entry(account.to_string()).or_insert(Bucket {
            tokens: f64::from(rate.burst),
            updated: now,
        });
        let refill =
            now.duration_since(bucket.updated).as_secs_f64() * f64::from(rate.per_minute) / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(rate.burst));
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = Limiter::default();
        let rate = Rate {
            burst: 3,
            per_minute: 60,
        };
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.try_take("a", rate, t0)));
        assert!(!limiter.try_take("a", rate, t0));
        assert!(limiter.try_take("b", rate, t0), "per account");
        assert!(limiter.try_take("a", rate, t0 + Duration::from_millis(1100)));
        assert!(!limiter.try_take("a", rate, t0 + Duration::from_millis(1100)));
    }
}
