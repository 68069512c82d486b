//! Gives memory back to the system after many connections have closed.
//!
//! glibc's malloc keeps what it frees in its arenas: after 10,000 connections came and
//! went, a server with none held 196 MiB against 9 MiB fresh (docs/security.md, "Soak
//! test"). `malloc_trim` returns the free pages inside the heap too, not only its top.
//! It runs when the open count has fallen far below its last peak (no timer: an idle
//! server does nothing), on the blocking pool, since a large heap takes milliseconds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Fewer closes than this are not worth a trim.
const MIN_DROP: usize = 512;

#[derive(Default)]
pub(crate) struct MemoryTrim {
    /// The most connections open since the last trim.
    peak: AtomicUsize,
    running: AtomicBool,
}

impl MemoryTrim {
    pub(crate) fn opened(&self, open_now: usize) {
        self.peak.fetch_max(open_now, Ordering::Relaxed);
    }

    /// A connection closed, leaving `open_now`.
    pub(crate) fn closed(self: &Arc<Self>, open_now: usize) {
        let peak = self.peak.load(Ordering::Relaxed);
        if !worth_trimming(peak, open_now) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.peak.store(open_now, Ordering::Relaxed);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        runtime.spawn_blocking(move || {
            trim();
            this.running.store(false, Ordering::Release);
        });
    }
}

/// Half of the peak gone, and at least [`MIN_DROP`] connections.
fn worth_trimming(peak: usize, open_now: usize) -> bool {
    let gone = peak.saturating_sub(open_now);
    gone >= MIN_DROP && gone >= peak / 2
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has no
    // preconditions.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "returned freed memory to the system"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_a_large_share_of_connections_closed() {
        assert!(!worth_trimming(100, 0), "too few to matter");
        assert!(worth_trimming(1000, 0));
        assert!(worth_trimming(10_000, 5_000));
        assert!(!worth_trimming(10_000, 5_001), "less than half gone");
        assert!(!worth_trimming(10_000, 9_000));
    }
}
