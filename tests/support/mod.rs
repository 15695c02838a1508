//! Test support: a scriptable origin, the real proxy binary, and clients.
#![allow(dead_code, unused_imports)]

pub mod cache_dir;
pub mod client;
pub mod origin;
pub mod proxy;
pub mod redis;
pub mod tls;
pub mod webdriver;

pub use client::{get, get_concurrently, raw};
pub use origin::{owned, pattern, Behaviour, Origin};
pub use proxy::{ProxyBuilder, ProxyProcess};

/// A Last-Modified value an hour in the past, so heuristic freshness applies.
pub fn last_modified() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
}

/// Polls `cond` every 10 ms until it holds or `within` passes (a bounded wait on a condition,
/// not a sleep used as synchronisation).
pub async fn eventually(within: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A number from the environment (a soak's size knobs), or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Asks for `url` until the answer is a hit, `within` at most, each answer's body being `body`
/// and each one before the hit a collapsed one. A request right after the one that fetched a
/// response can still join that fetch (the client may have its last byte a moment before the
/// entry is stored and the fetch leaves the coalescer); it costs the origin nothing.
pub async fn until_hit(url: &str, body: &[u8], within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = get(url, &[]).await;
        assert!(got.status == 200 && got.body == body, "{url}: status {} or body differs", got.status);
        if got.header("x-cache") == Some("HIT") {
            return;
        }
        let status = got.header("cache-status").unwrap_or_default();
        assert!(status.contains("collapsed"), "{url}: neither a hit nor collapsed: {status}");
        assert!(std::time::Instant::now() < deadline, "{url}: no hit within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `http://127.0.0.1:<port><path_and_query>`: a URL on a proxy's admin listener.
pub fn admin_url(port: u16, path_and_query: &str) -> String {
    format!("http://127.0.0.1:{port}{path_and_query}")
}

/// The value of the sample line `series` in a Prometheus text body.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}
