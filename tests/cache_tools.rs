//! `httpcache-proxy cache stats|ls|verify|purge|warm` on a real cache directory filled by the
//! real proxy, stopped and running.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::cache_dir::{entry_files, pack_files, packed_entry, record_body_span};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

fn cache_tool(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_httpcache-proxy"))
        .arg("cache")
        .args(args)
        .arg("--cache-dir")
        .arg(dir)
        .output()
        .expect("run cache tool")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_ls_verify_fix_and_purge_a_stopped_proxys_cache() {
    let origin = Origin::start().await;
    for p in ["/img/1", "/img/2", "/page"] {
        origin.ok(p, &[("cache-control", "max-age=600")], "some stored body");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = ProxyBuilder::new(300, origin.port(), dir.path()).start();
    for p in ["/img/1", "/img/2", "/page"] {
        assert_eq!(get(&proxy.url(origin.port(), p), &[]).await.header("x-cache"), Some("MISS"));
    }
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit(WAIT), Some(0));
    let base = format!("http://127.0.0.1:{}", origin.port());

    let stats = cache_tool(dir.path(), &["stats"]);
    assert!(stats.status.success());
    assert!(
        stdout(&stats).contains("entries: 3 (3 responses, 0 vary markers, 0 unreadable)"),
        "{}",
        stdout(&stats)
    );
    assert!(stdout(&stats).contains("by status: 200: 3"));

    let ls = stdout(&cache_tool(dir.path(), &["ls"]));
    for p in ["/img/1", "/img/2", "/page"] {
        assert!(ls.contains(&format!("{base}{p}")), "{ls}");
    }
    let img = stdout(&cache_tool(dir.path(), &["ls", "--prefix", &format!("{base}/img/")]));
    assert_eq!(img.lines().count(), 3, "header and two entries: {img}");
    assert!(!img.contains("/page"));

    // Small bodies are packed: each is a record in a pack, none is a file.
    assert!(entry_files(dir.path()).is_empty());
    let packs_before = pack_files(dir.path());
    // Rot one body byte: verify finds it, --fix removes it.
    let img2 = format!("{base}/img/2");
    let victim = packed_entry(dir.path(), &img2).expect("packed entry");
    let (offset, len) = record_body_span(&victim);
    let mut bytes = std::fs::read(&victim.path).unwrap();
    bytes[(offset + len - 1) as usize] ^= 0x20;
    std::fs::write(&victim.path, &bytes).unwrap();
    let check = cache_tool(dir.path(), &["verify"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(stdout(&check).contains("checksum mismatch in body"), "{}", stdout(&check));
    assert!(stdout(&check).contains("3 entries: 2 ok, 1 broken"));
    let progress = String::from_utf8_lossy(&check.stderr);
    assert!(progress.contains("verifying: 3/3"), "plain progress lines off a terminal: {progress}");
    assert!(packed_entry(dir.path(), &img2).is_some(), "verify without --fix removes nothing");
    assert_eq!(pack_files(dir.path()), packs_before, "verify without --fix writes nothing");
    let fix = cache_tool(dir.path(), &["verify", "--fix"]);
    assert!(fix.status.success());
    assert!(stdout(&fix).contains("removed"));
    assert!(packed_entry(dir.path(), &img2).is_none(), "a tombstone removes the broken entry");
    // The tombstone is in a new pack: the packs that were there are unchanged.
    assert_eq!(pack_files(dir.path()).len(), packs_before.len() + 1);
    assert_eq!(std::fs::read(&victim.path).unwrap(), bytes);
    assert!(stdout(&cache_tool(dir.path(), &["verify"])).contains("2 entries: 2 ok, 0 broken"));

    let purge = cache_tool(dir.path(), &["purge", &format!("{base}/page")]);
    assert!(purge.status.success());
    assert!(stdout(&purge).contains("purged 1 entries"));
    assert!(packed_entry(dir.path(), &format!("{base}/page")).is_none());
    let again = cache_tool(dir.path(), &["purge", &format!("{base}/page")]);
    assert_eq!(again.status.code(), Some(1), "nothing left to purge");

    // A restarted proxy serves what is left and fetches what was removed.
    let _proxy = ProxyBuilder::new(300, origin.port(), dir.path()).start();
    let hit = get(&_proxy.url(origin.port(), "/img/1"), &[]).await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let refetched = get(&_proxy.url(origin.port(), "/page"), &[]).await;
    assert_eq!(refetched.header("x-cache"), Some("MISS"));
    let rotten = get(&_proxy.url(origin.port(), "/img/2"), &[]).await;
    assert_eq!(rotten.header("x-cache"), Some("MISS"));
    assert_eq!((origin.hits("/img/1"), origin.hits("/page"), origin.hits("/img/2")), (1, 2, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_through_a_running_proxy_then_purge_beside_it() {
    let origin = Origin::start().await;
    for p in ["/a", "/b"] {
        origin.ok(p, &[("cache-control", "max-age=600")], "warm me");
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).start();
    let base = format!("http://127.0.0.1:{}", origin.port());
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, format!("# to warm\n{base}/a\n\n{base}/b\n")).unwrap();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let warm = cache_tool(dir.path(), &["warm", list.to_str().unwrap(), "--proxy", &proxy_url]);
    assert!(warm.status.success(), "{}", stdout(&warm));
    assert!(stdout(&warm).contains(&format!("200 MISS {base}/a")), "{}", stdout(&warm));
    assert!(stdout(&warm).contains("warmed 2 URLs, 0 failed"));
    assert_eq!((origin.hits("/a"), origin.hits("/b")), (1, 1));
    let got = get(&proxy.url(origin.port(), "/b"), &[]).await;
    assert_eq!(got.header("x-cache"), Some("HIT"));

    // The entry reaches the disk through the proxy's writer thread.
    let key = format!("{base}/a");
    let both = || ["/a", "/b"].iter().all(|p| packed_entry(dir.path(), &format!("{base}{p}")).is_some());
    assert!(eventually(WAIT, both).await);
    let proxy_pack = packed_entry(dir.path(), &key).unwrap().path;
    let proxy_pack_bytes = std::fs::read(&proxy_pack).unwrap();
    let purge = cache_tool(dir.path(), &["purge", "--prefix", &format!("{base}/")]);
    assert!(stdout(&purge).contains("purged 2 entries"), "{}", stdout(&purge));
    assert!(packed_entry(dir.path(), &key).is_none());
    assert!(stdout(&cache_tool(dir.path(), &["ls"])).lines().count() == 1, "only the header line");
    // The tombstones went to a pack of their own: the one the proxy writes is untouched.
    assert_eq!(std::fs::read(&proxy_pack).unwrap(), proxy_pack_bytes);
    assert_eq!(pack_files(dir.path()).len(), 2);
    // The running proxy is unharmed (it may still hold the bodies in memory, as documented).
    assert_eq!(get(&proxy.url(origin.port(), "/a"), &[]).await.status.as_u16(), 200);

    std::fs::write(&list, "http://127.0.0.1:1/unreachable\nnot a url\n").unwrap();
    let failed = cache_tool(dir.path(), &["warm", list.to_str().unwrap(), "--proxy", &proxy_url]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stdout(&failed).contains("2 failed"), "{}", stdout(&failed));
}

#[test]
fn bad_cache_tool_input_is_named() {
    let missing = cache_tool(Path::new("/nonexistent/cache"), &["stats"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--cache-dir"));
    let dir = tempfile::tempdir().unwrap();
    let no_url = cache_tool(dir.path(), &["purge"]);
    assert!(!no_url.status.success());
    let bad = cache_tool(dir.path(), &["purge", "ftp://x/"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an absolute http(s) URL"));
}
