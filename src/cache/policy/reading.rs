//! What the policy reads from a stored response that does not depend on the clock: its
//! directives, its freshness lifetime and its corrected initial age (RFC 9111 §4.2.1-§4.2.3).
//!
//! A stored head does not change once it is stored, so this is read once and kept beside it
//! ([`ReadingCell`], in `cache::meta::StoredHead`); each hit then only adds the time the
//! response has been resident. Why: parsing `Date`, `Age`, `Last-Modified`, `Expires` and
//! `Cache-Control` again on every hit was about a tenth of a 1 KB hit's instructions
//! (callgrind).
//!
//! A reading depends on the policy knobs and on which field stands for `Cache-Control`
//! (RFC 9213's targeted field). The proxy's settings fix both for their lifetime and carry a
//! [`ReadingKey`] naming them; a cell keeps the key its reading was made under and is
//! bypassed, not trusted, under any other.
//!
//! A kept reading costs [`READING_BYTES`] of heap, which the memory tier weighs with each
//! entry (`cache::store::memory`), so `--memory-size` still bounds what the tier holds.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use super::{freshness_lifetime, AgeInputs, CacheControl, Lifetime, PolicyConfig};

/// Names one set of policy settings (knobs and targeted field) for as long as they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingKey(u64);

impl ReadingKey {
    /// A key no other settings in this process have.
    pub fn unique() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The heap a kept reading takes (its allocation; the cell itself is in the head).
pub const READING_BYTES: u64 = std::mem::size_of::<Reading>() as u64;

/// A stored response as the policy reads it, at no particular instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The settings it was read under.
    pub key: ReadingKey,
    /// The response directives this cache obeys.
    pub directives: CacheControl,
    /// Freshness lifetime before the operator's rules (§4.2.1, §4.2.2).
    pub lifetime: Lifetime,
    /// `corrected_initial_age` (§4.2.3).
    pub corrected_initial_age: Duration,
}

impl Reading {
    /// Reads a response whose policy fields are `headers` (the targeted field already put in
    /// place of `Cache-Control`) under `policy`, the settings `key` names.
    pub fn new(
        key: ReadingKey,
        policy: &PolicyConfig,
        status: StatusCode,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Self {
        let directives = CacheControl::parse(headers);
        Self {
            key,
            lifetime: freshness_lifetime(status, headers, &directives, response_time, policy),
            directives,
            corrected_initial_age: AgeInputs::from_response(headers, request_time, response_time)
                .corrected_initial_age(),
        }
    }

    /// The current age at `now` of the response that arrived at `response_time` (§4.2.3).
    pub fn current_age(&self, response_time: SystemTime, now: SystemTime) -> Duration {
        super::age::current_age(self.corrected_initial_age, response_time, now)
    }
}

/// The reading of one stored head, made on first use. A copy of the head starts without one,
/// since a copy is what gets changed.
#[derive(Default)]
pub struct ReadingCell(OnceLock<Box<Reading>>);

impl ReadingCell {
    /// The kept reading if it was made under `key`; otherwise `read()` (which reads under
    /// `key`), kept if there was none yet.
    pub fn get_or_read(&self, key: ReadingKey, read: impl FnOnce() -> Reading) -> Cow<'_, Reading> {
        if let Some(kept) = self.0.get() {
            return if kept.key == key { Cow::Borrowed(kept) } else { Cow::Owned(read()) };
        }
        let fresh = read();
        if fresh.key != key {
            return Cow::Owned(fresh);
        }
        // Two first uses at once both read; one reading is kept, and both are the same.
        match self.0.set(Box::new(fresh)) {
            Ok(()) => Cow::Borrowed(self.0.get().expect("just set")),
            Err(fresh) => Cow::Owned(*fresh),
        }
    }
}

impl Clone for ReadingCell {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for ReadingCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "ReadingCell(read)" } else { "ReadingCell(unread)" })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_headers, test_time as t};
    use super::*;

    fn policy(heuristic: u64) -> PolicyConfig {
        PolicyConfig { heuristic_lifetime: Duration::from_secs(heuristic), ..Default::default() }
    }

    fn read(key: ReadingKey, headers: &HeaderMap) -> Reading {
        Reading::new(key, &policy(30), StatusCode::OK, headers, t(-12), t(-10))
    }

    #[test]
    fn a_reading_gives_what_the_policy_functions_give_at_any_instant() {
        let date = httpdate::fmt_http_date(t(-15));
        let modified = httpdate::fmt_http_date(t(-1000));
        let rows = [
            vec![("cache-control", "max-age=60, must-revalidate"), ("age", "7"), ("date", &date)],
            vec![("last-modified", &modified), ("date", &date)],
            vec![("expires", "0")],
            vec![("cache-control", "s-maxage=5, no-cache"), ("age", "not a number")],
        ];
        for pairs in rows {
            let headers = test_headers(&pairs);
            let reading = read(ReadingKey::unique(), &headers);
            assert_eq!(reading.directives, CacheControl::parse(&headers), "{pairs:?}");
            let lifetime = freshness_lifetime(
                StatusCode::OK,
                &headers,
                &CacheControl::parse(&headers),
                t(-10),
                &policy(30),
            );
            assert_eq!(reading.lifetime, lifetime, "{pairs:?}");
            let ages = AgeInputs::from_response(&headers, t(-12), t(-10));
            for now in [t(-20), t(-10), t(0), t(3600)] {
                assert_eq!(reading.current_age(t(-10), now), ages.current_age(now), "{pairs:?} at {now:?}");
            }
        }
    }

    #[test]
    fn the_cell_keeps_the_first_reading_and_serves_it_only_under_the_same_key() {
        let headers = test_headers(&[("cache-control", "max-age=60")]);
        let cell = ReadingCell::default();
        let (first, other) = (ReadingKey::unique(), ReadingKey::unique());
        assert_ne!(first, other);
        let reads = std::cell::Cell::new(0);
        let get = |key: ReadingKey| {
            cell.get_or_read(key, || {
                reads.set(reads.get() + 1);
                read(key, &headers)
            })
            .key
        };
        assert_eq!(get(first), first);
        assert_eq!(get(first), first);
        assert_eq!(reads.get(), 1, "the second use is served from the cell");
        assert_eq!(get(other), other, "other settings are read afresh");
        assert_eq!(get(other), other);
        assert_eq!(reads.get(), 3, "and never replace the kept reading");
        assert_eq!(get(first), first);
        assert_eq!(reads.get(), 3);
    }

    #[test]
    fn a_copy_of_a_read_cell_starts_unread() {
        let cell = ReadingCell::default();
        let key = ReadingKey::unique();
        cell.get_or_read(key, || read(key, &HeaderMap::new()));
        assert_eq!(format!("{cell:?}"), "ReadingCell(read)");
        assert_eq!(format!("{:?}", cell.clone()), "ReadingCell(unread)");
    }
}
