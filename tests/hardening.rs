//! Hostile input and abuse: smuggling-shaped requests, size limits, ambiguous upstream
//! responses, the client allow-list, connection limits and header/idle timeouts. Raw sockets
//! throughout, so the exact bytes on the wire are the test's own.

mod support;

use std::time::{Duration, Instant};

use support::origin::RawOrigin;
use support::{get, raw, Origin, ProxyBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The status code of a raw answer ("HTTP/1.1 400 ..." -> 400).
fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Sends `bytes`, half-closes, and reads the answer until the proxy closes (bounded).
async fn raw_half_closed(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_or_malformed_requests_get_exact_statuses_and_never_reach_the_origin() {
    let origin = Origin::start().await;
    origin.ok("/x", &[], "hello");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let p = origin.port();
    let post =
        |fields: &str, body: &str| format!("POST /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\n{fields}\r\n{body}");
    let get_with = |fields: &str| format!("GET /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
    let cases: Vec<(&str, String, u16)> = vec![
        ("differing CLs", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400),
        ("CL list", post("Content-Length: 5, 6\r\n", "hello!"), 400),
        ("signed CL", post("Content-Length: +5\r\n", "hello"), 400),
        ("TE not ending in chunked", post("Transfer-Encoding: chunked, gzip\r\n", ""), 400),
        ("TE gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501),
        ("TE identity", post("Transfer-Encoding: identity\r\n", ""), 400),
        (
            "TE on HTTP/1.0",
            format!("POST /127.0.0.1:{p}/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        ("obs-fold", get_with("X-A: a\r\n b\r\n"), 400),
        ("bare CR in a field", get_with("X-A: a\rb\r\n"), 400),
        ("NUL in a field", get_with("X-A: a\0b\r\n"), 400),
        ("control char in a field", get_with("X-A: a\x01b\r\n"), 400),
        ("DEL in a field", get_with("X-A: a\x7fb\r\n"), 400),
        ("space before colon", get_with("X-A : b\r\n"), 400),
        ("control char in the target", format!("GET /127.0.0.1:{p}/x\x01 HTTP/1.1\r\nHost: x\r\n\r\n"), 400),
        ("two Host fields", get_with("Host: y\r\n"), 400),
        ("bad chunk size", post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size with bare LF", post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"), 400),
        (
            "chunk extension with a bare LF",
            post("Transfer-Encoding: chunked\r\n", "5;ext\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk data longer than its size",
            post("Transfer-Encoding: chunked\r\n", "2\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        ("chunk size overflow", post("Transfer-Encoding: chunked\r\n", "fffffffffffffffff\r\nx\r\n"), 400),
    ];
    for (name, request, expected) in cases {
        let answer = raw(proxy.port, request.as_bytes()).await;
        assert_eq!(status_of(&answer), expected, "{name}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{name}: {answer}");
        assert_eq!(origin.connections(), 0, "{name} reached the origin");
    }
    // A body cut short (the client half-closes after 5 of 10 bytes): never forwarded.
    let short = post("Content-Length: 10\r\n", "hello");
    let answer = raw_half_closed(proxy.port, short.as_bytes()).await;
    assert!(status_of(&answer) == 400 || answer.is_empty(), "{answer}");
    assert_eq!(origin.connections(), 0, "a body cut short reached the origin");
    // The same requests framed properly go through, so the cases above failed for their flaw.
    let fine = raw(proxy.port, post("Content-Length: 5\r\nConnection: close\r\n", "hello").as_bytes()).await;
    assert_eq!(status_of(&fine), 200, "{fine}");
    let chunked = post("Transfer-Encoding: chunked\r\nConnection: close\r\n", "5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(status_of(&raw(proxy.port, chunked.as_bytes()).await), 200);
    assert_eq!(origin.hits("/x"), 2);
}

/// Both Content-Length and Transfer-Encoding: hyper frames the message by the chunked coding,
/// drops Content-Length and closes the connection after the answer (RFC 9112 §6.3, the
/// intermediary's option), so neither the origin nor a request hidden behind it sees an
/// ambiguous message.
#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let origin = Origin::start().await;
    origin.ok("/x", &[], "hello");
    origin.ok("/smuggled", &[], "no");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let p = origin.port();
    let hidden = format!("GET /127.0.0.1:{p}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    for fields in
        ["Content-Length: 5\r\nTransfer-Encoding: chunked", "Transfer-Encoding: chunked\r\nContent-Length: 5"]
    {
        // Read by Content-Length the body would be "0\r\n\r\n" + 1 byte; read as chunked it is empty
        // and the hidden request follows. Either way it must not be served.
        let req = format!("POST /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\n{fields}\r\n\r\n0\r\n\r\n{hidden}");
        let answer = raw(proxy.port, req.as_bytes()).await;
        assert_eq!(status_of(&answer), 200, "{answer}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "one answer, then close: {answer}");
        let seen = origin.last_request("/x").unwrap();
        assert!(seen.get("content-length").is_none_or(|v| v == "0"), "{seen:?}");
    }
    assert_eq!(origin.hits("/x"), 2);
    assert_eq!(origin.hits("/smuggled"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_line_head_and_body_limits_answer_414_431_413() {
    let origin = Origin::start().await;
    origin.ok("/x", &[], "hello");
    let dir = tmp();
    let proxy =
        ProxyBuilder::new(60, origin.port(), dir.path()).arg("--max-request-body").arg("1KiB").start();
    let p = origin.port();
    let long = format!("GET /127.0.0.1:{p}/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_eq!(status_of(&raw(proxy.port, long.as_bytes()).await), 414);
    let longer = format!("GET /127.0.0.1:{p}/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    // Longer than the whole head may be (--max-header-size): hyper's own answer.
    assert_eq!(status_of(&raw(proxy.port, longer.as_bytes()).await), 431);
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(status_of(&raw(proxy.port, many.as_bytes()).await), 431);
    let big = format!("GET /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(70_000));
    assert_eq!(status_of(&raw(proxy.port, big.as_bytes()).await), 431);
    let declared = format!("POST /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n");
    assert_eq!(status_of(&raw(proxy.port, declared.as_bytes()).await), 413);
    let chunk = "a".repeat(600);
    let streamed = format!(
        "POST /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    assert_eq!(status_of(&raw(proxy.port, streamed.as_bytes()).await), 413);
    assert_eq!(origin.connections(), 0);
    // At the limits, requests pass.
    let at = format!(
        "POST /127.0.0.1:{p}/x{} HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{}",
        "a".repeat(8192 - 20),
        "b".repeat(1024)
    );
    assert_eq!(status_of(&raw(proxy.port, at.as_bytes()).await), 404, "routed, not refused");
    let at_body = format!(
        "POST /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{}",
        "b".repeat(1024)
    );
    assert_eq!(status_of(&raw(proxy.port, at_body.as_bytes()).await), 200);

    // Past the 64 KiB preread the request has started; going over the limit then cuts the
    // upload and answers 413 all the same.
    let dir2 = tmp();
    let proxy = ProxyBuilder::new(60, p, dir2.path()).arg("--max-request-body").arg("100KiB").start();
    let chunk = "c".repeat(40_000);
    let chunks: String = (0..4).map(|_| format!("{:x}\r\n{chunk}\r\n", chunk.len())).collect();
    let long = format!(
        "POST /127.0.0.1:{p}/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}0\r\n\r\n"
    );
    assert_eq!(status_of(&raw(proxy.port, long.as_bytes()).await), 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_responses_with_ambiguous_framing_are_502_and_never_stored() {
    let lm = support::last_modified();
    let replies = [
        format!("HTTP/1.1 200 OK\r\nLast-Modified: {lm}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        format!("HTTP/1.1 200 OK\r\nLast-Modified: {lm}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("HTTP/1.1 200 OK\r\nLast-Modified: {lm}\r\nContent-Length: 5x\r\n\r\nhello"),
        format!("HTTP/1.1 200 OK\r\nLast-Modified: {lm}\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello"),
    ];
    for reply in replies {
        let origin = RawOrigin::start(reply.clone()).await;
        let dir = tmp();
        let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
        for round in 1..=2 {
            let got = get(&proxy.url(origin.port(), "/r"), &[]).await;
            assert_eq!(got.status, 502, "{reply:?}");
            assert_eq!(origin.hits(), round, "not stored: {reply:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_outside_the_allow_list_get_403_and_the_effective_list_is_logged() {
    let origin = Origin::start().await;
    origin.ok("/x", &[("Last-Modified", &support::last_modified())], "hello");
    let dir = tmp();
    let proxy =
        ProxyBuilder::new(60, origin.port(), dir.path()).arg("--allow-client").arg("10.0.0.0/8").start();
    let req = format!("GET /127.0.0.1:{}/x HTTP/1.1\r\nHost: x\r\n\r\n", origin.port());
    let answer = raw(proxy.port, req.as_bytes()).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(answer.contains("--allow-client"), "{answer}");
    assert_eq!(origin.connections(), 0);
    assert!(proxy.wait_log("allow_client=10.0.0.0/8", Duration::from_secs(5)), "{:?}", proxy.log());

    // Default on loopback: loopback only, no warning.
    let dir2 = tmp();
    let local = ProxyBuilder::new(60, origin.port(), dir2.path()).start();
    assert_eq!(get(&local.url(origin.port(), "/x"), &[]).await.status, 200);
    assert!(local.wait_log("allow_client=127.0.0.0/8, ::1/128", Duration::from_secs(5)), "{:?}", local.log());
    assert!(!local.log().iter().any(|l| l.contains("OPEN PROXY")));

    // A network bind without --allow-client keeps serving everyone and says so loudly.
    let dir3 = tmp();
    let open = ProxyBuilder::new(60, origin.port(), dir3.path()).arg("--host").arg("0.0.0.0").start();
    assert!(open.wait_log("OPEN PROXY", Duration::from_secs(5)), "{:?}", open.log());
    assert!(open.log().iter().any(|l| l.contains("WARN") && l.contains("OPEN PROXY")));
    assert_eq!(get(&open.url(origin.port(), "/x"), &[]).await.status, 200);
}

/// A keep-alive connection that has had one answer (so the proxy has admitted it).
async fn admitted_connection(port: u16, origin: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET /127.0.0.1:{origin}/x HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with("hello") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(status_of(&String::from_utf8_lossy(&got)), 200);
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limits_get_503_and_close_and_slots_come_back() {
    let origin = Origin::start().await;
    origin.ok("/x", &[("Last-Modified", &support::last_modified())], "hello");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--max-connections").arg("2").start();
    let req = format!("GET /127.0.0.1:{}/x HTTP/1.1\r\nHost: x\r\n\r\n", origin.port());
    let first = admitted_connection(proxy.port, origin.port()).await;
    let _second = admitted_connection(proxy.port, origin.port()).await;
    let answer = raw(proxy.port, req.as_bytes()).await;
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("Connection: close") && answer.contains("--max-connections"), "{answer}");
    drop(first);
    let mut again = String::new();
    for _ in 0..200 {
        again = raw(proxy.port, format!("{}Connection: close\r\n\r\n", req.trim_end()).as_bytes()).await;
        if status_of(&again) == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status_of(&again), 200, "the closed connection's slot is free again: {again}");

    let dir2 = tmp();
    let per_client = ProxyBuilder::new(60, origin.port(), dir2.path())
        .arg("--max-connections-per-client")
        .arg("1")
        .start();
    let _one = admitted_connection(per_client.port, origin.port()).await;
    let answer = raw(per_client.port, req.as_bytes()).await;
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("--max-connections-per-client"), "{answer}");
}

/// Reads until the proxy closes the connection; returns what came and how long it took.
async fn until_closed(s: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_request_heads_and_idle_keep_alive_connections_are_closed() {
    let origin = Origin::start().await;
    origin.ok("/x", &[("Last-Modified", &support::last_modified())], "hello");
    let dir = tmp();
    let proxy =
        ProxyBuilder::new(60, origin.port(), dir.path()).arg("--header-read-timeout").arg("1s").start();
    // Slowloris: a head that never ends.
    let mut slow = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    slow.write_all(b"GET /127.0.0.1:1/x HTTP/1.1\r\nHost: x\r\nX-A: ").await.unwrap();
    let (answer, took) = until_closed(&mut slow).await;
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(!answer.contains(" 200 "), "{answer}");
    // A client that connects and sends nothing at all: closed after the same deadline.
    let mut silent = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let (answer, took) = until_closed(&mut silent).await;
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(5), "closed after {took:?}");
    assert!(answer.is_empty(), "{answer}");
    // Idle keep-alive: closed after the same timeout once the answer is sent.
    let mut idle = admitted_connection(proxy.port, origin.port()).await;
    let (rest, took) = until_closed(&mut idle).await;
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(5), "closed after {took:?}");
    assert!(!rest.contains("HTTP/1.1 2"), "{rest}");
    assert_eq!(origin.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn target_rules_are_checked_on_the_resolved_address_for_requests_and_tunnels() {
    let origin = Origin::start().await;
    origin.ok("/x", &[("Last-Modified", &support::last_modified())], "hello");
    let p = origin.port();
    // Default: metadata refused, loopback (the test origin) allowed.
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, p, dir.path()).start();
    let got = get(&format!("http://127.0.0.1:{}/169.254.169.254/latest/meta-data/", proxy.port), &[]).await;
    assert_eq!(got.status, 403);
    assert!(String::from_utf8_lossy(&got.body).contains("169.254.0.0/16"), "{:?}", got.body);
    let got = get(&format!("http://127.0.0.1:{}/[fd00:ec2::254]/latest/", proxy.port), &[]).await;
    assert_eq!(got.status, 403);
    // Forward (absolute-form) and HTTPS upstreams go through the same connector.
    let forward =
        "GET http://169.254.169.254/latest/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&raw(proxy.port, forward.as_bytes()).await), 403);
    let got = get(&format!("http://127.0.0.1:{}/https://169.254.169.254/latest/", proxy.port), &[]).await;
    assert_eq!(got.status, 403);
    assert_eq!(get(&proxy.url(p, "/x"), &[]).await.status, 200);
    assert!(proxy.wait_log("upstream targets", Duration::from_secs(5)));

    // --deny-private: loopback refused, by address and by a name that resolves to it.
    let dir2 = tmp();
    let private = ProxyBuilder::new(60, p, dir2.path())
        .arg("--deny-private")
        .arg("--connect-port")
        .arg(&p.to_string())
        .start();
    for host in ["127.0.0.1", "localhost"] {
        let got = get(&format!("http://127.0.0.1:{}/{host}:{p}/x", private.port), &[]).await;
        assert_eq!(got.status, 403, "{host}");
        assert!(String::from_utf8_lossy(&got.body).contains("--deny-private"), "{:?}", got.body);
        let tunnel = format!("CONNECT {host}:{p} HTTP/1.1\r\nHost: {host}:{p}\r\nConnection: close\r\n\r\n");
        let answer = raw(private.port, tunnel.as_bytes()).await;
        assert_eq!(status_of(&answer), 403, "CONNECT {host}: {answer}");
    }
    assert_eq!(origin.connections(), 1, "only the first proxy's allowed request");

    // An --allow-target exception lifts --deny-private for that address only.
    let dir3 = tmp();
    let allowed = ProxyBuilder::new(60, p, dir3.path())
        .arg("--deny-private")
        .arg("--allow-target")
        .arg("127.0.0.1")
        .start();
    assert_eq!(get(&allowed.url(p, "/x"), &[]).await.status, 200);

    // --deny-target by host pattern, and by range (reached through a name).
    let dir4 = tmp();
    let denied = ProxyBuilder::new(60, p, dir4.path())
        .arg("--deny-target")
        .arg("*host")
        .arg("--deny-target")
        .arg("127.0.0.2/32")
        .start();
    let got = get(&format!("http://127.0.0.1:{}/localhost:{p}/x", denied.port), &[]).await;
    assert_eq!(got.status, 403);
    assert!(String::from_utf8_lossy(&got.body).contains("--deny-target *host"), "{:?}", got.body);
    let got = get(&format!("http://127.0.0.1:{}/127.0.0.2:{p}/x", denied.port), &[]).await;
    assert_eq!(got.status, 403);
    assert_eq!(origin.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_keys_keep_scheme_host_and_port_apart_and_targets_are_validated() {
    let lm = support::last_modified();
    let (a, b) = (Origin::start().await, Origin::start().await);
    a.ok("/same", &[("Last-Modified", &lm)], "from a");
    b.ok("/same", &[("Last-Modified", &lm)], "from b");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, a.port(), dir.path()).start();
    for _ in 0..2 {
        assert_eq!(&get(&proxy.url(a.port(), "/same"), &[]).await.body[..], b"from a");
        assert_eq!(&get(&proxy.url(b.port(), "/same"), &[]).await.body[..], b"from b");
    }
    assert_eq!((a.hits("/same"), b.hits("/same")), (1, 1), "one entry per port");
    // Another name for the same address is another key (the key is what the client named).
    let by_name = format!("http://127.0.0.1:{}/localhost:{}/same", proxy.port, a.port());
    assert_eq!(&get(&by_name, &[]).await.body[..], b"from a");
    assert_eq!(a.hits("/same"), 2);
    // A forward request keys and sends by its absolute URI, not by a Host field that disagrees.
    let forward = format!(
        "GET http://127.0.0.1:{}/same HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        b.port()
    );
    let answer = raw(proxy.port, forward.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("from b"), "{answer}");
    assert_eq!(b.hits("/same"), 1, "served from the entry the URI names");

    // Userinfo, bad ports and characters in the embedded target are refused before any lookup.
    let p = a.port();
    for target in [
        format!("/user@127.0.0.1:{p}/same"),
        format!("/user:pw@127.0.0.1:{p}/same"),
        format!("/127.0.0.1:{p}x/same"),
        "/127.0.0.1:99999/same".to_string(),
        format!("/127.0.0.1%0d%0aX-Injected:%20yes:{p}/same"),
        format!("/127.0.0.1%20:{p}/same"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(proxy.port, req.as_bytes()).await;
        assert_eq!(status_of(&answer), 400, "{target}: {answer}");
    }
    let with_userinfo =
        format!("GET http://user@127.0.0.1:{p}/same HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&raw(proxy.port, with_userinfo.as_bytes()).await), 400);
    assert_eq!(a.hits("/same"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_max_object_size_are_served_whole_but_never_stored() {
    let origin = Origin::start().await;
    let big = "x".repeat(3000);
    origin.ok("/big", &[("Last-Modified", &support::last_modified())], &big);
    origin.ok("/small", &[("Last-Modified", &support::last_modified())], "small");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--max-object-size").arg("2KiB").start();
    for round in 1..=2 {
        let got = get(&proxy.url(origin.port(), "/big"), &[]).await;
        assert_eq!((got.status.as_u16(), got.body.len()), (200, 3000));
        assert_eq!(origin.hits("/big"), round);
        get(&proxy.url(origin.port(), "/small"), &[]).await;
    }
    assert_eq!(origin.hits("/small"), 1, "a body within the limit is stored");
}

/// Whether a raw answer is a complete-looking 200 (status 200 and as many body bytes as its
/// Content-Length says).
fn complete_200(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, _)) = text.split_once("\r\n\r\n") else { return false };
    let body_len = answer.len() - head.len() - 4;
    let declared = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse::<usize>().ok());
    status_of(&text) == 200 && declared == Some(body_len)
}

#[tokio::test(flavor = "multi_thread")]
async fn coalesced_clients_of_a_leader_whose_upstream_dies_get_502_or_a_cut_never_a_whole_body() {
    let origin = Origin::start().await;
    let headers = vec![("Last-Modified".to_string(), support::last_modified())];
    for (path, len, sent) in [("/small", 20_000, 5_000), ("/large", 1 << 20, 300_000)] {
        let dies = support::Behaviour::AbortAfter { len, sent, headers: headers.clone() };
        let delay = Duration::from_millis(800);
        origin.route(path, support::Behaviour::Delay { delay, then: Box::new(dies) });
    }
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    for path in ["/small", "/large"] {
        let req = format!(
            "GET /127.0.0.1:{}{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            origin.port()
        );
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (req, port) = (req.clone(), proxy.port);
                tokio::spawn(async move {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    s.write_all(req.as_bytes()).await.unwrap();
                    let mut out = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
                    out
                })
            })
            .collect();
        let mut bad_gateway = 0;
        for client in clients {
            let answer = client.await.unwrap();
            bad_gateway += usize::from(answer.starts_with(b"HTTP/1.1 502"));
            let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            assert!(!complete_200(&answer), "{path}: a cut body reached a client looking whole: {text}");
            assert!(status_of(&text) == 502 || status_of(&text) == 200, "{path}: {text}");
        }
        assert_eq!(origin.hits(path), 1, "{path}: the waiting clients were released, not sent again");
        if path == "/small" {
            assert!(bad_gateway >= 1, "a small body is read whole, so its leader answers 502");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_header_lists_over_the_limit_are_refused_with_431() {
    let origin = Origin::start().await;
    origin.ok("/x", &[], "hello");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let io = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let uri = format!("http://127.0.0.1:{}/127.0.0.1:{}/x", proxy.port, origin.port());
    // Above hyper's 16 KiB default, within --max-header-size (64 KiB): served.
    let within = http::Request::get(&uri)
        .header("x-big", "b".repeat(20_000))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(within).await.unwrap().status(), 200);
    let big = http::Request::get(&uri)
        .header("x-big", "b".repeat(70_000))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    match sender.send_request(big).await {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(e) => panic!("expected a 431 answer, got {e}"),
    }
    assert_eq!(origin.hits("/x"), 1);
}
