//! A bounded soak: many keep-alive connections for a while, mixing cache hits, misses, a slow
//! origin, large bodies read slowly, and clients that abort mid-request or mid-response.
//! Asserts zero errors and bounded file-descriptor growth; prints RSS growth and latency
//! percentiles. The CI version runs 10 s with 200 connections; `bench/soak.sh` runs the same
//! test for 2 minutes with 1,000 (SOAK_SECS, SOAK_CONNS).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use parking_lot::Mutex;
use support::{env_or, pattern, Behaviour, Origin, ProxyBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIG: u64 = 256 * 1024;
/// Idle upstream connections close after this, so they do not count as growth.
const POOL_IDLE: Duration = Duration::from_millis(500);

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    aborted: AtomicU64,
    errors: Mutex<Vec<String>>,
    latencies_us: Mutex<Vec<u64>>,
}

/// One client connection's loop until `until`: request `i` of connection `c` picks its kind.
async fn client(proxy: u16, origin: u16, c: u64, until: Instant, tally: Arc<Tally>) {
    let mut i = 0u64;
    while Instant::now() < until {
        let stream = match TcpStream::connect(("127.0.0.1", proxy)).await {
            Ok(s) => s,
            Err(e) => {
                tally.errors.lock().push(format!("connect: {e}"));
                return;
            }
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
        else {
            tally.errors.lock().push("handshake".into());
            return;
        };
        tokio::spawn(conn);
        // Up to 20 requests per connection, then a new one (connection churn too).
        for _ in 0..20 {
            if Instant::now() >= until {
                return;
            }
            i += 1;
            let n = c * 7919 + i;
            let kind = n % 20;
            if kind == 0 {
                abort_mid_request(proxy, origin).await;
                tally.aborted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if kind == 1 {
                abort_mid_response(proxy, origin).await;
                tally.aborted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let (path, expected): (String, Option<Vec<u8>>) = match kind {
                2..=13 => (format!("/hit/{}", n % 50), Some(format!("hit {}", n % 50).into_bytes())),
                14..=16 => ("/miss".to_string(), None),
                17 => ("/slow".into(), Some(b"slow".to_vec())),
                _ => (format!("/big/{}", n % 4), Some(pattern(0, BIG))),
            };
            let uri = format!("/127.0.0.1:{origin}{path}");
            let req = Request::get(uri.as_str())
                .header("host", "proxy")
                .header("x-soak", n.to_string())
                .header("cache-control", if expected.is_none() { "no-store" } else { "max-age=600" })
                .body(Empty::<Bytes>::new())
                .unwrap();
            let started = Instant::now();
            let slow_reader = kind == 19;
            let outcome = async {
                sender.ready().await.map_err(|e| format!("ready: {e}"))?;
                let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
                let status = resp.status();
                let mut body = resp.into_body();
                let mut got = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| format!("body: {e}"))?;
                    if let Ok(data) = frame.into_data() {
                        got.extend_from_slice(&data);
                        if slow_reader {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
                Ok::<_, String>((status, got))
            };
            match tokio::time::timeout(Duration::from_secs(30), outcome).await {
                Err(_) => tally.errors.lock().push(format!("{path}: no answer within 30 s")),
                Ok(Err(e)) => {
                    tally.errors.lock().push(format!("{path}: {e}"));
                    break;
                }
                Ok(Ok((status, body))) => {
                    tally.latencies_us.lock().push(started.elapsed().as_micros() as u64);
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    if status != 200 {
                        tally.errors.lock().push(format!("{path}: status {status}"));
                    } else if expected.as_ref().is_some_and(|e| *e != body) {
                        tally.errors.lock().push(format!("{path}: wrong body ({} bytes)", body.len()));
                    } else if expected.is_none() && body != n.to_string().as_bytes() {
                        // Misses echo their own URL: a response for another request would show.
                        tally.errors.lock().push(format!("{path}: wrong miss body"));
                    }
                }
            }
        }
    }
}

/// A client that sends half a request head and leaves.
async fn abort_mid_request(proxy: u16, origin: u16) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", proxy)).await {
        let _ = s.write_all(format!("GET /127.0.0.1:{origin}/hit/1 HTTP/1.1\r\nHo").as_bytes()).await;
    }
}

/// A client that asks for a large body, reads a little of it and leaves.
async fn abort_mid_response(proxy: u16, origin: u16) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", proxy)).await {
        let req = format!("GET /127.0.0.1:{origin}/big/0 HTTP/1.1\r\nHost: proxy\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_ok() {
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        }
    }
}

async fn run_clients(proxy: u16, origin: u16, conns: u64, secs: f64, tally: Arc<Tally>) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> =
        (0..conns).map(|c| tokio::spawn(client(proxy, origin, c, until, tally.clone()))).collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The proxy's fd count once the load is over: idle pooled upstream connections expire
/// after the soak proxy's short --pool-idle-timeout, so wait past it, then (bounded) until
/// the count holds still for a second.
async fn settled_fds(pid: u32) -> usize {
    tokio::time::sleep(POOL_IDLE * 3).await;
    let mut last = open_fds(pid);
    let mut still = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = open_fds(pid);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 10 {
            break;
        }
    }
    last
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread")]
async fn soak_mixed_load_has_no_errors_and_no_fd_growth() {
    let secs = env_or("SOAK_SECS", 10u64) as f64;
    let conns = env_or("SOAK_CONNS", 200u64);
    let origin = Origin::start().await;
    let lm = support::last_modified();
    for k in 0..50 {
        origin.ok(&format!("/hit/{k}"), &[("last-modified", &lm)], &format!("hit {k}"));
    }
    for k in 0..4 {
        let headers = vec![("last-modified".to_string(), lm.clone())];
        origin.route(&format!("/big/{k}"), Behaviour::Pattern { len: BIG, headers });
    }
    let slow = Behaviour::Fixed { status: 200, headers: Vec::new(), body: Bytes::from_static(b"slow") };
    origin.route("/slow", Behaviour::Delay { delay: Duration::from_millis(200), then: Box::new(slow) });
    origin.route("/miss", Behaviour::Echo { name: "x-soak".into(), headers: Vec::new() });
    let dir = tempfile::tempdir().unwrap();
    let proxy =
        ProxyBuilder::new(600, origin.port(), dir.path()).arg("--pool-idle-timeout").arg("500ms").start();
    let pid = proxy.pid();

    // Warm-up: a quarter of the time; then the baseline.
    let warm = Arc::new(Tally::default());
    run_clients(proxy.port, origin.port(), conns, (secs / 4.0).max(2.0), warm.clone()).await;
    let (fds_before, rss_before) = (settled_fds(pid).await, rss_kib(pid));

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    run_clients(proxy.port, origin.port(), conns, secs, tally.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (fds_after, rss_after) = (settled_fds(pid).await, rss_kib(pid));

    let mut lat = tally.latencies_us.lock().clone();
    lat.sort_unstable();
    let errors = tally.errors.lock().clone();
    let requests = tally.requests.load(Ordering::Relaxed);
    println!(
        "soak: {conns} connections, {elapsed:.1} s, {requests} requests ({:.0}/s), {} aborted clients, \
         {} errors; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; fds {fds_before} -> {fds_after}; \
         RSS KiB {rss_before} -> {rss_after}",
        requests as f64 / elapsed,
        tally.aborted.load(Ordering::Relaxed),
        errors.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    let warm_errors = warm.errors.lock().clone();
    assert!(warm_errors.is_empty(), "warm-up errors: {:?}", &warm_errors[..warm_errors.len().min(10)]);
    assert!(errors.is_empty(), "{} errors, first: {:?}", errors.len(), &errors[..errors.len().min(10)]);
    assert!(requests > conns, "the load ran: {requests} requests");
    assert!(fds_after <= fds_before + 8, "file descriptors grew: {fds_before} -> {fds_after}");
    assert!(
        rss_after <= rss_before + 128 * 1024,
        "resident memory grew by more than 128 MiB: {rss_before} -> {rss_after} KiB"
    );
}
