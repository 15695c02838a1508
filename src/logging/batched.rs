//! Log output batched into few writes, made off the serving threads. At INFO the proxy logs
//! one line per request, and a `write(2)` per line cost about a tenth of a cached hit's CPU
//! (measured with callgrind and a pinned wrk run). Lines below WARN are appended to a buffer;
//! a flusher thread takes the buffer [`FLUSH_DELAY`] after its first line arrives, or as soon
//! as it holds [`FLUSH_BYTES`], and writes it out with the buffer's lock released, so a slow
//! log file or a stalled pipe reader holds up only the flusher, not the request that logs.
//! WARN and ERROR lines are written at once, after whatever is buffered or being written, so
//! order holds. A buffer that reaches [`MAX_BUFFERED`] (the sink has not kept up) is written
//! by the logging thread itself: memory stays bounded and no line is dropped.
//!
//! The cost: after `kill -9`, up to [`FLUSH_DELAY`] of request lines may be lost. Every exit
//! path of the binary calls [`flush`], and a panic flushes before it prints.

use std::io::{self, Write};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
const FLUSH_DELAY: Duration = Duration::from_millis(20);
/// A buffer this full wakes the flusher before [`FLUSH_DELAY`] has passed.
const FLUSH_BYTES: usize = 64 * 1024;
/// A buffer this full is written by the thread that logs (about 0.1 s of request lines at
/// 50,000 requests per second).
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// Lines waiting for the flusher, and the sink they go to.
struct Batcher<W> {
    /// Lines not yet taken by a writer.
    buffer: Mutex<Vec<u8>>,
    /// Signalled when the buffer gets its first line, and when it reaches [`FLUSH_BYTES`].
    pending: Condvar,
    /// Held while writing. It is taken while `buffer` is still held, so batches reach the
    /// sink in the order they left the buffer.
    sink: Mutex<W>,
    /// Whether a flusher thread runs; without one every line is written at once.
    has_flusher: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Nowhere to report a failing log sink; the lines are dropped, as `eprintln!` would panic.
fn write_out(sink: &mut impl Write, lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        let _ = sink.write_all(lines);
        let _ = sink.flush();
        lines.clear();
    }
}

impl<W: Write> Batcher<W> {
    fn new(sink: W, has_flusher: bool) -> Self {
        Self {
            buffer: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
            pending: Condvar::new(),
            sink: Mutex::new(sink),
            has_flusher,
        }
    }

    /// Appends one line; an immediate line is written out, after every earlier one, before
    /// this returns.
    fn push(&self, line: &[u8], immediate: bool) {
        let mut buffer = lock(&self.buffer);
        let before = buffer.len();
        buffer.extend_from_slice(line);
        if immediate || !self.has_flusher || buffer.len() >= MAX_BUFFERED {
            // Waits for a batch the flusher is writing, which is older than these lines.
            write_out(&mut *lock(&self.sink), &mut buffer);
        } else if before == 0 || (before < FLUSH_BYTES && buffer.len() >= FLUSH_BYTES) {
            self.pending.notify_one();
        }
    }

    /// Writes out every buffered line.
    fn flush(&self) {
        let mut buffer = lock(&self.buffer);
        write_out(&mut *lock(&self.sink), &mut buffer);
    }

    /// The flusher's round: waits for a line, lets more arrive for [`FLUSH_DELAY`] (less once
    /// [`FLUSH_BYTES`] are there), swaps the buffer for `spare` and writes it unlocked.
    fn flush_next(&self, spare: &mut Vec<u8>) {
        let mut buffer = lock(&self.buffer);
        while buffer.is_empty() {
            buffer = self.pending.wait(buffer).unwrap_or_else(|p| p.into_inner());
        }
        let deadline = Instant::now() + FLUSH_DELAY;
        while buffer.len() < FLUSH_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            buffer = self.pending.wait_timeout(buffer, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        let mut sink = lock(&self.sink);
        std::mem::swap(&mut *buffer, spare);
        drop(buffer);
        write_out(&mut *sink, spare);
    }
}

static STDERR: OnceLock<Batcher<io::Stderr>> = OnceLock::new();

fn stderr() -> &'static Batcher<io::Stderr> {
    STDERR.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("log-flush".into()).spawn(|| {
            let mut spare = Vec::with_capacity(FLUSH_BYTES);
            loop {
                stderr().flush_next(&mut spare);
            }
        });
        Batcher::new(io::stderr(), spawned.is_ok())
    })
}

/// Writes out every buffered line. Call before exiting and before printing to stderr directly.
pub fn flush() {
    if let Some(batcher) = STDERR.get() {
        batcher.flush();
    }
}

/// The [`MakeWriter`] of the logging layers: batched below WARN, immediate above.
#[derive(Clone, Copy, Default)]
pub struct BatchedStderr;

/// One event's writer.
pub struct LineWriter {
    immediate: bool,
}

impl LineWriter {
    /// A writer whose line waits for the flusher.
    pub(super) fn batched() -> Self {
        Self { immediate: false }
    }
}

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        stderr().push(line, self.immediate);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { immediate: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter { immediate: is_immediate(meta.level()) }
    }
}

/// WARN and ERROR lines are written at once.
fn is_immediate(level: &Level) -> bool {
    *level <= Level::WARN
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc};

    /// Reports that a write started; waits for the go-ahead.
    type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);

    /// A sink the test reads back; with `gate`, every write first reports that it started
    /// and then waits for the test's go-ahead.
    #[derive(Clone, Default)]
    struct Probe {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Option<Arc<Mutex<Gate>>>,
    }

    impl Write for Probe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if let Some(gate) = &self.gate {
                let gate = lock(gate);
                gate.0.send(()).unwrap();
                gate.1.recv().unwrap();
            }
            lock(&self.written).extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Probe {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.written).clone()).unwrap()
        }
    }

    #[test]
    fn warnings_are_immediate_and_request_lines_wait() {
        assert!(is_immediate(&Level::ERROR) && is_immediate(&Level::WARN));
        assert!(!is_immediate(&Level::INFO) && !is_immediate(&Level::DEBUG));
    }

    #[test]
    fn batched_lines_wait_and_an_immediate_line_follows_them() {
        let probe = Probe::default();
        let batcher = Batcher::new(probe.clone(), true);
        batcher.push(b"a\n", false);
        batcher.push(b"b\n", false);
        assert_eq!(probe.text(), "", "request lines wait for the flusher");
        batcher.push(b"WARN\n", true);
        assert_eq!(probe.text(), "a\nb\nWARN\n");
        batcher.push(b"c\n", false);
        batcher.flush();
        assert_eq!(probe.text(), "a\nb\nWARN\nc\n");
    }

    #[test]
    fn without_a_flusher_every_line_is_written_at_once() {
        let probe = Probe::default();
        let batcher = Batcher::new(probe.clone(), false);
        batcher.push(b"a\n", false);
        assert_eq!(probe.text(), "a\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_thread_that_logs() {
        let probe = Probe::default();
        let batcher = Batcher::new(probe.clone(), true);
        let line = [b'x'; 1023].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..MAX_BUFFERED / line.len() - 1 {
            batcher.push(&line, false);
        }
        assert_eq!(probe.text(), "", "below the cap, lines wait");
        batcher.push(&line, false);
        batcher.push(&line, false);
        assert!(lock(&probe.written).len() >= MAX_BUFFERED, "memory is bounded");
    }

    #[test]
    fn the_flusher_writes_in_order_and_a_stalled_sink_does_not_hold_up_logging() {
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let probe = Probe { gate: Some(Arc::new(Mutex::new((started_tx, go_rx)))), ..Probe::default() };
        let batcher = Arc::new(Batcher::new(probe.clone(), true));
        let flusher = {
            let batcher = batcher.clone();
            std::thread::spawn(move || batcher.flush_next(&mut Vec::new()))
        };
        batcher.push(b"first\n", false);
        // The flusher took "first" and is stuck in the sink.
        started_rx.recv_timeout(Duration::from_secs(10)).expect("the flusher writes the first line");
        let (pushed_tx, pushed_rx) = mpsc::channel();
        let logger = {
            let batcher = batcher.clone();
            std::thread::spawn(move || {
                batcher.push(b"second\n", false);
                pushed_tx.send(()).unwrap();
            })
        };
        pushed_rx.recv_timeout(Duration::from_secs(10)).expect("logging goes on while the sink is stalled");
        assert_eq!(probe.text(), "");
        go_tx.send(()).unwrap();
        flusher.join().unwrap();
        logger.join().unwrap();
        assert_eq!(probe.text(), "first\n");
        // An immediate line waits for nothing but the sink, and comes after "second".
        let waiter = std::thread::spawn(move || {
            started_rx.recv().unwrap();
            go_tx.send(()).unwrap();
        });
        batcher.push(b"WARN\n", true);
        waiter.join().unwrap();
        assert_eq!(probe.text(), "first\nsecond\nWARN\n");
    }
}
