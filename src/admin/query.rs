//! Query strings of the admin API: percent-decoding and checked parameters.

use std::collections::HashMap;

/// A query string's parameters, decoded; a repeated or unknown name is an error.
pub(super) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).ok_or("bad percent-encoding in the query")?;
        let value = decode(value).ok_or_else(|| format!("bad percent-encoding in {name}"))?;
        if !allowed.contains(&name.as_str()) {
            return Err(format!("unknown parameter {name:?} (allowed: {})", allowed.join(", ")));
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(format!("parameter {name} given twice"));
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The cache key of an absolute http(s) URL: scheme and host lowercase, the port explicit,
/// the path `/` when empty (how the proxy names what it stores).
pub(super) fn key_url(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not an absolute http(s) URL");
    let uri: http::Uri = s.parse().map_err(|_| bad())?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase).ok_or_else(bad)?;
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.is_empty() { "/" } else { path };
    Ok(format!("{scheme}://{host}:{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_cache_keys() {
        assert_eq!(key_url("http://Example.com/a?b=1").unwrap(), "http://example.com:80/a?b=1");
        assert_eq!(key_url("https://h:8443").unwrap(), "https://h:8443/");
        assert_eq!(key_url("http://[::1]:9/x").unwrap(), "http://[::1]:9/x");
        assert!(key_url("ftp://h/").is_err());
        assert!(key_url("/relative").is_err());
    }

    #[test]
    fn queries_are_decoded_and_checked() {
        let q = parse(Some("url=http%3A%2F%2Fh%2Fa+b&limit=5"), &["url", "limit"]).unwrap();
        assert_eq!(q["url"], "http://h/a b");
        assert!(parse(Some("nope=1"), &["url"]).unwrap_err().contains("nope"));
        assert!(parse(Some("url=%zz"), &["url"]).is_err());
        assert!(parse(Some("url=a&url=b"), &["url"]).is_err());
    }
}
