//! A plain client connection that sends mirrored bodies from their cache file.
//!
//! hyper writes a response as one vectored write: the head, then the body's `Bytes`. When a
//! body slice is a memory-tier body whose bytes are also in a committed cache file
//! (`cache::store::mirror`), its bytes go to the socket with `sendfile` from that file: the
//! kernel passes page-cache pages to the socket instead of copying the body from memory. The
//! head goes first with `MSG_MORE`, so that it leaves in one segment with the start of the body.
//! Anything else, and any body whose file cannot be used, is written as before.

use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::cache::store::mirror;

/// Largest count one `sendfile` call accepts on Linux.
const SENDFILE_MAX: usize = 0x7fff_f000;

/// A client's TCP connection that sends mirrored body slices with `sendfile`.
pub(super) struct SendFile {
    io: TcpStream,
}

impl SendFile {
    pub(super) fn new(io: TcpStream) -> Self {
        Self { io }
    }

    /// Runs a non-blocking socket write once the socket is writable; retries after spurious
    /// readiness.
    fn poll_socket<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            ready!(self.io.poll_write_ready(cx))?;
            match self.io.try_io(Interest::WRITABLE, &mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    /// Sends `slice` (or its start) from `file` at `offset`, where the same bytes are. If the
    /// file fails or ends early, the bytes are written from memory instead.
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        slice: &[u8],
        file: &File,
        offset: u64,
    ) -> Poll<io::Result<usize>> {
        let count = slice.len().min(SENDFILE_MAX);
        let sent = ready!(self.poll_socket(cx, || {
            let mut at = offset;
            rustix::fs::sendfile(&self.io, file, Some(&mut at), count).map_err(io::Error::from)
        }));
        match sent {
            Ok(n) if n > 0 => {
                crate::metrics::global().file_sent_bytes.add(0, n as u64);
                Poll::Ready(Ok(n))
            }
            // The file is shorter than recorded, or failed: the memory copy is the same bytes.
            _ => Pin::new(&mut self.io).poll_write(cx, slice),
        }
    }
}

/// The first slice that is a located mirrored body, with its file and offset.
/// The `Arc` keeps the file open for the call even if the table lets go of it meanwhile.
fn first_mirrored(bufs: &[IoSlice<'_>]) -> Option<(usize, Arc<File>, u64)> {
    bufs.iter().enumerate().find_map(|(i, b)| {
        if b.len() < mirror::MIRROR_MIN {
            return None;
        }
        let (file, offset) = mirror::find(b)?;
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
        let Some((i, file, offset)) = first_mirrored(bufs) else {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        };
        if i == 0 {
            return self.poll_send_file(cx, &bufs[0], &file, offset);
        }
        // The slices before the body (the head), held back by MSG_MORE to leave with it.
        let before = &bufs[..i];
        let want: usize = before.iter().map(|b| b.len()).sum();
        let wrote = ready!(self.poll_socket(cx, || {
            let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
            rustix::net::sendmsg(&self.io, before, &mut SendAncillaryBuffer::default(), flags)
                .map_err(io::Error::from)
        }))?;
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
