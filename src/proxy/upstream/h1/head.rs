//! Request heads out, response heads in: the request line and fields written as one buffer,
//! the response head parsed by httparse (as hyper does) into an `http::Response` whose field
//! values share one buffer instead of one allocation each.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use tokio::io::AsyncReadExt;

use super::body::Framing;
use super::{Conn, Failure};
use crate::proxy::guard::request::transfer_codings;
use crate::proxy::guard::response::check_upstream_head;

/// Fields accepted in a response head (hyper's default).
const MAX_HEADERS: usize = 100;
/// Bytes accepted for a response head.
const MAX_HEAD: usize = 256 * 1024;
/// Room kept free in the read buffer before each read of a head: small enough that what a
/// small response left of the connection's 8 KiB buffer is used again.
const READ_ROOM: usize = 4 * 1024;

/// The request head: `METHOD path HTTP/1.1`, the fields, and an empty line. Framing fields
/// are left out: these requests carry no body, whatever the client's head said.
pub fn encode_request<B>(req: &Request<B>) -> Vec<u8> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let fields: usize = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(req.method().as_str().len() + target.len() + fields + 64);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers().contains_key(header::HOST) {
        if let Some(authority) = uri.authority() {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(authority.as_str().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    for (name, value) in req.headers() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A parsed response head and how its body is framed.
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection can carry another request once the body is read.
    pub reusable: bool,
}

/// Reads the final response head from `conn` (skipping 1xx interim responses); body bytes
/// read with it stay in `conn.buf`.
pub async fn read_response(conn: &mut Conn, method: &Method) -> Result<ResponseHead, Failure> {
    let mut received_any = false;
    loop {
        if !conn.buf.is_empty() {
            received_any = true;
            match parse(&mut conn.buf)? {
                Some(head) if head.status.is_informational() => {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(Failure::protocol(
                            "101 Switching Protocols to a request without Upgrade",
                        ));
                    }
                    continue; // 100 Continue, 103 Early Hints: the final answer follows
                }
                Some(head) => return finish(head, method),
                None if conn.buf.len() > MAX_HEAD => {
                    return Err(Failure::protocol("response head over 256 KiB"));
                }
                None => {}
            }
        }
        conn.buf.reserve(READ_ROOM);
        match conn.io.read_buf(&mut conn.buf).await {
            Ok(0) if received_any => return Err(Failure::protocol("connection closed in the response head")),
            Ok(0) => return Err(Failure::closed("connection closed before any response")),
            Ok(_) => {}
            Err(e) if received_any => return Err(Failure::protocol(&e.to_string())),
            Err(e) => return Err(Failure::closed(&e.to_string())),
        }
    }
}

struct Parsed {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

/// Parses one head from the front of `buf` and removes it; `None` while it is incomplete.
fn parse(buf: &mut BytesMut) -> Result<Option<Parsed>, Failure> {
    // Where each field's name and value lie in `buf`, so that once the head is split off the
    // values can be slices of it. The field array is left uninitialised: zeroing 100 entries
    // cost more than parsing a typical head.
    let mut fields = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let (len, code, minor, spans) = {
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(Failure::protocol(&format!("invalid response head: {e}"))),
        };
        let base = buf.as_ptr() as usize;
        let spans: Vec<(usize, usize, usize, usize)> = resp
            .headers
            .iter()
            .map(|field| {
                let name = field.name.as_ptr() as usize - base;
                let value = field.value.as_ptr() as usize - base;
                (name, name + field.name.len(), value, value + field.value.len())
            })
            .collect();
        (len, resp.code.unwrap_or(0), resp.version.unwrap_or(1), spans)
    };
    let head: Bytes = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| Failure::protocol("invalid status code"))?;
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &(ns, ne, vs, ve) in &spans {
        let name = HeaderName::from_bytes(&head[ns..ne])
            .map_err(|_| Failure::protocol("invalid field name in the response head"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| Failure::protocol("invalid field value in the response head"))?;
        headers.append(name, value);
    }
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    Ok(Some(Parsed { status, version, headers }))
}

/// How the body is framed (RFC 9112 §6.3) and whether the connection stays usable.
fn finish(head: Parsed, method: &Method) -> Result<ResponseHead, Failure> {
    let Parsed { status, version, headers } = head;
    let length = check_upstream_head(&headers).map_err(|reason| Failure::protocol(&reason))?;
    let bodiless =
        *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Length(0)
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        match transfer_codings(&headers).last().map(String::as_str) {
            Some("chunked") => Framing::Chunked,
            _ => Framing::Close,
        }
    } else {
        length.map_or(Framing::Close, Framing::Length)
    };
    let reusable = version == Version::HTTP_11 && !closes(&headers) && !matches!(framing, Framing::Close);
    Ok(ResponseHead { status, version, headers, framing, reusable })
}

/// Whether `Connection` says `close`.
fn closes(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8], method: Method) -> Result<(ResponseHead, BytesMut), Failure> {
        let mut buf = BytesMut::from(raw);
        let head = parse(&mut buf)?.expect("complete");
        finish(head, &method).map(|h| (h, buf))
    }

    #[test]
    fn the_request_head_has_no_framing_fields_and_always_a_host() {
        let mut req = Request::new(());
        *req.uri_mut() = "http://a.test:8080/p?q=1".parse().unwrap();
        req.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        req.headers_mut().insert("x-a", HeaderValue::from_static("1"));
        let text = String::from_utf8(encode_request(&req)).unwrap();
        assert_eq!(text, "GET /p?q=1 HTTP/1.1\r\nhost: a.test:8080\r\nx-a: 1\r\n\r\n");
    }

    #[test]
    fn heads_parse_with_body_bytes_left_behind() {
        let (h, rest) =
            parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\nokNEXT", Method::GET)
                .unwrap();
        assert_eq!((h.status, h.version, h.reusable), (StatusCode::OK, Version::HTTP_11, true));
        assert!(matches!(h.framing, Framing::Length(2)));
        assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(&rest[..], b"okNEXT");
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse(&mut partial).unwrap().is_none());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |raw: &[u8], m: Method| parsed(raw, m).map(|(h, _)| (h.framing, h.reusable));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(matches!(framing(chunked, Method::GET), Ok((Framing::Chunked, true))));
        let gzip_only = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(matches!(framing(gzip_only, Method::GET), Ok((Framing::Close, false))));
        let no_length = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(framing(no_length, Method::GET), Ok((Framing::Close, false))));
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
        assert!(matches!(framing(head, Method::HEAD), Ok((Framing::Length(0), true))));
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n";
        assert!(matches!(framing(not_modified, Method::GET), Ok((Framing::Length(0), true))));
        let close = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(framing(close, Method::GET), Ok((Framing::Length(0), false))));
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(framing(old, Method::GET), Ok((Framing::Length(0), false))));
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(framing(both, Method::GET).is_err());
        let differing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n";
        assert!(framing(differing, Method::GET).is_err());
    }

    #[test]
    fn malformed_heads_are_protocol_errors() {
        assert!(parse(&mut BytesMut::from(&b"HTTP/1.1 2000 OK\r\n\r\n"[..])).is_err());
        assert!(parse(&mut BytesMut::from(&b"SMTP ready\r\n\r\n"[..])).is_err());
        assert!(parse(&mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"[..])).is_err());
    }
}
