//! httpcache-proxy: a fast, standards-correct HTTP caching proxy with a crash-safe, tiered
//! disk cache. See ARCHITECTURE.md for how the modules fit together.
//!
//! Dependencies point one way: `app -> {server, proxy, admin, tools} -> {metrics, cache}`;
//! nothing in `cache` knows about the proxy, the metrics or the network.

pub mod access;
pub mod access_log;
pub mod admin;
pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod demo;
pub mod fuzzing;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod tools;
