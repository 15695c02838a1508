//! The admin listener (metrics, stats, entries, purge API) and PURGE on the proxy port,
//! through the real binary against a real origin.

mod support;

use std::process::Command;

use serde_json::Value;
use support::client::{get_via_proxy, request};
use support::*;

fn cacheable(origin: &Origin, path: &str, body: &str) {
    origin.ok(path, &[("cache-control", "max-age=600")], body);
}

fn json(got: &support::client::Got) -> Value {
    assert_eq!(got.header("content-type"), Some("application/json"), "{got:?}");
    serde_json::from_slice(&got.body).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_results_bytes_and_tiers() {
    let origin = Origin::start().await;
    cacheable(&origin, "/a", "hello metrics");
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).arg("--admin-port").arg("0").start();
    let port = proxy.admin_port();
    let first = get(&proxy.url(origin.port(), "/a"), &[]).await;
    let second = get(&proxy.url(origin.port(), "/a"), &[]).await;
    assert_eq!((first.header("x-cache"), second.header("x-cache")), (Some("MISS"), Some("HIT")));
    let got = get(&admin_url(port, "/metrics"), &[]).await;
    assert_eq!(got.status.as_u16(), 200);
    assert_eq!(got.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = String::from_utf8(got.body.to_vec()).unwrap();
    assert_eq!(sample(&text, r#"httpcache_requests_total{mode="embedded",code="200"}"#), Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"httpcache_cache_results_total{result="hit"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"httpcache_cache_results_total{result="miss"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"httpcache_served_bytes_total{source="cache"}"#), Some(13.0));
    assert_eq!(sample(&text, r#"httpcache_served_bytes_total{source="upstream"}"#), Some(13.0));
    assert_eq!(sample(&text, "httpcache_upstream_latency_seconds_count"), Some(1.0));
    assert_eq!(sample(&text, "httpcache_response_duration_seconds_count"), Some(2.0));
    assert_eq!(sample(&text, r#"httpcache_tier_objects{tier="memory"}"#), Some(1.0));
    assert!(sample(&text, r#"httpcache_tier_capacity_bytes{tier="disk"}"#).is_some());
    assert_eq!(sample(&text, r#"httpcache_evictions_total{tier="disk"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"httpcache_evictions_total{tier="memory"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"httpcache_memory_admissions_total{outcome="deferred"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"httpcache_memory_admissions_total{outcome="promoted"}"#), Some(0.0));
    assert!(sample(&text, "httpcache_uptime_seconds").is_some_and(|u| u >= 0.0));
    assert!(text.contains(r#"httpcache_build_info{version=""#), "{text}");
    assert_eq!(origin.hits("/a"), 1);

    // An idle client connection to the proxy counts while open, and stops counting once closed
    // (scrapes go to the admin port, so they never count themselves).
    let open = |text: &str| sample(text, "httpcache_connections_open").unwrap_or(-1.0);
    let held = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    assert!(scrape_until(port, |t| open(t) >= 1.0).await, "the held connection is counted");
    drop(held);
    drop(first);
    drop(second);
    assert!(scrape_until(port, |t| open(t) == 0.0).await, "closed connections are uncounted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_memory_tier_defers_new_objects_and_counts_their_promotion() {
    let origin = Origin::start().await;
    let body = "x".repeat(4096);
    let paths: Vec<String> = (0..200).map(|i| format!("/o{i}")).collect();
    for p in &paths {
        cacheable(&origin, p, &body);
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path())
        .arg("--admin-port")
        .arg("0")
        .arg("--memory-size")
        .arg("256KiB")
        .start();
    let port = proxy.admin_port();
    // 200 objects of 4 KiB: the 256 KiB tier is full after about 60 of them.
    for p in &paths {
        let got = get(&proxy.url(origin.port(), p), &[]).await;
        assert_eq!((got.status.as_u16(), got.header("x-cache")), (200, Some("MISS")));
    }
    let metrics =
        || async { String::from_utf8(get(&admin_url(port, "/metrics"), &[]).await.body.to_vec()).unwrap() };
    let admitted = |text: &str, outcome: &str| {
        sample(text, &format!(r#"httpcache_memory_admissions_total{{outcome="{outcome}"}}"#)).unwrap()
    };
    let text = metrics().await;
    let deferred = admitted(&text, "deferred");
    assert!((100.0..=200.0).contains(&deferred), "most late objects went to disk only: {text}");

    // The last object, asked for again, is a hit (from disk or the writer's queue) and is
    // taken into memory.
    let last = paths.last().unwrap();
    let promoted = admitted(&text, "promoted");
    let again = get(&proxy.url(origin.port(), last), &[]).await;
    assert_eq!((again.header("x-cache"), again.body.len()), (Some("HIT"), body.len()));
    assert_eq!(origin.hits(last), 1);
    let text = metrics().await;
    assert_eq!(admitted(&text, "promoted"), promoted + 1.0, "{text}");
    let stats = json(&get(&admin_url(port, "/api/stats"), &[]).await);
    assert_eq!(stats["disk"]["memory_deferred"].as_f64(), Some(deferred), "{stats}");
}

/// Scrapes /metrics until `ok` accepts the text (bounded).
async fn scrape_until(port: u16, ok: impl Fn(&str) -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let text = String::from_utf8(get(&admin_url(port, "/metrics"), &[]).await.body.to_vec()).unwrap();
        if ok(&text) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_and_paged_entries() {
    let origin = Origin::start().await;
    for p in ["/img/1", "/img/2", "/other"] {
        cacheable(&origin, p, "0123456789");
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).arg("--admin-port").arg("0").start();
    let port = proxy.admin_port();
    for p in ["/img/1", "/img/2", "/other", "/img/1"] {
        assert_eq!(get(&proxy.url(origin.port(), p), &[]).await.status.as_u16(), 200);
    }
    let stats = json(&get(&admin_url(port, "/api/stats"), &[]).await);
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["results"]["hit"], 1);
    assert_eq!(stats["hit_ratio"], 0.25);
    assert_eq!(stats["bytes_from_cache"], 10);
    assert_eq!(stats["recent"][0]["result"], "hit");
    assert_eq!(stats["top_urls"][0]["url"], format!("/127.0.0.1:{}/img/1", origin.port()));
    assert_eq!(stats["top_urls"][0]["requests"], 2);
    assert_eq!(stats["tiers"][0]["tier"], "memory");
    assert_eq!(stats["tiers"][0]["objects"], 3);

    let base = format!("http://127.0.0.1:{}", origin.port());
    let q = format!("/api/entries?prefix={base}/img/&limit=1");
    let page1 = json(&get(&admin_url(port, &q), &[]).await);
    let e = &page1["entries"][0];
    assert!(e["url"].as_str().unwrap().starts_with(&format!("{base}/img/")), "{page1}");
    assert!(e["ttl_s"].as_i64().unwrap() > 590, "{page1}");
    assert!(e["size"].as_u64().unwrap() >= 10 && e["status"] == 200, "{page1}");
    let cursor = page1["next_cursor"].as_str().expect("a second page");
    let page2 = json(&get(&admin_url(port, &format!("{q}&cursor={cursor}")), &[]).await);
    assert_eq!(page2["entries"].as_array().unwrap().len(), 1);
    assert_ne!(page2["entries"][0]["url"], e["url"]);
    assert!(page2["next_cursor"].is_null(), "{page2}");
    let all = json(&get(&admin_url(port, "/api/entries"), &[]).await);
    assert_eq!(all["entries"].as_array().unwrap().len(), 3);

    for bad in [
        "/api/entries?limit=0",
        "/api/entries?limit=x",
        "/api/entries?cursor=zz",
        "/api/entries?nope=1",
        "/api/entries?prefix=ftp://x/",
    ] {
        let got = get(&admin_url(port, bad), &[]).await;
        assert_eq!(got.status.as_u16(), 400, "{bad}");
        assert!(json(&got)["error"].is_string());
    }
    let missing = get(&admin_url(port, "/nope"), &[]).await;
    assert_eq!(missing.status.as_u16(), 404);
    assert!(json(&missing)["error"].as_str().unwrap().contains("/nope"));
    assert_eq!(request("POST", &admin_url(port, "/api/stats"), &[]).await.status.as_u16(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_api_purges_urls_and_prefixes_from_both_tiers() {
    let origin = Origin::start().await;
    for p in ["/img/1", "/img/2", "/keep"] {
        cacheable(&origin, p, "body");
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).arg("--admin-port").arg("0").start();
    let port = proxy.admin_port();
    for p in ["/img/1", "/img/2", "/keep"] {
        get(&proxy.url(origin.port(), p), &[]).await;
    }
    let base = format!("http://127.0.0.1:{}", origin.port());
    let one = request("DELETE", &admin_url(port, &format!("/api/cache?url={base}/img/1")), &[]).await;
    assert_eq!((one.status.as_u16(), &json(&one)["purged"]), (200, &Value::from(1)));
    let again = get(&proxy.url(origin.port(), "/img/1"), &[]).await;
    assert_eq!(again.header("x-cache"), Some("MISS"));
    assert_eq!(origin.hits("/img/1"), 2);
    let prefix = request("DELETE", &admin_url(port, &format!("/api/cache?prefix={base}/img/")), &[]).await;
    assert_eq!(json(&prefix)["purged"], 2);
    for p in ["/img/1", "/img/2"] {
        assert_eq!(get(&proxy.url(origin.port(), p), &[]).await.header("x-cache"), Some("MISS"), "{p}");
    }
    assert_eq!(get(&proxy.url(origin.port(), "/keep"), &[]).await.header("x-cache"), Some("HIT"));
    let none = request("DELETE", &admin_url(port, "/api/cache"), &[]).await;
    assert_eq!(none.status.as_u16(), 400);
    let both =
        request("DELETE", &admin_url(port, &format!("/api/cache?url={base}/a&prefix={base}/")), &[]).await;
    assert_eq!(both.status.as_u16(), 400);
    let metrics = String::from_utf8(get(&admin_url(port, "/metrics"), &[]).await.body.to_vec()).unwrap();
    assert_eq!(sample(&metrics, r#"httpcache_purged_entries_total{via="api"}"#), Some(3.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_method_removes_a_url_and_its_variants() {
    let origin = Origin::start().await;
    origin.ok("/v", &[("cache-control", "max-age=600"), ("vary", "accept-language")], "varied");
    cacheable(&origin, "/plain", "plain");
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/v");
    for lang in ["en", "fr", "en"] {
        get(&url, &[("accept-language", lang)]).await;
    }
    assert_eq!(origin.hits("/v"), 2, "two variants stored");
    let purged = request("PURGE", &url, &[]).await;
    assert_eq!(purged.status.as_u16(), 200);
    assert_eq!(json(&purged)["purged"], 3, "the Vary marker and both variants");
    for lang in ["en", "fr"] {
        let got = get(&url, &[("accept-language", lang)]).await;
        assert_eq!(got.header("x-cache"), Some("MISS"), "{lang}");
    }
    assert_eq!(origin.hits("/v"), 4);
    let nothing = request("PURGE", &proxy.url(origin.port(), "/never"), &[]).await;
    assert_eq!(nothing.status.as_u16(), 404);
    assert_eq!(json(&nothing)["purged"], 0);

    // Forward mode names the same entry by its absolute URL.
    get(&proxy.url(origin.port(), "/plain"), &[]).await;
    let absolute = format!("http://127.0.0.1:{}/plain", origin.port());
    let req = format!(
        "PURGE {absolute} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let answer = raw(proxy.port, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""purged":1"#), "{answer}");
    let got = get_via_proxy(proxy.port, &absolute, &[]).await;
    assert_eq!(got.header("x-cache"), Some("MISS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_from_outside_the_allow_list_is_forbidden() {
    let origin = Origin::start().await;
    cacheable(&origin, "/a", "kept");
    let dir = tempfile::tempdir().unwrap();
    let proxy =
        ProxyBuilder::new(300, origin.port(), dir.path()).arg("--purge-allow").arg("10.0.0.0/8").start();
    let url = proxy.url(origin.port(), "/a");
    get(&url, &[]).await;
    let refused = request("PURGE", &url, &[]).await;
    assert_eq!(refused.status.as_u16(), 403);
    assert!(json(&refused)["error"].is_string());
    assert_eq!(get(&url, &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/a"), 1);
    assert!(!proxy.log().iter().any(|l| l.contains("admin listener")), "admin is off by default");
}

#[test]
fn bad_admin_flags_name_the_flag() {
    for (flag, value) in
        [("--purge-allow", "10.0.0.0/40"), ("--admin-port", "http"), ("--admin-host", "nowhere")]
    {
        let out =
            Command::new(env!("CARGO_BIN_EXE_httpcache-proxy")).args(["60", flag, value]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
}
