//! The cache: tiers, lookups, fills and coalescing. Nothing here knows about the proxy or the
//! network; HTTP caching decisions live in [`policy`].

pub mod coalesce;
pub mod fill;
pub mod inventory;
pub mod key;
pub mod meta;
pub mod pass_marks;
pub mod pending;
pub mod policy;
pub mod shared;
pub mod sink;
pub mod store;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use coalesce::{Coalescer, Joined};
use fill::Fill;
use key::CacheKey;
use meta::{EntryKind, StoredHead};
use pass_marks::PassMarks;
use pending::PendingWrites;
use sink::FillSink;
use store::disk::{DiskBody, DiskStore, PackGroup};
use store::memory::{MemEntry, MemoryTier};

/// Sizes that bound the cache.
#[derive(Clone, Debug)]
pub struct CacheLimits {
    /// Disk tier bound in bytes.
    pub disk_bytes: u64,
    /// Memory tier bound in bytes.
    pub memory_bytes: u64,
    /// Largest body stored at all.
    pub max_object: u64,
}

/// Where a hit came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The memory tier.
    Memory,
    /// The disk tier.
    Disk,
    /// The shared tier (Redis), promoted to the local tiers.
    Shared,
}

/// The body of a stored response.
pub enum CachedBody {
    /// Whole in memory, checked.
    Memory(Bytes),
    /// A file range; the reader verifies `crc` at the end.
    File {
        /// Open entry file.
        file: Arc<File>,
        /// Offset of the body.
        offset: u64,
        /// Body length.
        len: u64,
        /// Expected CRC-32.
        crc: u32,
    },
}

impl CachedBody {
    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            CachedBody::Memory(b) => b.len() as u64,
            CachedBody::File { len, .. } => *len,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stored response found by a lookup.
pub struct CachedResponse {
    /// Its head.
    pub head: Arc<StoredHead>,
    /// Its body.
    pub body: CachedBody,
    /// The tier it came from.
    pub tier: Tier,
}

/// Hit-for-pass marks kept at most (about 100 bytes each).
const PASS_MARKS_MAX: usize = 65_536;

/// Complete entries waiting for the disk writer thread.
const WRITE_QUEUE: usize = 1024;

/// How long the disk writer lets entries gather after a wake-up. Entries are served from the
/// memory tier meanwhile; at 10,000 misses a second 1 ms gathers 10 entries per wake-up.
const WRITE_GROUP_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// A complete small entry for the disk writer thread.
enum WriteJob {
    /// Write a complete entry.
    Store { key: CacheKey, head: Arc<StoredHead>, body: Bytes },
    /// Remove an entry, after every write queued before it; `done` reports completion.
    Remove { hash: key::KeyHash, done: tokio::sync::oneshot::Sender<()> },
    /// Report once every write queued before it is done.
    Flush { done: tokio::sync::oneshot::Sender<()> },
}

/// A URL's Vary marker: the generation its variants are stored under and the fields that
/// select them.
#[derive(Clone, Debug)]
pub struct VaryMarker {
    /// The marker's generation.
    pub generation: u64,
    /// The selecting request fields.
    pub names: Vec<http::HeaderName>,
}

/// What a lookup found.
pub struct Lookup {
    /// The key the request maps to: the URL's, or its variant's when the URL varies.
    pub key: CacheKey,
    /// The stored response, if any.
    pub hit: Option<CachedResponse>,
    /// The URL's Vary marker, if it has one.
    pub marker: Option<VaryMarker>,
}

/// The two-tier cache with request coalescing.
pub struct Cache {
    memory: MemoryTier,
    disk: Option<Arc<DiskStore>>,
    writes: Option<tokio::sync::mpsc::Sender<WriteJob>>,
    coalescer: Arc<Coalescer>,
    limits: CacheLimits,
    pass_marks: PassMarks,
    /// New entries that went to disk only (the memory tier was full), until written.
    pending: Arc<PendingWrites>,
    shared: Option<Arc<shared::SharedTier>>,
    /// Removals completed so far: a disk read that straddles one must not promote its copy.
    removals: std::sync::atomic::AtomicU64,
}

/// One thread writes small complete entries in order: a miss then costs one queue push
/// instead of a trip through the blocking pool, and the disk sees sequential writes.
fn spawn_disk_writer(
    disk: Arc<DiskStore>,
    pending: Arc<PendingWrites>,
) -> std::io::Result<tokio::sync::mpsc::Sender<WriteJob>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteJob>(WRITE_QUEUE);
    std::thread::Builder::new().name("cache-writer".into()).spawn(move || {
        let mut scratch = PackGroup::default();
        while let Some(job) = rx.blocking_recv() {
            // Group commit: after a wake-up, let more entries gather before writing. Woken
            // once per entry, this thread cost a futex wake and a context switch per miss on
            // the proxy's core: about three times the pack write itself (perf). While it
            // sleeps, senders do not wake it.
            std::thread::sleep(WRITE_GROUP_DELAY);
            let mut group = vec![job];
            while let Ok(job) = rx.try_recv() {
                group.push(job);
            }
            run_write_group(&disk, &pending, group, &mut scratch);
        }
    })?;
    Ok(tx)
}

/// Runs the jobs in order. Consecutive stores are written together (one pack write for the
/// small ones); a removal or flush waits for the stores queued before it.
fn run_write_group(
    disk: &Arc<DiskStore>,
    pending: &PendingWrites,
    group: Vec<WriteJob>,
    scratch: &mut PackGroup,
) {
    let mut stores: Vec<(CacheKey, Arc<StoredHead>, Bytes)> = Vec::with_capacity(group.len());
    for job in group {
        match job {
            WriteJob::Store { key, head, body } => stores.push((key, head, body)),
            WriteJob::Remove { hash, done } => {
                write_stores(disk, pending, &mut stores, scratch);
                disk.remove(&hash);
                let _ = done.send(());
            }
            WriteJob::Flush { done } => {
                write_stores(disk, pending, &mut stores, scratch);
                let _ = done.send(());
            }
        }
    }
    write_stores(disk, pending, &mut stores, scratch);
}

fn write_stores(
    disk: &Arc<DiskStore>,
    pending: &PendingWrites,
    stores: &mut Vec<(CacheKey, Arc<StoredHead>, Bytes)>,
    scratch: &mut PackGroup,
) {
    if !stores.is_empty() {
        let entries: Vec<_> = stores.iter().map(|(k, h, b)| (k, &**h, &b[..])).collect();
        // Failures are counted and logged by the store. Entries in the memory tier stay
        // there; entries that went to disk only are lost (a miss next time), and while
        // writes fail new entries go to memory again (see `store_complete`).
        let _ = disk.write_group(&entries, scratch);
        for (key, head, _) in stores.iter() {
            pending.written(key.hash(), head);
        }
        stores.clear();
    }
}

impl Cache {
    /// Opens the cache; with `dir` `None` only the memory tier is used.
    pub fn open(dir: Option<&Path>, limits: CacheLimits) -> std::io::Result<Self> {
        let disk = match dir {
            Some(d) => Some(DiskStore::open(d, limits.disk_bytes, limits.max_object)?),
            None => None,
        };
        let pending = Arc::new(PendingWrites::default());
        let writes = match &disk {
            Some(d) => Some(spawn_disk_writer(d.clone(), pending.clone())?),
            None => None,
        };
        let memory = MemoryTier::new(limits.memory_bytes, limits.max_object);
        let pass_marks = PassMarks::new(PASS_MARKS_MAX);
        Ok(Self {
            memory,
            disk,
            writes,
            coalescer: Arc::default(),
            limits,
            pass_marks,
            pending,
            shared: None,
            removals: Default::default(),
        })
    }

    /// The disk tier, if any.
    pub fn disk(&self) -> Option<&Arc<DiskStore>> {
        self.disk.as_ref()
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryTier {
        &self.memory
    }

    /// The configured limits.
    pub fn limits(&self) -> &CacheLimits {
        &self.limits
    }

    /// Looks up the response for a request to `primary`: follows the URL's Vary marker, if
    /// any, to the variant the request's headers select (RFC 9111 §4.1).
    pub async fn lookup(&self, primary: &CacheKey, req_headers: &HeaderMap) -> Lookup {
        let miss = |key: &CacheKey| Lookup { key: key.clone(), hit: None, marker: None };
        let Some(first) = self.lookup_exact(primary).await else { return miss(primary) };
        let EntryKind::Variants { generation } = first.head.kind else {
            return Lookup { key: primary.clone(), hit: Some(first), marker: None };
        };
        let Some(names) = policy::vary::vary_names(&first.head.headers) else { return miss(primary) };
        let key = primary.variant(generation, &policy::vary::variant_selector(&names, req_headers));
        let hit = self.lookup_exact(&key).await;
        Lookup { key, hit, marker: Some(VaryMarker { generation, names }) }
    }

    /// Records that `primary` varies on the fields `vary` names, with a new generation unless
    /// `current` already names the same fields. Returns the generation to store variants under.
    pub async fn vary_marker(
        &self,
        primary: &CacheKey,
        vary: &HeaderMap,
        current: Option<&VaryMarker>,
    ) -> Option<u64> {
        let names = policy::vary::vary_names(vary)?;
        if let Some(m) = current.filter(|m| m.names == names) {
            return Some(m.generation);
        }
        let now = std::time::SystemTime::now();
        let generation = now.duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let mut headers = HeaderMap::new();
        for v in vary.get_all(http::header::VARY) {
            headers.append(http::header::VARY, v.clone());
        }
        let head = Arc::new(StoredHead {
            kind: EntryKind::Variants { generation },
            key: primary.url().to_string(),
            status: http::StatusCode::OK,
            headers,
            request_time: now,
            response_time: now,
            reading: Default::default(),
        });
        self.store_complete(primary, head.clone(), Bytes::new()).await;
        self.write_through_marker(primary, head);
        Some(generation)
    }

    /// Looks `key` up in memory, then on disk (promoting small disk hits to memory), then in
    /// the shared tier (promoting hits to both).
    pub async fn lookup_exact(&self, key: &CacheKey) -> Option<CachedResponse> {
        if let Some(e) = self.memory.get(key.hash()) {
            if let Some(disk) = self.disk.as_ref().filter(|_| e.hit_marks_disk()) {
                disk.touch(key);
            }
            return Some(CachedResponse {
                head: e.head.clone(),
                body: CachedBody::Memory(e.body.clone()),
                tier: Tier::Memory,
            });
        }
        // Asked for again while on its way to disk only: it has earned its place in memory.
        if let Some(e) = self.pending.get(key.hash()) {
            self.memory.promote(*key.hash(), e.clone());
            return Some(CachedResponse {
                head: e.head.clone(),
                body: CachedBody::Memory(e.body.clone()),
                tier: Tier::Memory,
            });
        }
        // Boxed: the disk read's and the shared tier's state would otherwise sit in every
        // request's future, which is moved whole while a request is set up.
        Box::pin(self.lookup_below_memory(key)).await
    }

    async fn lookup_below_memory(&self, key: &CacheKey) -> Option<CachedResponse> {
        match self.lookup_disk(key).await {
            Some(hit) => Some(hit),
            None => self.lookup_shared(key).await,
        }
    }

    async fn lookup_disk(&self, key: &CacheKey) -> Option<CachedResponse> {
        let disk = self.disk.clone().filter(|d| d.may_contain(key))?;
        let removals = self.removals.load(std::sync::atomic::Ordering::SeqCst);
        let inline_max = self.memory.max_object();
        let k = key.clone();
        let entry = tokio::task::spawn_blocking(move || {
            // A body that may be promoted goes into its memory file here, off the runtime.
            disk.lookup(&k, inline_max).map(|mut e| {
                if let DiskBody::Inline(bytes) = e.body {
                    e.body = DiskBody::Inline(store::mapped::share(bytes));
                }
                e
            })
        })
        .await
        .ok()??;
        let head = Arc::new(entry.head);
        let body = match entry.body {
            DiskBody::Inline(bytes) => {
                // Not promoted if a removal finished while the disk was read (see `remove`).
                if self.removals.load(std::sync::atomic::Ordering::SeqCst) == removals {
                    let promoted = Arc::new(MemEntry::new(head.clone(), bytes));
                    self.memory.promote(*key.hash(), promoted.clone());
                    CachedBody::Memory(promoted.body.clone())
                } else {
                    CachedBody::Memory(bytes)
                }
            }
            DiskBody::File { file, offset, len, crc } => CachedBody::File { file, offset, len, crc },
        };
        Some(CachedResponse { head, body, tier: Tier::Disk })
    }

    /// Joins or starts the in-flight fetch for `key`.
    pub fn join(&self, key: &CacheKey) -> Joined {
        self.coalescer.join(*key.hash())
    }

    /// Starts storing a response: returns the fill readers stream from and the sink the fetch
    /// feeds. Without a usable disk the body is only retained in memory, so bodies that may
    /// not fit (`expected_len` unknown or too large) are refused: `None` means pass through.
    pub async fn start_fill(
        &self,
        key: &CacheKey,
        head: Arc<StoredHead>,
        expected_len: Option<u64>,
    ) -> Option<(Arc<Fill>, FillSink)> {
        if expected_len.is_some_and(|n| n > self.limits.max_object) {
            return None;
        }
        let retain = self.memory.max_object();
        if expected_len.is_some_and(|n| n <= retain) {
            // Small: the fill keeps the whole body in memory; the disk gets it in one write
            // when complete (see `store_complete`).
            let fill = Arc::new(Fill::new(head, retain, None));
            return Some((fill.clone(), FillSink::new(fill, None)));
        }
        let writer = match &self.disk {
            Some(disk) => {
                let (disk, k, h) = (disk.clone(), key.clone(), head.clone());
                tokio::task::spawn_blocking(move || disk.writer(&k, &h).ok()).await.ok().flatten()
            }
            None => None,
        };
        if writer.is_none() && expected_len.is_none_or(|n| n > retain) {
            return None;
        }
        let file = writer.as_ref().map(|w| (w.file(), w.body_offset()));
        let fill = Arc::new(Fill::new(head, retain, file));
        let sink = FillSink::new(fill.clone(), writer);
        Some((fill, sink))
    }

    /// Makes a completed body already on disk a memory-tier entry, unless the memory tier is
    /// full: then it earns its place by being asked for again (its first disk hit promotes it).
    /// An entry the tier already holds for the key is replaced in any case: left there, the
    /// older response would keep being found first.
    pub async fn admit_to_memory(&self, key: &CacheKey, head: Arc<StoredHead>, body: Bytes) {
        if self.memory.takes_new(key.hash()) {
            let body = store::mapped::share_off_runtime(body).await;
            self.memory.insert(*key.hash(), Arc::new(MemEntry::new(head, body)));
        } else {
            self.memory.defer();
        }
    }

    /// Stores a complete response: in memory and queued for the disk writer thread; or, once
    /// the memory tier is full, queued for the disk writer only (and findable in `pending`
    /// until written), so that it earns its place in memory by being asked for again. Putting
    /// every new object in a full memory tier made each miss pay for an eviction as well.
    /// When the disk cannot keep up and the queue is full, the disk copy is skipped (and
    /// counted) and the entry is kept in memory: waiting would pile up entries without bound.
    pub async fn store_complete(&self, key: &CacheKey, head: Arc<StoredHead>, body: Bytes) {
        let hash = *key.hash();
        let body = store::mapped::share_off_runtime(body).await;
        let (Some(tx), Some(disk)) = (&self.writes, &self.disk) else {
            self.memory.insert(hash, Arc::new(MemEntry::new(head, body)));
            return;
        };
        let entry = Arc::new(MemEntry::new(head.clone(), body.clone()));
        // While writes fail, the disk copy would be lost: keep new entries in memory.
        let disk_only = !self.memory.takes_new(&hash) && !disk.writes_failing();
        if disk_only {
            self.pending.insert(hash, entry.clone());
        } else {
            self.memory.insert(hash, entry.clone());
        }
        if tx.try_send(WriteJob::Store { key: key.clone(), head, body }).is_err() {
            disk.stats().writes_skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if disk_only {
                self.pending.remove(&hash);
                self.memory.insert(hash, entry);
            }
        } else if disk_only {
            self.memory.defer();
        }
    }

    /// Stores `head` with the body of an existing stored response (a 304 freshened its head).
    /// Returns whether the entry was stored.
    pub async fn restore_with_head(&self, key: &CacheKey, head: Arc<StoredHead>, body: &CachedBody) -> bool {
        match body {
            CachedBody::Memory(bytes) => {
                self.store_complete(key, head, bytes.clone()).await;
                true
            }
            CachedBody::File { file, offset, len, crc } => {
                let Some(disk) = self.disk.clone() else { return false };
                let (key, file, (offset, len, crc)) = (key.clone(), file.clone(), (*offset, *len, *crc));
                tokio::task::spawn_blocking(move || {
                    disk.rewrite_head(&key, &head, &file, offset, len, crc).is_ok()
                })
                .await
                .unwrap_or(false)
            }
        }
    }

    /// Drops an entry whose body failed its checksum while streaming: logged and counted.
    pub async fn drop_corrupt(&self, hash: &key::KeyHash) {
        self.memory.remove(hash);
        self.pending.remove(hash);
        if let Some(disk) = self.disk.clone() {
            let hash = *hash;
            let _ = tokio::task::spawn_blocking(move || disk.drop_corrupt(&hash, &"body checksum mismatch"))
                .await;
        }
    }

    /// Drops a key from every tier.
    /// The removal goes through the disk writer's queue, behind any write of the same entry
    /// still pending, and returns once it is done: an invalidated entry cannot reappear.
    pub async fn remove(&self, key: &CacheKey) {
        self.memory.remove(key.hash());
        self.pending.remove(key.hash());
        self.pass_marks.clear(key.hash());
        let hash = *key.hash();
        self.remove_from_disk(hash).await;
        // A lookup that read the disk copy before it was removed may have promoted it into
        // memory meanwhile: drop that copy, and refuse promotions of reads that began before
        // now (see `lookup_disk`). Without this an invalidated entry could come back.
        self.removals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.memory.remove(key.hash());
    }

    async fn remove_from_disk(&self, hash: key::KeyHash) {
        if let Some(tx) = &self.writes {
            let (done, finished) = tokio::sync::oneshot::channel();
            if tx.send(WriteJob::Remove { hash, done }).await.is_ok() {
                let _ = finished.await;
                return;
            }
        }
        if let Some(disk) = self.disk.clone() {
            let _ = tokio::task::spawn_blocking(move || disk.remove(&hash)).await;
        }
    }

    /// Waits until every queued disk write is done: called on shutdown, so a response stored
    /// just before a restart is there after it.
    pub async fn flush(&self) {
        if let Some(tx) = &self.writes {
            let (done, finished) = tokio::sync::oneshot::channel();
            if tx.send(WriteJob::Flush { done }).await.is_ok() {
                let _ = finished.await;
            }
        }
    }

    /// Hit-for-pass marks: URLs whose responses must not be stored.
    pub fn pass_marks(&self) -> &PassMarks {
        &self.pass_marks
    }

    /// Number of fetches in flight.
    pub fn in_flight(&self) -> usize {
        self.coalescer.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta::from_millis;

    fn head(key: &CacheKey) -> Arc<StoredHead> {
        Arc::new(StoredHead {
            kind: EntryKind::Response,
            key: key.url().to_string(),
            status: http::StatusCode::OK,
            headers: HeaderMap::new(),
            request_time: from_millis(1),
            response_time: from_millis(2),
            reading: Default::default(),
        })
    }

    fn key(i: usize) -> CacheKey {
        CacheKey::from_url(format!("http://h:80/{i}"))
    }

    /// A cache on a temporary directory (kept alive by the returned guard) with a memory tier
    /// of `memory_bytes`.
    fn cache_with_memory(memory_bytes: u64) -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits { disk_bytes: 64 << 20, memory_bytes, max_object: 1 << 16 };
        let cache = Cache::open(Some(dir.path()), limits).unwrap();
        (dir, cache)
    }

    /// Stores objects until the memory tier counts as full; returns how many it took.
    async fn fill_memory(cache: &Cache) -> usize {
        for i in 0..10_000 {
            if cache.memory().is_full() {
                return i;
            }
            cache.store_complete(&key(i), head(&key(i)), Bytes::from(vec![b'x'; 2048])).await;
        }
        panic!("the memory tier never filled");
    }

    #[tokio::test]
    async fn a_full_memory_tier_admits_a_new_object_when_it_is_asked_for_again() {
        let (_dir, cache) = cache_with_memory(256 << 10);
        let filled = fill_memory(&cache).await;
        let (deferred, promoted) = cache.memory().admissions();
        let new = CacheKey::from_url("http://h:80/new".into());
        cache.store_complete(&new, head(&new), Bytes::from_static(b"new body")).await;
        assert!(cache.memory().get(new.hash()).is_none(), "a full tier takes a new object on disk only");

        // Asked for again before the disk writer got to it: found, and now in memory.
        assert_eq!(cache.memory().admissions(), (deferred + 1, promoted), "one object deferred");
        let hit = cache.lookup_exact(&new).await.expect("found while on its way to disk");
        assert!(matches!(&hit.body, CachedBody::Memory(b) if b == &b"new body"[..]));
        assert!(cache.memory().get(new.hash()).is_some(), "asked for again: admitted");
        assert_eq!(cache.memory().admissions(), (deferred + 1, promoted + 1), "and promoted");

        // One never asked for again is on disk after the writer's group, and only there.
        let once = CacheKey::from_url("http://h:80/once".into());
        cache.store_complete(&once, head(&once), Bytes::from_static(b"once")).await;
        cache.flush().await;
        assert!(cache.pending.is_empty(), "the writer forgets what it wrote");
        assert!(cache.memory().get(once.hash()).is_none());
        let hit = cache.lookup_exact(&once).await.expect("on disk");
        assert_eq!(hit.tier, Tier::Disk);
        assert!(cache.memory().get(once.hash()).is_some(), "its first disk hit promotes it");
        assert_eq!(cache.memory().admissions(), (deferred + 2, promoted + 2));
        assert!(filled > 10, "the tier held {filled} objects before it was full");
    }

    #[tokio::test]
    async fn an_object_removed_on_its_way_to_disk_is_not_found_again() {
        let (_dir, cache) = cache_with_memory(256 << 10);
        fill_memory(&cache).await;
        let gone = CacheKey::from_url("http://h:80/gone".into());
        cache.store_complete(&gone, head(&gone), Bytes::from_static(b"gone")).await;
        assert_eq!(cache.entries_where(|k| k.ends_with("/gone")).len(), 1, "listed (and so purgeable)");
        cache.remove(&gone).await;
        assert!(cache.lookup_exact(&gone).await.is_none());
        cache.flush().await;
        assert!(cache.lookup_exact(&gone).await.is_none(), "the queued write did not bring it back");
    }

    #[tokio::test]
    async fn a_full_memory_tier_replaces_a_key_it_holds() {
        let (_dir, cache) = cache_with_memory(256 << 10);
        let filled = fill_memory(&cache).await;
        let held =
            (0..filled).map(key).find(|k| cache.memory().contains(k.hash())).expect("some object held");
        // A refetched (or revalidated) response for a key in memory must replace it there:
        // left, the older response would keep being found first.
        cache.store_complete(&held, head(&held), Bytes::from_static(b"newer")).await;
        let hit = cache.lookup_exact(&held).await.unwrap();
        assert!(matches!(&hit.body, CachedBody::Memory(b) if b == &b"newer"[..]));
        cache.admit_to_memory(&held, head(&held), Bytes::from_static(b"newest")).await;
        let hit = cache.lookup_exact(&held).await.unwrap();
        assert!(matches!(&hit.body, CachedBody::Memory(b) if b == &b"newest"[..]));
    }

    #[tokio::test]
    async fn stored_bodies_of_the_sendfile_sizes_are_kept_in_memory_files() {
        let (_dir, cache) = cache_with_memory(16 << 20);
        let mapped = |k: &CacheKey| {
            let entry = cache.memory().get(k.hash()).expect("in memory");
            store::mapped::find(&entry.body).is_some()
        };
        let body = Bytes::from(vec![7u8; 64 * 1024]); // the smallest size sent with sendfile
        cache.store_complete(&key(1), head(&key(1)), body.clone()).await;
        assert!(mapped(&key(1)), "a stored body");
        cache.admit_to_memory(&key(2), head(&key(2)), body.clone()).await;
        assert!(mapped(&key(2)), "a body admitted after its disk write");
        cache.store_complete(&key(3), head(&key(3)), Bytes::from(vec![7u8; 1024])).await;
        assert!(!mapped(&key(3)), "a small body stays on the heap");
        assert_eq!(cache.memory().get(key(1).hash()).unwrap().body, body);
    }

    #[tokio::test]
    async fn a_memory_tier_with_room_takes_every_new_object() {
        let (_dir, cache) = cache_with_memory(16 << 20);
        for i in 0..100 {
            cache.store_complete(&key(i), head(&key(i)), Bytes::from_static(b"small")).await;
            assert!(cache.memory().get(key(i).hash()).is_some());
        }
        assert!(cache.pending.is_empty());
        assert_eq!(cache.memory().admissions(), (0, 0), "nothing deferred, nothing promoted");
    }
}
