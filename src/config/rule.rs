//! Cache rules as settings: the `--rule REGEX=DURATION` flag and the config file's
//! `[[cache-rule]]` tables, both turned into [`crate::cache::policy::rules::Rule`].

use regex::Regex;
use serde::Deserialize;

use super::parse_duration;
use crate::cache::policy::rules::Rule;

/// Parses `--rule 'REGEX=DURATION'`; the last `=` separates them, so the pattern may hold `=`.
pub fn parse_rule(s: &str) -> Result<Rule, String> {
    let (pattern, ttl) =
        s.rsplit_once('=').ok_or_else(|| format!("'{s}' is not REGEX=DURATION (e.g. '\\.deb$=30d')"))?;
    let pattern = compile(pattern)?;
    let ttl = parse_duration(ttl)?;
    Ok(Rule::fixed(pattern, ttl))
}

fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".into());
    }
    Regex::new(pattern).map_err(|e| format!("bad regular expression: {e}"))
}

/// One `[[cache-rule]]` table of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleTable {
    /// Regular expression on `http://host:port/path?query`.
    pub pattern: String,
    /// Fixed freshness lifetime of matching successful responses.
    pub ttl: Option<String>,
    /// Lower bound of the freshness lifetime.
    pub min_ttl: Option<String>,
    /// Upper bound of the freshness lifetime.
    pub max_ttl: Option<String>,
    /// Send matching requests to the origin without looking up or storing.
    #[serde(default)]
    pub bypass: bool,
    /// Request header fields added to the cache key.
    #[serde(default)]
    pub key_headers: Vec<String>,
}

impl RuleTable {
    /// Validates the table; an error names the field at fault.
    pub fn into_rule(self) -> Result<Rule, (&'static str, String)> {
        let pattern = compile(&self.pattern).map_err(|e| ("pattern", e))?;
        let duration = |field: &'static str, v: Option<String>| {
            v.map(|v| parse_duration(&v)).transpose().map_err(|e| (field, e))
        };
        let ttl = duration("ttl", self.ttl)?;
        let min_ttl = duration("min-ttl", self.min_ttl)?;
        let max_ttl = duration("max-ttl", self.max_ttl)?;
        if let (Some(min), Some(max)) = (min_ttl, max_ttl) {
            if min > max {
                return Err(("min-ttl", "is greater than max-ttl".into()));
            }
        }
        if ttl.is_some() && (min_ttl.is_some() || max_ttl.is_some()) {
            return Err(("ttl", "cannot be combined with min-ttl or max-ttl".into()));
        }
        let key_headers = self
            .key_headers
            .iter()
            .map(|h| {
                http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| ("key-headers", format!("'{h}' is not a header field name")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !self.bypass && ttl.is_none() && min_ttl.is_none() && max_ttl.is_none() && key_headers.is_empty() {
            return Err((
                "pattern",
                "the rule sets nothing (ttl, min-ttl, max-ttl, bypass or key-headers)".into(),
            ));
        }
        Ok(Rule { pattern, ttl, min_ttl, max_ttl, bypass: self.bypass, key_headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_form() {
        let r = parse_rule(r"\.deb$=30d").unwrap();
        assert_eq!(r.pattern.as_str(), r"\.deb$");
        assert_eq!(r.ttl, Some(std::time::Duration::from_secs(30 * 86400)));
        assert_eq!(parse_rule("a=b=5s").unwrap().pattern.as_str(), "a=b");
        assert!(parse_rule("nodelimiter").is_err());
        assert!(parse_rule("(=1d").unwrap_err().contains("regular expression"));
        assert!(parse_rule("=1d").is_err());
        assert!(parse_rule("x=forever").is_err());
    }
}
