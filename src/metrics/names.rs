//! Every metric name and help text, in one place. Names follow the Prometheus conventions:
//! an `httpcache_` prefix, base units (seconds, bytes), `_total` added to counters by the
//! encoder. A new metric (another branch's tier, say) adds its name here.

/// Requests answered, by mode and status (counter).
pub const REQUESTS: (&str, &str) = ("httpcache_requests", "Requests answered, by mode and status code.");
/// Requests by cache result (counter).
pub const CACHE_RESULTS: (&str, &str) = ("httpcache_cache_results", "Requests by cache result.");
/// Response bytes by where the body came from (counter).
pub const SERVED_BYTES: (&str, &str) =
    ("httpcache_served_bytes", "Response body bytes (Content-Length) served, by source: cache or upstream.");
/// Time from request head to response head (histogram).
pub const RESPONSE_TIME: (&str, &str) =
    ("httpcache_response_duration_seconds", "Time from request to response head, per request.");
/// Time the upstream took to send a response head (histogram).
pub const UPSTREAM_LATENCY: (&str, &str) =
    ("httpcache_upstream_latency_seconds", "Time from sending a request upstream to its response head.");
/// Upstream requests that failed (counter).
pub const UPSTREAM_ERRORS: (&str, &str) =
    ("httpcache_upstream_errors", "Upstream requests that failed (connect, deadline, broken response).");
/// Client connections open now (gauge).
pub const CONNECTIONS_OPEN: (&str, &str) = ("httpcache_connections_open", "Client connections open now.");
/// Entries removed by PURGE or the admin API (counter).
pub const PURGED: (&str, &str) = ("httpcache_purged_entries", "Entries removed by PURGE or the admin API.");
/// Body bytes sent with `sendfile` from memory-tier bodies in memory files (counter).
pub const SENDFILE_BYTES: (&str, &str) = (
    "httpcache_sendfile_bytes",
    "Response body bytes handed to the socket with sendfile instead of copied from memory",
);
/// Objects per tier (gauge).
pub const TIER_OBJECTS: (&str, &str) = ("httpcache_tier_objects", "Objects held, per cache tier.");
/// Bytes per tier (gauge).
pub const TIER_BYTES: (&str, &str) = ("httpcache_tier_bytes", "Bytes held, per cache tier.");
/// Capacity per tier (gauge).
pub const TIER_CAPACITY: (&str, &str) =
    ("httpcache_tier_capacity_bytes", "Configured bound, per cache tier.");
/// Entries evicted from the disk tier (counter).
pub const EVICTIONS: (&str, &str) =
    ("httpcache_evictions", "Entries evicted to stay within the bound, per tier.");
/// How objects entered the memory tier other than on a miss (counter).
pub const MEMORY_ADMISSIONS: (&str, &str) = (
    "httpcache_memory_admissions",
    "New objects kept out of the full memory tier, on disk only until asked for again (deferred); entries taken into it on a hit from below (promoted).",
);
/// Failed cache writes (counter).
pub const WRITE_ERRORS: (&str, &str) =
    ("httpcache_write_errors", "Failed cache writes (each one degraded a response to pass-through).");
/// Disk copies skipped because the writer was behind (counter).
pub const WRITES_SKIPPED: (&str, &str) =
    ("httpcache_writes_skipped", "Small entries kept in memory only because the disk writer was behind.");
/// Entries dropped because a checksum failed (counter).
pub const CORRUPT_DROPPED: (&str, &str) =
    ("httpcache_corrupt_dropped", "Disk entries dropped because a checksum or length check failed.");
/// Fetches in flight (gauge).
pub const IN_FLIGHT: (&str, &str) =
    ("httpcache_fetches_in_flight", "Upstream fetches in flight (coalesced).");
/// Shared-tier lookups by outcome: hit, miss (counter).
pub const SHARED_LOOKUPS: (&str, &str) =
    ("httpcache_shared_lookups", "Shared-tier (Redis) lookups, by outcome: hit or miss.");
/// Shared-tier calls that failed or missed their deadline, or were skipped while down (counter).
pub const SHARED_ERRORS: (&str, &str) = (
    "httpcache_shared_errors",
    "Shared-tier calls by trouble: error (failed or past its deadline) or skipped (Redis down).",
);
/// Shared-tier calls timed (counter) and their total time (counter): a mean latency is
/// `rate(seconds) / rate(calls)`.
pub const SHARED_CALLS: (&str, &str) = ("httpcache_shared_calls", "Shared-tier (Redis) calls timed.");
/// See [`SHARED_CALLS`].
pub const SHARED_CALL_SECONDS: (&str, &str) =
    ("httpcache_shared_call_seconds", "Total time spent in shared-tier (Redis) calls.");
/// Bytes to and from the shared tier (counter).
pub const SHARED_BYTES: (&str, &str) = (
    "httpcache_shared_bytes",
    "Entry bytes moved to and from the shared tier, by direction: read or written.",
);
/// Entries written through to the shared tier (counter).
pub const SHARED_WRITES: (&str, &str) =
    ("httpcache_shared_writes", "Entries written through to the shared tier.");
/// Fleet leases (counter).
pub const SHARED_LEASES: (&str, &str) = (
    "httpcache_shared_leases",
    "Fleet-wide coalescing: leases taken by this proxy (taken), waits that ended with another proxy's entry (landed).",
);
/// Invalidations (counter).
pub const SHARED_INVALIDATIONS: (&str, &str) = (
    "httpcache_shared_invalidations",
    "Invalidations sent to the fleet (published) and heard from it (received).",
);
/// Whether the shared tier answers (gauge).
pub const SHARED_UP: (&str, &str) =
    ("httpcache_shared_up", "1 when the shared tier (Redis) answers, 0 when it is down.");
/// Seconds since start (gauge).
pub const UPTIME: (&str, &str) = ("httpcache_uptime_seconds", "Seconds since the proxy started.");
/// Build information (info).
pub const BUILD: (&str, &str) = ("httpcache_build", "Build information: version.");
