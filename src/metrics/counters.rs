//! Lock-free metric cells for the hot path: fixed arrays of atomics whose labels are known
//! up front, so recording is one relaxed `fetch_add` (no map lookup, no lock, no allocation).
//! They encode themselves through prometheus-client's `EncodeMetric`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Counters over one label with a fixed set of values.
#[derive(Debug)]
pub struct LabeledCounters {
    label: &'static str,
    values: &'static [&'static str],
    cells: Box<[AtomicU64]>,
}

impl LabeledCounters {
    /// One counter per value of `label`.
    pub fn new(label: &'static str, values: &'static [&'static str]) -> Self {
        Self { label, values, cells: values.iter().map(|_| AtomicU64::new(0)).collect() }
    }

    /// Adds `n` to the counter of the `i`th value (out of range: ignored).
    pub fn add(&self, i: usize, n: u64) {
        if let Some(c) = self.cells.get(i) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counter of the `i`th value.
    pub fn get(&self, i: usize) -> u64 {
        self.cells.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The value named `value`.
    pub fn get_named(&self, value: &str) -> u64 {
        self.values.iter().position(|v| *v == value).map_or(0, |i| self.get(i))
    }

    /// Every `(value, count)`.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.values.iter().enumerate().map(|(i, v)| (*v, self.get(i))).collect()
    }
}

impl EncodeMetric for LabeledCounters {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (i, value) in self.values.iter().enumerate() {
            let labels = [(self.label, *value)];
            encoder.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&self.get(i), None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Counters over two labels (rows x columns); only non-zero cells are exported, so a wide
/// grid (every mode times every status) costs nothing in the scrape until it is used.
#[derive(Debug)]
pub struct CounterGrid {
    labels: (&'static str, &'static str),
    rows: &'static [&'static str],
    cols: &'static [&'static str],
    cells: Box<[AtomicU64]>,
}

impl CounterGrid {
    /// A grid of `rows.len() * cols.len()` counters.
    pub fn new(
        labels: (&'static str, &'static str),
        rows: &'static [&'static str],
        cols: &'static [&'static str],
    ) -> Self {
        let cells = (0..rows.len() * cols.len()).map(|_| AtomicU64::new(0)).collect();
        Self { labels, rows, cols, cells }
    }

    /// Adds one to cell (`row`, `col`); out of range: ignored.
    pub fn inc(&self, row: usize, col: usize) {
        if row < self.rows.len() && col < self.cols.len() {
            self.cells[row * self.cols.len() + col].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sum of every cell.
    pub fn total(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl EncodeMetric for CounterGrid {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (r, row) in self.rows.iter().enumerate() {
            for (c, col) in self.cols.iter().enumerate() {
                let n = self.cells[r * self.cols.len() + c].load(Ordering::Relaxed);
                if n > 0 {
                    let labels = [(self.labels.0, *row), (self.labels.1, *col)];
                    encoder.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A histogram of durations with fixed buckets (seconds): one atomic add per bucket hit, the
/// count and the sum (kept in microseconds, so no float compare-and-swap).
#[derive(Debug)]
pub struct DurationHistogram {
    bounds: &'static [f64],
    /// Per-bucket counts, not cumulative; the last is +Inf.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// Buckets from 1 ms to 30 s: cache hits land in the first ones, slow origins in the last.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl DurationHistogram {
    /// A histogram with the given upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, sum_us: AtomicU64::new(0) }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of the observations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds(), cumulative, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_puts_each_observation_in_its_bucket() {
        let h = DurationHistogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(2));
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, vec![1, 1, 1]);
        assert_eq!(h.count(), 3);
        assert!((h.sum_seconds() - 2.055).abs() < 1e-9);
    }

    #[test]
    fn grid_ignores_cells_out_of_range() {
        let g = CounterGrid::new(("a", "b"), &["x", "y"], &["1"]);
        g.inc(1, 0);
        g.inc(2, 0);
        g.inc(0, 1);
        assert_eq!(g.total(), 1);
    }
}
