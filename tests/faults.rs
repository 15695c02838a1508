//! Fault injection: upstreams that die, lie or stall mid-body, cache files that rot, a proxy
//! killed with SIGKILL, and a cache directory that stops accepting writes. The real binary
//! against real origins; every test checks what the client got and what reached the origin.

mod support;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::cache_dir::{
    entry_files, pack_files, pack_records, packed_entry, record_body_span, stored_entries, PackRecord,
    RECORD_HEADER,
};
use support::origin::RawOrigin;
use support::proxy::ProxyProcess;
use support::*;
use tokio::sync::Notify;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Client side: a response read as far as it goes.

/// A response read until its body ended, failed or the deadline passed.
struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// Why the body did not end cleanly, if it did not.
    error: Option<String>,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    /// Whether a client would take this for a whole response: the body ended without an error
    /// and holds as many bytes as Content-Length announced.
    fn complete_looking(&self) -> bool {
        self.error.is_none() && self.content_length().is_none_or(|n| n == self.body.len() as u64)
    }

    fn describe(&self) -> String {
        format!(
            "status {} x-cache {:?} content-length {:?} got {} bytes, error {:?}",
            self.status,
            self.header("x-cache"),
            self.content_length(),
            self.body.len(),
            self.error
        )
    }
}

/// GET `url` on a fresh connection, reading the body frame by frame; `Err` when no response
/// head arrived. Bounded by 30 s overall.
async fn try_fetch(url: &str) -> Result<Fetched, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resp = match tokio::time::timeout_at(deadline, client.get(url.parse().unwrap())).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("request failed: {e:?}")),
        Err(_) => return Err("no response head within 30 s".into()),
    };
    let (parts, mut body) = resp.into_parts();
    let mut out = Vec::new();
    let mut error = None;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                error = Some("body not finished within 30 s".into());
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                error = Some(format!("{e:?}"));
                break;
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(Fetched { status: parts.status, headers: parts.headers, body: out, error })
}

async fn fetch(url: &str) -> Fetched {
    try_fetch(url).await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Asserts a complete, byte-exact 200.
fn assert_whole(got: &Fetched, expected: &[u8], what: &str) {
    assert_eq!(got.status, 200, "{what}: {}", got.describe());
    assert!(got.complete_looking(), "{what}: {}", got.describe());
    assert_eq!(got.body.len(), expected.len(), "{what}: {}", got.describe());
    assert!(got.body == expected, "{what}: body bytes differ");
}

// ---------------------------------------------------------------------------------------------
// Cache directory side.

/// The one entry file in `dir`.
fn only_entry(dir: &Path) -> PathBuf {
    let files = entry_files(dir);
    assert_eq!(files.len(), 1, "expected exactly one entry: {files:?}");
    files.into_iter().next().unwrap()
}

/// Files in `<dir>/tmp/`.
fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir.join("tmp")) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Asserts that the cache directory holds nothing but its bookkeeping: `CACHEDIR.TAG`, `tmp/`,
/// the (empty) two-hex-digit shard directories and an empty `packs/`, so no entry was ever
/// committed.
fn assert_nothing_stored(dir: &Path) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit())))
        .collect();
    names.sort();
    assert_eq!(names, ["CACHEDIR.TAG", "packs", "tmp"], "cache directory holds more than its bookkeeping");
    assert!(entry_files(dir).is_empty());
    assert!(pack_files(dir).is_empty(), "a pack was written: {:?}", pack_files(dir));
}

/// Every path under `dir`, for failure messages.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let meta = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(format!("{} ({meta})", p.strip_prefix(dir).unwrap().display()));
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

async fn wait_log(proxy: &ProxyProcess, needle: &str, within: Duration) -> bool {
    eventually(within, || proxy.log().iter().any(|l| l.contains(needle))).await
}

fn count_log(proxy: &ProxyProcess, needle: &str) -> usize {
    proxy.log().iter().filter(|l| l.contains(needle)).count()
}

/// Where the body of an entry file lies: `(offset, len)`, from its prefix and trailer.
fn body_span(path: &Path) -> (u64, u64) {
    let f = fs::File::open(path).unwrap();
    let file_len = f.metadata().unwrap().len();
    let mut prefix = [0u8; 8];
    f.read_exact_at(&mut prefix, 0).unwrap();
    assert_eq!(&prefix[..4], b"HCE1");
    let head_len = u32::from_le_bytes(prefix[4..8].try_into().unwrap()) as u64;
    let mut trailer = [0u8; 16];
    f.read_exact_at(&mut trailer, file_len - 16).unwrap();
    assert_eq!(&trailer[12..], b"HCT1");
    let body_len = u64::from_le_bytes(trailer[..8].try_into().unwrap());
    let offset = 8 + head_len + 4;
    assert_eq!(offset + body_len + 16, file_len, "entry layout");
    (offset, body_len)
}

/// The body of a packed entry, if its record is whole.
fn packed_body(r: &PackRecord) -> Vec<u8> {
    let (offset, len) = record_body_span(r);
    let mut body = vec![0u8; len as usize];
    fs::File::open(&r.path).unwrap().read_exact_at(&mut body, offset).unwrap();
    body
}

/// The name of a pack as the proxy logs it: its 16 hex digits.
fn pack_name(r: &PackRecord) -> String {
    r.path.file_stem().unwrap().to_string_lossy().into_owned()
}

fn flip_byte(path: &Path, at: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).unwrap();
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// Sends SIGTERM and waits for a clean exit.
fn stop(proxy: &mut ProxyProcess) {
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(Duration::from_secs(15)), Some(0), "clean exit on SIGTERM");
}

/// Sends SIGKILL and waits until the process is gone.
fn kill9(proxy: &mut ProxyProcess) {
    let pid = proxy.pid();
    proxy.signal("KILL");
    // A process killed by a signal has no exit code, so wait_exit says None either way; the
    // reaped process no longer has a /proc entry.
    let _ = proxy.wait_exit(Duration::from_secs(10));
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "proxy still running after SIGKILL");
}

fn lm_headers() -> Vec<(String, String)> {
    owned(&[("last-modified", &last_modified())])
}

// ---------------------------------------------------------------------------------------------
// Upstream faults.

#[tokio::test(flavor = "multi_thread")]
async fn upstream_dying_mid_body_is_cut_for_the_client_and_not_stored() {
    const LEN: u64 = 1 << 20;
    const SENT: u64 = 200 * 1024;
    let origin = Origin::start().await;
    origin.route("/dies", Behaviour::AbortAfter { len: LEN, sent: SENT, headers: lm_headers() });
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/dies");

    for round in 1..=2 {
        let got = fetch(&url).await;
        // A cut known before any byte went out is a clean 502; after that, the 200 is cut.
        if got.status == 200 {
            assert!(!got.complete_looking(), "round {round}: a cut body looks complete: {}", got.describe());
            assert!(got.body.len() as u64 <= SENT, "round {round}: {}", got.describe());
            assert!(got.body == pattern(0, got.body.len() as u64), "round {round}: bytes differ");
        } else {
            assert_eq!(got.status, 502, "round {round}: {}", got.describe());
        }
        assert_eq!(origin.hits("/dies"), round, "round {round}: nothing stored, so the origin is asked");
        assert!(
            eventually(Duration::from_secs(5), || tmp_files(dir.path()).is_empty()).await,
            "round {round}: temporary file left: {:?}",
            tmp_files(dir.path())
        );
        assert_nothing_stored(dir.path());
    }
    assert!(proxy.log().iter().any(|l| l.contains("upstream body incomplete")));

    // Once the origin recovers, the response is fetched whole and stored.
    origin.route("/dies", Behaviour::Pattern { len: LEN, headers: lm_headers() });
    let got = fetch(&url).await;
    assert_whole(&got, &pattern(0, LEN), "after recovery");
    assert_eq!(got.header("x-cache"), Some("MISS"));
    let got = fetch(&url).await;
    assert_whole(&got, &pattern(0, LEN), "hit after recovery");
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/dies"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_sending_less_than_content_length_is_not_stored() {
    let lm = last_modified();
    let short = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nLast-Modified: {lm}\r\nContent-Type: text/plain\r\n\r\n{}",
        "s".repeat(50)
    );
    let origin = RawOrigin::start(short).await;
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/short");

    for round in 1..=2 {
        let got = fetch(&url).await;
        // Small bodies are read whole before answering, so the proxy can answer a clean 502;
        // a streamed body would instead be cut. Never a complete-looking 200.
        if got.status == 200 {
            assert!(
                !got.complete_looking(),
                "round {round}: a short body looks complete: {}",
                got.describe()
            );
            assert!(got.body.len() <= 50 && got.body.iter().all(|&b| b == b's'), "{}", got.describe());
        } else {
            assert_eq!(got.status, 502, "round {round}: {}", got.describe());
        }
        assert_eq!(origin.hits(), round, "round {round}: nothing stored, so the origin is asked");
        assert!(eventually(Duration::from_secs(5), || tmp_files(dir.path()).is_empty()).await);
        assert_nothing_stored(dir.path());
    }

    // An honest answer is stored.
    let full = "f".repeat(100);
    origin.set_reply(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nLast-Modified: {lm}\r\nConnection: close\r\n\r\n{full}"
    ));
    let got = fetch(&url).await;
    assert_whole(&got, full.as_bytes(), "honest answer");
    assert_eq!(got.header("x-cache"), Some("MISS"));
    let got = fetch(&url).await;
    assert_whole(&got, full.as_bytes(), "hit");
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_cutting_a_chunked_body_is_not_stored() {
    let lm = last_modified();
    // One 50-byte chunk ("32" hex), then the connection closes without the last chunk.
    let cut = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLast-Modified: {lm}\r\n\r\n32\r\n{}\r\n",
        "c".repeat(50)
    );
    let origin = RawOrigin::start(cut).await;
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, origin.port(), dir.path()).start();
    let url = proxy.url(origin.port(), "/chunked");
    for round in 1..=2 {
        // When the cut is known before the response goes out, the proxy answers a clean 502.
        // Otherwise the 200 it started is cut; when the cut arrives while the head is still
        // in hyper's write buffer, the connection closes before the head. Never a body that
        // ends cleanly.
        match try_fetch(&url).await {
            Err(e) => assert!(e.contains("IncompleteMessage"), "round {round}: {e}"),
            Ok(got) if got.status == 200 => {
                let cut = got.error.is_some();
                assert!(cut, "round {round}: a cut chunked body ended cleanly: {}", got.describe());
                assert!(got.body.len() <= 50 && got.body.iter().all(|&b| b == b'c'), "{}", got.describe());
            }
            Ok(got) => assert_eq!(got.status, 502, "round {round}: {}", got.describe()),
        }
        assert_eq!(origin.hits(), round);
        assert!(eventually(Duration::from_secs(5), || tmp_files(dir.path()).is_empty()).await);
        assert_nothing_stored(dir.path());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_stalling_mid_body_times_out_and_is_not_stored() {
    const LEN: u64 = 1 << 20;
    const SENT: u64 = 100 * 1024;
    let origin = Origin::start().await;
    origin.route("/stall", Behaviour::StallAfter { len: LEN, sent: SENT, headers: lm_headers() });
    let dir = tmp();
    let proxy =
        ProxyBuilder::new(600, origin.port(), dir.path()).arg("--upstream-idle-timeout").arg("500ms").start();
    let url = proxy.url(origin.port(), "/stall");

    for round in 1..=2 {
        let started = Instant::now();
        let got = fetch(&url).await;
        let took = started.elapsed();
        assert_eq!(got.status, 200, "round {round}: {}", got.describe());
        assert!(!got.complete_looking(), "round {round}: a stalled body looks complete: {}", got.describe());
        assert!(got.body.len() as u64 <= SENT, "{}", got.describe());
        assert!(took < Duration::from_secs(5), "round {round}: the stall was cut only after {took:?}");
        assert_eq!(origin.hits("/stall"), round, "round {round}: nothing stored, so the origin is asked");
        assert!(eventually(Duration::from_secs(5), || tmp_files(dir.path()).is_empty()).await);
        assert_nothing_stored(dir.path());
    }
    assert!(proxy.log().iter().any(|l| l.contains("upstream body stalled")));

    origin.route("/stall", Behaviour::Pattern { len: LEN, headers: lm_headers() });
    let got = fetch(&url).await;
    assert_whole(&got, &pattern(0, LEN), "after recovery");
    assert_eq!(got.header("x-cache"), Some("MISS"));
    assert_eq!(origin.hits("/stall"), 3);
}

// ---------------------------------------------------------------------------------------------
// Corrupt and foreign files.

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_small_entries_are_dropped_and_refetched() {
    let body = Bytes::from(pattern(0, 3000));
    let origin = Origin::start().await;
    origin.route("/rot", Behaviour::Fixed { status: 200, headers: lm_headers(), body: body.clone() });
    let key = format!("http://127.0.0.1:{}/rot", origin.port());
    let dir = tmp();
    let start = || ProxyBuilder::new(600, origin.port(), dir.path()).start();

    let mut proxy = start();
    let url = proxy.url(origin.port(), "/rot");
    let got = fetch(&url).await;
    assert_whole(&got, &body, "first fill");
    assert!(eventually(Duration::from_secs(5), || packed_entry(dir.path(), &key).is_some()).await);
    assert!(entry_files(dir.path()).is_empty(), "a small entry is packed, not a file");
    stop(&mut proxy);

    // A small entry is a record in a pack. Damage inside the entry is caught by its checksums
    // on lookup (dropped, counted, logged); damage to the record header or length ends the
    // pack's scan there, as a torn tail after a crash would (logged with the pack's name); a
    // pack cut right before the record simply no longer holds it. Never served either way.
    const DROPPED: &str = "dropping corrupt cache entry";
    const TORN: &str = "cache pack ends in a torn or damaged record";
    type Corrupt = fn(&PackRecord);
    let kinds: [(&str, Corrupt, Option<&str>); 6] = [
        (
            "one body byte flipped",
            |r| {
                let (offset, len) = record_body_span(r);
                flip_byte(&r.path, offset + len / 2);
            },
            Some(DROPPED),
        ),
        (
            "one head byte flipped",
            |r| {
                let (offset, _) = record_body_span(r);
                flip_byte(&r.path, (r.offset + RECORD_HEADER + offset) / 2);
            },
            Some(DROPPED),
        ),
        ("one record header byte flipped", |r| flip_byte(&r.path, r.offset + 20), Some(TORN)),
        ("truncated to half", |r| set_len(&r.path, r.offset + r.len / 2), Some(TORN)),
        ("cut right before the record", |r| set_len(&r.path, r.offset), None),
        (
            "garbage",
            |r| {
                let mut seed = 0x9e37_79b9_u32;
                let junk: Vec<u8> = (0..r.len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect();
                let f = OpenOptions::new().write(true).open(&r.path).unwrap();
                f.write_all_at(&junk, r.offset).unwrap();
            },
            Some(TORN),
        ),
    ];
    for (n, (kind, corrupt, detected)) in kinds.iter().enumerate() {
        let record = packed_entry(dir.path(), &key).expect("the entry is packed");
        corrupt(&record);
        let hits_before = origin.hits("/rot");
        assert_eq!(hits_before, n + 1);

        let mut proxy = start();
        let url = proxy.url(origin.port(), "/rot");
        let got = fetch(&url).await;
        assert_whole(&got, &body, kind);
        assert_eq!(got.header("x-cache"), Some("MISS"), "{kind}: corrupt entry served");
        assert_eq!(origin.hits("/rot"), hits_before + 1, "{kind}");
        match *detected {
            Some(DROPPED) => assert!(
                wait_log(&proxy, DROPPED, Duration::from_secs(5)).await,
                "{kind}: no corrupt-entry log line"
            ),
            Some(needle) => {
                let name = pack_name(&record);
                assert!(
                    eventually(Duration::from_secs(5), || proxy
                        .log()
                        .iter()
                        .any(|l| l.contains(needle) && l.contains(&name)))
                    .await,
                    "{kind}: no torn-record log line for pack {name}"
                );
            }
            None => {}
        }
        // The refetched response replaced the dropped entry.
        let got = fetch(&url).await;
        assert_whole(&got, &body, kind);
        assert_eq!(got.header("x-cache"), Some("HIT"), "{kind}");
        assert_eq!(origin.hits("/rot"), hits_before + 1, "{kind}");
        assert!(
            eventually(Duration::from_secs(5), || {
                packed_entry(dir.path(), &key)
                    .is_some_and(|r| r.offset != record.offset || r.path != record.path)
            })
            .await,
            "{kind}: the refetched entry was not stored"
        );
        assert!(packed_body(&packed_entry(dir.path(), &key).unwrap()) == body, "{kind}: stored body differs");
        stop(&mut proxy);
    }
    assert!(entry_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn large_entry_corrupt_on_disk_is_cut_mid_stream_then_refetched() {
    const LEN: u64 = 40 << 20;
    let expected = pattern(0, LEN);
    let origin = Origin::start().await;
    origin.route("/big", Behaviour::Pattern { len: LEN, headers: lm_headers() });
    let dir = tmp();
    // A 32 MiB memory tier takes objects of up to 2 MiB: this body is streamed from its file.
    let start =
        || ProxyBuilder::new(600, origin.port(), dir.path()).arg("--memory-size").arg("32MiB").start();

    let mut proxy = start();
    let url = proxy.url(origin.port(), "/big");
    assert_whole(&fetch(&url).await, &expected, "first fill");
    assert!(eventually(Duration::from_secs(10), || entry_files(dir.path()).len() == 1).await);
    stop(&mut proxy);

    let entry = only_entry(dir.path());
    let (offset, len) = body_span(&entry);
    assert_eq!(len, LEN);
    flip_byte(&entry, offset + LEN / 2);

    let proxy = start();
    let url = proxy.url(origin.port(), "/big");
    let got = fetch(&url).await;
    assert_eq!(got.status, 200, "{}", got.describe());
    assert_eq!(got.header("x-cache"), Some("HIT"), "the stored head is valid: {}", got.describe());
    assert!(!got.complete_looking(), "a corrupt body was served as complete: {}", got.describe());
    assert_eq!(origin.hits("/big"), 1);
    assert!(
        eventually(Duration::from_secs(5), || !entry.exists()).await,
        "the corrupt entry was not dropped after the checksum mismatch"
    );

    let got = fetch(&url).await;
    assert_whole(&got, &expected, "after the corrupt entry was dropped");
    assert_eq!(got.header("x-cache"), Some("MISS"));
    assert_eq!(origin.hits("/big"), 2);
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_files_in_the_cache_dir_are_left_alone() {
    let dir = tmp();
    let foreign: [(&str, &str); 6] = [
        ("notes.txt", "operator notes\n"),
        ("ab/not-a-hash", "not ours\n"),
        ("zz/inner.txt", "in a non-hex shard\n"),
        ("cd/0123456789abcdef", "a short hex name\n"),
        ("packs/notes.txt", "not a pack\n"),
        ("packs/00000000000000zz.pack", "not a pack number\n"),
    ];
    for (p, content) in foreign {
        let path = dir.path().join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
    }
    fs::create_dir_all(dir.path().join("zz/empty-subdir")).unwrap();
    let check_foreign = || {
        for (p, content) in foreign {
            assert_eq!(fs::read_to_string(dir.path().join(p)).unwrap(), content, "{p}");
        }
        assert!(dir.path().join("zz/empty-subdir").is_dir());
    };

    let origin = Origin::start().await;
    let lm = last_modified();
    origin.ok("/f", &[("last-modified", &lm)], "served");
    let mut proxy = ProxyBuilder::new(600, origin.port(), dir.path()).start();
    assert!(wait_log(&proxy, "disk cache index loaded", Duration::from_secs(10)).await);
    let url = proxy.url(origin.port(), "/f");
    let got = fetch(&url).await;
    assert_whole(&got, b"served", "miss");
    assert_eq!(got.header("x-cache"), Some("MISS"));
    let got = fetch(&url).await;
    assert_whole(&got, b"served", "hit");
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/f"), 1);
    assert!(eventually(Duration::from_secs(5), || stored_entries(dir.path()) == 1).await);
    check_foreign();
    stop(&mut proxy);

    let proxy = ProxyBuilder::new(600, origin.port(), dir.path()).start();
    assert!(wait_log(&proxy, "disk cache index loaded", Duration::from_secs(10)).await);
    let loaded = proxy.log().into_iter().find(|l| l.contains("disk cache index loaded")).unwrap();
    assert!(loaded.contains("entries=1"), "only our own entry is indexed: {loaded}");
    let url = proxy.url(origin.port(), "/f");
    let got = fetch(&url).await;
    assert_whole(&got, b"served", "hit after restart");
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/f"), 1);
    check_foreign();
    assert!(!proxy.log().iter().any(|l| l.contains("dropping corrupt cache entry")));
}

// ---------------------------------------------------------------------------------------------
// SIGKILL.

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_a_write_then_restart_serves_an_intact_body() {
    const FIRST: u64 = 1 << 20;
    const REST: u64 = 3 << 20;
    let origin = Origin::start().await;
    let gate = Arc::new(Notify::new());
    origin.route(
        "/k",
        Behaviour::Gated {
            first: Bytes::from(pattern(0, FIRST)),
            rest: Bytes::from(pattern(FIRST, REST)),
            gate: gate.clone(),
            headers: lm_headers(),
        },
    );
    let dir = tmp();
    // A 32 MiB memory tier keeps bodies of up to 2 MiB in memory; this one is streamed to a
    // temporary file as it arrives.
    let start =
        || ProxyBuilder::new(600, origin.port(), dir.path()).arg("--memory-size").arg("32MiB").start();
    let mut proxy = start();
    let url = proxy.url(origin.port(), "/k");

    // A client reading the body while the origin holds back the rest.
    let received = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (url, received) = (url.clone(), received.clone());
        async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let resp = client.get(url.parse().unwrap()).await.expect("response head");
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            let mut pos = 0u64;
            loop {
                match tokio::time::timeout(Duration::from_secs(15), body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        let data = frame.into_data().unwrap();
                        assert!(data[..] == pattern(pos, data.len() as u64)[..], "bytes at {pos}");
                        pos += data.len() as u64;
                        received.store(pos, Ordering::SeqCst);
                    }
                    Ok(Some(Err(_))) => return (pos, true),
                    Ok(None) => return (pos, false),
                    Err(_) => panic!("body neither continued nor failed within 15 s"),
                }
            }
        }
    });
    assert!(
        eventually(Duration::from_secs(10), || origin.hits("/k") == 1
            && received.load(Ordering::SeqCst) >= 64 * 1024)
        .await,
        "the client never got the first part"
    );
    assert!(
        eventually(Duration::from_secs(5), || !tmp_files(dir.path()).is_empty()).await,
        "no temporary file while the entry is being written: {:?}",
        listing(dir.path())
    );
    assert!(entry_files(dir.path()).is_empty(), "an entry visible before it is complete");

    kill9(&mut proxy);
    let (got, failed) = reader.await.unwrap();
    assert!(failed || got < FIRST + REST, "a killed transfer looked complete ({got} bytes)");
    assert!(got <= FIRST);
    assert!(!tmp_files(dir.path()).is_empty(), "the killed write left its temporary file");
    assert!(entry_files(dir.path()).is_empty(), "a half-written entry became visible");

    // The origin now answers in full; the restarted proxy must not serve the torn write.
    origin.route("/k", Behaviour::Pattern { len: FIRST + REST, headers: lm_headers() });
    let proxy = start();
    assert!(
        eventually(Duration::from_secs(5), || tmp_files(dir.path()).is_empty()).await,
        "leftovers of the killed write not cleaned: {:?}",
        tmp_files(dir.path())
    );
    let expected = pattern(0, FIRST + REST);
    let got = fetch(&proxy.url(origin.port(), "/k")).await;
    assert_whole(&got, &expected, "after restart");
    assert_eq!(got.header("x-cache"), Some("MISS"));
    assert_eq!(origin.hits("/k"), 2);
    // The client has every byte (Content-Length) before the entry's rename; wait for it.
    assert!(eventually(Duration::from_secs(10), || !entry_files(dir.path()).is_empty()).await);
    let got = fetch(&proxy.url(origin.port(), "/k")).await;
    assert_whole(&got, &expected, "hit after restart");
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/k"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_under_load_then_restart_serves_only_whole_bodies() {
    const PATHS: usize = 20;
    const CLIENTS: usize = 4;
    // Mostly small bodies (kept in memory, written to disk when complete) and every fifth one
    // above the 2 MiB memory-tier object limit (streamed to a temporary file as it arrives).
    let len_of =
        |i: usize| if i % 5 == 4 { (2 << 20) + i as u64 * 10_000 } else { 5_000 + i as u64 * 40_000 };
    let path_of = |i: usize| format!("/load/{i}");
    let origin = Origin::start().await;
    for i in 0..PATHS {
        origin.route(&path_of(i), Behaviour::Pattern { len: len_of(i), headers: lm_headers() });
    }
    let dir = tmp();
    let start =
        || ProxyBuilder::new(600, origin.port(), dir.path()).arg("--memory-size").arg("32MiB").start();
    let mut proxy = start();
    let urls: Arc<Vec<String>> =
        Arc::new((0..PATHS).map(|i| proxy.url(origin.port(), &path_of(i))).collect());

    let stop_flag = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (urls, stop_flag) = (urls.clone(), stop_flag.clone());
            tokio::spawn(async move {
                let (mut whole, mut cut) = (0usize, 0usize);
                let mut i = c * PATHS / CLIENTS;
                while !stop_flag.load(Ordering::SeqCst) {
                    match try_fetch(&urls[i]).await {
                        Ok(got) if got.complete_looking() => {
                            assert_whole(&got, &pattern(0, len_of(i)), &urls[i]);
                            whole += 1;
                        }
                        _ => cut += 1,
                    }
                    i = (i + 1) % PATHS;
                }
                (whole, cut)
            })
        })
        .collect();
    let total_hits = || (0..PATHS).map(|i| origin.hits(&path_of(i))).sum::<usize>();
    assert!(
        eventually(Duration::from_secs(15), || total_hits() >= PATHS / 2).await,
        "load did not get going"
    );
    kill9(&mut proxy);
    stop_flag.store(true, Ordering::SeqCst);
    let mut whole = 0;
    for l in loops {
        whole += l.await.unwrap().0;
    }
    assert!(whole > 0, "no response completed before the kill");
    // A pack write is one write call, which SIGKILL does not cut; a power loss could. Leave a
    // torn record at the tail of the newest pack, as one would: it must be ignored.
    if let Some(last) = pack_records(dir.path()).last() {
        let f = fs::File::open(&last.path).unwrap();
        let mut record = vec![0u8; last.len as usize];
        f.read_exact_at(&mut record, last.offset).unwrap();
        let end = fs::metadata(&last.path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&last.path).unwrap();
        f.write_all_at(&record[..record.len() / 2], end).unwrap();
    }

    let proxy = start();
    assert!(eventually(Duration::from_secs(5), || tmp_files(dir.path()).is_empty()).await);
    let mut hits_from_disk = 0;
    for i in 0..PATHS {
        let before = origin.hits(&path_of(i));
        let got = fetch(&proxy.url(origin.port(), &path_of(i))).await;
        assert_whole(&got, &pattern(0, len_of(i)), &path_of(i));
        match got.header("x-cache") {
            Some("HIT") => {
                hits_from_disk += 1;
                assert_eq!(origin.hits(&path_of(i)), before, "{}", path_of(i));
            }
            _ => assert_eq!(origin.hits(&path_of(i)), before + 1, "{}", path_of(i)),
        }
    }
    assert!(hits_from_disk > 0, "nothing stored before the kill survived it");
}

/// The crash soak (`bench/crash-soak.sh` runs it long; CI runs it for a few short cycles):
/// SIGKILL at a random moment under mixed load, again and again, on one cache directory with
/// tiny tiers so eviction and reclaim never rest. Every complete-looking answer must be the
/// origin's exact bytes. Objects of 200 B to 1.5 MB (packed and in their own files), a third
/// revalidated every second (304s), every eleventh answered after a pause, every seventh sent
/// chunked (no Content-Length) in 16 KiB pieces 2 ms apart, so that kills land mid-body.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_kills_under_mixed_load_never_serve_a_wrong_byte() {
    const OBJECTS: usize = 400;
    const CLIENTS: usize = 16;
    const SIZES: [u64; 11] = [200, 1500, 9000, 40000, 70000, 100000, 130000, 200000, 300000, 700000, 1500000];
    let cycles = env_or("CRASH_SOAK_CYCLES", 2.0) as usize;
    let secs = env_or("CRASH_SOAK_SECS", 1.5);
    // Distinct lengths, so that one object's bytes served for another cannot pass.
    let len_of = |i: usize| SIZES[i % SIZES.len()] + i as u64;
    let path_of = |i: usize| format!("/soak/{i}");
    let chunked = |i: usize| i % 7 == 2;
    let origin = Origin::start().await;
    for i in 0..OBJECTS {
        let body = |headers| match chunked(i) {
            true => Behaviour::Trickle {
                len: len_of(i),
                piece: 16 * 1024,
                pause: Duration::from_millis(2),
                headers,
            },
            false => Behaviour::Pattern { len: len_of(i), headers },
        };
        let behaviour = if i % 3 == 0 {
            let etag = format!("\"v{i}\"");
            let headers = owned(&[("etag", &etag), ("cache-control", "max-age=1")]);
            Behaviour::Conditional { etag, then: Box::new(body(headers)) }
        } else {
            body(lm_headers())
        };
        let behaviour = if i % 11 == 0 {
            Behaviour::Delay { delay: Duration::from_millis(50), then: Box::new(behaviour) }
        } else {
            behaviour
        };
        origin.route(&path_of(i), behaviour);
    }
    let dir = tmp();
    let start = || {
        ProxyBuilder::new(600, origin.port(), dir.path())
            .arg("--cache-size")
            .arg("24MiB")
            .arg("--memory-size")
            .arg("4MiB")
            .arg("--max-object-size")
            .arg("4MiB")
            .start()
    };
    let (mut whole, mut hits, mut cut) = (0usize, 0usize, 0usize);
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut proxy = start();
    for cycle in 0..cycles {
        let stop_flag = Arc::new(AtomicBool::new(false));
        let loops: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (stop_flag, base) = (stop_flag.clone(), proxy.url(origin.port(), "/soak/"));
                let mut x = seed ^ ((c as u64 + 1) << 32) | 1;
                tokio::spawn(async move {
                    let (mut whole, mut hits, mut cut) = (0usize, 0usize, 0usize);
                    while !stop_flag.load(Ordering::SeqCst) {
                        // xorshift, skewed to low numbers so that objects are asked for again
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let i = ((x % 1000) * (x % 1000) / 1000 * OBJECTS as u64 / 1000) as usize;
                        let url = format!("{base}{i}");
                        match try_fetch(&url).await {
                            Ok(got) if got.complete_looking() && got.status == 200 => {
                                assert_whole(&got, &pattern(0, len_of(i)), &url);
                                whole += 1;
                                hits += usize::from(got.header("x-cache") == Some("HIT"));
                            }
                            Ok(got) if got.complete_looking() => {
                                assert!(got.status.is_server_error(), "{url}: {}", got.describe());
                                cut += 1;
                            }
                            _ => cut += 1,
                        }
                    }
                    (whole, hits, cut)
                })
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = secs / 2.0 + (seed % 1000) as f64 / 1000.0 * secs / 2.0;
        tokio::time::sleep(Duration::from_secs_f64(run_for)).await;
        // New requests stop first, so that clients do not spin on refused connections while
        // the kill is waited for; the ones in flight are cut by it.
        stop_flag.store(true, Ordering::SeqCst);
        kill9(&mut proxy);
        for l in loops {
            let (w, h, c) = l.await.unwrap();
            (whole, hits, cut) = (whole + w, hits + h, cut + c);
        }
        proxy = start();
        eprintln!("crash soak: cycle {}/{cycles}: {whole} whole ({hits} hits), {cut} cut or 5xx", cycle + 1);
    }
    for i in 0..OBJECTS {
        let url = proxy.url(origin.port(), &path_of(i));
        assert_whole(&fetch(&url).await, &pattern(0, len_of(i)), &url);
    }
    // Bodies sent chunked are stored like the others: packed (9 and 100 KB) and in their own
    // file (700 KB).
    for i in [2, 16, 86] {
        assert!(chunked(i) && i % 3 != 0, "{i}: not a chunked object with a plain freshness");
        let url = proxy.url(origin.port(), &path_of(i));
        let _ = fetch(&url).await;
        let fetched = origin.hits(&path_of(i));
        until_hit(&url, &pattern(0, len_of(i)), Duration::from_secs(5)).await;
        assert_eq!(origin.hits(&path_of(i)), fetched, "{url}: the origin was asked again");
    }
    stop(&mut proxy);
    assert!(whole > 0, "no response completed");
}

// ---------------------------------------------------------------------------------------------
// A cache directory that stops accepting writes.

#[tokio::test(flavor = "multi_thread")]
async fn failing_cache_writes_degrade_to_pass_through_and_recover() {
    const BIG: u64 = 3 << 20; // above the 2 MiB memory-tier object limit of a 32 MiB tier
    let origin = Origin::start().await;
    let lm = last_modified();
    for p in ["/w1", "/w2", "/w3"] {
        origin.ok(p, &[("last-modified", &lm)], &format!("body of {p}"));
    }
    for p in ["/w-big", "/after"] {
        origin.route(p, Behaviour::Pattern { len: BIG, headers: lm_headers() });
    }
    let dir = tmp();
    let proxy = ProxyBuilder::new(600, origin.port(), dir.path()).arg("--memory-size").arg("32MiB").start();

    // Tests run as root, so permissions would not stop the writes: make tmp/ (where large
    // entries are written) and packs/ (where small ones are) regular files.
    let tmp_dir = dir.path().join("tmp");
    let packs_dir = dir.path().join("packs");
    for d in [&tmp_dir, &packs_dir] {
        fs::remove_dir_all(d).unwrap();
        fs::write(d, "not a directory").unwrap();
    }

    for p in ["/w1", "/w2", "/w3"] {
        let got = fetch(&proxy.url(origin.port(), p)).await;
        assert_whole(&got, format!("body of {p}").as_bytes(), p);
        assert_eq!(got.header("x-cache"), Some("MISS"), "{p}");
        assert_eq!(origin.hits(p), 1, "{p}");
    }
    for round in 1..=2 {
        let got = fetch(&proxy.url(origin.port(), "/w-big")).await;
        assert_whole(&got, &pattern(0, BIG), "big body while writes fail");
        assert_eq!(got.header("x-cache"), Some("MISS"));
        assert_eq!(origin.hits("/w-big"), round, "a big body cannot be kept without the disk");
    }
    assert!(wait_log(&proxy, "cache writes failing", Duration::from_secs(5)).await);
    assert_eq!(count_log(&proxy, "cache writes failing"), 1, "logged once, not per request");
    assert!(entry_files(dir.path()).is_empty());
    assert_eq!(stored_entries(dir.path()), 0, "small entries were packed though packs/ is unusable");

    for d in [&tmp_dir, &packs_dir] {
        fs::remove_file(d).unwrap();
        fs::create_dir(d).unwrap();
    }
    let url = proxy.url(origin.port(), "/after");
    let got = fetch(&url).await;
    assert_whole(&got, &pattern(0, BIG), "first write after recovery");
    assert_eq!(got.header("x-cache"), Some("MISS"));
    assert!(wait_log(&proxy, "cache writes succeed again", Duration::from_secs(5)).await);
    assert!(eventually(Duration::from_secs(5), || !entry_files(dir.path()).is_empty()).await);
    // Too big for the memory tier: this hit comes from the disk.
    let got = fetch(&url).await;
    assert_whole(&got, &pattern(0, BIG), "stored after recovery");
    assert_eq!(got.header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits("/after"), 1);
    assert_eq!(count_log(&proxy, "cache writes failing"), 1);
}
