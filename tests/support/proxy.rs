//! Starts the real `httpcache-proxy` binary on 127.0.0.1 with an ephemeral port and waits for
//! its "listening" log line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// A running proxy process; killed on drop.
pub struct ProxyProcess {
    pub port: u16,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    pub cache_dir: PathBuf,
}

/// Builds the proxy's command line.
pub struct ProxyBuilder {
    args: Vec<String>,
    cache_dir: PathBuf,
}

impl ProxyBuilder {
    /// `httpcache-proxy <stale_time> --port 0 --upstream-port <origin> --cache-dir <dir>`.
    pub fn new(stale_time: u64, upstream_port: u16, cache_dir: &Path) -> Self {
        let args = vec![
            stale_time.to_string(),
            "--port".into(),
            "0".into(),
            "--upstream-port".into(),
            upstream_port.to_string(),
            "--cache-dir".into(),
            cache_dir.display().to_string(),
        ];
        Self { args, cache_dir: cache_dir.to_path_buf() }
    }

    /// Exactly `args`: nothing added (the caller names the port, e.g. in a config file).
    pub fn bare(args: &[&str], cache_dir: &Path) -> Self {
        Self { args: args.iter().map(|a| a.to_string()).collect(), cache_dir: cache_dir.to_path_buf() }
    }

    /// Adds flags.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Starts it and waits until it listens.
    pub fn start(mut self) -> ProxyProcess {
        // HTTPCACHE_TEST_WORKERS=N gives every proxy `--workers N` unless the test names its
        // own: the test script runs suites again that way on the current-thread scheduler.
        if let Ok(n) = std::env::var("HTTPCACHE_TEST_WORKERS") {
            if !self.args.iter().any(|a| a == "--workers") {
                self.args.extend(["--workers".to_string(), n]);
            }
        }
        // -v asks for the proxy's debug lines (RUST_LOG would override the flag).
        let verbose = self.args.iter().any(|a| a == "-v");
        let level = if verbose { "debug,hyper=info,hyper_util=info" } else { "info" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_httpcache-proxy"))
            .args(&self.args)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start httpcache-proxy");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // "listening on http(s)://127.0.0.1:PORT/" in text and JSON logs alike.
                let port = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|r| r.split("://").nth(1))
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|authority| authority.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok());
                // The line is in the log before the port is announced, so a test that reads
                // the start line right after `start` finds it.
                sink.lock().push(line);
                if let Some(port) = port {
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("proxy did not start: {:?}", log.lock());
            }
        };
        ProxyProcess { port, child, log, cache_dir: self.cache_dir }
    }
}

impl ProxyProcess {
    /// `http://127.0.0.1:<port>/127.0.0.1:<origin>` + `path`.
    pub fn url(&self, origin_port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}/127.0.0.1:{origin_port}{path}", self.port)
    }

    /// The admin listener's port, from its "admin listener on http://ADDR/" log line.
    pub fn admin_port(&self) -> u16 {
        assert!(
            self.wait_log("admin listener on http://", Duration::from_secs(10)),
            "no admin listener: {:?}",
            self.log()
        );
        let log = self.log();
        let line = log.iter().find(|l| l.contains("admin listener on http://")).unwrap();
        let rest = line.split("admin listener on http://").nth(1).unwrap();
        rest.split('/')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("admin port")
    }

    /// Log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().clone()
    }

    /// Waits (bounded) until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.log.lock().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (TERM, KILL, ...).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status();
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident memory in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
