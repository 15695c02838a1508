//! The PURGE method on the proxy port: a client the `--purge-allow` list admits removes the
//! URL it names (in any addressing mode, with its Vary variants) from both tiers. The answer
//! is JSON: 200 with the count, 404 when nothing was stored, 403 for other clients.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::route::{route_request, Route};
use super::{ClientInfo, Proxy};

/// Whether a request is a PURGE.
pub(super) fn is_purge(req: &Request<Incoming>) -> bool {
    req.method().as_str() == "PURGE"
}

/// Answers a PURGE.
pub(super) async fn handle(proxy: &Proxy, req: Request<Incoming>, client: ClientInfo) -> Response<ProxyBody> {
    let settings = proxy.settings();
    let allowed = settings.purge_allow.iter().any(|n| n.contains(client.addr.ip()));
    if !allowed {
        return json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "error": "PURGE is not allowed from this address" }),
        );
    }
    let host = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok());
    let tls = client.tls;
    let (_, routed) = route_request(req.method(), req.version(), req.uri(), host, tls, &settings.routing);
    let Route::Target(target) = routed else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "PURGE needs a URL this proxy serves" }),
        );
    };
    let key = target.key();
    let purged = match proxy.cache() {
        Some(cache) => cache.purge_url(key.url()).await,
        None => 0,
    };
    crate::metrics::global().purged.add(0, purged as u64);
    tracing::info!(key = key.url(), purged, "PURGE");
    let status = if purged > 0 { StatusCode::OK } else { StatusCode::NOT_FOUND };
    json(status, &serde_json::json!({ "purged": purged, "key": key.url() }))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}
