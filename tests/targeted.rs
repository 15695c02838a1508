//! Targeted cache control (RFC 9213) through the real binary.

mod support;

use support::*;

fn fixed(origin: &Origin, path: &str, headers: &[(&str, &str)]) {
    origin.route(
        path,
        Behaviour::Fixed { status: 200, headers: owned(headers), body: bytes::Bytes::from_static(b"t") },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc9213_cdn_cache_control_overrides_cache_control_and_is_not_forwarded() {
    let origin = Origin::start().await;
    fixed(&origin, "/store", &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")]);
    fixed(&origin, "/nostore", &[("cache-control", "max-age=600"), ("cdn-cache-control", "no-store")]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();

    let first = get(&proxy.url(origin.port(), "/store"), &[]).await;
    assert_eq!(first.header("cache-control"), Some("no-store"), "downstream sees the origin's Cache-Control");
    assert_eq!(first.header("cdn-cache-control"), None, "the targeted field is not forwarded");
    let second = get(&proxy.url(origin.port(), "/store"), &[]).await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.header("cdn-cache-control"), None);
    assert_eq!(origin.hits("/store"), 1);

    for _ in 0..2 {
        let got = get(&proxy.url(origin.port(), "/nostore"), &[]).await;
        assert_eq!(got.header("x-cache"), Some("MISS"));
        assert_eq!(got.header("cdn-cache-control"), None);
    }
    assert_eq!(origin.hits("/nostore"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc9213_the_targeted_field_name_is_configurable() {
    let origin = Origin::start().await;
    fixed(&origin, "/own", &[("cache-control", "no-store"), ("httpcache-cache-control", "max-age=600")]);
    fixed(&origin, "/cdn", &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path())
        .arg("--targeted-cache-control")
        .arg("Httpcache-Cache-Control")
        .start();
    get(&proxy.url(origin.port(), "/own"), &[]).await;
    let hit = get(&proxy.url(origin.port(), "/own"), &[]).await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.header("httpcache-cache-control"), None);
    assert_eq!(origin.hits("/own"), 1);

    // CDN-Cache-Control is another cache's field now: ignored here and passed on.
    get(&proxy.url(origin.port(), "/cdn"), &[]).await;
    let again = get(&proxy.url(origin.port(), "/cdn"), &[]).await;
    assert_eq!(again.header("x-cache"), Some("MISS"));
    assert_eq!(again.header("cdn-cache-control"), Some("max-age=600"));
    assert_eq!(origin.hits("/cdn"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc9213_none_disables_targeted_cache_control() {
    let origin = Origin::start().await;
    fixed(&origin, "/n", &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")]);
    let dir = tempfile::tempdir().unwrap();
    let proxy =
        ProxyBuilder::new(60, origin.port(), dir.path()).arg("--targeted-cache-control").arg("none").start();
    get(&proxy.url(origin.port(), "/n"), &[]).await;
    let again = get(&proxy.url(origin.port(), "/n"), &[]).await;
    assert_eq!(again.header("x-cache"), Some("MISS"));
    assert_eq!(origin.hits("/n"), 2);
}
