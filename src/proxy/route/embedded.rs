//! The embedded-host scheme: `/<host>[:<port>]/<path>?<query>` names an HTTP upstream, and
//! `/https://<host>[:<port>]/<path>` (or `/http://...`) names the scheme explicitly.

use super::authority::{parse_authority, printable};
use super::{Route, Scheme, Target};

/// Routes an origin-form request target (`path?query`). `default_port` applies to plain
/// `/<host>/` paths; an explicit scheme brings its own default port.
pub fn route(path_and_query: &str, default_port: u16) -> Route {
    let Some(rest) = path_and_query.strip_prefix('/') else {
        return Route::Invalid("request target must start with '/'".into());
    };
    let (scheme, rest, default_port, prefix) = if let Some(r) = rest.strip_prefix("https://") {
        (Scheme::Https, r, 443, "https://")
    } else if let Some(r) = rest.strip_prefix("http://") {
        (Scheme::Http, r, 80, "http://")
    } else {
        (Scheme::Http, rest, default_port, "")
    };
    let end = rest.bytes().position(|b| b == b'/' || b == b'?').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return if prefix.is_empty() {
            Route::Home
        } else {
            Route::Invalid(format!("'/{prefix}' must be followed by a host"))
        };
    }
    let (host, port) = match parse_authority(authority, default_port) {
        Ok(hp) => hp,
        Err(why) => return Route::Invalid(format!("invalid target host '{}': {why}", printable(authority))),
    };
    if tail.is_empty() {
        return Route::AddSlash(format!("/{prefix}{authority}/"));
    }
    if let Some(bad) = tail.bytes().find(|b| b.is_ascii_control() || *b == b' ') {
        return Route::Invalid(format!("invalid character 0x{bad:02x} in path"));
    }
    let path_and_query = if tail.starts_with('?') { format!("/{tail}") } else { tail.to_string() };
    Route::Target(Target { scheme, host, port, path_and_query, host_header: None, public_origin: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(scheme: Scheme, host: &str, port: u16, pq: &str) -> Route {
        let (host_header, public_origin) = (None, None);
        Route::Target(Target {
            scheme,
            host: host.into(),
            port,
            path_and_query: pq.into(),
            host_header,
            public_origin,
        })
    }

    #[test]
    fn routes() {
        use Scheme::{Http, Https};
        let cases: &[(&str, Route)] = &[
            ("/", Route::Home),
            ("/?x=1", Route::Home),
            ("/localhost/", target(Http, "localhost", 8000, "/")),
            ("/Example.COM/a/b.html", target(Http, "example.com", 8000, "/a/b.html")),
            ("/example.com:8080/x?q=1", target(Http, "example.com", 8080, "/x?q=1")),
            ("/example.com?q=1", target(Http, "example.com", 8000, "/?q=1")),
            ("/127.0.0.1:9/i.jpg", target(Http, "127.0.0.1", 9, "/i.jpg")),
            ("/[::1]:81/x", target(Http, "[::1]", 81, "/x")),
            ("/[::1]/x", target(Http, "[::1]", 8000, "/x")),
            ("/https://example.com/x", target(Https, "example.com", 443, "/x")),
            ("/https://example.com:8443/x?y", target(Https, "example.com", 8443, "/x?y")),
            ("/http://example.com/x", target(Http, "example.com", 80, "/x")),
            ("/localhost", Route::AddSlash("/localhost/".into())),
            ("/localhost:81", Route::AddSlash("/localhost:81/".into())),
            ("/https://h", Route::AddSlash("/https://h/".into())),
        ];
        for (input, want) in cases {
            assert_eq!(&route(input, 8000), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in [
            "/user@host/",
            "/host:0/",
            "/host:65536/",
            "/host:/",
            "/host:8x/",
            "/-host/",
            "/ho_st/",
            "/ho%73t/",
            "/[::1/",
            "/[zz]/",
            "/[::1]x/",
            "/a..b/",
            "/host/a\rb",
            "/host/a b",
            "/https:///x",
            "/https://u@h/x",
            "/ftp://h/x",
            "x",
        ] {
            assert!(matches!(route(bad, 80), Route::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn authority_omits_default_port() {
        let Route::Target(t) = route("/h/", 80) else { panic!() };
        assert_eq!(t.authority(), "h");
        let Route::Target(t) = route("/h:81/", 80) else { panic!() };
        assert_eq!(t.authority(), "h:81");
        let Route::Target(t) = route("/https://h/", 80) else { panic!() };
        assert_eq!(t.authority(), "h");
        let Route::Target(t) = route("/https://h:80/", 80) else { panic!() };
        assert_eq!(t.authority(), "h:80");
    }
}
