//! A small HTTP client for tests: hyper's pooled client, and a raw socket for malformed input.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A finished response.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GET `url` with extra headers, within 60 s.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    request("GET", url, headers).await
}

/// `n` GETs of `url` at once, each on its own task; their answers in the order sent.
pub async fn get_concurrently(url: &str, n: usize) -> Vec<Got> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for t in tasks {
        answers.push(t.await.expect("request task"));
    }
    answers
}

/// Any method, no body.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Got {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let fut = async {
        let resp = client.request(req.body(Empty::new()).unwrap()).await.expect("request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Got { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(Duration::from_secs(60), fut).await.expect("response within 60 s")
}

/// Sends raw bytes and returns everything the server answers until it closes (bounded).
pub async fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `req` as it is (an absolute-form URI stays absolute-form) on a new HTTP/1.1
/// connection to `io`, as a client configured with a forward proxy does.
pub async fn send_on<I>(io: I, req: Request<Empty<Bytes>>) -> Got
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let fut = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.expect("handshake");
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.expect("request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Got { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(Duration::from_secs(60), fut).await.expect("response within 60 s")
}

/// GET `url` through the forward proxy on `proxy_port` (absolute-form request).
pub async fn get_via_proxy(proxy_port: u16, url: &str, headers: &[(&str, &str)]) -> Got {
    let uri: http::Uri = url.parse().unwrap();
    let mut req = Request::get(url).header("host", uri.authority().unwrap().as_str());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port)).await.unwrap();
    send_on(stream, req.body(Empty::new()).unwrap()).await
}
