//! Going to the origin: a leader's fetch that fills the cache (with revalidation of a stale
//! entry when it has validators), and pass-through for what must not be stored.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Empty};

use super::body::ProxyBody;
use super::headers::{append_via, strip_hop_by_hop};
use super::reply::{CacheResult, CacheStatus, Reply};
use super::respond;
use super::service::{Ask, FillTarget, Forwarded, Proxy};
use super::upstream::{UpstreamBody, UpstreamError, UpstreamIncoming};
use crate::cache::coalesce::LeaderGuard;
use crate::cache::fill::FillError;
use crate::cache::key::CacheKey;
use crate::cache::meta::StoredHead;
use crate::cache::policy::{self, CacheControl};
use crate::cache::shared::hooks::shared_ttl;
use crate::cache::shared::Lease;
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
pub(super) const INLINE_BODY_MAX: u64 = 64 * 1024;

/// One trip to the origin on behalf of a request.
pub(super) struct Fetch<'a> {
    pub(super) proxy: &'a Arc<Proxy>,
    pub(super) ask: &'a Ask,
}

pub(super) type Answer = (Response<ProxyBody>, CacheResult);

impl<'a> Fetch<'a> {
    pub(super) fn new(proxy: &'a Arc<Proxy>, ask: &'a Ask) -> Self {
        Self { proxy, ask }
    }

    pub(super) fn target_name(&self) -> String {
        self.ask.target.name()
    }

    pub(super) fn request(
        &self,
        method: Method,
        mut headers: HeaderMap,
        body: UpstreamBody,
    ) -> Request<UpstreamBody> {
        strip_hop_by_hop(&mut headers);
        let t = &self.ask.target;
        if let Ok(host) = HeaderValue::from_str(&t.host_field()) {
            headers.insert(header::HOST, host);
        }
        append_via(&mut headers, &self.proxy.settings.via);
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = t.uri().parse().unwrap_or_default();
        *req.headers_mut() = headers;
        req
    }

    /// The targeted cache-control field is for this cache only (RFC 9213): not forwarded.
    pub(super) fn strip_targeted(&self, headers: &mut HeaderMap) {
        if let Some(t) = &self.proxy.settings.targeted_cache_control {
            headers.remove(t);
        }
    }

    pub(super) fn failure(&self, e: &UpstreamError) -> Answer {
        tracing::debug!(error = %e, "upstream failed");
        (respond::error(e.status(), &e.to_string()), CacheResult::Local)
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
        let mut stale = stale;
        // At most two trips: a 304 that names another representation than the stored one
        // (a different strong ETag) cannot update it (§4.3.4), so the full response is fetched.
        let (resp, request_time, validating) = loop {
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
                        let fwd = Forwarded { reason: target.reason, status: None };
                        return (
                            self.proxy.serve(self.ask, cache, key, s, CacheResult::Stale, Some(fwd)),
                            CacheResult::Stale,
                        );
                    }
                    guard.failed(e.status(), e.to_string().into());
                    return self.failure(&e);
                }
            };
            let mismatch = resp.status() == StatusCode::NOT_MODIFIED
                && stale.as_ref().is_some_and(|s| other_strong_etag(&s.head.headers, resp.headers()));
            if validating && mismatch {
                stale = None;
                continue;
            }
            break (resp, request_time, validating);
        };
        let response_time = SystemTime::now();
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(s) = stale {
            if parts.status == StatusCode::NOT_MODIFIED && validating {
                return self
                    .revalidated(cache, target, guard, s, &parts.headers, request_time, response_time)
                    .await;
            }
            if parts.status.is_server_error() && self.stale_if_error(&s) {
                drop(guard);
                let fwd = Forwarded { reason: target.reason, status: Some(parts.status.as_u16()) };
                return (
                    self.proxy.serve(self.ask, cache, key, s, CacheResult::Stale, Some(fwd)),
                    CacheResult::Stale,
                );
            }
        }
        let head = StoredHead {
            kind: crate::cache::meta::EntryKind::Response,
            key: key.url().to_string(),
            status: parts.status,
            headers: crate::cache::meta::owned_headers(std::mem::take(&mut parts.headers)),
            request_time,
            response_time,
            reading: Default::default(),
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
        target: &FillTarget,
        guard: LeaderGuard,
        stale: CachedResponse,
        not_modified: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Answer {
        let key = &target.key;
        let head = Arc::new(StoredHead {
            kind: crate::cache::meta::EntryKind::Response,
            key: key.url().to_string(),
            status: stale.head.status,
            headers: crate::cache::meta::owned_headers(policy::merge_304(&stale.head.headers, not_modified)),
            request_time,
            response_time,
            reading: Default::default(),
        });
        let fresh = CachedResponse { head: head.clone(), body: stale.body, tier: stale.tier };
        let settings = &self.proxy.settings;
        // One assessment labels the answer and sets the shared tier's time; the freshened
        // head keeps its reading, as a stored miss's does.
        let assessed = settings.assess(&head, SystemTime::now());
        let view = settings.policy_headers(&head.headers);
        // A 304 can make the response unstorable (e.g. it now says no-store or private): this
        // client still gets it, but the entry goes (§3, §5.2.2.5, §5.2.2.7).
        if policy::is_storable(&Method::GET, &self.ask.headers, head.status, &view, &settings.policy).is_err()
        {
            cache.remove(key).await;
            drop(guard);
        } else if cache.restore_with_head(key, head.clone(), &fresh.body).await {
            guard.updated();
            let ttl = shared_ttl(assessed.lifetime.duration(), &assessed.directives);
            cache.share_body(key, head.clone(), &fresh.body, ttl, target.lease.clone());
        } else {
            drop(guard); // followers fetch for themselves
        }
        let fwd = Some(Forwarded { reason: target.reason, status: Some(304) });
        let result = CacheResult::Revalidated;
        (self.proxy.serve_assessed(self.ask, cache, key, fresh, result, fwd, &assessed), result)
    }

    /// Stores a full response if policy allows, streaming it to the client as it arrives.
    async fn store_and_stream(
        &self,
        cache: &Arc<Cache>,
        target: &FillTarget,
        guard: LeaderGuard,
        mut head: StoredHead,
        incoming: UpstreamIncoming,
    ) -> Answer {
        let settings = &self.proxy.settings;
        let storable = {
            let view = settings.policy_headers(&head.headers);
            policy::is_storable(&Method::GET, &self.ask.headers, head.status, &view, &settings.policy)
                .map_err(|why| why.as_str())
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
        if head.key != key.url() {
            head.key = key.url().to_string(); // a variant's key
        }
        let key = &key;
        let expected_len = content_length(&head.headers);
        let head = Arc::new(head);
        let started = match storable {
            Ok(()) => cache.start_fill(key, head.clone(), expected_len).await,
            Err(why) => {
                tracing::debug!(key = key.url(), reason = why, "not storable");
                if matches!(why, "no-store-response" | "private" | "vary-star") {
                    cache.pass_marks().mark(target.primary.hash(), std::time::Instant::now());
                }
                None
            }
        };
        let Some((fill, sink)) = started else {
            if let Some(lease) = &target.lease {
                lease.pass(); // the fleet stops waiting for an entry that will not come
            }
            drop(guard);
            return self.pass_response(head, incoming, target.reason).await;
        };
        // The assessment a hit on this entry would make. Its reading of the head (directives,
        // lifetime before the rules, initial age) stays with the head, which the memory tier
        // keeps as it is, so the entry's first hit does not parse the head again. The tier
        // weighs every entry with a reading, so keeping it now costs no memory it had not
        // counted.
        let assessed = settings.assess(&head, SystemTime::now());
        let (lifetime, no_cache) = (assessed.lifetime, assessed.directives.no_cache);
        let shared_ttl = shared_ttl(lifetime.duration(), &assessed.directives);
        // Followers may share the response only if it is fresh and not `no-cache`: one that
        // needs validation on every use must not be handed to requests that did not see it
        // validated (§4.2.4, §5.2.2.4).
        let guard = if lifetime.duration().is_some_and(|d| !d.is_zero()) && !no_cache {
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
            idle: self.proxy.upstream.timeouts().idle,
            shared_ttl,
            lease: target.lease.clone(),
        };
        let inline = expected_len.is_some_and(|n| n <= INLINE_BODY_MAX);
        let reply = Reply {
            method: &self.ask.method,
            req_headers: &self.ask.headers,
            cache_name: &settings.cache_name,
            targeted: settings.targeted_cache_control.as_ref(),
            result: CacheResult::Miss,
            status: CacheStatus {
                fwd: Some(target.reason),
                fwd_status: Some(head.status.as_u16()),
                ttl: Some(assessed.ttl()),
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
        // write (and a body cut short becomes a clean 502 instead of a cut connection). Read
        // in this request's task: the leader's whole fill is finished in a task of its own if
        // this request is dropped first (`FinishedEvenIfDropped`, where `fill` is called).
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
}

/// A future awaited in place which, if dropped before it completes, is spawned to run to
/// its end (its output dropped). Boxed so that it can move to the new task; a spawn for every
/// fill would cost a task and a wake-up even when no client goes away.
pub(super) struct FinishedEvenIfDropped<T: Send + 'static> {
    run: Option<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>>,
}

impl<T: Send + 'static> FinishedEvenIfDropped<T> {
    pub(super) fn new(run: impl std::future::Future<Output = T> + Send + 'static) -> Self {
        Self { run: Some(Box::pin(run)) }
    }
}

impl<T: Send + 'static> std::future::Future for FinishedEvenIfDropped<T> {
    type Output = T;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let Some(run) = self.run.as_mut() else { return std::task::Poll::Pending };
        let out = std::task::ready!(run.as_mut().poll(cx));
        self.run = None;
        std::task::Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for FinishedEvenIfDropped<T> {
    fn drop(&mut self) {
        if let (Some(run), Ok(rt)) = (self.run.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                run.await;
            });
        }
    }
}

/// Whether a 304 carries a strong ETag other than the stored response's (RFC 9111 §4.3.4:
/// then it does not select the stored response for update).
fn other_strong_etag(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    let Some(new) = not_modified.get(header::ETAG) else { return false };
    if new.as_bytes().starts_with(b"W/") {
        return false;
    }
    stored.get(header::ETAG) != Some(new)
}

pub(super) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads the upstream body into the fill, independent of any client: the entry is completed
/// even if the client that caused the fetch goes away. Never stores a body cut short, one
/// whose length differs from Content-Length, or one over `max_object`.
struct Pump {
    incoming: UpstreamIncoming,
    sink: FillSink,
    guard: Option<LeaderGuard>,
    cache: Arc<Cache>,
    key: CacheKey,
    head: Arc<StoredHead>,
    expected_len: Option<u64>,
    max_object: u64,
    idle: std::time::Duration,
    /// How long the shared tier keeps the entry.
    shared_ttl: std::time::Duration,
    /// The fleet-wide lease, released once the entry is written through.
    lease: Option<Arc<Lease>>,
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
        let exact = self.incoming.came_exact();
        let (on_disk, body) = self.sink.finish(outcome.clone(), store, exact).await;
        if let (true, Some(body)) = (store, &body) {
            if on_disk {
                self.cache.admit_to_memory(&self.key, self.head.clone(), body.clone()).await;
            } else {
                self.cache.store_complete(&self.key, self.head.clone(), body.clone()).await;
            }
        }
        if store {
            self.cache.write_through(
                &self.key,
                self.head.clone(),
                body.clone(),
                self.shared_ttl,
                self.lease.take(),
            );
        }
        if let Some(g) = self.guard.take() {
            g.complete();
        }
        outcome.map(|()| body)
    }
}
