//! The shared (Redis) tier's counters as metrics and as the stats API's `shared` object, read
//! from its [`SharedSnapshot`] when scraped.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde::Serialize;

use super::encode::{counter, labelled_counter};
use super::names;
use crate::cache::shared::SharedSnapshot;

/// The shared tier as the dashboard shows it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SharedView {
    /// `up` or `down`.
    pub state: &'static str,
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Calls that failed, missed their deadline or were skipped while down.
    pub errors: u64,
    /// Mean call latency, when any call was timed.
    pub mean_latency_s: Option<f64>,
    /// Entry bytes read from Redis.
    pub bytes_read: u64,
    /// Entry bytes written to Redis.
    pub bytes_written: u64,
}

impl From<SharedSnapshot> for SharedView {
    fn from(s: SharedSnapshot) -> Self {
        Self {
            state: if s.up { "up" } else { "down" },
            hits: s.hits,
            misses: s.misses,
            errors: s.errors + s.skipped,
            mean_latency_s: (s.latency_count > 0)
                .then(|| s.latency_us_sum as f64 / 1e6 / s.latency_count as f64),
            bytes_read: s.bytes_read,
            bytes_written: s.bytes_written,
        }
    }
}

/// Writes the shared tier's metrics.
pub(super) fn encode(encoder: &mut DescriptorEncoder, s: &SharedSnapshot) -> Result<(), std::fmt::Error> {
    labelled_counter(encoder, names::SHARED_LOOKUPS, "outcome", &[("hit", s.hits), ("miss", s.misses)])?;
    labelled_counter(encoder, names::SHARED_ERRORS, "kind", &[("error", s.errors), ("skipped", s.skipped)])?;
    counter(encoder, names::SHARED_CALLS, s.latency_count)?;
    counter(encoder, names::SHARED_CALL_SECONDS, s.latency_us_sum as f64 / 1e6)?;
    let bytes = [("read", s.bytes_read), ("written", s.bytes_written)];
    labelled_counter(encoder, names::SHARED_BYTES, "direction", &bytes)?;
    counter(encoder, names::SHARED_WRITES, s.writes)?;
    labelled_counter(
        encoder,
        names::SHARED_LEASES,
        "outcome",
        &[("taken", s.leases), ("landed", s.lease_landed)],
    )?;
    let inv = [("published", s.invalidations), ("received", s.invalidations_received)];
    labelled_counter(encoder, names::SHARED_INVALIDATIONS, "direction", &inv)?;
    let up = encoder.encode_descriptor(names::SHARED_UP.0, names::SHARED_UP.1, None, MetricType::Gauge)?;
    ConstGauge::new(i64::from(s.up)).encode(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_of_the_snapshot_is_exported() {
        let snap = SharedSnapshot {
            hits: 3,
            misses: 4,
            errors: 1,
            skipped: 2,
            latency_us_sum: 1_500_000,
            latency_count: 3,
            bytes_read: 10,
            bytes_written: 20,
            writes: 5,
            leases: 6,
            lease_landed: 7,
            invalidations: 8,
            invalidations_received: 9,
            up: true,
        };
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Fixed(snap)));
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "httpcache_shared_lookups_total{outcome=\"hit\"} 3",
            "httpcache_shared_lookups_total{outcome=\"miss\"} 4",
            "httpcache_shared_errors_total{kind=\"skipped\"} 2",
            "httpcache_shared_calls_total 3",
            "httpcache_shared_call_seconds_total 1.5",
            "httpcache_shared_bytes_total{direction=\"written\"} 20",
            "httpcache_shared_writes_total 5",
            "httpcache_shared_leases_total{outcome=\"landed\"} 7",
            "httpcache_shared_invalidations_total{direction=\"received\"} 9",
            "httpcache_shared_up 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let view = SharedView::from(snap);
        assert_eq!((view.state, view.errors), ("up", 3));
        assert_eq!(view.mean_latency_s, Some(0.5));
    }

    #[derive(Debug)]
    struct Fixed(SharedSnapshot);

    impl prometheus_client::collector::Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            super::encode(&mut encoder, &self.0)
        }
    }
}
