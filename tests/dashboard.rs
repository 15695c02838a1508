//! The live dashboard in a real headless Chromium driven over WebDriver: it loads with no
//! console errors and its figures change, without a reload, after traffic goes through the
//! proxy. Saves a screenshot to target/ci-artifacts/dashboard.png.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them). Without
//! them the test fails under CI (CI=1) and is skipped with a message elsewhere.

mod support;

use std::time::Duration;

use support::webdriver::{chromedriver, in_ci, Browser};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_updates_live_without_console_errors() {
    let Some(driver) = chromedriver() else {
        assert!(!in_ci(), "chromedriver is not installed (apt-get install chromium chromium-driver)");
        eprintln!("skipped: chromedriver is not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let origin = Origin::start().await;
    origin.ok("/page", &[("cache-control", "max-age=600")], "a cached page");
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyBuilder::new(300, origin.port(), dir.path()).arg("--admin-port").arg("0").start();
    let admin = proxy.admin_port();

    let browser = Browser::start(&driver).await;
    browser.open(&format!("http://127.0.0.1:{admin}/")).await;
    let status = browser.wait_text("status", WAIT, |t| t.starts_with("updated")).await;
    assert!(status.starts_with("updated"), "the page never loaded its stats: {status:?}");
    assert_eq!(browser.text("requests").await, "0");
    assert_eq!(browser.text("hit-ratio").await, "-");

    for _ in 0..3 {
        assert_eq!(get(&proxy.url(origin.port(), "/page"), &[]).await.status.as_u16(), 200);
    }
    let requests = browser.wait_text("requests", WAIT, |t| t == "3").await;
    assert_eq!(requests, "3", "the request count did not update live");
    assert_eq!(browser.wait_text("hit-ratio", WAIT, |t| t == "66.7 %").await, "66.7 %");
    assert_ne!(browser.text("bytes-saved").await, "0 B");
    let recent = browser.run("return document.querySelectorAll('#recent tbody tr').length").await;
    assert_eq!(recent, 3);
    let fill = browser.run("return document.querySelector('#tiers tbody').textContent").await;
    assert!(fill.as_str().unwrap_or_default().contains("memory1 objects"), "{fill}");
    let top = browser.run("return document.querySelector('#top tbody').textContent").await;
    assert!(top.as_str().unwrap_or_default().contains("/page3"), "{top}");
    let rps = browser.text("rps").await;
    assert!(rps.parse::<f64>().is_ok(), "requests/s shows a number: {rps:?}");

    let png = browser.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("dashboard.png"), &png).unwrap();

    let errors: Vec<_> = browser.console().await.into_iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // The log does catch errors: a probe logged now must show up.
    browser.run("console.error('probe'); return null").await;
    let probe = browser.console().await;
    assert!(
        probe
            .iter()
            .any(|e| e["level"] == "SEVERE" && e["message"].as_str().is_some_and(|m| m.contains("probe"))),
        "{probe:?}"
    );
    assert_eq!(origin.hits("/page"), 1);
}
