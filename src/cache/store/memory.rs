//! The memory tier: hot objects kept whole, so a hit in the working set touches no disk.
//! Bounded by bytes with quick_cache's S3-FIFO-like eviction.

use std::sync::Arc;

use bytes::Bytes;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::Weighter;

use crate::cache::key::KeyHash;
use crate::cache::meta::StoredHead;

/// Fixed per-entry overhead (the entry's allocations, the index slot, allocator slack),
/// calibrated so that RSS follows `--memory-size`: with 1 KiB bodies and six header fields
/// an entry costs about 3.2 KiB of RSS (measured with wrk misses and VmRSS).
const ENTRY_OVERHEAD: u64 = 1024;
/// Per header field: the map's bucket and the two allocations behind it.
const FIELD_OVERHEAD: u64 = 128;

/// A complete cached response held in memory.
pub struct MemEntry {
    /// The stored head.
    pub head: Arc<StoredHead>,
    /// The whole body.
    pub body: Bytes,
    weight: u64,
}

impl MemEntry {
    /// An entry, weighed by what it really holds (body, header fields, key).
    pub fn new(head: Arc<StoredHead>, body: Bytes) -> Self {
        let fields: u64 =
            head.headers.iter().map(|(n, v)| n.as_str().len() as u64 + v.len() as u64 + FIELD_OVERHEAD).sum();
        let weight = ENTRY_OVERHEAD + head.key.len() as u64 + fields + body.len() as u64;
        Self { head, body, weight }
    }
}

#[derive(Clone)]
struct EntryWeighter;

impl Weighter<KeyHash, Arc<MemEntry>> for EntryWeighter {
    fn weight(&self, _key: &KeyHash, e: &Arc<MemEntry>) -> u64 {
        e.weight
    }
}

/// The memory tier.
pub struct MemoryTier {
    cache: QuickCache<KeyHash, Arc<MemEntry>, EntryWeighter>,
    max_object: u64,
}

impl MemoryTier {
    /// A tier of `capacity` bytes holding objects of up to `max_object` bytes.
    pub fn new(capacity: u64, max_object: u64) -> Self {
        let estimated_items = (capacity / 16_384).clamp(16, 1 << 20) as usize;
        let cache = QuickCache::with_weighter(estimated_items, capacity.max(1), EntryWeighter);
        // A shard holds capacity/shards bytes; keep objects well below that so one large body
        // cannot flush a whole shard.
        let max_object = max_object.min(capacity / 16);
        Self { cache, max_object }
    }

    /// Largest body this tier accepts.
    pub fn max_object(&self) -> u64 {
        self.max_object
    }

    /// A hit, if present.
    pub fn get(&self, hash: &KeyHash) -> Option<Arc<MemEntry>> {
        self.cache.get(hash)
    }

    /// Stores an entry if it fits.
    pub fn insert(&self, hash: KeyHash, entry: Arc<MemEntry>) {
        if entry.body.len() as u64 <= self.max_object {
            self.cache.insert(hash, entry);
        }
    }

    /// Removes an entry.
    pub fn remove(&self, hash: &KeyHash) {
        self.cache.remove(hash);
    }

    /// Every entry held, with its hash (a snapshot; for listings, not the hot path).
    pub fn entries(&self) -> Vec<(KeyHash, Arc<MemEntry>)> {
        self.cache.iter().collect()
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, u64) {
        (self.cache.len(), self.cache.weight())
    }
}
