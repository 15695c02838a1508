//! The core proxy end to end: the real binary against a real origin, counting what reaches
//! the origin.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::*;
use tokio::sync::Notify;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A raw client connection that has sent `GET url` and read nothing yet: a coalescing leader
/// whose client can be made to leave at a chosen moment.
async fn raw_get(url: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let uri: http::Uri = url.parse().unwrap();
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", uri.port_u16().unwrap())).await.unwrap();
    let head = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", uri.path());
    client.write_all(head.as_bytes()).await.unwrap();
    client
}

/// A proxy with 4 MiB on disk (about 250 objects of 10 KB), a 256 KiB memory tier and a
/// 64 KiB object limit: small enough for objects to pass through the disk in a test.
fn small_tiers(origin_port: u16, dir: &std::path::Path) -> ProxyProcess {
    ProxyBuilder::new(600, origin_port, dir)
        .arg("--cache-size")
        .arg("4MiB")
        .arg("--memory-size")
        .arg("256KiB")
        .arg("--max-object-size")
        .arg("64KiB")
        .start()
}

/// Object `i` for [`small_tiers`]: 10 KB of its own pattern, cacheable for the proxy's
/// `stale_time` (it has a `Last-Modified`).
fn ten_kb_object(i: u64, last_modified: &str) -> Behaviour {
    Behaviour::Fixed {
        status: 200,
        headers: owned(&[("last-modified", last_modified)]),
        body: Bytes::from(pattern(i, 10_000)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn miss_then_hit_reaches_origin_once() {
    let origin = Origin::start().await;
    let lm = last_modified();
    origin.ok("/a.txt", &[("last-modified", &lm), ("content-type", "text/plain")], "hello");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();

    let first = get(&proxy.url(origin.port(), "/a.txt"), &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "hello");
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert!(first.header("cache-status").unwrap().contains("fwd=uri-miss"));

    let second = get(&proxy.url(origin.port(), "/a.txt"), &[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, "hello");
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.header("content-type"), Some("text/plain"));
    assert!(second.header("age").is_some(), "Age on a cached response");
    assert!(second.header("cache-status").unwrap().starts_with("httpcache-proxy; hit"));
    assert_eq!(origin.hits("/a.txt"), 1);
}

/// `--workers N` runs N tokio worker threads; with 1, the main thread runs every task on the
/// current-thread scheduler. Either way the proxy serves and caches.
#[tokio::test(flavor = "multi_thread")]
async fn workers_flag_sets_the_serving_threads() {
    let origin = Origin::start().await;
    let lm = last_modified();
    origin.ok("/w.txt", &[("last-modified", &lm)], "threads");
    for (workers, scheduler) in [(1, "CurrentThread"), (3, "MultiThread")] {
        let dir = tmp();
        let proxy = ProxyBuilder::new(60, origin.port(), dir.path())
            .arg("--workers")
            .arg(&workers.to_string())
            .start();
        let line = proxy.log().into_iter().find(|l| l.contains("listening on")).unwrap();
        assert!(line.contains(&format!("workers={workers} scheduler={scheduler}")), "{line}");
        for expected in ["MISS", "HIT"] {
            let got = get(&proxy.url(origin.port(), "/w.txt"), &[]).await;
            assert_eq!(got.status, 200);
            assert_eq!(got.body, "threads");
            assert_eq!(got.header("x-cache"), Some(expected), "--workers {workers}");
        }
    }
    assert_eq!(origin.hits("/w.txt"), 2, "one miss per proxy");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_header_names_the_target_and_query_is_kept() {
    let origin = Origin::start().await;
    origin.ok("/q?x=1&y=2", &[], "query");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let got = get(&proxy.url(origin.port(), "/q?x=1&y=2"), &[]).await;
    assert_eq!(got.body, "query");
    let h = origin.last_request("/q?x=1&y=2").unwrap();
    assert_eq!(h.get("host").unwrap(), &format!("127.0.0.1:{}", origin.port()));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_port_flag_is_used_when_url_names_none() {
    let origin = Origin::start().await;
    origin.ok("/p", &[], "via default port");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let got = get(&format!("http://127.0.0.1:{}/127.0.0.1/p", proxy.port), &[]).await;
    assert_eq!(got.body, "via default port");
}

#[tokio::test(flavor = "multi_thread")]
async fn response_without_validator_or_freshness_is_not_reused() {
    let origin = Origin::start().await;
    origin.ok("/plain", &[], "x");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    for _ in 0..2 {
        assert_eq!(get(&proxy.url(origin.port(), "/plain"), &[]).await.body, "x");
    }
    assert_eq!(origin.hits("/plain"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_expiry_refetches() {
    let origin = Origin::start().await;
    origin.ok("/t", &[("last-modified", &last_modified())], "v1");
    let dir = tmp();
    // The origin's Date has whole seconds, so an entry can be up to a second old when it is
    // stored (RFC 9111 §4.2.3 apparent age). A TTL of 3 s leaves the hit below two seconds to
    // arrive, which a loaded CI machine needs; a TTL of 1 s made the hit a MISS there.
    const TTL: u64 = 3;
    let proxy = ProxyBuilder::new(TTL, origin.port(), dir.path()).start();
    get(&proxy.url(origin.port(), "/t"), &[]).await;
    let stored = tokio::time::Instant::now();
    assert_eq!(get(&proxy.url(origin.port(), "/t"), &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/t"), 1);
    // The TTL is a duration of real time; this waits for it to pass, not for a task. Past it,
    // the entry is stale whatever its apparent age.
    tokio::time::sleep_until(stored + Duration::from_secs(TTL) + Duration::from_millis(100)).await;
    origin.ok("/t", &[("last-modified", &last_modified())], "v2");
    let after = get(&proxy.url(origin.port(), "/t"), &[]).await;
    assert_eq!(origin.hits("/t"), 2);
    assert_eq!(after.body, "v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_time_zero_never_caches_and_writes_nothing() {
    let origin = Origin::start().await;
    origin.ok("/z", &[("last-modified", &last_modified()), ("cache-control", "max-age=600")], "z");
    let dir = tmp();
    let cache_dir = dir.path().join("cache");
    let proxy = ProxyBuilder::new(0, origin.port(), &cache_dir).start();
    for _ in 0..3 {
        let got = get(&proxy.url(origin.port(), "/z"), &[]).await;
        assert_eq!(got.body, "z");
        assert_eq!(got.header("x-cache"), Some("MISS"));
    }
    assert_eq!(origin.hits("/z"), 3);
    assert!(!cache_dir.exists(), "nothing written with stale_time 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_hits() {
    let origin = Origin::start().await;
    origin.ok("/keep", &[("last-modified", &last_modified())], "persisted");
    let dir = tmp();
    let mut proxy = ProxyBuilder::new(600, origin.port(), dir.path()).start();
    get(&proxy.url(origin.port(), "/keep"), &[]).await;
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(Duration::from_secs(15)), Some(0));

    let proxy = ProxyBuilder::new(600, origin.port(), dir.path()).start();
    let got = get(&proxy.url(origin.port(), "/keep"), &[]).await;
    assert_eq!(got.body, "persisted");
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/keep"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_misses_make_one_upstream_request() {
    let origin = Origin::start().await;
    let body = Bytes::from(pattern(0, 200_000));
    origin.route(
        "/hot",
        Behaviour::Delay {
            delay: Duration::from_millis(300),
            then: Box::new(Behaviour::Fixed {
                status: 200,
                headers: owned(&[("last-modified", &last_modified())]),
                body: body.clone(),
            }),
        },
    );
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/hot");
    for got in get_concurrently(&url, 50).await {
        assert_eq!(got.status, 200);
        assert_eq!(got.body, body);
    }
    assert_eq!(origin.hits("/hot"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn coalesced_clients_get_bytes_before_the_origin_finishes() {
    let origin = Origin::start().await;
    let gate = Arc::new(Notify::new());
    origin.route(
        "/gated",
        Behaviour::Gated {
            // Larger than the proxy's inline limit (64 KiB), so the body streams.
            first: Bytes::from(pattern(0, 100_000)),
            rest: Bytes::from_static(b"rest"),
            gate: gate.clone(),
            headers: owned(&[("last-modified", &last_modified())]),
        },
    );
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/gated");
    // Two clients: both must see the first part while the origin still holds the rest.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<Bytes>>();
        let resp = client.get(url.parse().unwrap()).await.unwrap();
        bodies.push(resp.into_body());
    }
    for body in &mut bodies {
        use http_body_util::BodyExt;
        let mut got = Vec::new();
        while got.len() < 100_000 {
            let frame =
                tokio::time::timeout(Duration::from_secs(10), body.frame()).await.unwrap().unwrap().unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert!(got == pattern(0, 100_000), "the first part arrives while the origin holds the rest");
    }
    gate.notify_one();
    for body in bodies {
        use http_body_util::BodyExt;
        let rest =
            tokio::time::timeout(Duration::from_secs(10), body.collect()).await.unwrap().unwrap().to_bytes();
        assert_eq!(rest, "rest");
    }
    assert_eq!(origin.hits("/gated"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_client_goes_away_still_fills_for_the_coalesced_clients() {
    use http_body_util::BodyExt;
    let origin = Origin::start().await;
    let gate = Arc::new(Notify::new());
    origin.route(
        "/small",
        Behaviour::Gated {
            // Within the proxy's inline limit (64 KiB): the leader reads it whole in its own
            // request before answering.
            first: Bytes::from(pattern(0, 100)),
            rest: Bytes::from(pattern(100, 900)),
            gate: gate.clone(),
            headers: owned(&[("last-modified", &last_modified())]),
        },
    );
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/small");
    let uri: http::Uri = url.parse().unwrap();

    // The leader: a raw client that sends its request and, later, goes away.
    let leader = raw_get(&url).await;
    for _ in 0..500 {
        if origin.hits("/small") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(origin.hits("/small"), 1, "the leader's fetch reached the origin");

    // A follower: it joins the fill and gets the first part while the origin holds the rest.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri.clone())).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < 100 {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), body.frame()).await.unwrap().unwrap().unwrap();
        got.extend_from_slice(&frame.into_data().unwrap());
    }

    // The leader's client goes away. The follower must keep waiting for the rest (it used to
    // get a cut body as soon as the leader's request was dropped), then get all of it.
    drop(leader);
    let early = tokio::time::timeout(Duration::from_millis(500), body.frame()).await;
    assert!(
        early.is_err(),
        "the follower's body ended when the leader's client left: {:?}",
        early.map(|f| f.map(|f| f.is_ok()))
    );
    gate.notify_one();
    let rest =
        tokio::time::timeout(Duration::from_secs(10), body.collect()).await.unwrap().unwrap().to_bytes();
    got.extend_from_slice(&rest);
    assert!(got == pattern(0, 1000), "the follower gets the whole body");

    // And the entry was stored: the next request is a hit.
    let again = get(&url, &[]).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert!(again.body == pattern(0, 1000));
    assert_eq!(origin.hits("/small"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_megabytes_stream_with_bounded_memory() {
    const LEN: u64 = 100 * 1024 * 1024;
    let origin = Origin::start().await;
    origin.route(
        "/big",
        Behaviour::Pattern { len: LEN, headers: owned(&[("last-modified", &last_modified())]) },
    );
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--memory-size").arg("32MiB").start();
    for round in 0..2 {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<Bytes>>();
        let resp = client.get(proxy.url(origin.port(), "/big").parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut pos = 0u64;
        use http_body_util::BodyExt;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert_eq!(&data[..], &pattern(pos, data.len() as u64)[..], "bytes at {pos} (round {round})");
            pos += data.len() as u64;
        }
        assert_eq!(pos, LEN);
    }
    assert_eq!(origin.hits("/big"), 1, "second round served from the disk cache");
    let peak_mib = proxy.peak_rss_kib() / 1024;
    assert!(peak_mib < 96, "peak RSS {peak_mib} MiB for a 100 MiB body");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_is_502_naming_the_target() {
    let dir = tmp();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let proxy = ProxyBuilder::new(60, port, dir.path()).start();
    let got = get(&proxy.url(port, "/x"), &[]).await;
    assert_eq!(got.status, 502);
    let text = String::from_utf8_lossy(&got.body);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_is_504() {
    let origin = Origin::start().await;
    origin.route(
        "/slow",
        Behaviour::Delay {
            delay: Duration::from_secs(30),
            then: Box::new(Behaviour::Fixed { status: 200, headers: vec![], body: Bytes::new() }),
        },
    );
    let dir = tmp();
    let proxy =
        ProxyBuilder::new(60, origin.port(), dir.path()).arg("--upstream-timeout").arg("500ms").start();
    let got = get(&proxy.url(origin.port(), "/slow"), &[]).await;
    assert_eq!(got.status, 504);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_400() {
    let origin = Origin::start().await;
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    for path in ["/bad_host/x", "/user@host/x", "/host:99999/x", "/-x-/"] {
        let got = get(&format!("http://127.0.0.1:{}{path}", proxy.port), &[]).await;
        assert_eq!(got.status, 400, "{path}");
        assert!(!got.body.is_empty());
    }
    let answer = raw(proxy.port, b"GARBAGE\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(proxy.port, b"GET /h/ HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(origin.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn home_page_and_slash_redirect() {
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, 80, dir.path()).start();
    let home = get(&format!("http://127.0.0.1:{}/", proxy.port), &[]).await;
    assert_eq!(home.status, 200);
    assert!(String::from_utf8_lossy(&home.body).contains("/&lt;target-host&gt;"));
    let redirect = get(&format!("http://127.0.0.1:{}/example.com", proxy.port), &[]).await;
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/example.com/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let origin = Origin::start().await;
    origin.route(
        "/slowish",
        Behaviour::Delay {
            delay: Duration::from_millis(800),
            then: Box::new(Behaviour::Fixed {
                status: 200,
                headers: vec![],
                body: Bytes::from_static(b"done"),
            }),
        },
    );
    let dir = tmp();
    let mut proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/slowish");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    // Wait until the request has reached the origin, then ask the proxy to stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while origin.hits("/slowish") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.signal("TERM");
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "done");
    assert_eq!(proxy.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(proxy.log().iter().any(|l| l.contains("shutdown signal received")));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_name_the_flag_and_exit_non_zero() {
    for (args, needle) in [
        (vec!["60", "--cache-size", "lots"], "--cache-size"),
        (vec!["60", "--port", "70000"], "--port"),
        (vec!["sixty"], "STALE_TIME"),
        (vec!["60", "--log-format", "xml"], "--log-format"),
        (vec!["60", "--max-object-size", "2GiB", "--cache-size", "1GiB"], "--max-object-size"),
        (vec!["60", "--workers", "0"], "--workers"),
    ] {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_httpcache-proxy")).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_tier_stays_within_cache_size() {
    let origin = Origin::start().await;
    let lm = last_modified();
    for i in 0..60 {
        origin.route(
            &format!("/obj/{i}"),
            Behaviour::Fixed {
                status: 200,
                headers: owned(&[("last-modified", &lm)]),
                body: Bytes::from(pattern(i, 100_000)),
            },
        );
    }
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, origin.port(), dir.path())
        .arg("--cache-size")
        .arg("2MiB")
        .arg("--max-object-size")
        .arg("1MiB")
        .start();
    for i in 0..60 {
        let got = get(&proxy.url(origin.port(), &format!("/obj/{i}")), &[]).await;
        assert_eq!(got.body.len(), 100_000);
    }
    // Writes are asynchronous: poll (bounded) until the writer has caught up, then check the bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut used = support::cache_dir::disk_bytes(dir.path());
    while used == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        used = support::cache_dir::disk_bytes(dir.path());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    used = support::cache_dir::disk_bytes(dir.path());
    assert!(used > 0, "something was stored");
    // Entry files and packs together (these bodies are small enough to be packed).
    assert!(!support::cache_dir::pack_files(dir.path()).is_empty(), "small bodies are packed");
    assert!(used <= 2 * 1024 * 1024, "disk use {used} exceeds --cache-size 2MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_client_leaves_before_the_head_still_fetches_once_for_all() {
    let origin = Origin::start().await;
    let lm = last_modified();
    let fixed = Behaviour::Fixed {
        status: 200,
        headers: owned(&[("last-modified", &lm)]),
        body: Bytes::from(pattern(0, 1000)),
    };
    origin.route("/slow", Behaviour::Delay { delay: Duration::from_millis(1500), then: Box::new(fixed) });
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/slow");

    // The leader: a raw client whose request reaches the origin, and which leaves while the
    // origin has not answered yet.
    let leader = raw_get(&url).await;
    assert!(
        eventually(Duration::from_secs(5), || origin.hits("/slow") == 1).await,
        "the leader's fetch went out"
    );
    let followers: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    drop(leader);
    for f in followers {
        let got = f.await.unwrap();
        assert_eq!(got.status, 200);
        assert!(got.body == pattern(0, 1000), "a follower gets the whole body");
    }
    // Each follower used to fetch for itself, uncached, once the leader's request was dropped.
    assert_eq!(origin.hits("/slow"), 1, "one upstream request for the leader and its followers");
    // And it was stored (a request just after the followers may still join the fetch).
    until_hit(&url, &pattern(0, 1000), Duration::from_secs(5)).await;
    assert_eq!(origin.hits("/slow"), 1, "a later request is answered without the origin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_tier_keeps_new_objects_asked_for_again() {
    let origin = Origin::start().await;
    let lm = last_modified();
    let object = |i: u64| ten_kb_object(i, &lm);
    let (old, new) = (500, 80);
    for i in 0..old {
        origin.route(&format!("/old/{i}"), object(i));
    }
    for i in 0..new {
        origin.route(&format!("/new/{i}"), object(i));
    }
    // 4 MiB on disk (2.5 MiB for entries: about 250 of these), and a memory tier too small to
    // hold the new objects, so they come back from the disk or not at all.
    let dir = tmp();
    let proxy = small_tiers(origin.port(), dir.path());
    for i in 0..old {
        assert_eq!(get(&proxy.url(origin.port(), &format!("/old/{i}")), &[]).await.status, 200);
    }
    for i in 0..new {
        assert_eq!(get(&proxy.url(origin.port(), &format!("/new/{i}")), &[]).await.status, 200);
    }
    // Disk writes are asynchronous: wait (bounded) for the last new object's record.
    let last = format!("http://127.0.0.1:{}/new/{}", origin.port(), new - 1);
    assert!(
        eventually(Duration::from_secs(10), || support::cache_dir::packed_entry(dir.path(), &last).is_some())
            .await,
        "the last new object was not written"
    );
    let mut hits = 0;
    for i in 0..new {
        let got = get(&proxy.url(origin.port(), &format!("/new/{i}")), &[]).await;
        assert_eq!(got.body, pattern(i, 10_000));
        hits += usize::from(got.header("x-cache") == Some("HIT"));
    }
    let refetched = (0..new).filter(|i| origin.hits(&format!("/new/{i}")) > 1).count();
    // The cache, full of old objects, kept the new ones: it used to keep the last 3% of them.
    assert!(hits >= 72 && refetched <= 8, "{hits} hits, {refetched} of {new} fetched again");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_info_line_per_request_and_json_logs() {
    let origin = Origin::start().await;
    origin.ok("/log", &[("last-modified", &last_modified())], "l");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    get(&proxy.url(origin.port(), "/log"), &[]).await;
    get(&proxy.url(origin.port(), "/log"), &[]).await;
    assert!(proxy.wait_log("cache=\"HIT\"", Duration::from_secs(5)));
    let lines: Vec<_> =
        proxy.log().into_iter().filter(|l| l.contains(" request ") || l.contains("request method")).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("status=200") && lines[0].contains("MISS") && lines[0].contains("bytes=1"));

    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--log-format").arg("json").start();
    get(&proxy.url(origin.port(), "/log"), &[]).await;
    assert!(proxy.wait_log("\"cache\":\"MISS\"", Duration::from_secs(5)), "{:?}", proxy.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn uncacheable_urls_pass_without_queueing_and_recover_when_cacheable() {
    let origin = Origin::start().await;
    origin.ok("/hfp", &[("cache-control", "no-store")], "v1");
    let dir = tmp();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/hfp");

    // Concurrent requests for a no-store URL each reach the origin and get its answer.
    for got in get_concurrently(&url, 8).await {
        assert_eq!(
            (got.status.as_u16(), &got.body[..], got.header("x-cache")),
            (200, &b"v1"[..], Some("MISS"))
        );
    }
    assert_eq!(origin.hits("/hfp"), 8);

    // The URL becomes cacheable: the first request sees it (and clears the hit-for-pass
    // mark), the next stores it, the one after is a hit.
    origin.ok("/hfp", &[("cache-control", "max-age=600")], "v2");
    for want in ["MISS", "MISS", "HIT"] {
        let got = get(&url, &[]).await;
        assert_eq!((&got.body[..], got.header("x-cache")), (&b"v2"[..], Some(want)));
    }
    assert_eq!(origin.hits("/hfp"), 10);
}

/// Bounds on a proxy's `httpcache_sendfile_bytes_total{from="memory"}`, added to as hits are
/// made: the count must reach 60% of the bytes expected so far and stay at most all of them.
#[derive(Default)]
struct SendfileTally {
    at_least: f64,
    at_most: f64,
}

impl SendfileTally {
    /// Adds `bytes` to the bounds and checks the count against them. The count is waited for
    /// (5 s at most): the proxy adds to it just after each `sendfile` call returns, which can
    /// be after the client has read those bytes and asked for the metrics.
    async fn expect(&mut self, proxy: &ProxyProcess, bytes: f64, what: &str) {
        self.at_least += 0.6 * bytes;
        self.at_most += bytes;
        let url = admin_url(proxy.admin_port(), "/metrics");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(get(&url, &[]).await.body.to_vec()).unwrap();
            let got = sample(&text, r#"httpcache_sendfile_bytes_total{from="memory"}"#).unwrap();
            assert!(got <= self.at_most, "{what}: {got} bytes by sendfile, at most {} wanted", self.at_most);
            if got >= self.at_least {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {got} bytes by sendfile, at least {} wanted",
                self.at_least
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Hits of 64-128 KiB leave from a memory file with `sendfile` (`cache::store::mapped`):
/// whole bodies and large ranges of them, whether the body came streamed or in one piece and
/// whether it came back from disk after a restart; smaller and larger bodies are copied. The
/// bytes must be the origin's, and the counter shows which way they went.
#[tokio::test(flavor = "multi_thread")]
async fn hits_of_the_sendfile_sizes_leave_from_memory_files_intact() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    let fresh = owned(&[("cache-control", "max-age=600")]);
    let sizes = [("/streamed", 100 * 1024), ("/small", 20_000), ("/large", 1 << 20)];
    for (path, len) in sizes {
        origin.route(path, Behaviour::Pattern { len, headers: fresh.clone() });
    }
    let whole = Bytes::from(pattern(7, 90_000));
    origin.route("/whole", Behaviour::Fixed { status: 200, headers: fresh.clone(), body: whole.clone() });
    let dir = tmp();
    // What the mapped bodies' hits may have sent by sendfile so far, in this process: never
    // more than their bytes (smaller and larger bodies add nothing), and most of them (a
    // partial send can leave a tail under the 32 KiB that `server::send_file` looks up, which
    // is copied).
    let mut sendable = SendfileTally::default();
    let mut proxy = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--admin-port").arg("0").start();
    for round in ["MISS", "HIT", "HIT"] {
        for (path, len) in sizes {
            let got = get(&proxy.url(origin.port(), path), &[]).await;
            assert_eq!(got.header("x-cache"), Some(round), "{path}");
            assert!(got.body[..] == pattern(0, len)[..], "{path}: {round} body differs");
        }
        let got = get(&proxy.url(origin.port(), "/whole"), &[]).await;
        assert_eq!((got.header("x-cache"), &got.body), (Some(round), &whole));
    }
    sendable.expect(&proxy, 2.0 * (100.0 * 1024.0 + 90_000.0), "two hits of each mapped body").await;
    // The two mapped bodies live in files without a name in the cache directory.
    let in_dir = format!("{}/#", dir.path().display());
    let unnamed = std::fs::read_dir(format!("/proc/{}/fd", proxy.pid()))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with(&in_dir))
        .count();
    assert_eq!(unnamed, 2, "memory files in {}", dir.path().display());

    let range = get(&proxy.url(origin.port(), "/streamed"), &[("range", "bytes=50000-99999")]).await;
    assert_eq!(range.status, 206);
    assert!(range.body[..] == pattern(50_000, 50_000)[..], "range body differs");
    sendable.expect(&proxy, 50_000.0, "the range").await;

    // A client that asks for many bodies at once and reads them slowly through a small
    // window: the socket fills, and bodies leave in partial `sendfile` calls, each resuming at
    // its offset.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(([127, 0, 0, 1], proxy.port).into()).await.unwrap();
    let path = format!("/127.0.0.1:{}/streamed", origin.port());
    let asks = 40;
    let mut pipelined = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(asks - 1);
    pipelined += &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    slow.write_all(pipelined.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = slow.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    let expected = pattern(0, 100 * 1024);
    let mut at = 0;
    for i in 0..asks {
        let head_end = answer[at..].windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + at + 4;
        assert!(answer.get(head_end..head_end + expected.len()) == Some(&expected[..]), "body {i} differs");
        at = head_end + expected.len();
    }
    assert_eq!(at, answer.len(), "nothing after the last body");
    sendable.expect(&proxy, asks as f64 * 100.0 * 1024.0, "the slow client's bodies").await;

    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(Duration::from_secs(15)), Some(0));
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--admin-port").arg("0").start();
    for _ in 0..2 {
        let got = get(&proxy.url(origin.port(), "/streamed"), &[]).await;
        assert_eq!(got.header("x-cache"), Some("HIT"));
        assert!(got.body[..] == pattern(0, 100 * 1024)[..], "body after the restart differs");
    }
    let mut restarted = SendfileTally::default();
    restarted.expect(&proxy, 2.0 * 100.0 * 1024.0, "a body read back from disk").await;
    for (path, _) in sizes {
        assert_eq!(origin.hits(path), 1, "{path}");
    }
}

/// An object served from the memory tier again and again keeps its disk copy while new
/// objects stream through the disk: memory hits mark its disk entry now and then, and a
/// reclaim moves it out of a pack deleted for its dead space instead of dropping it.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_hot_in_memory_keeps_its_disk_copy() {
    let origin = Origin::start().await;
    let lm = last_modified();
    let object = |i: u64| ten_kb_object(i, &lm);
    let (before, after) = (300, 1500);
    for i in 0..before + after {
        origin.route(&format!("/once/{i}"), object(i));
    }
    origin.route("/hot", object(7));
    let dir = tmp();
    // 4 MiB on disk (about 250 of these objects), 256 KiB of memory: the hot object stays in
    // memory, and the others pass through the disk several times over.
    let proxy = small_tiers(origin.port(), dir.path());
    let key = |path: &str| format!("http://127.0.0.1:{}{path}", origin.port());
    let on_disk = |path: &str| support::cache_dir::packed_entry(dir.path(), &key(path)).is_some();
    let hot = proxy.url(origin.port(), "/hot");
    // The disk is full before the hot object arrives, so it enters as a new entry.
    for i in 0..before {
        get(&proxy.url(origin.port(), &format!("/once/{i}")), &[]).await;
    }
    assert_eq!(get(&hot, &[]).await.header("x-cache"), Some("MISS"));
    // Disk writes are asynchronous (and skipped when the writer falls behind): wait (bounded)
    // for the hot object's record.
    assert!(eventually(Duration::from_secs(10), || on_disk("/hot")).await, "the hot object was not written");
    for i in before..before + after {
        get(&proxy.url(origin.port(), &format!("/once/{i}")), &[]).await;
        let got = get(&hot, &[]).await;
        assert_eq!(got.header("x-cache"), Some("HIT"));
        assert_eq!(got.body, pattern(7, 10_000));
    }
    assert!(on_disk("/hot"), "the hot object's disk copy was dropped");
    // Objects asked for once did go: those that came just after the hot one.
    let gone = (before..before + 20).filter(|i| !on_disk(&format!("/once/{i}"))).count();
    assert!(gone >= 10, "only {gone} of 20 objects asked for once left the disk");
    assert_eq!(origin.hits("/hot"), 1);
}
