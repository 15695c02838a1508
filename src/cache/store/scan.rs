//! Reading a cache directory entry by entry, with or without a proxy running on it: the
//! listing and purges of the admin API and the `cache` subcommands. Only whole files are
//! read or removed (entries are immutable and renamed into place), so a concurrent proxy
//! never sees a half-removed entry.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::codec::{self, DecodeError, PREFIX_LEN, TRAILER_LEN};
use crate::cache::key::{parse_hex, KeyHash};
use crate::cache::meta::StoredHead;

/// An entry file found in a cache directory.
#[derive(Clone, Debug)]
pub struct EntryFile {
    /// Its path.
    pub path: PathBuf,
    /// The key hash its name spells.
    pub hash: KeyHash,
    /// File size in bytes.
    pub size: u64,
}

/// Every entry file under `dir` (`<2 hex>/<64 hex>`), sorted by hash. Anything else is left
/// out (the `tmp/` directory, stray files).
pub fn entry_files(dir: &Path) -> io::Result<Vec<EntryFile>> {
    let mut found = Vec::new();
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
                found.push(EntryFile { path: file.path(), hash, size: meta.len() });
            }
        }
    }
    found.sort_by_key(|f| f.hash);
    Ok(found)
}

/// Reads and checks an entry's head (not its body).
pub fn read_head(path: &Path) -> Result<StoredHead, DecodeError> {
    let file = File::open(path).map_err(|_| DecodeError::Truncated)?;
    head_of(&file).map(|(head, _)| head)
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

/// Checks a whole entry: head checksum, that the key hashes to the file's name, lengths, and
/// the body checksum (read in 256 KiB pieces).
pub fn verify(file: &EntryFile) -> Result<StoredHead, DecodeError> {
    let f = File::open(&file.path).map_err(|_| DecodeError::Truncated)?;
    let (head, body_offset) = head_of(&f)?;
    if blake3::hash(head.key.as_bytes()).as_bytes() != &file.hash {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::CacheKey;
    use crate::cache::meta::{from_millis, EntryKind};
    use crate::cache::store::disk::DiskStore;

    #[test]
    fn finds_verifies_and_rejects_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 1 << 20).unwrap();
        for path in ["/a", "/b"] {
            let key = CacheKey::new("http", "h", 80, path);
            let head = StoredHead {
                kind: EntryKind::Response,
                key: key.url().into(),
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                request_time: from_millis(1),
                response_time: from_millis(2),
            };
            store.write_whole(&key, &head, b"body bytes").unwrap();
        }
        std::fs::write(dir.path().join("00").join("not-an-entry"), b"x").unwrap();
        let files = entry_files(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| verify(f).is_ok()));
        // Flip one body byte: the body checksum catches it.
        let victim = &files[0];
        let mut bytes = std::fs::read(&victim.path).unwrap();
        let at = bytes.len() - TRAILER_LEN as usize - 1;
        bytes[at] ^= 1;
        std::fs::write(&victim.path, bytes).unwrap();
        assert_eq!(verify(victim).unwrap_err(), DecodeError::Checksum("body"));
        assert!(read_head(&victim.path).is_ok(), "the head is still intact");
    }
}
