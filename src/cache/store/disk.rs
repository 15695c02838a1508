//! The persistent disk tier: one immutable file per entry under `--cache-dir`.
//!
//! Layout: `<dir>/<first two hex digits>/<64 hex digits>` for entries and `<dir>/tmp/` for
//! entries being written. A writer fills a temporary file and renames it into place only when
//! it is complete, so a visible file is always whole; every read checks the head and body
//! checksums (see [`super::codec`]), so torn or rotted files are dropped and counted.
//!
//! The index (hash -> size) exists for eviction only: a lookup opens the file named by the
//! key's hash, so the proxy serves warm hits before the index has finished loading. The index
//! is rebuilt on start by a background scan of the directory.
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
use std::sync::Arc;

use bytes::Bytes;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use super::codec::{self, DecodeError, PREFIX_LEN, TRAILER_LEN};
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

#[derive(Clone)]
struct SizeWeighter;

impl Weighter<KeyHash, u64> for SizeWeighter {
    fn weight(&self, _key: &KeyHash, size: &u64) -> u64 {
        (*size).max(1)
    }
}

/// Deletes an entry's file when the index evicts it.
#[derive(Clone)]
struct DeleteEvicted {
    dir: Arc<PathBuf>,
    stats: Arc<DiskStats>,
}

impl Lifecycle<KeyHash, u64> for DeleteEvicted {
    /// The key an insert replaces: quick_cache reports the replaced value through `on_evict`,
    /// but its file has just been replaced by the new one, which must stay.
    type RequestState = Option<KeyHash>;

    fn on_evict(&self, replacing: &mut Option<KeyHash>, key: KeyHash, _size: u64) {
        if *replacing == Some(key) {
            return;
        }
        self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        let _ = fs::remove_file(entry_path(&self.dir, &key));
    }
}

type Index = QuickCache<KeyHash, u64, SizeWeighter, DefaultHashBuilder, DeleteEvicted>;

/// The disk tier.
pub struct DiskStore {
    dir: Arc<PathBuf>,
    tmp_dir: PathBuf,
    index: Index,
    index_loaded: AtomicBool,
    writes_failing: AtomicBool,
    next_tmp: AtomicU64,
    stats: Arc<DiskStats>,
}

/// Where the entry of `hash` lives under `dir`.
pub fn entry_path(dir: &Path, hash: &KeyHash) -> PathBuf {
    let name = hex(hash);
    dir.join(&name[..2]).join(name)
}

impl DiskStore {
    /// Opens (creating if needed) a cache directory bounded to `capacity` bytes, clears
    /// leftovers of interrupted writes, and starts loading the index in the background.
    pub fn open(dir: &Path, capacity: u64) -> io::Result<Arc<Self>> {
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
        let dir = Arc::new(dir.to_path_buf());
        let stats = Arc::new(DiskStats::default());
        let lifecycle = DeleteEvicted { dir: dir.clone(), stats: stats.clone() };
        // One shard: a shard's share of the capacity bounds the largest entry, and the disk
        // index is touched only on disk operations, so contention does not matter here.
        let options = OptionsBuilder::new()
            .estimated_items_capacity(4096)
            .weight_capacity(capacity.max(1))
            .shards(1)
            .build()
            .map_err(|e| io::Error::other(format!("cache index options: {e:?}")))?;
        let index = QuickCache::with_options(options, SizeWeighter, DefaultHashBuilder::default(), lifecycle);
        let store = Arc::new(Self {
            dir,
            tmp_dir,
            index,
            index_loaded: AtomicBool::new(false),
            writes_failing: AtomicBool::new(false),
            next_tmp: AtomicU64::new(0),
            stats,
        });
        let loader = store.clone();
        std::thread::Builder::new().name("cache-index".into()).spawn(move || loader.load_index())?;
        Ok(store)
    }

    /// Scans the directory and fills the index. Only names of our own layout are considered;
    /// anything else in the directory is left alone.
    fn load_index(&self) {
        let started = std::time::Instant::now();
        let mut found = 0u64;
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
                    if self.index.peek(&hash).is_none() {
                        self.index.insert(hash, meta.len());
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
            "disk cache index loaded"
        );
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

    /// Counters.
    pub fn stats(&self) -> &DiskStats {
        &self.stats
    }

    /// Whether `key` may have an entry: false only when the loaded index knows it does not.
    /// Cheap and non-blocking, so misses skip the trip to a blocking thread.
    pub fn may_contain(&self, key: &CacheKey) -> bool {
        !self.index_loaded() || self.index.peek(key.hash()).is_some()
    }

    /// Writes a complete entry in one go (small bodies, whose fill kept them in memory).
    pub fn write_whole(self: &Arc<Self>, key: &CacheKey, head: &StoredHead, body: &[u8]) -> io::Result<()> {
        let mut w = self.writer(key, head)?;
        w.write(body)?;
        w.finish()
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
        if self.index_loaded() && self.index.get(key.hash()).is_none() {
            return None;
        }
        let path = entry_path(&self.dir, key.hash());
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot open cache entry");
                return None;
            }
        };
        match read_entry(file, key, inline_max) {
            Ok(Some(entry)) => Some(entry),
            Ok(None) => None, // another key with the same hash: a miss, not corruption
            Err(e) => {
                self.drop_corrupt(key.hash(), &e);
                None
            }
        }
    }

    /// Removes a file that failed a check.
    pub fn drop_corrupt(&self, hash: &KeyHash, why: &dyn std::fmt::Display) {
        self.stats.corrupt_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(entry = %hex(hash), reason = %why, "dropping corrupt cache entry");
        self.remove(hash);
    }

    /// Removes an entry (no error if it does not exist).
    pub fn remove(&self, hash: &KeyHash) {
        self.index.remove(hash);
        let _ = fs::remove_file(entry_path(&self.dir, hash));
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
        let size = self.body_offset + self.written + TRAILER_LEN;
        self.store.index.insert_with_lifecycle(self.hash, size, &mut Some(self.hash));
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
        let store = DiskStore::open(dir.path(), 1 << 20).unwrap();
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
        let store = DiskStore::open(dir.path(), 64 * 1024).unwrap();
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
}
