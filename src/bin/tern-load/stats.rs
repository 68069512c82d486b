//! Latency histograms (HdrHistogram, microseconds, 3 significant digits) and the
//! open-loop schedule: operation `k` is due at `start + k / rate`, whether or not the
//! previous ones finished, and latencies are measured from that due time, so a server (or
//! generator) that falls behind shows up as queueing instead of a slower arrival rate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::procfs::round;

/// Highest value a histogram holds: one hour in microseconds (larger values saturate).
const MAX_US: u64 = 3_600_000_000;

#[derive(Clone)]
pub struct Latencies(Arc<Mutex<Histogram<u64>>>);

impl Latencies {
    pub fn new() -> Latencies {
        Latencies(Arc::new(Mutex::new(
            Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
        )))
    }

    pub fn record(&self, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).clamp(1, MAX_US);
        self.0.lock().expect("histogram").saturating_record(us);
    }

    /// count, mean, p50/p90/p99/p99.9 and max, milliseconds.
    pub fn to_json(&self) -> Value {
        let h = self.0.lock().expect("histogram");
        if h.is_empty() {
            return json!({ "count": 0 });
        }
        let ms = |us: u64| round(us as f64 / 1000.0, 3);
        json!({
            "count": h.len(),
            "mean_ms": round(h.mean() / 1000.0, 3),
            "p50_ms": ms(h.value_at_quantile(0.50)),
            "p90_ms": ms(h.value_at_quantile(0.90)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "p99_9_ms": ms(h.value_at_quantile(0.999)),
            "max_ms": ms(h.max()),
        })
    }
}

/// The open-loop arrival schedule.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub rate: f64,
    pub total: u64,
}

impl Schedule {
    pub fn new(rate: f64, duration_s: f64) -> Schedule {
        Schedule {
            start: Instant::now() + Duration::from_millis(20),
            rate,
            total: (rate * duration_s).round().max(0.0) as u64,
        }
    }

    /// When operation `k` is due.
    pub fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// Calls `dispatch(k, due, now)` for every operation at its due time (late ones at
    /// once, in order), recording in `lag` how late each dispatch was. The loop runs on a
    /// thread of its own with `thread::sleep` (tens of microseconds late), not on the
    /// runtime's timer, which rounds every sleep up to the next millisecond.
    pub async fn run(
        &self,
        lag: &Latencies,
        mut dispatch: impl FnMut(u64, Instant, Instant) + Send + 'static,
    ) {
        let schedule = *self;
        let lag = lag.clone();
        let looped = tokio::task::spawn_blocking(move || {
            for k in 0..schedule.total {
                let due = schedule.due(k);
                let wait = due.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                let now = Instant::now();
                lag.record(now.saturating_duration_since(due));
                dispatch(k, due, now);
            }
        });
        looped.await.expect("the schedule thread panicked");
    }
}

/// Failures counted by kind, with a few sample messages.
#[derive(Clone, Default)]
pub struct Errors(Arc<Mutex<ErrorsInner>>);

#[derive(Default)]
struct ErrorsInner {
    counts: BTreeMap<String, u64>,
    samples: Vec<String>,
}

impl Errors {
    pub fn add(&self, kind: &str, message: impl std::fmt::Display) {
        let mut inner = self.0.lock().expect("errors");
        *inner.counts.entry(kind.to_string()).or_default() += 1;
        if inner.samples.len() < 5 {
            inner.samples.push(format!("{kind}: {message}"));
        }
    }

    pub fn total(&self) -> u64 {
        self.0.lock().expect("errors").counts.values().sum()
    }

    pub fn to_json(&self) -> Value {
        let inner = self.0.lock().expect("errors");
        json!({ "by_kind": inner.counts, "samples": inner.samples })
    }
}
