//! The memory tier: hot objects kept whole, so a hit in the working set touches no disk.
//! Bounded by bytes with quick_cache's S3-FIFO-like eviction.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use crate::cache::key::KeyHash;
use crate::cache::meta::StoredHead;
use crate::cache::policy::reading::READING_BYTES;

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
    /// Hits so far, for [`MemEntry::hit_marks_disk`].
    hits: AtomicU32,
}

/// A memory hit marks the entry's disk copy as used on the first hit and then once in this
/// many: enough for the disk index, which asks for one use per pass of its eviction queue,
/// and a disk-index lookup on 1 hit in 64 costs the hit path next to nothing.
const HITS_PER_DISK_MARK: u32 = 64;

impl MemEntry {
    /// An entry, weighed by what it really holds (body, header fields, key, and the policy's
    /// reading of the head, kept from when a miss stores it, or from the first hit of one
    /// loaded from disk). A body of the sizes sent with `sendfile` should be in a memory file
    /// already (`mapped::share`, done off the runtime's threads by the callers in `cache`).
    pub fn new(head: Arc<StoredHead>, body: Bytes) -> Self {
        let fields: u64 =
            head.headers.iter().map(|(n, v)| n.as_str().len() as u64 + v.len() as u64 + FIELD_OVERHEAD).sum();
        let weight = ENTRY_OVERHEAD + READING_BYTES + head.key.len() as u64 + fields + body.len() as u64;
        Self { head, body, weight, hits: AtomicU32::new(0) }
    }

    /// Counts a hit; true when this one should mark the disk copy as used.
    pub fn hit_marks_disk(&self) -> bool {
        self.hits.fetch_add(1, Ordering::Relaxed).is_multiple_of(HITS_PER_DISK_MARK)
    }
}

#[derive(Clone)]
struct EntryWeighter;

impl Weighter<KeyHash, Arc<MemEntry>> for EntryWeighter {
    fn weight(&self, _key: &KeyHash, e: &Arc<MemEntry>) -> u64 {
        e.weight
    }
}

/// Counts entries evicted to stay within the bound (for the metrics).
#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<KeyHash, Arc<MemEntry>> for CountEvictions {
    /// The key an insert replaces: a replaced value is not an eviction.
    type RequestState = Option<KeyHash>;

    fn on_evict(&self, replacing: &mut Option<KeyHash>, key: KeyHash, _entry: Arc<MemEntry>) {
        if *replacing != Some(key) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How entries came into the tier other than on a miss (for the metrics).
#[derive(Default)]
struct AdmissionCounts {
    /// New objects kept out because the tier was full (stored on disk only).
    deferred: AtomicU64,
    /// Entries taken in on a hit below this tier (a write on its way to disk, or the disk).
    promoted: AtomicU64,
}

/// The memory tier.
pub struct MemoryTier {
    cache: QuickCache<KeyHash, Arc<MemEntry>, EntryWeighter, DefaultHashBuilder, CountEvictions>,
    evictions: CountEvictions,
    admissions: AdmissionCounts,
    max_object: u64,
    capacity: u64,
    /// Whether the tier was found full at the last check (see [`MemoryTier::is_full`]).
    full: AtomicBool,
    full_checks: AtomicU32,
}

/// The tier counts as full from this share of its capacity (1/32 below it): quick_cache
/// evicts per shard, so the total stays a little under the capacity once it evicts.
const FULL_MARGIN_DIVISOR: u64 = 32;

/// `is_full` sums the shards' weights once in this many calls: the sum takes each shard's
/// lock, and it runs on every miss.
const FULL_CHECK_EVERY: u32 = 64;

impl MemoryTier {
    /// A tier of `capacity` bytes holding objects of up to `max_object` bytes.
    pub fn new(capacity: u64, max_object: u64) -> Self {
        let estimated_items = (capacity / 16_384).clamp(16, 1 << 20) as usize;
        let evictions = CountEvictions::default();
        let cache = QuickCache::with(
            estimated_items,
            capacity.max(1),
            EntryWeighter,
            DefaultHashBuilder::default(),
            evictions.clone(),
        );
        // A shard holds capacity/shards bytes; keep objects well below that so one large body
        // cannot flush a whole shard.
        let max_object = max_object.min(capacity / 16);
        let capacity = capacity.max(1);
        Self {
            cache,
            evictions,
            admissions: AdmissionCounts::default(),
            max_object,
            capacity,
            full: AtomicBool::new(false),
            full_checks: AtomicU32::new(0),
        }
    }

    /// Whether the tier is full, so that a new entry would evict another. Refreshed from the
    /// shards' weights once every few calls.
    pub fn is_full(&self) -> bool {
        if self.full_checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(FULL_CHECK_EVERY) {
            let full = self.cache.weight() >= self.capacity - self.capacity / FULL_MARGIN_DIVISOR;
            self.full.store(full, Ordering::Relaxed);
        }
        self.full.load(Ordering::Relaxed)
    }

    /// Whether a newly stored response for `hash` belongs here at once: while the tier has
    /// room, or when it holds the key already (left, the older response would keep being
    /// found first). Otherwise it earns its place by being asked for again (`promote`).
    pub fn takes_new(&self, hash: &KeyHash) -> bool {
        !self.is_full() || self.contains(hash)
    }

    /// Largest body this tier accepts.
    pub fn max_object(&self) -> u64 {
        self.max_object
    }

    /// A hit, if present.
    pub fn get(&self, hash: &KeyHash) -> Option<Arc<MemEntry>> {
        self.cache.get(hash)
    }

    /// Whether an entry for `hash` is held (not counted as a use).
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.cache.contains_key(hash)
    }

    /// Stores an entry if it fits.
    pub fn insert(&self, hash: KeyHash, entry: Arc<MemEntry>) {
        self.put(hash, entry);
    }

    /// Stores an entry found below this tier on a hit, if it fits (counted as a promotion).
    pub fn promote(&self, hash: KeyHash, entry: Arc<MemEntry>) {
        if self.put(hash, entry) {
            self.admissions.promoted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stores an entry if it fits; returns whether it did.
    fn put(&self, hash: KeyHash, entry: Arc<MemEntry>) -> bool {
        let fits = entry.body.len() as u64 <= self.max_object;
        if fits {
            self.cache.insert_with_lifecycle(hash, entry, &mut Some(hash));
        }
        fits
    }

    /// Notes a new object kept out of the full tier: it earns its place by being asked for
    /// again, through [`MemoryTier::promote`].
    pub fn defer(&self) {
        self.admissions.deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// New objects kept out of the full tier, and entries promoted into it, so far.
    pub fn admissions(&self) -> (u64, u64) {
        let a = &self.admissions;
        (a.deferred.load(Ordering::Relaxed), a.promoted.load(Ordering::Relaxed))
    }

    /// Removes an entry.
    pub fn remove(&self, hash: &KeyHash) {
        self.cache.remove(hash);
    }

    /// Every entry held, with its hash (a snapshot; for listings, not the hot path).
    pub fn entries(&self) -> Vec<(KeyHash, Arc<MemEntry>)> {
        self.cache.iter().collect()
    }

    /// Entries evicted to stay within the bound so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.0.load(Ordering::Relaxed)
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, u64) {
        (self.cache.len(), self.cache.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::meta::{from_millis, EntryKind, StoredHead};

    fn entry(body: usize) -> Arc<MemEntry> {
        let head = Arc::new(StoredHead {
            kind: EntryKind::Response,
            key: "k".into(),
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            request_time: from_millis(1),
            response_time: from_millis(2),
            reading: Default::default(),
        });
        Arc::new(MemEntry::new(head, Bytes::from(vec![0u8; body])))
    }

    #[test]
    fn promotions_are_counted_only_when_the_entry_fits() {
        let tier = MemoryTier::new(64 * 1024, 4096);
        tier.promote([1; 32], entry(100));
        tier.promote([2; 32], entry(8192));
        tier.defer();
        assert_eq!(tier.admissions(), (1, 1));
        assert!(tier.get(&[1; 32]).is_some());
        assert!(tier.get(&[2; 32]).is_none(), "above the tier's object limit");
    }

    #[test]
    fn evictions_are_counted_but_replacements_are_not() {
        let tier = MemoryTier::new(64 * 1024, 4096);
        for _ in 0..10 {
            tier.insert([1; 32], entry(100));
        }
        assert_eq!(tier.evictions(), 0);
        for i in 0..200u8 {
            tier.insert([i; 32], entry(2048));
        }
        assert!(tier.evictions() > 0);
        assert!(tier.usage().1 <= 64 * 1024);
    }
}
