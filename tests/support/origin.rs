//! A scriptable origin on 127.0.0.1:0 that counts requests per path and connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// How the origin answers one path.
#[derive(Clone)]
pub enum Behaviour {
    /// A fixed response.
    Fixed { status: u16, headers: Vec<(String, String)>, body: Bytes },
    /// `len` bytes of a deterministic pattern, streamed in 64 KiB chunks.
    Pattern { len: u64, headers: Vec<(String, String)> },
    /// Waits `delay` before answering with `then`.
    Delay { delay: Duration, then: Box<Behaviour> },
    /// Sends `first`, waits until the gate opens, then sends `rest`.
    Gated { first: Bytes, rest: Bytes, gate: Arc<Notify>, headers: Vec<(String, String)> },
    /// Announces `len` bytes, sends `sent` of them, then stalls forever (until the test ends).
    StallAfter { len: u64, sent: u64, headers: Vec<(String, String)> },
    /// Announces `len` bytes, sends `sent` of them, then drops the connection.
    AbortAfter { len: u64, sent: u64, headers: Vec<(String, String)> },
    /// Answers 304 to a matching If-None-Match, else the inner behaviour.
    Conditional { etag: String, then: Box<Behaviour> },
    /// A 200 whose body is the value of request header `name` ("none" if absent).
    Echo { name: String, headers: Vec<(String, String)> },
    /// `len` bytes of the pattern with no Content-Length (so sent chunked), in pieces of
    /// `piece` bytes with `pause` before each piece after the first: a slow, unsized body.
    Trickle { len: u64, piece: u64, pause: Duration, headers: Vec<(String, String)> },
}

/// The origin.
pub struct Origin {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Behaviour>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    requests: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A deterministic byte pattern: byte i of a body is `pattern_byte(i)`.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// `len` bytes of the pattern starting at `from`.
pub fn pattern(from: u64, len: u64) -> Vec<u8> {
    (from..from + len).map(pattern_byte).collect()
}

impl Origin {
    /// Starts an origin with no routes (every path answers 404).
    pub async fn start() -> Origin {
        Self::start_with(None).await
    }

    /// Starts an HTTPS origin with no routes, serving the certificate of `acceptor`.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Origin {
        Self::start_with(Some(acceptor)).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Behaviour>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let requests: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, h, q, c) = (routes.clone(), hits.clone(), requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, h, q, tls) = (r.clone(), h.clone(), q.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (r, h, q) = (r.clone(), h.clone(), q.clone());
                        async move { Ok::<_, Infallible>(answer(req, &r, &h, &q).await) }
                    });
                    match tls {
                        None => {
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ =
                                    http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Origin { addr, routes, hits, requests, connections, task }
    }

    /// Sets how `path` (with query) answers.
    pub fn route(&self, path: &str, b: Behaviour) {
        self.routes.lock().insert(path.to_string(), b);
    }

    /// Shorthand: a 200 with `headers` and `body`.
    pub fn ok(&self, path: &str, headers: &[(&str, &str)], body: &str) {
        self.route(
            path,
            Behaviour::Fixed {
                status: 200,
                headers: owned(headers),
                body: Bytes::copy_from_slice(body.as_bytes()),
            },
        );
    }

    /// Requests that reached `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().get(path).copied().unwrap_or(0)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Headers of every request to `path`, oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<HeaderMap> {
        self.requests.lock().iter().filter(|(p, _)| p == path).map(|(_, h)| h.clone()).collect()
    }

    /// Headers of the last request to `path`.
    pub fn last_request(&self, path: &str) -> Option<HeaderMap> {
        self.requests.lock().iter().rev().find(|(p, _)| p == path).map(|(_, h)| h.clone())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Owned header pairs.
pub fn owned(h: &[(&str, &str)]) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn answer(
    req: Request<Incoming>,
    routes: &Mutex<HashMap<String, Behaviour>>,
    hits: &Mutex<HashMap<String, usize>>,
    requests: &Mutex<Vec<(String, HeaderMap)>>,
) -> Response<BoxBody> {
    let path = req.uri().path_and_query().map_or("/".to_string(), |p| p.to_string());
    *hits.lock().entry(path.clone()).or_default() += 1;
    requests.lock().push((path.clone(), req.headers().clone()));
    let behaviour = routes.lock().get(&path).cloned();
    let req_headers = req.headers().clone();
    let _ = req.into_body().collect().await;
    match behaviour {
        None => build(404, &[], full(Bytes::from_static(b"no such path\n"))),
        Some(b) => respond(b, &req_headers).await,
    }
}

fn full(b: Bytes) -> BoxBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

fn build(status: u16, headers: &[(String, String)], body: BoxBody) -> Response<BoxBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    resp
}

fn with_len(headers: &[(String, String)], len: u64) -> Vec<(String, String)> {
    let mut h = headers.to_vec();
    h.push(("content-length".into(), len.to_string()));
    h
}

fn channel_body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> BoxBody {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    StreamBody::new(stream).boxed()
}

/// `len` bytes of the pattern, streamed in pieces of `piece` bytes with `pause` before each
/// piece after the first.
fn pattern_body(len: u64, piece: u64, pause: Duration) -> BoxBody {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut pos = 0;
        while pos < len {
            if pos > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let n = (len - pos).min(piece.max(1));
            if tx.send(Ok(Bytes::from(pattern(pos, n)))).await.is_err() {
                return;
            }
            pos += n;
        }
    });
    channel_body(rx)
}

fn respond(
    b: Behaviour,
    req_headers: &HeaderMap,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<BoxBody>> + Send + '_>> {
    Box::pin(async move {
        match b {
            Behaviour::Fixed { status, headers, body } => build(status, &headers, full(body)),
            Behaviour::Echo { name, headers } => {
                let v = req_headers
                    .get(name.as_str())
                    .map_or(Bytes::from_static(b"none"), |v| Bytes::copy_from_slice(v.as_bytes()));
                build(200, &headers, full(v))
            }
            Behaviour::Delay { delay, then } => {
                tokio::time::sleep(delay).await;
                respond(*then, req_headers).await
            }
            Behaviour::Conditional { etag, then } => {
                let matches =
                    req_headers.get("if-none-match").is_some_and(|v| v.as_bytes() == etag.as_bytes());
                if matches {
                    build(304, &[("etag".into(), etag)], full(Bytes::new()))
                } else {
                    respond(*then, req_headers).await
                }
            }
            Behaviour::Pattern { len, headers } => {
                build(200, &with_len(&headers, len), pattern_body(len, 65536, Duration::ZERO))
            }
            Behaviour::Trickle { len, piece, pause, headers } => {
                build(200, &headers, pattern_body(len, piece, pause))
            }
            Behaviour::Gated { first, rest, gate, headers } => {
                let (tx, rx) = mpsc::channel(2);
                let len = (first.len() + rest.len()) as u64;
                tokio::spawn(async move {
                    let _ = tx.send(Ok(first)).await;
                    gate.notified().await;
                    let _ = tx.send(Ok(rest)).await;
                });
                build(200, &with_len(&headers, len), channel_body(rx))
            }
            Behaviour::StallAfter { len, sent, headers } => {
                let (tx, rx) = mpsc::channel(2);
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Bytes::from(pattern(0, sent)))).await;
                    tx.closed().await; // hold the body open until the reader goes away
                });
                build(200, &with_len(&headers, len), channel_body(rx))
            }
            Behaviour::AbortAfter { len, sent, headers } => {
                let (tx, rx) = mpsc::channel(2);
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Bytes::from(pattern(0, sent)))).await;
                    let _ = tx.send(Err(std::io::Error::other("origin aborts"))).await;
                });
                build(200, &with_len(&headers, len), channel_body(rx))
            }
        }
    })
}

/// An origin on a raw TCP socket: answers every request with the same scripted bytes and then
/// closes the connection. For responses hyper refuses to send, such as a body shorter than its
/// Content-Length or a chunked body cut before its last chunk.
pub struct RawOrigin {
    pub addr: SocketAddr,
    reply: Arc<Mutex<Bytes>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    /// Starts a raw origin answering `reply` (status line, head and body, verbatim).
    pub async fn start(reply: impl Into<Bytes>) -> RawOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply: Arc<Mutex<Bytes>> = Arc::new(Mutex::new(reply.into()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (reply.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (r, h) = (r.clone(), h.clone());
                tokio::spawn(async move {
                    // Read the request head (bounded), then answer and close.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let bytes = r.lock().clone();
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawOrigin { addr, reply, hits, task }
    }

    /// Replaces the scripted answer.
    pub fn set_reply(&self, reply: impl Into<Bytes>) {
        *self.reply.lock() = reply.into();
    }

    /// Requests answered so far (one per connection).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
