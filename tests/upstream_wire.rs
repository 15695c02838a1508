//! What upstreams put on the wire, byte for byte, and what the proxy makes of it: chunked
//! bodies with extensions and trailers, interim 1xx responses, close-delimited bodies, HEAD,
//! HTTP/1.0, and broken answers, which are 502s and never stored. The origin here is a raw
//! socket that plays canned responses, so the framing is exactly as written.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use support::client::{get, raw, request};
use support::ProxyBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A canned response, and whether the origin closes the connection after writing it.
struct Canned {
    bytes: &'static [u8],
    close: bool,
}

/// A raw origin: answers each request with the canned response for its path (404 if none),
/// keeps connections open unless the response says to close, and counts what it saw.
struct WireOrigin {
    port: u16,
    connections: Arc<AtomicUsize>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl WireOrigin {
    async fn start(script: Vec<(&'static str, Canned)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script: Arc<HashMap<&'static str, Canned>> = Arc::new(script.into_iter().collect());
        let connections = Arc::new(AtomicUsize::new(0));
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (count, seen) = (connections.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (script.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let end = loop {
                            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                        pending.drain(..end);
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        *seen.lock().entry(path.clone()).or_default() += 1;
                        let (bytes, close) = match script.get(path.as_str()) {
                            Some(c) => (c.bytes, c.close),
                            None => (&b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"[..], false),
                        };
                        if s.write_all(bytes).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        WireOrigin { port, connections, hits }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().get(path).copied().unwrap_or(0)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn keep(bytes: &'static [u8]) -> Canned {
    Canned { bytes, close: false }
}

fn close(bytes: &'static [u8]) -> Canned {
    Canned { bytes, close: true }
}

#[tokio::test(flavor = "multi_thread")]
async fn well_framed_answers_are_served_stored_and_their_connection_reused() {
    let origin = WireOrigin::start(vec![
        (
            "/chunked",
            keep(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=60\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
        ),
        (
            "/early",
            keep(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\n\r\nok"),
        ),
        ("/head", keep(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nCache-Control: no-store\r\n\r\n")),
        ("/length", keep(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nCache-Control: max-age=60\r\n\r\nlength")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port, dir.path()).start();
    let url = |p: &str| proxy.url(origin.port, p);

    for round in 0..2 {
        let got = get(&url("/chunked"), &[]).await;
        assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"hello world"[..]), "round {round}");
        let got = get(&url("/early"), &[]).await;
        assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"ok"[..]), "round {round}");
        let got = get(&url("/length"), &[]).await;
        assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"length"[..]), "round {round}");
    }
    assert_eq!((origin.hits("/chunked"), origin.hits("/early"), origin.hits("/length")), (1, 1, 1), "stored");

    // A HEAD answer has no body whatever its Content-Length says: the next answer on the
    // same connection is read correctly.
    for _ in 0..2 {
        let got = request("HEAD", &url("/head"), &[]).await;
        assert_eq!((got.status.as_u16(), got.header("content-length")), (200, Some("1000")));
        assert!(got.body.is_empty());
    }
    assert_eq!(origin.hits("/head"), 2, "no-store: both reached the origin");
    assert_eq!(origin.connections(), 1, "every exchange used the one pooled connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn close_delimited_and_http_1_0_answers_end_with_the_connection() {
    let origin = WireOrigin::start(vec![
        ("/eof", close(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\nuntil the end")),
        ("/old", close(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nCache-Control: max-age=60\r\n\r\nold")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port, dir.path()).start();
    for round in 0..2 {
        let got = get(&proxy.url(origin.port, "/eof"), &[]).await;
        assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"until the end"[..]), "round {round}");
        let got = get(&proxy.url(origin.port, "/old"), &[]).await;
        assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"old"[..]), "round {round}");
    }
    assert_eq!((origin.hits("/eof"), origin.hits("/old")), (1, 1), "both stored");
    assert_eq!(origin.connections(), 2, "neither connection was reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_answers_are_never_stored_nor_passed_on_as_complete() {
    let origin = WireOrigin::start(vec![
        ("/cut", close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=60\r\n\r\nshort")),
        (
            "/bad-chunk",
            close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=60\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "/long-chunk",
            close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=60\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n"),
        ),
        ("/not-http", close(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")),
        ("/silent", close(b"")),
        (
            "/two-lengths",
            close(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\nCache-Control: max-age=60\r\n\r\nabc"),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port, dir.path()).start();
    for path in ["/cut", "/not-http", "/silent", "/two-lengths"] {
        for round in 1..=2 {
            let got = get(&proxy.url(origin.port, path), &[]).await;
            assert_eq!(got.status.as_u16(), 502, "{path} round {round}: {:?}", got.body);
        }
        // "/silent" closes before answering, which is what a stale pooled connection does:
        // each request is retried once on a new connection.
        let expected = if path == "/silent" { 4 } else { 2 };
        assert_eq!(origin.hits(path), expected, "{path}: nothing was stored");
    }
    // A chunked body streams as it arrives. When the framing breaks before the response goes
    // out, the answer is a clean 502; once the head is out, the response is cut (no last
    // chunk); in between, the connection closes before the head. Never completed.
    for path in ["/bad-chunk", "/long-chunk"] {
        for round in 1..=2 {
            let req = format!(
                "GET /127.0.0.1:{}{path} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
                origin.port
            );
            let answer = raw(proxy.port, req.as_bytes()).await;
            if answer.starts_with("HTTP/1.1 200") {
                assert!(
                    !answer.ends_with("0\r\n\r\n"),
                    "{path} round {round}: a cut body looks whole: {answer:?}"
                );
            } else if !answer.is_empty() {
                assert!(answer.starts_with("HTTP/1.1 502"), "{path} round {round}: {answer}");
            }
        }
        assert_eq!(origin.hits(path), 2, "{path}: nothing was stored");
    }
}
