//! Routing: which upstream a request goes to, chosen per request from its form. CONNECT
//! tunnels, absolute-form requests are forward-proxied, origin-form requests go to an
//! `--origin` (reverse proxy) or name their upstream in the path (embedded-host scheme).
//! Pure functions, table-tested.

mod authority;
mod embedded;
mod reverse;

pub use authority::{parse_authority, printable};
pub use embedded::route;
pub use reverse::{select as select_origin, OriginRule};

use http::{Method, StatusCode, Uri, Version};

use crate::cache::key::CacheKey;

/// The scheme of an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// An upstream target taken from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// How to talk to the upstream.
    pub scheme: Scheme,
    /// Lowercase host name, IPv4 literal, or bracketed IPv6 literal.
    pub host: String,
    /// The upstream port.
    pub port: u16,
    /// Path and query to request upstream (always starts with `/`).
    pub path_and_query: String,
    /// The `Host` field to send when it is not the upstream's authority (reverse proxy with
    /// `--preserve-host`).
    pub host_header: Option<String>,
    /// `scheme://host:port` as the client named the origin, when that is not the upstream
    /// (reverse proxy): the cache key is built from what the client asked for.
    pub public_origin: Option<String>,
}

impl Target {
    /// `host` or `host:port` as the Host header names the upstream (default port omitted).
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            self.name()
        }
    }

    /// The `Host` field sent upstream.
    pub fn host_field(&self) -> String {
        self.host_header.clone().unwrap_or_else(|| self.authority())
    }

    /// The absolute URI requested upstream.
    pub fn uri(&self) -> String {
        let mut uri = String::with_capacity(self.host.len() + self.path_and_query.len() + 16);
        self.push_origin(&mut uri);
        uri.push_str(&self.path_and_query);
        uri
    }

    /// `host:port`, naming the upstream in errors and logs.
    pub fn name(&self) -> String {
        let mut name = String::with_capacity(self.host.len() + 6);
        name.push_str(&self.host);
        name.push(':');
        name.push_str(itoa::Buffer::new().format(self.port));
        name
    }

    /// The cache key of this target.
    pub fn key(&self) -> CacheKey {
        self.key_for(&self.path_and_query)
    }

    /// The cache key of another path on the same origin.
    pub fn key_for(&self, path_and_query: &str) -> CacheKey {
        let mut url = String::with_capacity(self.host.len() + path_and_query.len() + 16);
        self.push_key_origin(&mut url);
        url.push_str(path_and_query);
        CacheKey::from_url(url)
    }

    /// `scheme://host:port` of the origin as the cache key names it (what the client named).
    pub fn key_origin(&self) -> String {
        let mut origin = String::with_capacity(self.host.len() + 16);
        self.push_key_origin(&mut origin);
        origin
    }

    // Built with push_str rather than format!: this runs for every request.
    fn push_key_origin(&self, out: &mut String) {
        match &self.public_origin {
            Some(origin) => out.push_str(origin),
            None => self.push_origin(out),
        }
    }

    fn push_origin(&self, out: &mut String) {
        out.push_str(self.scheme.as_str());
        out.push_str("://");
        out.push_str(&self.host);
        out.push(':');
        out.push_str(itoa::Buffer::new().format(self.port));
    }
}

/// How a request reached its upstream; a label for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `/<host>/<path>` URLs.
    Embedded,
    /// Absolute-form requests (`HTTP_PROXY`).
    Forward,
    /// Origin-form requests sent to an `--origin`.
    Reverse,
    /// CONNECT tunnels.
    Connect,
}

impl Mode {
    /// A lowercase label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Forward => "forward",
            Mode::Reverse => "reverse",
            Mode::Connect => "connect",
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
    /// Not a valid target (400); the message says why.
    Invalid(String),
    /// A valid request this proxy will not serve, with the status and reason.
    Refused(StatusCode, String),
}

/// Which modes are on and where reverse-proxied requests go.
#[derive(Clone, Debug)]
pub struct Routing {
    /// Port for `/<host>/` paths that name none.
    pub upstream_port: u16,
    /// `--origin` rules; empty: no reverse proxying.
    pub origins: Vec<OriginRule>,
    /// Send the client's `Host` to the origin instead of the origin's own name.
    pub preserve_host: bool,
    /// Whether `/<host>/<path>` URLs are served (on when there are no origins).
    pub embedded: bool,
    /// Whether absolute-form requests are served.
    pub forward: bool,
}

/// Routes a request that is not CONNECT. `client_tls` says whether the client connection is
/// HTTPS (the scheme the client named in reverse mode).
pub fn route_request(
    method: &Method,
    version: Version,
    uri: &Uri,
    host_field: Option<&str>,
    client_tls: bool,
    routing: &Routing,
) -> (Mode, Route) {
    debug_assert!(method != Method::CONNECT);
    // HTTP/2 requests always carry scheme and authority (pseudo-headers); they are
    // origin-form requests to this proxy, as forward proxying over HTTP/2 uses CONNECT.
    let h2 = version == Version::HTTP_2;
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    if uri.scheme().is_some() && !h2 {
        return (Mode::Forward, forward(uri, routing));
    }
    let host_field = if h2 { uri.authority().map(|a| a.as_str()).or(host_field) } else { host_field };
    if let Some(rule) = select_origin(&routing.origins, host_field) {
        return (Mode::Reverse, reverse(rule, pq, host_field, client_tls, routing.preserve_host));
    }
    if !routing.embedded {
        let host = printable(host_field.unwrap_or("(none)"));
        let msg = format!("no --origin serves host '{host}'");
        return (Mode::Reverse, Route::Refused(StatusCode::MISDIRECTED_REQUEST, msg));
    }
    (Mode::Embedded, route(pq, routing.upstream_port))
}

fn forward(uri: &Uri, routing: &Routing) -> Route {
    if !routing.forward {
        return Route::Refused(StatusCode::FORBIDDEN, "forward proxying is disabled (--no-forward)".into());
    }
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        Some(other) => return Route::Invalid(format!("unsupported scheme '{}'", printable(other))),
        None => return Route::Invalid("absolute-form request without a scheme".into()),
    };
    let Some(authority) = uri.authority() else {
        return Route::Invalid("absolute-form request without a host".into());
    };
    let (host, port) = match parse_authority(authority.as_str(), scheme.default_port()) {
        Ok(hp) => hp,
        Err(why) => {
            return Route::Invalid(format!("invalid target host '{}': {why}", printable(authority.as_str())))
        }
    };
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_string()
    } else {
        format!("/{path_and_query}")
    };
    Route::Target(Target { scheme, host, port, path_and_query, host_header: None, public_origin: None })
}

fn reverse(rule: &OriginRule, pq: &str, host_field: Option<&str>, client_tls: bool, preserve: bool) -> Route {
    let client_scheme = if client_tls { Scheme::Https } else { Scheme::Http };
    let named = host_field.and_then(|h| parse_authority(h, client_scheme.default_port()).ok());
    let public_origin = match &named {
        Some((host, port)) => format!("{}://{host}:{port}", client_scheme.as_str()),
        None => format!("{}://{}:{}", rule.scheme.as_str(), rule.host, rule.port),
    };
    let host_header = match (&named, host_field) {
        (Some(_), Some(field)) if preserve => Some(field.to_ascii_lowercase()),
        _ => None,
    };
    Route::Target(Target {
        scheme: rule.scheme,
        host: rule.host.clone(),
        port: rule.port,
        path_and_query: if pq.starts_with('/') { pq.to_string() } else { format!("/{pq}") },
        host_header,
        public_origin: Some(public_origin),
    })
}

/// Parses a CONNECT request's `host:port` (RFC 9110 §9.3.6: the port is required).
pub fn connect_target(uri: &Uri) -> Result<(String, u16), String> {
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.is_empty() || uri.path_and_query().is_some_and(|p| !p.as_str().is_empty() && p != "/") {
        return Err("CONNECT needs host:port".into());
    }
    if uri.port_u16().is_none() {
        return Err(format!("CONNECT target '{}' has no port", printable(authority)));
    }
    parse_authority(authority, 0)
        .map_err(|why| format!("invalid CONNECT target '{}': {why}", printable(authority)))
}

#[cfg(test)]
mod tests;
