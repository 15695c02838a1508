//! Pass-through: requests answered by the origin without storing, small bodies read whole,
//! and the invalidation that unsafe methods cause (RFC 9111 §4.4).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Either, Empty};

use super::body::ProxyBody;
use super::fetch::{content_length, Answer, Fetch, INLINE_BODY_MAX};
use super::guard::body::ClientBody;
use super::headers::{strip_hop_by_hop, CACHE_STATUS, X_CACHE};
use super::reply::{CacheResult, CacheStatus};
use super::respond;
use super::upstream::UpstreamIncoming;
use crate::cache::meta::StoredHead;

impl Fetch<'_> {
    /// Forwards the request and streams the answer back without storing it. `fwd` is the
    /// Cache-Status reason. Unsafe methods that succeed invalidate the target (§4.4).
    pub(super) async fn pass(&self, body: Option<ClientBody>, fwd: &'static str) -> Answer {
        // An empty client body goes as none, so the request can be retried (see Upstream::send).
        let body = body.filter(|b| !http_body::Body::is_end_stream(b));
        let body = body.map_or(Either::Left(Empty::new()), Either::Right);
        let req = self.request(self.ask.method.clone(), self.ask.headers.clone(), body);
        let resp = match self.proxy.upstream.send(req, &self.target_name()).await {
            Ok(r) => r,
            Err(e) => return self.failure(&e),
        };
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        self.invalidate_after(&parts.status, &parts.headers).await;
        let status = CacheStatus {
            fwd: Some(fwd),
            fwd_status: Some(parts.status.as_u16()),
            ttl: None,
            stored: false,
            collapsed: false,
            detail: None,
        };
        self.strip_targeted(&mut parts.headers);
        parts.headers.insert(X_CACHE.clone(), HeaderValue::from_static("MISS"));
        parts.headers.insert(CACHE_STATUS.clone(), status.render(&self.proxy.settings.cache_name));
        match self.pass_body(&parts.status, &parts.headers, incoming).await {
            Ok(body) => (Response::from_parts(parts, body), CacheResult::Pass),
            Err(e) => (respond::error(StatusCode::BAD_GATEWAY, &e), CacheResult::Local),
        }
    }

    /// The body of a pass-through response: small bodies of known length are read whole (so
    /// the head and body leave in one write), others stream with hyper's backpressure.
    async fn pass_body(
        &self,
        status: &StatusCode,
        headers: &HeaderMap,
        incoming: UpstreamIncoming,
    ) -> Result<ProxyBody, String> {
        let bodiless = self.ask.method == Method::HEAD
            || status.is_informational()
            || *status == StatusCode::NO_CONTENT
            || *status == StatusCode::NOT_MODIFIED;
        match content_length(headers) {
            Some(len) if len <= INLINE_BODY_MAX && !bodiless => {
                read_small(incoming, len, self.proxy.upstream.timeouts().idle).await.map(ProxyBody::full)
            }
            _ => Ok(ProxyBody::Upstream(incoming)),
        }
    }

    /// RFC 9111 §4.4: a non-error response to an unsafe method invalidates the target URI, and
    /// the URIs in `Location` and `Content-Location` when they have the same origin.
    async fn invalidate_after(&self, status: &StatusCode, headers: &HeaderMap) {
        let unsafe_method =
            !matches!(self.ask.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
        let Some(cache) = &self.proxy.cache else { return };
        if !unsafe_method || !(status.is_success() || status.is_redirection()) {
            return;
        }
        let t = &self.ask.target;
        cache.invalidate(&t.key()).await;
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(path) =
                headers.get(&name).and_then(|v| v.to_str().ok()).and_then(|v| same_origin_path(t, v))
            else {
                continue;
            };
            cache.invalidate(&t.key_for(&path)).await;
        }
    }

    pub(super) async fn pass_response(
        &self,
        head: Arc<StoredHead>,
        incoming: UpstreamIncoming,
        fwd: &'static str,
    ) -> Answer {
        let body = match self.pass_body(&head.status, &head.headers, incoming).await {
            Ok(body) => body,
            Err(e) => return (respond::error(StatusCode::BAD_GATEWAY, &e), CacheResult::Local),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers.clone();
        let status = CacheStatus {
            fwd: Some(fwd),
            fwd_status: Some(head.status.as_u16()),
            ttl: None,
            stored: false,
            collapsed: false,
            detail: None,
        };
        let h = resp.headers_mut();
        self.strip_targeted(h);
        h.insert(X_CACHE.clone(), HeaderValue::from_static("MISS"));
        h.insert(CACHE_STATUS.clone(), status.render(&self.proxy.settings.cache_name));
        (resp, CacheResult::Pass)
    }
}

/// Reads a body of exactly `len` bytes, with `idle` as the deadline between chunks.
async fn read_small(
    mut incoming: UpstreamIncoming,
    len: u64,
    idle: std::time::Duration,
) -> Result<Bytes, String> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut got = 0u64;
    loop {
        match tokio::time::timeout(idle, incoming.frame()).await {
            Err(_) => return Err("upstream body stalled".into()),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("upstream body failed: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    got += data.len() as u64;
                    chunks.push(data);
                }
            }
        }
    }
    if got != len {
        return Err(format!("upstream sent {got} bytes, Content-Length said {len}"));
    }
    Ok(match chunks.len() {
        1 => chunks.pop().unwrap_or_default(),
        _ => chunks.concat().into(),
    })
}

/// The path of `reference` if it names the same origin as `target` (RFC 9111 §4.4): an
/// absolute or relative path, or an absolute URI with the same scheme, host and port as the
/// target's cache key.
fn same_origin_path(target: &super::route::Target, reference: &str) -> Option<String> {
    if reference.starts_with('/') && !reference.starts_with("//") {
        return Some(remove_dot_segments(reference));
    }
    let has_scheme = reference.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if !has_scheme && !reference.starts_with("//") && !reference.is_empty() {
        // A relative reference resolves against the request's path (RFC 3986 §5.2).
        let path = target.path_and_query.split(['?', '#']).next().unwrap_or("/");
        let base = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        return Some(remove_dot_segments(&format!("{base}{reference}")));
    }
    let uri: http::Uri = reference.parse().ok()?;
    let default_port = match uri.scheme_str()? {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    let origin = format!("{}://{host}:{port}", uri.scheme_str()?);
    (origin == target.key_origin())
        .then(|| uri.path_and_query().map_or("/".to_string(), |p| p.as_str().to_string()))
}

/// RFC 3986 §5.2.4: resolves `.` and `..` segments of an absolute path (the query is kept).
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut resolved = format!("/{}", out.join("/"));
    if let Some(q) = query {
        resolved.push('?');
        resolved.push_str(q);
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::route::{Scheme, Target};

    fn target(pq: &str) -> Target {
        let (host, port) = ("h".into(), 8080);
        Target {
            scheme: Scheme::Http,
            host,
            port,
            path_and_query: pq.into(),
            host_header: None,
            public_origin: None,
        }
    }

    #[test]
    fn s4_4_same_origin_references_only() {
        let t = target("/x");
        assert_eq!(same_origin_path(&t, "/a?b"), Some("/a?b".into()));
        assert_eq!(same_origin_path(&t, "http://h:8080/a"), Some("/a".into()));
        assert_eq!(same_origin_path(&t, "http://H:8080/a"), Some("/a".into()));
        assert_eq!(same_origin_path(&t, "http://h/a"), None, "other port");
        assert_eq!(same_origin_path(&t, "http://evil:8080/a"), None);
        assert_eq!(same_origin_path(&t, "https://h:8080/a"), None);
        assert_eq!(same_origin_path(&t, "//h:8080/a"), None);
        assert_eq!(same_origin_path(&t, "relative"), Some("/relative".into()));
        let deep = target("/a/b/c?q");
        assert_eq!(same_origin_path(&deep, "d"), Some("/a/b/d".into()));
        assert_eq!(same_origin_path(&deep, "../d?x"), Some("/a/d?x".into()));
        assert_eq!(same_origin_path(&deep, "./"), Some("/a/b/".into()));
        assert_eq!(same_origin_path(&deep, "/a/./b/../e"), Some("/a/e".into()));
        assert_eq!(same_origin_path(&deep, "mailto:x@h"), None);
    }
}
