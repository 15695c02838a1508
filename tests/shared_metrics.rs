//! The shared (Redis) tier as the admin listener shows it: its counters in /metrics and its
//! state in /api/stats (the dashboard's source), up and then down, with a real redis-server.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::redis::RedisServer;
use support::*;

async fn scrape(port: u16) -> String {
    String::from_utf8(get(&admin_url(port, "/metrics"), &[]).await.body.to_vec()).unwrap()
}

async fn stats(port: u16) -> Value {
    serde_json::from_slice(&get(&admin_url(port, "/api/stats"), &[]).await.body).unwrap()
}

fn sharing_proxy(origin: &Origin, dir: &tempfile::TempDir, name: &str, url: &str) -> ProxyProcess {
    let p = ProxyBuilder::new(60, origin.port(), &dir.path().join(name))
        .arg("--shared-cache")
        .arg(url)
        .arg("--shared-timeout")
        .arg("2s")
        .arg("--admin-port")
        .arg("0")
        .start();
    assert!(p.wait_log("subscribed to invalidations", Duration::from_secs(10)), "{:?}", p.log());
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_tier_figures_reach_metrics_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let origin = Origin::start().await;
    origin.ok("/s.txt", &[("cache-control", "max-age=300")], "shared body");
    let (a, b) =
        (sharing_proxy(&origin, &dir, "a", &redis.url()), sharing_proxy(&origin, &dir, "b", &redis.url()));

    assert_eq!(get(&a.url(origin.port(), "/s.txt"), &[]).await.body, "shared body");
    // The write-through runs after the reply: wait for the entry's metadata key in Redis.
    assert!(
        eventually(Duration::from_secs(10), || !redis.keys("hc:*:m").is_empty()).await,
        "A's entry never reached Redis"
    );
    let got = get(&b.url(origin.port(), "/s.txt"), &[]).await;
    assert_eq!((got.body.as_ref(), got.header("x-cache")), (&b"shared body"[..], Some("HIT")));
    assert_eq!(origin.hits("/s.txt"), 1);

    let text = scrape(b.admin_port()).await;
    assert!(sample(&text, "httpcache_shared_lookups_total{outcome=\"hit\"}").unwrap() >= 1.0, "{text}");
    assert_eq!(sample(&text, "httpcache_shared_up"), Some(1.0), "{text}");
    assert!(sample(&text, "httpcache_shared_bytes_total{direction=\"read\"}").unwrap() > 0.0, "{text}");
    assert!(sample(&text, "httpcache_shared_calls_total").unwrap() >= 1.0, "{text}");
    let a_text = scrape(a.admin_port()).await;
    assert!(sample(&a_text, "httpcache_shared_writes_total").unwrap() >= 1.0, "{a_text}");
    let s = stats(b.admin_port()).await;
    assert_eq!(s["shared"]["state"], "up", "{s}");
    assert!(s["shared"]["hits"].as_u64().unwrap() >= 1, "{s}");

    // Redis dies: B still answers (from its own tiers or the origin), and says it is down.
    redis.kill();
    origin.ok("/t.txt", &[("cache-control", "max-age=300")], "after");
    assert_eq!(get(&b.url(origin.port(), "/t.txt"), &[]).await.body, "after");
    let mut down = Value::Null;
    for _ in 0..100 {
        down = stats(b.admin_port()).await;
        if down["shared"]["state"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(down["shared"]["state"], "down", "{down}");
    assert!(down["shared"]["errors"].as_u64().unwrap() >= 1, "{down}");
    let text = scrape(b.admin_port()).await;
    assert_eq!(sample(&text, "httpcache_shared_up"), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_shared_tier_there_is_no_shared_section() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let p = ProxyBuilder::new(60, origin.port(), dir.path()).arg("--admin-port").arg("0").start();
    let s = stats(p.admin_port()).await;
    assert!(s.get("shared").is_none(), "{s}");
    assert!(!scrape(p.admin_port()).await.contains("httpcache_shared_"));
}
