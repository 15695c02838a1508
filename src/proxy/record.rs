//! Maps the pipeline's view of a request (mode, cache result) to the metrics' labels and
//! records it; called once per request where the request log line is written.

use std::time::Duration;

use http::{Method, Uri};

use super::reply::CacheResult;
use super::route::Mode;
use crate::metrics::{self, CacheOutcome, RequestRecord};

/// What the request log line shows, as metrics.
pub(super) struct Answered<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub mode: Mode,
    pub status: u16,
    pub result: CacheResult,
    pub bytes: Option<u64>,
    pub elapsed: Duration,
    /// Whether the proxy caches at all (stale time above zero).
    pub caching: bool,
}

/// Records one answered request.
pub(super) fn request(a: Answered<'_>) {
    let cacheable = a.caching && (a.method == Method::GET || a.method == Method::HEAD);
    metrics::global().record(RequestRecord {
        mode: a.mode.as_str(),
        method: a.method,
        uri: a.uri,
        status: a.status,
        outcome: outcome(a.result, cacheable),
        bytes: a.bytes,
        elapsed: a.elapsed,
    });
}

/// The counted result: a pass of a request the cache never considers is a bypass.
fn outcome(result: CacheResult, cacheable: bool) -> CacheOutcome {
    match result {
        CacheResult::Hit => CacheOutcome::Hit,
        CacheResult::Stale => CacheOutcome::Stale,
        CacheResult::Revalidated => CacheOutcome::Revalidated,
        CacheResult::Miss => CacheOutcome::Miss,
        CacheResult::Collapsed => CacheOutcome::Coalesced,
        CacheResult::Pass if !cacheable => CacheOutcome::Bypass,
        CacheResult::Pass => CacheOutcome::Pass,
        CacheResult::Local => CacheOutcome::Local,
        CacheResult::Tunnel => CacheOutcome::Tunnel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_of_uncacheable_requests_are_bypasses() {
        assert_eq!(outcome(CacheResult::Pass, false), CacheOutcome::Bypass);
        assert_eq!(outcome(CacheResult::Pass, true), CacheOutcome::Pass);
        assert_eq!(outcome(CacheResult::Collapsed, true), CacheOutcome::Coalesced);
    }
}
