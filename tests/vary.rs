//! Vary (RFC 9111 §4.1) through the real binary: variants stored and selected per request.

mod support;

use std::time::Duration;

use support::*;

fn echo(origin: &Origin, path: &str, name: &str, extra: &[(&str, &str)]) {
    let mut headers = owned(&[("cache-control", "max-age=600")]);
    headers.extend(owned(extra));
    origin.route(path, Behaviour::Echo { name: name.into(), headers });
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_1_each_variant_is_stored_and_selected_by_its_request_field() {
    let origin = Origin::start().await;
    echo(&origin, "/v", "accept-language", &[("vary", "Accept-Language")]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/v");
    for (lang, expect_hits) in [("en", 1), ("fr", 2), ("en", 2), ("fr", 2)] {
        let got = get(&url, &[("accept-language", lang)]).await;
        let status = got.header("cache-status").unwrap_or_default().to_string();
        match (lang, expect_hits) {
            ("en", 1) => assert!(status.contains("fwd=uri-miss"), "{status}"),
            ("fr", 2) if got.header("x-cache") == Some("MISS") => {
                assert!(status.contains("fwd=vary-miss"), "RFC 9211: another variant was stored: {status}")
            }
            _ => {}
        }
        assert_eq!(got.body, lang);
        assert_eq!(got.header("vary"), Some("Accept-Language"));
        assert_eq!(origin.hits("/v"), expect_hits, "after {lang}");
    }
    let none = get(&url, &[]).await;
    assert_eq!(none.body, "none", "a request without the field is its own variant");
    assert_eq!(origin.hits("/v"), 3);
    assert_eq!(get(&url, &[]).await.header("x-cache"), Some("HIT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_1_whitespace_and_line_differences_select_the_same_variant() {
    let origin = Origin::start().await;
    echo(&origin, "/w", "accept-encoding", &[("vary", "accept-encoding")]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/w");
    assert_eq!(get(&url, &[("accept-encoding", "gzip, br")]).await.header("x-cache"), Some("MISS"));
    let again = get(&url, &[("accept-encoding", "gzip,br")]).await;
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(again.body, "gzip, br");
    assert_eq!(origin.hits("/w"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_1_vary_star_is_never_served_from_cache() {
    let origin = Origin::start().await;
    echo(&origin, "/star", "accept", &[("vary", "*")]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    for _ in 0..3 {
        assert_eq!(get(&proxy.url(origin.port(), "/star"), &[]).await.header("x-cache"), Some("MISS"));
    }
    assert_eq!(origin.hits("/star"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_4_unsafe_method_invalidates_every_variant() {
    let origin = Origin::start().await;
    echo(&origin, "/inv", "accept-language", &[("vary", "accept-language")]);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/inv");
    get(&url, &[("accept-language", "en")]).await;
    get(&url, &[("accept-language", "fr")]).await;
    assert_eq!(origin.hits("/inv"), 2);
    support::client::request("POST", &url, &[]).await;
    assert_eq!(origin.hits("/inv"), 3);
    for lang in ["en", "fr"] {
        let got = get(&url, &[("accept-language", lang)]).await;
        assert_eq!(got.header("x-cache"), Some("MISS"), "{lang} invalidated");
        assert_eq!(got.body, lang);
    }
    assert_eq!(origin.hits("/inv"), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_1_concurrent_requests_for_different_variants_get_their_own() {
    let origin = Origin::start().await;
    origin.route(
        "/slowvary",
        Behaviour::Delay {
            delay: Duration::from_millis(300),
            then: Box::new(Behaviour::Echo {
                name: "accept-language".into(),
                headers: owned(&[("cache-control", "max-age=600"), ("vary", "accept-language")]),
            }),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/slowvary");
    let tasks: Vec<_> = ["en", "fr", "de", "en", "fr", "de"]
        .into_iter()
        .map(|lang| {
            let url = url.clone();
            tokio::spawn(async move { (lang, get(&url, &[("accept-language", lang)]).await) })
        })
        .collect();
    for t in tasks {
        let (lang, got) = t.await.unwrap();
        assert_eq!(got.body, lang, "each request gets the variant it selects");
    }
    for lang in ["en", "fr", "de"] {
        let got = get(&url, &[("accept-language", lang)]).await;
        assert_eq!(got.body, lang);
        assert_eq!(got.header("x-cache"), Some("HIT"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_1_variants_survive_a_restart() {
    let origin = Origin::start().await;
    echo(&origin, "/persist", "accept-language", &[("vary", "accept-language")]);
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    get(&proxy.url(origin.port(), "/persist"), &[("accept-language", "en")]).await;
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(Duration::from_secs(15)), Some(0));
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    let got = get(&proxy.url(origin.port(), "/persist"), &[("accept-language", "en")]).await;
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(got.body, "en");
    assert_eq!(origin.hits("/persist"), 1);
}
