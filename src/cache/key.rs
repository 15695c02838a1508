//! Cache keys: the normalised absolute URL a response is stored under, and its hash.
//!
//! The hash names files on disk, so no part of a URL ever becomes a path (no traversal, no
//! name-length limits). The full key is stored inside each entry and compared on read, so a
//! hash collision can only cause a miss, never a wrong response.

use std::fmt;

/// The 32-byte BLAKE3 hash of a cache key.
pub type KeyHash = [u8; 32];

/// A cache key: `scheme://host:port/path?query`, with the port always explicit.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheKey {
    url: String,
    hash: KeyHash,
}

impl CacheKey {
    /// Builds the key for an upstream target. `host` must already be validated and lowercase.
    pub fn new(scheme: &str, host: &str, port: u16, path_and_query: &str) -> Self {
        let url = format!("{scheme}://{host}:{port}{path_and_query}");
        Self::from_url(url)
    }

    /// Wraps an already normalised key string (as stored in an entry).
    pub fn from_url(url: String) -> Self {
        let hash = *blake3::hash(url.as_bytes()).as_bytes();
        Self { url, hash }
    }

    /// The key of one variant of this URL (RFC 9111 §4.1): `selector` comes from
    /// `policy::vary::variant_selector`, `generation` from the URL's Vary marker.
    pub fn variant(&self, generation: u64, selector: &str) -> CacheKey {
        CacheKey::from_url(format!("{}\n#{generation}{selector}", self.url))
    }

    /// Whether `variant_url` is a variant of this key selected by `selector`.
    pub fn is_variant(&self, variant_url: &str, selector: &str) -> bool {
        variant_url
            .strip_prefix(self.url.as_str())
            .and_then(|rest| rest.strip_prefix("\n#"))
            .and_then(|rest| rest.strip_suffix(selector))
            .is_some_and(|generation| {
                !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit())
            })
    }

    /// The normalised URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The hash that names this key's file and indexes the tiers.
    pub fn hash(&self) -> &KeyHash {
        &self.hash
    }

    /// Lowercase hex of the hash: the entry's file name.
    pub fn hex(&self) -> String {
        hex(&self.hash)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Lowercase hex encoding of a hash.
pub fn hex(hash: &KeyHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in hash {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses 64 lowercase hex digits back into a hash; `None` for anything else.
pub fn parse_hex(name: &str) -> Option<KeyHash> {
    let bytes = name.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The cache key of an absolute http(s) URL: scheme and host lowercase, the port explicit,
/// the path `/` when empty (how the proxy names what it stores).
pub fn key_of_url(s: &str) -> Result<String, String> {
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
        assert_eq!(key_of_url("http://Example.com/a?b=1").unwrap(), "http://example.com:80/a?b=1");
        assert_eq!(key_of_url("https://h:8443").unwrap(), "https://h:8443/");
        assert_eq!(key_of_url("http://[::1]:9/x").unwrap(), "http://[::1]:9/x");
        assert!(key_of_url("ftp://h/").is_err());
        assert!(key_of_url("/relative").is_err());
    }

    #[test]
    fn key_names_port_explicitly() {
        let k = CacheKey::new("http", "example.com", 80, "/a?b=1");
        assert_eq!(k.url(), "http://example.com:80/a?b=1");
    }

    #[test]
    fn hex_round_trips() {
        let k = CacheKey::new("http", "h", 1, "/");
        assert_eq!(parse_hex(&k.hex()), Some(*k.hash()));
    }

    #[test]
    fn parse_hex_rejects_foreign_names() {
        assert_eq!(parse_hex("../etc/passwd"), None);
        assert_eq!(parse_hex(&"G".repeat(64)), None);
        assert_eq!(parse_hex(&"A".repeat(64)), None);
    }

    #[test]
    fn different_urls_hash_differently() {
        let a = CacheKey::new("http", "h", 80, "/a");
        let b = CacheKey::new("http", "h", 81, "/a");
        assert_ne!(a.hash(), b.hash());
    }
}
