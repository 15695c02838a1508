//! The write side of a fill: the fetch task pushes body chunks here; they go to the readers
//! (through the [`Fill`]) and to the disk writer thread, which reports progress back so that
//! readers past the memory-retention limit can continue from the file.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::fill::{Fill, FillError, Kept};
use super::store::disk::EntryWriter;
use super::store::mapped;

/// Chunks queued for the disk writer before the fetch waits (backpressure from the disk).
const WRITER_QUEUE: usize = 16;

enum WriterMsg {
    Chunk(Bytes),
    Commit(oneshot::Sender<bool>),
}

/// Feeds one fill and, if there is one, its disk writer.
pub struct FillSink {
    fill: Arc<Fill>,
    writer: Option<mpsc::Sender<WriterMsg>>,
    received: u64,
    finished: bool,
}

impl FillSink {
    /// A sink for `fill`, spawning a blocking writer thread for `writer` if given.
    pub fn new(fill: Arc<Fill>, writer: Option<EntryWriter>) -> Self {
        let writer = writer.map(|w| spawn_writer(fill.clone(), w));
        Self { fill, writer, received: 0, finished: false }
    }

    /// Appends a chunk, waiting if the disk writer is behind.
    pub async fn push(&mut self, chunk: Bytes) {
        self.received += chunk.len() as u64;
        if let Some(tx) = &self.writer {
            if tx.send(WriterMsg::Chunk(chunk.clone())).await.is_err() {
                self.writer = None; // the writer failed and already told the fill
            }
        }
        self.fill.push(chunk);
    }

    /// Bytes pushed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Ends the fill. On success with `store` set, commits the disk entry. Returns whether the
    /// disk entry was committed, and the whole body if it was kept in memory.
    ///
    /// `exact` says the body came as one chunk owning exactly its own allocation (see
    /// [`Fill::finish_kept`]).
    pub async fn finish(
        mut self,
        outcome: Result<(), FillError>,
        store: bool,
        exact: bool,
    ) -> (bool, Option<Bytes>) {
        let ok = outcome.is_ok();
        let mut stored = false;
        if let (true, true, Some(tx)) = (ok, store, &self.writer) {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(WriterMsg::Commit(done_tx)).await.is_ok() {
                stored = done_rx.await.unwrap_or(false);
            }
        }
        // Dropping the sender without a commit makes the writer discard the temporary file.
        self.writer = None;
        self.finished = true;
        let body = match self.fill.finish_kept(outcome, exact) {
            Some(kept) => Some(memory_body(kept).await),
            None => None,
        };
        (stored, body)
    }
}

/// The memory entry's body from what the fill kept: joined on the heap, or, at the sizes
/// sent with `sendfile`, in its memory file, made off the runtime (`mapped::share_off_runtime`
/// for a body that came whole; chunks are written straight into the file, one copy, not a
/// join and then a copy).
async fn memory_body(kept: Kept) -> Bytes {
    let chunks = match kept {
        Kept::Whole(body) => return mapped::share_off_runtime(body).await,
        Kept::Chunks(chunks) if mapped::wanted(chunks.iter().map(Bytes::len).sum()) => chunks,
        kept => return kept.joined(),
    };
    let heap = Kept::Chunks(chunks.clone());
    tokio::task::spawn_blocking(move || mapped::from_chunks(&chunks))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| heap.joined())
}

impl Drop for FillSink {
    /// A fetch that is dropped midway (its task cancelled) must not leave readers waiting.
    fn drop(&mut self) {
        if !self.finished {
            self.fill.finish(Err(FillError::Upstream("fetch cancelled".into())));
        }
    }
}

fn spawn_writer(fill: Arc<Fill>, mut writer: EntryWriter) -> mpsc::Sender<WriterMsg> {
    let (tx, mut rx) = mpsc::channel::<WriterMsg>(WRITER_QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut written = 0u64;
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                WriterMsg::Chunk(chunk) => {
                    if writer.write(&chunk).is_err() {
                        fill.file_failed();
                        return;
                    }
                    written += chunk.len() as u64;
                    fill.written_to_file(written);
                }
                WriterMsg::Commit(done) => {
                    let _ = done.send(writer.finish().is_ok());
                    return;
                }
            }
        }
    });
    tx
}
