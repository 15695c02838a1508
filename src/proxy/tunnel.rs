//! CONNECT tunnelling (RFC 9110 §9.3.6): the proxy connects to `host:port`, answers 200, and
//! relays bytes both ways until either side closes or the tunnel sits idle too long. Nothing
//! in a tunnel is cached; what crossed it is logged when it closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::ProxyBody;
use super::respond;
use super::route::connect_target;

/// Settings of CONNECT.
#[derive(Clone, Debug)]
pub struct TunnelSettings {
    /// Whether CONNECT is served at all.
    pub enabled: bool,
    /// Ports a tunnel may reach.
    pub ports: Vec<u16>,
    /// Deadline for the TCP connect to the target.
    pub connect_timeout: Duration,
    /// A tunnel with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Which targets may be connected to.
    pub targets: crate::access::SharedTargets,
}

/// Answers a CONNECT request: 200 and a relay task, or why not.
pub async fn open(settings: &TunnelSettings, req: Request<Incoming>) -> Response<ProxyBody> {
    if !settings.enabled {
        return respond::error(StatusCode::FORBIDDEN, "CONNECT is disabled (--no-connect)");
    }
    let (host, port) = match connect_target(req.uri()) {
        Ok(hp) => hp,
        Err(msg) => return respond::error(StatusCode::BAD_REQUEST, &msg),
    };
    if !settings.ports.contains(&port) {
        let msg = format!(
            "CONNECT to port {port} is not allowed (allowed: {:?}; see --connect-port)",
            settings.ports
        );
        return respond::error(StatusCode::FORBIDDEN, &msg);
    }
    let name = format!("{host}:{port}");
    // The target rules see the resolved addresses, and only those are connected to.
    let connect = async {
        let targets = settings.targets.load_full();
        match targets.resolve(&host, port).await {
            Ok(addrs) => TcpStream::connect(&addrs[..]).await.map_err(Err),
            Err(e) => Err(e),
        }
    };
    let upstream = match tokio::time::timeout(settings.connect_timeout, connect).await {
        Err(_) => {
            let msg = format!("{name} did not accept a connection within {:?}", settings.connect_timeout);
            return respond::error(StatusCode::GATEWAY_TIMEOUT, &msg);
        }
        Ok(Err(Ok(refused))) => return respond::error(StatusCode::FORBIDDEN, &refused.0),
        Ok(Err(Err(e))) => {
            return respond::error(StatusCode::BAD_GATEWAY, &format!("cannot connect to {name}: {e}"))
        }
        Ok(Ok(s)) => s,
    };
    let _ = upstream.set_nodelay(true);
    let idle = settings.idle_timeout;
    tokio::spawn(async move {
        let started = Instant::now();
        let client = match hyper::upgrade::on(req).await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(target = %name, error = %e, "CONNECT: the client left before the tunnel opened");
                return;
            }
        };
        let (up, down, ended) = relay(client, upstream, idle).await;
        tracing::info!(
            target = %name,
            bytes_up = up,
            bytes_down = down,
            ended,
            secs = started.elapsed().as_secs_f64(),
            "tunnel closed"
        );
    });
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Copies both ways until both directions end or nothing moves for `idle`. Returns the bytes
/// sent client-to-upstream, upstream-to-client, and how the tunnel ended.
async fn relay<C, U>(client: C, upstream: U, idle: Duration) -> (u64, u64, &'static str)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let both = async {
        tokio::join!(pipe(&mut cr, &mut uw, &up, &last, start), pipe(&mut ur, &mut cw, &down, &last, start))
    };
    let watchdog = async {
        loop {
            let quiet = start.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    let ended = tokio::select! {
        (a, b) = both => if a.is_err() || b.is_err() { "error" } else { "closed" },
        _ = watchdog => "idle timeout",
    };
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed), ended)
}

/// One direction: copies until EOF, then half-closes the writer.
async fn pipe<R, W>(
    r: &mut R,
    w: &mut W,
    count: &AtomicU64,
    last: &AtomicU64,
    start: Instant,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_both_ways_and_counts() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (upstream, mut upstream_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(relay(client, upstream, Duration::from_secs(5)));
        client_far.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        upstream_far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        upstream_far.write_all(b"world!").await.unwrap();
        let mut got = [0u8; 6];
        client_far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"world!");
        drop(client_far);
        drop(upstream_far);
        assert_eq!(task.await.unwrap(), (5, 6, "closed"));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnels_are_closed() {
        let (client, _client_far) = tokio::io::duplex(1024);
        let (upstream, _upstream_far) = tokio::io::duplex(1024);
        let (up, down, ended) = relay(client, upstream, Duration::from_secs(30)).await;
        assert_eq!((up, down, ended), (0, 0, "idle timeout"));
    }
}
