//! RFC 9111 (HTTP Caching) decision layer for a **shared** cache.
//!
//! Everything in this module is a plain synchronous function: no I/O, no
//! clocks (the current time is always passed in as [`SystemTime`]), no
//! global state. The proxy feeds it headers and timestamps and acts on the
//! answers:
//!
//! * [`cache_control`] parses `Cache-Control` (RFC 9111 §5.2) and the request
//!   `Pragma: no-cache` fallback (§5.4).
//! * [`storable`] decides whether a response may be stored at all (§3).
//! * [`freshness`] computes the freshness lifetime (§4.2.1, §4.2.2).
//! * [`age`] computes the current age of a stored response (§4.2.3).
//! * [`reading`] keeps what a stored response's head gives those two, read once per head.
//! * [`request`] decides whether a stored response can be reused for a given
//!   request (§4, §4.2.4, §5.2.1), builds validation requests (§4.3.1),
//!   merges `304 Not Modified` responses (§4.3.4) and evaluates client
//!   conditionals (§4.3.2, RFC 9110 §13.1).
//!
//! Sibling modules refer to each other only through `super::` paths so the
//! module compiles under any parent.

// Deliberate deviations from RFC 9111
// ===================================
//
// 1. `no-cache="field"` / `private="field"` (qualified forms, §5.2.2.4,
//    §5.2.2.7) are treated as the unqualified directives: the whole response
//    must be revalidated / is not stored. Conservative: stripping individual
//    fields is easy to get wrong and the qualified forms are rare.
// 2. Duplicate delta-seconds directives take the most conservative value
//    (the smallest for freshness-granting max-age, s-maxage,
//    stale-while-revalidate, stale-if-error, max-stale; the largest for
//    min-fresh) instead of "the first occurrence" (§4.2.1). The smallest value
//    is never more permissive than the first one.
// 3. Heuristic freshness (§4.2.2) is a fixed, operator-configured lifetime
//    (`PolicyConfig::heuristic_lifetime`, the user's stale_time) instead of a
//    fraction (typically 10%) of the time since Last-Modified, and it is only
//    applied when a valid `Last-Modified` is present. Product choice: the user
//    picks the heuristic lifetime explicitly.
// 4. `PolicyConfig::force_ttl` makes every 2xx response fresh for exactly
//    `heuristic_lifetime`, overriding the origin's explicit freshness
//    (§4.2.1). This is an operator opt-in override. It never overrides
//    no-store, private, the Authorization rule (§3.5) or `Vary: *`.
// 5. 206 (Partial Content) responses are never stored (§3.3 allows it) and a
//    304 is never stored as a new response (it only freshens a stored one,
//    §4.3.4). Range support is left to a future caller.
// 6. Responses with `Vary: *` are never stored (§4.1: they can never be
//    selected, so storing them only wastes space).
// 7. `must-understand` (§5.2.2.3) is not implemented: `no-store` is always
//    honoured, which is the conservative reading.
// 8. `stale-if-error` (RFC 5861 §4) is refused when the response carries
//    no-cache, must-revalidate, proxy-revalidate or s-maxage, or the request
//    carries no-cache. RFC 5861 says "regardless of other freshness
//    information"; RFC 9111 §4.2.4 forbids serving stale against those
//    directives, and the conservative reading wins.
// 9. A request `min-fresh` that cannot be satisfied always leads to
//    revalidation, even if the request also carries `max-stale`.
// 10. `immutable` (RFC 8246) is parsed but does not influence decisions: it
//     is a client-side optimisation, and request `no-cache` still forces
//     validation (§5.2.1.4).
// 11. When a stored response has neither Last-Modified nor Date, a client's
//     If-Modified-Since never matches (§4.3.2 suggests using the time the
//     response was received; we do not have it here, so we answer with the
//     full response, which is always safe).
// 12. A 304 never replaces the stored Content-Encoding (the stored body
//     depends on it, §4.3.4 exception), besides Content-Length and
//     hop-by-hop fields.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};

pub mod age;
pub mod cache_control;
pub mod freshness;
pub mod reading;
pub mod request;
pub mod rules;
pub mod storable;
pub mod vary;

pub use self::age::AgeInputs;
pub use self::cache_control::CacheControl;
pub use self::freshness::{freshness_lifetime, Lifetime};
pub use self::reading::{Reading, ReadingCell, ReadingKey};
pub use self::request::{
    client_conditional_matches, conditional_headers, has_validator, merge_304, reuse_decision,
    stale_if_error_allows, Reuse,
};
pub use self::storable::{has_vary_star, is_cacheable_by_default, is_storable, NotStorable};

/// The largest delta-seconds value we represent: 2^31 (RFC 9111 §1.2.2).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// Operator-controlled knobs of the caching policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Heuristic freshness lifetime (the user's `stale_time`), RFC 9111 §4.2.2.
    /// Zero disables heuristic freshness.
    pub heuristic_lifetime: Duration,
    /// Treat every 2xx response as fresh for `heuristic_lifetime`, ignoring
    /// the origin's explicit freshness (deviation 4 above).
    pub force_ttl: bool,
    /// Shared cache semantics (s-maxage, proxy-revalidate, private, §3.5).
    /// Always `true` for this proxy.
    pub shared: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { heuristic_lifetime: Duration::ZERO, force_ttl: false, shared: true }
    }
}

/// Parses delta-seconds (RFC 9111 §1.2.2): `1*DIGIT`, saturating at 2^31.
/// Returns `None` for anything else (empty, signs, decimals, spaces).
fn parse_delta_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = 0;
    for b in s.bytes() {
        value = value * 10 + u64::from(b - b'0');
        if value >= MAX_DELTA_SECONDS {
            return Some(MAX_DELTA_SECONDS);
        }
    }
    Some(value)
}

/// Seconds as a [`Duration`].
fn secs(n: impl Into<u64>) -> Duration {
    Duration::from_secs(n.into())
}

/// The first line of an HTTP-date header field, if it parses (RFC 9110 §5.6.7).
fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok()
}

/// Splits a comma-separated list field value (RFC 9110 §5.6.1), ignoring
/// commas inside quoted strings (with backslash escapes) and dropping empty
/// members. Walks bytes, not chars: the delimiters are ASCII, and no byte of a
/// multi-byte UTF-8 sequence equals one (this runs for every `Cache-Control`
/// line parsed, several times per stored response).
fn split_list(line: &str) -> Vec<&str> {
    fn push<'a>(out: &mut Vec<&'a str>, member: &'a str) {
        let member = trim_ows(member);
        if !member.is_empty() {
            out.push(member);
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, &b) in line.as_bytes().iter().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == b',' {
            push(&mut out, &line[start..i]);
            start = i + 1;
        }
    }
    push(&mut out, &line[start..]);
    out
}

/// `s` without leading and trailing spaces and tabs (RFC 9110 §5.6.3, OWS).
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// A fixed instant `offset` seconds from an arbitrary base, for tests.
#[cfg(test)]
fn test_time(offset: i64) -> SystemTime {
    let base = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if offset >= 0 {
        base + Duration::from_secs(offset.unsigned_abs())
    } else {
        base - Duration::from_secs(offset.unsigned_abs())
    }
}

#[cfg(test)]
fn test_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds_table() {
        let rows: &[(&str, &str, Option<u64>)] = &[
            ("§1.2.2 plain number", "60", Some(60)),
            ("§1.2.2 zero", "0", Some(0)),
            ("§1.2.2 leading zeros", "007", Some(7)),
            ("§1.2.2 empty is invalid", "", None),
            ("§1.2.2 negative is invalid", "-1", None),
            ("§1.2.2 plus sign is invalid", "+1", None),
            ("§1.2.2 decimal is invalid", "1.5", None),
            ("§1.2.2 just below 2^31", "2147483647", Some(2147483647)),
            ("§1.2.2 2^31 saturates", "2147483648", Some(MAX_DELTA_SECONDS)),
            ("§1.2.2 huge overflow saturates at 2^31", "99999999999999999999999999", Some(MAX_DELTA_SECONDS)),
        ];
        for (name, input, expected) in rows {
            assert_eq!(parse_delta_seconds(input), *expected, "{name}");
        }
    }

    #[test]
    fn split_list_respects_quotes() {
        assert_eq!(split_list(r#" a, b="x,y" ,, c="q\"," , "#), vec!["a", r#"b="x,y""#, r#"c="q\",""#]);
    }
}
