//! Flags of the hostile-input guards, access control and connection limits.

use clap::Args;

use std::time::Duration;

use crate::access::cidr::{parse_cidr, Cidr};
use crate::access::targets::{parse_target_rule, TargetRule};
use crate::config::{parse_duration, parse_size};

/// Limits and access control against hostile clients.
#[derive(Args, Debug, Clone)]
pub struct HardenArgs {
    /// Longest request target (path and query; with the authority in absolute form): 414 over.
    #[arg(long, default_value = "8KiB", value_parser = parse_size)]
    pub max_uri_length: u64,
    /// Largest request head (request line and header fields; the header list in HTTP/2): 431
    /// over (at least 8KiB).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    pub max_header_size: u64,
    /// Most header fields in a request: 431 over.
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,
    /// Largest request body (0: no limit): 413 over.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub max_request_body: u64,
    /// Client network allowed to connect (CIDR, repeatable). Default: loopback only when
    /// --host is loopback, everyone (with a warning) when it is a network address.
    #[arg(long = "allow-client", value_name = "CIDR", value_parser = parse_cidr)]
    pub allow_client: Vec<Cidr>,
    /// Open client connections in all (0: no limit); over it a connection gets 503 and is
    /// closed.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections per client address (0: no limit); over it 503 and closed.
    #[arg(long, default_value_t = 0)]
    pub max_connections_per_client: usize,
    /// Longest wait for a request head, including while a keep-alive connection waits for
    /// its next request (slowloris and idle keep-alive guard); also bounds the TLS handshake.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Upstream target allowed (host glob like '*.example.com', or CIDR; repeatable). When
    /// given, only matching targets are reached, and a match lifts the built-in denials.
    #[arg(long = "allow-target", value_name = "HOST|CIDR", value_parser = parse_target_rule)]
    pub allow_target: Vec<TargetRule>,
    /// Upstream target refused with 403 (host glob or CIDR, checked on the resolved address;
    /// repeatable). Link-local and cloud metadata addresses are always refused.
    #[arg(long = "deny-target", value_name = "HOST|CIDR", value_parser = parse_target_rule)]
    pub deny_target: Vec<TargetRule>,
    /// Also refuse private, shared, unique-local and loopback targets (SSRF protection for a
    /// proxy that serves a network).
    #[arg(long)]
    pub deny_private: bool,
}
