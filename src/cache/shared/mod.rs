//! The shared tier: a Redis (standalone or Cluster) behind the local memory and disk tiers,
//! shared by a fleet of proxies. Entries are chunked ([`entry`]); fetches are coalesced across
//! the fleet with a lease ([`lease`]); invalidations travel on a pub/sub channel
//! ([`subscribe`]). Every call has a deadline, and any failure degrades to local-only: a
//! lookup misses, a write is skipped. Never a failed request.

pub mod conn;
pub mod entry;
pub mod hooks;
pub mod lease;
pub mod stats;
pub mod subscribe;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use redis::{Cmd, FromRedisValue, Value};

use super::key::CacheKey;
use super::meta::StoredHead;
use conn::Conn;
pub use conn::SharedUrl;
use entry::{EntryKeys, Meta};
pub use lease::{Claim, Lease};
pub use stats::{SharedSnapshot, SharedStats};

/// The pub/sub channel that carries invalidated cache keys.
pub const CHANNEL: &str = "httpcache-proxy:invalidate";

/// Chunks fetched per call: 2 MiB, well within one call's deadline.
const CHUNKS_PER_CALL: u32 = 4;

/// Chunks outlive their metadata a little, so a reader that found the metadata just before it
/// expired still finds every chunk.
const CHUNK_GRACE: Duration = Duration::from_secs(10);

/// How long a failed connect waits before the next attempt; also how often a down tier is
/// probed by one real call (the others skip Redis meanwhile, so an outage costs requests
/// nothing, not one deadline per call).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// Settings of the shared tier.
#[derive(Clone, Debug)]
pub struct SharedConfig {
    /// Where Redis is.
    pub url: SharedUrl,
    /// Largest body written to (or read from) Redis.
    pub max_object: u64,
    /// Deadline of each Redis call.
    pub timeout: Duration,
    /// CA certificates (PEM) trusted for `rediss://` instead of the system's.
    pub ca: Option<Vec<u8>>,
}

/// The shared tier of one proxy.
pub struct SharedTier {
    config: SharedConfig,
    conn: Mutex<Option<Conn>>,
    /// While down: when the next probe may go to Redis.
    probe_at: Mutex<Instant>,
    /// Whether a refused command was logged already.
    refusal_logged: std::sync::atomic::AtomicBool,
    connected: tokio::sync::watch::Sender<bool>,
    stats: SharedStats,
    /// Names this process in lease values.
    instance: String,
}

impl SharedTier {
    /// A tier with no connection yet: [`SharedTier::start`] connects in the background.
    pub fn new(config: SharedConfig) -> Arc<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let instance = format!("{}-{}", std::process::id(), nanos.as_nanos());
        let (connected, _) = tokio::sync::watch::channel(false);
        let (conn, probe_at) = (Mutex::new(None), Mutex::new(Instant::now()));
        let refusal_logged = Default::default();
        Arc::new(Self {
            config,
            conn,
            probe_at,
            refusal_logged,
            connected,
            stats: SharedStats::default(),
            instance,
        })
    }

    /// Starts connecting (retrying every second until Redis answers) and waits up to `within`
    /// for the first connection. Returns whether it is connected.
    pub async fn start(self: &Arc<Self>, within: Duration) -> bool {
        let tier = self.clone();
        tokio::spawn(async move {
            loop {
                match Conn::connect(&tier.config.url, tier.config.ca.as_deref(), tier.config.timeout).await {
                    Ok(c) => {
                        *tier.conn.lock() = Some(c);
                        tier.mark_up();
                        tier.connected.send_replace(true);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "shared cache: connect failed");
                        tokio::time::sleep(RECONNECT_EVERY).await;
                    }
                }
            }
            // A ping a second, traffic or not: an idle proxy notices an outage, reconnects and
            // says so when Redis is back.
            loop {
                tokio::time::sleep(RECONNECT_EVERY).await;
                let _ = tier.call::<String>(&redis::cmd("PING")).await;
            }
        });
        let mut rx = self.connected.subscribe();
        let connected = tokio::time::timeout(within, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok());
        connected
    }

    /// The settings.
    pub fn config(&self) -> &SharedConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &SharedStats {
        &self.stats
    }

    /// A snapshot of the counters, for metrics.
    pub fn snapshot(&self) -> SharedSnapshot {
        self.stats.snapshot()
    }

    /// One-word state for logs: `up` or `down`.
    pub fn state(&self) -> &'static str {
        if self.stats.up.load(Relaxed) {
            "up"
        } else {
            "down"
        }
    }

    /// Runs one command under the deadline, counting and logging failures.
    async fn call<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, ()> {
        let Some(mut conn) = self.conn.lock().clone().filter(|_| self.may_call()) else {
            SharedStats::bump(&self.stats.skipped);
            return Err(());
        };
        let started = Instant::now();
        let out = tokio::time::timeout(self.config.timeout, conn.query::<T>(cmd)).await;
        self.stats.time(started.elapsed());
        match out {
            Ok(Ok(v)) => {
                self.mark_up();
                Ok(v)
            }
            Ok(Err(e)) if unreachable(&e) => {
                self.mark_down(&e.to_string());
                Err(())
            }
            Ok(Err(e)) => {
                // Redis answered, but refused (out of memory, wrong type...): count it, stay up.
                SharedStats::bump(&self.stats.errors);
                if !self.refusal_logged.swap(true, Relaxed) {
                    tracing::warn!(error = %e, "shared cache: Redis refused a command (logged once)");
                }
                Err(())
            }
            Err(_) => {
                self.mark_down("deadline exceeded");
                Err(())
            }
        }
    }

    /// Up: always. Down: one probe per [`RECONNECT_EVERY`].
    fn may_call(&self) -> bool {
        if self.stats.up.load(Relaxed) {
            return true;
        }
        let now = Instant::now();
        let mut probe_at = self.probe_at.lock();
        if now < *probe_at {
            return false;
        }
        *probe_at = now + RECONNECT_EVERY;
        true
    }

    fn mark_up(&self) {
        if !self.stats.up.swap(true, Relaxed) {
            tracing::info!(redis = %self.config.url.redacted(), "shared cache up");
        }
    }

    fn mark_down(&self, why: &str) {
        SharedStats::bump(&self.stats.errors);
        if self.stats.up.swap(false, Relaxed) {
            tracing::warn!(redis = %self.config.url.redacted(), error = why,
                "shared cache unreachable: serving from the local tiers only");
        } else {
            tracing::debug!(error = why, "shared cache call failed");
        }
    }

    /// Reads the complete entry for `key`, verified; `None` on a miss, an incomplete upload or
    /// any Redis trouble.
    pub async fn get(&self, key: &CacheKey) -> Option<(StoredHead, Bytes)> {
        self.read(key, true).await
    }

    async fn read(&self, key: &CacheKey, count_miss: bool) -> Option<(StoredHead, Bytes)> {
        let miss = || {
            if count_miss {
                SharedStats::bump(&self.stats.misses);
            }
        };
        let keys = EntryKeys::new(key.hash());
        let raw: Option<Vec<u8>> = self.call(redis::cmd("GET").arg(keys.meta())).await.ok()?;
        let Some(raw) = raw else {
            miss();
            return None;
        };
        self.stats.bytes_read.fetch_add(raw.len() as u64, Relaxed);
        let (meta, head) = match Meta::decode(&raw) {
            Ok((m, h)) if h.key == key.url() && m.body_len <= self.config.max_object => (m, h),
            Ok(_) => {
                miss();
                return None;
            }
            Err(e) => {
                tracing::warn!(key = key.url(), error = %e, "shared cache: bad metadata");
                miss();
                return None;
            }
        };
        let mut body = Vec::with_capacity(meta.body_len as usize);
        for first in (0..meta.chunks).step_by(CHUNKS_PER_CALL as usize) {
            let last = (first + CHUNKS_PER_CALL).min(meta.chunks);
            let names: Vec<String> = (first..last).map(|i| keys.chunk(meta.generation, i)).collect();
            let parts: Vec<Value> = self.call(redis::cmd("MGET").arg(names)).await.ok()?;
            for part in parts {
                let Value::BulkString(bytes) = part else {
                    miss(); // a chunk expired or was evicted: the entry is gone
                    return None;
                };
                body.extend_from_slice(&bytes);
            }
        }
        if let Err(e) = meta.verify(&body) {
            tracing::warn!(key = key.url(), error = %e, "shared cache: entry fails its check");
            miss();
            return None;
        }
        self.stats.bytes_read.fetch_add(body.len() as u64, Relaxed);
        SharedStats::bump(&self.stats.hits);
        Some((head, Bytes::from(body)))
    }

    /// Writes an entry through: chunks first, metadata last, so a failed or partial upload is
    /// never readable. Returns whether it was written.
    pub async fn put(&self, key: &CacheKey, head: &StoredHead, body: Bytes, ttl: Duration) -> bool {
        if body.len() as u64 > self.config.max_object {
            return false;
        }
        let generation = fresh_generation();
        let meta = Meta::for_body(generation, &body);
        let keys = EntryKeys::new(key.hash());
        let ttl_ms = ttl.max(Duration::from_secs(1)).as_millis() as u64;
        let chunk_ms = ttl_ms + CHUNK_GRACE.as_millis() as u64;
        for (i, chunk) in entry::chunks(&body).enumerate() {
            let cmd = redis::cmd("SET")
                .arg(keys.chunk(generation, i as u32))
                .arg(&chunk[..])
                .arg("PX")
                .arg(chunk_ms)
                .clone();
            if self.call::<()>(&cmd).await.is_err() {
                return false; // the chunks written so far expire on their own
            }
        }
        let record = meta.encode(head);
        let cmd = redis::cmd("SET").arg(keys.meta()).arg(&record).arg("PX").arg(ttl_ms).clone();
        if self.call::<()>(&cmd).await.is_err() {
            return false;
        }
        self.stats.bytes_written.fetch_add((body.len() + record.len()) as u64, Relaxed);
        SharedStats::bump(&self.stats.writes);
        true
    }

    /// Drops `key` from the shared tier and tells every proxy to drop its local copy. The
    /// PURGE/admin path calls this too.
    pub async fn invalidate(&self, key: &CacheKey) {
        let keys = EntryKeys::new(key.hash());
        let _ = self.call::<()>(redis::cmd("DEL").arg(keys.meta())).await;
        if self.call::<()>(redis::cmd("PUBLISH").arg(CHANNEL).arg(key.url())).await.is_ok() {
            SharedStats::bump(&self.stats.invalidations);
        }
    }
}

/// Whether an error means Redis cannot be reached (the tier is down), rather than a refusal.
fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_cluster_error()
}

/// A generation no other upload of the same key uses (time and a process-wide counter).
fn fresh_generation() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Relaxed);
    (nanos.as_nanos() as u64) ^ (n << 48) ^ ((std::process::id() as u64) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> Arc<SharedTier> {
        let url = SharedUrl::parse("redis://127.0.0.1:1").unwrap();
        SharedTier::new(SharedConfig {
            url,
            max_object: 1 << 20,
            timeout: Duration::from_millis(50),
            ca: None,
        })
    }

    #[test]
    fn a_down_tier_lets_one_probe_through_per_interval() {
        let t = tier();
        assert_eq!(t.state(), "down");
        assert!(t.may_call(), "the first probe goes");
        assert!(!t.may_call(), "the next ones skip Redis");
        t.mark_up();
        assert_eq!(t.state(), "up");
        assert!(t.may_call() && t.may_call(), "up: every call goes");
    }

    #[test]
    fn state_changes_are_counted_once_per_failure() {
        let t = tier();
        t.mark_up();
        t.mark_down("refused");
        t.mark_down("refused");
        let s = t.snapshot();
        assert_eq!((s.errors, s.up), (2, false));
    }

    #[tokio::test]
    async fn without_a_connection_calls_are_skipped_not_failed() {
        let t = tier();
        let key = CacheKey::from_url("http://a:80/x".into());
        assert!(t.get(&key).await.is_none());
        assert!(!t.put(&key, &test_head(), Bytes::from_static(b"x"), Duration::from_secs(5)).await);
        let s = t.snapshot();
        assert_eq!((s.skipped, s.errors, s.hits), (2, 0, 0));
    }

    fn test_head() -> StoredHead {
        StoredHead {
            kind: crate::cache::meta::EntryKind::Response,
            key: "http://a:80/x".into(),
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            request_time: std::time::SystemTime::now(),
            response_time: std::time::SystemTime::now(),
            reading: Default::default(),
        }
    }
}
