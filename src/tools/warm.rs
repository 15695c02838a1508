//! `cache warm FILE --proxy URL`: fetches each URL through a running proxy, which stores what
//! it may (its own policy decides), so the cache is warm before clients come. Going through
//! the proxy rather than writing entries directly keeps one writer per cache directory and
//! one caching policy. `http://` URLs are sent in absolute form (as to any forward proxy),
//! `https://` ones as `/https://host/path` (the proxy's embedded-host form).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::progress::Progress;

/// Longest wait for one URL.
const PER_URL: Duration = Duration::from_secs(120);

/// Warms the cache with the URLs of `file`; `Ok(false)` if any failed.
pub fn run(file: &Path, proxy: &str) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let urls: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let proxy_uri: http::Uri = proxy.parse().with_context(|| format!("--proxy {proxy}: not a URL"))?;
    let (Some("http"), Some(authority)) = (proxy_uri.scheme_str(), proxy_uri.authority()) else {
        bail!("--proxy {proxy}: give http://HOST:PORT");
    };
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut progress = Progress::new("warming", urls.len() as u64);
        let mut failed = 0;
        for url in &urls {
            let line = match tokio::time::timeout(PER_URL, fetch(&addr, url)).await {
                Ok(Ok((status, cache))) if status < 400 => format!("{status} {cache} {url}"),
                Ok(Ok((status, cache))) => {
                    failed += 1;
                    format!("{status} {cache} {url}")
                }
                Ok(Err(e)) => {
                    failed += 1;
                    format!("failed {url}: {e:#}")
                }
                Err(_) => {
                    failed += 1;
                    format!("failed {url}: no answer within {} s", PER_URL.as_secs())
                }
            };
            progress.println(&line);
            progress.inc();
        }
        progress.finish();
        println!("warmed {} URLs, {failed} failed", urls.len());
        Ok(failed == 0)
    })
}

/// GETs `url` through the proxy at `addr`, reading the whole body so the proxy stores it.
/// Returns the status and the proxy's `X-Cache`.
async fn fetch(addr: &str, url: &str) -> anyhow::Result<(u16, String)> {
    let uri: http::Uri = url.parse().context("not a URL")?;
    let (target, host) = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(a)) => (url.to_string(), a.to_string()),
        (Some("https"), Some(_)) => (format!("/{url}"), addr.to_string()),
        _ => bail!("not an absolute http(s) URL"),
    };
    let stream =
        tokio::net::TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(target).header(http::header::HOST, host).body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let cache = resp.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    resp.into_body().collect().await?;
    Ok((status, cache))
}
