//! Header handling shared by every path: hop-by-hop stripping (RFC 9110 §7.6.1) and the
//! fields the proxy adds to its answers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Cache`: HIT or MISS, as the original proxy's users expect.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// `Cache-Status` (RFC 9211).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Hop-by-hop fields (RFC 9110 §7.6.1), `Transfer-Encoding` included. A match on the name
/// (length first, then bytes) is cheaper than comparing `HeaderName`s one by one.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "upgrade"
            | "transfer-encoding"
    )
}

/// Removes hop-by-hop fields: the fixed set, `Transfer-Encoding`, and every field that
/// `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        // Usually "keep-alive" or "close": fields of the fixed set, removed below anyway.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.eq_ignore_ascii_case("keep-alive") && !n.eq_ignore_ascii_case("close"))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // Most messages carry none or one (`Connection`): one pass over the names present finds
    // them, and allocates nothing.
    while let Some(name) = headers.keys().find(|n| is_hop_by_hop(n)).cloned() {
        headers.remove(&name);
    }
}

/// The received-by names in every `Via` field (RFC 9110 §7.6.3): `1.1 name (comment)`.
pub fn via_names(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.split_whitespace().nth(1))
}

/// Appends this proxy's hop to `Via`.
pub fn append_via(headers: &mut HeaderMap, via: &HeaderValue) {
    headers.append(header::VIA, via.clone());
}

/// The request fields a reverse proxy adds so the origin knows who asked (RFC 7239 and the
/// de-facto `X-Forwarded-*`): the client's address is appended to any list already there.
pub fn add_forwarding(headers: &mut HeaderMap, client: std::net::IpAddr, tls: bool, host: Option<&str>) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let proto = if tls { "https" } else { "http" };
    let prior: Vec<&str> = headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()).collect();
    let xff = if prior.is_empty() { client.to_string() } else { format!("{}, {client}", prior.join(", ")) };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(XFF.clone(), v);
    }
    headers.insert(XFP.clone(), HeaderValue::from_static(if tls { "https" } else { "http" }));
    let node = match client {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let mut forwarded = format!("for={node};proto={proto}");
    if let Some(h) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')) {
        forwarded.push_str(&format!(";host=\"{h}\""));
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.append(header::FORWARDED, v);
    }
}

/// A header value from a number. `Age` and `Content-Length` are set on most answers: numbers
/// below [`SMALL_NUMBERS`] come from a table built once and cost no allocation; others cost
/// one (http's `From<u64>` costs two, its buffer and then a shared header for it).
pub fn number(n: u64) -> HeaderValue {
    static TABLE: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    if n < SMALL_NUMBERS {
        let table = TABLE.get_or_init(|| {
            // One leaked string of every small number: `from_static` values clone for free.
            let mut all = String::new();
            for i in 0..SMALL_NUMBERS {
                all.push_str(itoa::Buffer::new().format(i));
            }
            let all: &'static str = Box::leak(all.into_boxed_str());
            let mut at = 0;
            (0..SMALL_NUMBERS)
                .map(|i| {
                    let len = itoa::Buffer::new().format(i).len();
                    at += len;
                    HeaderValue::from_static(&all[at - len..at])
                })
                .collect()
        });
        return table[n as usize].clone();
    }
    HeaderValue::from_bytes(itoa::Buffer::new().format(n).as_bytes()).unwrap_or_else(|_| HeaderValue::from(n))
}

/// How many numbers [`number`] keeps ready: ages of up to 17 minutes and lengths under 1 KiB.
const SMALL_NUMBERS: u64 = 1024;

/// Whether `value` is `n` written in decimal, as [`number`] would write it.
pub fn is_number(value: &HeaderValue, n: u64) -> bool {
    value.as_bytes() == itoa::Buffer::new().format(n).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 1, 9, 10, 99, 1023, 1024, 65_536, u64::MAX] {
            assert_eq!(number(n).to_str().unwrap(), n.to_string());
            assert!(is_number(&number(n), n));
            assert!(!is_number(&number(n), n.wrapping_add(1)));
        }
    }

    #[test]
    fn strips_fixed_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn via_names_are_the_received_by_tokens() {
        let mut h = HeaderMap::new();
        h.append("via", HeaderValue::from_static("1.0 fred, 1.1 p.example.com:8888 (httpcache-proxy)"));
        h.append("via", HeaderValue::from_static("HTTP/2 nowhere"));
        let names: Vec<&str> = via_names(&h).collect();
        assert_eq!(names, ["fred", "p.example.com:8888", "nowhere"]);
    }

    #[test]
    fn forwarding_fields_append_the_client() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarding(&mut h, "192.0.2.7".parse().unwrap(), false, Some("site.test"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=http;host=\"site.test\"");
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, "::1".parse().unwrap(), true, None);
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=https");
    }
}
