//! Range requests (RFC 9110 §14) answered from the cache.

mod support;

use bytes::Bytes;
use support::*;

fn cacheable(origin: &Origin, path: &str, body: Vec<u8>) {
    origin.route(
        path,
        Behaviour::Fixed {
            status: 200,
            headers: owned(&[
                ("cache-control", "max-age=600"),
                ("etag", "\"v1\""),
                ("content-type", "text/plain"),
            ]),
            body: Bytes::from(body),
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s14_ranges_of_a_stored_response() {
    let origin = Origin::start().await;
    let body = pattern(0, 1000);
    cacheable(&origin, "/r", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/r");
    assert_eq!(get(&url, &[]).await.status, 200);

    let one = get(&url, &[("range", "bytes=10-19")]).await;
    assert_eq!(one.status, 206);
    assert_eq!(one.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(one.body, &body[10..20]);

    let suffix = get(&url, &[("range", "bytes=-100")]).await;
    assert_eq!(suffix.header("content-range"), Some("bytes 900-999/1000"));
    assert_eq!(suffix.body, &body[900..]);

    let open = get(&url, &[("range", "bytes=990-")]).await;
    assert_eq!(open.body, &body[990..]);

    let many = get(&url, &[("range", "bytes=0-1,500-501")]).await;
    assert_eq!(many.status, 206);
    let ct = many.header("content-type").unwrap().to_string();
    assert!(ct.starts_with("multipart/byteranges; boundary="), "{ct}");
    let text = String::from_utf8_lossy(&many.body);
    assert!(
        text.contains("Content-Range: bytes 0-1/1000") && text.contains("Content-Range: bytes 500-501/1000")
    );

    let bad = get(&url, &[("range", "bytes=5000-6000")]).await;
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */1000"));

    let invalid = get(&url, &[("range", "bytes=9-2")]).await;
    assert_eq!(invalid.status, 200, "an invalid Range is ignored");
    assert_eq!(invalid.body.len(), 1000);

    assert_eq!(origin.hits("/r"), 1, "every range came from the cache");
}

#[tokio::test(flavor = "multi_thread")]
async fn s13_1_5_if_range_must_match_the_stored_validator() {
    let origin = Origin::start().await;
    cacheable(&origin, "/ir", pattern(0, 100));
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/ir");
    get(&url, &[]).await;
    let hit = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"v1\"")]).await;
    assert_eq!(hit.status, 206);
    let miss = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"v0\"")]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.body.len(), 100);
    assert_eq!(origin.hits("/ir"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn s14_a_range_miss_fetches_the_whole_object_once() {
    let origin = Origin::start().await;
    let body = pattern(0, 300_000);
    cacheable(&origin, "/big", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/big");
    let part = get(&url, &[("range", "bytes=100000-100099")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &body[100_000..100_100]);
    assert!(origin.last_request("/big").unwrap().get("range").is_none(), "the origin is asked for the whole");
    // The 206 can end before the rest of the body has arrived: a request made meanwhile
    // joins the fill in progress (COLLAPSED); once it is stored, requests are hits.
    let whole = get(&url, &[]).await;
    assert_eq!(whole.body, body);
    let mut last = whole.header("x-cache").map(str::to_owned);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while last.as_deref() != Some("HIT") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let again = get(&url, &[]).await;
        assert_eq!(again.body, body);
        last = again.header("x-cache").map(str::to_owned);
    }
    assert_eq!(last.as_deref(), Some("HIT"));
    assert_eq!(origin.hits("/big"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn s14_ranges_of_a_large_entry_streamed_from_disk() {
    const LEN: u64 = 40 * 1024 * 1024;
    let origin = Origin::start().await;
    origin.route(
        "/huge",
        Behaviour::Pattern {
            len: LEN,
            headers: owned(&[("cache-control", "max-age=600"), ("etag", "\"h\"")]),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--memory-size").arg("32MiB").start();
    let url = proxy.url(origin.port(), "/huge");
    assert_eq!(get(&url, &[]).await.body.len() as u64, LEN);
    let start = 20 * 1024 * 1024 + 7;
    let part = get(&url, &[("range", &format!("bytes={start}-{}", start + 9999))]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, pattern(start, 10_000));
    assert_eq!(origin.hits("/huge"), 1);
}
