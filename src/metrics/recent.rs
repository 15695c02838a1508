//! The last requests, for the dashboard: a fixed ring of slots. Recording takes one atomic
//! increment and an uncontended `try_lock` on one slot (skipped, never waited for, if a
//! reader holds it); the URI is a reference-counted clone, so nothing is allocated.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

/// Requests kept.
pub const RECENT: usize = 512;

/// One answered request.
#[derive(Clone, Debug)]
pub struct RecentRequest {
    /// When it was answered.
    pub at: SystemTime,
    /// Its method.
    pub method: http::Method,
    /// Its request target as the client sent it.
    pub uri: http::Uri,
    /// The response status.
    pub status: u16,
    /// The cache result label.
    pub result: &'static str,
    /// Content-Length of the response, if known.
    pub bytes: Option<u64>,
    /// Time to the response head in microseconds.
    pub us: u64,
}

/// A request as the stats API shows it.
#[derive(Serialize, Debug)]
pub struct RecentView {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// Method.
    pub method: String,
    /// Request target.
    pub url: String,
    /// Status code.
    pub status: u16,
    /// Cache result.
    pub result: &'static str,
    /// Body bytes, if known.
    pub bytes: Option<u64>,
    /// Time to the response head, microseconds.
    pub us: u64,
}

/// The ring.
pub struct Recent {
    next: AtomicUsize,
    slots: Box<[Mutex<Option<RecentRequest>>]>,
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent").field("next", &self.next).finish()
    }
}

impl Default for Recent {
    fn default() -> Self {
        Self { next: AtomicUsize::new(0), slots: (0..RECENT).map(|_| Mutex::new(None)).collect() }
    }
}

impl Recent {
    /// Records a request, overwriting the oldest.
    pub fn push(&self, r: RecentRequest) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % RECENT;
        if let Some(mut slot) = self.slots[i].try_lock() {
            *slot = Some(r);
        }
    }

    /// Every kept request, newest first.
    pub fn snapshot(&self) -> Vec<RecentRequest> {
        let mut all: Vec<RecentRequest> = self.slots.iter().filter_map(|s| s.lock().clone()).collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.at));
        all
    }
}

impl From<&RecentRequest> for RecentView {
    fn from(r: &RecentRequest) -> Self {
        let at_ms = r.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self {
            at_ms,
            method: r.method.to_string(),
            url: r.uri.to_string(),
            status: r.status,
            result: r.result,
            bytes: r.bytes,
            us: r.us,
        }
    }
}

/// The `n` most requested URLs among `requests`, with their counts, most first.
pub fn top_urls(requests: &[RecentRequest], n: usize) -> Vec<(String, u64)> {
    let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for r in requests {
        *counts.entry(r.uri.to_string()).or_default() += 1;
    }
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &'static str, secs: u64) -> RecentRequest {
        RecentRequest {
            at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            method: http::Method::GET,
            uri: http::Uri::from_static(path),
            status: 200,
            result: "hit",
            bytes: Some(1),
            us: 5,
        }
    }

    #[test]
    fn ring_keeps_the_newest_and_top_counts_them() {
        let ring = Recent::default();
        for i in 0..(RECENT as u64 + 10) {
            ring.push(req(if i % 3 == 0 { "/a" } else { "/b" }, i));
        }
        let all = ring.snapshot();
        assert_eq!(all.len(), RECENT);
        assert_eq!(all[0].at, SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(RECENT as u64 + 9));
        let top = top_urls(&all, 1);
        assert_eq!(top[0].0, "/b");
        assert!(top[0].1 > RECENT as u64 / 2);
    }
}
