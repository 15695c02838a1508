//! The request pipeline: route, look up, decide (through the policy), and serve from the
//! cache, from another request's fetch, or from the origin. The only module that talks to
//! both the cache and the upstream.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;

use super::body::ProxyBody;
use super::fetch::Fetch;
use super::reply::{age_and_ttl, CacheResult, CacheStatus, Reply};
use super::respond;
use super::route::{route, Route, Target};
use super::upstream::Upstream;
use crate::cache::coalesce::{Joined, Phase};
use crate::cache::key::CacheKey;
use crate::cache::policy::{self, CacheControl, PolicyConfig, Reuse};
use crate::cache::{Cache, CachedResponse};

/// Settings of the pipeline.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// Port used when the URL names none.
    pub upstream_port: u16,
    /// Caching policy knobs.
    pub policy: PolicyConfig,
    /// Name of this cache in `Cache-Status`.
    pub cache_name: String,
}

/// The proxy: shared by every connection.
pub struct Proxy {
    pub(super) cache: Option<Arc<Cache>>,
    pub(super) upstream: Upstream,
    pub(super) settings: ProxySettings,
}

/// A request's parts the pipeline keeps after the body is taken.
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

    /// The cache, if caching is enabled.
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }

    /// Handles one request and logs it.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let (resp, result) = self.dispatch(req).await;
        let bytes = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        tracing::info!(
            method = %method,
            target = %uri,
            status = resp.status().as_u16(),
            cache = result.as_str(),
            bytes,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        resp
    }

    async fn dispatch(self: &Arc<Self>, req: Request<Incoming>) -> (Response<ProxyBody>, CacheResult) {
        if req.method() == Method::CONNECT || req.uri().scheme().is_some() {
            let msg = "this proxy serves /<host>/<path> URLs; forward-proxy requests are not supported";
            return (respond::error(StatusCode::NOT_IMPLEMENTED, msg), CacheResult::Local);
        }
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let target = match route(pq, self.settings.upstream_port) {
            Route::Home => return (respond::home_page(), CacheResult::Local),
            Route::AddSlash(loc) => return (respond::redirect(&loc), CacheResult::Local),
            Route::Invalid(msg) => {
                return (respond::error(StatusCode::BAD_REQUEST, &msg), CacheResult::Local)
            }
            Route::Target(t) => t,
        };
        let (parts, body) = req.into_parts();
        let ask = Ask { method: parts.method, headers: parts.headers, target };
        let cache = match &self.cache {
            Some(c) if ask.method == Method::GET || ask.method == Method::HEAD => c.clone(),
            _ => return Fetch::new(self, &ask).pass(Some(body), "bypass").await,
        };
        self.cached(cache, ask).await
    }

    /// GET and HEAD with caching enabled.
    async fn cached(self: &Arc<Self>, cache: Arc<Cache>, ask: Ask) -> (Response<ProxyBody>, CacheResult) {
        let t = &ask.target;
        let key = CacheKey::new("http", &t.host, t.port, &t.path_and_query);
        let req_cc = CacheControl::parse_request(&ask.headers);
        if req_cc.no_store {
            return Fetch::new(self, &ask).pass(None, "request").await;
        }
        let stale = match cache.lookup(&key).await {
            Some(hit) => match self.reuse(&req_cc, &hit) {
                Reuse::Fresh => {
                    return (self.serve(&ask, &cache, &key, hit, CacheResult::Hit), CacheResult::Hit)
                }
                Reuse::ServeStale => {
                    return (self.serve(&ask, &cache, &key, hit, CacheResult::Stale), CacheResult::Stale)
                }
                Reuse::ServeStaleWhileRevalidate => {
                    self.refresh_in_background(&cache, &key, &ask);
                    return (self.serve(&ask, &cache, &key, hit, CacheResult::Stale), CacheResult::Stale);
                }
                Reuse::Revalidate => Some(hit),
            },
            None => None,
        };
        if req_cc.only_if_cached {
            let msg = "only-if-cached: no usable stored response";
            return (respond::error(StatusCode::GATEWAY_TIMEOUT, msg), CacheResult::Local);
        }
        if ask.method == Method::HEAD && stale.is_none() {
            return Fetch::new(self, &ask).pass(None, "uri-miss").await;
        }
        match cache.join(&key) {
            Joined::Leader(guard) => Fetch::new(self, &ask).fill(&cache, &key, guard, stale).await,
            Joined::Follower(rx) => self.follow(&ask, &cache, &key, rx).await,
        }
    }

    fn reuse(&self, req_cc: &CacheControl, hit: &CachedResponse) -> Reuse {
        let now = SystemTime::now();
        let head = &hit.head;
        let age = policy::AgeInputs::from_response(&head.headers, head.request_time, head.response_time)
            .current_age(now);
        let lifetime =
            policy::freshness_lifetime(head.status, &head.headers, head.response_time, &self.settings.policy);
        let resp_cc = CacheControl::parse(&head.headers);
        policy::reuse_decision(req_cc, &resp_cc, &lifetime, age)
    }

    /// Serves a stored response.
    pub(super) fn serve(
        &self,
        ask: &Ask,
        cache: &Arc<Cache>,
        key: &CacheKey,
        hit: CachedResponse,
        result: CacheResult,
    ) -> Response<ProxyBody> {
        let (age, ttl) = age_and_ttl(&hit.head, &self.settings.policy, SystemTime::now());
        let fwd = match result {
            CacheResult::Revalidated => Some("stale"),
            _ => None,
        };
        let reply = Reply {
            method: &ask.method,
            req_headers: &ask.headers,
            cache_name: &self.settings.cache_name,
            result,
            status: CacheStatus {
                fwd,
                fwd_status: fwd.map(|_| 304),
                ttl: Some(ttl),
                stored: false,
                collapsed: false,
                detail: None,
            },
            age: Some(age),
        };
        let (cache, key) = (cache.clone(), key.clone());
        reply.stored(hit, move || {
            tokio::spawn(async move { cache.drop_corrupt(&key).await });
        })
    }

    /// Waits for another request's fetch of the same key.
    async fn follow(
        self: &Arc<Self>,
        ask: &Ask,
        cache: &Arc<Cache>,
        key: &CacheKey,
        mut rx: watch::Receiver<Phase>,
    ) -> (Response<ProxyBody>, CacheResult) {
        loop {
            let phase = rx.borrow_and_update().clone();
            match phase {
                Phase::Waiting => {
                    if rx.changed().await.is_err() {
                        return Fetch::new(self, ask).pass(None, "uri-miss").await;
                    }
                }
                Phase::Ready(fill) if fill.joinable() => {
                    let reply = Reply {
                        method: &ask.method,
                        req_headers: &ask.headers,
                        cache_name: &self.settings.cache_name,
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
                    return (reply.fill(&fill), CacheResult::Collapsed);
                }
                Phase::Updated => {
                    if let Some(hit) = cache.lookup(key).await {
                        return (self.serve(ask, cache, key, hit, CacheResult::Hit), CacheResult::Hit);
                    }
                    return Fetch::new(self, ask).pass(None, "uri-miss").await;
                }
                Phase::Failed(status, msg) => return (respond::error(status, &msg), CacheResult::Local),
                Phase::Ready(_) | Phase::NotShared => {
                    return Fetch::new(self, ask).pass(None, "uri-miss").await
                }
            }
        }
    }

    /// stale-while-revalidate: one background revalidation per key (RFC 5861 §3).
    fn refresh_in_background(self: &Arc<Self>, cache: &Arc<Cache>, key: &CacheKey, ask: &Ask) {
        let Joined::Leader(guard) = cache.join(key) else {
            return;
        };
        let (this, cache, key) = (self.clone(), cache.clone(), key.clone());
        let ask = Ask { method: Method::GET, headers: ask.headers.clone(), target: ask.target.clone() };
        tokio::spawn(async move {
            let stale = cache.lookup(&key).await;
            let _ = Fetch::new(&this, &ask).fill(&cache, &key, guard, stale).await;
        });
    }
}
