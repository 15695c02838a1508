//! The response body read straight from the upstream socket by whoever polls it: decoded
//! from Content-Length, chunked or close-delimited framing, handed on as slices of the read
//! buffer, and the connection given back to the pool once the last byte is read. A body of
//! known length that did not all come with the head is read into one buffer of exactly its
//! size instead; if it is all there when first polled it goes out in one chunk the cache can
//! keep without a copy.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
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
/// Largest body read into a buffer of its exact size (see [`PlainBody::came_exact`]). That
/// buffer is allocated when the head arrives, before the bytes do, so it is kept to what a
/// fetch may hold up front; larger bodies are read in pieces of at most `MAX_READ`.
const EXACT_BODY_MAX: u64 = 1024 * 1024;

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
///
/// A body of known length up to [`EXACT_BODY_MAX`] bytes that is not all in the buffer with
/// the head is read into one buffer allocated for it alone, exactly its length (the bytes
/// that came with the head are copied in first). What has arrived is read before anything is
/// handed on, so a body already there goes out as one chunk, the whole buffer; one still
/// arriving goes out in slices of it as it comes. Other bodies come as slices of the
/// connection's read buffer: a body read along with its head costs no allocation that way.
pub struct PlainBody {
    /// `None` once the body is done or failed.
    conn: Option<Conn>,
    decoder: Decoder,
    /// The rest of the exact-size buffer: bytes received and not yet handed on, then room for
    /// what `decoder` still expects.
    exact: Option<BytesMut>,
    /// Part of the exact-size buffer was handed on before the body was complete.
    streamed: bool,
    /// The body was handed on as one chunk, its whole exact-size buffer.
    came_exact: bool,
    /// Where the connection goes back to when the body is done, if it can carry more.
    home: Option<(Pool, Authority)>,
}

impl PlainBody {
    pub(super) fn new(mut conn: Conn, framing: Framing, home: Option<(Pool, Authority)>) -> Self {
        let mut decoder = Decoder::new(framing);
        let exact = match decoder {
            Decoder::Length(n) if n <= EXACT_BODY_MAX && (conn.buf.len() as u64) < n => {
                let mut exact = BytesMut::with_capacity(n as usize);
                let buffered = conn.buf.len();
                exact.extend_from_slice(&conn.buf);
                conn.buf.clear();
                decoder = Decoder::Length(n - buffered as u64);
                Some(exact)
            }
            _ => None,
        };
        let mut body =
            PlainBody { conn: Some(conn), decoder, exact, streamed: false, came_exact: false, home };
        if body.decoder == Decoder::Done {
            body.finish();
        }
        body
    }

    /// Whether the body, read to its end, was handed on as one chunk that owns exactly its
    /// own allocation (nothing else shares it, no room past its end): the cache may keep that
    /// chunk instead of a copy. So it is when the whole body had arrived by the time it was
    /// first polled, as it mostly has from a nearby origin.
    pub fn came_exact(&self) -> bool {
        self.came_exact
    }

    /// Reads what has arrived into the exact-size buffer, then hands on what it holds: the
    /// whole body in one chunk if it is all there, else what there is (streaming as before).
    fn poll_exact(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            let (Some(conn), Some(exact)) = (self.conn.as_mut(), self.exact.as_mut()) else {
                return Poll::Ready(None);
            };
            let Decoder::Length(left) = self.decoder else {
                // Complete: the rest of the buffer goes out in one chunk, and the (empty)
                // remainder is dropped so that nothing else shares the allocation.
                let chunk = exact.split().freeze();
                self.exact = None;
                self.came_exact = !self.streamed;
                self.finish();
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            };
            // Never past the body's end: bytes beyond it (an upstream out of step) stay
            // unread, so `Pool::take` drops the connection instead of reusing it.
            let mut room = (&mut *exact).limit(left as usize);
            match conn.io.try_read_buf(&mut room) {
                Ok(0) => {
                    let e = self.decoder.eof().err().unwrap_or_else(|| invalid("upstream closed early"));
                    return self.fail(e);
                }
                Ok(n) => {
                    let left = left - n as u64;
                    self.decoder = if left == 0 { Decoder::Done } else { Decoder::Length(left) };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !exact.is_empty() {
                        let chunk = exact.split().freeze();
                        self.streamed = true;
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    if let Err(e) = ready!(conn.io.poll_read_ready(cx)) {
                        return self.fail(e);
                    }
                }
                Err(e) => return self.fail(e),
            }
        }
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
        self.exact = None;
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
        if this.exact.is_some() {
            return this.poll_exact(cx);
        }
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
        let held = self.exact.as_ref().is_some_and(|e| !e.is_empty());
        !held && (self.conn.is_none() || self.decoder == Decoder::Done)
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.exact.as_ref().map_or(0, |e| e.len() as u64);
        match self.decoder {
            Decoder::Length(left) => SizeHint::with_exact(held + left),
            Decoder::Done if held > 0 => SizeHint::with_exact(held),
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

    /// A connected pair on 127.0.0.1: the client side as a `Conn` holding `buffered` (bytes
    /// read along with the head), and the server side to write the rest of the body.
    async fn conn_with(buffered: &[u8]) -> (Conn, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Conn { io: client, buf: BytesMut::from(buffered) }, server)
    }

    /// The next frame's bytes (`None` at the end).
    async fn next(body: &mut PlainBody) -> Option<Result<Bytes, io::Error>> {
        use http_body_util::BodyExt;
        body.frame().await.map(|f| f.map(|f| f.into_data().unwrap_or_default()))
    }

    #[tokio::test]
    async fn a_body_already_there_comes_as_one_chunk_of_its_exact_size() {
        use tokio::io::AsyncWriteExt;
        let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let (conn, mut server) = conn_with(&body[..1000]).await;
        server.write_all(&body[1000..]).await.unwrap();
        // As after the head was read: the socket is known to be readable.
        conn.io.readable().await.unwrap();
        let mut plain = PlainBody::new(conn, Framing::Length(body.len() as u64), None);
        assert_eq!(plain.size_hint().exact(), Some(40_000));
        let mut chunks = Vec::new();
        while let Some(chunk) = next(&mut plain).await {
            chunks.push(chunk.unwrap());
        }
        assert!(plain.came_exact());
        assert_eq!(chunks.len(), 1, "one chunk for the whole body");
        assert_eq!(chunks[0], body);
        let owned = chunks.pop().unwrap().try_into_mut().expect("nothing else shares the buffer");
        assert_eq!(owned.capacity(), 40_000, "no room past the body's end");
    }

    #[tokio::test]
    async fn a_body_still_arriving_streams_from_its_exact_buffer() {
        use tokio::io::AsyncWriteExt;
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (conn, mut server) = conn_with(&body[..1000]).await;
        let mut plain = PlainBody::new(conn, Framing::Length(body.len() as u64), None);
        let mut got = next(&mut plain).await.unwrap().unwrap().to_vec();
        assert_eq!(got, body[..1000], "what came with the head goes on before more is sent");
        let mut sent = 1000;
        for part in body[1000..].chunks(30_000) {
            server.write_all(part).await.unwrap();
            sent += part.len();
            while got.len() < sent {
                got.extend_from_slice(&next(&mut plain).await.unwrap().unwrap());
            }
        }
        assert!(next(&mut plain).await.is_none());
        assert_eq!(got, body);
        assert!(!plain.came_exact(), "handed on in parts: the cache copies it");
    }

    #[tokio::test]
    async fn a_body_read_with_the_head_is_a_slice_of_the_read_buffer() {
        let (conn, _server) = conn_with(b"helloNEXT").await;
        let mut plain = PlainBody::new(conn, Framing::Length(5), None);
        assert_eq!(next(&mut plain).await.unwrap().unwrap(), "hello");
        assert!(next(&mut plain).await.is_none());
        assert!(!plain.came_exact(), "a slice of the connection's buffer: the cache must copy it");
    }

    #[tokio::test]
    async fn an_exact_body_cut_short_is_an_error_and_bytes_past_its_end_stay_unread() {
        use tokio::io::AsyncWriteExt;
        let (conn, mut server) = conn_with(b"he").await;
        let mut plain = PlainBody::new(conn, Framing::Length(10), None);
        server.write_all(b"llo").await.unwrap();
        drop(server);
        let mut got = Vec::new();
        let err = loop {
            match next(&mut plain).await.expect("an error before the end") {
                Ok(chunk) => got.extend_from_slice(&chunk),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(b"hello".starts_with(&got));
        assert!(!plain.came_exact());

        // An upstream out of step sends more than its Content-Length: the extra bytes are not
        // taken into the body, so the pool sees them and will not reuse the connection.
        let (conn, mut server) = conn_with(b"").await;
        let pool = Pool::new(4, std::time::Duration::from_secs(60));
        let home = Some((pool.clone(), Authority::from_static("origin:80")));
        let mut plain = PlainBody::new(conn, Framing::Length(5), home);
        server.write_all(b"helloEXTRA").await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = next(&mut plain).await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"hello");
        assert!(plain.came_exact());
        assert!(pool.take("origin:80").is_none(), "a connection with unread bytes is not reused");
    }

    #[tokio::test]
    async fn bodies_past_the_exact_size_limit_stream_from_the_read_buffer() {
        use tokio::io::AsyncWriteExt;
        let len = EXACT_BODY_MAX as usize + 1;
        let (conn, mut server) = conn_with(&[]).await;
        let mut plain = PlainBody::new(conn, Framing::Length(len as u64), None);
        let writer = tokio::spawn(async move { server.write_all(&vec![7u8; len]).await.unwrap() });
        let mut total = 0;
        while let Some(chunk) = next(&mut plain).await {
            total += chunk.unwrap().len();
        }
        writer.await.unwrap();
        assert_eq!(total, len);
        assert!(!plain.came_exact());
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
