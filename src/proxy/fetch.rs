//! Going to the origin: a leader's fetch that fills the cache (with revalidation of a stale
//! entry when it has validators), and pass-through for what must not be stored.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::headers::{strip_hop_by_hop, CACHE_STATUS, X_CACHE};
use super::reply::{CacheResult, CacheStatus, Reply};
use super::respond;
use super::service::{Ask, FillTarget, Proxy};
use super::upstream::{UpstreamBody, UpstreamError};
use crate::cache::coalesce::LeaderGuard;
use crate::cache::fill::FillError;
use crate::cache::key::CacheKey;
use crate::cache::meta::StoredHead;
use crate::cache::policy::{self, CacheControl};
use crate::cache::sink::FillSink;
use crate::cache::{Cache, CachedBody, CachedResponse, Tier};

/// Request fields never sent upstream on a fetch that fills the cache: the cache needs the
/// full response, and answers the client's own conditionals and ranges itself.
const CLIENT_CONDITIONALS: [header::HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
];

/// Bodies of known length up to this size are read whole before the client is answered.
const INLINE_BODY_MAX: u64 = 64 * 1024;

/// One trip to the origin on behalf of a request.
pub(super) struct Fetch<'a> {
    proxy: &'a Arc<Proxy>,
    ask: &'a Ask,
}

type Answer = (Response<ProxyBody>, CacheResult);

impl<'a> Fetch<'a> {
    pub(super) fn new(proxy: &'a Arc<Proxy>, ask: &'a Ask) -> Self {
        Self { proxy, ask }
    }

    fn target_name(&self) -> String {
        format!("{}:{}", self.ask.target.host, self.ask.target.port)
    }

    fn request(&self, method: Method, mut headers: HeaderMap, body: UpstreamBody) -> Request<UpstreamBody> {
        strip_hop_by_hop(&mut headers);
        let t = &self.ask.target;
        if let Ok(host) = HeaderValue::from_str(&t.authority()) {
            headers.insert(header::HOST, host);
        }
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() =
            format!("http://{}:{}{}", t.host, t.port, t.path_and_query).parse().unwrap_or_default();
        *req.headers_mut() = headers;
        req
    }

    /// The targeted cache-control field is for this cache only (RFC 9213): not forwarded.
    fn strip_targeted(&self, headers: &mut HeaderMap) {
        if let Some(t) = &self.proxy.settings.targeted_cache_control {
            headers.remove(t);
        }
    }

    fn failure(&self, e: &UpstreamError) -> Answer {
        tracing::debug!(error = %e, "upstream failed");
        (respond::error(e.status(), &e.to_string()), CacheResult::Local)
    }

    /// Forwards the request and streams the answer back without storing it. `fwd` is the
    /// Cache-Status reason. Unsafe methods that succeed invalidate the target (§4.4).
    pub(super) async fn pass(&self, body: Option<Incoming>, fwd: &'static str) -> Answer {
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
        parts.headers.insert(CACHE_STATUS.clone(), status_value(&self.proxy.settings.cache_name, &status));
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
        incoming: Incoming,
    ) -> Result<ProxyBody, String> {
        let bodiless = self.ask.method == Method::HEAD
            || status.is_informational()
            || *status == StatusCode::NO_CONTENT
            || *status == StatusCode::NOT_MODIFIED;
        match content_length(headers) {
            Some(len) if len <= INLINE_BODY_MAX && !bodiless => {
                read_small(incoming, len, self.proxy.upstream.timeouts().read).await.map(ProxyBody::full)
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
        cache.remove(&CacheKey::new("http", &t.host, t.port, &t.path_and_query)).await;
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(path) =
                headers.get(&name).and_then(|v| v.to_str().ok()).and_then(|v| same_origin_path(t, v))
            else {
                continue;
            };
            cache.remove(&CacheKey::new("http", &t.host, t.port, &path)).await;
        }
    }

    /// The leader's fetch: revalidates `stale` if it has validators, else fetches in full,
    /// storing what may be stored while streaming it to the client and to any followers.
    pub(super) async fn fill(
        &self,
        cache: &Arc<Cache>,
        target: &FillTarget,
        guard: LeaderGuard,
        stale: Option<CachedResponse>,
    ) -> Answer {
        let key = &target.key;
        let mut headers = self.ask.headers.clone();
        for name in &CLIENT_CONDITIONALS {
            headers.remove(name);
        }
        let validating = stale.as_ref().is_some_and(|s| policy::has_validator(&s.head.headers));
        if let (true, Some(s)) = (validating, &stale) {
            headers.extend(policy::conditional_headers(&s.head.headers));
        }
        let request_time = SystemTime::now();
        let req = self.request(Method::GET, headers, Either::Left(Empty::new()));
        let resp = match self.proxy.upstream.send(req, &self.target_name()).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(s) = stale.filter(|s| self.stale_if_error(s)) {
                    drop(guard);
                    return (
                        self.proxy.serve(self.ask, cache, key, s, CacheResult::Stale),
                        CacheResult::Stale,
                    );
                }
                guard.failed(e.status(), e.to_string().into());
                return self.failure(&e);
            }
        };
        let response_time = SystemTime::now();
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(s) = stale {
            if parts.status == StatusCode::NOT_MODIFIED && validating {
                return self
                    .revalidated(cache, key, guard, s, &parts.headers, request_time, response_time)
                    .await;
            }
            if parts.status.is_server_error() && self.stale_if_error(&s) {
                drop(guard);
                return (self.proxy.serve(self.ask, cache, key, s, CacheResult::Stale), CacheResult::Stale);
            }
        }
        let head = StoredHead {
            kind: crate::cache::meta::EntryKind::Response,
            key: key.url().to_string(),
            status: parts.status,
            headers: crate::cache::meta::owned_headers(&parts.headers),
            request_time,
            response_time,
        };
        self.store_and_stream(cache, target, guard, head, incoming).await
    }

    fn stale_if_error(&self, s: &CachedResponse) -> bool {
        let a = self.proxy.settings.assess(&s.head, SystemTime::now());
        let req_cc = CacheControl::parse_request(&self.ask.headers);
        policy::stale_if_error_allows(&req_cc, &a.directives, &a.lifetime, a.age)
    }

    /// A 304 for a stale entry: freshen the stored head (§4.3.4) and serve the stored body.
    #[allow(clippy::too_many_arguments)]
    async fn revalidated(
        &self,
        cache: &Arc<Cache>,
        key: &CacheKey,
        guard: LeaderGuard,
        stale: CachedResponse,
        not_modified: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Answer {
        let head = Arc::new(StoredHead {
            kind: crate::cache::meta::EntryKind::Response,
            key: key.url().to_string(),
            status: stale.head.status,
            headers: crate::cache::meta::owned_headers(&policy::merge_304(&stale.head.headers, not_modified)),
            request_time,
            response_time,
        });
        let fresh = CachedResponse { head: head.clone(), body: stale.body, tier: stale.tier };
        if let crate::cache::CachedBody::Memory(body) = &fresh.body {
            cache.store_complete(key, head, body.clone()).await;
            guard.updated();
        } else {
            drop(guard); // large entries keep their stored head; followers fetch for themselves
        }
        (self.proxy.serve(self.ask, cache, key, fresh, CacheResult::Revalidated), CacheResult::Revalidated)
    }

    /// Stores a full response if policy allows, streaming it to the client as it arrives.
    async fn store_and_stream(
        &self,
        cache: &Arc<Cache>,
        target: &FillTarget,
        guard: LeaderGuard,
        mut head: StoredHead,
        incoming: Incoming,
    ) -> Answer {
        let settings = &self.proxy.settings;
        let (storable, lifetime) = {
            let view = settings.policy_headers(&head.headers);
            let storable =
                policy::is_storable(&Method::GET, &self.ask.headers, head.status, &view, &settings.policy)
                    .map_err(|why| why.as_str());
            (storable, policy::freshness_lifetime(head.status, &view, head.response_time, &settings.policy))
        };
        // A response that varies is stored as the variant this request selects (§4.1), under
        // the URL's Vary marker; one that does not is stored under the URL itself.
        let key = match (&storable, policy::vary::vary_names(&head.headers)) {
            (Ok(()), Some(names)) if !names.is_empty() => {
                match cache.vary_marker(&target.primary, &head.headers, target.marker.as_ref()).await {
                    Some(generation) => target
                        .primary
                        .variant(generation, &policy::vary::variant_selector(&names, &self.ask.headers)),
                    None => target.primary.clone(),
                }
            }
            _ => target.primary.clone(),
        };
        head.key = key.url().to_string();
        let key = &key;
        let expected_len = content_length(&head.headers);
        let head = Arc::new(head);
        let started = match storable {
            Ok(()) => cache.start_fill(key, head.clone(), expected_len).await,
            Err(why) => {
                tracing::debug!(key = key.url(), reason = why, "not storable");
                None
            }
        };
        let Some((fill, sink)) = started else {
            drop(guard);
            return self.pass_response(head, incoming).await;
        };
        // Followers may share the response only if it is fresh: one that needs validation on
        // every use must not be handed to requests that did not see it validated.
        let guard = if lifetime.duration().is_some_and(|d| !d.is_zero()) {
            guard.ready(fill.clone());
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let pump = Pump {
            incoming,
            sink,
            guard,
            cache: cache.clone(),
            key: key.clone(),
            head: head.clone(),
            expected_len,
            max_object: cache.limits().max_object,
            idle: self.proxy.upstream.timeouts().read,
        };
        let inline = expected_len.is_some_and(|n| n <= INLINE_BODY_MAX);
        let reply = Reply {
            method: &self.ask.method,
            req_headers: &self.ask.headers,
            cache_name: &settings.cache_name,
            targeted: settings.targeted_cache_control.as_ref(),
            result: CacheResult::Miss,
            status: CacheStatus {
                fwd: Some("uri-miss"),
                fwd_status: Some(head.status.as_u16()),
                ttl: lifetime.duration().map(|d| d.as_secs() as i64),
                stored: true,
                collapsed: false,
                detail: None,
            },
            age: None,
        };
        if !inline {
            tokio::spawn(pump.run());
            return (reply.fill(&fill), CacheResult::Miss);
        }
        // Small bodies are read whole before answering, so the head and body leave in one
        // write (and a body cut short becomes a clean 502 instead of a cut connection).
        match pump.run().await {
            Ok(Some(body)) => {
                let stored =
                    CachedResponse { head: head.clone(), body: CachedBody::Memory(body), tier: Tier::Memory };
                (reply.stored(stored, || {}), CacheResult::Miss)
            }
            Ok(None) => (reply.fill(&fill), CacheResult::Miss),
            Err(e) => (respond::error(StatusCode::BAD_GATEWAY, &e.to_string()), CacheResult::Local),
        }
    }

    async fn pass_response(&self, head: Arc<StoredHead>, incoming: Incoming) -> Answer {
        let body = match self.pass_body(&head.status, &head.headers, incoming).await {
            Ok(body) => body,
            Err(e) => return (respond::error(StatusCode::BAD_GATEWAY, &e), CacheResult::Local),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers.clone();
        let status = CacheStatus {
            fwd: Some("uri-miss"),
            fwd_status: Some(head.status.as_u16()),
            ttl: None,
            stored: false,
            collapsed: false,
            detail: None,
        };
        let h = resp.headers_mut();
        self.strip_targeted(h);
        h.insert(X_CACHE.clone(), HeaderValue::from_static("MISS"));
        h.insert(CACHE_STATUS.clone(), status_value(&self.proxy.settings.cache_name, &status));
        (resp, CacheResult::Pass)
    }
}

fn status_value(name: &str, s: &CacheStatus) -> HeaderValue {
    let mut v = format!("{name}; fwd={}", s.fwd.unwrap_or("uri-miss"));
    if let Some(st) = s.fwd_status {
        v.push_str(&format!("; fwd-status={st}"));
    }
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("httpcache-proxy"))
}

/// Reads a body of exactly `len` bytes, with `idle` as the deadline between chunks.
async fn read_small(mut incoming: Incoming, len: u64, idle: std::time::Duration) -> Result<Bytes, String> {
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
/// absolute path, or an absolute `http://` URI with the same host and port.
fn same_origin_path(target: &super::route::Target, reference: &str) -> Option<String> {
    if reference.starts_with('/') && !reference.starts_with("//") {
        return Some(reference.to_string());
    }
    let uri: http::Uri = reference.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(80);
    (host == target.host && port == target.port)
        .then(|| uri.path_and_query().map_or("/".to_string(), |p| p.as_str().to_string()))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads the upstream body into the fill, independent of any client: the entry is completed
/// even if the client that caused the fetch goes away. Never stores a body cut short, one
/// whose length differs from Content-Length, or one over `max_object`.
struct Pump {
    incoming: Incoming,
    sink: FillSink,
    guard: Option<LeaderGuard>,
    cache: Arc<Cache>,
    key: CacheKey,
    head: Arc<StoredHead>,
    expected_len: Option<u64>,
    max_object: u64,
    idle: std::time::Duration,
}

impl Pump {
    /// Runs to the end of the body; returns the whole body when it was kept in memory.
    async fn run(mut self) -> Result<Option<Bytes>, FillError> {
        let outcome = loop {
            match tokio::time::timeout(self.idle, self.incoming.frame()).await {
                Err(_) => break Err(FillError::Upstream("upstream body stalled".into())),
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => break Err(FillError::Upstream(e.to_string().into())),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.sink.push(data).await;
                    }
                }
            }
        };
        let received = self.sink.received();
        let outcome = outcome.and_then(|()| match self.expected_len {
            Some(n) if n != received => {
                Err(FillError::Upstream(format!("length {received} != Content-Length {n}").into()))
            }
            _ => Ok(()),
        });
        if let Err(e) = &outcome {
            tracing::warn!(key = self.key.url(), error = %e, "upstream body incomplete: not stored");
        }
        let store = outcome.is_ok() && received <= self.max_object;
        let (on_disk, body) = self.sink.finish(outcome.clone(), store).await;
        if let (true, Some(body)) = (store, &body) {
            if on_disk {
                self.cache.insert_memory(&self.key, self.head.clone(), body.clone());
            } else {
                self.cache.store_complete(&self.key, self.head.clone(), body.clone()).await;
            }
        }
        if let Some(g) = self.guard.take() {
            g.complete();
        }
        outcome.map(|()| body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::route::Target;

    #[test]
    fn s4_4_same_origin_references_only() {
        let t = Target { host: "h".into(), port: 8080, path_and_query: "/x".into() };
        assert_eq!(same_origin_path(&t, "/a?b"), Some("/a?b".into()));
        assert_eq!(same_origin_path(&t, "http://h:8080/a"), Some("/a".into()));
        assert_eq!(same_origin_path(&t, "http://H:8080/a"), Some("/a".into()));
        assert_eq!(same_origin_path(&t, "http://h/a"), None, "other port");
        assert_eq!(same_origin_path(&t, "http://evil:8080/a"), None);
        assert_eq!(same_origin_path(&t, "https://h:8080/a"), None);
        assert_eq!(same_origin_path(&t, "//h:8080/a"), None);
        assert_eq!(same_origin_path(&t, "relative"), None);
    }
}
