//! A small static HTTP/1.1 origin server for the demo site and for tests.
//!
//! It serves `GET` and `HEAD` for the site's paths with `Content-Type`,
//! `Content-Length`, `Last-Modified` and a strong `ETag`, answers
//! `If-None-Match` / `If-Modified-Since` with `304 Not Modified`, and sends no
//! `Cache-Control`, so a caching proxy falls back to heuristic freshness
//! (just like Python's `http.server`, which only sends `Last-Modified`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::site::{Site, SiteFile};

const SERVER: &str = "httpcache-proxy-demo-origin";

/// Serves `site` on `listener` until the returned future is dropped (for
/// example when its task is aborted); open connections are closed with it.
///
/// One tokio task per connection, with HTTP/1.1 keep-alive. `Last-Modified`
/// is the same for every file: the server's start time minus one hour.
pub async fn serve(listener: TcpListener, site: Arc<Site>) {
    let origin = Arc::new(Origin::new(site, SystemTime::now()));
    // Dropping the JoinSet (when this future is dropped) aborts every
    // connection task, so the server really stops.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // E.g. out of file descriptors: back off briefly.
                        tracing::warn!(error = %err, "demo origin: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let origin = Arc::clone(&origin);
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let response = origin.respond(&req);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let result = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "demo origin: connection ended with error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The request handler's state.
struct Origin {
    site: Arc<Site>,
    last_modified: SystemTime,
    last_modified_header: HeaderValue,
}

impl Origin {
    fn new(site: Arc<Site>, now: SystemTime) -> Self {
        // Whole seconds, so that comparisons with If-Modified-Since (which
        // has one-second resolution) behave.
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).saturating_sub(3600);
        let last_modified = UNIX_EPOCH + Duration::from_secs(secs);
        let last_modified_header = HeaderValue::from_str(&httpdate::fmt_http_date(last_modified))
            .expect("an HTTP date is a valid header value");
        Origin { site, last_modified, last_modified_header }
    }

    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let method = req.method();
        let path = req.uri().path();
        let response = if method != Method::GET && method != Method::HEAD {
            let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n".into());
            res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            res
        } else {
            match self.site.get(path) {
                None => text(StatusCode::NOT_FOUND, format!("404 Not Found: {path}\n")),
                Some(file) => self.file_response(req.headers(), file, method == Method::HEAD),
            }
        };
        tracing::debug!(%method, path, status = response.status().as_u16(), "demo origin");
        response
    }

    fn file_response(&self, req: &HeaderMap, file: &SiteFile, head: bool) -> Response<Full<Bytes>> {
        let not_modified = self.not_modified(req, &file.etag);
        let (status, body) = match (not_modified, head) {
            (true, _) => (StatusCode::NOT_MODIFIED, Bytes::new()),
            (false, true) => (StatusCode::OK, Bytes::new()),
            (false, false) => (StatusCode::OK, file.body.clone()),
        };
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
        if let Ok(etag) = HeaderValue::from_str(&file.etag) {
            headers.insert(header::ETAG, etag);
        }
        headers.insert(header::LAST_MODIFIED, self.last_modified_header.clone());
        if !not_modified {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.body.len()));
        }
        res
    }

    /// RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since is only
    /// looked at when there is no If-None-Match.
    fn not_modified(&self, req: &HeaderMap, etag: &str) -> bool {
        let mut inm = req.get_all(header::IF_NONE_MATCH).iter().peekable();
        if inm.peek().is_some() {
            return inm
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .any(|tag| tag == "*" || weak_eq(tag, etag));
        }
        req.get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| self.last_modified <= since)
    }
}

/// Weak comparison (RFC 9110 §8.8.3.2), as If-None-Match requires.
fn weak_eq(a: &str, b: &str) -> bool {
    let strip = |t: &str| t.strip_prefix("W/").unwrap_or(t).to_owned();
    strip(a) == strip(b)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    struct Parsed {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Parsed {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// Parses one response off the front of `buf`; returns it and the rest.
    /// `no_body` is for responses to HEAD and 304s.
    fn parse(buf: &[u8], no_body: bool) -> (Parsed, &[u8]) {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head");
        let head = std::str::from_utf8(&buf[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let rest = &buf[end + 4..];
        let mut parsed = Parsed { status, headers, body: Vec::new() };
        if no_body || status == 304 {
            return (parsed, rest);
        }
        let len: usize = parsed.header("content-length").unwrap().parse().unwrap();
        parsed.body = rest[..len].to_vec();
        (parsed, &rest[len..])
    }

    async fn start() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let site = Arc::new(crate_site().clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, tokio::spawn(serve(listener, site)))
    }

    fn crate_site() -> &'static Site {
        super::super::site::tests::shared_site()
    }

    /// Sends raw request bytes (the last request should say
    /// `Connection: close`) and returns everything the server sent back.
    async fn exchange(addr: SocketAddr, raw: &str) -> Vec<u8> {
        let io = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(raw.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.unwrap();
            out
        };
        tokio::time::timeout(Duration::from_secs(20), io).await.expect("origin answered in time")
    }

    async fn get(addr: SocketAddr, path: &str, extra: &str) -> Parsed {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n");
        let buf = exchange(addr, &raw).await;
        let (parsed, rest) = parse(&buf, false);
        assert!(rest.is_empty());
        parsed
    }

    #[tokio::test]
    async fn serves_files_with_validators() {
        let (addr, server) = start().await;
        let site = crate_site();
        for path in ["/", "/index.html", "/images/img-001.jpg", "/images/img-003.gif"] {
            let res = get(addr, path, "").await;
            let file = site.get(path).unwrap();
            assert_eq!(res.status, 200, "{path}");
            assert_eq!(res.body, file.body, "{path}");
            assert_eq!(res.header("content-type"), Some(file.content_type));
            assert_eq!(res.header("etag"), Some(file.etag.as_str()));
            assert!(res.header("cache-control").is_none());
            let lm = httpdate::parse_http_date(res.header("last-modified").unwrap()).unwrap();
            assert!(lm < SystemTime::now() - Duration::from_secs(3000));
        }
        server.abort();
    }

    #[tokio::test]
    async fn conditional_requests_get_304() {
        let (addr, server) = start().await;
        let file = crate_site().get("/images/img-002.jpg").unwrap();
        let first = get(addr, "/images/img-002.jpg", "").await;
        let lm = first.header("last-modified").unwrap().to_owned();

        let inm = format!("If-None-Match: \"nope\", {}\r\n", file.etag);
        let res = get(addr, "/images/img-002.jpg", &inm).await;
        assert_eq!(res.status, 304);
        assert!(res.body.is_empty());
        assert_eq!(res.header("etag"), Some(file.etag.as_str()));

        let weak = format!("If-None-Match: W/{}\r\n", file.etag);
        assert_eq!(get(addr, "/images/img-002.jpg", &weak).await.status, 304);
        let star = "If-None-Match: *\r\n";
        assert_eq!(get(addr, "/images/img-002.jpg", star).await.status, 304);

        let ims = format!("If-Modified-Since: {lm}\r\n");
        assert_eq!(get(addr, "/images/img-002.jpg", &ims).await.status, 304);
        let old = "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n";
        assert_eq!(get(addr, "/images/img-002.jpg", old).await.status, 200);

        // A non-matching If-None-Match wins over a matching If-Modified-Since.
        let both = format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n");
        let res = get(addr, "/images/img-002.jpg", &both).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.body, file.body);
        server.abort();
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_post_is_405() {
        let (addr, server) = start().await;
        let res = get(addr, "/nope.png", "").await;
        assert_eq!(res.status, 404);
        assert!(String::from_utf8_lossy(&res.body).contains("404"));

        let raw = "POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let buf = exchange(addr, raw).await;
        let (res, _) = parse(&buf, false);
        assert_eq!(res.status, 405);
        assert_eq!(res.header("allow"), Some("GET, HEAD"));
        server.abort();
    }

    #[tokio::test]
    async fn head_has_no_body_and_keep_alive_works() {
        let (addr, server) = start().await;
        let file = crate_site().get("/images/img-006.gif").unwrap();
        let raw = "HEAD /images/img-006.gif HTTP/1.1\r\nHost: t\r\n\r\n\
                   GET /images/img-006.gif HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let buf = exchange(addr, raw).await;
        let (head, rest) = parse(&buf, true);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some(file.body.len().to_string().as_str()));
        assert_eq!(head.header("content-type"), Some("image/gif"));
        let (get, rest) = parse(rest, false);
        assert_eq!(get.status, 200);
        assert_eq!(get.body, file.body);
        assert!(rest.is_empty(), "HEAD response carried a body");
        server.abort();
    }

    #[tokio::test]
    async fn aborting_the_server_closes_it() {
        let (addr, server) = start().await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(addr, "/", "").await.status, 200);
        server.abort();
        let _ = server.await;
        // The idle keep-alive connection is closed too.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
