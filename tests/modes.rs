//! Every way a client reaches the proxy, end to end with real clients and servers on
//! 127.0.0.1: forward proxy, CONNECT, reverse proxy, HTTPS upstreams, TLS termination with
//! HTTP/2, h2c, the upstream pool, Via and loops.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use support::client::{get_via_proxy, send_on, Got};
use support::tls::TestPki;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn cacheable(origin: &Origin, path: &str, body: &str) {
    origin.ok(path, &[("last-modified", &last_modified()), ("content-type", "text/plain")], body);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_proxy_caches_absolute_form_requests_and_shares_them_with_embedded_urls() {
    let origin = Origin::start().await;
    cacheable(&origin, "/f.txt", "forward");
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, 80, dir.path()).start();
    let url = format!("http://127.0.0.1:{}/f.txt", origin.port());
    let hop = [("proxy-connection", "keep-alive"), ("proxy-authorization", "Basic dTpw")];

    let first = get_via_proxy(proxy.port, &url, &hop).await;
    assert_eq!((first.status.as_u16(), &first.body[..]), (200, &b"forward"[..]));
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert!(first.header("via").unwrap().contains("(httpcache-proxy)"), "{:?}", first.headers);
    let seen = origin.last_request("/f.txt").unwrap();
    assert!(seen.get("proxy-connection").is_none() && seen.get("proxy-authorization").is_none());
    assert!(seen["via"].to_str().unwrap().starts_with("1.1 "));
    assert_eq!(seen["host"], format!("127.0.0.1:{}", origin.port()).as_str());

    let second = get_via_proxy(proxy.port, &url, &hop).await;
    assert_eq!((second.header("x-cache"), &second.body[..]), (Some("HIT"), &b"forward"[..]));
    let embedded = get(&proxy.url(origin.port(), "/f.txt"), &[]).await;
    assert_eq!(embedded.header("x-cache"), Some("HIT"), "the same URL, the same entry");
    assert_eq!(origin.hits("/f.txt"), 1);

    let bad = get_via_proxy(proxy.port, "http://bad_host/x", &[]).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_proxying_can_be_turned_off() {
    let origin = Origin::start().await;
    cacheable(&origin, "/x", "x");
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, 80, dir.path()).arg("--no-forward").start();
    let got = get_via_proxy(proxy.port, &format!("http://127.0.0.1:{}/x", origin.port()), &[]).await;
    assert_eq!(got.status, 403);
    assert!(String::from_utf8_lossy(&got.body).contains("--no-forward"));
    assert_eq!(origin.hits("/x"), 0);
}

/// Sends CONNECT and returns the stream and the response head.
async fn connect(proxy_port: u16, target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", proxy_port)).await.unwrap();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await;
        match read {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_tunnels_tls_to_a_local_server_and_logs_the_bytes() {
    let pki = TestPki::new();
    let origin = Origin::start_tls(pki.acceptor(&[b"http/1.1"])).await;
    origin.ok("/secret", &[("content-type", "text/plain")], "through the tunnel");
    let dir = tmp();
    let proxy =
        ProxyBuilder::new(600, 80, dir.path()).arg("--connect-port").arg(&origin.port().to_string()).start();

    let (stream, head) = connect(proxy.port, &format!("localhost:{}", origin.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls =
        pki.connector(&[b"http/1.1"]).connect(server_name, stream).await.expect("TLS through the tunnel");
    let req = Request::get("/secret").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let got = send_on(tls, req).await;
    assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"through the tunnel"[..]));
    assert!(got.header("x-cache").is_none(), "nothing in a tunnel is touched");
    assert_eq!(origin.hits("/secret"), 1);
    assert!(proxy.wait_log("tunnel closed", Duration::from_secs(10)), "{:?}", proxy.log());
    let line = proxy.log().into_iter().find(|l| l.contains("tunnel closed")).unwrap();
    assert!(
        line.contains("bytes_up=") && line.contains("bytes_down=") && !line.contains("bytes_down=0"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_refusals_have_clear_statuses() {
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, 80, dir.path()).start();
    let (_, head) = connect(proxy.port, "127.0.0.1:22").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (_, head) = connect(proxy.port, "127.0.0.1:443").await;
    assert!(head.starts_with("HTTP/1.1 502"), "nothing listens on 443 here: {head}");
    let off = ProxyBuilder::new(600, 80, dir.path()).arg("--no-connect").start();
    let (_, head) = connect(off.port, "127.0.0.1:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reverse_proxy_rewrites_host_adds_forwarding_fields_and_caches() {
    let origin = Origin::start().await;
    cacheable(&origin, "/r.txt", "reverse");
    let dir = tmp();
    let origin_url = format!("http://127.0.0.1:{}", origin.port());
    let proxy = ProxyBuilder::new(600, 80, dir.path()).arg("--origin").arg(&origin_url).start();
    let url = format!("http://127.0.0.1:{}/r.txt", proxy.port);

    let first = get(&url, &[("x-forwarded-for", "10.1.2.3")]).await;
    assert_eq!((first.status.as_u16(), &first.body[..]), (200, &b"reverse"[..]));
    let seen = origin.last_request("/r.txt").unwrap();
    assert_eq!(seen["host"], format!("127.0.0.1:{}", origin.port()).as_str());
    assert_eq!(seen["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    let forwarded = seen["forwarded"].to_str().unwrap();
    assert!(forwarded.starts_with("for=127.0.0.1;proto=http;host="), "{forwarded}");
    let second = get(&url, &[]).await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/r.txt"), 1);

    // The embedded-host scheme is off: the path goes to the origin as it is.
    let embedded = get(&proxy.url(origin.port(), "/r.txt"), &[]).await;
    assert_eq!(embedded.status, 404);
    assert_eq!(origin.hits(&format!("/127.0.0.1:{}/r.txt", origin.port())), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reverse_proxy_by_host_name_with_preserved_host() {
    let origin = Origin::start().await;
    origin.route("/who", Behaviour::Echo { name: "host".into(), headers: vec![] });
    let dir = tmp();
    let rule = format!("site.test=http://127.0.0.1:{}", origin.port());
    let proxy =
        ProxyBuilder::new(600, 80, dir.path()).arg("--origin").arg(&rule).arg("--preserve-host").start();
    let url = format!("http://127.0.0.1:{}/who", proxy.port);
    let got = get(&url, &[("host", "site.test")]).await;
    assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"site.test"[..]));
    let other = get(&url, &[("host", "other.test")]).await;
    assert_eq!(other.status, 421);
    assert!(String::from_utf8_lossy(&other.body).contains("other.test"));
    assert_eq!(origin.hits("/who"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_are_verified_against_the_given_ca() {
    let pki = TestPki::new();
    let origin = Origin::start_tls(pki.acceptor(&[b"http/1.1"])).await;
    cacheable(&origin, "/s.txt", "secure");
    let dir = tmp();
    let ca = pki.ca_pem.display().to_string();
    let proxy = ProxyBuilder::new(600, 80, dir.path()).arg("--upstream-ca").arg(&ca).start();
    let url = format!("http://127.0.0.1:{}/https://localhost:{}/s.txt", proxy.port, origin.port());
    let first = get(&url, &[]).await;
    assert_eq!((first.status.as_u16(), &first.body[..]), (200, &b"secure"[..]), "{:?}", first.body);
    assert_eq!(get(&url, &[]).await.header("x-cache"), Some("HIT"));
    // Forward-proxy form of the same URL: the same entry.
    let fwd = get_via_proxy(proxy.port, &format!("https://localhost:{}/s.txt", origin.port()), &[]).await;
    assert_eq!(fwd.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/s.txt"), 1);

    let untrusting_dir = tmp();
    let untrusting = ProxyBuilder::new(600, 80, untrusting_dir.path()).start();
    let url = format!("http://127.0.0.1:{}/https://localhost:{}/s.txt", untrusting.port, origin.port());
    let refused = get(&url, &[]).await;
    let text = String::from_utf8_lossy(&refused.body).to_string();
    assert_eq!(refused.status, 502, "{text}");
    assert!(text.contains("certificate"), "the reason is named: {text}");
    assert_eq!(origin.hits("/s.txt"), 1);
}

/// An HTTP/2 request on `io` (TLS with ALPN h2, or cleartext prior knowledge).
async fn h2_get<I>(io: I, uri: &str) -> (Got, http::Version)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let resp =
        tokio::time::timeout(Duration::from_secs(30), sender.send_request(req)).await.unwrap().unwrap();
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (Got { status: parts.status, headers: parts.headers, body }, version)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_termination_offers_h2_and_http1() {
    let pki = TestPki::new();
    let origin = Origin::start().await;
    cacheable(&origin, "/h.txt", "over tls");
    let dir = tmp();
    let (cert, key) = (pki.cert_pem.display().to_string(), pki.key_pem.display().to_string());
    let proxy = ProxyBuilder::new(600, 80, dir.path())
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .start();
    let name = || rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let tcp = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let tls = pki.connector(&[b"h2", b"http/1.1"]).connect(name(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let uri = format!("https://localhost:{}/127.0.0.1:{}/h.txt", proxy.port, origin.port());
    let (got, version) = h2_get(tls, &uri).await;
    assert_eq!((got.status.as_u16(), version, &got.body[..]), (200, http::Version::HTTP_2, &b"over tls"[..]));

    let tcp = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let tls = pki.connector(&[b"http/1.1"]).connect(name(), tcp).await.unwrap();
    let path = format!("/127.0.0.1:{}/h.txt", origin.port());
    let req = Request::get(path).header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let got = send_on(tls, req).await;
    assert_eq!((got.status.as_u16(), got.header("x-cache")), (200, Some("HIT")));
    assert_eq!(origin.hits("/h.txt"), 1);

    // A plain-HTTP client on the HTTPS port gets nothing usable, and the proxy keeps going.
    let plain = raw(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_on_the_cleartext_port() {
    let origin = Origin::start().await;
    cacheable(&origin, "/c.txt", "h2c");
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, 80, dir.path()).start();
    let tcp = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let uri = format!("http://127.0.0.1:{}/127.0.0.1:{}/c.txt", proxy.port, origin.port());
    let (got, version) = h2_get(tcp, &uri).await;
    assert_eq!((got.status.as_u16(), version, &got.body[..]), (200, http::Version::HTTP_2, &b"h2c"[..]));
    assert_eq!(got.header("x-cache"), Some("MISS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_pooled() {
    let origin = Origin::start().await;
    for i in 0..20 {
        cacheable(&origin, &format!("/p{i}"), "pooled");
    }
    let dir = tmp();
    let proxy = ProxyBuilder::new(0, origin.port(), dir.path()).start();
    for i in 0..20 {
        let got = get(&proxy.url(origin.port(), &format!("/p{i}")), &[]).await;
        assert_eq!(got.status, 200);
    }
    assert_eq!(origin.connections(), 1, "20 sequential requests over one pooled connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_comes_back_is_refused_as_a_loop() {
    let origin = Origin::start().await;
    cacheable(&origin, "/l", "loop");
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, 80, dir.path()).start();
    // Forward-proxied to the proxy itself, which would forward it again.
    let url = format!("http://127.0.0.1:{}/127.0.0.1:{}/l", proxy.port, origin.port());
    let got = get_via_proxy(proxy.port, &url, &[]).await;
    assert_eq!(got.status, 508, "{}", String::from_utf8_lossy(&got.body));
    assert!(String::from_utf8_lossy(&got.body).contains("loop"));
    assert_eq!(origin.hits("/l"), 0);
}

/// An origin that answers the first request of each connection with keep-alive, then closes
/// the connection when the second request arrives, without answering it.
async fn closing_origin() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                let _ = s.read(&mut buf).await; // the second request: close without answering
            });
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_request_on_a_closed_pooled_connection_is_retried_once() {
    let (port, accepted) = closing_origin().await;
    let dir = tmp();
    let proxy = ProxyBuilder::new(0, port, dir.path()).arg("-v").start();
    for round in 1..=3 {
        let got = get(&format!("http://127.0.0.1:{}/127.0.0.1:{port}/r", proxy.port), &[]).await;
        assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"ok"[..]), "round {round}");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(proxy.wait_log("retrying once", Duration::from_secs(5)), "{:?}", proxy.log());
}

/// Runs curl with `args` and returns its stdout (a real client configured the usual way).
async fn curl(args: Vec<String>, env: Vec<(&'static str, String)>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--noproxy", ""])
            .args(&args)
            .envs(env)
            .output()
            .expect("curl is installed (scripts/test.sh installs it)");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_through_the_proxy_with_x_and_https_proxy() {
    let pki = TestPki::new();
    let origin = Origin::start().await;
    cacheable(&origin, "/curl.txt", "plain via -x");
    let tls_origin = Origin::start_tls(pki.acceptor(&[b"http/1.1"])).await;
    tls_origin.ok("/tls.txt", &[], "https via CONNECT");
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, 80, dir.path())
        .arg("--connect-port")
        .arg(&tls_origin.port().to_string())
        .start();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);

    let url = format!("http://127.0.0.1:{}/curl.txt", origin.port());
    for _ in 0..2 {
        let (ok, out, err) = curl(vec!["-x".into(), proxy_url.clone(), url.clone()], vec![]).await;
        assert!(ok, "{err}");
        assert_eq!(out, "plain via -x");
    }
    assert_eq!(origin.hits("/curl.txt"), 1, "the second curl was a hit");

    let url = format!("https://localhost:{}/tls.txt", tls_origin.port());
    let args = vec!["--cacert".into(), pki.ca_pem.display().to_string(), url];
    let (ok, out, err) = curl(args, vec![("HTTPS_PROXY", proxy_url)]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "https via CONNECT");
    assert_eq!(tls_origin.hits("/tls.txt"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_per_host_are_capped() {
    let origin = Origin::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    for path in ["/slow1", "/slow2"] {
        let (first, rest) = (Bytes::from_static(b"first "), Bytes::from_static(b"rest"));
        origin.route(path, Behaviour::Gated { first, rest, gate: gate.clone(), headers: vec![] });
    }
    origin.ok("/quick", &[], "quick");
    let dir = tmp();
    let proxy = ProxyBuilder::new(0, origin.port(), dir.path())
        .arg("--upstream-max-connections-per-host")
        .arg("2")
        .arg("--connect-timeout")
        .arg("300ms")
        .start();
    let slow: Vec<_> = ["/slow1", "/slow2"]
        .into_iter()
        .map(|p| {
            let url = proxy.url(origin.port(), p);
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    assert!(eventually(Duration::from_secs(10), || origin.hits("/slow1") + origin.hits("/slow2") == 2).await);

    let busy = get(&proxy.url(origin.port(), "/quick"), &[]).await;
    assert_eq!(busy.status, 503, "{}", String::from_utf8_lossy(&busy.body));
    assert!(String::from_utf8_lossy(&busy.body).contains("connections"));
    assert_eq!(origin.hits("/quick"), 0);

    gate.notify_waiters();
    for task in slow {
        assert_eq!(&task.await.unwrap().body[..], b"first rest");
    }
    let after = get(&proxy.url(origin.port(), "/quick"), &[]).await;
    assert_eq!((after.status.as_u16(), &after.body[..]), (200, &b"quick"[..]));
}
