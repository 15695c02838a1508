//! Small writers for metrics read at scrape time (constant values from a snapshot), shared by
//! the cache's and the shared tier's collectors.

use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

/// A counter family with one label: a sample per `(label value, count)`.
pub(super) fn labelled_counter(
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

/// A counter without labels.
pub(super) fn counter<N: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    n: N,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(n).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}
