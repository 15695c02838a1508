//! Test support: a scriptable origin, the real proxy binary, and clients.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod origin;
pub mod proxy;
pub mod redis;
pub mod tls;
pub mod webdriver;

pub use client::{get, raw};
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
