//! Counters of the shared tier, readable without locks; the metrics exporter reads a snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters of the shared tier.
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Lookups that found a complete, verified entry.
    pub hits: AtomicU64,
    /// Lookups that found nothing (or an incomplete upload).
    pub misses: AtomicU64,
    /// Redis calls that failed or missed their deadline.
    pub errors: AtomicU64,
    /// Calls skipped because Redis was not connected.
    pub skipped: AtomicU64,
    /// Sum of Redis call latencies, in microseconds.
    pub latency_us_sum: AtomicU64,
    /// Number of Redis calls timed.
    pub latency_count: AtomicU64,
    /// Body and metadata bytes read from Redis.
    pub bytes_read: AtomicU64,
    /// Body and metadata bytes written to Redis.
    pub bytes_written: AtomicU64,
    /// Entries written through.
    pub writes: AtomicU64,
    /// Leases taken (this proxy fetched for the fleet).
    pub leases: AtomicU64,
    /// Waits on another proxy's lease that ended with its entry.
    pub lease_landed: AtomicU64,
    /// Invalidations published.
    pub invalidations: AtomicU64,
    /// Invalidations received from the channel.
    pub invalidations_received: AtomicU64,
    /// Whether the last call succeeded.
    pub up: AtomicBool,
}

/// A copy of [`SharedStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedSnapshot {
    /// See [`SharedStats::hits`].
    pub hits: u64,
    /// See [`SharedStats::misses`].
    pub misses: u64,
    /// See [`SharedStats::errors`].
    pub errors: u64,
    /// See [`SharedStats::skipped`].
    pub skipped: u64,
    /// See [`SharedStats::latency_us_sum`].
    pub latency_us_sum: u64,
    /// See [`SharedStats::latency_count`].
    pub latency_count: u64,
    /// See [`SharedStats::bytes_read`].
    pub bytes_read: u64,
    /// See [`SharedStats::bytes_written`].
    pub bytes_written: u64,
    /// See [`SharedStats::writes`].
    pub writes: u64,
    /// See [`SharedStats::leases`].
    pub leases: u64,
    /// See [`SharedStats::lease_landed`].
    pub lease_landed: u64,
    /// See [`SharedStats::invalidations`].
    pub invalidations: u64,
    /// See [`SharedStats::invalidations_received`].
    pub invalidations_received: u64,
    /// See [`SharedStats::up`].
    pub up: bool,
}

impl SharedStats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Records one call's latency.
    pub fn time(&self, took: Duration) {
        self.latency_us_sum.fetch_add(took.as_micros() as u64, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> SharedSnapshot {
        SharedSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            errors: self.errors.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            latency_us_sum: self.latency_us_sum.load(Relaxed),
            latency_count: self.latency_count.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            writes: self.writes.load(Relaxed),
            leases: self.leases.load(Relaxed),
            lease_landed: self.lease_landed.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            invalidations_received: self.invalidations_received.load(Relaxed),
            up: self.up.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_copies_counters() {
        let s = SharedStats::default();
        SharedStats::bump(&s.hits);
        SharedStats::bump(&s.hits);
        s.time(Duration::from_micros(1500));
        s.up.store(true, Relaxed);
        let snap = s.snapshot();
        assert_eq!((snap.hits, snap.latency_us_sum, snap.latency_count, snap.up), (2, 1500, 1, true));
        assert_eq!(snap.misses, 0);
    }
}
