//! Memory-tier bodies kept in memory files, so that a plain client connection can hand them to
//! the socket with `sendfile` instead of copying them (`server::send_file`).
//!
//! Why: a 100 KB hit spent 40% of its CPU in the kernel's copy of the body into the socket
//! (perf: `_copy_from_iter`), which nginx avoids by sending its cache file with `sendfile`.
//! A body whose length is in [`SENDFILE_RANGE`] is written once into an anonymous memory file
//! (`memfd`) and mapped read-only; everything that reads the body (ranges, HTTP/2, TLS, the disk
//! writer) reads the mapping as ordinary `Bytes`. The mapping is registered by address, because
//! hyper hands the connection only slices: [`find`] tells which file and offset hold a slice.
//!
//! Why only that range (measured on loopback, a minimal server pinned to one CPU, `wrk -c64`
//! on the other): at 32 KiB `sendfile` took more CPU per request than the copy (15-17 µs against
//! 12-13 µs), level at 64 KiB, and less at 100 and 128 KiB (22-24 µs against 25-46 µs at
//! 100 KiB). At 192 KiB and more the receiver of the spliced pages pays twice per byte and the
//! requests per second halved, so larger bodies are copied as before.
//!
//! Each mapped body holds a descriptor and a mapping, so their number is capped (a quarter of
//! the descriptor limit, at most [`MAX_MAPPED`]); past the cap, or if the kernel refuses,
//! bodies stay on the heap as before.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;

/// Body lengths kept in memory files (see the module doc for the measurements).
pub const SENDFILE_RANGE: RangeInclusive<usize> = 64 * 1024..=128 * 1024;

/// The most mapped bodies at once, whatever the descriptor limit.
pub const MAX_MAPPED: usize = 4096;

/// Mapped bodies by start address: length and the memory file.
static TABLE: RwLock<BTreeMap<usize, (usize, Arc<File>)>> = RwLock::new(BTreeMap::new());

/// Mapped bodies alive now.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A body in a memory file, mapped read-only.
struct Mapping {
    /// Start of the mapping (an address, so that the owner is `Send` without an `unsafe impl`).
    addr: usize,
    len: usize,
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `addr..addr + len` is a read-only mapping that lives until `drop`, and
        // nothing writes the memory file once it is mapped (see `map_chunks`).
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Out of the table first: no slice of it can be looked up once it is gone.
        TABLE.write().remove(&self.addr);
        // SAFETY: the mapping is this owner's alone, and `Bytes` drops its owner only once
        // every slice of it is gone. Pages a socket still holds stay alive in the kernel.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut std::ffi::c_void, self.len) };
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The cap on mapped bodies: a quarter of the soft descriptor limit, at most [`MAX_MAPPED`].
fn cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        limit.map_or(MAX_MAPPED, |n| (n / 4).min(MAX_MAPPED as u64) as usize)
    })
}

/// Whether a body of `len` bytes belongs in a memory file.
pub fn wanted(len: usize) -> bool {
    SENDFILE_RANGE.contains(&len)
}

/// The body made of `chunks`, in a memory file if its length is in [`SENDFILE_RANGE`] and
/// the cap allows; `None` otherwise (the caller keeps it on the heap).
pub fn from_chunks(chunks: &[Bytes]) -> Option<Bytes> {
    let len: usize = chunks.iter().map(Bytes::len).sum();
    if !wanted(len) {
        return None;
    }
    if LIVE.fetch_add(1, Ordering::Relaxed) >= cap() {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    match map_chunks(chunks, len) {
        Ok(body) => Some(body),
        Err(e) => {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "body kept on the heap: no memory file");
            None
        }
    }
}

/// `body` itself if it is mapped or not wanted in a memory file, or else a mapped copy.
pub fn share(body: Bytes) -> Bytes {
    if !wanted(body.len()) || find(&body).is_some() {
        return body;
    }
    from_chunks(std::slice::from_ref(&body)).unwrap_or(body)
}

fn map_chunks(chunks: &[Bytes], len: usize) -> std::io::Result<Bytes> {
    use rustix::mm::{MapFlags, ProtFlags};
    let fd = rustix::fs::memfd_create("httpcache-body", rustix::fs::MemfdFlags::CLOEXEC)?;
    let file = File::from(fd);
    // Written with `pwrite` before the mapping exists: the mapping is then read-only for life.
    let mut at = 0u64;
    for c in chunks {
        file.write_all_at(c, at)?;
        at += c.len() as u64;
    }
    // SAFETY: a new shared read-only mapping of a memory file only this module can reach,
    // and nothing writes that file from now on; the length is the file's own.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::SHARED | MapFlags::POPULATE,
            &file,
            0,
        )?
    };
    let addr = ptr as usize;
    TABLE.write().insert(addr, (len, Arc::new(file)));
    Ok(Bytes::from_owner(Mapping { addr, len }))
}

/// The memory file holding `slice` and the slice's offset in it, if `slice` lies within a
/// mapped body.
pub fn find(slice: &[u8]) -> Option<(Arc<File>, u64)> {
    let addr = slice.as_ptr() as usize;
    let table = TABLE.read();
    let (&start, (len, file)) = table.range(..=addr).next_back()?;
    (addr + slice.len() <= start + len).then(|| (file.clone(), (addr - start) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_body_in_range_is_mapped_and_its_slices_are_found_at_their_offsets() {
        let data = pattern(100 * 1024);
        let chunks = [Bytes::copy_from_slice(&data[..30_000]), Bytes::copy_from_slice(&data[30_000..])];
        let body = from_chunks(&chunks).expect("mapped");
        assert_eq!(&body[..], &data[..]);
        let (file, offset) = find(&body[1000..5000]).expect("found");
        assert_eq!(offset, 1000);
        let mut back = vec![0u8; 4000];
        file.read_exact_at(&mut back, offset).unwrap();
        assert_eq!(back, &data[1000..5000]);
        // Heap memory is not found, whatever is mapped around it.
        assert!(find(&data[..]).is_none());
    }

    #[test]
    fn bodies_outside_the_range_stay_on_the_heap() {
        for len in [0, 1024, 64 * 1024 - 1, 128 * 1024 + 1, 1 << 20] {
            let heap = Bytes::from(pattern(len));
            assert!(from_chunks(std::slice::from_ref(&heap)).is_none(), "{len}");
            let shared = share(heap.clone());
            assert_eq!(shared.as_ptr(), heap.as_ptr(), "{len} was copied");
            assert!(find(&heap).is_none() || len == 0);
        }
    }

    #[test]
    fn share_maps_a_heap_body_once_and_a_dropped_body_leaves_the_table() {
        let heap = Bytes::from(pattern(80 * 1024));
        let mapped = share(heap.clone());
        assert_ne!(mapped.as_ptr(), heap.as_ptr());
        assert_eq!(mapped, heap);
        let again = share(mapped.clone());
        assert_eq!(again.as_ptr(), mapped.as_ptr(), "a mapped body is not copied again");
        let addr = mapped.as_ptr() as usize;
        let (file, _) = find(&mapped).expect("registered");
        // Other tests map bodies meanwhile, possibly at this address once it is free.
        let ours = || TABLE.read().get(&addr).is_some_and(|(_, f)| Arc::ptr_eq(f, &file));
        let slice = mapped.slice(10..20);
        drop((mapped, again));
        assert!(ours(), "a slice keeps the body mapped");
        assert_eq!(&slice[..], &heap[10..20]);
        drop(slice);
        assert!(!ours(), "a dropped body left the table");
    }
}
