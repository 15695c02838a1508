//! A plain client connection that sends memory-tier bodies held in memory files with
//! `sendfile`.
//!
//! hyper writes a response as one vectored write: the head, then the body's `Bytes`. When a
//! body slice lies in a memory file (`cache::store::mapped`), the head goes first with an
//! ordinary write and the body with `sendfile` from that file: the kernel hands the file's
//! pages to the socket instead of copying the body. The head is not held back with `MSG_MORE`
//! or `TCP_CORK`: measured, that made the send path's pacing dearer than the copy it saved.
//! Anything else is written as before.

use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::cache::store::mapped;

/// A client's TCP connection that sends mapped body slices with `sendfile`.
pub(super) struct SendFile {
    io: TcpStream,
}

impl SendFile {
    pub(super) fn new(io: TcpStream) -> Self {
        Self { io }
    }

    /// Sends `slice` (or its start) from `file` at `offset`, where the same bytes are. If the
    /// call fails for any reason but a full socket, the bytes are written from memory instead.
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        slice: &[u8],
        file: &File,
        offset: u64,
    ) -> Poll<io::Result<usize>> {
        let sent = loop {
            ready!(self.io.poll_write_ready(cx))?;
            let send = || {
                let mut at = offset;
                rustix::fs::sendfile(&self.io, file, Some(&mut at), slice.len()).map_err(io::Error::from)
            };
            match self.io.try_io(Interest::WRITABLE, send) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => break done,
            }
        };
        match sent {
            Ok(n) if n > 0 => {
                crate::metrics::global().sendfile_bytes.add(0, n as u64);
                Poll::Ready(Ok(n))
            }
            // Not expected from a memory file; the memory holds the same bytes.
            _ => Pin::new(&mut self.io).poll_write(cx, slice),
        }
    }
}

/// The first slice that lies in a memory file, with the file and the slice's offset in it.
fn first_mapped(bufs: &[IoSlice<'_>]) -> Option<(usize, std::sync::Arc<File>, u64)> {
    bufs.iter().enumerate().find_map(|(i, b)| {
        if b.len() < *mapped::SENDFILE_RANGE.start() / 2 {
            return None; // a head, or a slice too small to be worth a lookup
        }
        let (file, offset) = mapped::find(b)?;
        Some((i, file, offset))
    })
}

impl AsyncRead for SendFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendFile {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some((i, file, offset)) = first_mapped(bufs) else {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        };
        if i == 0 {
            return self.poll_send_file(cx, &bufs[0], &file, offset);
        }
        let before = &bufs[..i];
        let want: usize = before.iter().map(|b| b.len()).sum();
        let wrote = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, before))?;
        if wrote < want {
            return Poll::Ready(Ok(wrote));
        }
        // What was written is reported now; a body the socket cannot take yet (or an error)
        // comes back on the next call.
        match self.poll_send_file(cx, &bufs[i], &file, offset) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(wrote + n)),
            _ => Poll::Ready(Ok(wrote)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
