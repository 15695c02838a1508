//! Metrics: what the proxy counts, recorded lock-free on the hot path and exported in the
//! Prometheus text format by the admin listener.
//!
//! One process serves one proxy, so the counters live in one process-wide [`Metrics`]
//! ([`global`]): the request pipeline, the listener and the upstream client record into it
//! without being handed a handle. Gauges that describe the cache (objects and bytes per tier,
//! evictions, write errors) are read from the cache at scrape time by [`CacheCollector`]
//! instead of being mirrored on every change.
//!
//! Adding metrics (a new tier, say): add the name to [`names`], then either a field to
//! [`Metrics`] registered in [`Metrics::register`], or a `prometheus_client` `Collector` passed
//! to [`registry`] through its `extra` argument (read at scrape time).

pub mod cache_collector;
pub mod counters;
mod encode;
pub mod names;
pub mod recent;
pub mod shared_tier;

use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use cache_collector::CacheCollector;
use counters::{CounterGrid, DurationHistogram, LabeledCounters, LATENCY_BUCKETS};
use recent::{Recent, RecentRequest};

/// Mode labels, in the order of [`mode_index`].
pub const MODES: &[&str] = &["embedded", "forward", "reverse", "connect"];

/// Cache result labels, in the order of [`CacheOutcome`].
pub const RESULTS: &[&str] =
    &["hit", "miss", "stale", "revalidated", "coalesced", "bypass", "pass", "local", "tunnel"];

/// Where a response body came from.
pub const SOURCES: &[&str] = &["cache", "upstream"];

/// Status codes exported as themselves; any other is exported as its class (`4xx`).
const STATUS_CODES: &[u16] = &[
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 414, 416, 421, 429,
    431, 500, 501, 502, 503, 504, 508,
];
/// Labels of [`STATUS_CODES`] followed by the five classes.
const STATUS_LABELS: &[&str] = &[
    "200", "201", "204", "206", "301", "302", "303", "304", "307", "308", "400", "401", "403", "404", "405",
    "408", "413", "414", "416", "421", "429", "431", "500", "501", "502", "503", "504", "508", "1xx", "2xx",
    "3xx", "4xx", "5xx",
];

/// A request's cache result, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum CacheOutcome {
    /// Fresh from the cache.
    Hit,
    /// Fetched and stored.
    Miss,
    /// Stale from the cache.
    Stale,
    /// Revalidated (304) and served from the cache.
    Revalidated,
    /// Served from another request's fetch.
    Coalesced,
    /// Not cacheable by method, rule or with caching off: straight upstream.
    Bypass,
    /// Cacheable method, but the response was not stored.
    Pass,
    /// Answered by the proxy itself.
    Local,
    /// CONNECT tunnel.
    Tunnel,
}

impl CacheOutcome {
    /// The label.
    pub fn as_str(self) -> &'static str {
        RESULTS[self as usize]
    }

    /// Where the body came from, for the bytes counters (`None`: neither).
    fn source(self) -> Option<usize> {
        match self {
            Self::Hit | Self::Stale | Self::Revalidated | Self::Coalesced => Some(0),
            Self::Miss | Self::Bypass | Self::Pass => Some(1),
            Self::Local | Self::Tunnel => None,
        }
    }
}

/// One answered request, as the pipeline reports it.
pub struct RequestRecord<'a> {
    /// Mode label (one of [`MODES`]).
    pub mode: &'static str,
    /// Method.
    pub method: &'a http::Method,
    /// Request target as received.
    pub uri: &'a http::Uri,
    /// Response status.
    pub status: u16,
    /// Cache result.
    pub outcome: CacheOutcome,
    /// Content-Length of the response, if known.
    pub bytes: Option<u64>,
    /// Time to the response head.
    pub elapsed: Duration,
}

/// The process's counters.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Requests by mode and status.
    pub requests: CounterGrid,
    /// Requests by cache result.
    pub results: LabeledCounters,
    /// Body bytes by source.
    pub served_bytes: LabeledCounters,
    /// Request to response head.
    pub response_time: DurationHistogram,
    /// Upstream request to response head.
    pub upstream_latency: DurationHistogram,
    /// Failed upstream requests.
    pub upstream_errors: LabeledCounters,
    /// Client connections open.
    pub connections_open: Gauge,
    /// Entries removed by purges.
    pub purged: LabeledCounters,
    /// Body bytes handed to client sockets with `sendfile` rather than copied from memory.
    pub sendfile_bytes: LabeledCounters,
    /// The last requests, for the dashboard.
    pub recent: Recent,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Zeroed metrics; uptime counts from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: CounterGrid::new(("mode", "code"), MODES, STATUS_LABELS),
            results: LabeledCounters::new("result", RESULTS),
            served_bytes: LabeledCounters::new("source", SOURCES),
            response_time: DurationHistogram::new(LATENCY_BUCKETS),
            upstream_latency: DurationHistogram::new(LATENCY_BUCKETS),
            upstream_errors: LabeledCounters::new("kind", &["error"]),
            connections_open: Gauge::default(),
            purged: LabeledCounters::new("via", &["purge", "api"]),
            sendfile_bytes: LabeledCounters::new("from", &["memory"]),
            recent: Recent::default(),
        }
    }

    /// Counts one answered request: a handful of relaxed atomic adds and one ring slot.
    pub fn record(&self, r: RequestRecord<'_>) {
        self.requests.inc(mode_index(r.mode), status_index(r.status));
        self.results.add(r.outcome as usize, 1);
        if let (Some(source), Some(bytes)) = (r.outcome.source(), r.bytes) {
            self.served_bytes.add(source, bytes);
        }
        self.response_time.observe(r.elapsed);
        self.recent.push(RecentRequest {
            at: SystemTime::now(),
            method: r.method.clone(),
            uri: r.uri.clone(),
            status: r.status,
            result: r.outcome.as_str(),
            bytes: r.bytes,
            us: r.elapsed.as_micros().min(u64::MAX as u128) as u64,
        });
    }

    /// Counts one upstream request: its time to the response head, or a failure.
    pub fn upstream_sent(&self, elapsed: Duration, ok: bool) {
        if ok {
            self.upstream_latency.observe(elapsed);
        } else {
            self.upstream_errors.add(0, 1);
        }
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Requests answered so far.
    pub fn requests_total(&self) -> u64 {
        self.requests.total()
    }

    /// Registers every metric of this struct in `registry`.
    pub fn register(&'static self, registry: &mut Registry) {
        registry.register(names::REQUESTS.0, names::REQUESTS.1, Ref(&self.requests));
        registry.register(names::CACHE_RESULTS.0, names::CACHE_RESULTS.1, Ref(&self.results));
        registry.register(names::SERVED_BYTES.0, names::SERVED_BYTES.1, Ref(&self.served_bytes));
        registry.register(names::RESPONSE_TIME.0, names::RESPONSE_TIME.1, Ref(&self.response_time));
        registry.register(names::UPSTREAM_LATENCY.0, names::UPSTREAM_LATENCY.1, Ref(&self.upstream_latency));
        registry.register(names::UPSTREAM_ERRORS.0, names::UPSTREAM_ERRORS.1, Ref(&self.upstream_errors));
        registry.register(
            names::CONNECTIONS_OPEN.0,
            names::CONNECTIONS_OPEN.1,
            self.connections_open.clone(),
        );
        registry.register(names::PURGED.0, names::PURGED.1, Ref(&self.purged));
        registry.register(names::SENDFILE_BYTES.0, names::SENDFILE_BYTES.1, Ref(&self.sendfile_bytes));
        let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(names::UPTIME.0, names::UPTIME.1, Uptime(self.started, uptime));
        let build = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        registry.register(names::BUILD.0, names::BUILD.1, build);
    }
}

/// The registry the admin listener exports: every [`Metrics`] field, the cache's state read at
/// scrape time, and any `extra` collectors (another tier's, say).
pub fn registry(cache: Option<CacheCollector>, extra: Vec<Box<dyn Collector>>) -> Registry {
    let mut registry = Registry::default();
    global().register(&mut registry);
    if let Some(c) = cache {
        registry.register_collector(Box::new(c));
    }
    for c in extra {
        registry.register_collector(c);
    }
    registry
}

/// Encodes `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

fn mode_index(mode: &str) -> usize {
    MODES.iter().position(|m| *m == mode).unwrap_or(0)
}

fn status_index(status: u16) -> usize {
    match STATUS_CODES.binary_search(&status) {
        Ok(i) => i,
        Err(_) => STATUS_CODES.len() + (status / 100).clamp(1, 5) as usize - 1,
    }
}

/// A `'static` metric registered by reference (the registry wants owned metrics).
#[derive(Debug)]
struct Ref<M: 'static>(&'static M);

impl<M: prometheus_client::encoding::EncodeMetric + std::fmt::Debug> prometheus_client::encoding::EncodeMetric
    for Ref<M>
{
    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }
}

/// Uptime in seconds, computed when scraped.
#[derive(Debug)]
struct Uptime(Instant, Gauge<f64, std::sync::atomic::AtomicU64>);

impl prometheus_client::encoding::EncodeMetric for Uptime {
    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        self.1.set(self.0.elapsed().as_secs_f64());
        self.1.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }
}

/// Adds one to the open-connections gauge until dropped.
pub struct ConnectionGuard(());

impl ConnectionGuard {
    /// Counts a new client connection.
    pub fn open() -> Self {
        global().connections_open.inc();
        Self(())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        global().connections_open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_label() {
        for (code, label) in
            [(200, "200"), (508, "508"), (299, "2xx"), (418, "4xx"), (999, "5xx"), (42, "1xx")]
        {
            assert_eq!(STATUS_LABELS[status_index(code)], label, "{code}");
        }
    }

    #[test]
    fn recorded_requests_appear_in_the_text_format() {
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let (method, uri) = (http::Method::GET, http::Uri::from_static("/h/a"));
        m.record(RequestRecord {
            mode: "forward",
            method: &method,
            uri: &uri,
            status: 200,
            outcome: CacheOutcome::Hit,
            bytes: Some(10),
            elapsed: Duration::from_millis(3),
        });
        let mut registry = Registry::default();
        m.register(&mut registry);
        let text = encode(&registry);
        assert!(text.contains("httpcache_requests_total{mode=\"forward\",code=\"200\"} 1"), "{text}");
        assert!(text.contains("httpcache_cache_results_total{result=\"hit\"} 1"), "{text}");
        assert!(text.contains("httpcache_served_bytes_total{source=\"cache\"} 10"), "{text}");
        assert!(text.contains("httpcache_response_duration_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("httpcache_build_info{version="), "{text}");
    }
}
