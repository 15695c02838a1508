//! Whether a response may be stored by a shared cache (RFC 9111 §3).

use std::fmt;

use http::header::{AUTHORIZATION, EXPIRES, VARY};
use http::{HeaderMap, Method, StatusCode};

use super::cache_control::CacheControl;
use super::{split_list, PolicyConfig};

/// Why a response must not be stored (RFC 9111 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotStorable {
    /// The request method is not GET (§3: method understood and cacheable;
    /// HEAD is handled by the caller).
    Method,
    /// Non-final (1xx), 206 or 304 status (§3, deviation 5).
    Status,
    /// `no-store` in the request (§5.2.1.5).
    NoStoreRequest,
    /// `no-store` in the response (§5.2.2.5).
    NoStoreResponse,
    /// `private` in the response and we are a shared cache (§5.2.2.7).
    Private,
    /// Request carried `Authorization` and the response does not explicitly
    /// allow shared caching (§3.5).
    Authorization,
    /// The response has `Vary: *` (deviation 6).
    VaryStar,
    /// No explicit freshness, no `public`, and the status is not heuristically
    /// cacheable (§3, RFC 9110 §15.1).
    NotCacheableByDefault,
}

impl NotStorable {
    /// A short, stable, machine-friendly name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::NoStoreRequest => "no-store-request",
            NotStorable::NoStoreResponse => "no-store-response",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::VaryStar => "vary-star",
            NotStorable::NotCacheableByDefault => "not-cacheable-by-default",
        }
    }
}

impl fmt::Display for NotStorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for NotStorable {}

/// Status codes that are heuristically cacheable ("cacheable by default"),
/// RFC 9110 §15.1: 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501.
pub fn is_cacheable_by_default(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501)
}

/// Whether the response's `Vary` field contains the member `*`
/// (RFC 9110 §12.5.5, RFC 9111 §4.1).
pub fn has_vary_star(resp_headers: &HeaderMap) -> bool {
    resp_headers.get_all(VARY).iter().any(|value| {
        let line = String::from_utf8_lossy(value.as_bytes());
        split_list(&line).contains(&"*")
    })
}

/// Decides whether a shared cache may store this response (RFC 9111 §3,
/// §3.5, §5.2.1.5, §5.2.2.5, §5.2.2.7).
///
/// Checks, in order: method is GET; status is final and not 206/304;
/// no `no-store` in request or response; not `private` (shared cache);
/// `Authorization` only with `public`, `s-maxage` or `must-revalidate` in the
/// response (§3.5); no `Vary: *`. Then the response must have `public`,
/// `max-age`, `s-maxage` (shared), `Expires`, or a status that is cacheable
/// by default. With `cfg.force_ttl` every remaining 2xx is storable.
pub fn is_storable(
    method: &Method,
    req_headers: &HeaderMap,
    status: StatusCode,
    resp_headers: &HeaderMap,
    cfg: &PolicyConfig,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }
    let req_cc = CacheControl::parse(req_headers);
    if req_cc.no_store {
        return Err(NotStorable::NoStoreRequest);
    }
    let resp_cc = CacheControl::parse(resp_headers);
    if resp_cc.no_store {
        return Err(NotStorable::NoStoreResponse);
    }
    if cfg.shared && resp_cc.private {
        return Err(NotStorable::Private);
    }
    if cfg.shared
        && req_headers.contains_key(AUTHORIZATION)
        && !(resp_cc.public || resp_cc.s_maxage.is_some() || resp_cc.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if has_vary_star(resp_headers) {
        return Err(NotStorable::VaryStar);
    }
    if cfg.force_ttl && status.is_success() {
        return Ok(());
    }
    let explicitly_cacheable = resp_cc.public
        || resp_cc.max_age.is_some()
        || (cfg.shared && resp_cc.s_maxage.is_some())
        || resp_headers.contains_key(EXPIRES);
    if explicitly_cacheable || is_cacheable_by_default(status) {
        Ok(())
    } else {
        Err(NotStorable::NotCacheableByDefault)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_headers;
    use super::*;

    type Row = (
        &'static str,
        Method,
        &'static [(&'static str, &'static str)],
        u16,
        &'static [(&'static str, &'static str)],
        bool,
        Result<(), NotStorable>,
    );

    #[test]
    fn storable_table() {
        use NotStorable as N;
        let rows: Vec<Row> = vec![
            ("§3 plain 200 GET storable", Method::GET, &[], 200, &[], false, Ok(())),
            (
                "§3 POST not storable",
                Method::POST,
                &[],
                200,
                &[("cache-control", "max-age=60")],
                false,
                Err(N::Method),
            ),
            ("§3 HEAD left to the caller", Method::HEAD, &[], 200, &[], false, Err(N::Method)),
            ("§3 1xx is not final", Method::GET, &[], 103, &[], false, Err(N::Status)),
            ("§3.3 206 not stored (no range support)", Method::GET, &[], 206, &[], false, Err(N::Status)),
            (
                "§4.3.4 304 never stored as new response",
                Method::GET,
                &[],
                304,
                &[("cache-control", "max-age=60")],
                false,
                Err(N::Status),
            ),
            (
                "§5.2.1.5 request no-store",
                Method::GET,
                &[("cache-control", "no-store")],
                200,
                &[],
                false,
                Err(N::NoStoreRequest),
            ),
            (
                "§5.2.2.5 response no-store",
                Method::GET,
                &[],
                200,
                &[("cache-control", "max-age=60, no-store")],
                false,
                Err(N::NoStoreResponse),
            ),
            (
                "§5.2.2.5 no-store beats force_ttl",
                Method::GET,
                &[],
                200,
                &[("cache-control", "NO-STORE")],
                true,
                Err(N::NoStoreResponse),
            ),
            (
                "§5.2.2.7 private not stored by shared cache",
                Method::GET,
                &[],
                200,
                &[("cache-control", "private, max-age=60")],
                false,
                Err(N::Private),
            ),
            (
                "§5.2.2.7 private beats force_ttl",
                Method::GET,
                &[],
                200,
                &[("cache-control", r#"private="set-cookie""#)],
                true,
                Err(N::Private),
            ),
            (
                "§3.5 Authorization without permission",
                Method::GET,
                &[("authorization", "Bearer x")],
                200,
                &[("cache-control", "max-age=60")],
                false,
                Err(N::Authorization),
            ),
            (
                "§3.5 Authorization with public",
                Method::GET,
                &[("authorization", "Bearer x")],
                200,
                &[("cache-control", "public")],
                false,
                Ok(()),
            ),
            (
                "§3.5 Authorization with s-maxage",
                Method::GET,
                &[("authorization", "Bearer x")],
                200,
                &[("cache-control", "s-maxage=10")],
                false,
                Ok(()),
            ),
            (
                "§3.5 Authorization with must-revalidate",
                Method::GET,
                &[("authorization", "Bearer x")],
                200,
                &[("cache-control", "must-revalidate")],
                false,
                Ok(()),
            ),
            (
                "§3.5 Authorization not overridden by force_ttl",
                Method::GET,
                &[("authorization", "Bearer x")],
                200,
                &[],
                true,
                Err(N::Authorization),
            ),
            (
                "§4.1 Vary: * never stored",
                Method::GET,
                &[],
                200,
                &[("vary", "accept-encoding, *")],
                false,
                Err(N::VaryStar),
            ),
            (
                "§4.1 ordinary Vary is fine",
                Method::GET,
                &[],
                200,
                &[("vary", "Accept-Encoding")],
                false,
                Ok(()),
            ),
            (
                "§3 302 without explicit freshness",
                Method::GET,
                &[],
                302,
                &[],
                false,
                Err(N::NotCacheableByDefault),
            ),
            ("§3 302 with max-age", Method::GET, &[], 302, &[("cache-control", "max-age=60")], false, Ok(())),
            (
                "§3 500 with Expires",
                Method::GET,
                &[],
                500,
                &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")],
                false,
                Ok(()),
            ),
            ("§3 307 with public", Method::GET, &[], 307, &[("cache-control", "public")], false, Ok(())),
            (
                "§3 503 with s-maxage",
                Method::GET,
                &[],
                503,
                &[("cache-control", "s-maxage=5")],
                false,
                Ok(()),
            ),
            ("§3 404 cacheable by default", Method::GET, &[], 404, &[], false, Ok(())),
            ("§3 force_ttl stores any 2xx (202)", Method::GET, &[], 202, &[], true, Ok(())),
            (
                "§3 force_ttl does not widen non-2xx (503)",
                Method::GET,
                &[],
                503,
                &[],
                true,
                Err(N::NotCacheableByDefault),
            ),
            (
                "§5.2.2.4 no-cache is storable",
                Method::GET,
                &[],
                200,
                &[("cache-control", "no-cache")],
                false,
                Ok(()),
            ),
        ];
        for (name, method, req, status, resp, force_ttl, expected) in rows {
            let cfg = PolicyConfig {
                force_ttl,
                heuristic_lifetime: std::time::Duration::from_secs(60),
                shared: true,
            };
            let got = is_storable(
                &method,
                &test_headers(req),
                StatusCode::from_u16(status).expect("status"),
                &test_headers(resp),
                &cfg,
            );
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn private_cache_may_store_private() {
        let cfg = PolicyConfig { shared: false, ..PolicyConfig::default() };
        let resp = test_headers(&[("cache-control", "private, max-age=60")]);
        assert_eq!(is_storable(&Method::GET, &HeaderMap::new(), StatusCode::OK, &resp, &cfg), Ok(()));
    }

    #[test]
    fn cacheable_by_default_list() {
        let yes = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];
        for code in 100..600u16 {
            let status = StatusCode::from_u16(code).expect("status");
            assert_eq!(is_cacheable_by_default(status), yes.contains(&code), "RFC 9110 §15.1 status {code}");
        }
    }

    #[test]
    fn reason_names() {
        assert_eq!(NotStorable::VaryStar.as_str(), "vary-star");
        assert_eq!(NotStorable::Authorization.to_string(), "authorization");
    }
}
