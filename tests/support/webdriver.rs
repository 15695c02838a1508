//! A tiny WebDriver client (W3C protocol over HTTP/JSON) for driving Debian's chromedriver
//! and headless Chromium from tests: start, open a URL, run a script, read the browser log,
//! take a screenshot.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// chromedriver's path, if installed.
pub fn chromedriver() -> Option<String> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string)
}

/// Whether this run is CI's (CI=1 or CI=true): there a missing browser is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A chromedriver process and one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

async fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| e.to_string())?;
    let fut = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&bytes)))?;
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(format!("{status}: {v}"))
        }
    };
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .map_err(|_| "WebDriver call timed out".to_string())?
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with a fresh
    /// profile and every flag that keeps it off the network.
    pub async fn start(driver_path: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(v) = call("GET", &format!("{base}/status"), None).await {
                if v["ready"] == true {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut options = json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let mut browser = Browser { driver, base, session: String::new(), _profile: profile };
        let created =
            call("POST", &format!("{}/session", browser.base), Some(caps)).await.expect("new session");
        browser.session = created["sessionId"].as_str().expect("sessionId").to_string();
        browser
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/session/{}{rest}", self.base, self.session)
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) {
        call("POST", &self.url("/url"), Some(json!({ "url": url }))).await.expect("navigate");
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub async fn run(&self, script: &str) -> Value {
        call("POST", &self.url("/execute/sync"), Some(json!({ "script": script, "args": [] })))
            .await
            .expect("script")
    }

    /// The text of the element with id `id` ("" if none).
    pub async fn text(&self, id: &str) -> String {
        let script = format!("const e = document.getElementById({id:?}); return e ? e.textContent : '';");
        self.run(&script).await.as_str().unwrap_or_default().to_string()
    }

    /// Browser console entries since the last call (chromedriver's log endpoint).
    pub async fn console(&self) -> Vec<Value> {
        let v = call("POST", &self.url("/se/log"), Some(json!({ "type": "browser" })))
            .await
            .expect("browser log");
        v.as_array().cloned().unwrap_or_default()
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = call("GET", &self.url("/screenshot"), None).await.expect("screenshot");
        base64_decode(v.as_str().expect("base64 screenshot"))
    }

    /// Polls `id`'s text until `ok` accepts it (bounded); returns the last text.
    pub async fn wait_text(&self, id: &str, within: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let t = self.text(id).await;
            if ok(&t) || std::time::Instant::now() >= deadline {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (closing Chromium) from a thread with its own runtime, since drop
        // may run inside the test's runtime.
        let url = self.url("");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _ = rt.block_on(call("DELETE", &url, None));
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(value) {
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
