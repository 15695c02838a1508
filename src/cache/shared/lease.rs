//! Fleet-wide coalescing: before going to the origin on a miss, a proxy takes a short lease
//! in Redis (`SET <lease> <id> NX PX`). A proxy that finds the lease taken polls the shared
//! tier (bounded backoff) until the entry lands, the lease is released without one, or it
//! expires; then it fetches for itself. A leader whose response may not be stored marks the
//! lease "pass", so the others stop waiting at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::entry::EntryKeys;
use super::{SharedStats, SharedTier};
use crate::cache::key::CacheKey;
use crate::cache::meta::StoredHead;

/// How long a lease holds: the longest another proxy waits for the leader's entry.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a "pass" mark keeps the fleet from waiting on a URL that is not stored.
const PASS_TTL: Duration = Duration::from_secs(30);
const PASS: &str = "pass";
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(200);

/// Deletes the lease only if this proxy still holds it.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The outcome of [`SharedTier::claim`].
pub enum Claim {
    /// Fetch from the origin; with a lease when this proxy holds it (released on drop).
    Lead(Option<Lease>),
    /// Another proxy's fetch landed in the shared tier meanwhile.
    Landed(StoredHead, Bytes),
}

/// A held lease; released when dropped.
pub struct Lease {
    tier: Arc<SharedTier>,
    key: String,
    token: String,
}

impl Lease {
    /// Marks the URL as not stored, so proxies waiting for it fetch at once.
    pub fn pass(&self) {
        let (tier, key) = (self.tier.clone(), self.key.clone());
        let ms = PASS_TTL.as_millis() as u64;
        tokio::spawn(async move {
            let _ = tier.call::<()>(redis::cmd("SET").arg(&key).arg(PASS).arg("PX").arg(ms)).await;
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let (tier, key, token) =
            (self.tier.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.token));
        rt.spawn(async move {
            let _ = tier.call::<i64>(redis::cmd("EVAL").arg(RELEASE).arg(1).arg(&key).arg(&token)).await;
        });
    }
}

impl SharedTier {
    /// Takes the lease for fetching `key`, or waits for the proxy that holds it to store a
    /// response (one newer than `newer_than`, when revalidating a stored one).
    pub async fn claim(self: &Arc<Self>, key: &CacheKey, newer_than: Option<SystemTime>) -> Claim {
        let lease_key = EntryKeys::new(key.hash()).lease();
        let token = format!("{}:{}", self.instance, super::fresh_generation());
        let deadline = Instant::now() + LEASE_TTL;
        let mut pause = FIRST_POLL;
        loop {
            let set = redis::cmd("SET")
                .arg(&lease_key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE_TTL.as_millis() as u64)
                .clone();
            match self.call::<Option<String>>(&set).await {
                Err(()) => return Claim::Lead(None),
                Ok(Some(_)) => {
                    let lease = Lease { tier: self.clone(), key: lease_key, token };
                    // Taken over from a holder that just let go: its entry may have landed
                    // since the last poll (then dropping the lease releases it).
                    if pause > FIRST_POLL {
                        if let Some(landed) = self.landed(key, newer_than).await {
                            return landed;
                        }
                    }
                    SharedStats::bump(&self.stats.leases);
                    return Claim::Lead(Some(lease));
                }
                Ok(None) => {}
            }
            let holder: Option<String> = self.call(redis::cmd("GET").arg(&lease_key)).await.unwrap_or(None);
            if holder.as_deref() == Some(PASS) || Instant::now() >= deadline {
                return Claim::Lead(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
            if let Some(landed) = self.landed(key, newer_than).await {
                return landed;
            }
        }
    }

    /// The entry another proxy stored for `key` (newer than `newer_than`), if it is there.
    async fn landed(&self, key: &CacheKey, newer_than: Option<SystemTime>) -> Option<Claim> {
        let (head, body) = self.read(key, false).await?;
        if newer_than.is_some_and(|t| head.response_time <= t) {
            return None;
        }
        self.stats.lease_landed.fetch_add(1, Relaxed);
        Some(Claim::Landed(head, body))
    }
}
