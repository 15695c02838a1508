//! The admin listener: Prometheus metrics, the stats and entries API, purges and the live
//! dashboard, on their own port (off unless `--admin-port` is given; loopback by default),
//! served by their own small HTTP/1.1 server task, off the proxy's hot path.

mod api;
mod dashboard;
mod query;
mod stats;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::access::cidr::{parse_cidr, Cidr};
use crate::metrics::{self, CacheCollector};
use crate::proxy::Proxy;

/// Flags of the admin listener and of PURGE.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Serve metrics, the stats API, purges and the dashboard on this port (off unless given;
    /// 0 picks a free port).
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// Address the admin listener binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub admin_host: IpAddr,
    /// Clients allowed to send PURGE to the proxy port (repeatable CIDR, e.g. 10.0.0.0/8);
    /// others get 403.
    #[arg(long = "purge-allow", value_name = "CIDR", value_parser = parse_cidr,
          default_values = ["127.0.0.0/8", "::1/128"])]
    pub purge_allow: Vec<Cidr>,
}

/// What the admin handlers read.
pub(crate) struct Admin {
    proxy: Arc<Proxy>,
    collector: Option<CacheCollector>,
    registry: prometheus_client::registry::Registry,
}

/// Binds the admin listener if `--admin-port` is set and serves it on a task of its own.
/// Returns the bound address.
pub async fn start(args: &AdminArgs, proxy: Arc<Proxy>) -> anyhow::Result<Option<SocketAddr>> {
    let Some(port) = args.admin_port else { return Ok(None) };
    let addr = SocketAddr::new(args.admin_host, port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--admin-host/--admin-port: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    if !args.admin_host.is_loopback() {
        tracing::warn!(addr = %local, "admin listener on a non-loopback address: anyone who reaches it can purge");
    }
    let collector = proxy.cache().cloned().map(CacheCollector::new);
    let registry = metrics::registry(collector.clone(), Vec::new());
    let admin = Arc::new(Admin { proxy, collector, registry });
    tokio::spawn(serve(listener, admin));
    tracing::info!(addr = %local, "admin listener on http://{local}/");
    Ok(Some(local))
}

async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(api::handle(&admin, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin connection ended");
            }
        });
    }
}
