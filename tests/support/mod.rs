//! Test support: a scriptable origin, the real proxy binary, and clients.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod origin;
pub mod proxy;

pub use client::{get, raw};
pub use origin::{owned, pattern, Behaviour, Origin};
pub use proxy::ProxyBuilder;

/// A Last-Modified value an hour in the past, so heuristic freshness applies.
pub fn last_modified() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
}
