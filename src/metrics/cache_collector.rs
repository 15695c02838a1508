//! The cache's state as metrics, read when scraped: objects, bytes and bounds per tier, and
//! the disk tier's counters. Nothing is mirrored on the hot path.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde::Serialize;

use super::encode::labelled_counter;
use super::names;
use super::shared_tier::SharedView;
use crate::cache::Cache;

/// One tier's fill.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct TierUsage {
    /// `memory` or `disk`.
    pub tier: &'static str,
    /// Entries held.
    pub objects: u64,
    /// Bytes held (the memory tier counts its per-entry overhead).
    pub bytes: u64,
    /// The configured bound.
    pub capacity: u64,
}

/// The tiers' counters (evictions of both tiers, the rest the disk tier's).
#[derive(Serialize, Debug, Clone, Default)]
pub struct DiskCounters {
    /// Entries evicted to stay within `--cache-size`.
    pub evictions: u64,
    /// Entries evicted from the memory tier to stay within `--memory-size`.
    pub memory_evictions: u64,
    /// New objects kept out of the full memory tier, stored on disk only until asked for again.
    pub memory_deferred: u64,
    /// Entries the memory tier took in on a hit below it (a write on its way to disk, or disk).
    pub memory_promoted: u64,
    /// Failed writes.
    pub write_errors: u64,
    /// Disk copies skipped because the writer was behind.
    pub writes_skipped: u64,
    /// Entries dropped by a failed check.
    pub corrupt_dropped: u64,
}

/// Reads a cache's state for metrics and the stats API.
#[derive(Clone)]
pub struct CacheCollector {
    cache: Arc<Cache>,
}

impl std::fmt::Debug for CacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheCollector")
    }
}

impl CacheCollector {
    /// A collector over `cache`.
    pub fn new(cache: Arc<Cache>) -> Self {
        Self { cache }
    }

    /// Fill of each tier.
    pub fn tiers(&self) -> Vec<TierUsage> {
        let (objects, bytes) = self.cache.memory().usage();
        let limits = self.cache.limits();
        let mut tiers =
            vec![TierUsage { tier: "memory", objects: objects as u64, bytes, capacity: limits.memory_bytes }];
        if let Some(disk) = self.cache.disk() {
            let (objects, bytes) = disk.usage();
            tiers.push(TierUsage {
                tier: "disk",
                objects: objects as u64,
                bytes,
                capacity: limits.disk_bytes,
            });
        }
        tiers
    }

    /// The shared tier, when there is one.
    pub fn shared(&self) -> Option<SharedView> {
        self.cache.shared().map(|s| SharedView::from(s.snapshot()))
    }

    /// The disk tier's counters (zero without a disk tier).
    pub fn disk_counters(&self) -> DiskCounters {
        let memory_evictions = self.cache.memory().evictions();
        let (memory_deferred, memory_promoted) = self.cache.memory().admissions();
        let Some(disk) = self.cache.disk() else {
            return DiskCounters { memory_evictions, memory_deferred, memory_promoted, ..Default::default() };
        };
        let s = disk.stats();
        DiskCounters {
            evictions: s.evictions.load(Ordering::Relaxed),
            memory_evictions,
            memory_deferred,
            memory_promoted,
            write_errors: s.write_errors.load(Ordering::Relaxed),
            writes_skipped: s.writes_skipped.load(Ordering::Relaxed),
            corrupt_dropped: s.corrupt_dropped.load(Ordering::Relaxed),
        }
    }
}

fn per_tier(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    tiers: &[TierUsage],
    value: impl Fn(&TierUsage) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for t in tiers {
        let labels = [("tier", t.tier)];
        ConstGauge::new(value(t) as i64).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tiers = self.tiers();
        per_tier(&mut encoder, names::TIER_OBJECTS, &tiers, |t| t.objects)?;
        per_tier(&mut encoder, names::TIER_BYTES, &tiers, |t| t.bytes)?;
        per_tier(&mut encoder, names::TIER_CAPACITY, &tiers, |t| t.capacity)?;
        let d = self.disk_counters();
        let by_tier = [("memory", d.memory_evictions), ("disk", d.evictions)];
        labelled_counter(&mut encoder, names::EVICTIONS, "tier", &by_tier)?;
        let admissions = [("deferred", d.memory_deferred), ("promoted", d.memory_promoted)];
        labelled_counter(&mut encoder, names::MEMORY_ADMISSIONS, "outcome", &admissions)?;
        labelled_counter(&mut encoder, names::WRITE_ERRORS, "tier", &[("disk", d.write_errors)])?;
        labelled_counter(&mut encoder, names::WRITES_SKIPPED, "tier", &[("disk", d.writes_skipped)])?;
        labelled_counter(&mut encoder, names::CORRUPT_DROPPED, "tier", &[("disk", d.corrupt_dropped)])?;
        if let Some(shared) = self.cache.shared() {
            super::shared_tier::encode(&mut encoder, &shared.snapshot())?;
        }
        let in_flight = ConstGauge::new(self.cache.in_flight() as i64);
        let metric =
            encoder.encode_descriptor(names::IN_FLIGHT.0, names::IN_FLIGHT.1, None, MetricType::Gauge)?;
        in_flight.encode(metric)
    }
}
