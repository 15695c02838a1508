//! The demo end to end: `httpcache-proxy demo` serves the 272-image page through the proxy;
//! a first load misses on every image and a reload hits on every one.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::get;

/// The `src` of every `<img>` in a page.
fn image_sources(html: &str) -> Vec<String> {
    html.split("<img")
        .skip(1)
        .filter_map(|tag| tag.split("src=\"").nth(1)?.split('"').next())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_page_misses_then_hits_on_every_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_httpcache-proxy"))
        .args(["demo", "--port", "0", "--cache-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split("open ").nth(1).and_then(|r| r.split_whitespace().next()) {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let page = rx.recv_timeout(Duration::from_secs(30)).expect("demo prints its URL");
    // The URL is printed just before the listener starts serving; connecting waits on the
    // kernel's accept queue, so no readiness race.
    let index = get(&page, &[]).await;
    assert_eq!(index.status, 200);
    let sources = image_sources(&String::from_utf8_lossy(&index.body));
    assert_eq!(sources.len(), 272);
    assert!(sources.iter().any(|s| s.ends_with(".jpg")) && sources.iter().any(|s| s.ends_with(".gif")));

    for (round, expect) in [(1, "MISS"), (2, "HIT")] {
        // Six at a time, as a browser does per host.
        for batch in sources.chunks(6) {
            let fetches: Vec<_> = batch
                .iter()
                .map(|src| {
                    let url = format!("{page}{src}");
                    tokio::spawn(async move { (get(&url, &[]).await, url) })
                })
                .collect();
            for f in fetches {
                let (got, url) = f.await.unwrap();
                assert_eq!(got.status, 200, "{url}");
                assert_eq!(got.header("x-cache"), Some(expect), "round {round}: {url}");
                let ct = got.header("content-type").unwrap_or("");
                assert!(ct == "image/jpeg" || ct == "image/gif", "{url}: {ct}");
                assert!(got.body.len() > 500, "{url}: a real image");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn write_site_writes_the_page_and_272_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_httpcache-proxy"))
        .args(["demo", "--write-site"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    let sources = image_sources(&html);
    assert_eq!(sources.len(), 272);
    for src in sources {
        let bytes = std::fs::read(dir.path().join(&src)).unwrap();
        assert!(bytes.starts_with(&[0xFF, 0xD8]) || bytes.starts_with(b"GIF89a"), "{src}");
    }
}
