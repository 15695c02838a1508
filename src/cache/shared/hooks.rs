//! The shared tier's place in [`Cache`]: looked up after the local tiers (a hit is promoted
//! to them), written through after a local fill is committed, consulted for a fleet-wide
//! lease before an origin fetch, and told about invalidations. Without `--shared-cache`
//! each of these is a no-op.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{lease::Claim, Lease, SharedConfig, SharedTier};
use crate::cache::key::CacheKey;
use crate::cache::meta::StoredHead;
use crate::cache::policy::CacheControl;
use crate::cache::store::disk::DiskBody;
use crate::cache::{Cache, CachedBody, CachedResponse, Tier};

/// How long the shared tier keeps a response: its freshness lifetime plus the time it may
/// still be served stale (`stale-while-revalidate`, `stale-if-error`), so Redis evicts it on
/// its own once no proxy could use it. Zero: not worth sharing.
pub fn shared_ttl(lifetime: Option<Duration>, directives: &CacheControl) -> Duration {
    let stale = directives.stale_while_revalidate.max(directives.stale_if_error).unwrap_or(0);
    lifetime.unwrap_or_default() + Duration::from_secs(u64::from(stale))
}

/// Vary markers are small and outlive any one variant; an orphaned marker only costs a miss.
const MARKER_TTL: Duration = Duration::from_secs(3600);

/// What a local leader does before going to the origin.
pub enum BeforeFetch {
    /// Fetch, holding the fleet-wide lease when there is one.
    Fetch(Option<Arc<Lease>>),
    /// Another proxy's response landed and is now stored locally: look it up again.
    Landed,
}

impl Cache {
    /// Adds the shared tier described by `config` (not connected until [`Cache::start_shared`]).
    pub fn with_shared(mut self, config: Option<SharedConfig>) -> Self {
        self.shared = config.map(SharedTier::new);
        self
    }

    /// The shared tier, if configured.
    pub fn shared(&self) -> Option<&Arc<SharedTier>> {
        self.shared.as_ref()
    }

    /// Connects the shared tier (waiting up to `within`) and starts the invalidation
    /// subscriber. Returns the state for the start-up log: `off`, `up` or `down`.
    pub async fn start_shared(self: &Arc<Self>, within: Duration) -> &'static str {
        let Some(tier) = self.shared.clone() else { return "off" };
        tier.start(within).await;
        super::subscribe::spawn(tier.clone(), self.clone());
        tier.state()
    }

    /// Looks `key` up in the shared tier and promotes a hit to the local tiers.
    pub(crate) async fn lookup_shared(&self, key: &CacheKey) -> Option<CachedResponse> {
        let (head, body) = self.shared.as_ref()?.get(key).await?;
        Some(self.promote(key, head, body).await)
    }

    async fn promote(&self, key: &CacheKey, head: StoredHead, body: Bytes) -> CachedResponse {
        let head = Arc::new(head);
        self.store_complete(key, head.clone(), body.clone()).await;
        CachedResponse { head, body: CachedBody::Memory(body), tier: Tier::Shared }
    }

    /// Before a leader's origin fetch (a miss, or a revalidation of `stale`): looks for a
    /// newer copy another proxy stored, then takes the fleet-wide lease, or waits for the
    /// proxy that holds it and promotes what it stores.
    pub async fn before_fetch(&self, key: &CacheKey, stale: Option<&CachedResponse>) -> BeforeFetch {
        let Some(tier) = &self.shared else { return BeforeFetch::Fetch(None) };
        // Boxed: the Redis round trips' state would otherwise sit in every request's future.
        Box::pin(self.before_fetch_shared(tier, key, stale)).await
    }

    async fn before_fetch_shared(
        &self,
        tier: &Arc<SharedTier>,
        key: &CacheKey,
        stale: Option<&CachedResponse>,
    ) -> BeforeFetch {
        let newer_than = stale.map(|s| s.head.response_time);
        // A miss already looked in Redis; a local stale entry did not.
        if let Some(t) = newer_than.filter(|_| stale.is_some_and(|s| s.tier != Tier::Shared)) {
            if let Some((head, body)) = tier.get(key).await.filter(|(h, _)| h.response_time > t) {
                self.promote_for_lookup(key, head, body).await;
                return BeforeFetch::Landed;
            }
        }
        match tier.claim(key, newer_than).await {
            Claim::Lead(lease) => BeforeFetch::Fetch(lease.map(Arc::new)),
            Claim::Landed(head, body) => {
                self.promote_for_lookup(key, head, body).await;
                BeforeFetch::Landed
            }
        }
    }

    /// Promotes an entry and waits until the disk has it too, so the next lookup cannot find
    /// an older copy there.
    async fn promote_for_lookup(&self, key: &CacheKey, head: StoredHead, body: Bytes) {
        self.promote(key, head, body).await;
        self.flush().await;
    }

    /// Writes a committed entry through to the shared tier, off the client's path. `body` is
    /// `None` when the body went only to disk: it is read back from there. `lease` is released
    /// once the entry is in Redis, so waiting proxies find it.
    pub fn write_through(
        &self,
        key: &CacheKey,
        head: Arc<StoredHead>,
        body: Option<Bytes>,
        ttl: Duration,
        lease: Option<Arc<Lease>>,
    ) {
        let Some(tier) = self.shared.clone() else { return };
        if ttl.is_zero() {
            if let Some(lease) = lease {
                lease.pass(); // nothing to wait for: the others fetch for themselves
            }
            return;
        }
        let (key, disk) = (key.clone(), self.disk.clone());
        tokio::spawn(async move {
            let max = tier.config().max_object;
            let body = match (body, disk) {
                (Some(b), _) => Some(b).filter(|b| b.len() as u64 <= max),
                (None, Some(disk)) => {
                    let k = key.clone();
                    let read = tokio::task::spawn_blocking(move || disk.lookup(&k, max)).await;
                    match read.ok().flatten().map(|e| e.body) {
                        Some(DiskBody::Inline(b)) => Some(b),
                        _ => None, // gone already, or larger than --shared-max-object-size
                    }
                }
                (None, None) => None,
            };
            match (body, &lease) {
                (Some(body), _) => {
                    tier.put(&key, &head, body, ttl).await;
                }
                // Too large to share: the waiting proxies must not queue up behind one
                // another for it, each fetches for itself.
                (None, Some(lease)) => lease.pass(),
                (None, None) => {}
            }
            drop(lease);
        });
    }

    /// Writes through an entry whose head a 304 just freshened, so the fleet gets the fresh
    /// head too instead of revalidating on its own.
    pub fn share_body(
        &self,
        key: &CacheKey,
        head: Arc<StoredHead>,
        body: &CachedBody,
        ttl: Duration,
        lease: Option<Arc<Lease>>,
    ) {
        let body = match body {
            CachedBody::Memory(b) => Some(b.clone()),
            CachedBody::File { .. } => None, // read back from the rewritten entry file
        };
        self.write_through(key, head, body, ttl, lease);
    }

    /// Shares a Vary marker just stored locally.
    pub(crate) fn write_through_marker(&self, key: &CacheKey, head: Arc<StoredHead>) {
        self.write_through(key, head, Some(Bytes::new()), MARKER_TTL, None);
    }

    /// Drops `key` from every tier, the shared one included, and tells the other proxies to
    /// drop their copies (RFC 9111 §4.4 invalidation, purges).
    pub async fn invalidate(&self, key: &CacheKey) {
        self.remove(key).await;
        if let Some(tier) = &self.shared {
            tier.invalidate(key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_lifetime_plus_stale_window() {
        let cc = CacheControl {
            stale_while_revalidate: Some(30),
            stale_if_error: Some(600),
            ..Default::default()
        };
        assert_eq!(shared_ttl(Some(Duration::from_secs(60)), &cc), Duration::from_secs(660));
        assert_eq!(
            shared_ttl(Some(Duration::from_secs(60)), &CacheControl::default()),
            Duration::from_secs(60)
        );
        assert_eq!(shared_ttl(None, &CacheControl::default()), Duration::ZERO);
    }
}
