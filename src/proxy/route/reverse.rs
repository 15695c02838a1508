//! Reverse-proxy origins: `--origin URL` sends every origin-form request to one origin, and
//! `--origin NAME=URL` does so only for requests whose `Host` is NAME.

use super::authority::parse_authority;
use super::Scheme;

/// One `--origin` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginRule {
    /// The `Host` this rule serves (lowercase, without port); `None` serves every host.
    pub for_host: Option<String>,
    /// The origin's scheme.
    pub scheme: Scheme,
    /// The origin's host.
    pub host: String,
    /// The origin's port.
    pub port: u16,
}

impl OriginRule {
    /// Parses `[NAME=]http(s)://host[:port][/]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (for_host, url) = match s.split_once('=') {
            Some((name, url)) => {
                let (name, _) = parse_authority(name, 80).map_err(|e| format!("host name '{name}': {e}"))?;
                (Some(name), url)
            }
            None => (None, s),
        };
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(format!("'{url}' must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(format!("'{url}': an origin is scheme://host[:port], without a path"));
        }
        let (host, port) =
            parse_authority(authority, scheme.default_port()).map_err(|e| format!("'{url}': {e}"))?;
        Ok(Self { for_host, scheme, host, port })
    }

    /// `host[:port]` as a `Host` field names this origin.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Picks the rule for a request's `Host`: the one named for it, else the one for every host.
/// Every request asks, in every mode, so the host is parsed only when a rule is named for one
/// (in embedded mode there are no rules, and parsing the field was 2% of a 1 KB hit).
pub fn select<'a>(rules: &'a [OriginRule], host_field: Option<&str>) -> Option<&'a OriginRule> {
    let named = if rules.iter().any(|r| r.for_host.is_some()) {
        let name = host_field.and_then(|h| parse_authority(h, 80).ok()).map(|(h, _)| h);
        name.as_deref().and_then(|n| rules.iter().find(|r| r.for_host.as_deref() == Some(n)))
    } else {
        None
    };
    named.or_else(|| rules.iter().find(|r| r.for_host.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        let r = OriginRule::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((r.for_host, r.scheme, r.host.as_str(), r.port), (None, Scheme::Http, "127.0.0.1", 8080));
        let r = OriginRule::parse("Www.Example.com=https://backend/").unwrap();
        assert_eq!(r.for_host.as_deref(), Some("www.example.com"));
        assert_eq!((r.scheme, r.port, r.authority()), (Scheme::Https, 443, "backend".to_string()));
        for bad in
            ["127.0.0.1:8080", "ftp://h", "http://h/path", "http://u@h", "bad_name=http://h", "http://"]
        {
            assert!(OriginRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selects_by_host() {
        let rules =
            [OriginRule::parse("a.test=http://a:1").unwrap(), OriginRule::parse("http://default:2").unwrap()];
        assert_eq!(select(&rules, Some("A.test:8888")).unwrap().host, "a");
        assert_eq!(select(&rules, Some("b.test")).unwrap().host, "default");
        assert_eq!(select(&rules, None).unwrap().host, "default");
        let catch_all = [OriginRule::parse("http://default:2").unwrap()];
        assert_eq!(select(&catch_all, Some("not a host!")).unwrap().host, "default");
        assert!(select(&[], Some("a.test")).is_none());
        assert_eq!(select(&rules[..1], Some("b.test")), None);
    }
}
