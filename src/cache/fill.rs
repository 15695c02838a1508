//! A response being fetched into the cache, readable by any number of clients while it arrives.
//!
//! The fetch task appends body chunks; each reader keeps its own position. While the body is
//! small the chunks stay in memory (and become the memory-tier entry at the end). Past the
//! retention limit the in-memory copy is dropped and readers continue from the entry's
//! temporary file, which already holds every byte written so far. So memory stays bounded
//! whatever the body size, and a slow reader costs disk space, not memory, and never slows
//! the fetch or the other readers.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::meta::StoredHead;

/// Largest read from the entry file in one go.
const FILE_READ_CHUNK: u64 = 256 * 1024;

/// Why a reader could not get the whole body.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FillError {
    /// The upstream failed or lied about the length; the body is incomplete.
    #[error("upstream body incomplete: {0}")]
    Upstream(Arc<str>),
    /// The bytes this reader needs are no longer in memory and the entry file failed.
    #[error("cache file unavailable for a streaming reader")]
    Storage,
}

struct FillState {
    chunks: Vec<Bytes>,
    retaining: bool,
    received: u64,
    file: Option<(Arc<File>, u64)>,
    on_file: u64,
    file_failed: bool,
    outcome: Option<Result<(), FillError>>,
}

/// One response body in flight.
pub struct Fill {
    head: Arc<StoredHead>,
    retain_limit: u64,
    state: Mutex<FillState>,
    /// Wakes readers waiting for more. One `Notify`, not a watch channel: a watch wakes
    /// through eight of them, and every push of every fill bumps it.
    changed: Notify,
}

impl Fill {
    /// A fill for `head`; `file` is the entry file being written and the body's offset in it.
    pub fn new(head: Arc<StoredHead>, retain_limit: u64, file: Option<(Arc<File>, u64)>) -> Self {
        Self {
            head,
            retain_limit,
            state: Mutex::new(FillState {
                chunks: Vec::new(),
                retaining: true,
                received: 0,
                file,
                on_file: 0,
                file_failed: false,
                outcome: None,
            }),
            changed: Notify::new(),
        }
    }

    /// The response head.
    pub fn head(&self) -> &Arc<StoredHead> {
        &self.head
    }

    /// Whether a new reader can still get the body from its first byte.
    pub fn joinable(&self) -> bool {
        let s = self.state.lock();
        s.outcome.as_ref().is_none_or(|o| o.is_ok()) && (s.retaining || (s.file.is_some() && !s.file_failed))
    }

    /// The upstream failure that ended this fill, if it failed.
    pub fn upstream_failure(&self) -> Option<FillError> {
        self.state.lock().outcome.clone().and_then(Result::err)
    }

    /// A reader positioned at the first body byte.
    pub fn reader(self: &Arc<Self>) -> FillReader {
        FillReader { fill: self.clone(), pos: 0, chunk: 0 }
    }

    /// Appends a chunk received from upstream.
    pub fn push(&self, chunk: Bytes) {
        let mut s = self.state.lock();
        s.received += chunk.len() as u64;
        if s.retaining {
            if s.received > self.retain_limit && s.file.is_some() && !s.file_failed {
                s.retaining = false;
                s.chunks = Vec::new();
            } else {
                s.chunks.push(chunk);
            }
        }
        drop(s);
        self.bump();
    }

    /// Records that the first `total` body bytes are in the entry file.
    pub fn written_to_file(&self, total: u64) {
        self.state.lock().on_file = total;
        self.bump();
    }

    /// Records that the entry file can no longer be written.
    pub fn file_failed(&self) {
        self.state.lock().file_failed = true;
        self.bump();
    }

    /// Ends the fill. On success returns the whole body if it was retained in memory.
    pub fn finish(&self, outcome: Result<(), FillError>) -> Option<Bytes> {
        self.finish_kept(outcome, false).map(Kept::joined)
    }

    /// Ends the fill and returns what it retained, not yet joined (the sink joins it where a
    /// body of the sizes sent with `sendfile` can go straight into its memory file). `exact`
    /// says the body came as one chunk owning exactly its own allocation (no slice of a larger
    /// buffer): that chunk is then the body itself, not a copy.
    pub fn finish_kept(&self, outcome: Result<(), FillError>, exact: bool) -> Option<Kept> {
        let mut s = self.state.lock();
        let body = match (&s.chunks[..], outcome.is_ok() && s.retaining) {
            (_, false) => None,
            ([whole], true) if exact => Some(Kept::Whole(whole.clone())),
            (chunks, true) => Some(Kept::Chunks(chunks.to_vec())),
        };
        s.outcome = Some(outcome);
        drop(s);
        self.bump();
        body
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.state.lock().received
    }

    fn bump(&self) {
        self.changed.notify_waiters();
    }
}

/// What a complete fill retained of its body.
pub enum Kept {
    /// One chunk owning exactly its allocation: the body itself.
    Whole(Bytes),
    /// Chunks, slices of network buffers, still to be joined.
    Chunks(Vec<Bytes>),
}

impl Kept {
    /// The body in one allocation of its own (see [`concat`]).
    pub fn joined(self) -> Bytes {
        match self {
            Kept::Whole(b) => b,
            Kept::Chunks(c) => concat(&c),
        }
    }
}

/// The whole body in one allocation of its own size: received chunks are slices of larger
/// network buffers, which a long-lived memory entry must not keep alive.
fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => Bytes::copy_from_slice(one),
        many => {
            let mut buf = Vec::with_capacity(many.iter().map(Bytes::len).sum());
            for c in many {
                buf.extend_from_slice(c);
            }
            Bytes::from(buf)
        }
    }
}

/// What a reader should do next, decided under the lock.
enum Step {
    Chunk(Bytes),
    ReadFile(Arc<File>, u64, u64),
    Done,
    Fail(FillError),
    Wait,
}

/// One client's position in a [`Fill`].
pub struct FillReader {
    fill: Arc<Fill>,
    pos: u64,
    chunk: usize,
}

impl FillReader {
    /// The next piece of body; `None` at the end of a complete body.
    pub async fn next(&mut self) -> Option<Result<Bytes, FillError>> {
        loop {
            match self.step() {
                Step::Chunk(b) => {
                    self.pos += b.len() as u64;
                    self.chunk += 1;
                    return Some(Ok(b));
                }
                Step::ReadFile(file, offset, len) => {
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; len as usize];
                        file.read_exact_at(&mut buf, offset).map(|_| Bytes::from(buf))
                    })
                    .await;
                    return match read {
                        Ok(Ok(b)) => {
                            self.pos += b.len() as u64;
                            Some(Ok(b))
                        }
                        _ => Some(Err(FillError::Storage)),
                    };
                }
                Step::Done => return None,
                Step::Fail(e) => return Some(Err(e)),
                // Registering takes the notifier's lock, so it is done only when waiting; the
                // state is read again after it, so a bump in between still wakes the reader.
                Step::Wait => {
                    let changed = self.fill.changed.notified();
                    let mut changed = std::pin::pin!(changed);
                    changed.as_mut().enable();
                    if matches!(self.step(), Step::Wait) {
                        changed.await;
                    }
                }
            }
        }
    }

    fn step(&self) -> Step {
        let s = self.fill.state.lock();
        if s.retaining {
            if let Some(c) = s.chunks.get(self.chunk) {
                return Step::Chunk(c.clone());
            }
        } else if self.pos < s.on_file {
            return match &s.file {
                Some((file, body_offset)) => {
                    let len = (s.on_file - self.pos).min(FILE_READ_CHUNK);
                    Step::ReadFile(file.clone(), body_offset + self.pos, len)
                }
                None => Step::Fail(FillError::Storage),
            };
        } else if s.file_failed && self.pos < s.received {
            return Step::Fail(FillError::Storage);
        }
        match &s.outcome {
            Some(Err(e)) => Step::Fail(e.clone()),
            Some(Ok(())) if self.pos >= s.received => Step::Done,
            _ => Step::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::meta::from_millis;

    fn head() -> Arc<StoredHead> {
        Arc::new(StoredHead {
            kind: crate::cache::meta::EntryKind::Response,
            key: "k".into(),
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            request_time: from_millis(0),
            response_time: from_millis(0),
            reading: Default::default(),
        })
    }

    async fn read_all(mut r: FillReader) -> Result<Vec<u8>, FillError> {
        let mut out = Vec::new();
        while let Some(c) = r.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn readers_joining_early_and_late_get_every_byte() {
        let fill = Arc::new(Fill::new(head(), 1 << 20, None));
        let early = tokio::spawn(read_all(fill.reader()));
        fill.push(Bytes::from_static(b"hello "));
        let late = tokio::spawn(read_all(fill.reader()));
        fill.push(Bytes::from_static(b"world"));
        let body = fill.finish(Ok(()));
        assert_eq!(body.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(early.await.unwrap().unwrap(), b"hello world");
        assert_eq!(late.await.unwrap().unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn an_exact_body_is_kept_as_it_came_and_slices_are_copied_out() {
        let whole = Bytes::from(vec![1u8; 3000]);
        let fill = Arc::new(Fill::new(head(), 1 << 20, None));
        fill.push(whole.clone());
        let kept = fill.finish_kept(Ok(()), true).unwrap().joined();
        assert_eq!(kept.as_ptr(), whole.as_ptr(), "no copy of a body that owns its buffer");
        assert_eq!(read_all(fill.reader()).await.unwrap(), whole);

        // A slice of a larger buffer (as a read buffer hands out) must not be pinned by the
        // memory entry: it is copied into a buffer of its own size.
        let buffer = Bytes::from(vec![2u8; 64 * 1024]);
        let fill = Fill::new(head(), 1 << 20, None);
        fill.push(buffer.slice(100..3100));
        let copied = fill.finish(Ok(())).unwrap();
        assert_eq!(copied, buffer.slice(100..3100));
        assert_ne!(copied.as_ptr(), buffer[100..].as_ptr());

        // More than one chunk is joined by a copy even when called exact.
        let fill = Fill::new(head(), 1 << 20, None);
        fill.push(Bytes::from_static(b"ab"));
        fill.push(Bytes::from_static(b"cd"));
        assert_eq!(fill.finish_kept(Ok(()), true).unwrap().joined(), "abcd");
    }

    #[tokio::test]
    async fn a_reader_waiting_for_more_is_woken_by_each_push() {
        let fill = Arc::new(Fill::new(head(), 1 << 20, None));
        let reader = tokio::spawn(read_all(fill.reader()));
        for part in [&b"slow "[..], b"body"] {
            for _ in 0..3 {
                tokio::task::yield_now().await; // the reader runs until it waits
            }
            assert!(!reader.is_finished());
            fill.push(Bytes::from_static(part));
        }
        tokio::task::yield_now().await;
        fill.finish(Ok(()));
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await;
        assert_eq!(woken.expect("the reader was woken").unwrap().unwrap(), b"slow body");
    }

    #[tokio::test]
    async fn failure_reaches_readers() {
        let fill = Arc::new(Fill::new(head(), 1 << 20, None));
        let r = tokio::spawn(read_all(fill.reader()));
        fill.push(Bytes::from_static(b"part"));
        fill.finish(Err(FillError::Upstream("reset".into())));
        assert!(r.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn past_the_retention_limit_readers_continue_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        );
        let fill = Arc::new(Fill::new(head(), 8, Some((file.clone(), 3))));
        let r = tokio::spawn(read_all(fill.reader()));
        let mut written = 0u64;
        for part in [&b"abcde"[..], b"fghij", b"klmno"] {
            file.write_all_at(part, 3 + written).unwrap();
            fill.push(Bytes::copy_from_slice(part));
            written += part.len() as u64;
            fill.written_to_file(written);
        }
        assert!(fill.finish(Ok(())).is_none(), "not retained past the limit");
        assert!(fill.joinable());
        assert_eq!(r.await.unwrap().unwrap(), b"abcdefghijklmno");
        assert_eq!(read_all(fill.reader()).await.unwrap(), b"abcdefghijklmno");
    }
}
