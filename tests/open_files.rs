//! The proxy raises its soft limit on open descriptors to the hard limit at start, so a low
//! default soft limit (1024 on many systems) does not cap it at about as many clients.
//!
//! A test binary of its own: it lowers this process's soft limit for the moment the proxy is
//! spawned (the child inherits it), which would also limit tests running beside it.

mod support;

use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The soft limit the proxy starts with.
const LOW_SOFT_LIMIT: u64 = 128;
/// Clients held open at once: several times the low limit.
const CLIENTS: usize = 600;

#[tokio::test(flavor = "multi_thread")]
async fn a_low_soft_open_file_limit_is_raised_and_hundreds_of_clients_are_served_at_once() {
    let origin = Origin::start().await;
    origin.ok("/a", &[("cache-control", "max-age=600")], "hello");
    let dir = tempfile::tempdir().unwrap();
    let before = getrlimit(Resource::Nofile);
    assert!(
        before.maximum.is_none_or(|hard| hard >= 4 * CLIENTS as u64),
        "this test needs a hard open-file limit of at least {}: {before:?}",
        4 * CLIENTS
    );
    setrlimit(Resource::Nofile, Rlimit { current: Some(LOW_SOFT_LIMIT), maximum: before.maximum }).unwrap();
    let proxy = ProxyBuilder::new(60, origin.port(), dir.path()).start();
    setrlimit(Resource::Nofile, before).unwrap();
    assert!(proxy.log().iter().any(|l| l.contains("open-file limit raised")), "{:?}", proxy.log());

    // Every client connects and asks, and keeps its connection open while the others do.
    let ask = format!("GET /127.0.0.1:{}/a HTTP/1.1\r\nHost: x\r\n\r\n", origin.port());
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        c.write_all(ask.as_bytes()).await.unwrap();
        clients.push(c);
    }
    let answered = async {
        let mut ok = 0;
        for c in &mut clients {
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.ends_with(b"hello") {
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed after {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
            ok += 1;
        }
        ok
    };
    let ok = tokio::time::timeout(Duration::from_secs(30), answered).await;
    assert_eq!(ok, Ok(CLIENTS), "every client answered while all were connected");
    assert_eq!(origin.hits("/a"), 1);
}
