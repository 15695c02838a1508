//! The persistent disk tier under `--cache-dir`: small complete entries appended to pack
//! files (see [`super::pack`]), large and streamed ones in one immutable file each.
//!
//! Layout: `<dir>/packs/<16 hex digits>.pack` for packs, `<dir>/<first two hex digits>/<64 hex
//! digits>` for entry files and `<dir>/tmp/` for entry files being written. A writer fills a
//! temporary file and renames it into place only when it is complete, so a visible file is
//! always whole; a pack record is one write, and a torn one can only be a pack's tail. Every
//! read checks the head and body checksums (see [`super::codec`]), so torn or rotted entries
//! are dropped and counted.
//!
//! The index (hash -> where and how big) decides evictions and says where a packed entry is.
//! It is rebuilt on start by a background scan: packs first, then entry files. Lookups do not
//! wait for it: an entry file is opened by the name its hash spells, and only a key without a
//! file waits for the (shorter) pack scan, so warm hits are served at once.
//!
//! Durability policy: entries are not fsynced. A process crash (kill -9) loses nothing the
//! kernel accepted; a power loss may lose or tear recent entries, which the checksums catch.
//!
//! Every function here blocks: call it from `spawn_blocking` or a dedicated thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};

use bytes::Bytes;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use super::codec::{self, DecodeError, PREFIX_LEN, TRAILER_LEN};
use super::pack::{self, Kind, Packs};
use crate::cache::key::{hex, parse_hex, CacheKey, KeyHash};
use crate::cache::meta::StoredHead;

/// A body read from disk: whole in memory (checked) or a file range checked while streaming.
pub enum DiskBody {
    /// The whole body, its checksum already verified.
    Inline(Bytes),
    /// A large body to stream from `file`; the reader must verify `crc` at the end.
    File {
        /// The open entry file (it stays readable even if the entry is evicted meanwhile).
        file: Arc<File>,
        /// Offset of the first body byte.
        offset: u64,
        /// Body length.
        len: u64,
        /// Expected CRC-32 of the body.
        crc: u32,
    },
}

/// An entry found on disk.
pub struct DiskEntry {
    /// The stored response head.
    pub head: StoredHead,
    /// Its body.
    pub body: DiskBody,
}

/// Counters an operator cares about.
#[derive(Default)]
pub struct DiskStats {
    /// Files dropped because they failed a check.
    pub corrupt_dropped: AtomicU64,
    /// Failed writes (each one degraded that response to pass-through).
    pub write_errors: AtomicU64,
    /// Entries removed to stay within `--cache-size`.
    pub evictions: AtomicU64,
    /// Small entries kept in memory only because the disk writer was behind.
    pub writes_skipped: AtomicU64,
}

/// Where an indexed entry is. The index holds one per entry, about a million for a 1 GiB
/// cache of small objects, so this is kept to 16 bytes of 4-byte alignment: with the 32-byte
/// key, a slot of the index takes 64 bytes instead of 80.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// Its own file, of `size` bytes, as low and high halves (a `u64` would align the slot
    /// to 8 bytes).
    File { size: [u32; 2] },
    /// A record of `len` bytes at `offset` in pack `pack`. All three fit 32 bits: pack
    /// numbers stop at [`pack::MAX_PACK_ID`], a pack stops growing at 64 MiB and a record is
    /// at most [`pack::MAX_PACKED`] plus its framing.
    Pack { pack: u32, offset: u32, len: u32 },
}

impl Loc {
    fn file(size: u64) -> Self {
        Loc::File { size: [size as u32, (size >> 32) as u32] }
    }

    /// `None` if a figure does not fit 32 bits: only a pack file not of our making.
    fn packed(pack: u64, offset: u64, len: u64) -> Option<Self> {
        Some(Loc::Pack {
            pack: pack.try_into().ok()?,
            offset: offset.try_into().ok()?,
            len: len.try_into().ok()?,
        })
    }

    fn size(&self) -> u64 {
        match *self {
            Loc::File { size: [low, high] } => u64::from(high) << 32 | u64::from(low),
            Loc::Pack { len, .. } => len.into(),
        }
    }

    /// The pack and length of a packed entry.
    fn in_pack(&self) -> Option<(u64, u64)> {
        match *self {
            Loc::File { .. } => None,
            Loc::Pack { pack, len, .. } => Some((pack.into(), len.into())),
        }
    }
}

#[derive(Clone)]
struct SizeWeighter;

impl Weighter<KeyHash, Loc> for SizeWeighter {
    fn weight(&self, _key: &KeyHash, loc: &Loc) -> u64 {
        loc.size().max(1)
    }
}

/// Frees what the index lets go of: deletes evicted files, counts evicted and replaced pack
/// records as dead bytes. Runs under the index's lock, so it may take the pack table's lock
/// but never calls back into the index.
#[derive(Clone)]
struct DeleteEvicted {
    dir: Arc<PathBuf>,
    stats: Arc<DiskStats>,
    packs: Option<Arc<Packs>>,
}

impl DeleteEvicted {
    fn dead_record(&self, pack: u32, len: u32) {
        if let Some(packs) = &self.packs {
            packs.sub_live(pack.into(), len.into());
        }
    }
}

impl Lifecycle<KeyHash, Loc> for DeleteEvicted {
    /// The insert in progress (key and new place): quick_cache reports the value it replaces,
    /// and a new value it refuses, through `on_evict`.
    type RequestState = Option<(KeyHash, Loc)>;

    fn on_evict(&self, inserting: &mut Option<(KeyHash, Loc)>, key: KeyHash, old: Loc) {
        match *inserting {
            Some((k, new)) if k == key && new != old => match (old, new) {
                // The rename put the new file where the old one was.
                (Loc::File { .. }, Loc::File { .. }) => {}
                (Loc::File { .. }, Loc::Pack { .. }) => {
                    let _ = fs::remove_file(entry_path(&self.dir, &key));
                }
                (Loc::Pack { pack, len, .. }, Loc::Pack { .. }) => self.dead_record(pack, len),
                // Without a tombstone the packed entry would come back over the file on restart.
                (Loc::Pack { pack, len, .. }, Loc::File { .. }) => {
                    self.dead_record(pack, len);
                    if let Some(packs) = &self.packs {
                        let _ = packs.append(&pack::tombstone_record(&key), Kind::Tombstone);
                    }
                }
            },
            _ => {
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                match old {
                    Loc::File { .. } => {
                        let _ = fs::remove_file(entry_path(&self.dir, &key));
                    }
                    // No tombstone: an evicted entry coming back after a restart is harmless.
                    Loc::Pack { pack, len, .. } => self.dead_record(pack, len),
                }
            }
        }
    }
}

type Index = QuickCache<KeyHash, Loc, SizeWeighter, DefaultHashBuilder, DeleteEvicted>;

/// Caches smaller than this keep every entry in its own file: a pack (at least 1 MiB) and its
/// dead-space allowance would leave too little of the capacity for entries.
const PACKS_MIN_CAPACITY: u64 = 2 << 20;

/// How the capacity is shared when packs are in use.
#[derive(Clone, Copy, Debug)]
struct Budget {
    /// Largest pack.
    pack_limit: u64,
    /// Dead bytes allowed in sealed packs before the oldest are deleted.
    dead_allowance: u64,
    /// What the index may hold (entry files and live pack records): the capacity less the
    /// dead-space allowance and the pack being written, so everything on disk stays within
    /// the capacity.
    index: u64,
}

impl Budget {
    fn of(capacity: u64) -> Option<Self> {
        if capacity < PACKS_MIN_CAPACITY {
            return None;
        }
        let pack_limit = (capacity / 16).clamp(1 << 20, 64 << 20);
        let dead_allowance = capacity / 8;
        Some(Self { pack_limit, dead_allowance, index: capacity - dead_allowance - pack_limit })
    }
}

/// The heaviest entry the index must take: the largest body and a head at its bound.
fn heaviest(largest: u64) -> u64 {
    largest.saturating_add(codec::MAX_HEAD_LEN.into())
}

/// How many shards the index is split into. Not for contention (the index is touched only on
/// disk operations) but for memory: a shard grows its table of slots by doubling, and holds
/// the old table and the new one while it copies. A million small entries take 64 MiB of
/// slots, so one shard would spike by 32 MiB; with `n` shards each growth moves `1/n` of
/// that. But quick_cache refuses an entry heavier than a shard's hot part, and the hot part
/// should be at most half the shard (see [`hot_allocation`]), so each share stays at least
/// twice the heaviest entry, and 64 MiB (fewer, larger shards for small caches).
fn index_shards(budget: u64, largest: u64) -> usize {
    const MAX_SHARDS: usize = 16;
    let share_floor = heaviest(largest).saturating_mul(2).max(64 << 20);
    let mut n = 1;
    while n < MAX_SHARDS && budget / (2 * n as u64) >= share_floor {
        n *= 2;
    }
    n
}

/// The part of a shard quick_cache keeps hot: entries looked up again while cold move there.
/// Every new entry enters the cold part, a FIFO with a second chance for entries looked up,
/// except while the hot part is still filling up. quick_cache's default of 97% hot suits the
/// memory tier, whose hits mark entries, but not the disk: memory hits never reach it, so
/// the entries that filled it stayed hot, and a full cache kept a window of 3% for everything
/// new (a key requested again after that many other new ones was never kept). So the hot part
/// is as small as the heaviest entry allows (quick_cache refuses heavier ones), and 10% at
/// the least.
fn hot_allocation(share: u64, largest: u64) -> f64 {
    (heaviest(largest) as f64 / share.max(1) as f64).clamp(0.1, 0.97)
}

/// Opens a [`Gate`] when dropped.
struct OpenOnDrop<'a>(&'a Gate);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A flag a thread can wait on.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    fn is_open(&self) -> bool {
        *self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The disk tier.
pub struct DiskStore {
    dir: Arc<PathBuf>,
    tmp_dir: PathBuf,
    index: Index,
    /// Packs and how the capacity is shared; `None` for caches too small for packs.
    packs: Option<(Arc<Packs>, Budget)>,
    /// Open once the packs are in the index (and their live bytes counted).
    packs_loaded: Gate,
    index_loaded: AtomicBool,
    /// Held through a reclaim: two at once could each take a pack out, and one delete a
    /// pack's tombstones while the older pack they guard against is not yet gone.
    reclaiming: Mutex<()>,
    /// Held from a packed entry's append to its index update, by the disk writer and by a
    /// reclaim moving a live record: a record moved while a newer one for the same key was
    /// being written could land after it, and come back over it after a restart.
    pack_writes: Mutex<()>,
    writes_failing: AtomicBool,
    next_tmp: AtomicU64,
    stats: Arc<DiskStats>,
}

/// Where the entry of `hash` lives under `dir`.
pub fn entry_path(dir: &Path, hash: &KeyHash) -> PathBuf {
    let name = hex(hash);
    dir.join(&name[..2]).join(name)
}

/// Bytes of records gathered before they are written, which bounds [`PackGroup`]'s buffer: a
/// record is at most 256 KiB more, and growth at most doubles it (2.5 MiB at worst).
const GROUP_BYTES: usize = 1 << 20;

/// Entry records gathered for one pack write: their bytes back to back, lengths and keys. The
/// disk writer keeps one and passes it to every [`DiskStore::write_group`], so its buffer is
/// allocated once instead of per group.
#[derive(Default)]
pub struct PackGroup {
    records: Vec<u8>,
    lens: Vec<u64>,
    keys: Vec<KeyHash>,
}

impl DiskStore {
    /// Opens (creating if needed) a cache directory bounded to `capacity` bytes for entries of
    /// up to `largest` bytes, clears leftovers of interrupted writes, and starts loading the
    /// index in the background.
    pub fn open(dir: &Path, capacity: u64, largest: u64) -> io::Result<Arc<Self>> {
        let tmp_dir = dir.join("tmp");
        fs::create_dir_all(&tmp_dir)?;
        let tag = dir.join("CACHEDIR.TAG");
        if !tag.exists() {
            fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# httpcache-proxy cache directory\n",
            )?;
        }
        for leftover in fs::read_dir(&tmp_dir)?.flatten() {
            let _ = fs::remove_file(leftover.path());
        }
        // All 256 shard directories up front, so committing an entry is a single rename.
        for shard in 0..=255u8 {
            fs::create_dir_all(dir.join(format!("{shard:02x}")))?;
        }
        let budget = Budget::of(capacity);
        let (packs, existing) = match budget {
            Some(b) => {
                let (packs, existing) = Packs::open(pack::packs_dir(dir), b.pack_limit)?;
                (Some(Arc::new(packs)), existing)
            }
            None => {
                // Packs of an earlier, larger configuration would take space nothing counts.
                for (_, path) in pack::list(&pack::packs_dir(dir))? {
                    let _ = fs::remove_file(path);
                }
                (None, Vec::new())
            }
        };
        let dir = Arc::new(dir.to_path_buf());
        let stats = Arc::new(DiskStats::default());
        let lifecycle = DeleteEvicted { dir: dir.clone(), stats: stats.clone(), packs: packs.clone() };
        let index_budget = budget.map_or(capacity, |b| b.index).max(1);
        let shards = index_shards(index_budget, largest);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(4096)
            .weight_capacity(index_budget)
            .shards(shards)
            .hot_allocation(hot_allocation(index_budget / shards as u64, largest))
            .build()
            .map_err(|e| io::Error::other(format!("cache index options: {e:?}")))?;
        let index = QuickCache::with_options(options, SizeWeighter, DefaultHashBuilder::default(), lifecycle);
        let store = Arc::new(Self {
            dir,
            tmp_dir,
            index,
            packs: packs.zip(budget),
            packs_loaded: Gate::default(),
            index_loaded: AtomicBool::new(false),
            reclaiming: Mutex::new(()),
            pack_writes: Mutex::new(()),
            writes_failing: AtomicBool::new(false),
            next_tmp: AtomicU64::new(0),
            stats,
        });
        let loader = store.clone();
        std::thread::Builder::new().name("cache-index".into()).spawn(move || loader.load_index(existing))?;
        Ok(store)
    }

    /// Fills the index: the packs that existed at open, in sequence order, then the entry
    /// files. Only names of our own layout are considered; anything else in the directory is
    /// left alone.
    fn load_index(&self, existing: pack::Existing) {
        let started = std::time::Instant::now();
        // Lookups and removals wait for this gate: open it even if the scan panics.
        let gate = OpenOnDrop(&self.packs_loaded);
        let packed = self.load_packs(existing);
        let packs_ms = started.elapsed().as_millis() as u64;
        drop(gate);
        self.reclaim();
        let mut found = packed;
        if let Ok(shards) = fs::read_dir(&*self.dir) {
            for shard in shards.flatten() {
                let name = shard.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.len() != 2 || !shard.path().is_dir() {
                    continue;
                }
                let Ok(files) = fs::read_dir(shard.path()) else {
                    continue;
                };
                for file in files.flatten() {
                    let Some(hash) = file.file_name().to_str().and_then(parse_hex) else {
                        continue;
                    };
                    let Ok(meta) = file.metadata() else { continue };
                    match self.index.peek(&hash) {
                        None => {
                            let loc = Loc::file(meta.len());
                            self.index.insert_with_lifecycle(hash, loc, &mut Some((hash, loc)));
                        }
                        // Both: a crash came between writing the packed entry and deleting the
                        // file it replaced. The pack wins, as it would have.
                        Some(Loc::Pack { .. }) => {
                            let _ = fs::remove_file(file.path());
                            continue;
                        }
                        Some(Loc::File { .. }) => {}
                    }
                    found += 1;
                }
            }
        }
        self.index_loaded.store(true, Ordering::Release);
        tracing::info!(
            entries = found,
            bytes = self.index.weight(),
            ms = started.elapsed().as_millis() as u64,
            packs_ms,
            "disk cache index loaded"
        );
    }

    /// Indexes the live records of the packs found at open; returns how many.
    fn load_packs(&self, existing: pack::Existing) -> u64 {
        let Some((packs, _)) = &self.packs else { return 0 };
        let live = pack::live_records(&existing, |id, end| match end {
            Ok(end) if end.valid < end.len => tracing::warn!(
                pack = %format!("{id:016x}"),
                ignored_bytes = end.len - end.valid,
                "cache pack ends in a torn or damaged record: ignoring the rest of it"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(pack = %format!("{id:016x}"), error = %e, "cannot read cache pack"),
        });
        // In the order they were written: records of entries evicted since they were written
        // come back too (evictions leave no tombstone), so there can be more than the index
        // holds, and the index then drops what was loaded first. Loaded in the map's order,
        // that was a random part of the cache, recent entries included, at every restart.
        let mut live: Vec<_> = live.into_iter().collect();
        live.sort_unstable_by_key(|(_, (pack, record))| (*pack, record.offset));
        let mut found = 0;
        for (hash, (pack, record)) in live {
            let Some(loc) = Loc::packed(pack, record.offset, record.len) else { continue };
            let len = record.len;
            // Counted before the insert, whose evictions subtract what they drop.
            packs.add_live(pack, len);
            if self.index.peek(&hash).is_some() {
                packs.sub_live(pack, len); // written anew since the start: this record is dead
                continue;
            }
            self.index.insert_with_lifecycle(hash, loc, &mut Some((hash, loc)));
            found += 1;
        }
        found
    }

    /// Waits until the packs are indexed: only then does a missing index entry mean a miss.
    fn wait_packs(&self) {
        if self.packs.is_some() {
            self.packs_loaded.wait();
        }
    }

    /// Deletes sealed packs while their dead bytes exceed the allowance (the deadest first, see
    /// [`Packs::reclaim`]), and drops the entries still in them (counted as evictions). Not
    /// under the index's or the pack table's lock; a caller finding a reclaim under way
    /// leaves the work to it.
    fn reclaim(&self) {
        let Some((packs, budget)) = &self.packs else { return };
        // Before the scan has counted live bytes every old pack looks dead.
        if !self.packs_loaded.is_open() {
            return;
        }
        let _one_at_a_time = match self.reclaiming.try_lock() {
            Ok(guard) => guard,
            // A panic in an earlier reclaim must not stop reclaiming for good.
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let taken = packs.reclaim(budget.dead_allowance);
        if taken.is_empty() {
            return;
        }
        let mut deleted: Vec<u64> = taken.iter().map(|r| r.id).collect();
        let in_deleted = |loc: &Loc| loc.in_pack().is_some_and(|(pack, _)| deleted.contains(&pack));
        // The entries the index still keeps in those packs move to the active pack: the index
        // decides what the disk keeps, and a pack taken for its dead bytes may hold entries in
        // use (one served from the memory tier all along, among neighbours asked for once).
        let live: Vec<(KeyHash, Loc)> = self.index.iter().filter(|(_, loc)| in_deleted(loc)).collect();
        let files: Vec<(u64, Option<File>)> = deleted.iter().map(|id| (*id, packs.open_taken(*id))).collect();
        let file_of = |loc: &Loc| {
            let (pack, _) = loc.in_pack()?;
            files.iter().find(|(id, _)| *id == pack).and_then(|(_, f)| f.as_ref())
        };
        for (hash, loc) in live {
            let moved = file_of(&loc).is_some_and(|file| self.relocate(packs, file, hash, loc));
            if !moved && self.index.remove_if(&hash, in_deleted).is_some() {
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A tombstone in a pack taken out of order may be what keeps a record of an older pack
        // removed after a restart: it is appended anew, unless its key has a packed entry now
        // (that one is newer than the tombstone, and a tombstone after it would remove it).
        // A pack whose tombstones cannot be kept stays on disk, uncounted until a restart.
        for r in taken.iter().filter(|r| r.keep_tombstones) {
            let kept = packs.tombstones(r.id).and_then(|hashes| {
                hashes
                    .iter()
                    .filter(|hash| self.index.peek(*hash).and_then(|loc| loc.in_pack()).is_none())
                    .try_for_each(|hash| {
                        packs.append(&pack::tombstone_record(hash), Kind::Tombstone).map(drop)
                    })
            });
            if let Err(e) = kept {
                tracing::warn!(error = %e, pack = r.id, "cannot keep a cache pack's tombstones: pack left on disk");
                deleted.retain(|id| *id != r.id);
            }
        }
        packs.delete(deleted.clone());
        tracing::debug!(packs = ?deleted, "deleted cache packs to reclaim dead space");
    }

    /// Copies the record at `old` (in a pack being deleted) to the active pack and points the
    /// index at the copy, if the index still points at `old`. Returns whether it moved; if
    /// not, the caller drops the entry as before.
    fn relocate(&self, packs: &Packs, file: &File, hash: KeyHash, old: Loc) -> bool {
        let Loc::Pack { offset, len, .. } = old else { return false };
        let mut record = vec![0u8; len as usize];
        if file.read_exact_at(&mut record, offset.into()).is_err() {
            return false;
        }
        let _serial = self.pack_writes.lock().unwrap_or_else(|e| e.into_inner());
        if self.index.peek(&hash) != Some(old) {
            return false;
        }
        let Ok((id, at)) = packs.append(&record, Kind::Entry) else { return false };
        let Some(new) = Loc::packed(id, at, len.into()) else {
            packs.sub_live(id, len.into());
            return false;
        };
        // Soft: the move is not a use, and must not make the entry look hot. Only a removal
        // can change the entry meanwhile (packed records and entry files are indexed under
        // `pack_writes`), and then the replace finds nothing.
        if self.index.replace_with_lifecycle(hash, new, true, &mut Some((hash, new))).is_ok() {
            return true;
        }
        // Removed meanwhile: the copy is dead, and a tombstone after it keeps it from coming
        // back after a restart.
        packs.sub_live(id, len.into());
        if self.index.peek(&hash).and_then(|l| l.in_pack()).is_none() {
            let _ = packs.append(&pack::tombstone_record(&hash), Kind::Tombstone);
        }
        false
    }

    /// Bytes in pack files, for tests of the space bound.
    #[cfg(test)]
    fn pack_bytes(&self) -> u64 {
        self.packs.as_ref().map_or(0, |(p, _)| p.bytes())
    }

    /// Whether the background index scan has finished.
    pub fn index_loaded(&self) -> bool {
        self.index_loaded.load(Ordering::Acquire)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries and bytes the index knows of.
    pub fn usage(&self) -> (usize, u64) {
        (self.index.len(), self.index.weight())
    }

    /// Whether the last write failed (the tier is degraded to pass-through until one works).
    pub fn writes_failing(&self) -> bool {
        self.writes_failing.load(Ordering::Relaxed)
    }

    /// Counters.
    pub fn stats(&self) -> &DiskStats {
        &self.stats
    }

    /// Marks `key`'s entry as used, as a lookup would, without reading it: the memory tier
    /// serves hot objects, and the disk must not age them out as unused meanwhile.
    pub fn touch(&self, key: &CacheKey) {
        let _ = self.index.get(key.hash());
    }

    /// Whether `key` may have an entry: false only when the loaded index knows it does not.
    /// Cheap and non-blocking, so misses skip the trip to a blocking thread.
    pub fn may_contain(&self, key: &CacheKey) -> bool {
        !self.index_loaded() || self.index.peek(key.hash()).is_some()
    }

    /// Writes a complete entry in one go (small bodies, whose fill kept them in memory).
    /// Small entries are appended to the active pack in one write, larger ones get a file.
    pub fn write_whole(self: &Arc<Self>, key: &CacheKey, head: &StoredHead, body: &[u8]) -> io::Result<()> {
        self.write_group(&[(key, head, body)], &mut PackGroup::default())
    }

    /// Writes complete entries in order, as [`Self::write_whole`] would one by one, but the
    /// run of small ones between two large ones goes to the active pack with one write (one
    /// per [`GROUP_BYTES`]). `group` is the caller's reusable buffer, left empty. Every entry
    /// is tried; the first error is returned.
    pub fn write_group(
        self: &Arc<Self>,
        entries: &[(&CacheKey, &StoredHead, &[u8])],
        group: &mut PackGroup,
    ) -> io::Result<()> {
        let mut first_error = Ok(());
        for &(key, head, body) in entries {
            let encoded = codec::encode_head(head);
            let size = encoded.len() as u64 + body.len() as u64 + TRAILER_LEN;
            if self.packs.is_none() || size > pack::MAX_PACKED {
                // Written in order: what is queued before it goes first.
                first_error = first_error.and(self.append_packed(group));
                first_error = first_error.and(self.write_file(key, head, body));
                continue;
            }
            pack::push_entry_record(&mut group.records, key.hash(), &encoded, body);
            group.lens.push(pack::entry_record_len(&encoded, body));
            group.keys.push(*key.hash());
            if group.records.len() >= GROUP_BYTES {
                first_error = first_error.and(self.append_packed(group));
            }
        }
        first_error.and(self.append_packed(group))
    }

    /// An entry in its own file (temp file, then rename).
    fn write_file(self: &Arc<Self>, key: &CacheKey, head: &StoredHead, body: &[u8]) -> io::Result<()> {
        let mut w = self.writer(key, head)?;
        w.write(body)?;
        w.finish()
    }

    /// Appends `group` to the packs and indexes its entries; empties it.
    fn append_packed(&self, group: &mut PackGroup) -> io::Result<()> {
        let Some((packs, _)) = self.packs.as_ref().filter(|_| !group.keys.is_empty()) else {
            return Ok(());
        };
        // Records written before an error are indexed: their bytes count as live in the pack.
        let serial = self.pack_writes.lock().unwrap_or_else(|e| e.into_inner());
        let (placed, written) = packs.append_entries(&group.records, &group.lens);
        for ((hash, len), (id, offset)) in group.keys.iter().zip(&group.lens).zip(placed) {
            // Pack numbers, offsets and record lengths fit, by `pack::create` and the pack limit.
            let Some(loc) = Loc::packed(id, offset, *len) else {
                packs.sub_live(id, *len);
                continue;
            };
            self.index.insert_with_lifecycle(*hash, loc, &mut Some((*hash, loc)));
        }
        drop(serial);
        match &written {
            Ok(()) => self.note_write_ok(),
            Err(e) => self.note_write_error(e),
        }
        self.reclaim();
        group.keys.clear();
        group.lens.clear();
        group.records.clear();
        written
    }

    /// Writes a new entry for `key` with `head` and the body of an existing entry file (after a
    /// 304 freshened a large entry's head). The body is copied and its checksum checked on the
    /// way; a mismatch drops the entry instead.
    pub fn rewrite_head(
        self: &Arc<Self>,
        key: &CacheKey,
        head: &StoredHead,
        old: &File,
        offset: u64,
        len: u64,
        crc: u32,
    ) -> io::Result<()> {
        let mut w = self.writer(key, head)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut check = crc32fast::Hasher::new();
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(buf.len() as u64) as usize;
            old.read_exact_at(&mut buf[..n], offset + pos)?;
            check.update(&buf[..n]);
            w.write(&buf[..n])?;
            pos += n as u64;
        }
        if check.finalize() != crc {
            self.drop_corrupt(key.hash(), &"body checksum mismatch while rewriting the head");
            return Err(io::Error::other("body checksum mismatch"));
        }
        w.finish()
    }

    /// Looks up `key`. Bodies up to `inline_max` bytes are read and verified whole.
    /// Corrupt files are removed and counted; `None` means a miss.
    pub fn lookup(&self, key: &CacheKey, inline_max: u64) -> Option<DiskEntry> {
        let loc = match self.index.get(key.hash()) {
            Some(loc) => loc,
            None if self.index_loaded() => return None,
            // Still loading: a file is found by its name; otherwise the pack scan decides.
            None => match self.lookup_file(key, inline_max) {
                Some(found) => return found,
                None => {
                    self.wait_packs();
                    self.index.get(key.hash())?
                }
            },
        };
        match loc {
            Loc::File { .. } => self.lookup_file(key, inline_max).flatten(),
            Loc::Pack { pack, offset, len } => {
                self.lookup_packed(key, pack.into(), offset.into(), len.into())
            }
        }
    }

    /// Reads the entry file of `key`; `None`: there is none, `Some(None)`: a miss all the same.
    fn lookup_file(&self, key: &CacheKey, inline_max: u64) -> Option<Option<DiskEntry>> {
        let path = entry_path(&self.dir, key.hash());
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot open cache entry");
                return Some(None);
            }
        };
        Some(match read_entry(file, key, inline_max) {
            Ok(Some(entry)) => Some(entry),
            Ok(None) => None, // another key with the same hash: a miss, not corruption
            Err(e) => {
                self.drop_corrupt(key.hash(), &e);
                None
            }
        })
    }

    /// Reads and checks a packed entry (always small, so read whole).
    fn lookup_packed(&self, key: &CacheKey, id: u64, offset: u64, len: u64) -> Option<DiskEntry> {
        // A pack deleted meanwhile to reclaim space took the entry with it.
        let file = self.packs.as_ref()?.0.file(id)?;
        match pack::read_entry(&file, offset, len, key.hash(), Some(key.url())) {
            Ok(Some((head, body))) => Some(DiskEntry { head, body: DiskBody::Inline(body) }),
            Ok(None) => None,
            Err(e) => {
                self.drop_corrupt(key.hash(), &e);
                None
            }
        }
    }

    /// Removes an entry that failed a check.
    pub fn drop_corrupt(&self, hash: &KeyHash, why: &dyn std::fmt::Display) {
        self.stats.corrupt_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(entry = %hex(hash), reason = %why, "dropping corrupt cache entry");
        self.remove(hash);
    }

    /// Removes an entry (no error if it does not exist). A packed entry gets a tombstone, so
    /// it stays removed after a restart.
    pub fn remove(&self, hash: &KeyHash) {
        // Until the packs are indexed, a packed entry would be missed here and come back.
        self.wait_packs();
        match self.index.remove(hash).and_then(|(_, loc)| loc.in_pack()) {
            Some((pack, len)) => {
                let packs = &self.packs.as_ref().expect("a packed entry means packs").0;
                packs.sub_live(pack, len);
                if let Err(e) = packs.append(&pack::tombstone_record(hash), Kind::Tombstone) {
                    self.note_write_error(&e);
                }
                self.reclaim();
            }
            // Files are also removed by name: the file scan may not have indexed it yet.
            _ => {
                let _ = fs::remove_file(entry_path(&self.dir, hash));
            }
        }
    }

    /// Starts writing a new entry. On failure the caller serves without storing.
    pub fn writer(self: &Arc<Self>, key: &CacheKey, head: &StoredHead) -> io::Result<EntryWriter> {
        let result = self.create_writer(key, head);
        if let Err(e) = &result {
            self.note_write_error(e);
        }
        result
    }

    fn create_writer(self: &Arc<Self>, key: &CacheKey, head: &StoredHead) -> io::Result<EntryWriter> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.tmp_dir.join(format!("{}.{}.{n}", key.hex(), std::process::id()));
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&tmp_path)?;
        let encoded = codec::encode_head(head);
        let writer = EntryWriter {
            store: self.clone(),
            file: Arc::new(file),
            tmp_path,
            hash: *key.hash(),
            body_offset: encoded.len() as u64,
            written: 0,
            crc: crc32fast::Hasher::new(),
            done: false,
        };
        writer.file.write_all_at(&encoded, 0)?;
        Ok(writer)
    }

    fn note_write_error(&self, e: &io::Error) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if !self.writes_failing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                error = %e,
                dir = %self.dir.display(),
                "cache writes failing: serving without storing until writes succeed again"
            );
        }
    }

    fn note_write_ok(&self) {
        if self.writes_failing.swap(false, Ordering::Relaxed) {
            tracing::info!(dir = %self.dir.display(), "cache writes succeed again");
        }
    }
}

/// Reads and checks an entry. `Ok(None)`: the file holds a different key.
fn read_entry(file: File, key: &CacheKey, inline_max: u64) -> Result<Option<DiskEntry>, DecodeError> {
    let io_err = |_| DecodeError::Truncated;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut prefix = [0u8; PREFIX_LEN as usize];
    file.read_exact_at(&mut prefix, 0).map_err(io_err)?;
    let head_len = codec::decode_prefix(&prefix)? as u64;
    let body_offset = PREFIX_LEN + head_len + 4;
    if file_len < body_offset + TRAILER_LEN {
        return Err(DecodeError::Truncated);
    }
    let mut head_buf = vec![0u8; head_len as usize + 4];
    file.read_exact_at(&mut head_buf, PREFIX_LEN).map_err(io_err)?;
    let head = codec::decode_head(&head_buf)?;
    if head.key != key.url() {
        return Ok(None);
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, file_len - TRAILER_LEN).map_err(io_err)?;
    let (body_len, crc) = codec::decode_trailer(&trailer)?;
    if body_offset + body_len + TRAILER_LEN != file_len {
        return Err(DecodeError::Malformed("length"));
    }
    let body = if body_len <= inline_max {
        let mut buf = vec![0u8; body_len as usize];
        file.read_exact_at(&mut buf, body_offset).map_err(io_err)?;
        if crc32fast::hash(&buf) != crc {
            return Err(DecodeError::Checksum("body"));
        }
        DiskBody::Inline(Bytes::from(buf))
    } else {
        DiskBody::File { file: Arc::new(file), offset: body_offset, len: body_len, crc }
    };
    Ok(Some(DiskEntry { head, body }))
}

/// Writes one entry to a temporary file; [`EntryWriter::finish`] makes it visible.
/// Dropping an unfinished writer removes the temporary file.
pub struct EntryWriter {
    store: Arc<DiskStore>,
    file: Arc<File>,
    tmp_path: PathBuf,
    hash: KeyHash,
    body_offset: u64,
    written: u64,
    crc: crc32fast::Hasher,
    done: bool,
}

impl EntryWriter {
    /// The file being written, for readers that stream the body while it arrives.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Offset of the body's first byte in [`Self::file`].
    pub fn body_offset(&self) -> u64 {
        self.body_offset
    }

    /// Appends body bytes.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let result = self.file.write_all_at(chunk, self.body_offset + self.written);
        if let Err(e) = &result {
            self.store.note_write_error(e);
            return result;
        }
        self.crc.update(chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Writes the trailer, renames the file into place and records it in the index.
    pub fn finish(mut self) -> io::Result<()> {
        let result = self.commit();
        match &result {
            Ok(()) => self.store.note_write_ok(),
            Err(e) => self.store.note_write_error(e),
        }
        result
    }

    fn commit(&mut self) -> io::Result<()> {
        let trailer = codec::encode_trailer(self.written, self.crc.clone().finalize());
        self.file.write_all_at(&trailer, self.body_offset + self.written)?;
        let path = entry_path(&self.store.dir, &self.hash);
        // The shard directories exist from `open`; one removed by hand is made again.
        if let Err(e) = fs::rename(&self.tmp_path, &path) {
            match path.parent() {
                Some(parent) if e.kind() == ErrorKind::NotFound && !parent.exists() => {
                    fs::create_dir_all(parent)?;
                    fs::rename(&self.tmp_path, &path)?;
                }
                _ => return Err(e),
            }
        }
        self.done = true;
        let loc = Loc::file(self.body_offset + self.written + TRAILER_LEN);
        // Under `pack_writes`, so that a reclaim moving this key's packed record cannot put
        // the copy over this file in the index.
        let serial = self.store.pack_writes.lock().unwrap_or_else(|e| e.into_inner());
        self.store.index.insert_with_lifecycle(self.hash, loc, &mut Some((self.hash, loc)));
        drop(serial);
        // Replacing a packed entry appended a tombstone, which may call for a reclaim.
        self.store.reclaim();
        Ok(())
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::meta::{from_millis, EntryKind};

    fn head(key: &CacheKey) -> StoredHead {
        StoredHead {
            kind: EntryKind::Response,
            key: key.url().to_string(),
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            request_time: from_millis(1),
            response_time: from_millis(2),
            reading: Default::default(),
        }
    }

    fn wait_loaded(store: &DiskStore) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !store.index_loaded() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    #[test]
    fn replacing_an_entry_keeps_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        wait_loaded(&store);
        let key = CacheKey::new("http", "h", 80, "/x");
        store.write_whole(&key, &head(&key), b"first").unwrap();
        store.write_whole(&key, &head(&key), b"second").unwrap();
        let Some(DiskEntry { body: DiskBody::Inline(b), .. }) = store.lookup(&key, 1024) else {
            panic!("entry lost after replacement")
        };
        assert_eq!(&b[..], b"second");
        assert_eq!(store.stats().evictions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn eviction_deletes_files_to_stay_within_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 64 * 1024, 64 * 1024).unwrap();
        wait_loaded(&store);
        for i in 0..40 {
            let key = CacheKey::new("http", "h", 80, &format!("/{i}"));
            store.write_whole(&key, &head(&key), &[7u8; 4096]).unwrap();
        }
        let (_, bytes) = store.usage();
        assert!(bytes <= 64 * 1024, "index holds {bytes} bytes");
        let files: u64 = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|d| d.file_name().len() == 2)
            .flat_map(|d| fs::read_dir(d.path()).unwrap().flatten())
            .map(|f| f.metadata().unwrap().len())
            .sum();
        assert!(files <= 64 * 1024, "files hold {files} bytes");
        assert!(store.stats().evictions.load(Ordering::Relaxed) > 0);
    }

    fn body_of(store: &DiskStore, key: &CacheKey) -> Option<Vec<u8>> {
        match store.lookup(key, u64::MAX)?.body {
            DiskBody::Inline(b) => Some(b.to_vec()),
            DiskBody::File { file, offset, len, .. } => {
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, offset).unwrap();
                Some(buf)
            }
        }
    }

    const PACKED: u64 = 4 << 20; // big enough for packs

    #[test]
    fn small_entries_go_to_packs_and_survive_replacement_removal_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = |p: &str| CacheKey::new("http", "h", 80, p);
        let big = vec![3u8; 300 * 1024];
        {
            let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
            wait_loaded(&store);
            // Packed, then replaced by a file (tombstone), then by a packed entry again.
            store.write_whole(&key("/p"), &head(&key("/p")), b"one").unwrap();
            assert!(!entry_path(dir.path(), key("/p").hash()).exists(), "small: packed");
            store.write_whole(&key("/p"), &head(&key("/p")), &big).unwrap();
            assert!(entry_path(dir.path(), key("/p").hash()).exists(), "large: a file");
            store.write_whole(&key("/p"), &head(&key("/p")), b"three").unwrap();
            assert!(!entry_path(dir.path(), key("/p").hash()).exists(), "the replaced file is gone");
            // A file replacing a packed entry: the packed one must not come back.
            store.write_whole(&key("/f"), &head(&key("/f")), b"small").unwrap();
            store.write_whole(&key("/f"), &head(&key("/f")), &big).unwrap();
            store.write_whole(&key("/gone"), &head(&key("/gone")), b"x").unwrap();
            store.remove(key("/gone").hash());
            assert_eq!(body_of(&store, &key("/p")).unwrap(), b"three");
            assert!(body_of(&store, &key("/gone")).is_none());
            assert_eq!(store.stats().evictions.load(Ordering::Relaxed), 0);
        }
        // Lookups right after opening wait for the pack scan instead of missing.
        let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
        assert_eq!(body_of(&store, &key("/p")).unwrap(), b"three");
        assert_eq!(body_of(&store, &key("/f")).unwrap(), big);
        assert!(body_of(&store, &key("/gone")).is_none());
        wait_loaded(&store);
        assert_eq!(store.usage().0, 2);
        drop(store);
        // Reopened too small for packs: their entries are gone, and so are the packs.
        let store = DiskStore::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert!(pack::list(&pack::packs_dir(dir.path())).unwrap().is_empty());
        assert!(body_of(&store, &key("/p")).is_none());
        assert_eq!(body_of(&store, &key("/f")).unwrap(), big, "files stay");
    }

    #[test]
    fn a_group_is_written_in_order_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = |p: &str| CacheKey::new("http", "h", 80, p);
        let big = vec![5u8; 300 * 1024];
        let (a, b, c) = (key("/a"), key("/b"), key("/c"));
        let (ha, hb, hc) = (head(&a), head(&b), head(&c));
        {
            let store = Arc::new(DiskStore::open(dir.path(), PACKED, PACKED).unwrap());
            wait_loaded(&store);
            // /a small then large: the file must win. /b large then small: the pack must win.
            let mut group = PackGroup::default();
            store
                .write_group(
                    &[
                        (&a, &ha, b"a1"),
                        (&b, &hb, &big),
                        (&c, &hc, b"c1"),
                        (&a, &ha, &big),
                        (&b, &hb, b"b2"),
                        (&c, &hc, b"c2"),
                    ],
                    &mut group,
                )
                .unwrap();
            assert!(group.keys.is_empty() && group.records.is_empty(), "left empty for the next group");
            assert_eq!(body_of(&store, &a).unwrap(), big);
            assert_eq!(body_of(&store, &b).unwrap(), b"b2");
            assert_eq!(body_of(&store, &c).unwrap(), b"c2");
            assert!(!entry_path(dir.path(), b.hash()).exists(), "the replaced file is gone");
        }
        let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
        wait_loaded(&store);
        assert_eq!(body_of(&store, &a).unwrap(), big);
        assert_eq!(body_of(&store, &b).unwrap(), b"b2");
        assert_eq!(body_of(&store, &c).unwrap(), b"c2");
        assert_eq!(store.usage().0, 3);
    }

    #[test]
    fn a_group_over_the_buffer_bound_is_written_in_parts_and_all_of_it_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DiskStore::open(dir.path(), 16 * PACKED, 16 * PACKED).unwrap());
        wait_loaded(&store);
        let keys: Vec<CacheKey> = (0..12).map(|i| CacheKey::new("http", "h", 80, &format!("/{i}"))).collect();
        let heads: Vec<StoredHead> = keys.iter().map(head).collect();
        let bodies: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 250 * 1024]).collect();
        let entries: Vec<_> = (0..12).map(|i| (&keys[i], &heads[i], &bodies[i][..])).collect();
        let mut group = PackGroup::default();
        store.write_group(&entries, &mut group).unwrap();
        assert!(group.records.capacity() <= 2 * (GROUP_BYTES + pack::MAX_PACKED as usize), "bounded buffer");
        for (key, body) in keys.iter().zip(&bodies) {
            assert_eq!(&body_of(&store, key).unwrap(), body);
            assert!(!entry_path(dir.path(), key.hash()).exists(), "packed, not a file");
        }
    }

    #[test]
    fn a_corrupt_packed_entry_is_dropped_counted_and_stays_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::new("http", "h", 80, "/rot");
        {
            let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
            store.write_whole(&key, &head(&key), b"rotting body").unwrap();
        }
        let live = pack::live_entries(&pack::packs_dir(dir.path())).unwrap();
        let l = &live[key.hash()];
        let f = OpenOptions::new().read(true).write(true).open(&l.path).unwrap();
        let at = l.record.offset + l.record.len - TRAILER_LEN - 2; // a body byte
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 1], at).unwrap();
        {
            let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
            assert!(store.lookup(&key, u64::MAX).is_none(), "a corrupt body was served");
            assert_eq!(store.stats().corrupt_dropped.load(Ordering::Relaxed), 1);
            assert!(store.lookup(&key, u64::MAX).is_none());
        }
        let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
        assert!(store.lookup(&key, u64::MAX).is_none());
        assert_eq!(store.stats().corrupt_dropped.load(Ordering::Relaxed), 0, "the tombstone held");
    }

    #[test]
    fn files_and_packs_stay_within_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
        wait_loaded(&store);
        let mut seed = 0x2545_f491_u32;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut written = 0u64;
        let mut i = 0;
        // Entry files can only be those of keys written large: stat those instead of walking
        // 256 shard directories after every write.
        let mut large = std::collections::HashSet::new();
        // Ten times the capacity: mostly small entries, some replaced or removed, a few files.
        while written < 10 * PACKED {
            let key = CacheKey::new("http", "h", 80, &format!("/{}", rand() % 3000));
            let len = if i % 50 == 0 { 300 * 1024 } else { 500 + rand() as usize % 20_000 };
            if len > pack::MAX_PACKED as usize {
                large.insert(entry_path(dir.path(), key.hash()));
            }
            store.write_whole(&key, &head(&key), &vec![i as u8; len]).unwrap();
            if i % 7 == 0 {
                let other = CacheKey::new("http", "h", 80, &format!("/{}", rand() % 3000));
                store.remove(other.hash());
            }
            written += len as u64;
            i += 1;
            let files: u64 = large.iter().filter_map(|p| fs::metadata(p).ok()).map(|m| m.len()).sum();
            let packs = sizes_of_packs(dir.path());
            assert!(files + packs <= PACKED, "{files} + {packs} bytes on disk after {i} writes");
            assert_eq!(store.pack_bytes(), packs, "the pack table matches the disk");
        }
        assert!(store.stats().evictions.load(Ordering::Relaxed) > 0);
        assert!(pack::list(&pack::packs_dir(dir.path())).unwrap().len() > 1, "packs rotated");
        // What the index holds is still readable.
        let (entries, _) = store.usage();
        assert!(entries > 0);
    }

    #[test]
    fn a_location_is_16_bytes_and_keeps_every_figure() {
        assert_eq!((std::mem::size_of::<Loc>(), std::mem::align_of::<Loc>()), (16, 4));
        let big = (5 << 32) + 123;
        assert_eq!(Loc::file(big).size(), big);
        assert_eq!(Loc::file(big).in_pack(), None);
        let loc = Loc::packed(pack::MAX_PACK_ID, (64 << 20) - 1, 300_000).unwrap();
        assert_eq!((loc.size(), loc.in_pack()), (300_000, Some((pack::MAX_PACK_ID, 300_000))));
        assert_eq!(Loc::packed(pack::MAX_PACK_ID + 1, 0, 1), None);
        assert_eq!(Loc::packed(0, 1 << 32, 1), None);
    }

    #[test]
    fn an_index_slot_takes_64_bytes() {
        let lifecycle =
            DeleteEvicted { dir: Arc::new(PathBuf::new()), stats: Default::default(), packs: None };
        let options =
            OptionsBuilder::new().estimated_items_capacity(4096).weight_capacity(u64::MAX).shards(1).build();
        let index =
            Index::with_options(options.unwrap(), SizeWeighter, DefaultHashBuilder::default(), lifecycle);
        let n = 1 << 14;
        for i in 0..n {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&(i as u32).to_le_bytes());
            let loc = Loc::packed(1, i * 1000, 1000).unwrap();
            index.insert_with_lifecycle(hash, loc, &mut Some((hash, loc)));
        }
        assert_eq!(index.len() as u64, n);
        // The slab grows by doubling, so 2^14 entries fill it exactly. With 8-byte figures in
        // `Loc` a slot took 80 bytes.
        let slab = index.memory_used().entries as u64;
        assert!(slab <= n * 64, "{slab} bytes of slots for {n} entries");
    }

    #[test]
    fn the_index_is_sharded_only_where_every_hot_part_takes_the_heaviest_entry() {
        const MIB: u64 = 1 << 20;
        // The default 1 GiB cache (832 MiB for the index) with 128 MiB objects: 2 x 416 MiB,
        // 31% of each hot.
        let default = Budget::of(1 << 30).unwrap().index;
        assert_eq!(index_shards(default, 128 * MIB), 2);
        assert!((hot_allocation(default / 2, 128 * MIB) - 129.0 / 416.0).abs() < 1e-9);
        assert_eq!(index_shards(default, 300 * MIB), 1);
        assert_eq!(index_shards(default, default), 1);
        // Small caches keep one shard; large ones stop at 16; small objects leave 10% hot.
        assert_eq!(index_shards(100 * MIB, MIB), 1);
        assert_eq!(index_shards(1 << 40, 128 * MIB), 16);
        assert_eq!(hot_allocation(1 << 40, MIB), 0.1);
        for (budget, largest) in
            [(default, 128 * MIB), (200 * MIB, 90 * MIB), (1 << 40, 1 << 30), (1 << 40, MIB)]
        {
            let share = budget / index_shards(budget, largest) as u64;
            let hot = hot_allocation(share, largest);
            assert!(share as f64 * hot >= heaviest(largest) as f64 && hot <= 0.5, "{budget} {largest}");
        }
    }

    #[test]
    fn a_full_cache_keeps_new_keys_for_most_of_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 64 << 20, 4096).unwrap();
        wait_loaded(&store);
        let write = |name: &str, i: usize| {
            let key = CacheKey::new("http", "h", 80, &format!("/{name}{i}"));
            store.write_whole(&key, &head(&key), &[i as u8; 1000]).unwrap();
        };
        // Old keys, twice what the cache holds, then new keys a third of what it holds.
        let holds = 40_000; // 52 MiB for the index, about 1.2 KiB a record
        (0..2 * holds).for_each(|i| write("old", i));
        (0..holds / 3).for_each(|i| write("new", i));
        let kept = (0..holds / 3)
            .filter(|i| store.lookup(&CacheKey::new("http", "h", 80, &format!("/new{i}")), 4096).is_some())
            .count();
        // With 97% of the index hot (quick_cache's default) only the last 3% were kept.
        assert!(kept * 10 >= holds / 3 * 9, "{kept} of {} new keys kept", holds / 3);
    }

    #[test]
    fn a_restart_keeps_the_entries_written_last_when_the_packs_hold_more_than_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let key = |i: usize| CacheKey::new("http", "h", 80, &format!("/{i}"));
        let (written, last) = (6_000, 1_000);
        {
            let store = DiskStore::open(dir.path(), 8 << 20, 4096).unwrap();
            wait_loaded(&store);
            // About 5,000 fit the index; the records of those it evicts stay in their packs
            // until a reclaim takes them.
            (0..written).for_each(|i| store.write_whole(&key(i), &head(&key(i)), &[1u8; 1000]).unwrap());
        }
        let store = DiskStore::open(dir.path(), 8 << 20, 4096).unwrap();
        wait_loaded(&store);
        let lost = (written - last..written).filter(|i| store.lookup(&key(*i), 4096).is_none()).count();
        assert_eq!(lost, 0, "of the {last} entries written last, {lost} were lost by the restart");
    }

    #[test]
    fn a_touched_entry_outlives_new_entries_and_the_pack_it_was_written_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 8 << 20, 4096).unwrap();
        wait_loaded(&store);
        let key = |name: &str, i: usize| CacheKey::new("http", "h", 80, &format!("/{name}{i}"));
        let write = |k: &CacheKey, byte: u8| store.write_whole(k, &head(k), &[byte; 1000]).unwrap();
        // Full first (about 5,000 of these), so that the two below enter as new entries.
        (0..10_000).for_each(|i| write(&key("old", i), 1));
        let (hot, cold) = (key("hot", 0), key("cold", 0));
        write(&hot, 2);
        write(&cold, 3);
        // New entries pass through four times over; `hot` is used now and then, as memory
        // hits mark it, and its pack is reclaimed meanwhile.
        for i in 0..20_000 {
            write(&key("new", i), 4);
            if i % 500 == 0 {
                store.touch(&hot);
            }
        }
        assert!(store.lookup(&cold, 4096).is_none(), "the entry never used aged out");
        let Some(DiskEntry { body: DiskBody::Inline(b), .. }) = store.lookup(&hot, 4096) else {
            panic!("the entry used now and then aged out")
        };
        assert_eq!(&b[..], &[2u8; 1000][..]);
    }

    #[test]
    fn a_sharded_index_finds_removes_and_reloads_entries() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<_> = (0..200).map(|i| CacheKey::new("http", "h", 80, &format!("/{i}"))).collect();
        {
            let store = DiskStore::open(dir.path(), 1 << 30, 1 << 20).unwrap();
            wait_loaded(&store);
            assert_eq!(index_shards(Budget::of(1 << 30).unwrap().index, 1 << 20), 8);
            for (i, key) in keys.iter().enumerate() {
                let body = vec![i as u8; if i % 10 == 0 { 300 * 1024 } else { 1000 }];
                store.write_whole(key, &head(key), &body).unwrap();
            }
            store.remove(keys[1].hash());
        }
        let store = DiskStore::open(dir.path(), 1 << 30, 1 << 20).unwrap();
        wait_loaded(&store);
        for (i, key) in keys.iter().enumerate() {
            let found = store.lookup(key, 1 << 20);
            if i == 1 {
                assert!(found.is_none(), "a removed entry stays removed");
                continue;
            }
            let Some(DiskEntry { body: DiskBody::Inline(b), .. }) = found else { panic!("entry {i} lost") };
            assert_eq!((b.len(), b[0]), (if i % 10 == 0 { 300 * 1024 } else { 1000 }, i as u8));
        }
        assert_eq!(store.stats().evictions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_cache_of_unique_keys_keeps_most_of_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
        wait_loaded(&store);
        let (mut most, mut least_after_full) = (0, usize::MAX);
        for i in 0..12_000 {
            let key = CacheKey::new("http", "h", 80, &format!("/{i}"));
            store.write_whole(&key, &head(&key), &[i as u8; 1000]).unwrap();
            let (entries, _) = store.usage();
            if store.stats().evictions.load(Ordering::Relaxed) > 0 {
                least_after_full = least_after_full.min(entries);
            }
            most = most.max(entries);
        }
        // The index evicts entries one at a time; reclaiming packs must not take out the rest.
        assert!(least_after_full * 10 >= most * 7, "{least_after_full} entries left of {most}");
        assert!(sizes_of_packs(dir.path()) <= PACKED);
    }

    #[test]
    fn a_removal_outlives_its_pack_when_that_pack_is_reclaimed_before_the_entry_s() {
        let dir = tempfile::tempdir().unwrap();
        let key = |p: String| CacheKey::new("http", "h", 80, &p);
        let gone = key("/gone".into());
        {
            let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
            wait_loaded(&store);
            // Pack 0: the entry to remove, then others, past the 1 MiB pack limit (the last few
            // go to pack 1 and are dropped with it).
            store.write_whole(&gone, &head(&gone), &[1; 1000]).unwrap();
            for i in 0..1000 {
                let k = key(format!("/old{i}"));
                store.write_whole(&k, &head(&k), &[2; 1000]).unwrap();
            }
            // Its tombstone lands in pack 1, which then dies and is reclaimed first.
            store.remove(gone.hash());
            for i in 0..1000 {
                let k = key(format!("/new{i}"));
                store.write_whole(&k, &head(&k), &[3; 1000]).unwrap();
                store.remove(k.hash());
            }
            let ids: Vec<u64> =
                pack::list(&pack::packs_dir(dir.path())).unwrap().iter().map(|p| p.0).collect();
            assert!(ids[0] == 0 && !ids.contains(&1), "pack 1 reclaimed before pack 0: {ids:?}");
        }
        let store = DiskStore::open(dir.path(), PACKED, PACKED).unwrap();
        wait_loaded(&store);
        assert!(store.lookup(&gone, 4096).is_none(), "a removed entry came back");
        assert!(store.lookup(&key("/old7".into()), 4096).is_some());
    }

    fn sizes_of_packs(dir: &Path) -> u64 {
        pack::list(&pack::packs_dir(dir)).unwrap().iter().map(|(_, p)| fs::metadata(p).unwrap().len()).sum()
    }
}
