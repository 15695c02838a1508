//! Hit-for-pass marks: URLs whose last response said it must not be stored (`no-store`,
//! `private`, `Vary: *`). A request for a marked URL goes straight to the origin instead of
//! queueing behind another request's fetch only to learn, again, that it cannot share it
//! (Varnish's hit-for-pass). A mark expires after a short while, and a passed response that
//! turns out storable clears it, so a URL that becomes cacheable is cached again at once.

use std::time::{Duration, Instant};

use quick_cache::sync::Cache as QuickCache;

use super::key::KeyHash;

/// How long a mark lasts without being cleared.
pub const PASS_MARK_TTL: Duration = Duration::from_secs(30);

/// URLs marked uncacheable, bounded by count.
pub struct PassMarks {
    marks: QuickCache<KeyHash, Instant>,
}

impl PassMarks {
    /// Room for `capacity` marks; the least useful are dropped beyond that.
    pub fn new(capacity: usize) -> Self {
        Self { marks: QuickCache::new(capacity) }
    }

    /// Marks `key` uncacheable until `now + PASS_MARK_TTL`.
    pub fn mark(&self, key: &KeyHash, now: Instant) {
        self.marks.insert(*key, now + PASS_MARK_TTL);
    }

    /// Whether `key` is marked and the mark has not expired.
    pub fn is_marked(&self, key: &KeyHash, now: Instant) -> bool {
        match self.marks.get(key) {
            Some(until) if until > now => true,
            Some(_) => {
                self.marks.remove(key);
                false
            }
            None => false,
        }
    }

    /// Removes `key`'s mark.
    pub fn clear(&self, key: &KeyHash) {
        self.marks.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_expire_and_clear() {
        let marks = PassMarks::new(16);
        let (k, now) = ([7u8; 32], Instant::now());
        assert!(!marks.is_marked(&k, now));
        marks.mark(&k, now);
        assert!(marks.is_marked(&k, now + Duration::from_secs(1)));
        assert!(!marks.is_marked(&k, now + PASS_MARK_TTL + Duration::from_secs(1)), "expired");
        assert!(!marks.is_marked(&k, now), "an expired mark is gone");
        marks.mark(&k, now);
        marks.clear(&k);
        assert!(!marks.is_marked(&k, now));
    }
}
