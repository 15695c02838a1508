//! The admin routes: `/metrics`, `/api/stats`, `/api/entries`, `/api/cache` and the
//! dashboard at `/`. Errors are JSON `{"error": "..."}` with a 4xx status.

use std::time::SystemTime;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::json;

use super::{dashboard, query, stats, Admin};
use crate::cache::key::hex;
use crate::metrics;

/// Entries listed per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

type Reply = Response<Full<Bytes>>;

/// Answers one admin request.
pub(super) async fn handle<B>(admin: &Admin, req: Request<B>) -> Reply {
    let (method, path, q) =
        (req.method().clone(), req.uri().path().to_string(), req.uri().query().map(str::to_string));
    let q = q.as_deref();
    match (path.as_str(), &method) {
        ("/", &Method::GET) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(dashboard::PAGE.as_bytes()),
        ),
        ("/metrics", &Method::GET) => {
            respond(StatusCode::OK, metrics::CONTENT_TYPE, Bytes::from(metrics::encode(&admin.registry)))
        }
        ("/api/stats", &Method::GET) => match query::parse(q, &[]) {
            Ok(_) => json_reply(StatusCode::OK, &stats::snapshot(admin.collector.as_ref())),
            Err(e) => error(StatusCode::BAD_REQUEST, &e),
        },
        ("/api/entries", &Method::GET) => entries(admin, q).await,
        ("/api/cache", &Method::DELETE) => purge(admin, q).await,
        ("/" | "/metrics" | "/api/stats" | "/api/entries" | "/api/cache", _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed on {path}"))
        }
        _ => error(StatusCode::NOT_FOUND, &format!("no such admin endpoint: {path}")),
    }
}

#[derive(Serialize)]
struct EntryView {
    url: String,
    hash: String,
    status: u16,
    size: u64,
    age_s: u64,
    ttl_s: i64,
    in_memory: bool,
    on_disk: bool,
    /// The request-field values that select this variant, when the URL varies.
    variant: Option<String>,
}

async fn entries(admin: &Admin, q: Option<&str>) -> Reply {
    let params = match query::parse(q, &["prefix", "limit", "cursor"]) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, &format!("limit must be 1 to {MAX_LIMIT}")),
    };
    let cursor = match params.get("cursor") {
        None => None,
        Some(c) => match crate::cache::key::parse_hex(c) {
            Some(h) => Some(h),
            None => return error(StatusCode::BAD_REQUEST, "cursor must be the 64-hex hash a page returned"),
        },
    };
    let prefix = match params.get("prefix").filter(|p| !p.is_empty()) {
        None => String::new(),
        Some(p) => match crate::cache::key::key_of_url(p) {
            Ok(k) => k,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("prefix: {e}")),
        },
    };
    let Some(cache) = admin.proxy.cache().cloned() else {
        return json_reply(StatusCode::OK, &json!({ "entries": [], "next_cursor": null }));
    };
    let found = tokio::task::spawn_blocking(move || cache.entries_where(move |k| k.starts_with(&prefix)))
        .await
        .unwrap_or_default();
    let now = SystemTime::now();
    let mut page = Vec::with_capacity(limit);
    let mut next = None;
    for e in found.iter().filter(|e| e.is_response() && cursor.is_none_or(|c| e.hash > c)) {
        if page.len() == limit {
            next = page.last().map(|v: &EntryView| v.hash.clone());
            break;
        }
        let a = admin.proxy.settings().assess(&e.head, now);
        let (url, variant) = match e.head.key.split_once('\n') {
            Some((u, v)) => (u.to_string(), Some(v.replace('\n', " "))),
            None => (e.head.key.clone(), None),
        };
        page.push(EntryView {
            url,
            hash: hex(&e.hash),
            status: e.head.status.as_u16(),
            size: e.size,
            age_s: a.age.as_secs(),
            ttl_s: a.ttl(),
            in_memory: e.in_memory,
            on_disk: e.on_disk,
            variant,
        });
    }
    json_reply(StatusCode::OK, &json!({ "entries": page, "next_cursor": next }))
}

async fn purge(admin: &Admin, q: Option<&str>) -> Reply {
    let params = match query::parse(q, &["url", "prefix"]) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let Some(cache) = admin.proxy.cache() else {
        return json_reply(StatusCode::OK, &json!({ "purged": 0 }));
    };
    let purged = match (params.get("url"), params.get("prefix")) {
        (Some(url), None) => match crate::cache::key::key_of_url(url) {
            Ok(key) => cache.purge_url(&key).await,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("url: {e}")),
        },
        (None, Some(prefix)) => match crate::cache::key::key_of_url(prefix) {
            Ok(key) => cache.purge_prefix(&key).await,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("prefix: {e}")),
        },
        _ => return error(StatusCode::BAD_REQUEST, "give exactly one of url= or prefix="),
    };
    metrics::global().purged.add(1, purged as u64);
    tracing::info!(purged, query = q.unwrap_or_default(), "admin purge");
    json_reply(StatusCode::OK, &json!({ "purged": purged }))
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}

fn json_reply(status: StatusCode, value: &impl Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    respond(status, "application/json", Bytes::from(body))
}

fn error(status: StatusCode, msg: &str) -> Reply {
    json_reply(status, &json!({ "error": msg }))
}
