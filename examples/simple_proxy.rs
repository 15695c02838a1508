//! A minimal, blocking, no-cache reference proxy, using only the standard library.
//!
//! This is a Rust port of the original project's reference proxy. It has no
//! cache and handles one request at a time, which makes it a baseline to
//! compare httpcache-proxy against. A request for
//! `http://127.0.0.1:PORT/<host>[:port]/<path>` is fetched from
//! `http://<host>[:port]/<path>` with HTTP/1.0 (`Connection: close`) and the
//! whole response is relayed back unchanged; then the connection is closed.
//!
//! Run it against a local origin, for example `python3 -m http.server 8000`:
//!
//! ```text
//! cargo run --example simple_proxy -- --port 9999 --upstream-port 8000
//! curl http://127.0.0.1:9999/127.0.0.1/index.html
//! ```
//!
//! Flags: `--port N` (listen port on 127.0.0.1, default 8888),
//! `--upstream-port N` (origin port when the URL names none, default 80),
//! `--help`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: u64 = 64 * 1024;
const USAGE: &str = "usage: simple_proxy [--port N] [--upstream-port N] [--help]";

struct Config {
    port: u16,
    upstream_port: u16,
}

/// What to do with one request.
enum Route<'a> {
    /// Fetch `(authority, host, port, path)`; `authority` is `host[:port]`
    /// as the URL gave it, for the Host header.
    Fetch(&'a str, &'a str, u16, &'a str),
    /// Answer directly with this status and text body.
    Reply(&'static str, String),
}

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(flag) => {
            eprintln!("simple_proxy: bad flag or value: {flag}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", config.port)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("simple_proxy: cannot listen on port {}: {err}", config.port);
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map_or(config.port, |addr| addr.port());
    eprintln!("simple_proxy: listening on 127.0.0.1:{port}");
    for conn in listener.incoming() {
        if let Err(err) = conn.and_then(|client| handle(client, &config)) {
            eprintln!("simple_proxy: {err}");
        }
    }
    ExitCode::SUCCESS
}

/// `Ok(None)` means `--help`; `Err` carries the offending flag.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut config = Config { port: 8888, upstream_port: 80 };
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--port" => &mut config.port,
            "--upstream-port" => &mut config.upstream_port,
            _ => return Err(flag),
        };
        *slot = args.next().and_then(|v| v.parse().ok()).ok_or(flag)?;
    }
    Ok(Some(config))
}

fn handle(mut client: TcpStream, config: &Config) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let line = read_request_line(&client)?;
    let (authority, host, port, path) = match route(&line, config) {
        Route::Fetch(authority, host, port, path) => (authority, host, port, path),
        Route::Reply(status, body) => {
            eprintln!("{line:?} -> {status}");
            return reply(&mut client, status, &body);
        }
    };
    let mut upstream = match connect(host, port) {
        Ok(upstream) => upstream,
        Err(err) => {
            eprintln!("GET {host}:{port}{path} -> 502 ({err})");
            let body = format!("cannot connect to {host}:{port}: {err}\n");
            return reply(&mut client, "502 Bad Gateway", &body);
        }
    };
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: simple_proxy\r\nConnection: close\r\n\r\n"
    );
    upstream.write_all(request.as_bytes())?;
    let relayed = relay(&mut upstream, &mut client)?;
    if relayed == 0 {
        return reply(&mut client, "502 Bad Gateway", "upstream sent no response\n");
    }
    eprintln!("GET {host}:{port}{path} -> relayed {relayed} bytes");
    Ok(())
}

/// Reads the request head and returns its first line; an empty string if
/// the head is cut short, not UTF-8 or longer than `MAX_HEAD`.
fn read_request_line(client: &TcpStream) -> io::Result<String> {
    let mut reader = BufReader::new(client.take(MAX_HEAD));
    let (mut first, mut line) = (None, String::new());
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(_) if !line.ends_with('\n') => return Ok(String::new()),
            Ok(_) if line.trim_end().is_empty() => return Ok(first.unwrap_or_default()),
            Ok(_) => first = first.or_else(|| Some(line.trim_end().to_string())),
            Err(err) if err.kind() == io::ErrorKind::InvalidData => return Ok(String::new()),
            Err(err) => return Err(err),
        }
    }
}

fn route<'a>(line: &'a str, config: &Config) -> Route<'a> {
    let bad = |why: &str| Route::Reply("400 Bad Request", format!("{why}\n"));
    let mut parts = line.split_whitespace();
    let (Some("GET"), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad("expected: GET /<host>[:port]/<path> HTTP/1.x");
    };
    // Accept both "/host/path" and absolute-form "http://host/path".
    let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix('/'));
    let Some(rest) = rest.filter(|_| version.starts_with("HTTP/1.")) else {
        return bad("expected: GET /<host>[:port]/<path> HTTP/1.x");
    };
    match rest {
        "" => {
            let usage = format!(
                "simple_proxy: a minimal no-cache reference proxy.\n\
                 Fetch http://HOST[:PORT]/PATH as http://127.0.0.1:{}/HOST[:PORT]/PATH\n\
                 (upstream port {} when the URL names none).\n",
                config.port, config.upstream_port
            );
            return Route::Reply("200 OK", usage);
        }
        "favicon.ico" => return Route::Reply("404 Not Found", "no favicon\n".into()),
        _ => {}
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if path.chars().any(char::is_control) {
        return bad("bad target path");
    }
    match split_authority(authority, config.upstream_port) {
        Some((host, port)) if path.is_empty() => Route::Fetch(authority, host, port, "/"),
        Some((host, port)) => Route::Fetch(authority, host, port, path),
        None => bad("bad target host or port"),
    }
}

/// `host`, `host:port` or `[v6]:port`; the port defaults to `default_port`.
fn split_authority(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?,
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port = match port {
        "" => default_port,
        p => p.strip_prefix(':')?.parse().ok().filter(|&p| p != 0)?,
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "-._:".contains(c);
    (!host.is_empty() && host.chars().all(valid)).then_some((host, port))
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no addresses");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// Copies the upstream response to the client; returns the byte count.
fn relay(upstream: &mut TcpStream, client: &mut TcpStream) -> io::Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = match upstream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) if total == 0 => return Ok(0),
            Err(err) => return Err(err),
        };
        client.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn reply(client: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes())
}
