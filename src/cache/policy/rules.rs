//! Operator cache rules by URL pattern (as Squid's `refresh_pattern`, nginx's
//! `proxy_cache_valid`): a regular expression on the cache key's URL mapped to a fixed
//! freshness lifetime, a min/max clamp, a bypass, or request fields added to the key.
//!
//! Pure decisions like the rest of the policy: the proxy looks a rule up once per request and
//! adjusts what [`super::freshness_lifetime`] computed. Storability (§3: `no-store`, `private`,
//! the `Authorization` rule) is never touched, so a rule can only lengthen or shorten the
//! life of a response RFC 9111 lets a shared cache store.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use regex::{Regex, RegexSet};

use super::freshness::Lifetime;

/// One rule: the first rule whose pattern matches a URL applies to it.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Matched (unanchored, as `regex::Regex::is_match`) against `http://host:port/path?query`.
    pub pattern: Regex,
    /// Fixed freshness lifetime of matching 2xx responses, whatever the origin sent.
    pub ttl: Option<Duration>,
    /// Lower bound of the freshness lifetime (a response with none gets this one).
    pub min_ttl: Option<Duration>,
    /// Upper bound of the freshness lifetime.
    pub max_ttl: Option<Duration>,
    /// Never look up or store matching URLs: every request goes to the origin.
    pub bypass: bool,
    /// Request fields whose values become part of the cache key.
    pub key_headers: Vec<HeaderName>,
}

impl Rule {
    /// A rule that only sets a fixed lifetime (the `--rule REGEX=DURATION` form).
    pub fn fixed(pattern: Regex, ttl: Duration) -> Self {
        Rule { pattern, ttl: Some(ttl), min_ttl: None, max_ttl: None, bypass: false, key_headers: Vec::new() }
    }

    /// Adjusts the lifetime RFC 9111 gave a response with `status`. Only successful responses
    /// are adjusted: a rule for `.deb` files must not keep a 404 for a month.
    pub fn lifetime(&self, status: StatusCode, computed: Lifetime) -> Lifetime {
        if !status.is_success() {
            return computed;
        }
        if let Some(ttl) = self.ttl {
            return Lifetime::Explicit(ttl);
        }
        let mut lifetime = computed;
        if let Some(min) = self.min_ttl {
            if lifetime.duration().is_none_or(|d| d < min) {
                lifetime = Lifetime::Explicit(min);
            }
        }
        if let Some(max) = self.max_ttl {
            if lifetime.duration().is_some_and(|d| d > max) {
                lifetime = Lifetime::Explicit(max);
            }
        }
        lifetime
    }

    /// The key suffix naming this request's values of the key fields (empty without any):
    /// `\n+name=value` per field, values of repeated lines joined with `, `.
    pub fn key_suffix(&self, req_headers: &HeaderMap) -> String {
        let mut out = String::new();
        for name in &self.key_headers {
            out.push_str("\n+");
            out.push_str(name.as_str());
            out.push('=');
            for (i, v) in req_headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
        }
        out
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pattern.as_str())
    }
}

/// An ordered set of rules, matched with one pass of a [`RegexSet`].
#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    set: Option<RegexSet>,
}

impl Rules {
    /// Builds the set; the order is the priority (first match wins).
    pub fn new(rules: Vec<Rule>) -> Self {
        // Each pattern already compiled alone, so the set compiles too; if the size limit of
        // a huge set were hit, matching falls back to one regex at a time.
        let set = RegexSet::new(rules.iter().map(|r| r.pattern.as_str())).ok();
        Rules { rules, set }
    }

    /// The first rule matching `url`, if any. `url` may be a stored key: only the part
    /// before the first line break (the URL itself, without variant or key-field suffixes)
    /// is matched.
    pub fn matching(&self, url: &str) -> Option<&Rule> {
        if self.rules.is_empty() {
            return None;
        }
        let url = url.split('\n').next().unwrap_or(url);
        match &self.set {
            Some(set) => set.matches(url).iter().next().map(|i| &self.rules[i]),
            None => self.rules.iter().find(|r| r.pattern.is_match(url)),
        }
    }

    /// The lifetime of a response stored under `url`, adjusted by its rule.
    pub fn lifetime(&self, url: &str, status: StatusCode, computed: Lifetime) -> Lifetime {
        match self.matching(url) {
            Some(rule) => rule.lifetime(status, computed),
            None => computed,
        }
    }

    /// The rules in priority order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn rule(p: &str) -> Rule {
        Rule {
            pattern: Regex::new(p).unwrap(),
            ttl: None,
            min_ttl: None,
            max_ttl: None,
            bypass: false,
            key_headers: Vec::new(),
        }
    }

    #[test]
    fn fixed_lifetime_applies_to_success_only() {
        let r = Rule::fixed(Regex::new(r"\.deb$").unwrap(), secs(30 * 86400));
        assert_eq!(r.lifetime(StatusCode::OK, Lifetime::None), Lifetime::Explicit(secs(30 * 86400)));
        assert_eq!(
            r.lifetime(StatusCode::OK, Lifetime::Explicit(secs(5))),
            Lifetime::Explicit(secs(2592000))
        );
        assert_eq!(r.lifetime(StatusCode::NOT_FOUND, Lifetime::None), Lifetime::None);
    }

    #[test]
    fn min_and_max_clamp() {
        let mut r = rule("x");
        r.min_ttl = Some(secs(60));
        r.max_ttl = Some(secs(600));
        assert_eq!(r.lifetime(StatusCode::OK, Lifetime::None), Lifetime::Explicit(secs(60)));
        assert_eq!(r.lifetime(StatusCode::OK, Lifetime::Explicit(secs(10))), Lifetime::Explicit(secs(60)));
        assert_eq!(
            r.lifetime(StatusCode::OK, Lifetime::Heuristic(secs(100))),
            Lifetime::Heuristic(secs(100))
        );
        assert_eq!(r.lifetime(StatusCode::OK, Lifetime::Explicit(secs(9999))), Lifetime::Explicit(secs(600)));
        let mut only_max = rule("x");
        only_max.max_ttl = Some(secs(600));
        assert_eq!(only_max.lifetime(StatusCode::OK, Lifetime::None), Lifetime::None);
    }

    #[test]
    fn first_match_wins_and_suffixes_are_ignored() {
        let mut a = rule(r"^http://h:80/a/");
        a.bypass = true;
        let rules = Rules::new(vec![a, Rule::fixed(Regex::new(r"\.deb$").unwrap(), secs(9))]);
        assert!(rules.matching("http://h:80/a/x.deb").is_some_and(|r| r.bypass));
        assert!(rules.matching("http://h:80/b/x.deb").is_some_and(|r| r.ttl == Some(secs(9))));
        assert!(rules.matching("http://h:80/b/x.deb\n#3\naccept=1").is_some());
        assert!(rules.matching("http://h:80/b/x.debian").is_none());
        assert!(Rules::default().matching("http://h:80/").is_none());
    }

    #[test]
    fn key_suffix_names_fields_and_values() {
        let mut r = rule("x");
        r.key_headers = vec![HeaderName::from_static("accept-language"), HeaderName::from_static("x-a")];
        let mut h = HeaderMap::new();
        h.append("accept-language", "fr".parse().unwrap());
        h.append("accept-language", "en".parse().unwrap());
        assert_eq!(r.key_suffix(&h), "\n+accept-language=fr, en\n+x-a=");
        assert_eq!(rule("x").key_suffix(&h), "");
    }
}
