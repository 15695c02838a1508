//! What the cache holds, by URL: listing for the admin API and purging by URL or prefix.
//! Both tiers are scanned (the memory tier in place, the disk tier by reading each entry's
//! head), so these cost time in the number of entries: operator actions, never the hot path.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::key::{CacheKey, KeyHash};
use super::meta::{EntryKind, StoredHead};
use super::store::scan;
use super::Cache;

/// One stored entry.
#[derive(Clone, Debug)]
pub struct StoredEntry {
    /// Its key hash.
    pub hash: KeyHash,
    /// Its head (the key is in it).
    pub head: Arc<StoredHead>,
    /// Bytes it takes: the file or pack record size on disk, else the memory tier's weight.
    pub size: u64,
    /// Whether the memory tier holds it.
    pub in_memory: bool,
    /// Whether the disk tier holds it.
    pub on_disk: bool,
}

impl StoredEntry {
    /// Whether this is a response (not a URL's Vary marker).
    pub fn is_response(&self) -> bool {
        self.head.kind == EntryKind::Response
    }
}

impl Cache {
    /// Every entry in either tier whose key satisfies `keep`, ordered by key hash. Blocking:
    /// call it from `spawn_blocking`.
    pub fn entries_where(&self, keep: impl Fn(&str) -> bool) -> Vec<StoredEntry> {
        let mut all: BTreeMap<KeyHash, StoredEntry> = BTreeMap::new();
        // Entries on their way to disk only count as in memory until written.
        for (hash, e) in self.memory.entries().into_iter().chain(self.pending.snapshot()) {
            if keep(&e.head.key) {
                let size = e.body.len() as u64;
                let entry = StoredEntry { hash, head: e.head.clone(), size, in_memory: true, on_disk: false };
                all.insert(hash, entry);
            }
        }
        if let Some(disk) = &self.disk {
            for file in scan::entry_files(disk.dir()).unwrap_or_default() {
                if let Some(e) = all.get_mut(&file.hash) {
                    (e.on_disk, e.size) = (true, file.size);
                    continue;
                }
                let Ok(head) = scan::read_head(&file) else { continue };
                if keep(&head.key) {
                    let entry = StoredEntry {
                        hash: file.hash,
                        head: Arc::new(head),
                        size: file.size,
                        in_memory: false,
                        on_disk: true,
                    };
                    all.insert(file.hash, entry);
                }
            }
        }
        all.into_values().collect()
    }

    /// Removes `url`'s entry and every entry stored under it: its Vary variants and keys
    /// extended by a rule's key fields (both continue the URL with a newline). Returns how
    /// many entries were removed.
    pub async fn purge_url(self: &Arc<Self>, url: &str) -> usize {
        let (url, url_for_fleet) = (url.to_string(), url.to_string());
        let below = format!("{url}\n");
        let purged = self.purge_where(move |k| k == url.as_str() || k.starts_with(&below)).await;
        // Other proxies may hold the URL though this one does not: tell the fleet anyway.
        if let Some(tier) = self.shared() {
            tier.invalidate(&CacheKey::from_url(url_for_fleet)).await;
        }
        purged
    }

    /// Removes every entry whose key starts with `prefix`; returns how many.
    pub async fn purge_prefix(self: &Arc<Self>, prefix: &str) -> usize {
        let prefix = prefix.to_string();
        self.purge_where(move |k| k.starts_with(&prefix)).await
    }

    async fn purge_where(self: &Arc<Self>, keep: impl Fn(&str) -> bool + Send + 'static) -> usize {
        let this = self.clone();
        let found = tokio::task::spawn_blocking(move || this.entries_where(keep)).await.unwrap_or_default();
        for e in &found {
            self.invalidate(&CacheKey::from_url(e.head.key.clone())).await; // the fleet too
        }
        found.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::meta::from_millis;
    use crate::cache::CacheLimits;
    use bytes::Bytes;

    fn head(key: &str, kind: EntryKind) -> Arc<StoredHead> {
        Arc::new(StoredHead {
            kind,
            key: key.into(),
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            request_time: from_millis(1),
            response_time: from_millis(2),
            reading: Default::default(),
        })
    }

    #[tokio::test]
    async fn purging_a_url_takes_its_variants_from_both_tiers() {
        // 1 MiB keeps every entry in a file; 4 MiB packs the small ones.
        for disk_bytes in [1 << 20, 4 << 20] {
            purge_url_and_prefix(disk_bytes).await;
        }
    }

    async fn purge_url_and_prefix(disk_bytes: u64) {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits { disk_bytes, memory_bytes: 1 << 20, max_object: 1 << 16 };
        let cache = Arc::new(Cache::open(Some(dir.path()), limits).unwrap());
        let url = "http://h:80/a";
        let marker = CacheKey::from_url(url.into());
        cache.store_complete(&marker, head(url, EntryKind::Variants { generation: 7 }), Bytes::new()).await;
        let variant = marker.variant(7, "\naccept-encoding=gzip");
        cache.store_complete(&variant, head(variant.url(), EntryKind::Response), Bytes::from("v")).await;
        let other = CacheKey::from_url("http://h:80/ab".into());
        cache.store_complete(&other, head(other.url(), EntryKind::Response), Bytes::from("o")).await;
        cache.flush().await;
        // Only on disk now: the variant must still be found there.
        cache.memory().remove(variant.hash());
        assert_eq!(cache.entries_where(|_| true).len(), 3);
        assert_eq!(cache.purge_url(url).await, 2);
        assert!(cache.lookup_exact(&marker).await.is_none());
        assert!(cache.lookup_exact(&variant).await.is_none());
        assert!(cache.lookup_exact(&other).await.is_some(), "a longer URL is not a variant");
        assert_eq!(cache.purge_prefix("http://h:80/").await, 1);
        assert!(cache.entries_where(|_| true).is_empty());
        // Removals are written down (files unlinked, tombstones appended): a restart agrees.
        drop(cache);
        let cache = Cache::open(
            Some(dir.path()),
            CacheLimits { disk_bytes, memory_bytes: 1 << 20, max_object: 1 << 16 },
        )
        .unwrap();
        assert!(cache.entries_where(|_| true).is_empty());
        assert!(cache.lookup_exact(&other).await.is_none());
    }
}
