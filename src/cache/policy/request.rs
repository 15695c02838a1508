//! Reusing stored responses for a request (RFC 9111 §4, §4.2.4, §5.2.1),
//! validation (§4.3.1, §4.3.4) and client conditionals (§4.3.2,
//! RFC 9110 §13.1).

use std::time::Duration;

use http::header::{
    CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName};

use super::cache_control::CacheControl;
use super::freshness::Lifetime;
use super::{header_date, secs, split_list};

/// What to do with a stored response for the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reuse {
    /// Fresh: serve from cache (§4.2).
    Fresh,
    /// Stale, but the client accepts it (`max-stale`, §5.2.1.2): serve it
    /// without contacting the origin.
    ServeStale,
    /// Stale within the response's `stale-while-revalidate` window
    /// (RFC 5861 §3): serve it and revalidate in the background.
    ServeStaleWhileRevalidate,
    /// Must be validated with the origin before use (§4.3). If the request
    /// has `only-if-cached` the caller answers 504 instead (§5.2.1.7).
    Revalidate,
}

/// Decides whether a stored response may be reused (RFC 9111 §4, §4.2.4,
/// §5.2.1, §5.2.2; RFC 5861 §3). `age` is the current age (§4.2.3).
///
/// 1. Response `no-cache` (§5.2.2.4) or request `no-cache` (§5.2.1.4):
///    revalidate.
/// 2. Request `max-age=N` with `age > N` (§5.2.1.1): revalidate.
/// 3. Request `min-fresh=N` (§5.2.1.3): unless the response is fresh and
///    `lifetime − age ≥ N`, revalidate (even with `max-stale`, deviation 9).
/// 4. Fresh (`lifetime > age`, §4.2): [`Reuse::Fresh`].
/// 5. Stale with `must-revalidate` (§5.2.2.2), `proxy-revalidate`
///    (§5.2.2.8) or `s-maxage` (which implies proxy-revalidate, §5.2.2.10):
///    revalidate; stale responses are never served (§4.2.4).
/// 6. Staleness within the response's `stale-while-revalidate` window:
///    [`Reuse::ServeStaleWhileRevalidate`]. It is checked before `max-stale`
///    so that the stored response gets refreshed when both apply.
/// 7. Request `max-stale` (unbounded, or staleness ≤ bound, §5.2.1.2):
///    [`Reuse::ServeStale`].
/// 8. Otherwise revalidate.
///
/// [`Lifetime::None`] is always stale; its staleness is the whole age.
pub fn reuse_decision(
    req_cc: &CacheControl,
    resp_cc: &CacheControl,
    lifetime: &Lifetime,
    age: Duration,
) -> Reuse {
    if resp_cc.no_cache || req_cc.no_cache {
        return Reuse::Revalidate;
    }
    if req_cc.max_age.is_some_and(|max_age| age > secs(max_age)) {
        return Reuse::Revalidate;
    }
    let fresh = lifetime.is_fresh(age);
    if let Some(min_fresh) = req_cc.min_fresh {
        if !fresh || lifetime.remaining(age) < secs(min_fresh) {
            return Reuse::Revalidate;
        }
    }
    if fresh {
        return Reuse::Fresh;
    }
    if forbids_stale(resp_cc) {
        return Reuse::Revalidate;
    }
    let staleness = lifetime.staleness(age);
    if resp_cc.stale_while_revalidate.is_some_and(|window| staleness <= secs(window)) {
        return Reuse::ServeStaleWhileRevalidate;
    }
    match req_cc.max_stale {
        Some(None) => Reuse::ServeStale,
        Some(Some(bound)) if staleness <= secs(bound) => Reuse::ServeStale,
        _ => Reuse::Revalidate,
    }
}

/// Response directives that forbid serving it stale in a shared cache
/// (RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10).
fn forbids_stale(resp_cc: &CacheControl) -> bool {
    resp_cc.must_revalidate || resp_cc.proxy_revalidate || resp_cc.s_maxage.is_some()
}

/// Whether `stale-if-error` (RFC 5861 §4) allows serving the stored response
/// after the origin failed (5xx or unreachable).
///
/// The window is the response's or the request's `stale-if-error` (the
/// smaller one when both are present) and the staleness must not exceed it.
/// Refused when the response has no-cache, must-revalidate, proxy-revalidate
/// or s-maxage, or the request has no-cache (RFC 9111 §4.2.4; deviation 8).
pub fn stale_if_error_allows(
    req_cc: &CacheControl,
    resp_cc: &CacheControl,
    lifetime: &Lifetime,
    age: Duration,
) -> bool {
    if resp_cc.no_cache || req_cc.no_cache || forbids_stale(resp_cc) {
        return false;
    }
    let window = match (req_cc.stale_if_error, resp_cc.stale_if_error) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return false,
    };
    lifetime.staleness(age) <= secs(window)
}

/// Whether the stored response carries a validator usable for a conditional
/// request: an `ETag`, or a valid `Last-Modified` (RFC 9111 §4.3.1,
/// RFC 9110 §8.8).
pub fn has_validator(resp_headers: &HeaderMap) -> bool {
    resp_headers.contains_key(ETAG) || header_date(resp_headers, &LAST_MODIFIED).is_some()
}

/// The conditional headers for validating a stored response (RFC 9111
/// §4.3.1): `If-None-Match` from `ETag`, `If-Modified-Since` from a valid
/// `Last-Modified`. Empty when the response has no validator.
pub fn conditional_headers(resp_headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(etag) = resp_headers.get(ETAG) {
        out.insert(IF_NONE_MATCH, etag.clone());
    }
    if header_date(resp_headers, &LAST_MODIFIED).is_some() {
        if let Some(last_modified) = resp_headers.get(LAST_MODIFIED) {
            out.insert(IF_MODIFIED_SINCE, last_modified.clone());
        }
    }
    out
}

/// Fields that a 304 never replaces in the stored response (RFC 9111
/// §4.3.4): Content-Length, hop-by-hop fields (§3.1, RFC 9110 §7.6.1), the
/// proxy authentication fields (§3.1) and Content-Encoding, which the stored
/// body depends on.
fn never_merged(name: &HeaderName) -> bool {
    const EXTRA_HOP_BY_HOP: [&str; 2] = ["keep-alive", "proxy-connection"];
    [
        CONTENT_LENGTH,
        CONTENT_ENCODING,
        CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || EXTRA_HOP_BY_HOP.contains(&name.as_str())
        || name.as_str() == "proxy-authentication-info"
}

/// Freshens a stored response with a `304 Not Modified` (RFC 9111 §4.3.4):
/// every field present in the 304 replaces all stored lines of that field,
/// except Content-Length, Content-Encoding, hop-by-hop fields (including
/// those named in the 304's `Connection`) and proxy authentication fields.
/// Fields absent from the 304 are kept.
pub fn merge_304(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let connection_listed: Vec<String> = not_modified
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| {
            let line = String::from_utf8_lossy(value.as_bytes());
            split_list(&line).into_iter().map(str::to_ascii_lowercase).collect::<Vec<_>>()
        })
        .collect();
    let mut merged = stored.clone();
    for name in not_modified.keys() {
        if never_merged(name) || connection_listed.iter().any(|c| c == name.as_str()) {
            continue;
        }
        merged.remove(name);
        for value in not_modified.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

/// Whether the client's own conditional request matches the stored response,
/// i.e. the cache should answer `304 Not Modified` (RFC 9111 §4.3.2,
/// RFC 9110 §13.1.2, §13.1.3, §13.2.2).
///
/// `If-None-Match` (`*` or a list of entity tags, weak comparison) takes
/// precedence; `If-Modified-Since` is only evaluated when there is no
/// `If-None-Match`, compared with the stored `Last-Modified`, or `Date` if
/// there is none (deviation 11).
pub fn client_conditional_matches(req_headers: &HeaderMap, stored_resp_headers: &HeaderMap) -> bool {
    if req_headers.contains_key(IF_NONE_MATCH) {
        let stored_etag = stored_resp_headers.get(ETAG).and_then(|v| v.to_str().ok()).and_then(opaque_tag);
        return req_headers.get_all(IF_NONE_MATCH).iter().any(|value| {
            let Ok(line) = value.to_str() else {
                return false;
            };
            split_etag_list(line)
                .into_iter()
                .any(|member| member == "*" || (stored_etag.is_some() && opaque_tag(member) == stored_etag))
        });
    }
    let mut ims_lines = req_headers.get_all(IF_MODIFIED_SINCE).iter();
    let (Some(ims), None) = (ims_lines.next(), ims_lines.next()) else {
        // Absent, or more than one line: ignored (RFC 9110 §13.1.3).
        return false;
    };
    let Some(ims) = ims.to_str().ok().and_then(|v| httpdate::parse_http_date(v.trim()).ok()) else {
        return false;
    };
    let last_modified =
        header_date(stored_resp_headers, &LAST_MODIFIED).or_else(|| header_date(stored_resp_headers, &DATE));
    last_modified.is_some_and(|lm| lm <= ims)
}

/// The opaque-tag of an entity-tag for weak comparison (RFC 9110 §8.8.3.2):
/// the `W/` prefix is dropped, quotes are kept. Unquoted (non-conforming)
/// tags are compared verbatim.
fn opaque_tag(tag: &str) -> Option<&str> {
    let tag = tag.trim_matches([' ', '\t']);
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    (!tag.is_empty()).then_some(tag)
}

/// Splits an `If-None-Match` list, ignoring commas inside quoted tags
/// (entity tags have no escapes, RFC 9110 §8.8.3).
fn split_etag_list(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&line[start..]);
    out.into_iter().map(|m| m.trim_matches([' ', '\t'])).filter(|m| !m.is_empty()).collect()
}

#[cfg(test)]
mod tests;
