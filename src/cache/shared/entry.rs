//! How one cache entry is laid out in Redis: key names and the metadata record.
//!
//! ```text
//! hc:{<hash>}:m               metadata: "HCS1" | u64 generation | u32 chunks | u64 body_len
//!                             | u32 crc32(body) | disk-format head (codec::encode_head)
//! hc:{<hash>}:b:<gen>:<i>     body chunk i of generation gen (at most CHUNK_SIZE bytes)
//! hc:{<hash>}:lease           the fleet-wide fetch lease (SET NX PX)
//! ```
//! The `{<hash>}` hash tag puts every key of an entry in one Redis Cluster slot (so one node
//! serves the whole entry and multi-key commands work), while different entries spread over
//! the cluster. Chunks are written first and the metadata last, under a fresh generation: a
//! reader that finds metadata finds a complete upload, and checks its length and checksum.

use bytes::Bytes;

use crate::cache::key::{hex, KeyHash};
use crate::cache::meta::StoredHead;
use crate::cache::store::codec::{self, DecodeError, PREFIX_LEN};

/// Largest body chunk: big bodies never block Redis with one huge value.
pub const CHUNK_SIZE: usize = 512 * 1024;

const MAGIC: &[u8; 4] = b"HCS1";
const FIXED_LEN: usize = 4 + 8 + 4 + 8 + 4;

/// The Redis key names of one entry.
pub struct EntryKeys {
    tag: String,
}

impl EntryKeys {
    /// The keys of the entry stored under `hash`.
    pub fn new(hash: &KeyHash) -> Self {
        Self { tag: format!("hc:{{{}}}", hex(hash)) }
    }

    /// The metadata key.
    pub fn meta(&self) -> String {
        format!("{}:m", self.tag)
    }

    /// The key of chunk `index` of upload `generation`.
    pub fn chunk(&self, generation: u64, index: u32) -> String {
        format!("{}:b:{generation:016x}:{index}", self.tag)
    }

    /// The lease key for a fleet-wide fetch.
    pub fn lease(&self) -> String {
        format!("{}:lease", self.tag)
    }
}

/// The metadata record of one upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// Upload generation: names the chunks, so two uploads of one entry never mix.
    pub generation: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// Body length in bytes.
    pub body_len: u64,
    /// CRC-32 of the whole body.
    pub body_crc: u32,
}

impl Meta {
    /// The metadata for `body` uploaded as `generation`.
    pub fn for_body(generation: u64, body: &[u8]) -> Self {
        Meta {
            generation,
            chunks: body.len().div_ceil(CHUNK_SIZE) as u32,
            body_len: body.len() as u64,
            body_crc: crc32fast::hash(body),
        }
    }

    /// Encodes the record with `head`.
    pub fn encode(&self, head: &StoredHead) -> Vec<u8> {
        let head = codec::encode_head(head);
        let mut out = Vec::with_capacity(FIXED_LEN + head.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out.extend_from_slice(&self.body_len.to_le_bytes());
        out.extend_from_slice(&self.body_crc.to_le_bytes());
        out.extend_from_slice(&head);
        out
    }

    /// Decodes a record written by [`Meta::encode`].
    pub fn decode(buf: &[u8]) -> Result<(Meta, StoredHead), DecodeError> {
        if buf.len() < FIXED_LEN + PREFIX_LEN as usize {
            return Err(DecodeError::Truncated);
        }
        if &buf[..4] != MAGIC {
            return Err(DecodeError::Malformed("shared magic"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap_or_default());
        let meta =
            Meta { generation: u64_at(4), chunks: u32_at(12), body_len: u64_at(16), body_crc: u32_at(24) };
        if meta.chunks as u64 != meta.body_len.div_ceil(CHUNK_SIZE as u64) {
            return Err(DecodeError::Malformed("chunk count"));
        }
        let rest = &buf[FIXED_LEN..];
        let head_len = codec::decode_prefix(rest)? as usize;
        let head = rest
            .get(PREFIX_LEN as usize..PREFIX_LEN as usize + head_len + 4)
            .ok_or(DecodeError::Truncated)?;
        Ok((meta, codec::decode_head(head)?))
    }

    /// Checks reassembled chunks against the record.
    pub fn verify(&self, body: &[u8]) -> Result<(), DecodeError> {
        if body.len() as u64 != self.body_len {
            return Err(DecodeError::Truncated);
        }
        if crc32fast::hash(body) != self.body_crc {
            return Err(DecodeError::Checksum("shared body"));
        }
        Ok(())
    }
}

/// Splits a body into chunks without copying.
pub fn chunks(body: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..body.len()).step_by(CHUNK_SIZE).map(move |at| body.slice(at..(at + CHUNK_SIZE).min(body.len())))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::cache::meta::EntryKind;

    fn head() -> StoredHead {
        let mut headers = http::HeaderMap::new();
        headers.insert("cache-control", "max-age=60".parse().unwrap());
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        StoredHead {
            kind: EntryKind::Response,
            key: "http://a:80/x".into(),
            status: http::StatusCode::OK,
            headers,
            request_time: t,
            response_time: t + Duration::from_millis(5),
            reading: Default::default(),
        }
    }

    #[test]
    fn meta_round_trips_with_head() {
        let body = vec![7u8; CHUNK_SIZE * 2 + 10];
        let meta = Meta::for_body(42, &body);
        assert_eq!(meta.chunks, 3);
        let (back, h) = Meta::decode(&meta.encode(&head())).unwrap();
        assert_eq!(back, meta);
        assert_eq!(h.key, "http://a:80/x");
        assert_eq!(h.headers["cache-control"], "max-age=60");
        assert!(h.response_time > SystemTime::UNIX_EPOCH);
        back.verify(&body).unwrap();
    }

    #[test]
    fn verify_refuses_short_or_altered_bodies() {
        let body = vec![1u8; 1000];
        let meta = Meta::for_body(1, &body);
        assert_eq!(meta.verify(&body[..999]), Err(DecodeError::Truncated));
        let mut altered = body.clone();
        altered[500] = 2;
        assert_eq!(meta.verify(&altered), Err(DecodeError::Checksum("shared body")));
    }

    #[test]
    fn decode_refuses_garbage_and_truncation() {
        let enc = Meta::for_body(1, b"abc").encode(&head());
        assert!(Meta::decode(&enc[..enc.len() - 1]).is_err());
        assert!(Meta::decode(b"nope").is_err());
        let mut bad = enc.clone();
        bad[12] = 9; // chunk count no longer matches the length
        assert_eq!(Meta::decode(&bad).err(), Some(DecodeError::Malformed("chunk count")));
    }

    #[test]
    fn chunks_cover_the_body_in_order() {
        let body = Bytes::from((0..(CHUNK_SIZE * 2 + 3)).map(|i| i as u8).collect::<Vec<_>>());
        let parts: Vec<Bytes> = chunks(&body).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].len(), 3);
        assert_eq!(parts.concat(), body.to_vec());
        assert_eq!(chunks(&Bytes::new()).count(), 0);
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let k = EntryKeys::new(&[0xab; 32]);
        let tag = format!("{{{}}}", "ab".repeat(32));
        for name in [k.meta(), k.chunk(1, 0), k.lease()] {
            assert!(name.contains(&tag), "{name}");
        }
        assert_ne!(k.chunk(1, 0), k.chunk(2, 0));
    }
}
