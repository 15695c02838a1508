//! Writes N cache entries into a cache directory, as the proxy would have stored them, for
//! measuring warm start-up (`bench/warm-start.sh`).
//!
//!     cargo run --release --example make_cache -- DIR N ORIGIN_PORT
//!
//! Entry i is the 1 KiB response to `GET http://127.0.0.1:ORIGIN_PORT/obj/i`, stored now
//! with `Cache-Control: max-age=86400`, so it is a fresh hit for a day.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use httpcache_proxy::cache::key::CacheKey;
use httpcache_proxy::cache::meta::StoredHead;
use httpcache_proxy::cache::store::disk::DiskStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: make_cache DIR N ORIGIN_PORT";
    let dir = args.next().ok_or(usage)?;
    let n: u64 = args.next().ok_or(usage)?.parse()?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    // Entries of 1 KiB: any largest-entry bound will do.
    let store = DiskStore::open(std::path::Path::new(&dir), 64 << 30, 1 << 20)?;
    let body = Bytes::from(vec![b'x'; 1024]);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    headers.insert("cache-control", HeaderValue::from_static("max-age=86400"));
    let started = std::time::Instant::now();
    for i in 0..n {
        let key = CacheKey::new("http", "127.0.0.1", port, &format!("/obj/{i}"));
        let now = SystemTime::now();
        let head = StoredHead {
            kind: httpcache_proxy::cache::meta::EntryKind::Response,
            key: key.url().to_string(),
            status: StatusCode::OK,
            headers: headers.clone(),
            request_time: now,
            response_time: now,
            reading: Default::default(),
        };
        Arc::clone(&store).write_whole(&key, &head, &body)?;
    }
    println!("wrote {n} entries to {dir} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
