//! Memory-tier bodies kept in memory files, so that a plain client connection can hand them to
//! the socket with `sendfile` instead of copying them (`server::send_file`).
//!
//! Why: a 100 KB hit spent 40% of its CPU in the kernel's copy of the body into the socket
//! (perf: `_copy_from_iter`), which nginx avoids by sending its cache file with `sendfile`.
//! A body whose length is in [`SENDFILE_RANGE`] is written once into a memory file (below: where
//! it is made) and mapped read-only; everything that reads the body (ranges, HTTP/2, TLS, the
//! disk writer) reads the mapping as ordinary `Bytes`. The mapping is registered by address, because
//! hyper hands the connection only slices: [`find`] tells which file and offset hold a slice.
//!
//! Why only that range (measured on loopback, a minimal server pinned to one CPU, `wrk -c64`
//! on the other): at 32 KiB `sendfile` took more CPU per request than the copy (15-17 µs against
//! 12-13 µs), level at 64 KiB, and less at 100 and 128 KiB (22-24 µs against 25-46 µs at
//! 100 KiB). At 192 KiB and more the receiver of the spliced pages pays twice per byte and the
//! requests per second halved, so larger bodies are copied as before. Checked again once the
//! files were on ext4: level at 32 KiB, 0.65-1.23x the copy's rate at 256 KiB, 0.47-0.49x at
//! 1 MiB, so the range stayed.
//!
//! Where the files are made: unlinked files (`O_TMPFILE`) in the cache directory once the
//! binary has called [`place_in`], else anonymous memory files (`memfd`). Both are held in
//! memory; they differ in what `sendfile` costs. A `memfd` is shmem, which this kernel (6.18,
//! shmem huge pages off by default) keeps in 4 KiB pages and splices one page at a time, each
//! looked up and locked (perf: `shmem_file_splice_read`, `shmem_get_folio_gfp`,
//! `filemap_get_entry`, about 8% of a 100 KB hit). A file on a disk filesystem is spliced
//! from the page cache in batches (`filemap_get_read_batch`, 1%), as nginx's cache files are.
//! Measured (BENCHMARKS.md): 9% less CPU per 100 KB hit and 6% more hits per second (medians
//! of 22 alternating pinned pairs), the range above unchanged. The price: the kernel writes such a
//! file's pages back to the disk like any other, once, in the background (after
//! `vm.dirty_expire_centisecs`, 30 s by default, so short-lived bodies never reach it), and
//! under memory pressure it may drop them and read them back, where a `memfd` would stay (a
//! disk that then fails that read faults the process through the mapping, a risk a `memfd`
//! does not carry; with no swap, a `memfd` risks the OOM killer instead). The space is the
//! cache directory's filesystem's, freed when the body leaves the memory tier (the file has no
//! name: nothing to clean up after a crash). If the directory cannot hold such a file (no
//! `O_TMPFILE` support, no space, no permission), memory files fall back to `memfd` for the
//! rest of the process, with one log line. An inode made for every new body and freed for every
//! evicted one was dear on ext4 (100 KB misses at 1.2-3.9x the CPU they took with `memfd`s),
//! so a file whose body is gone is emptied and kept for the next body ([`SPARE`]); with that,
//! misses came out level with `memfd`s once the memory tier had its files (filling it makes
//! one inode per body). Making and writing such a file goes through the
//! filesystem (its journal; the kernel's throttling of dirty pages when the disk falls
//! behind), so it is done on tokio's blocking pool ([`share_off_runtime`], or a caller that is
//! on it already), never on a thread that serves connections.
//!
//! Each mapped body holds a descriptor and a mapping, so their number is capped (a quarter of
//! the descriptor limit, at most [`MAX_MAPPED`]); past the cap, or if the kernel refuses,
//! bodies stay on the heap as before.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

/// Body lengths kept in memory files (see the module doc for the measurements).
pub const SENDFILE_RANGE: RangeInclusive<usize> = 64 * 1024..=128 * 1024;

/// The most mapped bodies at once, whatever the descriptor limit.
pub const MAX_MAPPED: usize = 4096;

/// Mapped bodies by start address: length and the memory file.
static TABLE: RwLock<BTreeMap<usize, (usize, Arc<File>)>> = RwLock::new(BTreeMap::new());

/// Mapped bodies alive now.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The directory memory files are made in, once [`place_in`] has named one.
static PLACE: OnceLock<File> = OnceLock::new();

/// Set when a file could not be made or written in [`PLACE`]: `memfd`s from then on.
static PLACE_FAILED: AtomicBool = AtomicBool::new(false);

/// Emptied files of [`PLACE`] whose bodies are gone, for the next bodies. On ext4, making an
/// inode for every new body and freeing one for every evicted body made a 100 KB miss cost
/// 1.2-3.9x the CPU it did with `memfd`s (the inode allocator's `recently_deleted` scans);
/// emptying a file and writing it again costs less than a new `memfd` (BENCHMARKS.md).
static SPARE: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// The most spare files kept (each a descriptor, no space: they are emptied).
const MAX_SPARE: usize = 128;

/// Makes later memory files as unlinked files in `dir` (the cache directory) rather than as
/// `memfd`s: see the module doc for why and at what price. Only the first call counts.
pub fn place_in(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(dir, flags, Mode::empty())?;
    let _ = PLACE.set(File::from(fd));
    Ok(())
}

/// A body in a memory file, mapped read-only.
struct Mapping {
    /// Start of the mapping (an address, so that the owner is `Send` without an `unsafe impl`).
    addr: usize,
    len: usize,
    /// Whether the file is in [`PLACE`], to be reused once emptied (a `memfd` is just closed).
    reusable: bool,
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
        let entry = TABLE.write().remove(&self.addr);
        // SAFETY: the mapping is this owner's alone, and `Bytes` drops its owner only once
        // every slice of it is gone. Pages a socket still holds stay alive in the kernel.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut std::ffi::c_void, self.len) };
        LIVE.fetch_sub(1, Ordering::Relaxed);
        // The table held the last reference: `find` hands out clones only for slices, and
        // none is left. Emptying or closing a file of the cache directory goes through the
        // filesystem, so it is done on tokio's blocking pool when this runs on the runtime.
        if let Some(file) = entry.and_then(|(_, f)| Arc::try_unwrap(f).ok()).filter(|_| self.reusable) {
            let keep = move || keep_spare(&SPARE, file);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(keep)),
                Err(_) => keep(),
            }
        }
    }
}

/// Empties `file` (its pages leave the file; those a socket still holds stay alive in the
/// kernel, so a body sent with `sendfile` is never overwritten) and keeps it in `spare`, or
/// closes it when `spare` is full or the file cannot be emptied.
fn keep_spare(spare: &Mutex<Vec<File>>, file: File) {
    if file.set_len(0).is_ok() {
        let mut spare = spare.lock();
        if spare.len() < MAX_SPARE {
            spare.push(file);
        }
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

/// Whether `body` is of the sizes kept in memory files and not in one yet.
fn needs_file(body: &Bytes) -> bool {
    wanted(body.len()) && find(body).is_none()
}

/// [`share`] on tokio's blocking pool: making a file in the cache directory and writing it go
/// through the filesystem (its journal, the kernel's throttling of dirty pages when the disk
/// falls behind), which must not hold up a thread that serves connections.
pub async fn share_off_runtime(body: Bytes) -> Bytes {
    if !needs_file(&body) {
        return body;
    }
    let heap = body.clone();
    tokio::task::spawn_blocking(move || share(body)).await.unwrap_or(heap)
}

/// `body` itself if it is mapped or not wanted in a memory file, or else a mapped copy. It
/// may block on the filesystem: from async code, see [`share_off_runtime`].
pub fn share(body: Bytes) -> Bytes {
    if !needs_file(&body) {
        return body;
    }
    from_chunks(std::slice::from_ref(&body)).unwrap_or(body)
}

/// A new memory file holding `chunks`, and whether it is in `place`: there (an emptied file
/// from `spare`, or a new one) until that fails once (`failed` says so), else a `memfd`.
fn file_with(
    place: Option<&File>,
    failed: &AtomicBool,
    spare: &Mutex<Vec<File>>,
    chunks: &[Bytes],
) -> std::io::Result<(File, bool)> {
    if let Some(dir) = place.filter(|_| !failed.load(Ordering::Relaxed)) {
        let reused = spare.lock().pop();
        match reused.map_or_else(|| unlinked_file_in(dir), Ok).and_then(|f| write_chunks(f, chunks)) {
            Ok(file) => return Ok((file, true)),
            Err(e) if !failed.swap(true, Ordering::Relaxed) => tracing::info!(
                error = %e,
                "memory-tier bodies of 64-128 KiB go to anonymous memory files from now on: \
                 none could be made in the cache directory"
            ),
            Err(_) => {}
        }
    }
    let fd = rustix::fs::memfd_create("httpcache-body", rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok((write_chunks(File::from(fd), chunks)?, false))
}

/// A new file without a name in the directory `dir`, readable and writable by this process.
fn unlinked_file_in(dir: &File) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(dir, ".", flags, Mode::RUSR | Mode::WUSR)?))
}

/// `file` with `chunks` written from its start, with `pwrite`, before any mapping of it exists:
/// the mapping is then read-only for life.
fn write_chunks(file: File, chunks: &[Bytes]) -> std::io::Result<File> {
    let mut at = 0u64;
    for c in chunks {
        file.write_all_at(c, at)?;
        at += c.len() as u64;
    }
    Ok(file)
}

fn map_chunks(chunks: &[Bytes], len: usize) -> std::io::Result<Bytes> {
    use rustix::mm::{MapFlags, ProtFlags};
    let (file, reusable) = file_with(PLACE.get(), &PLACE_FAILED, &SPARE, chunks)?;
    // SAFETY: a new shared read-only mapping of a memory file only this module can reach,
    // and nothing writes that file while it is mapped (a file is emptied and reused only once
    // its mapping is gone: `Mapping::drop`); the length is what was just written.
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
    Ok(Bytes::from_owner(Mapping { addr, len, reusable }))
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

    /// What `/proc` says the descriptor of `file` points at.
    fn target(file: &File) -> String {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        link.to_string_lossy().into_owned()
    }

    #[test]
    fn a_memory_file_in_a_directory_has_no_name_and_holds_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let place = File::open(dir.path()).unwrap();
        let failed = AtomicBool::new(false);
        let data = pattern(70_000);
        let chunks = [Bytes::copy_from_slice(&data[..1]), Bytes::copy_from_slice(&data[1..])];
        let (file, reusable) = file_with(Some(&place), &failed, &Mutex::default(), &chunks).unwrap();
        assert!(reusable);
        let meta = file.metadata().unwrap();
        assert!(meta.is_file());
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 0, "the file has no name");
        assert_eq!(meta.len(), 70_000);
        assert!(target(&file).starts_with(&dir.path().to_string_lossy().into_owned()), "{}", target(&file));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left in the directory");
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, data);
        assert!(!failed.load(Ordering::Relaxed));
    }

    #[test]
    fn a_place_that_cannot_hold_files_falls_back_to_memfd_for_good() {
        // A regular file is no directory: `openat` fails as an unsupported filesystem would.
        let not_a_dir = tempfile::tempfile().unwrap();
        let failed = AtomicBool::new(false);
        let chunks = [Bytes::from(pattern(65_536))];
        for _ in 0..2 {
            let (file, reusable) = file_with(Some(&not_a_dir), &failed, &Mutex::default(), &chunks).unwrap();
            assert!(!reusable);
            assert!(target(&file).starts_with("/memfd:"), "{}", target(&file));
            assert_eq!(file.metadata().unwrap().len(), 65_536);
            assert!(failed.load(Ordering::Relaxed), "the place is not tried again");
        }
        let (file, _) = file_with(None, &AtomicBool::new(false), &Mutex::default(), &chunks).unwrap();
        assert!(target(&file).starts_with("/memfd:"), "{}", target(&file));
    }

    #[test]
    fn a_file_whose_body_is_gone_is_emptied_and_holds_the_next_body() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let place = File::open(dir.path()).unwrap();
        let (failed, spare) = (AtomicBool::new(false), Mutex::default());
        let first = [Bytes::from(pattern(120_000))];
        let (file, _) = file_with(Some(&place), &failed, &spare, &first).unwrap();
        let inode = file.metadata().unwrap().ino();
        // Another descriptor of the same file, to see it emptied.
        let observer = file.try_clone().unwrap();
        keep_spare(&spare, file);
        assert_eq!(spare.lock().len(), 1);
        assert_eq!(observer.metadata().unwrap().len(), 0, "emptied while spare");
        let second = [Bytes::from(vec![9u8; 70_000])];
        let (again, _) = file_with(Some(&place), &failed, &spare, &second).unwrap();
        assert_eq!(again.metadata().unwrap().ino(), inode, "the same file, not a new inode");
        assert_eq!(again.metadata().unwrap().len(), 70_000, "nothing of the longer body is left");
        let mut back = vec![0u8; 70_000];
        again.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, vec![9u8; 70_000]);
        assert!(spare.lock().is_empty());
        // A full spare list closes what it cannot keep.
        let full = Mutex::new((0..MAX_SPARE).map(|_| tempfile::tempfile().unwrap()).collect::<Vec<_>>());
        keep_spare(&full, again);
        assert_eq!(full.lock().len(), MAX_SPARE);
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
