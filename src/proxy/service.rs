//! The request pipeline: route, look up, decide (through the policy), and serve from the
//! cache, from another request's fetch, or from the origin. The only module that talks to
//! both the cache and the upstream.
//!
//! Paths that go upstream are boxed where they are awaited (`Box::pin(...).await`): inline,
//! their state made every request's future several KiB, and hyper moves that future whole
//! into place for each request, hits included.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::assess::Assessed;
use super::body::ProxyBody;
use super::fetch::{Fetch, FinishedEvenIfDropped};
use super::guard::{self, body::ClientBody};
use super::headers;
use super::record::Answered;
use super::reply::{CacheResult, CacheStatus, Reply};
use super::respond;
use super::route::{route_request, Mode, Route, Routing, Target};
use super::tunnel::{self, TunnelSettings};
use super::upstream::Upstream;
use crate::access_log::AccessLog;
use crate::cache::coalesce::{Joined, Phase, Slot};
use crate::cache::fill::Fill;
use crate::cache::key::CacheKey;
use crate::cache::policy::rules::Rules;
use crate::cache::policy::{self, CacheControl, PolicyConfig, ReadingKey, Reuse};
use crate::cache::shared::hooks::BeforeFetch;
use crate::cache::shared::Lease;
use crate::cache::{Cache, CachedResponse, Lookup, VaryMarker};
use crate::logging::request_line::RequestLine;

/// Settings of the pipeline.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// Port used when the URL names none.
    pub upstream_port: u16,
    /// Caching policy knobs.
    pub policy: PolicyConfig,
    /// Name of this cache in `Cache-Status`.
    pub cache_name: String,
    /// The targeted cache-control field this cache obeys over `Cache-Control` (RFC 9213).
    pub targeted_cache_control: Option<http::HeaderName>,
    /// Names `policy` and `targeted_cache_control` in the readings kept with stored heads
    /// (`policy::reading`). Both are fixed for these settings' lifetime; settings that could
    /// change them would need a new key.
    pub reading_key: ReadingKey,
    /// Which modes are on and where reverse-proxied requests go.
    pub routing: Routing,
    /// CONNECT settings.
    pub tunnel: TunnelSettings,
    /// This proxy's received-by name in `Via`: a request that already names it is a loop.
    pub via_name: String,
    /// The `Via` hop this proxy appends: `1.1 <via_name> (httpcache-proxy)`.
    pub via: http::HeaderValue,
    /// Operator cache rules by URL; swapped whole on a configuration reload.
    pub rules: SharedRules,
    /// Where each request is logged in Combined Log Format, if anywhere.
    pub access_log: Option<AccessLog>,
    /// Clients allowed to send PURGE.
    pub purge_allow: Vec<crate::access::cidr::Cidr>,
    /// Request size limits (see `guard`).
    pub guard: Arc<arc_swap::ArcSwap<guard::Limits>>,
    /// Which upstream targets may be reached (the connector's and the tunnel's rules).
    pub targets: crate::access::SharedTargets,
}

/// Who sent a request: the server passes it with each request (an argument, not an
/// extension: extensions cost three allocations per request).
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    /// The peer address.
    pub addr: std::net::SocketAddr,
    /// Whether the connection is HTTPS.
    pub tls: bool,
}

/// The rules as every request reads them: one atomic load, replaced whole on reload.
pub type SharedRules = Arc<arc_swap::ArcSwap<Rules>>;

/// The proxy: shared by every connection.
pub struct Proxy {
    pub(super) cache: Option<Arc<Cache>>,
    pub(super) upstream: Upstream,
    pub(super) settings: ProxySettings,
}

/// A request's parts the pipeline keeps after the body is taken.
#[derive(Clone)]
pub(super) struct Ask {
    pub method: Method,
    pub headers: http::HeaderMap,
    pub target: Target,
}

impl Proxy {
    /// A proxy over `cache` (`None`: caching disabled) and `upstream`.
    pub fn new(cache: Option<Arc<Cache>>, upstream: Upstream, settings: ProxySettings) -> Self {
        Self { cache, upstream, settings }
    }

    /// The pipeline's settings.
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// The cache, if caching is enabled.
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }

    /// Handles one request and logs it.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, client: ClientInfo) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let pending = self.settings.access_log.as_ref().map(|log| log.begin(&req, Some(client.addr.ip())));
        let (mut resp, result, mode) = self.dispatch(req, client).await;
        // A response that waited on the origin goes out after the other tasks that are ready
        // in this scheduler round, so those answers reach their clients back to back. A
        // client idle since its request is woken by each write that reaches it; woken once
        // for a burst, it costs both sides less CPU (measured in BENCHMARKS.md). Hits are
        // answered without waiting and are not held back.
        if matches!(result, CacheResult::Miss | CacheResult::Pass | CacheResult::Revalidated) {
            tokio::task::yield_now().await;
            if resp.body_mut().failed_before_start() {
                resp = respond::error(StatusCode::BAD_GATEWAY, "the upstream response broke off");
            }
        }
        if !matches!(result, CacheResult::Local | CacheResult::Tunnel) {
            headers::append_via(resp.headers_mut(), &self.settings.via);
        }
        let bytes = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(log), Some(pending)) = (&self.settings.access_log, pending) {
            log.finish(pending, resp.status(), bytes);
        }
        let (status, elapsed, caching) = (resp.status().as_u16(), started.elapsed(), self.cache.is_some());
        let answered = Answered { method: &method, uri: &uri, mode, status, result, bytes, elapsed, caching };
        super::record::request(answered);
        let us = elapsed.as_micros() as u64;
        if !crate::logging::request_line::enabled() {
            let (mode, cache) = (mode.as_str(), result.as_str());
            tracing::info!(method = %method, target = %uri, mode, status, cache, bytes, us, "request");
        } else if tracing::enabled!(tracing::Level::INFO) {
            crate::logging::request_line::write(&RequestLine {
                method: method.as_str(),
                target: &uri,
                mode: mode.as_str(),
                status,
                cache: result.as_str(),
                bytes,
                us,
            });
        }
        resp
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: ClientInfo,
    ) -> (Response<ProxyBody>, CacheResult, Mode) {
        let local = |status, msg: &str| (respond::error(status, msg), CacheResult::Local);
        let mode_of = |req: &Request<Incoming>| {
            if req.method() == Method::CONNECT {
                Mode::Connect
            } else if req.uri().scheme().is_some() && req.version() != http::Version::HTTP_2 {
                Mode::Forward
            } else {
                Mode::Embedded
            }
        };
        let (limits, head) = (&**self.settings.guard.load(), req.headers());
        if let Err(refusal) = guard::request::check_head(req.method(), req.uri(), req.version(), head, limits)
        {
            return (refusal.response(), CacheResult::Local, mode_of(&req));
        }
        if headers::via_names(req.headers()).any(|name| name == self.settings.via_name) {
            let msg = format!("loop: this request already passed through {}", self.settings.via_name);
            let (resp, result) = local(StatusCode::LOOP_DETECTED, &msg);
            return (resp, result, mode_of(&req));
        }
        if super::purge::is_purge(&req) {
            let mode = mode_of(&req);
            return (Box::pin(super::purge::handle(self, req, client)).await, CacheResult::Local, mode);
        }
        if req.method() == Method::CONNECT {
            return (
                Box::pin(tunnel::open(&self.settings.tunnel, req)).await,
                CacheResult::Tunnel,
                Mode::Connect,
            );
        }
        let tls = client.tls;
        let host_field = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok());
        let (mode, routed) =
            route_request(req.method(), req.version(), req.uri(), host_field, tls, &self.settings.routing);
        let target = match routed {
            Route::Home => return (respond::home_page(), CacheResult::Local, mode),
            Route::AddSlash(loc) => return (respond::redirect(&loc), CacheResult::Local, mode),
            Route::Invalid(msg) => {
                let (resp, result) = local(StatusCode::BAD_REQUEST, &msg);
                return (resp, result, mode);
            }
            Route::Refused(status, msg) => {
                let (resp, result) = local(status, &msg);
                return (resp, result, mode);
            }
            Route::Target(t) => t,
        };
        let (mut parts, body) = req.into_parts();
        if mode == Mode::Reverse {
            let host = parts.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
            headers::add_forwarding(&mut parts.headers, client.addr.ip(), client.tls, host.as_deref());
        }
        let body = match guard::body::prepare(body, self.settings.guard.load().max_request_body).await {
            Ok(body) => body,
            Err(refusal) => return (refusal.response(), CacheResult::Local, mode),
        };
        let ask = Ask { method: parts.method, headers: parts.headers, target };
        let (resp, result) = self.route_to(&ask, body).await;
        (resp, result, mode)
    }

    /// Serves a routed request: from the cache for GET and HEAD when caching is on.
    async fn route_to(self: &Arc<Self>, ask: &Ask, body: ClientBody) -> (Response<ProxyBody>, CacheResult) {
        let cache = match &self.cache {
            Some(c) if ask.method == Method::GET || ask.method == Method::HEAD => c,
            _ => return Box::pin(Fetch::new(self, ask).pass(Some(body), "bypass")).await,
        };
        self.cached(cache, ask).await
    }

    /// GET and HEAD with caching enabled.
    async fn cached(self: &Arc<Self>, cache: &Arc<Cache>, ask: &Ask) -> (Response<ProxyBody>, CacheResult) {
        let mut primary = ask.target.key();
        if let Some(rule) = self.settings.rules.load().matching(primary.url()) {
            if rule.bypass {
                return Box::pin(Fetch::new(self, ask).pass(None, "bypass")).await;
            }
            if !rule.key_headers.is_empty() {
                primary = CacheKey::from_url(format!("{}{}", primary.url(), rule.key_suffix(&ask.headers)));
            }
        }
        let req_cc = CacheControl::parse_request(&ask.headers);
        if req_cc.no_store {
            return Box::pin(Fetch::new(self, ask).pass(None, "request")).await;
        }
        // A second round happens when this request followed a fetch whose response turned
        // out to vary and select another variant: the URL's Vary marker now exists, so the
        // lookup maps this request to its own variant.
        for _ in 0..2 {
            if let Some(answer) = self.cached_once(cache, ask, &primary, &req_cc).await {
                return answer;
            }
        }
        Box::pin(Fetch::new(self, ask).pass(None, "uri-miss")).await
    }

    /// One lookup-and-serve round; `None` asks for another round.
    async fn cached_once(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        ask: &Ask,
        primary: &CacheKey,
        req_cc: &CacheControl,
    ) -> Option<(Response<ProxyBody>, CacheResult)> {
        let Lookup { key, hit, marker } = cache.lookup(primary, &ask.headers).await;
        // Why the request goes forward (RFC 9211 fwd): no entry, a stale one, or one the
        // request's own directives would not accept.
        let mut reason = if marker.is_some() && hit.is_none() { "vary-miss" } else { "uri-miss" };
        let stale = match hit {
            // One assessment (age, lifetime, directives) decides and then labels the answer.
            Some(hit) => {
                let a = self.settings.assess(&hit.head, SystemTime::now());
                match policy::reuse_decision(req_cc, &a.directives, &a.lifetime, a.age) {
                    Reuse::Fresh => {
                        let resp = self.serve_assessed(ask, cache, &key, hit, CacheResult::Hit, None, &a);
                        return Some((resp, CacheResult::Hit));
                    }
                    Reuse::ServeStale => {
                        let resp = self.serve_assessed(ask, cache, &key, hit, CacheResult::Stale, None, &a);
                        return Some((resp, CacheResult::Stale));
                    }
                    Reuse::ServeStaleWhileRevalidate => {
                        self.refresh_in_background(cache, primary, &key, marker, ask);
                        let resp = self.serve_assessed(ask, cache, &key, hit, CacheResult::Stale, None, &a);
                        return Some((resp, CacheResult::Stale));
                    }
                    Reuse::Revalidate => {
                        // Fresh, and not no-cache itself: only the request's directives refused it.
                        let usable = a.lifetime.is_fresh(a.age) && !a.directives.no_cache;
                        reason = if usable { "request" } else { "stale" };
                        Some(hit)
                    }
                }
            }
            None => None,
        };
        if req_cc.only_if_cached {
            let msg = "only-if-cached: no usable stored response";
            return Some((respond::error(StatusCode::GATEWAY_TIMEOUT, msg), CacheResult::Local));
        }
        if ask.method == Method::HEAD && stale.is_none() {
            return Some(Box::pin(Fetch::new(self, ask).pass(None, "uri-miss")).await);
        }
        if stale.is_none() && cache.pass_marks().is_marked(primary.hash(), Instant::now()) {
            return Some(Box::pin(self.pass_marked(cache, ask, primary)).await);
        }
        let mut target = FillTarget { primary: primary.clone(), key, marker, reason, lease: None };
        match cache.join(&target.key) {
            Joined::Leader(guard) => {
                // Unless the request itself refused the stored response, another proxy's
                // newer copy will do.
                if target.reason != "request" {
                    match cache.before_fetch(&target.key, stale.as_ref()).await {
                        BeforeFetch::Landed => {
                            guard.updated(); // another proxy fetched it: look it up again
                            return None;
                        }
                        BeforeFetch::Fetch(lease) => target.lease = lease,
                    }
                }
                // The fill runs to its end even if this request is dropped first (its client
                // went away): the requests coalesced behind it wait on it, and what it stores
                // serves them and those after. So it owns what it uses.
                let fill = {
                    let (proxy, cache, ask) = (self.clone(), cache.clone(), ask.clone());
                    async move { Fetch::new(&proxy, &ask).fill(&cache, &target, guard, stale).await }
                };
                Some(FinishedEvenIfDropped::new(fill).await)
            }
            Joined::Follower(rx) => Box::pin(self.follow(ask, cache, &target, rx)).await,
        }
    }

    /// A URL whose responses must not be stored (hit-for-pass): straight to the origin, no
    /// queueing behind another request. A response that may now be stored clears the mark, so
    /// the next request caches it.
    async fn pass_marked(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        ask: &Ask,
        primary: &CacheKey,
    ) -> (Response<ProxyBody>, CacheResult) {
        let (resp, result) = Fetch::new(self, ask).pass(None, "uri-miss").await;
        if result == CacheResult::Pass {
            let view = self.settings.policy_headers(resp.headers());
            let storable =
                policy::is_storable(&Method::GET, &ask.headers, resp.status(), &view, &self.settings.policy);
            match storable {
                Ok(()) => cache.pass_marks().clear(primary.hash()),
                Err(why) => {
                    tracing::debug!(key = primary.url(), reason = why.as_str(), "not storable (hit-for-pass)")
                }
            }
        }
        (resp, result)
    }

    /// Serves a stored response.
    pub(super) fn serve(
        &self,
        ask: &Ask,
        cache: &Arc<Cache>,
        key: &CacheKey,
        hit: CachedResponse,
        result: CacheResult,
        forwarded: Option<Forwarded>,
    ) -> Response<ProxyBody> {
        let assessed = self.settings.assess(&hit.head, SystemTime::now());
        self.serve_assessed(ask, cache, key, hit, result, forwarded, &assessed)
    }

    /// Serves a stored response already assessed by the caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn serve_assessed(
        &self,
        ask: &Ask,
        cache: &Arc<Cache>,
        key: &CacheKey,
        hit: CachedResponse,
        result: CacheResult,
        forwarded: Option<Forwarded>,
        assessed: &Assessed,
    ) -> Response<ProxyBody> {
        let (age, ttl) = (assessed.age, assessed.ttl());
        let reply = Reply {
            method: &ask.method,
            req_headers: &ask.headers,
            cache_name: &self.settings.cache_name,
            targeted: self.settings.targeted_cache_control.as_ref(),
            result,
            status: CacheStatus {
                fwd: forwarded.map(|f| f.reason),
                fwd_status: forwarded.and_then(|f| f.status),
                ttl: Some(ttl),
                stored: false,
                collapsed: false,
                detail: None,
            },
            age: Some(age),
        };
        let (cache, hash) = (cache.clone(), *key.hash());
        reply.stored(hit, move || {
            tokio::spawn(async move { cache.drop_corrupt(&hash).await });
        })
    }

    /// Waits for another request's fetch of the same key.
    async fn follow(
        self: &Arc<Self>,
        ask: &Ask,
        cache: &Arc<Cache>,
        target: &FillTarget,
        slot: Arc<Slot>,
    ) -> Option<(Response<ProxyBody>, CacheResult)> {
        let key = &target.key;
        loop {
            match slot.verdict().await {
                Phase::Waiting => continue, // never a verdict
                Phase::Ready(fill)
                    if fill.joinable() && selects(&target.primary, key, &fill, &ask.headers) =>
                {
                    let reply = Reply {
                        method: &ask.method,
                        req_headers: &ask.headers,
                        cache_name: &self.settings.cache_name,
                        targeted: self.settings.targeted_cache_control.as_ref(),
                        result: CacheResult::Collapsed,
                        status: CacheStatus {
                            fwd: Some("uri-miss"),
                            fwd_status: Some(fill.head().status.as_u16()),
                            ttl: None,
                            stored: true,
                            collapsed: true,
                            detail: None,
                        },
                        age: None,
                    };
                    return Some((reply.fill(&fill), CacheResult::Collapsed));
                }
                Phase::Updated => {
                    if let Some(hit) = cache.lookup_exact(key).await {
                        return Some((
                            self.serve(ask, cache, key, hit, CacheResult::Hit, None),
                            CacheResult::Hit,
                        ));
                    }
                    return None;
                }
                Phase::Failed(status, msg) => {
                    return Some((respond::error(status, &msg), CacheResult::Local))
                }
                // The leader's upstream died mid-body before this request could join: release
                // it with 502 rather than have every waiting client fetch again.
                Phase::Ready(fill) if fill.upstream_failure().is_some() => {
                    let why = fill.upstream_failure().map(|e| e.to_string()).unwrap_or_default();
                    return Some((respond::error(StatusCode::BAD_GATEWAY, &why), CacheResult::Local));
                }
                // Another variant: look up again (the Vary marker now maps this request to
                // its own variant). A response that may not serve others: fetch alone.
                Phase::Ready(_) => return None,
                Phase::NotShared => return Some(Fetch::new(self, ask).pass(None, "uri-miss").await),
            }
        }
    }

    /// stale-while-revalidate: one background revalidation per key (RFC 5861 §3).
    fn refresh_in_background(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        primary: &CacheKey,
        key: &CacheKey,
        marker: Option<VaryMarker>,
        ask: &Ask,
    ) {
        let Joined::Leader(guard) = cache.join(key) else {
            return;
        };
        let (this, cache) = (self.clone(), cache.clone());
        let target =
            FillTarget { primary: primary.clone(), key: key.clone(), marker, reason: "stale", lease: None };
        let ask = Ask { method: Method::GET, headers: ask.headers.clone(), target: ask.target.clone() };
        tokio::spawn(async move {
            let stale = cache.lookup_exact(&target.key).await;
            let _ = Fetch::new(&this, &ask).fill(&cache, &target, guard, stale).await;
        });
    }
}

/// Where a fetch's response is stored: the URL's key, the key the lookup mapped the request
/// to (a variant's when the URL varies), and the URL's Vary marker if it has one.
pub(super) struct FillTarget {
    pub primary: CacheKey,
    pub key: CacheKey,
    pub marker: Option<VaryMarker>,
    /// Why the request went forward, for Cache-Status `fwd` (RFC 9211 §2.2).
    pub reason: &'static str,
    /// The fleet-wide lease for this fetch (shared tier), held until the entry is shared.
    pub lease: Option<Arc<Lease>>,
}

/// How a response served from storage involved the origin (RFC 9211 `fwd`, `fwd-status`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Forwarded {
    pub reason: &'static str,
    pub status: Option<u16>,
}

/// Whether a fill in progress holds the response this request selects: the same key, or a
/// variant whose Vary-nominated fields match this request's (RFC 9111 §4.1).
fn selects(primary: &CacheKey, key: &CacheKey, fill: &Fill, req_headers: &http::HeaderMap) -> bool {
    let stored = &fill.head().key;
    if stored == key.url() {
        return true;
    }
    match policy::vary::vary_names(&fill.head().headers) {
        Some(names) => primary.is_variant(stored, &policy::vary::variant_selector(&names, req_headers)),
        None => false,
    }
}
