//! A cache directory seen from outside: entry files (`<2 hex>/<64 hex>`, large entries) and
//! pack records (`packs/<16 hex>.pack`, small entries), parsed here independently of the
//! proxy's code so tests check the on-disk format, not the code against itself.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The key hash the proxy stores `key` under (BLAKE3 of the key).
pub fn key_hash(key: &str) -> [u8; 32] {
    *blake3::hash(key.as_bytes()).as_bytes()
}

/// Entry files: `<dir>/<2 hex>/<64 hex>`.
pub fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(dir) else { return out };
    for shard in shards.flatten() {
        let name = shard.file_name().to_string_lossy().into_owned();
        if !is_hex(&name, 2) || !shard.path().is_dir() {
            continue;
        }
        for f in fs::read_dir(shard.path()).unwrap().flatten() {
            if is_hex(&f.file_name().to_string_lossy(), 64) {
                out.push(f.path());
            }
        }
    }
    out
}

/// Pack files in sequence order.
pub fn pack_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join("packs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.strip_suffix(".pack").is_some_and(|stem| is_hex(stem, 16))
        })
        .collect();
    out.sort();
    out
}

/// A record in a pack.
#[derive(Clone, Debug)]
pub struct PackRecord {
    /// The pack.
    pub path: PathBuf,
    /// Offset of the record header.
    pub offset: u64,
    /// Bytes of the record, header included.
    pub len: u64,
    /// The key hash.
    pub hash: [u8; 32],
    /// Whether it is a tombstone.
    pub tombstone: bool,
}

/// Record header: "HCP1", u32 len, 32-byte hash, kind (1 entry, 2 tombstone), crc32.
pub const RECORD_HEADER: u64 = 45;

/// Every whole record of every pack, in order (a pack's scan stops at a bad header or a record
/// running past the end, as the proxy's does).
pub fn pack_records(dir: &Path) -> Vec<PackRecord> {
    let mut out = Vec::new();
    for path in pack_files(dir) {
        let Ok(bytes) = fs::read(&path) else { continue };
        let mut pos = 0usize;
        while pos + RECORD_HEADER as usize <= bytes.len() {
            let h = &bytes[pos..pos + RECORD_HEADER as usize];
            if &h[..4] != b"HCP1" || crc32fast::hash(&h[..41]).to_le_bytes() != h[41..45] {
                break;
            }
            let len = RECORD_HEADER + u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
            if pos as u64 + len > bytes.len() as u64 {
                break;
            }
            let hash = h[8..40].try_into().unwrap();
            out.push(PackRecord { path: path.clone(), offset: pos as u64, len, hash, tombstone: h[40] == 2 });
            pos += len as usize;
        }
    }
    out
}

/// The live record of `key`: its latest record, unless that is a tombstone.
pub fn packed_entry(dir: &Path, key: &str) -> Option<PackRecord> {
    let hash = key_hash(key);
    pack_records(dir).into_iter().rfind(|r| r.hash == hash).filter(|r| !r.tombstone)
}

/// Live packed entries and entry files: how many entries the directory holds.
pub fn stored_entries(dir: &Path) -> usize {
    let mut live = std::collections::HashMap::new();
    for r in pack_records(dir) {
        live.insert(r.hash, !r.tombstone);
    }
    live.values().filter(|l| **l).count() + entry_files(dir).len()
}

/// Bytes of entry files and packs: what counts against `--cache-size`.
pub fn disk_bytes(dir: &Path) -> u64 {
    let len = |p: &PathBuf| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    entry_files(dir).iter().map(len).sum::<u64>() + pack_files(dir).iter().map(len).sum::<u64>()
}

/// Where the body of an entry in the codec format lies within `bytes`: `(offset, len)`, from
/// its prefix and trailer, checking the layout on the way.
pub fn body_span_in(bytes: &[u8]) -> (u64, u64) {
    assert_eq!(&bytes[..4], b"HCE1");
    let head_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as u64;
    let n = bytes.len();
    assert_eq!(&bytes[n - 4..], b"HCT1");
    let body_len = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap());
    let offset = 8 + head_len + 4;
    assert_eq!(offset + body_len + 16, n as u64, "entry layout");
    (offset, body_len)
}

/// Where the body of a packed entry lies in its pack: `(offset, len)`.
pub fn record_body_span(r: &PackRecord) -> (u64, u64) {
    let f = fs::File::open(&r.path).unwrap();
    let mut entry = vec![0u8; (r.len - RECORD_HEADER) as usize];
    f.read_exact_at(&mut entry, r.offset + RECORD_HEADER).unwrap();
    let (offset, len) = body_span_in(&entry);
    (r.offset + RECORD_HEADER + offset, len)
}
