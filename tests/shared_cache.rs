//! The shared (Redis) tier end to end: several real proxies, one real origin and a real
//! redis-server (standalone or a 3-node Cluster), counting what reaches the origin.

mod support;

use std::time::Duration;

use support::client::request;
use support::redis::{RedisCluster, RedisServer};
use support::*;

const CACHEABLE: (&str, &str) = ("cache-control", "max-age=300");

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A proxy with its own cache directory, sharing through `url`.
/// Calls get a generous deadline: CI machines are busy, and a test that is not about
/// deadlines must not lose an invalidation to a slow moment.
fn proxy(origin: &Origin, dir: &tempfile::TempDir, name: &str, url: &str) -> ProxyProcess {
    proxy_with(origin, dir, name, url, &["--shared-timeout", "2s"])
}

fn proxy_with(
    origin: &Origin,
    dir: &tempfile::TempDir,
    name: &str,
    url: &str,
    extra: &[&str],
) -> ProxyProcess {
    let cache_dir = dir.path().join(name);
    let mut b = ProxyBuilder::new(60, origin.port(), &cache_dir).arg("--shared-cache").arg(url);
    for a in extra {
        b = b.arg(a);
    }
    let p = b.start();
    assert!(p.wait_log("subscribed to invalidations", Duration::from_secs(10)), "{:?}", p.log());
    p
}

/// Waits until `n` entries' metadata keys are in Redis (write-through runs after the reply).
async fn wait_entries(servers: &[&RedisServer], n: usize) {
    let count = || servers.iter().map(|s| s.keys("hc:*:m").len()).sum::<usize>();
    assert!(
        eventually(Duration::from_secs(10), || count() >= n).await,
        "{} of {n} entries in Redis",
        count()
    );
}

/// A URL fetched through the first proxy is a hit on the others: the origin counts 1.
async fn check_sharing(url: &str, servers: &[&RedisServer], proxies: usize) {
    servers.iter().for_each(|s| s.flush());
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/a.txt", &[CACHEABLE], "shared body");
    let proxies: Vec<_> = (0..proxies).map(|i| proxy(&origin, &dir, &format!("p{i}"), url)).collect();
    let start = proxies[0].log().into_iter().find(|l| l.contains("listening on")).unwrap();
    assert!(start.contains("shared_cache=up") || start.contains("shared_cache=\"up\""), "{start}");

    let first = get(&proxies[0].url(origin.port(), "/a.txt"), &[]).await;
    assert_eq!((first.status.as_u16(), first.header("x-cache")), (200, Some("MISS")));
    wait_entries(servers, 1).await;
    for p in &proxies[1..] {
        let got = get(&p.url(origin.port(), "/a.txt"), &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "shared body");
        assert_eq!(got.header("x-cache"), Some("HIT"));
        // Promoted: served locally from now on.
        assert_eq!(get(&p.url(origin.port(), "/a.txt"), &[]).await.header("x-cache"), Some("HIT"));
    }
    assert_eq!(origin.hits("/a.txt"), 1);
}

/// Concurrent misses on three proxies (two each) make one origin request.
async fn check_fleet_coalescing(url: &str) {
    let (dir, origin) = (tmp(), Origin::start().await);
    let body = Behaviour::Fixed { status: 200, headers: owned(&[CACHEABLE]), body: "slow".into() };
    origin.route("/slow", Behaviour::Delay { delay: Duration::from_millis(400), then: Box::new(body) });
    let proxies: Vec<_> = ["a", "b", "c"].iter().map(|n| proxy(&origin, &dir, n, url)).collect();

    let mut tasks = Vec::new();
    for p in proxies.iter().chain(proxies.iter()) {
        tasks.push(tokio::spawn(get(p.url(origin.port(), "/slow").leak(), &[])));
    }
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!((got.status.as_u16(), got.body.as_ref()), (200, b"slow".as_ref()));
    }
    assert_eq!(origin.hits("/slow"), 1, "one origin request for the fleet");
}

/// A POST through one proxy (RFC 9111 §4.4) drops the URL from Redis and from the others.
async fn check_invalidation(url: &str, servers: &[&RedisServer]) {
    servers.iter().for_each(|s| s.flush());
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/doc", &[CACHEABLE], "v1");
    let (a, b) = (proxy(&origin, &dir, "a", url), proxy(&origin, &dir, "b", url));

    get(&a.url(origin.port(), "/doc"), &[]).await;
    wait_entries(servers, 1).await;
    assert_eq!(get(&b.url(origin.port(), "/doc"), &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/doc"), 1);

    origin.ok("/doc", &[CACHEABLE], "v2");
    let post = request("POST", &a.url(origin.port(), "/doc"), &[]).await;
    assert_eq!(post.status, 200);
    assert!(servers.iter().all(|s| s.keys("hc:*:m").is_empty()), "the shared entry is gone");
    // B drops its own copy when the invalidation reaches it.
    let mut last = None;
    let fresh = async {
        for _ in 0..200 {
            let got = get(&b.url(origin.port(), "/doc"), &[]).await;
            if got.body == "v2" {
                return Some(got);
            }
            last = Some(got);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    };
    let got = fresh.await.unwrap_or_else(|| panic!("B still serves the old copy: {last:?}"));
    assert_eq!(got.header("x-cache"), Some("MISS"));
    assert_eq!(origin.hits("/doc"), 3, "GET, POST, and B's refetch");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_and_three_proxies_share_one_redis() {
    let dir = tmp();
    let redis = RedisServer::start(dir.path());
    check_sharing(&redis.url(), &[&redis], 2).await;
    check_sharing(&redis.url(), &[&redis], 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_across_proxies_make_one_origin_request() {
    let dir = tmp();
    let redis = RedisServer::start(dir.path());
    check_fleet_coalescing(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_method_on_one_proxy_invalidates_every_proxy() {
    let dir = tmp();
    let redis = RedisServer::start(dir.path());
    check_invalidation(&redis.url(), &[&redis]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_cluster_shares_coalesces_invalidates_and_spreads_keys() {
    let (dir, origin) = (tmp(), Origin::start().await);
    let cluster = RedisCluster::start(dir.path());
    let nodes: Vec<&RedisServer> = cluster.nodes.iter().collect();
    check_sharing(&cluster.url(), &nodes, 3).await;
    check_fleet_coalescing(&cluster.url()).await;
    check_invalidation(&cluster.url(), &nodes).await;

    nodes.iter().for_each(|s| s.flush());
    let (a, b) = (proxy(&origin, &dir, "a", &cluster.url()), proxy(&origin, &dir, "b", &cluster.url()));
    let paths: Vec<String> = (0..24).map(|i| format!("/item/{i}")).collect();
    for p in &paths {
        origin.ok(p, &[CACHEABLE], p);
        assert_eq!(get(&a.url(origin.port(), p), &[]).await.header("x-cache"), Some("MISS"));
    }
    wait_entries(&nodes, paths.len()).await;
    for p in &paths {
        let got = get(&b.url(origin.port(), p), &[]).await;
        assert_eq!((got.header("x-cache"), got.body.as_ref()), (Some("HIT"), p.as_bytes()));
        assert_eq!(origin.hits(p), 1);
    }
    let used = cluster.nodes.iter().filter(|n| !n.keys("hc:*:m").is_empty()).count();
    assert!(used >= 2, "entries spread over the nodes ({used} of 3 used)");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_degrades_to_local_and_recovers_without_restart() {
    let (dir, origin) = (tmp(), Origin::start().await);
    let mut redis = RedisServer::start(dir.path());
    let (a, b) = (proxy(&origin, &dir, "a", &redis.url()), proxy(&origin, &dir, "b", &redis.url()));
    origin.ok("/x", &[CACHEABLE], "x");

    redis.kill();
    assert_eq!(get(&a.url(origin.port(), "/x"), &[]).await.header("x-cache"), Some("MISS"));
    assert_eq!(get(&a.url(origin.port(), "/x"), &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(get(&b.url(origin.port(), "/x"), &[]).await.status, 200);
    assert_eq!(origin.hits("/x"), 2, "no sharing while Redis is down, but no failure either");
    assert!(a.wait_log("shared cache unreachable", Duration::from_secs(5)), "{:?}", a.log());

    redis.restart();
    // Each proxy pings once a second, reconnects, and says so, without restarting.
    for p in [&a, &b] {
        let back = || p.log().iter().filter(|l| l.contains("shared cache up")).count() >= 2;
        assert!(eventually(Duration::from_secs(10), back).await, "{:?}", p.log());
    }
    origin.ok("/y", &[CACHEABLE], "y");
    assert_eq!(get(&a.url(origin.port(), "/y"), &[]).await.header("x-cache"), Some("MISS"));
    wait_entries(&[&redis], 1).await;
    assert_eq!(get(&b.url(origin.port(), "/y"), &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/y"), 1);

    // The invalidation subscribers came back too.
    let resubscribed = || b.log().iter().filter(|l| l.contains("subscribed to invalidations")).count() >= 2;
    assert!(eventually(Duration::from_secs(10), resubscribed).await, "{:?}", b.log());
    origin.ok("/y", &[CACHEABLE], "y2");
    assert_eq!(request("DELETE", &a.url(origin.port(), "/y"), &[]).await.status, 200);
    let dropped = async {
        for _ in 0..200 {
            if get(&b.url(origin.port(), "/y"), &[]).await.body == "y2" {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    };
    assert!(dropped.await, "B dropped its copy after the restart: A {:?} B {:?}", a.log(), b.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn large_body_round_trips_in_chunks() {
    const LEN: u64 = 3 * 1024 * 1024 + 1234; // 7 chunks of at most 512 KiB
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.route("/big.bin", Behaviour::Pattern { len: LEN, headers: owned(&[CACHEABLE]) });
    let redis = RedisServer::start(dir.path());
    let (a, b) = (proxy(&origin, &dir, "a", &redis.url()), proxy(&origin, &dir, "b", &redis.url()));

    assert_eq!(get(&a.url(origin.port(), "/big.bin"), &[]).await.body.len() as u64, LEN);
    wait_entries(&[&redis], 1).await;
    assert_eq!(redis.keys("hc:*:b:*").len(), 7);
    let got = get(&b.url(origin.port(), "/big.bin"), &[]).await;
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert!(got.body == pattern(0, LEN), "body intact");
    assert_eq!(origin.hits("/big.bin"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_starts_while_redis_is_down_and_connects_when_it_comes_up() {
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/z", &[CACHEABLE], "z");
    let mut redis = RedisServer::start(dir.path());
    redis.kill();
    let a = ProxyBuilder::new(60, origin.port(), &dir.path().join("a"))
        .arg("--shared-cache")
        .arg(&redis.url())
        .start();
    let start = a.log().into_iter().find(|l| l.contains("listening on")).unwrap();
    assert!(start.contains("shared_cache=down") || start.contains("shared_cache=\"down\""), "{start}");
    assert_eq!(get(&a.url(origin.port(), "/z"), &[]).await.status, 200);

    redis.restart();
    assert!(a.wait_log("shared cache up", Duration::from_secs(10)), "{:?}", a.log());
    let b = proxy(&origin, &dir, "b", &redis.url());
    origin.ok("/w", &[CACHEABLE], "w");
    get(&a.url(origin.port(), "/w"), &[]).await;
    wait_entries(&[&redis], 1).await;
    assert_eq!(get(&b.url(origin.port(), "/w"), &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/w"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_with_a_private_ca_shares() {
    let pki = support::tls::TestPki::new();
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/t", &[CACHEABLE], "over tls");
    let files = [pki.cert_pem.clone(), pki.key_pem.clone(), pki.ca_pem.clone()];
    let redis = RedisServer::start_tls(dir.path(), files);
    let ca = pki.ca_pem.display().to_string();
    let a = proxy_with(&origin, &dir, "a", &redis.tls_url(), &["--shared-ca", &ca, "--shared-timeout", "2s"]);
    let b = proxy_with(&origin, &dir, "b", &redis.tls_url(), &["--shared-ca", &ca, "--shared-timeout", "2s"]);

    get(&a.url(origin.port(), "/t"), &[]).await;
    wait_entries(&[&redis], 1).await;
    let got = get(&b.url(origin.port(), "/t"), &[]).await;
    assert_eq!((got.header("x-cache"), got.body.as_ref()), (Some("HIT"), b"over tls".as_ref()));
    assert_eq!(origin.hits("/t"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_shared_limit_stay_local_and_nobody_waits_for_them() {
    const LEN: u64 = 2 * 1024 * 1024;
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.route("/huge", Behaviour::Pattern { len: LEN, headers: owned(&[CACHEABLE]) });
    let redis = RedisServer::start(dir.path());
    let limit = ["--shared-max-object-size", "1MiB", "--shared-timeout", "2s"];
    let a = proxy_with(&origin, &dir, "a", &redis.url(), &limit);
    let b = proxy_with(&origin, &dir, "b", &redis.url(), &limit);

    assert_eq!(get(&a.url(origin.port(), "/huge"), &[]).await.body.len() as u64, LEN);
    // The leader marks its lease "pass", so other proxies fetch at once instead of waiting.
    let lease_is_pass = || {
        redis.keys("hc:*:lease").iter().any(|k| support::redis::cli(redis.port, &["GET", k]).trim() == "pass")
    };
    assert!(eventually(Duration::from_secs(5), lease_is_pass).await);
    let got = get(&b.url(origin.port(), "/huge"), &[]).await;
    assert_eq!((got.header("x-cache"), got.body.len() as u64), (Some("MISS"), LEN));
    assert_eq!(origin.hits("/huge"), 2);
    assert!(redis.keys("hc:*:m").is_empty(), "nothing over the limit in Redis");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_that_may_not_be_stored_releases_the_fleet_at_once() {
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/mine", &[("cache-control", "no-store")], "private");
    let redis = RedisServer::start(dir.path());
    let (a, b) = (proxy(&origin, &dir, "a", &redis.url()), proxy(&origin, &dir, "b", &redis.url()));

    assert_eq!(get(&a.url(origin.port(), "/mine"), &[]).await.header("x-cache"), Some("MISS"));
    let lease_is_pass = || {
        redis.keys("hc:*:lease").iter().any(|k| support::redis::cli(redis.port, &["GET", k]).trim() == "pass")
    };
    assert!(eventually(Duration::from_secs(5), lease_is_pass).await, "lease marked pass");
    assert_eq!(get(&b.url(origin.port(), "/mine"), &[]).await.body, "private");
    assert_eq!(origin.hits("/mine"), 2);
    assert!(redis.keys("hc:*:m").is_empty(), "no-store is never shared");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revalidated_entry_is_shared_and_replaces_stale_copies() {
    let (dir, origin) = (tmp(), Origin::start().await);
    let full = Behaviour::Fixed {
        status: 200,
        headers: owned(&[("cache-control", "max-age=3"), ("etag", "\"v1\"")]),
        body: "body".into(),
    };
    origin.route("/r", Behaviour::Conditional { etag: "\"v1\"".into(), then: Box::new(full) });
    let redis = RedisServer::start(dir.path());
    let (a, b) = (proxy(&origin, &dir, "a", &redis.url()), proxy(&origin, &dir, "b", &redis.url()));

    assert_eq!(get(&a.url(origin.port(), "/r"), &[]).await.header("x-cache"), Some("MISS"));
    wait_entries(&[&redis], 1).await;
    assert_eq!(get(&b.url(origin.port(), "/r"), &[]).await.header("x-cache"), Some("HIT"));
    // The shared copy lives as long as it is fresh (3 s; 2 s made B's hit a race with the
    // origin's whole-second Date on a loaded machine): wait until Redis dropped it. Both
    // proxies' own copies are stale then.
    assert!(eventually(Duration::from_secs(8), || redis.keys("hc:*:m").is_empty()).await);
    let again = get(&a.url(origin.port(), "/r"), &[]).await;
    assert_eq!((again.status.as_u16(), again.body.as_ref()), (200, b"body".as_ref()));
    assert_eq!(origin.hits("/r"), 2, "revalidated with a 304");
    wait_entries(&[&redis], 1).await;
    let got = get(&b.url(origin.port(), "/r"), &[]).await;
    assert_eq!((got.header("x-cache"), got.body.as_ref()), (Some("HIT"), b"body".as_ref()));
    assert_eq!(origin.hits("/r"), 2, "B took A's freshened entry instead of revalidating its own");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_out_of_memory_refuses_writes_but_reads_go_on() {
    const LEN: u64 = 8 * 1024 * 1024;
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/small", &[CACHEABLE], "small");
    origin.route("/big", Behaviour::Pattern { len: LEN, headers: owned(&[CACHEABLE]) });
    let redis = RedisServer::start(dir.path());
    let (a, b) = (proxy(&origin, &dir, "a", &redis.url()), proxy(&origin, &dir, "b", &redis.url()));
    get(&a.url(origin.port(), "/small"), &[]).await;
    wait_entries(&[&redis], 1).await;

    for setting in [["maxmemory", "3mb"], ["maxmemory-policy", "noeviction"]] {
        assert_eq!(support::redis::cli(redis.port, &["CONFIG", "SET", setting[0], setting[1]]).trim(), "OK");
    }
    assert_eq!(get(&a.url(origin.port(), "/big"), &[]).await.body.len() as u64, LEN);
    assert!(a.wait_log("Redis refused a command", Duration::from_secs(10)), "{:?}", a.log());
    assert_eq!(redis.keys("hc:*:m").len(), 1, "the refused upload left no readable entry");
    assert!(!a.log().iter().any(|l| l.contains("unreachable")), "a refusal is not an outage");
    assert_eq!(get(&b.url(origin.port(), "/small"), &[]).await.header("x-cache"), Some("HIT"));
    assert_eq!(get(&b.url(origin.port(), "/big"), &[]).await.body.len() as u64, LEN);
    assert_eq!((origin.hits("/small"), origin.hits("/big")), (1, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_redis_costs_requests_a_deadline_not_an_outage() {
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/s", &[CACHEABLE], "s");
    let redis = RedisServer::start(dir.path());
    let a = proxy_with(&origin, &dir, "a", &redis.url(), &["--shared-timeout", "200ms"]);

    // Redis stops answering for 3 s (it blocks; the connections stay open).
    let port = redis.port;
    let sleeper = std::thread::spawn(move || support::redis::cli(port, &["DEBUG", "SLEEP", "3"]));
    assert!(eventually(Duration::from_secs(2), || support::redis::stalled(port)).await);
    let started = std::time::Instant::now();
    let got = get(&a.url(origin.port(), "/s"), &[]).await;
    let took = started.elapsed();
    assert_eq!((got.status.as_u16(), got.body.as_ref()), (200, b"s".as_ref()));
    assert!(took < Duration::from_millis(1500), "answered in {took:?} while Redis stalls for 3 s");
    assert!(a.wait_log("shared cache unreachable", Duration::from_secs(5)), "{:?}", a.log());
    assert_eq!(get(&a.url(origin.port(), "/s"), &[]).await.header("x-cache"), Some("HIT"));
    sleeper.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_on_one_proxy_reaches_a_proxy_that_holds_the_url() {
    let (dir, origin) = (tmp(), Origin::start().await);
    origin.ok("/p", &[CACHEABLE], "p1");
    let redis = RedisServer::start(dir.path());
    let (a, b) = (proxy(&origin, &dir, "a", &redis.url()), proxy(&origin, &dir, "b", &redis.url()));
    assert_eq!(get(&b.url(origin.port(), "/p"), &[]).await.header("x-cache"), Some("MISS"));
    wait_entries(&[&redis], 1).await;

    // A never served /p itself: the purge still reaches Redis and B.
    origin.ok("/p", &[CACHEABLE], "p2");
    assert_eq!(request("PURGE", &a.url(origin.port(), "/p"), &[]).await.status, 404, "nothing local on A");
    assert!(redis.keys("hc:*:m").is_empty(), "the shared entry is gone");
    let mut fresh = false;
    for _ in 0..200 {
        if get(&b.url(origin.port(), "/p"), &[]).await.body == "p2" {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(fresh, "B dropped its copy: {:?}", b.log());
    assert_eq!(origin.hits("/p"), 2);
}
