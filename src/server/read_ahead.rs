//! The first read of a plain connection, made large.
//!
//! hyper-util's version detection reads the first 24 bytes of a connection on their own (the
//! length of the HTTP/2 preface), and HTTP/1 parsing then reads the rest of the request: two
//! system calls for the request that opens every connection. Here the first read asks the
//! socket for up to [`FIRST_READ`] bytes whatever the reader's buffer holds, keeps what did
//! not fit, and hands it out on the next reads; after that, reads go straight to the socket.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first read's size: a whole request head, as most are.
const FIRST_READ: usize = 4096;

/// An I/O whose first read is a large one.
pub(super) struct ReadAhead<T> {
    io: T,
    /// Bytes read ahead and not handed out yet: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Whether the first read is still to happen.
    first: bool,
}

impl<T> ReadAhead<T> {
    pub(super) fn new(io: T) -> Self {
        Self { io, buf: Vec::new(), start: 0, end: 0, first: true }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start == this.end && this.first && out.remaining() < FIRST_READ {
            if this.buf.is_empty() {
                this.buf = vec![0; FIRST_READ];
            }
            let mut ahead = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut ahead))?;
            let filled = ahead.filled().len();
            (this.start, this.end, this.first) = (0, filled, false);
            if filled == 0 {
                this.buf = Vec::new();
                return Poll::Ready(Ok(())); // end of stream at once
            }
        }
        if this.start < this.end {
            let n = out.remaining().min(this.end - this.start);
            out.put_slice(&this.buf[this.start..this.start + n]);
            this.start += n;
            if this.start == this.end {
                this.buf = Vec::new(); // the connection's later reads need none of it
            }
            return Poll::Ready(Ok(()));
        }
        this.first = false;
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_first_read_keeps_the_rest_for_later_reads() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let request = b"GET /127.0.0.1:8000/a-path-longer-than-24-bytes HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(request).await.unwrap();
        let mut io = ReadAhead::new(server);
        let mut first = [0u8; 24];
        let n = io.read(&mut first).await.unwrap();
        assert_eq!(&first[..n], &request[..24]);
        let mut rest = vec![0u8; 1024];
        let m = io.read(&mut rest).await.unwrap();
        assert_eq!(&rest[..m], &request[24..], "the rest comes from what was read ahead");
        assert!(io.buf.is_empty(), "the buffer is released once handed out");
        client.write_all(b"more").await.unwrap();
        let k = io.read(&mut rest).await.unwrap();
        assert_eq!(&rest[..k], b"more");
        drop(client);
        assert_eq!(io.read(&mut rest).await.unwrap(), 0, "end of stream passes through");
    }

    #[tokio::test]
    async fn a_large_first_read_goes_straight_through() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(b"hello").await.unwrap();
        let mut io = ReadAhead::new(server);
        let mut big = vec![0u8; FIRST_READ];
        let n = io.read(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"hello");
        assert!(io.buf.is_empty(), "no read-ahead buffer when the reader's own is large");
    }
}
