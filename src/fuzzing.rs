//! Entry points shared by the fuzz targets (`fuzz/`, cargo-fuzz) and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so a crash found by fuzzing stays a regression test in plain
//! `cargo test`. Each takes arbitrary bytes, must never panic, and checks the properties the
//! proxy relies on (a routed target is safe to put in a request line and a cache key; a
//! decoded entry head encodes back to itself).

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::cache::policy::CacheControl;
use crate::cache::store::codec;
use crate::proxy::guard::{request, response, Limits};
use crate::proxy::route::{connect_target, route_request, Route, Routing};

/// A request head as a client might send it: the proxy's own checks on it (the guard, then
/// routing) after a minimal split into method, target, version and fields.
pub fn request_head(data: &[u8]) {
    let head = data.split(|&b| b == b'\n').collect::<Vec<_>>();
    let Some((line, fields)) = head.split_first() else { return };
    let mut parts = line.trim_ascii_end().splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else { return };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(target)) else { return };
    let version = match version {
        Some(b"HTTP/1.0") => Version::HTTP_10,
        Some(b"HTTP/2") => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::new();
    for field in fields {
        let field = field.trim_ascii_end();
        let Some(colon) = field.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&field[..colon]),
            HeaderValue::from_bytes(field[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let limits = Limits { max_uri_length: 8192, max_request_body: 1 << 20 };
    if request::check_head(&method, &uri, version, &headers, &limits).is_err() {
        return;
    }
    let _ = response::check_upstream_head(&headers);
    if method == Method::CONNECT {
        if let Ok((host, _port)) = connect_target(&uri) {
            assert_safe_host(&host);
        }
        return;
    }
    let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok());
    let (_, route) = route_request(&method, version, &uri, host, false, &routing());
    check_route(route);
}

/// A request target in the embedded-host form (`/<host>[:port]/<path>`, `/https://...`) or
/// absolute form: whatever routes must be a safe upstream request and cache key.
pub fn embedded_route(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for candidate in [text.to_string(), format!("/{text}")] {
        if let Ok(uri) = candidate.parse::<Uri>() {
            let (_, route) = route_request(&Method::GET, Version::HTTP_11, &uri, None, false, &routing());
            check_route(route);
        }
    }
}

/// A Cache-Control field value, as a response and as a request directive set.
pub fn cache_control(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CACHE_CONTROL, value.clone());
    headers.append(http::header::CACHE_CONTROL, value);
    let _ = CacheControl::parse(&headers);
    let _ = CacheControl::parse_request(&headers);
}

/// An entry file: prefix, head and trailer are decoded as the disk tier reads them; a head
/// that decodes must encode back to the same head.
pub fn entry_decoder(data: &[u8]) {
    let _ = codec::decode_trailer(&data[data.len().saturating_sub(codec::TRAILER_LEN as usize)..]);
    let Ok(head_len) = codec::decode_prefix(data) else { return };
    let start = codec::PREFIX_LEN as usize;
    let Some(head_bytes) = data.get(start..start + head_len as usize + 4) else { return };
    let Ok(head) = codec::decode_head(head_bytes) else { return };
    let again = codec::encode_head(&head);
    let decoded = codec::decode_head(&again[start..]).expect("an encoded head decodes");
    assert_eq!((decoded.key, decoded.status, decoded.headers), (head.key, head.status, head.headers));
}

fn routing() -> Routing {
    Routing { upstream_port: 80, origins: Vec::new(), preserve_host: false, embedded: true, forward: true }
}

fn check_route(route: Route) {
    if let Route::Target(t) = route {
        assert_safe_host(&t.host);
        let uri = t.uri();
        assert!(uri.parse::<Uri>().is_ok(), "a routed target forms a valid URI: {uri:?}");
        assert!(
            !t.path_and_query.bytes().any(|b| b.is_ascii_control() || b == b' '),
            "{:?}",
            t.path_and_query
        );
        let key = t.key();
        assert!(!key.url().bytes().any(|b| b == b'\r' || b == b'\n'), "{:?}", key.url());
    }
}

fn assert_safe_host(host: &str) {
    assert!(!host.is_empty(), "empty host");
    assert!(
        !host.bytes().any(|b| b.is_ascii_control() || b.is_ascii_whitespace() || b == b'@' || b == b'/'),
        "unsafe host {host:?}"
    );
}
