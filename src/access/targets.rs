//! Which upstream targets the proxy may reach: host-name patterns and address ranges, checked
//! on the addresses a name resolves to (what is checked is what is connected), so a name
//! that points at an internal address cannot get around a range rule.
//!
//! Order: a `--deny-target` match refuses; with `--allow-target` rules a target must match one
//! (and a match also lifts the built-in ranges below); otherwise the built-in ranges refuse:
//! link-local and cloud metadata always, private and loopback ranges with `--deny-private`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::Cidr;

/// Link-local (where cloud metadata services live) and AWS's IPv6 metadata address.
const METADATA: &[&str] = &["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];
/// Private, shared (CGNAT), unique-local and loopback ranges (--deny-private).
const PRIVATE: &[&str] =
    &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "127.0.0.0/8", "::1/128"];

/// A `--allow-target` / `--deny-target` rule: an address range, or a host-name glob (`*`
/// matches any run of characters; `*.example.com`, `intranet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetRule {
    /// Addresses (checked on the resolved address).
    Net(Cidr),
    /// Host names as the client named them (lower-case).
    Name(String),
}

impl FromStr for TargetRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty target rule".into());
        }
        if let Ok(net) = s.parse::<Cidr>() {
            return Ok(TargetRule::Net(net));
        }
        let name = s.to_ascii_lowercase();
        if name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b)) {
            Ok(TargetRule::Name(name))
        } else {
            Err(format!("'{s}' is neither a CIDR nor a host pattern (letters, digits, '-', '.', '*')"))
        }
    }
}

impl fmt::Display for TargetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRule::Net(n) => n.fmt(f),
            TargetRule::Name(n) => f.write_str(n),
        }
    }
}

/// Parses a target rule for clap.
pub fn parse_target_rule(s: &str) -> Result<TargetRule, String> {
    s.parse()
}

/// Why a target was refused (answered 403).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TargetRefused(pub String);

/// The target rules in force.
#[derive(Clone, Debug)]
pub struct TargetAcl {
    allow: Vec<TargetRule>,
    deny: Vec<TargetRule>,
    built_in: Vec<(Cidr, &'static str)>,
}

/// The rules in force, replaced whole by a SIGHUP reload; each connection attempt reads them
/// once.
pub type SharedTargets = std::sync::Arc<arc_swap::ArcSwap<TargetAcl>>;

impl Default for TargetAcl {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new(), false)
    }
}

impl TargetAcl {
    /// The rules of `--allow-target`, `--deny-target` and `--deny-private`.
    pub fn new(allow: Vec<TargetRule>, deny: Vec<TargetRule>, deny_private: bool) -> Self {
        let mut built_in: Vec<(Cidr, &'static str)> =
            METADATA.iter().map(|n| (n.parse().expect("built-in CIDR"), "link-local/metadata")).collect();
        if deny_private {
            built_in.extend(
                PRIVATE.iter().map(|n| (n.parse().expect("built-in CIDR"), "private (--deny-private)")),
            );
        }
        Self { allow, deny, built_in }
    }

    /// A summary for the start-up log.
    pub fn describe(&self) -> String {
        let list =
            |rules: &[TargetRule]| rules.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let built_in = self.built_in.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>().join(", ");
        format!("allow [{}], deny [{}], built-in deny [{built_in}]", list(&self.allow), list(&self.deny))
    }

    /// Checks `host` connecting at `addr`.
    pub fn check(&self, host: &str, addr: IpAddr) -> Result<(), TargetRefused> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let addr = addr.to_canonical();
        let matches = |rule: &TargetRule| match rule {
            TargetRule::Net(net) => net.contains(addr),
            TargetRule::Name(pattern) => glob(pattern.as_bytes(), host.as_bytes()),
        };
        if let Some(rule) = self.deny.iter().find(|r| matches(r)) {
            return Err(TargetRefused(format!("target {host} ({addr}) is denied by --deny-target {rule}")));
        }
        if !self.allow.is_empty() {
            if self.allow.iter().any(matches) {
                return Ok(());
            }
            return Err(TargetRefused(format!("target {host} ({addr}) matches no --allow-target")));
        }
        if let Some((net, why)) = self.built_in.iter().find(|(net, _)| net.contains(addr)) {
            return Err(TargetRefused(format!("target {host} ({addr}) is in {net}, denied as {why}")));
        }
        Ok(())
    }

    /// Resolves `host` and keeps the addresses the rules allow; `Err(Ok(refusal))` when every
    /// address is refused, `Err(Err(io))` when the name does not resolve.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Result<TargetRefused, std::io::Error>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port)).await.map_err(Err)?.collect(),
        };
        let mut refusal = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check(bare, a.ip()) {
                Ok(()) => true,
                Err(r) => {
                    refusal.get_or_insert(r);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refusal) {
            (true, Some(r)) => Err(Ok(r)),
            (true, None) => Err(Err(std::io::Error::other(format!("{bare} resolves to no address")))),
            _ => Ok(allowed),
        }
    }
}

/// `*` matches any run of bytes (including none); everything else matches itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rules(list: &[&str]) -> Vec<TargetRule> {
        list.iter().map(|r| r.parse().unwrap()).collect()
    }

    #[test]
    fn globs() {
        assert!(glob(b"*.example.com", b"a.b.example.com"));
        assert!(!glob(b"*.example.com", b"example.com"));
        assert!(glob(b"intranet", b"intranet"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
    }

    #[test]
    fn metadata_is_denied_by_default_and_loopback_allowed() {
        let acl = TargetAcl::default();
        assert!(acl.check("169.254.169.254", ip("169.254.169.254")).is_err());
        assert!(acl.check("metadata", ip("fd00:ec2::254")).is_err());
        assert!(acl.check("x", ip("fe80::1")).is_err());
        assert!(acl.check("localhost", ip("127.0.0.1")).is_ok());
        assert!(acl.check("x", ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn deny_private_and_allow_exceptions() {
        let acl = TargetAcl::new(Vec::new(), Vec::new(), true);
        for a in [
            "10.1.1.1",
            "172.20.0.1",
            "192.168.0.1",
            "100.64.1.1",
            "127.0.0.1",
            "::1",
            "fd12::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(acl.check("h", ip(a)).is_err(), "{a}");
        }
        assert!(acl.check("h", ip("93.184.216.34")).is_ok());
        let acl = TargetAcl::new(rules(&["127.0.0.1", "*.corp"]), Vec::new(), true);
        assert!(acl.check("h", ip("127.0.0.1")).is_ok());
        assert!(acl.check("db.corp", ip("10.0.0.1")).is_ok());
        assert!(acl.check("h", ip("93.184.216.34")).is_err(), "not on the allow-list");
    }

    #[test]
    fn deny_rules_win() {
        let acl = TargetAcl::new(rules(&["*"]), rules(&["*.bad", "10.0.0.0/8"]), false);
        assert!(acl.check("x.bad", ip("1.2.3.4")).is_err());
        assert!(acl.check("good", ip("10.0.0.1")).is_err());
        assert!(acl.check("good", ip("1.2.3.4")).is_ok());
        assert!("a b".parse::<TargetRule>().is_err());
    }
}
