//! A plain connection's first bytes, read once: they say which protocol the client speaks, and
//! the HTTP server then reads them from memory.
//!
//! hyper-util's automatic version detection reads the first 24 bytes on their own (the length
//! of the HTTP/2 preface) and hands them to HTTP/1 as a separate first read, so every new
//! connection cost two `recvfrom` calls and a regrowth (with a copy) of hyper's 8 KiB read
//! buffer before its first request was parsed. Here one read of up to [`FIRST_READ`] bytes
//! decides (`sniff`), and hyper's first read gets all of them.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first read's size: a whole request head, as most are.
const FIRST_READ: usize = 4096;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection's first bytes announce.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// An I/O whose first bytes are read ahead.
pub(super) struct ReadAhead<T> {
    io: T,
    /// Bytes read ahead and not handed out yet: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
}

impl<T> ReadAhead<T> {
    pub(super) fn new(io: T) -> Self {
        Self { io, buf: Vec::new(), start: 0 }
    }
}

impl<T: AsyncRead + Unpin> ReadAhead<T> {
    /// Reads until the first bytes tell HTTP/2's preface from anything else (one read, unless
    /// a client sends a part of the preface alone). A connection closed at once counts as
    /// HTTP/1: hyper then sees the end of the stream and ends the connection.
    pub(super) async fn sniff(&mut self) -> io::Result<Protocol> {
        loop {
            let seen = &self.buf[self.start..];
            if seen.len() >= H2_PREFACE.len() || !H2_PREFACE.starts_with(seen) {
                let h2 = seen.starts_with(H2_PREFACE);
                return Ok(if h2 { Protocol::Http2 } else { Protocol::Http1 });
            }
            if poll_fn(|cx| self.read_more(cx)).await? == 0 {
                return Ok(Protocol::Http1);
            }
        }
    }

    /// Appends what one read returns to the buffer. The read goes into a per-thread scratch
    /// buffer, zeroed once, and only the bytes received are kept: no 4 KiB allocation to
    /// clear for each connection.
    fn read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        thread_local!(static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; FIRST_READ]));
        SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
            self.buf.extend_from_slice(read.filled());
            Poll::Ready(Ok(read.filled().len()))
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start < this.buf.len() {
            let n = out.remaining().min(this.buf.len() - this.start);
            out.put_slice(&this.buf[this.start..this.start + n]);
            this.start += n;
            if this.start == this.buf.len() {
                (this.buf, this.start) = (Vec::new(), 0); // later reads go straight to the socket
            }
            return Poll::Ready(Ok(()));
        }
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
    async fn the_sniffed_bytes_are_read_again_then_the_socket() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let request = b"GET /127.0.0.1:8000/a-path-longer-than-24-bytes HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(request).await.unwrap();
        let mut io = ReadAhead::new(server);
        assert_eq!(io.sniff().await.unwrap(), Protocol::Http1);
        let mut first = [0u8; 24];
        let n = io.read(&mut first).await.unwrap();
        assert_eq!(&first[..n], &request[..24], "a small read gets the start");
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
    async fn the_http2_preface_is_recognised_even_when_it_arrives_in_pieces() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = ReadAhead::new(server);
        let sniffing = tokio::spawn(async move { (io.sniff().await.unwrap(), io) });
        for piece in H2_PREFACE.chunks(5) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        client.write_all(b"\0\0\0\x04").await.unwrap(); // a SETTINGS frame begins
        let (protocol, mut io) = sniffing.await.unwrap();
        assert_eq!(protocol, Protocol::Http2);
        let mut got = vec![0u8; 64];
        let n = io.read(&mut got).await.unwrap();
        assert!(got[..n].starts_with(H2_PREFACE), "the preface is handed to the HTTP/2 server");
    }

    #[tokio::test]
    async fn a_partial_preface_then_something_else_is_http1_and_an_empty_stream_too() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"PRI").await.unwrap();
        let mut io = ReadAhead::new(server);
        let sniffing = tokio::spawn(async move { io.sniff().await.unwrap() });
        tokio::task::yield_now().await;
        client.write_all(b"X / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(sniffing.await.unwrap(), Protocol::Http1);

        let (client, server) = tokio::io::duplex(1024);
        drop(client);
        assert_eq!(ReadAhead::new(server).sniff().await.unwrap(), Protocol::Http1);
    }
}
