//! Responses the proxy writes itself: the usage page, redirects and errors.

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use super::body::ProxyBody;

/// A short plain-text answer: `<code> <reason>: <message>`.
pub fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let text = format!("{} {}: {}\n", status.as_u16(), status.canonical_reason().unwrap_or("Error"), message);
    text_response(status, text, "text/plain; charset=utf-8")
}

/// A permanent redirect to `location` (a path on this proxy).
pub fn redirect(location: &str) -> Response<ProxyBody> {
    let mut resp = error(StatusCode::MOVED_PERMANENTLY, location);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// The page at `/`: what this is and how to use it.
pub fn home_page() -> Response<ProxyBody> {
    text_response(StatusCode::OK, HOME_PAGE.to_string(), "text/html; charset=utf-8")
}

fn text_response(status: StatusCode, text: String, content_type: &'static str) -> Response<ProxyBody> {
    let len = text.len() as u64;
    let mut resp = Response::new(ProxyBody::full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONTENT_LENGTH, super::headers::number(len));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

const HOME_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>httpcache-proxy</title>
<style>body{font-family:system-ui,sans-serif;max-width:44em;margin:2em auto;padding:0 1em;line-height:1.5}
code{background:#f2f2f2;padding:.1em .3em;border-radius:3px}</style></head>
<body>
<h1>httpcache-proxy</h1>
<p>A caching HTTP proxy. Put the site you want to reach after the proxy's address:</p>
<p><code>http://&lt;this proxy&gt;/&lt;target-host&gt;[:&lt;port&gt;]/&lt;path&gt;?&lt;query&gt;</code></p>
<ul>
<li><code>/example.com/index.html</code> fetches <code>http://example.com/index.html</code>
 (port from <code>--upstream-port</code>, 80 by default)</li>
<li><code>/localhost:8000/</code> fetches <code>http://localhost:8000/</code></li>
<li><code>/https://example.com/a</code> fetches <code>https://example.com/a</code> over TLS</li>
</ul>
<p>It is also a forward proxy (<code>curl -x http://&lt;this proxy&gt; http://example.com/</code>,
<code>HTTP_PROXY</code>, and <code>HTTPS_PROXY</code> through CONNECT) and, with
<code>--origin</code>, a reverse proxy in front of one site.</p>
<p>Responses are stored under <code>--cache-dir</code> and served from the cache while fresh.
Each answer says what happened in <code>X-Cache</code> (HIT or MISS) and <code>Cache-Status</code>.</p>
</body></html>
"#;
