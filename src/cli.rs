//! Command-line flags. The original proxy's command line is kept as it was:
//! `httpcache-proxy <stale_time> [--port] [--upstream-port] [--host] [--cache-dir] [-v]`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod harden;

use crate::cache::policy::rules::Rule;
use crate::config::rule::parse_rule;
use crate::config::{parse_duration, parse_field_name, parse_size, FieldName};
use crate::proxy::route::OriginRule;

/// A fast, standards-correct HTTP caching proxy.
///
/// Visit http://<host>:<port>/<target-host>[:<target-port>]/<path> to fetch <path> from
/// <target-host> through the cache.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "httpcache-proxy",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// A subcommand instead of running the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Proxy settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Start a built-in origin serving the 272-image test page, with the proxy in front of it.
    Demo(DemoArgs),
    /// Check a config file (every key, value and rule) without starting the proxy.
    CheckConfig(CheckConfigArgs),
    /// Inspect, verify, purge or warm a cache directory (proxy running or not).
    Cache(crate::tools::CacheArgs),
}

/// Arguments of `check-config`.
#[derive(Args, Debug, Clone)]
pub struct CheckConfigArgs {
    /// The TOML file, as given to --config.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Flags of `demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Write the test site to this folder and exit (serve it with any static server).
    #[arg(long, value_name = "DIR")]
    pub write_site: Option<PathBuf>,
    /// Seconds the demo caches responses that have Last-Modified.
    #[arg(long, default_value_t = 60)]
    pub stale_time: u64,
    /// Port the demo proxy listens on.
    #[arg(long, default_value_t = 8888)]
    pub port: u16,
    /// Port of the built-in origin (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub origin_port: u16,
    /// Cache directory of the demo proxy.
    #[arg(long, default_value = "./cache")]
    pub cache_dir: PathBuf,
    /// Debug-level logs.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of the proxy itself.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Seconds a response stays fresh when the origin sent Last-Modified but no explicit
    /// freshness (RFC 9111 heuristic freshness). 0 disables caching.
    #[arg(value_name = "STALE_TIME", required = true)]
    pub stale_time: Option<u64>,
    /// Port to listen on.
    #[arg(long, default_value_t = 8888)]
    pub port: u16,
    /// Upstream port used when the URL names none.
    #[arg(long, default_value_t = 80)]
    pub upstream_port: u16,
    /// Address to bind (0.0.0.0 serves the network).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Directory of the disk cache.
    #[arg(long, default_value = "./cache")]
    pub cache_dir: PathBuf,
    /// Debug-level logs.
    #[arg(short, long)]
    pub verbose: bool,
    /// Disk cache bound (e.g. 10GiB, 500MB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub cache_size: u64,
    /// Memory tier bound.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub memory_size: u64,
    /// Largest response body stored.
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    pub max_object_size: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The original proxy's behaviour: every successful GET is fresh for exactly STALE_TIME
    /// seconds whatever the origin says (no-store and private are still honoured).
    #[arg(long)]
    pub force_ttl: bool,
    /// Upstream connect timeout (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: std::time::Duration,
    /// Upstream timeout for the response head (first byte); see --upstream-idle-timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub upstream_timeout: std::time::Duration,
    /// Grace period for in-flight requests on shutdown.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Threads serving requests [default: one per CPU the process may run on]. With 1, one
    /// thread runs everything on tokio's current-thread scheduler.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// This cache's name in Cache-Status headers.
    #[arg(long, default_value = "httpcache-proxy")]
    pub cache_name: String,
    /// Targeted cache-control field (RFC 9213) that overrides Cache-Control for this cache and
    /// is not forwarded downstream; "none" disables it.
    #[arg(long, default_value = "CDN-Cache-Control", value_parser = parse_field_name)]
    pub targeted_cache_control: FieldName,
    /// Forward, reverse and CONNECT modes, TLS and the upstream pool.
    #[command(flatten)]
    pub modes: ModeArgs,
    /// Limits and access control against hostile clients.
    #[command(flatten)]
    pub harden: harden::HardenArgs,
    /// TOML file holding any of these settings (keys named as the long flags, e.g.
    /// `cache-size = "10GiB"`) and the cache rules; flags given here override it. SIGHUP
    /// reloads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Cache rule 'REGEX=DURATION' (repeatable): successful responses whose URL
    /// (http://host:port/path?query) matches are fresh for DURATION whatever the origin sent;
    /// no-store, private and Authorization are still honoured. First match wins.
    #[arg(long = "rule", value_name = "REGEX=DURATION", value_parser = parse_rule)]
    pub rules: Vec<Rule>,
    /// Log filter (e.g. debug, "info,httpcache_proxy=debug"); overrides RUST_LOG and -v.
    #[arg(long, value_name = "FILTER", value_parser = crate::logging::parse_filter)]
    pub log_level: Option<String>,
    /// Access log in Combined Log Format (reopened on SIGHUP, for logrotate).
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// Admin listener (metrics, stats, purge API, dashboard) and PURGE.
    #[command(flatten)]
    pub admin: crate::admin::AdminArgs,
    /// The shared (Redis) tier.
    #[command(flatten)]
    pub shared: crate::config::shared::SharedArgs,
    /// The config file's `[[cache-rule]]` tables (after the `--rule` ones).
    #[arg(skip)]
    pub file_rules: Vec<Rule>,
}

/// How clients reach the proxy and how it reaches upstreams (forward, reverse, CONNECT, TLS).
#[derive(Args, Debug, Clone)]
pub struct ModeArgs {
    /// Reverse proxy: send origin-form requests to this origin (http(s)://host[:port]); as
    /// NAME=URL only requests whose Host is NAME. Repeatable. Turns the /<host>/ scheme off
    /// unless --embedded-host is given.
    #[arg(long, value_name = "[NAME=]URL", value_parser = OriginRule::parse)]
    pub origin: Vec<OriginRule>,
    /// Reverse proxy: send the client's Host to the origin instead of the origin's name.
    #[arg(long)]
    pub preserve_host: bool,
    /// Keep serving /<host>/<path> URLs for requests no --origin serves.
    #[arg(long)]
    pub embedded_host: bool,
    /// Refuse absolute-form (forward proxy) requests with 403.
    #[arg(long)]
    pub no_forward: bool,
    /// Refuse CONNECT with 403.
    #[arg(long)]
    pub no_connect: bool,
    /// Port CONNECT may reach (repeatable; default 443 only).
    #[arg(long = "connect-port", value_name = "PORT", default_values_t = [443u16])]
    pub connect_ports: Vec<u16>,
    /// A CONNECT tunnel with no bytes either way for this long is closed.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub connect_idle_timeout: Duration,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. ALPN offers h2 and
    /// http/1.1.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for HTTPS upstreams, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Longest silence between upstream body chunks.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub upstream_idle_timeout: Duration,
    /// Upstream connections in use per host at once (0: no limit); a request that finds them
    /// all busy for --connect-timeout answers 503.
    #[arg(long, default_value_t = 512)]
    pub upstream_max_connections_per_host: usize,
    /// Idle upstream connections kept per host.
    #[arg(long, default_value_t = 256)]
    pub pool_max_idle_per_host: usize,
    /// How long an idle upstream connection is kept for reuse.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub pool_idle_timeout: Duration,
}
