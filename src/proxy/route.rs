//! Routing for the embedded-host scheme: `/<host>[:<port>]/<path>?<query>` names the upstream.
//! Pure functions, table-tested.

/// An upstream target taken from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Lowercase host name, IPv4 literal, or bracketed IPv6 literal.
    pub host: String,
    /// The port: from the URL, else the configured upstream port.
    pub port: u16,
    /// Path and query to request upstream (always starts with `/`).
    pub path_and_query: String,
}

impl Target {
    /// `host` or `host:port` as the Host header names it (port omitted when it is 80).
    pub fn authority(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: the usage page.
    Home,
    /// `/<host>` without a slash: redirect to `/<host>/` so relative links resolve.
    AddSlash(String),
    /// A proxied request.
    Target(Target),
    /// Not a valid target; the message says why.
    Invalid(String),
}

/// Routes an origin-form request target (`path?query`).
pub fn route(path_and_query: &str, default_port: u16) -> Route {
    let Some(rest) = path_and_query.strip_prefix('/') else {
        return Route::Invalid("request target must start with '/'".into());
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Route::Home;
    }
    let (host, port) = match parse_authority(authority, default_port) {
        Ok(hp) => hp,
        Err(why) => return Route::Invalid(format!("invalid target host '{}': {why}", printable(authority))),
    };
    if tail.is_empty() {
        return Route::AddSlash(format!("/{authority}/"));
    }
    if let Some(bad) = tail.bytes().find(|b| b.is_ascii_control() || *b == b' ') {
        return Route::Invalid(format!("invalid character 0x{bad:02x} in path"));
    }
    let path_and_query = if tail.starts_with('?') { format!("/{tail}") } else { tail.to_string() };
    Route::Target(Target { host, port, path_and_query })
}

/// Validates `host[:port]`: a DNS name, an IPv4 literal or a bracketed IPv6 literal, with no
/// user info, percent-encoding or whitespace. Returns the lowercase host and the port.
pub fn parse_authority(authority: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    if authority.contains('@') {
        return Err("user info is not allowed");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or("unclosed '['")?;
        let addr = &v6[..close];
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| "bad IPv6 address")?;
        let after = &v6[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("junk after IPv6 address"),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    let port = match port {
        Some(p) => parse_port(p)?,
        None => default_port,
    };
    if !host.starts_with('[') && !valid_host_name(&host) {
        return Err("not a host name or IP address");
    }
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad port");
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("port out of range"),
        Ok(n) => Ok(n),
    }
}

/// RFC 1123 host names (letters, digits, hyphens; labels of 1-63; at most 253 in all). IPv4
/// literals pass as they are digits and dots.
fn valid_host_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A short, log-safe rendering of untrusted input.
fn printable(s: &str) -> String {
    s.chars().take(80).map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, pq: &str) -> Route {
        Route::Target(Target { host: host.into(), port, path_and_query: pq.into() })
    }

    #[test]
    fn routes() {
        let cases: &[(&str, Route)] = &[
            ("/", Route::Home),
            ("/?x=1", Route::Home),
            ("/localhost/", target("localhost", 8000, "/")),
            ("/Example.COM/a/b.html", target("example.com", 8000, "/a/b.html")),
            ("/example.com:8080/x?q=1", target("example.com", 8080, "/x?q=1")),
            ("/example.com?q=1", target("example.com", 8000, "/?q=1")),
            ("/127.0.0.1:9/i.jpg", target("127.0.0.1", 9, "/i.jpg")),
            ("/[::1]:81/x", target("[::1]", 81, "/x")),
            ("/[::1]/x", target("[::1]", 8000, "/x")),
            ("/localhost", Route::AddSlash("/localhost/".into())),
            ("/localhost:81", Route::AddSlash("/localhost:81/".into())),
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
    }

    #[test]
    fn long_host_names_are_rejected() {
        let long = format!("/{}/", "a".repeat(64));
        assert!(matches!(route(&long, 80), Route::Invalid(_)));
    }
}
