//! The shared (Redis) tier's counters as metrics, read from its snapshot when scraped.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::names;
use crate::cache::shared::SharedSnapshot;

fn counters(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(*n).encode(metric.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

/// Encodes the shared tier's metrics.
pub fn encode(encoder: &mut DescriptorEncoder, s: &SharedSnapshot) -> Result<(), std::fmt::Error> {
    let lookups = [("hit", s.hits), ("miss", s.misses)];
    counters(encoder, names::SHARED_LOOKUPS, "result", &lookups)?;
    counters(encoder, names::SHARED_ERRORS, "kind", &[("failed", s.errors), ("skipped", s.skipped)])?;
    counters(
        encoder,
        names::SHARED_BYTES,
        "direction",
        &[("read", s.bytes_read), ("written", s.bytes_written)],
    )?;
    counters(encoder, names::SHARED_WRITES, "kind", &[("entry", s.writes)])?;
    let leases = [("taken", s.leases), ("landed", s.lease_landed)];
    counters(encoder, names::SHARED_LEASES, "outcome", &leases)?;
    let invalidations = [("sent", s.invalidations), ("received", s.invalidations_received)];
    counters(encoder, names::SHARED_INVALIDATIONS, "direction", &invalidations)?;
    let seconds = s.latency_us_sum as f64 / 1e6;
    let metric = encoder.encode_descriptor(
        names::SHARED_CALL_SECONDS.0,
        names::SHARED_CALL_SECONDS.1,
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(seconds).encode(metric)?;
    let metric =
        encoder.encode_descriptor(names::SHARED_CALLS.0, names::SHARED_CALLS.1, None, MetricType::Counter)?;
    ConstCounter::new(s.latency_count).encode(metric)?;
    let metric =
        encoder.encode_descriptor(names::SHARED_UP.0, names::SHARED_UP.1, None, MetricType::Gauge)?;
    ConstGauge::new(i64::from(s.up)).encode(metric)
}
