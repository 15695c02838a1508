//! The on-disk entry format: one immutable file per entry.
//!
//! ```text
//! "HCE1" | u32 head_len | head (head_len bytes) | u32 crc32(head)
//! | body (body_len bytes)
//! | u64 body_len | u32 crc32(body) | "HCT1"
//! ```
//! All integers are little-endian. The head's own checksum lets a reader trust the head before
//! it reads the body; the trailer is written last, so a file cut short anywhere fails to
//! decode. A file is only renamed into place once complete, and every read checks both sums,
//! so a torn write after a crash is detected and dropped, never served.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::cache::meta::{from_millis, to_millis, EntryKind, StoredHead};

const MAGIC: &[u8; 4] = b"HCE1";
const TRAILER_MAGIC: &[u8; 4] = b"HCT1";
/// Bytes before the head: magic and head length.
pub const PREFIX_LEN: u64 = 8;
/// Bytes after the body.
pub const TRAILER_LEN: u64 = 16;
/// Upper bound on an encoded head, far above any sane response head.
pub const MAX_HEAD_LEN: u32 = 1 << 20;

/// Why a file is not a valid entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Wrong magic, impossible length or malformed field.
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
    /// A checksum did not match: bit rot or a torn write.
    #[error("checksum mismatch in {0}")]
    Checksum(&'static str),
    /// The file is shorter than its own lengths say.
    #[error("truncated entry")]
    Truncated,
}

/// Encodes the prefix, head and head checksum: everything that precedes the body.
pub fn encode_head(head: &StoredHead) -> Vec<u8> {
    // One buffer of the exact size (this runs on every store): the prefix is filled in once
    // the head's length is known.
    let fields: usize = head.headers.iter().map(|(n, v)| 8 + n.as_str().len() + v.len()).sum();
    let head_len = 4 + head.key.len() + 9 + 2 + 8 + 8 + 4 + fields;
    let mut h = Vec::with_capacity(PREFIX_LEN as usize + head_len + 4);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&[0; 4]);
    put_bytes(&mut h, head.key.as_bytes());
    match head.kind {
        EntryKind::Response => h.push(0),
        EntryKind::Variants { generation } => {
            h.push(1);
            h.extend_from_slice(&generation.to_le_bytes());
        }
    }
    h.extend_from_slice(&head.status.as_u16().to_le_bytes());
    h.extend_from_slice(&to_millis(head.request_time).to_le_bytes());
    h.extend_from_slice(&to_millis(head.response_time).to_le_bytes());
    h.extend_from_slice(&(head.headers.len() as u32).to_le_bytes());
    for (name, value) in &head.headers {
        put_bytes(&mut h, name.as_str().as_bytes());
        put_bytes(&mut h, value.as_bytes());
    }
    let written = &h[PREFIX_LEN as usize..];
    let (len, crc) = ((written.len() as u32).to_le_bytes(), crc32fast::hash(written).to_le_bytes());
    h[4..PREFIX_LEN as usize].copy_from_slice(&len);
    h.extend_from_slice(&crc);
    h
}

/// Encodes the trailer that follows a body of `body_len` bytes with checksum `body_crc`.
pub fn encode_trailer(body_len: u64, body_crc: u32) -> [u8; TRAILER_LEN as usize] {
    let mut t = [0u8; TRAILER_LEN as usize];
    t[..8].copy_from_slice(&body_len.to_le_bytes());
    t[8..12].copy_from_slice(&body_crc.to_le_bytes());
    t[12..].copy_from_slice(TRAILER_MAGIC);
    t
}

/// Reads the head length from the first [`PREFIX_LEN`] bytes of a file.
pub fn decode_prefix(prefix: &[u8]) -> Result<u32, DecodeError> {
    if prefix.len() < PREFIX_LEN as usize {
        return Err(DecodeError::Truncated);
    }
    if &prefix[..4] != MAGIC {
        return Err(DecodeError::Malformed("magic"));
    }
    let len = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if len > MAX_HEAD_LEN {
        return Err(DecodeError::Malformed("head length"));
    }
    Ok(len)
}

/// Decodes a head and its checksum (`head_len + 4` bytes following the prefix).
pub fn decode_head(buf: &[u8]) -> Result<StoredHead, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Truncated);
    }
    let (h, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(h).to_le_bytes() != crc {
        return Err(DecodeError::Checksum("head"));
    }
    let mut r = Reader(h);
    let key = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| DecodeError::Malformed("key"))?;
    let kind = match r.take(1)?[0] {
        0 => EntryKind::Response,
        1 => EntryKind::Variants { generation: r.u64()? },
        _ => return Err(DecodeError::Malformed("kind")),
    };
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| DecodeError::Malformed("status"))?;
    let request_time: SystemTime = from_millis(r.u64()?);
    let response_time = from_millis(r.u64()?);
    let count = r.u32()?;
    let mut headers = HeaderMap::with_capacity(count.min(256) as usize);
    for _ in 0..count {
        let name = HeaderName::from_bytes(r.bytes()?).map_err(|_| DecodeError::Malformed("name"))?;
        let value = HeaderValue::from_bytes(r.bytes()?).map_err(|_| DecodeError::Malformed("value"))?;
        headers.append(name, value);
    }
    if !r.0.is_empty() {
        return Err(DecodeError::Malformed("trailing head bytes"));
    }
    Ok(StoredHead { kind, key, status, headers, request_time, response_time, reading: Default::default() })
}

/// Decodes a trailer into `(body_len, body_crc)`.
pub fn decode_trailer(t: &[u8]) -> Result<(u64, u32), DecodeError> {
    if t.len() != TRAILER_LEN as usize {
        return Err(DecodeError::Truncated);
    }
    if &t[12..] != TRAILER_MAGIC {
        return Err(DecodeError::Malformed("trailer magic"));
    }
    let len = u64::from_le_bytes(t[..8].try_into().map_err(|_| DecodeError::Truncated)?);
    let crc = u32::from_le_bytes(t[8..12].try_into().map_err(|_| DecodeError::Truncated)?);
    Ok((len, crc))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Malformed("short field"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| DecodeError::Truncated)?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| DecodeError::Truncated)?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| DecodeError::Truncated)?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> StoredHead {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("text/plain"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        StoredHead {
            kind: EntryKind::Variants { generation: 7 },
            key: "http://h:80/x".into(),
            status: StatusCode::OK,
            headers,
            request_time: from_millis(1_000),
            response_time: from_millis(2_000),
            reading: Default::default(),
        }
    }

    #[test]
    fn head_round_trips_with_repeated_fields() {
        let enc = encode_head(&head());
        let len = decode_prefix(&enc[..8]).unwrap() as usize;
        let dec = decode_head(&enc[8..8 + len + 4]).unwrap();
        assert_eq!(dec.key, "http://h:80/x");
        assert_eq!(dec.kind, EntryKind::Variants { generation: 7 });
        assert_eq!(dec.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(dec.response_time, from_millis(2_000));
    }

    #[test]
    fn every_single_bit_flip_in_the_head_is_detected() {
        let enc = encode_head(&head());
        for i in 8..enc.len() {
            for bit in 0..8 {
                let mut bad = enc.clone();
                bad[i] ^= 1 << bit;
                assert!(decode_head(&bad[8..]).is_err(), "flip at byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn bad_prefix_and_trailer_are_rejected() {
        assert_eq!(decode_prefix(b"HCE1"), Err(DecodeError::Truncated));
        assert!(decode_prefix(b"XXXX\0\0\0\0").is_err());
        assert!(decode_prefix(b"HCE1\xff\xff\xff\xff").is_err());
        let t = encode_trailer(5, 7);
        assert_eq!(decode_trailer(&t), Ok((5, 7)));
        assert!(decode_trailer(&t[..15]).is_err());
        let mut bad = t;
        bad[15] = b'X';
        assert!(decode_trailer(&bad).is_err());
    }

    #[test]
    fn arbitrary_garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = decode_head(&buf);
            let _ = decode_prefix(&buf);
        }
    }
}
