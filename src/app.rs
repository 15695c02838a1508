//! Wiring: builds the cache tiers, the upstream client and the proxy from the settings, binds
//! the listener, and runs until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::TcpListener;

use crate::access::{SharedTargets, TargetAcl};
use crate::access_log::AccessLog;
use crate::cache::policy::{PolicyConfig, ReadingKey};
use crate::cache::{Cache, CacheLimits};
use crate::cli::{DemoArgs, RunArgs};
use crate::config::load::Loaded;
use crate::demo;
use crate::proxy::route::Routing;
use crate::proxy::tunnel::TunnelSettings;
use crate::proxy::upstream::{Timeouts, Upstream, UpstreamSettings};
use crate::proxy::{Proxy, ProxySettings};
use crate::reload::{self, Reloader};
use crate::server::{self, ServerSettings};

/// Checks settings that span several flags; errors name the flag.
pub fn validate(args: &RunArgs) -> anyhow::Result<()> {
    if args.memory_size == 0 {
        bail!("--memory-size must be greater than zero");
    }
    if args.cache_size == 0 {
        bail!("--cache-size must be greater than zero");
    }
    if args.max_object_size > args.cache_size {
        bail!("--max-object-size ({}) exceeds --cache-size ({})", args.max_object_size, args.cache_size);
    }
    if args.upstream_timeout.is_zero() || args.connect_timeout.is_zero() {
        bail!("--upstream-timeout and --connect-timeout must be greater than zero");
    }
    Ok(())
}

/// Builds the proxy described by `args`, listening on `listen_port`.
pub fn build_proxy(args: &RunArgs, listen_port: u16) -> anyhow::Result<Arc<Proxy>> {
    let stale_time = args.stale_time.unwrap_or(0);
    let cache = if stale_time == 0 {
        None
    } else {
        let limits = CacheLimits {
            disk_bytes: args.cache_size,
            memory_bytes: args.memory_size,
            max_object: args.max_object_size,
        };
        let cache = Cache::open(Some(&args.cache_dir), limits).with_context(|| {
            format!("--cache-dir {}: cannot open the cache directory", args.cache_dir.display())
        })?;
        // Memory-tier bodies sent with `sendfile` are cheaper to send from a file on the cache
        // directory's filesystem than from a `memfd` (see `cache::store::mapped`).
        if let Err(e) = crate::cache::store::mapped::place_in(&args.cache_dir) {
            tracing::info!(error = %e, "memory-tier bodies of 64-128 KiB go to anonymous memory files");
        }
        Some(Arc::new(cache.with_shared(args.shared.config()?)))
    };
    let m = &args.modes;
    let targets: SharedTargets = Arc::new(arc_swap::ArcSwap::from_pointee(target_acl(args)));
    let upstream = Upstream::new(&UpstreamSettings {
        timeouts: Timeouts {
            connect: args.connect_timeout,
            first_byte: args.upstream_timeout,
            idle: m.upstream_idle_timeout,
        },
        max_idle_per_host: m.pool_max_idle_per_host,
        pool_idle_timeout: m.pool_idle_timeout,
        extra_ca: m.upstream_ca.clone(),
        max_per_host: m.upstream_max_connections_per_host,
        targets: targets.clone(),
    })?;
    let via_name = via_name(listen_port);
    let settings = ProxySettings {
        upstream_port: args.upstream_port,
        policy: PolicyConfig {
            heuristic_lifetime: std::time::Duration::from_secs(stale_time),
            force_ttl: args.force_ttl,
            shared: true,
        },
        cache_name: args.cache_name.clone(),
        targeted_cache_control: args.targeted_cache_control.0.clone(),
        reading_key: ReadingKey::unique(),
        routing: Routing {
            upstream_port: args.upstream_port,
            origins: m.origin.clone(),
            preserve_host: m.preserve_host,
            embedded: m.origin.is_empty() || m.embedded_host,
            forward: !m.no_forward,
        },
        tunnel: TunnelSettings {
            enabled: !m.no_connect,
            ports: m.connect_ports.clone(),
            connect_timeout: args.connect_timeout,
            idle_timeout: m.connect_idle_timeout,
            targets: targets.clone(),
        },
        via: http::HeaderValue::from_str(&format!("1.1 {via_name} (httpcache-proxy)"))
            .context("the host name is not usable in Via")?,
        via_name,
        rules: Arc::new(arc_swap::ArcSwap::from_pointee(reload::rules(args))),
        access_log: open_access_log(args)?,
        purge_allow: args.admin.purge_allow.clone(),
        guard: Arc::new(arc_swap::ArcSwap::from_pointee(guard_limits(args))),
        targets,
    };
    Ok(Arc::new(Proxy::new(cache, upstream, settings)))
}

/// The upstream target rules the flags describe (at start and on each reload), logged.
pub fn target_acl(args: &RunArgs) -> TargetAcl {
    let h = &args.harden;
    let acl = TargetAcl::new(h.allow_target.clone(), h.deny_target.clone(), h.deny_private);
    tracing::info!(rules = %acl.describe(), "upstream targets");
    acl
}

/// The request limits the flags describe (at start and on each reload).
pub fn guard_limits(args: &RunArgs) -> crate::proxy::guard::Limits {
    crate::proxy::guard::Limits {
        max_uri_length: usize::try_from(args.harden.max_uri_length).unwrap_or(usize::MAX),
        max_request_body: args.harden.max_request_body,
    }
}

/// This proxy's received-by name in `Via`: `<host name>:<port>`, unique per listener, so a
/// request that comes back to the same proxy is recognised as a loop.
fn via_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        .unwrap_or_else(|| "httpcache-proxy".into());
    format!("{host}:{port}")
}

/// The modes this listener serves, for the start-up log.
fn mode_summary(m: &crate::cli::ModeArgs) -> String {
    let mut modes = Vec::new();
    for rule in &m.origin {
        let host = rule.for_host.as_deref().unwrap_or("*");
        modes.push(format!("reverse {host} -> {}://{}", rule.scheme.as_str(), rule.authority()));
    }
    if m.origin.is_empty() || m.embedded_host {
        modes.push("embedded-host".into());
    }
    if !m.no_forward {
        modes.push("forward".into());
    }
    if !m.no_connect {
        modes.push(format!("connect to ports {:?}", m.connect_ports));
    }
    modes.join(", ")
}

/// Runs the proxy until a shutdown signal.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let listener = bind(&args)?;
    serve(args, listener, None).await
}

/// Runs the proxy from loaded settings; SIGHUP reloads them from `argv` and the config file.
pub async fn run_loaded(loaded: Loaded, argv: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let args = loaded.cli.run.clone();
    validate(&args)?;
    let listener = bind(&args)?;
    serve(args, listener, Some((loaded, argv))).await
}

/// `check-config FILE`: loads the file as `--config` would and runs the same checks as a
/// start; returns a one-line summary.
pub fn check_config(path: &std::path::Path) -> anyhow::Result<String> {
    let loaded = crate::config::load::check(path.to_path_buf())?;
    let run = &loaded.cli.run;
    if run.stale_time.is_some() {
        validate(run)?;
    } else {
        // The positional may come from the command line; check the rest with a stand-in.
        validate(&RunArgs { stale_time: Some(1), ..run.clone() })?;
    }
    let rules = reload::rules(run);
    Ok(format!("{}: ok ({} cache rules)", path.display(), rules.len()))
}

fn open_access_log(args: &RunArgs) -> anyhow::Result<Option<AccessLog>> {
    let Some(path) = &args.access_log else { return Ok(None) };
    let log =
        AccessLog::open(path).with_context(|| format!("--access-log {}: cannot open", path.display()))?;
    Ok(Some(log))
}

fn bind(args: &RunArgs) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(args.host, args.port);
    server::listen(addr).with_context(|| format!("--host/--port: cannot listen on {addr}"))
}

async fn serve(
    args: RunArgs,
    listener: TcpListener,
    reload: Option<(Loaded, Vec<std::ffi::OsString>)>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let proxy = build_proxy(&args, local.port())?;
    let gate = Arc::new(crate::access::clients::gate(&args.harden, args.host));
    if let Some((current, argv)) = reload {
        let settings = proxy.settings();
        Reloader {
            argv,
            current,
            rules: settings.rules.clone(),
            guard: settings.guard.clone(),
            targets: settings.targets.clone(),
            gate: gate.clone(),
            access_log: settings.access_log.clone(),
        }
        .spawn();
    }
    let tls = match (&args.modes.tls_cert, &args.modes.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls::acceptor(cert, key)?),
        _ => None,
    };
    crate::admin::start(&args.admin, proxy.clone()).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let stale_time = args.stale_time.unwrap_or(0);
    let shared_cache = match proxy.cache() {
        Some(cache) => cache.start_shared(std::time::Duration::from_secs(1)).await,
        None => "off",
    };
    let runtime = tokio::runtime::Handle::current();
    tracing::info!(
        shared_cache,
        addr = %local,
        stale_time,
        upstream_port = args.upstream_port,
        cache_dir = %args.cache_dir.display(),
        caching = stale_time > 0,
        modes = %mode_summary(&args.modes),
        workers = runtime.metrics().num_workers(),
        scheduler = ?runtime.runtime_flavor(),
        "listening on {scheme}://{local}/"
    );
    let settings = ServerSettings {
        header_timeout: args.harden.header_read_timeout,
        grace: args.shutdown_grace,
        tls,
        gate,
        max_header_size: usize::try_from(args.harden.max_header_size).unwrap_or(usize::MAX),
        max_headers: args.harden.max_headers,
    };
    // The accept loop runs on a runtime worker. Under `block_on` it would run on the main
    // thread, and each accepted connection's task would reach a worker through a futex wake
    // and a context switch (strace: a third of a futex call per connection on new-connection
    // load).
    let accept_loop = tokio::spawn(server::serve(listener, proxy.clone(), settings, shutdown_signal()));
    if let Err(e) = accept_loop.await {
        tracing::error!(error = %e, "the accept loop failed");
    }
    if let Some(cache) = proxy.cache() {
        cache.flush().await;
    }
    if let Some(log) = proxy.settings().access_log.as_ref().filter(|l| l.dropped() > 0) {
        tracing::warn!(dropped = log.dropped(), "access log lines dropped (the writer fell behind)");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs the demo: the built-in origin with the test page, and the proxy in front of it.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let site = demo::Site::generate();
    if let Some(dir) = &args.write_site {
        site.write_to(dir).with_context(|| format!("--write-site {}", dir.display()))?;
        println!("wrote {} images and index.html to {}", site.image_count(), dir.display());
        return Ok(());
    }
    let origin = TcpListener::bind(("127.0.0.1", args.origin_port))
        .await
        .with_context(|| format!("--origin-port: cannot listen on 127.0.0.1:{}", args.origin_port))?;
    let origin_port = origin.local_addr()?.port();
    tokio::spawn(demo::origin::serve(origin, Arc::new(site)));
    let proxy_args = demo_run_args(&args, origin_port)?;
    let listener = bind(&proxy_args)?;
    let port = listener.local_addr()?.port();
    println!(
        "demo: origin on http://127.0.0.1:{origin_port}/ ; open http://127.0.0.1:{port}/127.0.0.1:{origin_port}/ \
         in a browser, then reload to see every image served from the cache (Ctrl-C stops)"
    );
    serve(proxy_args, listener, None).await
}

/// The proxy settings of the demo: every flag at its default but those the demo sets, so a new
/// flag needs no change here.
fn demo_run_args(args: &DemoArgs, origin_port: u16) -> anyhow::Result<RunArgs> {
    let mut argv: Vec<std::ffi::OsString> =
        vec!["httpcache-proxy".into(), args.stale_time.to_string().into()];
    for (flag, value) in [
        ("--port", args.port.to_string()),
        ("--upstream-port", origin_port.to_string()),
        ("--host", "127.0.0.1".to_string()),
        ("--shutdown-grace", "5s".to_string()),
    ] {
        argv.push(flag.into());
        argv.push(value.into());
    }
    argv.push("--cache-dir".into());
    argv.push(args.cache_dir.clone().into());
    if args.verbose {
        argv.push("--verbose".into());
    }
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv)?;
    Ok(cli.run)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}
