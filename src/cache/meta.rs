//! What a cache entry knows about its response besides the body: status, stored header
//! fields and the request/response times that RFC 9111 §4.2.3 needs to compute `Age`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};

use super::policy::ReadingCell;

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A response.
    Response,
    /// A marker under a URL whose responses vary (RFC 9111 §4.1): its `Vary` field names the
    /// request fields that select a variant, and variants are stored under keys derived from
    /// this generation, so replacing the marker orphans every old variant at once.
    Variants {
        /// Distinguishes this marker's variants from those of earlier markers.
        generation: u64,
    },
}

/// The stored head of a response.
#[derive(Clone, Debug)]
pub struct StoredHead {
    /// Response or Vary marker.
    pub kind: EntryKind,
    /// The cache key's URL, checked on read against the key being looked up.
    pub key: String,
    /// Response status.
    pub status: StatusCode,
    /// End-to-end header fields as received (hop-by-hop fields already removed).
    pub headers: HeaderMap,
    /// When the request that produced this response was sent upstream.
    pub request_time: SystemTime,
    /// When its response head arrived.
    pub response_time: SystemTime,
    /// What the policy reads from the fields above, made on the first assessment (a head is
    /// not changed once stored; a copy starts unread).
    pub reading: ReadingCell,
}

/// Milliseconds since the Unix epoch, saturating at zero for earlier times.
pub fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The inverse of [`to_millis`].
pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `headers` with values that own their bytes. Values parsed from a connection are slices of
/// its read buffer; storing them as they are would keep that whole buffer alive per entry.
/// The values are copied into one buffer (one allocation per head, not one per field: this
/// runs on every miss) and replaced in place, so the map is not built again.
pub fn owned_headers(mut headers: HeaderMap) -> HeaderMap {
    let total = headers.values().map(|v| v.len()).sum();
    let mut all = bytes::BytesMut::with_capacity(total);
    for value in headers.values() {
        all.extend_from_slice(value.as_bytes());
    }
    let all = all.freeze();
    let mut at = 0;
    for value in headers.values_mut() {
        let own = all.slice(at..at + value.len());
        at += value.len();
        if let Ok(mut v) = http::HeaderValue::from_maybe_shared(own) {
            v.set_sensitive(value.is_sensitive());
            *value = v;
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_headers_keep_every_value_in_order() {
        let mut h = HeaderMap::new();
        h.append("set-cookie", "a=1".parse().unwrap());
        h.append("content-type", "text/plain".parse().unwrap());
        h.append("set-cookie", "b=2".parse().unwrap());
        let mut secret = http::HeaderValue::from_static("token");
        secret.set_sensitive(true);
        h.append("authorization", secret);
        h.append("x-empty", http::HeaderValue::from_static(""));
        let owned = owned_headers(h.clone());
        assert_eq!(owned, h);
        let shared = |v: &http::HeaderValue| v.as_bytes().as_ptr();
        let firsts: Vec<_> = owned.values().map(shared).collect();
        assert!(firsts.windows(2).all(|w| w[0] <= w[1]), "values share one buffer, in order");
        assert!(h.values().map(shared).zip(&firsts).all(|(old, new)| old != *new), "values were copied");
        let cookies: Vec<_> = owned.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(owned["authorization"].is_sensitive());
        assert_eq!(owned.len(), 5);
    }
}
