//! The access log (`--access-log FILE`): one Combined Log Format line per request, written by
//! a thread of its own so a slow disk never delays a response. Requests hand their line to a
//! bounded channel; when it is full the line is dropped and counted. `reopen` (on SIGHUP)
//! makes the writer open the path again, so logrotate can move the file away.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, Method, StatusCode, Uri, Version};

/// Lines that may wait for the writer before new ones are dropped.
const QUEUE: usize = 8192;

/// A handle on the access log; clones share the writer.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Option<String>>,
    shared: Arc<Shared>,
}

struct Shared {
    dropped: AtomicU64,
    reopen: AtomicBool,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("dropped", &self.dropped()).finish()
    }
}

/// A request's part of its access log line, kept while the response is made.
pub struct Pending {
    client: Option<IpAddr>,
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// What one access log line says about a request.
pub struct Entry<'a> {
    /// The client's address (`-` when unknown).
    pub client: Option<IpAddr>,
    /// Request method.
    pub method: &'a Method,
    /// Request target as received.
    pub uri: &'a Uri,
    /// Request HTTP version.
    pub version: Version,
    /// Request fields (Referer and User-Agent are logged).
    pub headers: &'a HeaderMap,
    /// Response status.
    pub status: StatusCode,
    /// Response body size when known (`-` otherwise).
    pub bytes: Option<u64>,
}

impl AccessLog {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let shared = Arc::new(Shared { dropped: AtomicU64::new(0), reopen: AtomicBool::new(false) });
        let writer = Writer { path: path.to_path_buf(), out: BufWriter::new(file), shared: shared.clone() };
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer.run(rx))?;
        Ok(AccessLog { tx, shared })
    }

    /// Queues the line for `entry` at `now`; drops it (counted) when the queue is full.
    pub fn record(&self, entry: &Entry<'_>, now: SystemTime) {
        let line = format_line(entry, now);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(Some(line)) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps what the line needs from a request from `client`, before the request is consumed.
    pub fn begin<B>(&self, req: &http::Request<B>, client: Option<IpAddr>) -> Pending {
        let mut headers = HeaderMap::new();
        for name in [http::header::REFERER, http::header::USER_AGENT] {
            if let Some(v) = req.headers().get(&name) {
                headers.insert(name, v.clone());
            }
        }
        Pending {
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers,
        }
    }

    /// Logs a request begun with [`AccessLog::begin`] now that its response is known.
    pub fn finish(&self, p: Pending, status: StatusCode, bytes: Option<u64>) {
        let entry = Entry {
            client: p.client,
            method: &p.method,
            uri: &p.uri,
            version: p.version,
            headers: &p.headers,
            status,
            bytes,
        };
        self.record(&entry, SystemTime::now());
    }

    /// Asks the writer to reopen the file (after logrotate moved it).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
        // A wake-up; when the queue is full the writer sees the flag after its batch anyway.
        let _ = self.tx.try_send(None);
    }

    /// Lines dropped so far because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Option<String>>) {
        // Ends when every handle is gone; each batch is flushed once the queue is empty.
        while let Ok(first) = rx.recv() {
            self.write(first);
            while let Ok(next) = rx.try_recv() {
                self.write(next);
            }
            if let Err(e) = self.out.flush() {
                tracing::warn!(path = %self.path.display(), error = %e, "access log: write failed");
            }
        }
        let _ = self.out.flush();
    }

    /// Writes a line; first reopens the file if asked, so every line queued after `reopen`
    /// returned goes to the new file.
    fn write(&mut self, line: Option<String>) {
        if self.shared.reopen.load(Ordering::Acquire) && self.shared.reopen.swap(false, Ordering::AcqRel) {
            let _ = self.out.flush();
            match open(&self.path) {
                Ok(file) => self.out = BufWriter::new(file),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "access log: cannot reopen")
                }
            }
            tracing::info!(
                path = %self.path.display(),
                dropped = self.shared.dropped.load(Ordering::Relaxed),
                "access log reopened"
            );
        }
        if let Some(line) = line {
            let _ = self.out.write_all(line.as_bytes());
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `host - - [day/Mon/year:HH:MM:SS +0000] "METHOD target VERSION" status bytes "referer" "agent"`.
pub fn format_line(e: &Entry<'_>, now: SystemTime) -> String {
    let client = e.client.map_or_else(|| "-".to_string(), |a| a.to_string());
    let bytes = e.bytes.map_or_else(|| "-".to_string(), |b| b.to_string());
    let field = |name: http::header::HeaderName| {
        e.headers.get(name).map_or_else(|| "-".to_string(), |v| escape(v.as_bytes()))
    };
    format!(
        "{client} - - [{}] \"{} {} {:?}\" {} {bytes} \"{}\" \"{}\"\n",
        clf_time(now),
        e.method,
        escape(e.uri.to_string().as_bytes()),
        e.version,
        e.status.as_u16(),
        field(http::header::REFERER),
        field(http::header::USER_AGENT),
    )
}

/// Escapes `"`, `\` and bytes outside printable ASCII as Apache does (`\"`, `\\`, `\xNN`).
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The CLF timestamp in UTC, rearranged from the IMF-fixdate `httpdate` writes
/// (`Tue, 15 Nov 1994 08:12:31 GMT` -> `15/Nov/1994:08:12:31 +0000`).
fn clf_time(now: SystemTime) -> String {
    let imf = httpdate::fmt_http_date(now);
    let parts: Vec<&str> = imf.split_whitespace().collect();
    match parts.as_slice() {
        [_, day, month, year, time, _] => format!("{day}/{month}/{year}:{time} +0000"),
        _ => imf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_log_format() {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "curl/8 \"x\"".parse().unwrap());
        let uri: Uri = "/127.0.0.1:8000/a.deb?x=1".parse().unwrap();
        let entry = Entry {
            client: Some("10.0.0.1".parse().unwrap()),
            method: &Method::GET,
            uri: &uri,
            version: Version::HTTP_11,
            headers: &headers,
            status: StatusCode::OK,
            bytes: Some(1234),
        };
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784_887_151);
        assert_eq!(
            format_line(&entry, t),
            "10.0.0.1 - - [15/Nov/1994:08:12:31 +0000] \"GET /127.0.0.1:8000/a.deb?x=1 HTTP/1.1\" 200 1234 \
             \"-\" \"curl/8 \\\"x\\\"\"\n"
        );
    }

    #[test]
    fn writes_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&path).unwrap();
        let (uri, headers) = ("/x".parse::<Uri>().unwrap(), HeaderMap::new());
        let entry = Entry {
            client: None,
            method: &Method::HEAD,
            uri: &uri,
            version: Version::HTTP_10,
            headers: &headers,
            status: StatusCode::NOT_FOUND,
            bytes: None,
        };
        log.record(&entry, SystemTime::now());
        let wait = |p: &Path| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if std::fs::read_to_string(p).is_ok_and(|s| s.contains("\"HEAD /x HTTP/1.0\" 404 -")) {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            false
        };
        assert!(wait(&path));
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.record(&entry, SystemTime::now());
        assert!(wait(&path), "a new file at the old path after reopen");
        assert_eq!(log.dropped(), 0);
    }
}
