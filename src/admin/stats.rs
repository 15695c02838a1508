//! `/api/stats`: the figures the dashboard shows, as one JSON document.

use serde::Serialize;

use crate::metrics::cache_collector::{DiskCounters, TierUsage};
use crate::metrics::recent::{top_urls, RecentView};
use crate::metrics::shared_tier::SharedView;
use crate::metrics::{self, CacheCollector};

/// Requests shown in `recent`.
const RECENT_SHOWN: usize = 50;
/// URLs shown in `top_urls`.
const TOP_SHOWN: usize = 10;

#[derive(Serialize)]
pub(super) struct Stats {
    version: &'static str,
    uptime_s: f64,
    requests: u64,
    results: serde_json::Map<String, serde_json::Value>,
    /// Requests served from storage over those the cache could have served.
    hit_ratio: Option<f64>,
    bytes_from_cache: u64,
    bytes_from_upstream: u64,
    connections_open: i64,
    upstream_requests: u64,
    upstream_errors: u64,
    upstream_mean_latency_s: Option<f64>,
    /// The shared (Redis) tier; absent without `--shared-cache`.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared: Option<SharedView>,
    tiers: Vec<TierUsage>,
    disk: DiskCounters,
    purged: u64,
    top_urls: Vec<TopUrl>,
    recent: Vec<RecentView>,
}

#[derive(Serialize)]
struct TopUrl {
    url: String,
    requests: u64,
}

/// The current figures.
pub(super) fn snapshot(cache: Option<&CacheCollector>) -> Stats {
    let m = metrics::global();
    let mut results = serde_json::Map::new();
    for (name, n) in m.results.snapshot() {
        results.insert(name.into(), n.into());
    }
    let served: u64 =
        ["hit", "stale", "revalidated", "coalesced"].iter().map(|r| m.results.get_named(r)).sum();
    let fetched: u64 = ["miss", "pass"].iter().map(|r| m.results.get_named(r)).sum();
    let hit_ratio = (served + fetched > 0).then(|| served as f64 / (served + fetched) as f64);
    let upstream_requests = m.upstream_latency.count();
    let recent = m.recent.snapshot();
    let top =
        top_urls(&recent, TOP_SHOWN).into_iter().map(|(url, requests)| TopUrl { url, requests }).collect();
    Stats {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: m.uptime().as_secs_f64(),
        requests: m.requests_total(),
        results,
        hit_ratio,
        bytes_from_cache: m.served_bytes.get(0),
        bytes_from_upstream: m.served_bytes.get(1),
        connections_open: m.connections_open.get(),
        upstream_requests,
        upstream_errors: m.upstream_errors.get(0),
        upstream_mean_latency_s: (upstream_requests > 0)
            .then(|| m.upstream_latency.sum_seconds() / upstream_requests as f64),
        shared: cache.and_then(CacheCollector::shared),
        tiers: cache.map(CacheCollector::tiers).unwrap_or_default(),
        disk: cache.map(CacheCollector::disk_counters).unwrap_or_default(),
        purged: m.purged.snapshot().iter().map(|(_, n)| n).sum(),
        top_urls: top,
        recent: recent.iter().take(RECENT_SHOWN).map(RecentView::from).collect(),
    }
}
