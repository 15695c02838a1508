//! Memory-tier bodies that are also, byte for byte, a range of a committed cache file. A plain
//! HTTP/1 connection sends such a body with `sendfile` (`server/send_file.rs`): the kernel
//! hands the file's page-cache pages to the socket instead of copying the body from memory,
//! which was the largest single cost of a 100 KB hit (about 15% of its CPU, in
//! `_copy_from_iter`).
//!
//! A body is found by its address: hyper gives the connection's I/O only slices of the `Bytes`
//! it writes, so a slice of a mirrored body is recognised by where it lies in memory. What
//! keeps that sound is kept inside this module:
//! - Only bodies made by [`body`] are in the table, and each one's entry is removed by its
//!   owner's `Drop` before its memory is freed: an address found in the table is that body.
//! - A file range is recorded ([`locate`]) only from the writer that just committed it, and a
//!   committed file is never written again (pack records are append-only; an entry file is
//!   replaced by renaming a new one over it, never rewritten).
//! - Files are held here, at most [`HELD_MAX`] of them, and let go ([`release`]) when the disk
//!   tier deletes or replaces them, so a hot body never keeps a deleted file's space. A body
//!   whose file was let go is copied from memory, as before.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::cache::key::KeyHash;

/// Smallest body worth sending from its file: below this the copy costs less than the extra
/// system call (the head is then sent on its own, ahead of the file's bytes).
pub const MIRROR_MIN: usize = 32 * 1024;

/// Most files held open for mirrored bodies.
pub const HELD_MAX: usize = 256;

/// A file that holds mirrored bodies, named by what the disk tier deletes it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A pack file, by its id.
    Pack(u64),
    /// An entry's own file, by the entry's key hash.
    Entry(KeyHash),
}

/// One mirrored body: its length, and where its bytes are in a file once written.
struct Region {
    len: usize,
    at: Option<(Weak<File>, u64)>,
}

#[derive(Default)]
struct Table {
    /// Mirrored bodies by start address.
    regions: BTreeMap<usize, Region>,
    /// Files held open, each by what deletes it.
    held: HashMap<Holder, Arc<File>>,
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(RwLock::default);

/// Regions with a file range: while there are none, [`find`] takes no lock.
static LOCATED: AtomicUsize = AtomicUsize::new(0);

/// The owner of a mirrored body's memory.
struct Mirrored(Vec<u8>);

impl AsRef<[u8]> for Mirrored {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Mirrored {
    /// Leaves the table before the memory is freed (the `Vec` drops after this).
    fn drop(&mut self) {
        let removed = TABLE.write().regions.remove(&(self.0.as_ptr() as usize));
        if removed.is_some_and(|r| r.at.is_some()) {
            LOCATED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Makes `data` a body that [`locate`] can tie to a file. Bodies under [`MIRROR_MIN`] are
/// plain `Bytes`.
pub fn body(data: Vec<u8>) -> Bytes {
    if data.len() < MIRROR_MIN {
        return Bytes::from(data);
    }
    let owner = Mirrored(data);
    let region = Region { len: owner.0.len(), at: None };
    TABLE.write().regions.insert(owner.0.as_ptr() as usize, region);
    Bytes::from_owner(owner)
}

/// Records that `body` (made by [`body`]; anything else is ignored) is also `file` from
/// `offset` on, a committed file that `holder` names. Holds the file, replacing an older file
/// of the same entry; when [`HELD_MAX`] files are held and none can be let go, the body stays
/// unlocated.
pub fn locate(body: &Bytes, holder: Holder, file: &Arc<File>, offset: u64) {
    if body.len() < MIRROR_MIN {
        return;
    }
    let mut t = TABLE.write();
    let t = &mut *t;
    let Some(region) = t.regions.get_mut(&(body.as_ptr() as usize)).filter(|r| r.len == body.len()) else {
        return;
    };
    let held = match (holder, t.held.get(&holder)) {
        // A pack is one file for good; an entry's file is replaced by each new write.
        (Holder::Pack(_), Some(held)) => held.clone(),
        _ => {
            if t.held.len() >= HELD_MAX && !t.held.contains_key(&holder) {
                // Let go of files no located body uses any more.
                t.held.retain(|_, f| Arc::weak_count(f) > 0);
                if t.held.len() >= HELD_MAX {
                    return;
                }
            }
            t.held.insert(holder, file.clone());
            file.clone()
        }
    };
    if region.at.replace((Arc::downgrade(&held), offset)).is_none() {
        LOCATED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Lets go of the file `holder` names: the disk tier deleted or replaced it. Bodies located
/// in it are copied from memory from now on.
pub fn release(holder: Holder) {
    if LOCATED.load(Ordering::Relaxed) == 0 && TABLE.read().held.is_empty() {
        return;
    }
    TABLE.write().held.remove(&holder);
}

/// Where the bytes of `slice` are in a file, if it lies within a located mirrored body whose
/// file is still held: the file and the offset of the slice's first byte.
pub fn find(slice: &[u8]) -> Option<(Arc<File>, u64)> {
    if LOCATED.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let addr = slice.as_ptr() as usize;
    let t = TABLE.read();
    let (&start, region) = t.regions.range(..=addr).next_back()?;
    if addr + slice.len() > start + region.len {
        return None;
    }
    let (file, offset) = region.at.as_ref()?;
    Some((file.upgrade()?, offset + (addr - start) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    fn file_with(bytes: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        Arc::new(f)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// The file range `find` names holds exactly the slice's bytes.
    fn check_found(slice: &[u8]) {
        let (file, offset) = find(slice).expect("located");
        let mut read = vec![0; slice.len()];
        file.read_exact_at(&mut read, offset).unwrap();
        assert_eq!(read, slice);
    }

    #[test]
    fn a_located_body_and_its_slices_are_found_in_the_file() {
        let data = pattern(100_000, 7);
        let file = file_with(&[b"head".as_slice(), &data].concat());
        let body = body(data);
        assert!(find(&body).is_none(), "not located yet");
        locate(&body, Holder::Entry([1; 32]), &file, 4);
        check_found(&body);
        check_found(&body[40_000..]);
        check_found(&body.slice(1000..50_000));
        release(Holder::Entry([1; 32]));
    }

    #[test]
    fn small_and_foreign_bodies_are_never_located() {
        let small = body(pattern(1000, 1));
        let file = file_with(&small);
        locate(&small, Holder::Entry([2; 32]), &file, 0);
        assert!(find(&small).is_none());
        // A body not made by `body`: no entry, so locating it does nothing.
        let plain = Bytes::from(pattern(MIRROR_MIN * 2, 2));
        let file = file_with(&plain);
        locate(&plain, Holder::Entry([3; 32]), &file, 0);
        assert!(find(&plain).is_none());
        // A sub-slice is not the whole body: not located either.
        let mirrored = body(pattern(MIRROR_MIN * 2, 3));
        locate(&mirrored.slice(1..), Holder::Entry([4; 32]), &file, 0);
        assert!(find(&mirrored).is_none());
    }

    #[test]
    fn a_released_file_is_no_longer_used() {
        let data = pattern(MIRROR_MIN, 9);
        let file = file_with(&data);
        let body = body(data);
        locate(&body, Holder::Pack(u64::MAX - 1), &file, 0);
        drop(file); // the table holds it now
        check_found(&body);
        release(Holder::Pack(u64::MAX - 1));
        assert!(find(&body).is_none(), "released: copied from memory");
    }

    #[test]
    fn a_new_entry_file_replaces_the_old_one() {
        let hash = [5; 32];
        let old = body(pattern(MIRROR_MIN, 1));
        let old_file = file_with(&old);
        locate(&old, Holder::Entry(hash), &old_file, 0);
        let new = body(pattern(MIRROR_MIN, 2));
        let new_file = file_with(&new);
        locate(&new, Holder::Entry(hash), &new_file, 0);
        drop((old_file, new_file));
        assert!(find(&old).is_none(), "the old file was let go");
        check_found(&new);
        release(Holder::Entry(hash));
    }

    #[test]
    fn a_dropped_body_leaves_the_table() {
        // An odd length, so that another test's body at the same address cannot pass for it.
        let len = MIRROR_MIN + 12_345;
        let data = pattern(len, 4);
        let file = file_with(&data);
        let body = body(data);
        let addr = body.as_ptr() as usize;
        locate(&body, Holder::Entry([6; 32]), &file, 0);
        drop(body);
        assert!(TABLE.read().regions.get(&addr).is_none_or(|r| r.len != len));
        release(Holder::Entry([6; 32]));
    }
}
