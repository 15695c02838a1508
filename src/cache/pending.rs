//! Complete entries on their way to the disk tier and not in the memory tier: found here by
//! lookups until the disk writer thread has written them.
//!
//! Once the memory tier is full, a new object goes to disk only and earns its place in memory
//! by being asked for again (see `Cache::store_complete`). The disk writer gathers entries for
//! a millisecond or more before writing; without this table a request in that window would
//! find the object in neither tier and go to the origin again.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::key::KeyHash;
use super::meta::StoredHead;
use super::store::memory::MemEntry;

/// Entries queued for the disk writer and held nowhere else. Bounded by the writer's queue.
#[derive(Default)]
pub struct PendingWrites {
    entries: Mutex<HashMap<KeyHash, Arc<MemEntry>, foldhash::fast::RandomState>>,
}

impl PendingWrites {
    /// Records an entry queued for the disk writer.
    pub fn insert(&self, hash: KeyHash, entry: Arc<MemEntry>) {
        self.entries.lock().insert(hash, entry);
    }

    /// The entry waiting for `hash`, if any.
    pub fn get(&self, hash: &KeyHash) -> Option<Arc<MemEntry>> {
        self.entries.lock().get(hash).cloned()
    }

    /// Forgets `hash` (a removal: the entry must not be found again).
    pub fn remove(&self, hash: &KeyHash) {
        self.entries.lock().remove(hash);
    }

    /// Forgets `hash` once the writer is done with the entry of `head`, unless a newer entry
    /// for the same key replaced it meanwhile.
    pub fn written(&self, hash: &KeyHash, head: &Arc<StoredHead>) {
        let mut entries = self.entries.lock();
        if entries.get(hash).is_some_and(|e| Arc::ptr_eq(&e.head, head)) {
            entries.remove(hash);
        }
    }

    /// Every entry waiting (a snapshot, for listings and purges).
    pub fn snapshot(&self) -> Vec<(KeyHash, Arc<MemEntry>)> {
        self.entries.lock().iter().map(|(h, e)| (*h, e.clone())).collect()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::meta::{from_millis, EntryKind};
    use bytes::Bytes;

    fn entry(key: &str) -> Arc<MemEntry> {
        let head = Arc::new(StoredHead {
            kind: EntryKind::Response,
            key: key.into(),
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            request_time: from_millis(1),
            response_time: from_millis(2),
            reading: Default::default(),
        });
        Arc::new(MemEntry::new(head, Bytes::from_static(b"body")))
    }

    #[test]
    fn a_written_entry_goes_unless_a_newer_one_replaced_it() {
        let pending = PendingWrites::default();
        let (old, new) = (entry("k"), entry("k"));
        pending.insert([1; 32], old.clone());
        pending.insert([1; 32], new.clone());
        pending.written(&[1; 32], &old.head);
        assert!(pending.get(&[1; 32]).is_some_and(|e| Arc::ptr_eq(&e, &new)), "the newer entry stays");
        pending.written(&[1; 32], &new.head);
        assert!(pending.is_empty());
    }
}
