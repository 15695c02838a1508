//! Append-only pack files for small complete entries: one write per entry instead of one file
//! (an inode, three writes and a rename) per entry, which is where the disk writer spent most
//! of its CPU on small misses.
//!
//! Layout: `<dir>/packs/<16 lowercase hex digits>.pack`, numbered in creation order. A pack is
//! a run of records:
//!
//! ```text
//! "HCP1" | u32 len | key hash (32 bytes) | u8 kind | u32 crc32(the fields before it)
//! | len bytes: for an entry, exactly an entry file's bytes (see super::codec); empty for a
//! |            tombstone
//! ```
//! All integers are little-endian. A record is built in one buffer; the records the disk
//! writer gathered are written with one `pwrite`, so a crash leaves at most one torn write, at
//! the tail of the pack being written: the records before the torn one are whole.
//! A reader stops at the first record whose header does not check or that runs past the end
//! of the file; the proxy never appends to a pack of a previous run, so such a tail stays the
//! end. The entry bytes carry the codec's own head and body checksums, checked on every read.
//!
//! Later records win: a record for a hash replaces earlier ones, a tombstone removes them.
//! Packs are only ever deleted whole, the deadest first ([`Packs::reclaim`]); a pack deleted
//! while an older one stays has its tombstones appended anew first (by the disk store, which
//! knows which still matter), so a tombstone never goes before the record it deletes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::codec::{self, DecodeError, PREFIX_LEN, TRAILER_LEN};
use crate::cache::key::KeyHash;
use crate::cache::meta::StoredHead;

const MAGIC: &[u8; 4] = b"HCP1";
/// Bytes of a record header.
pub const HEADER_LEN: u64 = 4 + 4 + 32 + 1 + 4;
/// Entries whose encoding is at most this long go to packs; larger ones get their own file.
pub const MAX_PACKED: u64 = 256 * 1024;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An entry in the codec format.
    Entry,
    /// The removal of the hash's earlier records.
    Tombstone,
}

/// A record found by [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The key hash it is about.
    pub hash: KeyHash,
    /// Entry or tombstone.
    pub kind: Kind,
    /// Offset of the record header in its pack.
    pub offset: u64,
    /// Bytes of the whole record, header included.
    pub len: u64,
}

/// The packs directory of a cache directory.
pub fn packs_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("packs")
}

/// Path of pack `id` in `packs`.
pub fn pack_path(packs: &Path, id: u64) -> PathBuf {
    packs.join(format!("{id:016x}.pack"))
}

/// Every pack in `packs` (names of our own layout only), in sequence order. No directory is
/// no packs.
pub fn list(packs: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = match fs::read_dir(packs) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".pack")) else { continue };
        let ours = stem.len() == 16 && stem.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if let (true, Ok(id)) = (ours, u64::from_str_radix(stem, 16)) {
            found.push((id, e.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The highest pack number: the disk index holds pack numbers in 32 bits. At one pack per
/// `--cache-size / 16` (1 MiB at least) written, that is 4 PiB before it matters; then new
/// packs fail as a write error would, and the proxy serves without storing.
pub const MAX_PACK_ID: u64 = u32::MAX as u64;

/// Creates a new, empty pack numbered `id` or the first free number above it. `create_new`:
/// a pack is never shared with another writer (a cache tool beside a running proxy).
pub fn create(packs: &Path, mut id: u64) -> io::Result<(u64, File)> {
    loop {
        if id > MAX_PACK_ID {
            return Err(io::Error::other("cache pack numbers used up: clear the cache directory"));
        }
        match OpenOptions::new().read(true).write(true).create_new(true).open(pack_path(packs, id)) {
            Ok(f) => return Ok((id, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => id += 1,
            Err(e) => return Err(e),
        }
    }
}

fn header(hash: &KeyHash, kind: Kind, len: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..40].copy_from_slice(hash);
    h[40] = match kind {
        Kind::Entry => 1,
        Kind::Tombstone => 2,
    };
    let crc = crc32fast::hash(&h[..41]);
    h[41..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a record header into `(hash, kind, len of what follows)`; `None` if it does not
/// check.
pub fn decode_header(h: &[u8]) -> Option<(KeyHash, Kind, u32)> {
    if h.len() < HEADER_LEN as usize || &h[..4] != MAGIC {
        return None;
    }
    if crc32fast::hash(&h[..41]).to_le_bytes() != h[41..45] {
        return None;
    }
    let kind = match h[40] {
        1 => Kind::Entry,
        2 => Kind::Tombstone,
        _ => return None,
    };
    let len = u32::from_le_bytes(h[4..8].try_into().ok()?);
    Some((h[8..40].try_into().ok()?, kind, len))
}

/// Bytes of the entry record of `encoded_head` and `body`.
pub fn entry_record_len(encoded_head: &[u8], body: &[u8]) -> u64 {
    HEADER_LEN + encoded_head.len() as u64 + body.len() as u64 + TRAILER_LEN
}

/// Appends one entry record to `out`: header, then the codec encoding of head, body and
/// trailer.
pub fn push_entry_record(out: &mut Vec<u8>, hash: &KeyHash, encoded_head: &[u8], body: &[u8]) {
    let len = entry_record_len(encoded_head, body) - HEADER_LEN;
    out.extend_from_slice(&header(hash, Kind::Entry, len as u32));
    out.extend_from_slice(encoded_head);
    out.extend_from_slice(body);
    out.extend_from_slice(&codec::encode_trailer(body.len() as u64, crc32fast::hash(body)));
}

/// One tombstone record.
pub fn tombstone_record(hash: &KeyHash) -> Vec<u8> {
    header(hash, Kind::Tombstone, 0).to_vec()
}

/// How a pack's scan ended.
#[derive(Debug, PartialEq, Eq)]
pub struct ScanEnd {
    /// Bytes of whole records from the start.
    pub valid: u64,
    /// The file's length: more than `valid` means a torn or damaged tail, ignored.
    pub len: u64,
}

/// Calls `each` for every record of a pack, in order, reading headers only. Stops at the first
/// header that does not check or record that runs past the end of the file.
pub fn scan(file: &File, mut each: impl FnMut(Record)) -> io::Result<ScanEnd> {
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(0))?;
    let mut pos = 0u64;
    let mut h = [0u8; HEADER_LEN as usize];
    while pos + HEADER_LEN <= len {
        r.read_exact(&mut h)?;
        let Some((hash, kind, body)) = decode_header(&h) else { break };
        let rec_len = HEADER_LEN + body as u64;
        if pos + rec_len > len || (kind == Kind::Tombstone && body != 0) {
            break;
        }
        each(Record { hash, kind, offset: pos, len: rec_len });
        r.seek_relative(body as i64)?;
        pos += rec_len;
    }
    Ok(ScanEnd { valid: pos, len })
}

/// Reads a whole record and checks all of it: the header (hash, kind, length), then the entry
/// as [`codec`] checks an entry file (head checksum, lengths, body checksum). `Ok(None)`: the
/// head names another key than `url` (the hash matched, the key did not).
pub fn read_entry(
    file: &File,
    offset: u64,
    len: u64,
    hash: &KeyHash,
    url: Option<&str>,
) -> Result<Option<(StoredHead, Bytes)>, DecodeError> {
    if !(HEADER_LEN + PREFIX_LEN + 4 + TRAILER_LEN..=HEADER_LEN + MAX_PACKED).contains(&len) {
        return Err(DecodeError::Malformed("record length"));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).map_err(|_| DecodeError::Truncated)?;
    match decode_header(&buf) {
        Some((h, Kind::Entry, n)) if &h == hash && HEADER_LEN + n as u64 == len => {}
        _ => return Err(DecodeError::Malformed("record header")),
    }
    let entry = &buf[HEADER_LEN as usize..];
    let head_len = codec::decode_prefix(entry)? as usize;
    let body_at = PREFIX_LEN as usize + head_len + 4;
    if entry.len() < body_at + TRAILER_LEN as usize {
        return Err(DecodeError::Truncated);
    }
    let head = codec::decode_head(&entry[PREFIX_LEN as usize..body_at])?;
    if url.is_some_and(|u| u != head.key) {
        return Ok(None);
    }
    let (body_len, crc) = codec::decode_trailer(&entry[entry.len() - TRAILER_LEN as usize..])?;
    if body_at as u64 + body_len + TRAILER_LEN != entry.len() as u64 {
        return Err(DecodeError::Malformed("length"));
    }
    let body = HEADER_LEN as usize + body_at..HEADER_LEN as usize + body_at + body_len as usize;
    if crc32fast::hash(&buf[body.clone()]) != crc {
        return Err(DecodeError::Checksum("body"));
    }
    Ok(Some((head, Bytes::from(buf).slice(body))))
}

/// A live pack entry found by [`live_entries`].
#[derive(Clone, Debug)]
pub struct Live {
    /// The pack's number.
    pub pack: u64,
    /// The pack's path.
    pub path: PathBuf,
    /// The record.
    pub record: Record,
}

/// The latest record of each hash across `packs` (in sequence order), as (pack, record),
/// unless that record is a tombstone. `scanned` hears how each pack's scan ended: the proxy's
/// index load and the cache tools both read packs this way.
pub fn live_records(
    packs: &[(u64, PathBuf)],
    mut scanned: impl FnMut(u64, io::Result<ScanEnd>),
) -> HashMap<KeyHash, (u64, Record)> {
    let mut live = HashMap::new();
    for (id, path) in packs {
        // One at a time: a large cache has more packs than a process may have open.
        let end = File::open(path).and_then(|file| {
            scan(&file, |record| match record.kind {
                Kind::Entry => {
                    live.insert(record.hash, (*id, record));
                }
                Kind::Tombstone => {
                    live.remove(&record.hash);
                }
            })
        });
        scanned(*id, end);
    }
    live
}

/// The live entries of every pack under `packs`. Read-only, so safe beside a running proxy (a
/// record it is writing at that moment is a torn tail to this scan, and left out).
pub fn live_entries(packs: &Path) -> io::Result<HashMap<KeyHash, Live>> {
    let found = list(packs)?;
    let mut failed = None;
    let live = live_records(&found, |_, end| match end {
        // Deleted meanwhile by a running proxy.
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            failed.get_or_insert(e);
        }
        Ok(_) => {}
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let paths: HashMap<u64, &PathBuf> = found.iter().map(|(id, path)| (*id, path)).collect();
    Ok(live
        .into_iter()
        .map(|(hash, (pack, record))| (hash, Live { pack, path: paths[&pack].clone(), record }))
        .collect())
}

/// Writes tombstones for `hashes` into a new pack numbered above every existing one, for the
/// cache tools: a running proxy may be appending to its own pack, and is never appended to.
pub fn write_tombstones(packs: &Path, hashes: &[KeyHash]) -> io::Result<()> {
    if hashes.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(packs)?;
    let next = list(packs)?.last().map_or(0, |(id, _)| id + 1);
    let (_, file) = create(packs, next)?;
    let buf: Vec<u8> = hashes.iter().flat_map(tombstone_record).collect();
    file.write_all_at(&buf, 0)
}

/// Packs found at open, in sequence order: number and path.
pub type Existing = Vec<(u64, PathBuf)>;

/// One pack the proxy knows of.
struct Pack {
    /// Open only while it is the active pack: a large cache has thousands of sealed packs,
    /// too many to keep a descriptor each, so they are opened per read.
    file: Option<Arc<File>>,
    /// Bytes in the file (what is written, torn tails of a previous run included).
    size: u64,
    /// Bytes of its records the index still points at.
    live: u64,
    /// It may hold tombstones: one was appended to it, or it was found at open (unscanned).
    tombstones: bool,
}

/// A pack [`Packs::reclaim`] took out of the table: no longer read or counted, its file still
/// on disk until [`Packs::delete`].
#[derive(Debug, PartialEq, Eq)]
pub struct Reclaimed {
    /// The pack's number.
    pub id: u64,
    /// It may hold tombstones that still remove records of an older pack: those must be
    /// appended anew before its file goes.
    pub keep_tombstones: bool,
}

struct Table {
    packs: BTreeMap<u64, Pack>,
    /// The pack being appended to; none until the first append after opening.
    active: Option<u64>,
    next_id: u64,
}

/// The proxy's packs: appends, and the live-byte accounting that decides which packs to delete.
/// It never calls into the disk index, so the index may call into it (lock order: index, then
/// this table).
pub struct Packs {
    dir: PathBuf,
    limit: u64,
    table: Mutex<Table>,
}

impl Packs {
    /// Registers the packs already in `dir` (no live bytes until [`Self::add_live`]), deleting
    /// empty ones. Returns them in sequence order, for the index scan. Appends go to a new pack.
    pub fn open(dir: PathBuf, limit: u64) -> io::Result<(Self, Existing)> {
        fs::create_dir_all(&dir)?;
        let mut packs = BTreeMap::new();
        let mut existing = Vec::new();
        let mut next_id = 0;
        for (id, path) in list(&dir)? {
            next_id = id + 1;
            let size = fs::metadata(&path)?.len();
            if size == 0 {
                let _ = fs::remove_file(&path);
                continue;
            }
            packs.insert(id, Pack { file: None, size, live: 0, tombstones: true });
            existing.push((id, path));
        }
        let table = Mutex::new(Table { packs, active: None, next_id });
        Ok((Self { dir, limit, table }, existing))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one record with one write; returns `(pack, offset)`. An entry's bytes count as
    /// live from here on. Starts a new pack when the record would take the active one past the
    /// limit.
    pub fn append(&self, record: &[u8], kind: Kind) -> io::Result<(u64, u64)> {
        let mut t = self.table();
        let id = self.active_with_room(&mut t, record.len() as u64)?;
        let offset = self.write_run(&mut t, id, record, record.len() as u64, kind)?;
        Ok((id, offset))
    }

    /// Appends entry records in order with one write per pack they land in, instead of one
    /// each: the disk writer hands over what gathered during its group delay, and a `pwrite`
    /// per entry was most of its system time. `records` holds them back to back, `lens` their
    /// lengths. Returns the `(pack, offset)` of each record written, in order, and the error
    /// that stopped the rest, if any.
    pub fn append_entries(&self, records: &[u8], lens: &[u64]) -> (Vec<(u64, u64)>, io::Result<()>) {
        debug_assert_eq!(lens.iter().sum::<u64>(), records.len() as u64);
        let mut t = self.table();
        let mut placed = Vec::with_capacity(lens.len());
        let (mut rest, mut bytes) = (lens, records);
        while let Some(&first) = rest.first() {
            let id = match self.active_with_room(&mut t, first) {
                Ok(id) => id,
                Err(e) => return (placed, Err(e)),
            };
            let room = self.limit.saturating_sub(t.packs[&id].size);
            // The first record always goes (a new pack takes even one over the limit).
            let (mut len, mut n) = (first, 1);
            while n < rest.len() && len + rest[n] <= room {
                len += rest[n];
                n += 1;
            }
            let (run, after) = bytes.split_at(len as usize);
            let mut at = match self.write_run(&mut t, id, run, len, Kind::Entry) {
                Ok(offset) => offset,
                Err(e) => return (placed, Err(e)),
            };
            for l in &rest[..n] {
                placed.push((id, at));
                at += l;
            }
            (rest, bytes) = (&rest[n..], after);
        }
        (placed, Ok(()))
    }

    /// The active pack if `len` more bytes fit in it, else a new one (the old one sealed).
    fn active_with_room(&self, t: &mut Table, len: u64) -> io::Result<u64> {
        if let Some(id) = t.active.filter(|id| t.packs.get(id).is_some_and(|p| p.size + len <= self.limit)) {
            return Ok(id);
        }
        self.seal(t);
        // The directory exists from `open`; one removed by hand is made again.
        let (id, file) = match create(&self.dir, t.next_id) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir)?;
                create(&self.dir, t.next_id)?
            }
            created => created?,
        };
        t.next_id = id + 1;
        t.active = Some(id);
        t.packs.insert(id, Pack { file: Some(Arc::new(file)), size: 0, live: 0, tombstones: false });
        Ok(id)
    }

    /// Writes `bytes` (whole records, `len` of them) at the end of active pack `id`; returns
    /// where they start.
    fn write_run(&self, t: &mut Table, id: u64, bytes: &[u8], len: u64, kind: Kind) -> io::Result<u64> {
        let pack = t.packs.get_mut(&id).expect("active pack is in the table");
        let offset = pack.size;
        // Counted whether or not the write completes: a failed write may leave part of it.
        pack.size += len;
        let file = pack.file.clone().expect("the active pack is open");
        if let Err(e) = file.write_all_at(bytes, offset) {
            self.seal(t); // never write after a possibly torn record
            return Err(e);
        }
        match kind {
            Kind::Entry => pack.live += len,
            Kind::Tombstone => pack.tombstones = true,
        }
        Ok(offset)
    }

    /// Ends appends to the active pack and closes it.
    fn seal(&self, t: &mut Table) {
        if let Some(p) = t.active.take().and_then(|id| t.packs.get_mut(&id)) {
            p.file = None;
        }
    }

    /// Pack `id` opened for reading, if it still exists. Opened outside the table's lock; a
    /// pack deleted meanwhile is simply not found, and one deleted after opening stays
    /// readable through the descriptor.
    pub fn file(&self, id: u64) -> Option<Arc<File>> {
        if let Some(active) = &self.table().packs.get(&id)?.file {
            return Some(active.clone());
        }
        File::open(pack_path(&self.dir, id)).ok().map(Arc::new)
    }

    /// Pack `id` opened for reading whether or not the table still has it: a pack that
    /// [`Self::reclaim`] took out is read until [`Self::delete`] removes it.
    pub fn open_taken(&self, id: u64) -> Option<File> {
        File::open(pack_path(&self.dir, id)).ok()
    }

    /// Counts `len` more live bytes in pack `id` (the index scan found a live record).
    pub fn add_live(&self, id: u64, len: u64) {
        if let Some(p) = self.table().packs.get_mut(&id) {
            p.live += len;
        }
    }

    /// Counts a record of pack `id` as dead: the index dropped or replaced it.
    pub fn sub_live(&self, id: u64, len: u64) {
        if let Some(p) = self.table().packs.get_mut(&id) {
            p.live = p.live.saturating_sub(len);
        }
    }

    /// While the dead bytes of sealed packs exceed `allowance`, takes out the sealed pack with
    /// the most dead bytes (the oldest of equals). Not simply the oldest: the index does not
    /// evict oldest first (quick_cache keeps the entries that filled it hot and evicts newer,
    /// cold ones), so the oldest packs may be all live, and taking them out freed nothing the
    /// index had let go of: a full cache of new keys dropped nearly every entry at once. The
    /// caller moves the index entries still in the packs taken to the active pack (dropping
    /// those it cannot move), then [`Self::delete`]s them.
    pub fn reclaim(&self, allowance: u64) -> Vec<Reclaimed> {
        let mut t = self.table();
        let active = t.active;
        let dead_in = |p: &Pack| p.size - p.live.min(p.size);
        let mut dead: u64 =
            t.packs.iter().filter(|(id, _)| Some(**id) != active).map(|(_, p)| dead_in(p)).sum();
        let mut taken = Vec::new();
        while dead > allowance {
            let Some(id) = t
                .packs
                .iter()
                .filter(|(id, _)| Some(**id) != active)
                .max_by_key(|(id, p)| (dead_in(p), Reverse(**id)))
                .map(|(id, _)| *id)
            else {
                break;
            };
            let p = t.packs.remove(&id).expect("listed");
            dead -= dead_in(&p);
            // Only a record in an older pack can be one of its tombstones' targets; older packs
            // taken in this same call are deleted first.
            let older_stays = t.packs.keys().next().is_some_and(|first| *first < id);
            taken.push(Reclaimed { id, keep_tombstones: p.tombstones && older_stays });
        }
        taken
    }

    /// The keys of the tombstones in pack `id`.
    pub fn tombstones(&self, id: u64) -> io::Result<Vec<KeyHash>> {
        let mut hashes = Vec::new();
        scan(&File::open(pack_path(&self.dir, id))?, |r| {
            if r.kind == Kind::Tombstone {
                hashes.push(r.hash);
            }
        })?;
        Ok(hashes)
    }

    /// Deletes the files of packs taken out by [`Self::reclaim`], oldest first: a crash
    /// in between never leaves an older pack's records without a newer pack's tombstones.
    pub fn delete(&self, mut ids: Vec<u64>) {
        ids.sort_unstable();
        for id in ids {
            if let Err(e) = fs::remove_file(pack_path(&self.dir, id)) {
                tracing::warn!(error = %e, pack = id, "cannot delete cache pack");
            }
        }
    }

    /// Bytes in all packs.
    pub fn bytes(&self) -> u64 {
        self.table().packs.values().map(|p| p.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::CacheKey;
    use crate::cache::meta::{from_millis, EntryKind};

    fn head(url: &str) -> StoredHead {
        StoredHead {
            kind: EntryKind::Response,
            key: url.into(),
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            request_time: from_millis(1),
            response_time: from_millis(2),
            reading: Default::default(),
        }
    }

    fn entry_record(hash: &KeyHash, encoded_head: &[u8], body: &[u8]) -> Vec<u8> {
        let mut rec = Vec::with_capacity(entry_record_len(encoded_head, body) as usize);
        push_entry_record(&mut rec, hash, encoded_head, body);
        rec
    }

    fn record(path: &str, body: &[u8]) -> (CacheKey, Vec<u8>) {
        let key = CacheKey::new("http", "h", 80, path);
        let rec = entry_record(key.hash(), &codec::encode_head(&head(key.url())), body);
        (key, rec)
    }

    fn scan_all(path: &Path) -> (Vec<Record>, ScanEnd) {
        let mut found = Vec::new();
        let end = scan(&File::open(path).unwrap(), |r| found.push(r)).unwrap();
        (found, end)
    }

    #[test]
    fn pack_numbers_stop_where_the_index_can_hold_them() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(create(dir.path(), MAX_PACK_ID).unwrap().0, MAX_PACK_ID);
        // The number is taken now: the next free one would be past the last.
        let err = create(dir.path(), MAX_PACK_ID).unwrap_err();
        assert!(err.to_string().contains("pack numbers used up"), "{err}");
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (packs, existing) = Packs::open(dir.path().into(), 1 << 20).unwrap();
        assert!(existing.is_empty());
        let (a, rec_a) = record("/a", b"alpha");
        let (b, rec_b) = record("/b", b"");
        let (pa, oa) = packs.append(&rec_a, Kind::Entry).unwrap();
        let (pb, ob) = packs.append(&rec_b, Kind::Entry).unwrap();
        assert_eq!((pa, oa, pb, ob), (0, 0, 0, rec_a.len() as u64));
        let file = packs.file(0).unwrap();
        let (h, body) = read_entry(&file, oa, rec_a.len() as u64, a.hash(), Some(a.url())).unwrap().unwrap();
        assert_eq!((h.key.as_str(), &body[..]), (a.url(), &b"alpha"[..]));
        let (_, body) = read_entry(&file, ob, rec_b.len() as u64, b.hash(), Some(b.url())).unwrap().unwrap();
        assert!(body.is_empty());
        // Another key's hash is a bad header; another URL with the same hash is a miss.
        assert!(read_entry(&file, oa, rec_a.len() as u64, b.hash(), None).is_err());
        assert!(read_entry(&file, oa, rec_a.len() as u64, a.hash(), Some("http://x/")).unwrap().is_none());
        let (found, end) = scan_all(&pack_path(dir.path(), 0));
        assert_eq!(found.len(), 2);
        assert_eq!(end.valid, end.len);
    }

    #[test]
    fn a_torn_tail_is_ignored_at_every_length_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let (first, rec1) = record("/first", b"kept body");
        let (_, rec2) = record("/torn", &[9u8; 300]);
        let path = pack_path(dir.path(), 7);
        for cut in 0..rec2.len() {
            let mut bytes = rec1.clone();
            bytes.extend_from_slice(&rec2[..cut]);
            fs::write(&path, &bytes).unwrap();
            let live = live_entries(dir.path()).unwrap();
            assert_eq!(live.len(), 1, "cut at {cut}");
            let l = &live[first.hash()];
            let file = File::open(&path).unwrap();
            let got = read_entry(&file, l.record.offset, l.record.len, first.hash(), Some(first.url()));
            assert_eq!(&got.unwrap().unwrap().1[..], b"kept body", "cut at {cut}");
            // The proxy's own scan agrees and counts the tail as dead space.
            let (packs, existing) = Packs::open(dir.path().into(), 1 << 20).unwrap();
            assert_eq!(existing.len(), 1);
            assert_eq!(
                scan(&File::open(&existing[0].1).unwrap(), |_| {}).unwrap(),
                ScanEnd { valid: rec1.len() as u64, len: (rec1.len() + cut) as u64 }
            );
            // New records go to a new pack, never after the torn tail.
            let (id, offset) = packs.append(&rec1, Kind::Entry).unwrap();
            assert_eq!((id, offset), (8, 0));
            fs::remove_file(pack_path(dir.path(), 8)).unwrap();
        }
    }

    #[test]
    fn a_tombstone_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (gone, rec) = record("/gone", b"x");
        let (kept, rec_kept) = record("/kept", b"y");
        {
            let (packs, _) = Packs::open(dir.path().into(), 1 << 20).unwrap();
            packs.append(&rec, Kind::Entry).unwrap();
            packs.append(&rec_kept, Kind::Entry).unwrap();
            packs.append(&tombstone_record(gone.hash()), Kind::Tombstone).unwrap();
        }
        let live = live_entries(dir.path()).unwrap();
        assert!(!live.contains_key(gone.hash()));
        assert!(live.contains_key(kept.hash()));
        // A tool's tombstones in a new pack remove the rest.
        write_tombstones(dir.path(), &[*kept.hash()]).unwrap();
        assert!(live_entries(dir.path()).unwrap().is_empty());
        assert_eq!(list(dir.path()).unwrap().iter().map(|(id, _)| *id).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_flipped_byte_anywhere_in_an_entry_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (key, rec) = record("/rot", b"some body bytes");
        let path = dir.path().join("p");
        for at in 0..rec.len() {
            let mut bad = rec.clone();
            bad[at] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            let file = File::open(&path).unwrap();
            let got = read_entry(&file, 0, rec.len() as u64, key.hash(), Some(key.url()));
            assert!(got.is_err(), "flip at {at} not detected");
        }
    }

    fn taken(id: u64) -> Reclaimed {
        Reclaimed { id, keep_tombstones: false }
    }

    #[test]
    fn packs_rotate_at_the_limit_and_the_deadest_sealed_pack_is_reclaimed_first() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = record("/r", &[1u8; 1000]);
        let limit = rec.len() as u64 * 3;
        let (packs, _) = Packs::open(dir.path().into(), limit).unwrap();
        let placed: Vec<(u64, u64)> = (0..7).map(|_| packs.append(&rec, Kind::Entry).unwrap()).collect();
        assert_eq!(placed.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1, 2]);
        assert_eq!(list(dir.path()).unwrap().len(), 3);
        assert!(packs.reclaim(0).is_empty(), "all live");
        // Pack 1 dies entirely, the older pack 0 only in part: pack 1 goes first.
        for _ in 0..3 {
            packs.sub_live(1, rec.len() as u64);
        }
        packs.sub_live(0, rec.len() as u64);
        assert_eq!(packs.reclaim(4 * rec.len() as u64), []);
        assert_eq!(packs.reclaim(3 * rec.len() as u64), [taken(1)]);
        assert_eq!(packs.bytes(), 4 * rec.len() as u64, "taken out of the table at once");
        assert_eq!(list(dir.path()).unwrap().len(), 3, "the file stays until deleted");
        packs.delete(vec![1]);
        // Of equally dead packs the oldest goes first; the active pack never does.
        packs.sub_live(2, rec.len() as u64);
        assert_eq!(packs.reclaim(0), [taken(0)]);
        packs.delete(vec![0]);
        assert_eq!(list(dir.path()).unwrap().iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2]);
        assert_eq!(packs.bytes(), rec.len() as u64);
    }

    #[test]
    fn a_pack_taken_before_an_older_one_hands_over_its_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let (key, rec) = record("/t", &[1u8; 1000]);
        let len = rec.len() as u64;
        let (packs, _) = Packs::open(dir.path().into(), 3 * len).unwrap();
        for _ in 0..3 {
            packs.append(&rec, Kind::Entry).unwrap();
        }
        // Pack 1: a tombstone for a record of pack 0, then two entries; pack 2 is active.
        assert_eq!(packs.append(&tombstone_record(key.hash()), Kind::Tombstone).unwrap().0, 1);
        assert_eq!(packs.append(&rec, Kind::Entry).unwrap().0, 1);
        assert_eq!(packs.append(&rec, Kind::Entry).unwrap().0, 1);
        assert_eq!(packs.append(&rec, Kind::Entry).unwrap().0, 2);
        packs.sub_live(1, 2 * len);
        assert_eq!(packs.reclaim(0), [Reclaimed { id: 1, keep_tombstones: true }]);
        assert_eq!(packs.tombstones(1).unwrap(), [*key.hash()]);
        packs.delete(vec![1]);
        // Pack 2 gets a tombstone and is sealed; once pack 0 goes with it, it guards nothing.
        assert_eq!(packs.append(&tombstone_record(key.hash()), Kind::Tombstone).unwrap().0, 2);
        assert_eq!(packs.append(&rec, Kind::Entry).unwrap().0, 2);
        assert_eq!(packs.append(&rec, Kind::Entry).unwrap().0, 3);
        packs.sub_live(0, 3 * len);
        packs.sub_live(2, 2 * len);
        assert_eq!(packs.reclaim(0), [taken(0), taken(2)]);
    }

    #[test]
    fn a_group_is_one_run_per_pack_in_order_and_each_record_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<(CacheKey, Vec<u8>)> =
            (0..7u8).map(|i| record(&format!("/g{i}"), &[i; 1000])).collect();
        let limit = recs[0].1.len() as u64 * 3;
        let (packs, _) = Packs::open(dir.path().into(), limit).unwrap();
        packs.append(&recs[0].1, Kind::Entry).unwrap();
        let group: Vec<u8> = recs[1..].iter().flat_map(|(_, r)| r.clone()).collect();
        let lens: Vec<u64> = recs[1..].iter().map(|(_, r)| r.len() as u64).collect();
        let (placed, written) = packs.append_entries(&group, &lens);
        written.unwrap();
        // Two more fit beside the first record, three fill the next pack, the last one starts a third.
        assert_eq!(placed.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 0, 1, 1, 1, 2]);
        let len = recs[0].1.len() as u64;
        assert_eq!(placed.iter().map(|p| p.1).collect::<Vec<_>>(), [len, 2 * len, 0, len, 2 * len, 0]);
        for (id, _) in list(dir.path()).unwrap() {
            let (found, end) = scan_all(&pack_path(dir.path(), id));
            assert_eq!(end.valid, end.len, "pack {id} is whole records");
            assert_eq!(found.len(), if id == 2 { 1 } else { 3 });
        }
        for (i, ((key, rec), (id, offset))) in recs[1..].iter().zip(&placed).enumerate() {
            let file = packs.file(*id).unwrap();
            let (head, body) =
                read_entry(&file, *offset, rec.len() as u64, key.hash(), Some(key.url())).unwrap().unwrap();
            assert_eq!(head.key, key.url());
            assert_eq!(&body[..], &[i as u8 + 1; 1000][..]);
        }
        assert_eq!(packs.bytes(), 7 * len);
        let (none, written) = packs.append_entries(&[], &[]);
        assert!(none.is_empty() && written.is_ok());
    }
}
