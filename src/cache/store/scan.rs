//! Reading a cache directory entry by entry, with or without a proxy running on it: the
//! listing and purges of the admin API and the `cache` subcommands. Entry files are only read
//! or removed whole (they are immutable and renamed into place); packs are only read, and
//! packed entries are removed by tombstones in a new pack of their own, so a concurrent proxy
//! never sees a half-removed entry and nothing is appended to a pack it may be writing.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::codec::{self, DecodeError, PREFIX_LEN, TRAILER_LEN};
use super::pack;
use crate::cache::key::{parse_hex, KeyHash};
use crate::cache::meta::StoredHead;

/// Where a found entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Its own file (`path`).
    File,
    /// A record in the pack `path`.
    Pack {
        /// The record's offset.
        offset: u64,
    },
}

/// An entry found in a cache directory.
#[derive(Clone, Debug)]
pub struct EntryFile {
    /// Its file: the entry file, or the pack holding it.
    pub path: PathBuf,
    /// The key hash it is stored under.
    pub hash: KeyHash,
    /// Bytes it takes (the file, or the pack record).
    pub size: u64,
    /// File or pack record.
    pub place: Place,
}

impl std::fmt::Display for EntryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.place {
            Place::File => write!(f, "{}", self.path.display()),
            Place::Pack { offset } => write!(f, "{} at {offset}", self.path.display()),
        }
    }
}

/// Every entry under `dir`, sorted by hash: the live records of the packs (the latest of
/// their hash, not a tombstone) and the entry files (`<2 hex>/<64 hex>`). Anything else is
/// left out (the `tmp/` directory, stray files). A hash found both in a pack and as a file
/// (after a crash at the wrong moment) is listed twice, so a purge removes both.
pub fn entry_files(dir: &Path) -> io::Result<Vec<EntryFile>> {
    let mut found: Vec<EntryFile> = pack::live_entries(&pack::packs_dir(dir))?
        .into_values()
        .map(|l| EntryFile {
            path: l.path,
            hash: l.record.hash,
            size: l.record.len,
            place: Place::Pack { offset: l.record.offset },
        })
        .collect();
    for shard in fs::read_dir(dir)?.flatten() {
        let name = shard.file_name();
        let is_shard =
            name.to_str().is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()));
        if !is_shard || !shard.path().is_dir() {
            continue;
        }
        let Ok(files) = fs::read_dir(shard.path()) else { continue };
        for file in files.flatten() {
            let Some(hash) = file.file_name().to_str().and_then(parse_hex) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            if meta.is_file() {
                found.push(EntryFile { path: file.path(), hash, size: meta.len(), place: Place::File });
            }
        }
    }
    found.sort_by_key(|f| f.hash);
    Ok(found)
}

/// Reads and checks an entry's head (for a packed entry, all of it: it is small).
pub fn read_head(entry: &EntryFile) -> Result<StoredHead, DecodeError> {
    let file = File::open(&entry.path).map_err(|_| DecodeError::Truncated)?;
    match entry.place {
        Place::File => head_of(&file).map(|(head, _)| head),
        Place::Pack { .. } => read_packed(&file, entry),
    }
}

fn read_packed(file: &File, entry: &EntryFile) -> Result<StoredHead, DecodeError> {
    let Place::Pack { offset } = entry.place else { return Err(DecodeError::Malformed("not packed")) };
    let (head, _) =
        pack::read_entry(file, offset, entry.size, &entry.hash, None)?.ok_or(DecodeError::Truncated)?;
    Ok(head)
}

fn head_of(file: &File) -> Result<(StoredHead, u64), DecodeError> {
    let io_err = |_| DecodeError::Truncated;
    let mut prefix = [0u8; PREFIX_LEN as usize];
    file.read_exact_at(&mut prefix, 0).map_err(io_err)?;
    let head_len = codec::decode_prefix(&prefix)? as u64;
    let mut buf = vec![0u8; head_len as usize + 4];
    file.read_exact_at(&mut buf, PREFIX_LEN).map_err(io_err)?;
    Ok((codec::decode_head(&buf)?, PREFIX_LEN + head_len + 4))
}

/// Checks a whole entry: head checksum, that the key hashes to the name it is stored under,
/// lengths, and the body checksum (read in 256 KiB pieces).
pub fn verify(entry: &EntryFile) -> Result<StoredHead, DecodeError> {
    let f = File::open(&entry.path).map_err(|_| DecodeError::Truncated)?;
    if let Place::Pack { .. } = entry.place {
        let head = read_packed(&f, entry)?;
        if blake3::hash(head.key.as_bytes()).as_bytes() != &entry.hash {
            return Err(DecodeError::Malformed("key does not match the record's hash"));
        }
        return Ok(head);
    }
    let (head, body_offset) = head_of(&f)?;
    if blake3::hash(head.key.as_bytes()).as_bytes() != &entry.hash {
        return Err(DecodeError::Malformed("key does not match the file name"));
    }
    let len = f.metadata().map_err(|_| DecodeError::Truncated)?.len();
    if len < body_offset + TRAILER_LEN {
        return Err(DecodeError::Truncated);
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    f.read_exact_at(&mut trailer, len - TRAILER_LEN).map_err(|_| DecodeError::Truncated)?;
    let (body_len, crc) = codec::decode_trailer(&trailer)?;
    if body_offset + body_len + TRAILER_LEN != len {
        return Err(DecodeError::Malformed("length"));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0;
    while pos < body_len {
        let n = (body_len - pos).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], body_offset + pos).map_err(|_| DecodeError::Truncated)?;
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    if hasher.finalize() != crc {
        return Err(DecodeError::Checksum("body"));
    }
    Ok(head)
}

/// Removes entries: unlinks entry files, and writes tombstones for packed ones into a new
/// pack (never appending to a pack a running proxy may be writing). Returns how many were
/// removed; a file already gone (a proxy evicted it) counts as removed. Errors are printed.
pub fn remove(dir: &Path, entries: &[&EntryFile]) -> usize {
    let mut removed = 0;
    let mut packed: Vec<KeyHash> = Vec::new();
    for e in entries {
        match e.place {
            Place::Pack { .. } => packed.push(e.hash),
            Place::File => match fs::remove_file(&e.path) {
                Ok(()) => removed += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => removed += 1,
                Err(err) => eprintln!("cannot remove {}: {err}", e.path.display()),
            },
        }
    }
    packed.sort();
    packed.dedup();
    match pack::write_tombstones(&pack::packs_dir(dir), &packed) {
        Ok(()) => removed += entries.iter().filter(|e| e.place != Place::File).count(),
        Err(err) => eprintln!("cannot write tombstones in {}: {err}", pack::packs_dir(dir).display()),
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::CacheKey;
    use crate::cache::meta::{from_millis, EntryKind};
    use crate::cache::store::disk::DiskStore;

    #[test]
    fn finds_verifies_and_rejects_entries() {
        let dir = tempfile::tempdir().unwrap();
        // Big enough for packs: "/a" and "/b" are packed, "/c" is a file.
        let store = DiskStore::open(dir.path(), 4 << 20, 4 << 20).unwrap();
        for path in ["/a", "/b", "/c"] {
            let key = CacheKey::new("http", "h", 80, path);
            let head = StoredHead {
                kind: EntryKind::Response,
                key: key.url().into(),
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                request_time: from_millis(1),
                response_time: from_millis(2),
                reading: Default::default(),
            };
            let body = if path == "/c" { vec![b'c'; 300 * 1024] } else { b"body bytes".to_vec() };
            store.write_whole(&key, &head, &body).unwrap();
        }
        drop(store);
        std::fs::write(dir.path().join("00").join("not-an-entry"), b"x").unwrap();
        std::fs::write(dir.path().join("packs").join("notes.pack.txt"), b"x").unwrap();
        let files = entry_files(dir.path()).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files.iter().filter(|f| f.place == Place::File).count(), 1);
        assert!(files.iter().all(|f| verify(f).is_ok()));
        // A packed entry's body byte flipped: caught the same way.
        let packed = files.iter().find(|f| f.place != Place::File).unwrap();
        let Place::Pack { offset } = packed.place else { unreachable!() };
        let mut bytes = std::fs::read(&packed.path).unwrap();
        bytes[(offset + packed.size - TRAILER_LEN - 1) as usize] ^= 1;
        std::fs::write(&packed.path, bytes).unwrap();
        assert_eq!(verify(packed).unwrap_err(), DecodeError::Checksum("body"));
        // Removing it writes a tombstone in a new pack; the other packed entry stays.
        assert_eq!(remove(dir.path(), &[packed]), 1);
        let left = entry_files(dir.path()).unwrap();
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|f| f.hash != packed.hash && verify(f).is_ok()));
        assert_eq!(pack::list(&pack::packs_dir(dir.path())).unwrap().len(), 2);
        let files: Vec<_> = left.into_iter().filter(|f| f.place == Place::File).collect();
        // Flip one body byte: the body checksum catches it.
        let victim = &files[0];
        let mut bytes = std::fs::read(&victim.path).unwrap();
        let at = bytes.len() - TRAILER_LEN as usize - 1;
        bytes[at] ^= 1;
        std::fs::write(&victim.path, bytes).unwrap();
        assert_eq!(verify(victim).unwrap_err(), DecodeError::Checksum("body"));
        assert!(read_head(victim).is_ok(), "the head is still intact");
    }
}
