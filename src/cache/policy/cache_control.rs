//! `Cache-Control` parsing (RFC 9111 §5.2) and the request `Pragma`
//! fallback (§5.4).
//!
//! Parsing is robust and conservative: directive names are case-insensitive,
//! values may be quoted, all field lines and list members are merged,
//! unknown directives are ignored, and when the same directive appears more
//! than once the most restrictive value wins.

use std::borrow::Cow;

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, HeaderValue};

use super::{parse_delta_seconds, split_list, trim_ows};

/// The parsed directives of a `Cache-Control` field (request or response),
/// RFC 9111 §5.2.
///
/// Seconds are `u32`: delta-seconds are capped at 2^31 when parsed (§1.2.2), and a stored
/// response keeps its directives for as long as it is cached (`policy::reading`), so their size
/// counts once per entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age` (§5.2.1.1 request, §5.2.2.1 response). Invalid value = 0.
    pub max_age: Option<u32>,
    /// `s-maxage` (§5.2.2.10). Invalid value = 0.
    pub s_maxage: Option<u32>,
    /// `no-cache` (§5.2.1.4, §5.2.2.4), qualified form treated as unqualified.
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `private` (§5.2.2.7), qualified form treated as unqualified.
    pub private: bool,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861 §3). Invalid value = ignored.
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` (RFC 5861 §4). Invalid value = ignored.
    pub stale_if_error: Option<u32>,
    /// `max-stale` (§5.2.1.2): `Some(None)` = any staleness accepted,
    /// `Some(Some(n))` = at most `n` seconds stale. Invalid value = ignored.
    pub max_stale: Option<Option<u32>>,
    /// `min-fresh` (§5.2.1.3). Invalid value = ignored.
    pub min_fresh: Option<u32>,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `no-transform` (§5.2.1.6, §5.2.2.6).
    pub no_transform: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` field line of `headers` (RFC 9111 §5.2).
    pub fn parse(headers: &HeaderMap) -> Self {
        Self::parse_field(headers.get_all(CACHE_CONTROL).iter())
    }

    /// Parses a set of `Cache-Control` field lines, merged as one list
    /// (RFC 9111 §5.2, RFC 9110 §5.3).
    pub fn parse_field<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Self {
        let mut cc = Self::default();
        for value in values {
            let line = String::from_utf8_lossy(value.as_bytes());
            for member in split_list(&line) {
                if let Some((name, arg)) = parse_directive(member) {
                    cc.apply(&name, arg.as_deref());
                }
            }
        }
        cc
    }

    /// `Pragma: no-cache` counts as a request `no-cache` only when the
    /// request has no `Cache-Control` field at all (RFC 9111 §5.4).
    pub fn from_pragma(headers: &HeaderMap) -> bool {
        if headers.contains_key(CACHE_CONTROL) {
            return false;
        }
        headers.get_all(PRAGMA).iter().any(|value| {
            let line = String::from_utf8_lossy(value.as_bytes());
            split_list(&line).iter().any(|m| m.eq_ignore_ascii_case("no-cache"))
        })
    }

    /// Request directives: `Cache-Control` plus the `Pragma: no-cache`
    /// fallback (RFC 9111 §5.2.1, §5.4).
    pub fn parse_request(headers: &HeaderMap) -> Self {
        let mut cc = Self::parse(headers);
        cc.no_cache |= Self::from_pragma(headers);
        cc
    }

    /// Applies one directive, keeping the most conservative reading
    /// (RFC 9111 §4.2.1 for duplicates and invalid values, §1.2.2 overflow).
    fn apply(&mut self, name: &str, arg: Option<&str>) {
        // At most 2^31, so it fits.
        let delta = arg.and_then(parse_delta_seconds).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        match name {
            // Invalid freshness information means "stale" (§4.2.1).
            "max-age" => self.max_age = Some(min_opt(self.max_age, delta.unwrap_or(0))),
            "s-maxage" => self.s_maxage = Some(min_opt(self.s_maxage, delta.unwrap_or(0))),
            "stale-while-revalidate" => {
                if let Some(n) = delta {
                    self.stale_while_revalidate = Some(min_opt(self.stale_while_revalidate, n));
                }
            }
            "stale-if-error" => {
                if let Some(n) = delta {
                    self.stale_if_error = Some(min_opt(self.stale_if_error, n));
                }
            }
            "min-fresh" => {
                if let Some(n) = delta {
                    self.min_fresh = Some(self.min_fresh.map_or(n, |m| m.max(n)));
                }
            }
            "max-stale" => match (arg, delta) {
                // Bare `max-stale`: any staleness, unless a bound was seen.
                (None, _) => {
                    if self.max_stale.is_none() {
                        self.max_stale = Some(None);
                    }
                }
                (Some(_), Some(n)) => {
                    let bound = match self.max_stale {
                        Some(Some(m)) => m.min(n),
                        _ => n,
                    };
                    self.max_stale = Some(Some(bound));
                }
                // Invalid value: directive ignored.
                (Some(_), None) => {}
            },
            "no-cache" => self.no_cache = true,
            "no-store" => self.no_store = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "immutable" => self.immutable = true,
            "only-if-cached" => self.only_if_cached = true,
            "no-transform" => self.no_transform = true,
            // Unknown extensions are ignored (§5.2.3).
            _ => {}
        }
    }
}

fn min_opt(current: Option<u32>, new: u32) -> u32 {
    current.map_or(new, |c| c.min(new))
}

/// Splits one list member into a lowercase directive name and an optional,
/// unquoted argument. A malformed quoted string is returned raw so that
/// numeric parsing rejects it. Borrowed from `member` unless a name has upper
/// case or an argument is quoted: this runs for every directive of every
/// response stored and of every request that carries `Cache-Control`.
fn parse_directive(member: &str) -> Option<(Cow<'_, str>, Option<Cow<'_, str>>)> {
    let (name, arg) = match member.split_once('=') {
        Some((n, v)) => (n, Some(unquote(trim_ows(v)))),
        None => (member, None),
    };
    let name = trim_ows(name);
    if name.is_empty() {
        return None;
    }
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    Some((name, arg))
}

/// Removes the quotes of a quoted-string (RFC 9110 §5.6.4), resolving
/// backslash escapes. Tokens and malformed strings come back unchanged.
fn unquote(value: &str) -> Cow<'_, str> {
    let Some(inner) = value.strip_prefix('"') else {
        return Cow::Borrowed(value);
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => return Cow::Borrowed(value),
            },
            '"' => {
                return if chars.as_str().is_empty() { Cow::Owned(out) } else { Cow::Borrowed(value) };
            }
            _ => out.push(c),
        }
    }
    // Unterminated quoted string.
    Cow::Borrowed(value)
}

#[cfg(test)]
mod tests {
    use super::super::test_headers;
    use super::*;

    fn parse_lines(lines: &[&str]) -> CacheControl {
        let pairs: Vec<(&str, &str)> = lines.iter().map(|l| ("cache-control", *l)).collect();
        CacheControl::parse(&test_headers(&pairs))
    }

    #[test]
    fn parse_table() {
        let d = CacheControl::default;
        let rows: Vec<(&str, Vec<&str>, CacheControl)> = vec![
            ("§5.2 absent field is empty", vec![], d()),
            ("§5.2.2.1 max-age", vec!["max-age=60"], CacheControl { max_age: Some(60), ..d() }),
            (
                "§5.2 directive names are case-insensitive",
                vec!["MAX-AGE=60, No-Store"],
                CacheControl { max_age: Some(60), no_store: true, ..d() },
            ),
            (
                "§5.2 quoted delta value accepted",
                vec![r#"max-age="60""#],
                CacheControl { max_age: Some(60), ..d() },
            ),
            (
                "§5.2 whitespace around members and '=' tolerated",
                vec!["  public ,\tmax-age = 30 ,"],
                CacheControl { public: true, max_age: Some(30), ..d() },
            ),
            (
                "§5.2 multiple field lines are merged",
                vec!["public", "s-maxage=10", "must-revalidate"],
                CacheControl { public: true, s_maxage: Some(10), must_revalidate: true, ..d() },
            ),
            (
                "§5.2.3 unknown directives ignored",
                vec![r#"foo, bar="x, y", max-age=5, community="UCI""#],
                CacheControl { max_age: Some(5), ..d() },
            ),
            (
                "§4.2.1 duplicate max-age takes the smallest",
                vec!["max-age=100, max-age=10", "max-age=50"],
                CacheControl { max_age: Some(10), ..d() },
            ),
            (
                "§4.2.1 duplicate s-maxage takes the smallest",
                vec!["s-maxage=5", "s-maxage=500"],
                CacheControl { s_maxage: Some(5), ..d() },
            ),
            (
                "§4.2.1 invalid max-age (non-numeric) means stale",
                vec!["max-age=abc"],
                CacheControl { max_age: Some(0), ..d() },
            ),
            (
                "§4.2.1 negative max-age means stale",
                vec!["max-age=-5"],
                CacheControl { max_age: Some(0), ..d() },
            ),
            (
                "§4.2.1 empty and missing max-age mean stale",
                vec!["max-age="],
                CacheControl { max_age: Some(0), ..d() },
            ),
            ("§4.2.1 bare s-maxage means stale", vec!["s-maxage"], CacheControl { s_maxage: Some(0), ..d() }),
            (
                "§4.2.1 invalid duplicate max-age beats valid one",
                vec!["max-age=600, max-age=1.5"],
                CacheControl { max_age: Some(0), ..d() },
            ),
            (
                "§1.2.2 overflowing max-age saturates at 2^31",
                vec!["max-age=99999999999999999999"],
                CacheControl { max_age: Some(2_147_483_648), ..d() },
            ),
            (
                "§5.2 unterminated quoted max-age is invalid",
                vec![r#"max-age="60"#],
                CacheControl { max_age: Some(0), ..d() },
            ),
            (
                "RFC 5861 stale-while-revalidate and stale-if-error",
                vec!["stale-while-revalidate=30, stale-if-error=\"600\""],
                CacheControl { stale_while_revalidate: Some(30), stale_if_error: Some(600), ..d() },
            ),
            (
                "RFC 5861 duplicate swr/sie take the smallest",
                vec![
                    "stale-while-revalidate=30, stale-if-error=600",
                    "stale-while-revalidate=3, stale-if-error=60",
                ],
                CacheControl { stale_while_revalidate: Some(3), stale_if_error: Some(60), ..d() },
            ),
            (
                "RFC 5861 invalid swr/sie ignored",
                vec!["stale-while-revalidate=x, stale-if-error, stale-while-revalidate=-1"],
                d(),
            ),
            (
                "§5.2.1.2 bare max-stale means any staleness",
                vec!["max-stale"],
                CacheControl { max_stale: Some(None), ..d() },
            ),
            (
                "§5.2.1.2 max-stale with value",
                vec!["max-stale=120"],
                CacheControl { max_stale: Some(Some(120)), ..d() },
            ),
            (
                "§5.2.1.2 bounded max-stale beats unbounded (either order)",
                vec!["max-stale=120, max-stale", "max-stale, max-stale=200"],
                CacheControl { max_stale: Some(Some(120)), ..d() },
            ),
            ("§5.2.1.2 invalid max-stale ignored", vec!["max-stale=soon"], d()),
            (
                "§5.2.1.3 min-fresh duplicates take the largest, invalid ignored",
                vec!["min-fresh=10, min-fresh=x", "min-fresh=30"],
                CacheControl { min_fresh: Some(30), ..d() },
            ),
            (
                "§5.2.2.4 qualified no-cache treated as unqualified",
                vec![r#"no-cache="Set-Cookie, X-Foo""#],
                CacheControl { no_cache: true, ..d() },
            ),
            (
                "§5.2.2.7 qualified private treated as unqualified",
                vec![r#"private="Set-Cookie", max-age=60"#],
                CacheControl { private: true, max_age: Some(60), ..d() },
            ),
            (
                "§5.2 all boolean directives",
                vec![
                    "proxy-revalidate, immutable, only-if-cached, no-transform",
                    "NO-CACHE, Private, PUBLIC",
                ],
                CacheControl {
                    proxy_revalidate: true,
                    immutable: true,
                    only_if_cached: true,
                    no_transform: true,
                    no_cache: true,
                    private: true,
                    public: true,
                    ..d()
                },
            ),
            (
                "§5.2 escaped quote inside a quoted value",
                vec![r#"ext="a\"b,c", max-age=7"#],
                CacheControl { max_age: Some(7), ..d() },
            ),
        ];
        for (name, lines, expected) in rows {
            assert_eq!(parse_lines(&lines), expected, "{name}");
        }
    }

    #[test]
    fn parse_field_accepts_any_iterator() {
        let values = [HeaderValue::from_static("max-age=5"), HeaderValue::from_static("public")];
        let cc = CacheControl::parse_field(values.iter());
        assert_eq!(cc.max_age, Some(5));
        assert!(cc.public);
    }

    #[test]
    fn non_ascii_bytes_do_not_break_parsing() {
        let value = HeaderValue::from_bytes(b"max-age=9, x=\xff\xfe").expect("obs-text");
        let cc = CacheControl::parse_field(std::iter::once(&value));
        assert_eq!(cc.max_age, Some(9));
    }

    #[test]
    fn pragma_table() {
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let rows: &[Row] = &[
            ("§5.4 Pragma: no-cache without Cache-Control", &[("pragma", "no-cache")], true),
            ("§5.4 Pragma is case-insensitive and list-valued", &[("pragma", "foo, No-Cache")], true),
            (
                "§5.4 Pragma ignored when Cache-Control present",
                &[("pragma", "no-cache"), ("cache-control", "max-age=60")],
                false,
            ),
            ("§5.4 other pragma directives ignored", &[("pragma", "foo=no-cache")], false),
            ("§5.4 no Pragma at all", &[], false),
        ];
        for (name, pairs, expected) in rows {
            let headers = test_headers(pairs);
            assert_eq!(CacheControl::from_pragma(&headers), *expected, "{name}");
            assert_eq!(CacheControl::parse_request(&headers).no_cache, *expected, "{name}");
        }
    }
}
