//! Freshness lifetime of a stored response (RFC 9111 §4.2.1, §4.2.2).

use std::time::{Duration, SystemTime};

use http::header::{DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};

use super::cache_control::CacheControl;
use super::storable::is_cacheable_by_default;
use super::{header_date, secs, PolicyConfig, MAX_DELTA_SECONDS};

/// The freshness lifetime of a response (RFC 9111 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// From s-maxage, max-age or Expires (§4.2.1), or forced by `force_ttl`.
    Explicit(Duration),
    /// Heuristic lifetime (§4.2.2): the operator's configured value.
    Heuristic(Duration),
    /// No freshness at all: the response is stale from the start and can only
    /// be reused after validation (or when staleness is explicitly allowed).
    None,
}

impl Lifetime {
    /// The lifetime as a duration, `None` for [`Lifetime::None`].
    pub fn duration(&self) -> Option<Duration> {
        match *self {
            Lifetime::Explicit(d) | Lifetime::Heuristic(d) => Some(d),
            Lifetime::None => None,
        }
    }

    /// `freshness_lifetime > current_age` (RFC 9111 §4.2).
    /// [`Lifetime::None`] is never fresh.
    pub fn is_fresh(&self, age: Duration) -> bool {
        self.duration().is_some_and(|lifetime| lifetime > age)
    }

    /// How long the response stays fresh: `lifetime − age`, zero when stale.
    pub fn remaining(&self, age: Duration) -> Duration {
        self.duration().map_or(Duration::ZERO, |lifetime| lifetime.saturating_sub(age))
    }

    /// How stale the response is: `age − lifetime`, zero when fresh
    /// ([`Lifetime::None`] counts as a zero lifetime).
    pub fn staleness(&self, age: Duration) -> Duration {
        age.saturating_sub(self.duration().unwrap_or(Duration::ZERO))
    }
}

/// Computes the freshness lifetime of a response (RFC 9111 §4.2.1, §4.2.2).
///
/// Order (first match wins):
/// 1. `cfg.force_ttl` and a 2xx status: `Explicit(cfg.heuristic_lifetime)`
///    (operator override, deviation 4 in the module docs).
/// 2. `s-maxage` when `cfg.shared` (§5.2.2.10).
/// 3. `max-age` (§5.2.2.1).
/// 4. `Expires − Date` (§5.3); `Date` missing or invalid means
///    `response_time` (RFC 9110 §6.6.1); an invalid `Expires` (e.g. `0`) or
///    conflicting `Expires` lines mean already stale (§5.3, §4.2.1).
/// 5. Heuristic (§4.2.2): status cacheable by default or `public`, a valid
///    `Last-Modified`, and a non-zero `cfg.heuristic_lifetime`, which is used
///    as-is (no 10% rule; deviation 3).
/// 6. Otherwise [`Lifetime::None`].
///
/// `cc` is the response's `Cache-Control` as parsed from `resp_headers`: a stored head's
/// reading parses it once for its directives and for this.
pub fn freshness_lifetime(
    status: StatusCode,
    resp_headers: &HeaderMap,
    cc: &CacheControl,
    response_time: SystemTime,
    cfg: &PolicyConfig,
) -> Lifetime {
    if cfg.force_ttl && status.is_success() {
        return Lifetime::Explicit(cfg.heuristic_lifetime);
    }
    if cfg.shared {
        if let Some(s_maxage) = cc.s_maxage {
            return Lifetime::Explicit(secs(s_maxage));
        }
    }
    if let Some(max_age) = cc.max_age {
        return Lifetime::Explicit(secs(max_age));
    }
    if let Some(lifetime) = expires_lifetime(resp_headers, response_time) {
        return Lifetime::Explicit(lifetime);
    }
    let heuristic_allowed = is_cacheable_by_default(status) || cc.public;
    if heuristic_allowed
        && !cfg.heuristic_lifetime.is_zero()
        && header_date(resp_headers, &LAST_MODIFIED).is_some()
    {
        return Lifetime::Heuristic(cfg.heuristic_lifetime);
    }
    Lifetime::None
}

/// `Expires − Date` (RFC 9111 §4.2.1, §5.3), `None` when there is no
/// `Expires` field. Invalid or conflicting values yield zero (stale).
fn expires_lifetime(resp_headers: &HeaderMap, response_time: SystemTime) -> Option<Duration> {
    let mut lines = resp_headers.get_all(EXPIRES).iter();
    let first = lines.next()?;
    if lines.any(|other| other != first) {
        return Some(Duration::ZERO);
    }
    let Some(expires) = first.to_str().ok().and_then(|v| httpdate::parse_http_date(v.trim()).ok()) else {
        return Some(Duration::ZERO);
    };
    let date = header_date(resp_headers, &DATE).unwrap_or(response_time);
    let lifetime = expires.duration_since(date).unwrap_or(Duration::ZERO);
    Some(lifetime.min(secs(MAX_DELTA_SECONDS)))
}

#[cfg(test)]
mod tests {
    use super::super::{test_headers, test_time as t};
    use super::*;

    fn date(offset: i64) -> String {
        httpdate::fmt_http_date(t(offset))
    }

    #[test]
    fn lifetime_table() {
        use Lifetime::{Explicit, Heuristic};
        let s = Duration::from_secs;
        let cfg = PolicyConfig { heuristic_lifetime: s(300), force_ttl: false, shared: true };
        let force = PolicyConfig { force_ttl: true, ..cfg };
        let no_heuristic = PolicyConfig { heuristic_lifetime: Duration::ZERO, ..cfg };
        let private_cache = PolicyConfig { shared: false, ..cfg };
        let (d0, d_minus_10, d100, d_minus_1000) = (date(0), date(-10), date(100), date(-1000));
        type Row<'a> = (&'a str, u16, Vec<(&'a str, &'a str)>, PolicyConfig, Lifetime);
        let rows: Vec<Row> = vec![
            ("§4.2.1 max-age", 200, vec![("cache-control", "max-age=60")], cfg, Explicit(s(60))),
            (
                "§4.2.1 s-maxage beats max-age",
                200,
                vec![("cache-control", "max-age=60, s-maxage=10")],
                cfg,
                Explicit(s(10)),
            ),
            (
                "§4.2.1 s-maxage ignored by a private cache",
                200,
                vec![("cache-control", "max-age=60, s-maxage=10")],
                private_cache,
                Explicit(s(60)),
            ),
            (
                "§4.2.1 max-age beats Expires",
                200,
                vec![("cache-control", "max-age=60"), ("expires", &d100), ("date", &d0)],
                cfg,
                Explicit(s(60)),
            ),
            (
                "§4.2.1 Expires minus Date",
                200,
                vec![("expires", &d100), ("date", &d_minus_10)],
                cfg,
                Explicit(s(110)),
            ),
            (
                "§4.2.1 Expires with missing Date uses response time",
                200,
                vec![("expires", &d100)],
                cfg,
                Explicit(s(100)),
            ),
            (
                "§4.2.1 Expires with invalid Date uses response time",
                200,
                vec![("expires", &d100), ("date", "yesterday")],
                cfg,
                Explicit(s(100)),
            ),
            (
                "§5.3 Expires: 0 is already stale",
                200,
                vec![("expires", "0"), ("last-modified", &d_minus_1000)],
                cfg,
                Explicit(s(0)),
            ),
            (
                "§5.3 Expires before Date is stale",
                200,
                vec![("expires", &d_minus_10), ("date", &d0)],
                cfg,
                Explicit(s(0)),
            ),
            (
                "§4.2.1 conflicting Expires lines are stale",
                200,
                vec![("expires", &d100), ("expires", &d_minus_10)],
                cfg,
                Explicit(s(0)),
            ),
            (
                "§4.2.1 invalid max-age is stale even with Last-Modified",
                200,
                vec![("cache-control", "max-age=soon"), ("last-modified", &d_minus_1000)],
                cfg,
                Explicit(s(0)),
            ),
            (
                "§4.2.2 heuristic uses the configured lifetime",
                200,
                vec![("last-modified", &d_minus_1000)],
                cfg,
                Heuristic(s(300)),
            ),
            ("§4.2.2 no heuristic without Last-Modified", 200, vec![], cfg, Lifetime::None),
            (
                "§4.2.2 no heuristic with invalid Last-Modified",
                200,
                vec![("last-modified", "garbage")],
                cfg,
                Lifetime::None,
            ),
            ("§4.2.2 no heuristic for 302", 302, vec![("last-modified", &d_minus_1000)], cfg, Lifetime::None),
            (
                "§4.2.2 public allows heuristic for 302",
                302,
                vec![("cache-control", "public"), ("last-modified", &d_minus_1000)],
                cfg,
                Heuristic(s(300)),
            ),
            (
                "§4.2.2 heuristic for 404 (cacheable by default)",
                404,
                vec![("last-modified", &d_minus_1000)],
                cfg,
                Heuristic(s(300)),
            ),
            (
                "§4.2.2 zero heuristic lifetime disables heuristics",
                200,
                vec![("last-modified", &d_minus_1000)],
                no_heuristic,
                Lifetime::None,
            ),
            (
                "force_ttl overrides origin max-age on 2xx",
                200,
                vec![("cache-control", "max-age=5")],
                force,
                Explicit(s(300)),
            ),
            ("force_ttl applies to 2xx without any headers", 204, vec![], force, Explicit(s(300))),
            (
                "force_ttl leaves non-2xx to the RFC rules",
                404,
                vec![("cache-control", "max-age=5")],
                force,
                Explicit(s(5)),
            ),
            (
                "§1.2.2 Expires far in the future saturates at 2^31 s",
                200,
                vec![("expires", "Fri, 31 Dec 9999 23:59:59 GMT"), ("date", &d0)],
                cfg,
                Explicit(s(MAX_DELTA_SECONDS)),
            ),
        ];
        for (name, status, pairs, cfg, expected) in rows {
            let status = StatusCode::from_u16(status).expect("status");
            let headers = test_headers(&pairs);
            let got = freshness_lifetime(status, &headers, &CacheControl::parse(&headers), t(0), &cfg);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn lifetime_helpers() {
        let s = Duration::from_secs;
        let l = Lifetime::Explicit(s(60));
        assert!(l.is_fresh(s(59)));
        assert!(!l.is_fresh(s(60)), "§4.2 fresh means lifetime > age");
        assert_eq!(l.remaining(s(20)), s(40));
        assert_eq!(l.remaining(s(90)), s(0));
        assert_eq!(l.staleness(s(90)), s(30));
        assert_eq!(l.staleness(s(10)), s(0));
        assert!(!Lifetime::None.is_fresh(s(0)));
        assert_eq!(Lifetime::None.staleness(s(7)), s(7));
        assert_eq!(Lifetime::Heuristic(s(5)).duration(), Some(s(5)));
    }
}
