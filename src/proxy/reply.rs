//! Builds client responses from what the cache holds: stored entries (memory or file), fills
//! in progress, and `304 Not Modified` answers to the client's own conditionals.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::{BodyError, ProxyBody};
use super::headers::{is_number, number, CACHE_STATUS, X_CACHE};
use super::range::{self, ByteRange, RangeDecision};
use crate::cache::fill::Fill;
use crate::cache::meta::StoredHead;
use crate::cache::policy;
use crate::cache::{CachedBody, CachedResponse};

/// Bytes read from an entry file per step when streaming a large hit.
const FILE_CHUNK: u64 = 256 * 1024;

/// What the client is told about how its response was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// Fresh from the cache.
    Hit,
    /// Stale from the cache (allowed by max-stale, stale-while-revalidate or stale-if-error).
    Stale,
    /// Revalidated with the origin (304) and served from the cache.
    Revalidated,
    /// Fetched from the origin and stored.
    Miss,
    /// Waited for another request's fetch of the same URL.
    Collapsed,
    /// Fetched from the origin, not stored.
    Pass,
    /// Answered by the proxy itself (usage page, error).
    Local,
    /// A CONNECT tunnel: bytes relayed, nothing cached.
    Tunnel,
}

impl CacheResult {
    /// The `X-Cache` value and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Stale => "STALE",
            CacheResult::Revalidated => "REVALIDATED",
            CacheResult::Miss => "MISS",
            CacheResult::Collapsed => "COLLAPSED",
            CacheResult::Pass => "PASS",
            CacheResult::Local => "LOCAL",
            CacheResult::Tunnel => "TUNNEL",
        }
    }

    /// `X-Cache` keeps the original proxy's two values.
    fn x_cache(self) -> &'static str {
        match self {
            CacheResult::Hit | CacheResult::Stale | CacheResult::Revalidated => "HIT",
            _ => "MISS",
        }
    }
}

/// The `Cache-Status` member for this cache (RFC 9211), e.g. `httpcache-proxy; hit; ttl=52`.
pub struct CacheStatus {
    /// `hit`, or the `fwd` reason.
    pub fwd: Option<&'static str>,
    /// `fwd-status`.
    pub fwd_status: Option<u16>,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    /// Whether the response was stored.
    pub stored: bool,
    /// Whether the request was collapsed into another.
    pub collapsed: bool,
    /// Extra detail.
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    pub(super) fn render(&self, name: &str) -> HeaderValue {
        // push_str and itoa, not format!: every response from the cache carries this field.
        // The text is built in a reused buffer, so the value's own copy is the one allocation.
        thread_local!(static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
        TEXT.with_borrow_mut(|s| {
            s.clear();
            self.write(name, s);
            HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("httpcache-proxy"))
        })
    }

    fn write(&self, name: &str, s: &mut String) {
        s.push_str(name);
        match self.fwd {
            None => s.push_str("; hit"),
            Some(f) => {
                s.push_str("; fwd=");
                s.push_str(f);
            }
        }
        if let Some(st) = self.fwd_status {
            s.push_str("; fwd-status=");
            s.push_str(itoa::Buffer::new().format(st));
        }
        if let Some(ttl) = self.ttl {
            s.push_str("; ttl=");
            s.push_str(itoa::Buffer::new().format(ttl));
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(d) = self.detail {
            s.push_str("; detail=");
            s.push_str(d);
        }
    }
}

/// Everything needed to turn a stored head into a client response.
pub struct Reply<'a> {
    /// Request method (HEAD gets no body).
    pub method: &'a Method,
    /// Request headers (for the client's own conditionals).
    pub req_headers: &'a HeaderMap,
    /// The cache's name in `Cache-Status`.
    pub cache_name: &'a str,
    /// The targeted cache-control field, never forwarded downstream (RFC 9213).
    pub targeted: Option<&'a http::HeaderName>,
    /// How the response was obtained.
    pub result: CacheResult,
    /// The `Cache-Status` details.
    pub status: CacheStatus,
    /// `Age` to send, if the response came from storage.
    pub age: Option<Duration>,
}

impl Reply<'_> {
    /// The response head for `head`, or a 304 if the client's conditional matches.
    fn head(&self, head: &StoredHead, body_len: Option<u64>) -> (Response<ProxyBody>, bool) {
        let not_modified = head.status == StatusCode::OK
            && policy::client_conditional_matches(self.req_headers, &head.headers);
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = if not_modified { StatusCode::NOT_MODIFIED } else { head.status };
        let h = resp.headers_mut();
        if not_modified {
            for name in [
                header::CACHE_CONTROL,
                header::CONTENT_LOCATION,
                header::DATE,
                header::ETAG,
                header::EXPIRES,
                header::VARY,
                header::LAST_MODIFIED,
            ] {
                for v in head.headers.get_all(&name) {
                    h.append(name.clone(), v.clone());
                }
            }
        } else {
            *h = head.headers.clone();
            if let Some(len) = body_len {
                // The stored field is usually right already: no new value to allocate.
                if !h.get(header::CONTENT_LENGTH).is_some_and(|v| is_number(v, len)) {
                    h.insert(header::CONTENT_LENGTH, number(len));
                }
            }
        }
        let h = resp.headers_mut();
        if let Some(t) = self.targeted {
            h.remove(t);
        }
        if let Some(age) = self.age {
            h.insert(header::AGE, number(age.as_secs()));
        }
        h.insert(X_CACHE.clone(), HeaderValue::from_static(self.result.x_cache()));
        h.insert(CACHE_STATUS.clone(), self.status.render(self.cache_name));
        let wants_body = !not_modified && *self.method != Method::HEAD;
        (resp, wants_body)
    }

    /// A response from a stored entry.
    pub fn stored(
        &self,
        stored: CachedResponse,
        on_corrupt: impl FnOnce() + Send + 'static,
    ) -> Response<ProxyBody> {
        let len = stored.body.len();
        let (mut resp, wants_body) = self.head(&stored.head, Some(len));
        if !wants_body {
            return resp;
        }
        let full = |body: CachedBody, on_corrupt| match body {
            CachedBody::Memory(b) => ProxyBody::full(b),
            CachedBody::File { file, offset, len, crc } => {
                stream_file(file, offset, len, Some(crc), on_corrupt)
            }
        };
        match self.range(&stored.head, len) {
            RangeDecision::Full => *resp.body_mut() = full(stored.body, on_corrupt),
            RangeDecision::Unsatisfiable => unsatisfiable(&mut resp, len),
            RangeDecision::Partial(ranges) => match (stored.body, ranges.as_slice()) {
                (body, [one]) => {
                    partial(&mut resp, *one, len);
                    *resp.body_mut() = match body {
                        CachedBody::Memory(b) => {
                            ProxyBody::full(b.slice(one.start as usize..=one.end as usize))
                        }
                        // A part of a large entry is served without the whole-body checksum,
                        // which only a full read can check (see the README's deviations).
                        CachedBody::File { file, offset, .. } => {
                            stream_file(file, offset + one.start, one.len(), None, || {})
                        }
                    };
                }
                (CachedBody::Memory(b), many) => {
                    let ct = stored.head.headers.get(header::CONTENT_TYPE);
                    let (body, content_type) = range::multipart(&b, many, ct, &range::boundary_for(len));
                    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                    let h = resp.headers_mut();
                    h.insert(header::CONTENT_TYPE, content_type);
                    h.insert(header::CONTENT_LENGTH, number(body.len() as u64));
                    *resp.body_mut() = ProxyBody::full(body);
                }
                // Several parts of a large entry: the whole body instead (RFC 9110 §14.2 allows
                // ignoring Range).
                (body, _) => *resp.body_mut() = full(body, on_corrupt),
            },
        }
        resp
    }

    /// How to answer the request's Range (RFC 9110 §14) from a complete 200 of `len` bytes.
    fn range(&self, head: &StoredHead, len: u64) -> RangeDecision {
        // Most requests carry no Range: skip the date parsing If-Range would need.
        if head.status != StatusCode::OK || !self.req_headers.contains_key(header::RANGE) {
            return RangeDecision::Full;
        }
        let h = &head.headers;
        range::decide(
            *self.method == Method::GET,
            self.req_headers.get(header::RANGE),
            self.req_headers.get(header::IF_RANGE),
            h.get(header::ETAG),
            h.get(header::LAST_MODIFIED),
            last_modified_is_strong(h),
            len,
        )
    }

    /// A response streamed from a fill in progress.
    pub fn fill(&self, fill: &Arc<Fill>) -> Response<ProxyBody> {
        let (mut resp, wants_body) = self.head(fill.head(), None);
        if !wants_body {
            return resp;
        }
        // A Range on a miss: the whole object is fetched once; a single part of it is served
        // from the stream when the length is known up front.
        let total =
            resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let mut window = None;
        if let Some(len) = total {
            match self.range(fill.head(), len) {
                RangeDecision::Unsatisfiable => {
                    unsatisfiable(&mut resp, len);
                    return resp;
                }
                RangeDecision::Partial(ranges) if ranges.len() == 1 => {
                    partial(&mut resp, ranges[0], len);
                    window = Some(ranges[0]);
                }
                _ => {}
            }
        }
        let (tx, body) = ProxyBody::channel();
        let mut reader = fill.reader();
        tokio::spawn(async move {
            let mut pos = 0u64;
            while let Some(chunk) = reader.next().await {
                let chunk = match (chunk, window) {
                    (Ok(c), Some(w)) => {
                        let (start, end) = (pos, pos + c.len() as u64);
                        pos = end;
                        if end <= w.start || start > w.end {
                            continue;
                        }
                        let from = w.start.saturating_sub(start) as usize;
                        let to = ((w.end + 1).min(end) - start) as usize;
                        Ok(c.slice(from..to))
                    }
                    (other, _) => other,
                };
                let failed = chunk.is_err();
                let msg = chunk.map_err(|e| Box::new(e) as BodyError);
                if tx.send(msg).await.is_err() || failed || window.is_some_and(|w| pos > w.end) {
                    return;
                }
            }
        });
        *resp.body_mut() = body;
        resp
    }
}

/// Turns `resp` into a 206 for one part of a `len`-byte body.
fn partial(resp: &mut Response<ProxyBody>, r: ByteRange, len: u64) {
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_RANGE, range::content_range(r, len));
    h.insert(header::CONTENT_LENGTH, number(r.len()));
}

/// Turns `resp` into a 416 (RFC 9110 §15.5.17).
fn unsatisfiable(resp: &mut Response<ProxyBody>, len: u64) {
    *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_RANGE, range::unsatisfied_range(len));
    h.insert(header::CONTENT_LENGTH, number(0));
    *resp.body_mut() = ProxyBody::empty();
}

/// Whether a stored Last-Modified can serve as a strong validator (RFC 9110 §8.8.2.2): the
/// response's Date is at least a second later.
fn last_modified_is_strong(h: &HeaderMap) -> bool {
    let date =
        |name| h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| httpdate::parse_http_date(v).ok());
    match (date(header::LAST_MODIFIED), date(header::DATE)) {
        (Some(lm), Some(d)) => d.duration_since(lm).is_ok_and(|gap| gap.as_secs() >= 1),
        _ => false,
    }
}

/// Streams a large entry body from its file, checking the CRC (when given) as it goes. On a mismatch the
/// stream ends in an error (the client's connection is cut, so the response never looks
/// complete) and `on_corrupt` drops the entry.
fn stream_file(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    crc: Option<u32>,
    on_corrupt: impl FnOnce() + Send + 'static,
) -> ProxyBody {
    let (tx, body) = ProxyBody::channel();
    tokio::spawn(async move {
        let mut hasher = crc32fast::Hasher::new();
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(FILE_CHUNK);
            let f = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; n as usize];
                f.read_exact_at(&mut buf, offset + pos).map(|_| Bytes::from(buf))
            })
            .await;
            let Ok(Ok(chunk)) = read else {
                let _ = tx.send(Err("cache file read failed".into())).await;
                on_corrupt();
                return;
            };
            hasher.update(&chunk);
            pos += n;
            if pos == len && crc.is_some_and(|crc| hasher.clone().finalize() != crc) {
                let _ = tx.send(Err("cache entry checksum mismatch".into())).await;
                on_corrupt();
                return;
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    body
}
