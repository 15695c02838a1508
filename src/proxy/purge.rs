//! The PURGE method on the proxy port: a client the `--purge-allow` list admits removes the
//! URL it names (in any addressing mode, with its Vary variants) from both tiers. The answer
//! is JSON: 200 with the count, 404 when nothing was stored, 403 for other clients.

use std::net::IpAddr;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::route::{route_request, Route};
use super::{ClientInfo, Proxy};

/// An address block (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ADDR[/BITS]`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("{s:?}: not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, bits })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Whether a request is a PURGE.
pub(super) fn is_purge(req: &Request<Incoming>) -> bool {
    req.method().as_str() == "PURGE"
}

/// Answers a PURGE.
pub(super) async fn handle(proxy: &Proxy, req: Request<Incoming>) -> Response<ProxyBody> {
    let client = req.extensions().get::<ClientInfo>().copied();
    let settings = proxy.settings();
    let allowed = client.is_some_and(|c| settings.purge_allow.iter().any(|n| n.contains(c.addr.ip())));
    if !allowed {
        return json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "error": "PURGE is not allowed from this address" }),
        );
    }
    let host = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok());
    let tls = client.is_some_and(|c| c.tls);
    let (_, routed) = route_request(req.method(), req.version(), req.uri(), host, tls, &settings.routing);
    let Route::Target(target) = routed else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "PURGE needs a URL this proxy serves" }),
        );
    };
    let key = target.key();
    let purged = match proxy.cache() {
        Some(cache) => cache.purge_url(key.url()).await,
        None => 0,
    };
    crate::metrics::global().purged.add(0, purged as u64);
    tracing::info!(key = key.url(), purged, "PURGE");
    let status = if purged > 0 { StatusCode::OK } else { StatusCode::NOT_FOUND };
    json(status, &serde_json::json!({ "purged": purged, "key": key.url() }))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_contain_their_addresses_only() {
        let lo = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(lo.contains("127.1.2.3".parse().unwrap()));
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("128.0.0.1".parse().unwrap()));
        let net = Cidr::parse("10.1.2.0/23").unwrap();
        assert!(net.contains("10.1.3.255".parse().unwrap()));
        assert!(!net.contains("10.1.4.0".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }
}
