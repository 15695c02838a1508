//! The response body read straight from the upstream socket by whoever polls it: decoded
//! from Content-Length, chunked or close-delimited framing, handed on as slices of the read
//! buffer, and the connection given back to the pool once the last byte is read.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::uri::Authority;
use http_body::{Body, Frame, SizeHint};

use super::pool::Pool;
use super::Conn;

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most trailer bytes accepted (they are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;
/// Smallest and largest read buffer grown for a body.
const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 256 * 1024;

/// How a response body ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoder {
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer fields after the last chunk; the bytes seen so far.
    Trailers(usize),
    Close,
    Done,
}

/// What the decoder made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Data(Bytes),
    End,
    NeedMore,
}

impl Decoder {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::ChunkSize,
            Framing::Close => Decoder::Close,
        }
    }

    /// Takes what it can from `buf`.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, io::Error> {
        loop {
            match *self {
                Decoder::Done => return Ok(Step::End),
                Decoder::Length(_) | Decoder::ChunkData(_) | Decoder::Close if buf.is_empty() => {
                    return Ok(Step::NeedMore)
                }
                Decoder::Close => return Ok(Step::Data(buf.split().freeze())),
                Decoder::Length(left) => {
                    let n = left.min(buf.len() as u64);
                    *self = if n == left { Decoder::Done } else { Decoder::Length(left - n) };
                    return Ok(Step::Data(buf.split_to(n as usize).freeze()));
                }
                Decoder::ChunkData(left) => {
                    let n = left.min(buf.len() as u64);
                    *self = if n == left { Decoder::ChunkEnd } else { Decoder::ChunkData(left - n) };
                    return Ok(Step::Data(buf.split_to(n as usize).freeze()));
                }
                Decoder::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE, "chunk-size line")? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 { Decoder::Trailers(0) } else { Decoder::ChunkData(size) };
                }
                Decoder::ChunkEnd => match buf.first() {
                    None => return Ok(Step::NeedMore),
                    Some(b'\n') => {
                        buf.advance(1);
                        *self = Decoder::ChunkSize;
                    }
                    Some(b'\r') if buf.len() < 2 => return Ok(Step::NeedMore),
                    Some(b'\r') if buf[1] == b'\n' => {
                        buf.advance(2);
                        *self = Decoder::ChunkSize;
                    }
                    Some(_) => return Err(invalid("chunk data longer than its chunk size")),
                },
                Decoder::Trailers(seen) => {
                    let Some(line) = take_line(buf, MAX_TRAILERS - seen, "trailer section")? else {
                        return Ok(Step::NeedMore);
                    };
                    *self = if line.is_empty() {
                        Decoder::Done
                    } else {
                        Decoder::Trailers(seen + line.len() + 2)
                    };
                }
            }
        }
    }

    /// The upstream closed the connection: the end of a close-delimited body, else a cut.
    fn eof(&mut self) -> Result<(), io::Error> {
        match *self {
            Decoder::Close | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            Decoder::Length(left) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("upstream closed the connection {left} bytes before the end of the body"),
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "upstream closed the connection inside a chunked body",
            )),
        }
    }
}

/// One line from the front of `buf` without its CRLF (or bare LF); `None` until it is whole.
fn take_line(buf: &mut BytesMut, max: usize, what: &str) -> Result<Option<BytesMut>, io::Error> {
    match buf.iter().take(max + 1).position(|&b| b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > max => Err(invalid(&format!("{what} too long"))),
        None => Ok(None),
    }
}

/// The size of a chunk-size line: hex digits, then optional whitespace and `;` extensions.
fn chunk_size(line: &[u8]) -> Result<u64, io::Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = &line[digits..];
    let rest_ok = rest.iter().find(|&&b| b != b' ' && b != b'\t').is_none_or(|&b| b == b';');
    if digits == 0 || digits > 16 || !rest_ok {
        return Err(invalid("invalid chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| invalid("invalid chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| invalid("invalid chunk size"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A response body on its own connection.
pub struct PlainBody {
    /// `None` once the body is done or failed.
    conn: Option<Conn>,
    decoder: Decoder,
    /// Where the connection goes back to when the body is done, if it can carry more.
    home: Option<(Pool, Authority)>,
}

impl PlainBody {
    pub(super) fn new(conn: Conn, framing: Framing, home: Option<(Pool, Authority)>) -> Self {
        let mut body = PlainBody { conn: Some(conn), decoder: Decoder::new(framing), home };
        if body.decoder == Decoder::Done {
            body.finish();
        }
        body
    }

    /// The body is read to its end: the connection goes back to the pool if it can carry
    /// another exchange (nothing unread beyond the body).
    fn finish(&mut self) {
        let conn = self.conn.take();
        if let (Some(conn), Some((pool, authority))) = (conn, self.home.take()) {
            if conn.buf.is_empty() {
                pool.put(authority.as_str(), conn);
            }
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.conn = None;
        self.decoder = Decoder::Done;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for PlainBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if this.decoder == Decoder::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(e) => return this.fail(e),
            }
            let want = match this.decoder {
                Decoder::Length(left) | Decoder::ChunkData(left) => (left as usize).clamp(MIN_READ, MAX_READ),
                _ => MIN_READ,
            };
            conn.buf.reserve(want);
            match conn.io.try_read_buf(&mut conn.buf) {
                Ok(0) => match this.decoder.eof() {
                    Ok(()) => {
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Err(e) => return this.fail(e),
                },
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = ready!(conn.io.poll_read_ready(cx)) {
                        return this.fail(e);
                    }
                }
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(left) => SizeHint::with_exact(left),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` to a decoder `step` bytes at a time and collects the body.
    fn decode_all(framing: Framing, wire: &[u8], step: usize) -> Result<(Vec<u8>, BytesMut), io::Error> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Step::Data(b) => body.extend_from_slice(&b),
                Step::End => return Ok((body, buf)),
                Step::NeedMore if fed == wire.len() => {
                    d.eof()?;
                    return Ok((body, buf));
                }
                Step::NeedMore => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire = b"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, rest) = decode_all(Framing::Chunked, wire, step).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            assert!(b"NEXT".starts_with(&rest), "bytes past the body stay unread (step {step})");
        }
        let bare_lf = b"3\nabc\n0\n\n";
        assert_eq!(decode_all(Framing::Chunked, bare_lf, 1).unwrap().0, b"abc");
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for wire in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcdef\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"5\r\nabc",
        ] {
            assert!(decode_all(Framing::Chunked, wire, 4).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        let endless_extension = [b'1', b';'].iter().chain([b'x'; 5000].iter()).copied().collect::<Vec<_>>();
        assert!(decode_all(Framing::Chunked, &endless_extension, 512).is_err());
    }

    #[test]
    fn length_and_close_framing() {
        let (body, rest) = decode_all(Framing::Length(5), b"helloNEXT", 3).unwrap();
        assert_eq!(body, b"hello");
        assert!(b"NEXT".starts_with(&rest), "bytes past the body stay unread");
        assert_eq!(decode_all(Framing::Length(0), b"", 1).unwrap().0, b"");
        let cut = decode_all(Framing::Length(10), b"hello", 2).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(decode_all(Framing::Close, b"until the end", 4).unwrap().0, b"until the end");
    }
}
