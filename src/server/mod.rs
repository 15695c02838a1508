//! The listener: accepts connections (terminating TLS when configured), serves HTTP/1.1 with
//! keep-alive and upgrades (CONNECT), and HTTP/2 (ALPN over TLS, or prior knowledge on
//! cleartext), as the client's first bytes say. On shutdown it stops accepting, lets in-flight
//! requests finish within a grace period, and closes idle keep-alive connections.

mod read_ahead;
mod refuse;
mod send_file;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::access::{Admission, ClientGate};
use crate::proxy::{ClientInfo, Proxy};
use read_ahead::{Protocol, ReadAhead};
use send_file::SendFile;

/// Settings of the listener.
#[derive(Clone)]
pub struct ServerSettings {
    /// Longest wait for a request head on a connection (slowloris guard); also bounds the TLS
    /// handshake.
    pub header_timeout: Duration,
    /// How long in-flight requests may run on after a shutdown signal.
    pub grace: Duration,
    /// Terminate TLS with this acceptor (HTTPS listener).
    pub tls: Option<TlsAcceptor>,
    /// Which clients may connect, and how many connections may be open.
    pub gate: Arc<ClientGate>,
    /// Largest request head in bytes (431 over).
    pub max_header_size: usize,
    /// Most header fields in a request (431 over).
    pub max_headers: usize,
}

/// Pending connections the kernel queues before `accept` (capped by `net.core.somaxconn`).
/// std and mio use 128: with 1000 clients connecting at once (`wrk -c1000`, a new connection
/// per request) that overflowed about 5,000 times in 5 s, each a dropped SYN that the client
/// only sends again a second later; with 1024, none.
const LISTEN_BACKLOG: u32 = 1024;

/// The listener [`serve`] expects: `TCP_NODELAY` is set on it, and Linux copies it to every
/// accepted socket, which saves a system call per connection (elsewhere `serve` sets it on
/// each connection). On Linux it also defers accepting (see [`defer_accept`]).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    #[cfg(target_os = "linux")]
    defer_accept(&socket)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How long the kernel holds a new connection that has sent nothing, in seconds.
#[cfg(target_os = "linux")]
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// `TCP_DEFER_ACCEPT`: a connection is handed to `accept` once its first bytes have arrived
/// (every protocol on this port speaks first: an HTTP request, a TLS ClientHello, the HTTP/2
/// preface). Without it the new connection's task is woken before the request is there, finds
/// nothing to read and waits again, one more wake-up and `recvfrom` per connection: with a new
/// connection per 1 KB hit, deferring served 14-16% more requests at 22-23% less CPU each (see
/// BENCHMARKS.md). A client that stays silent is still accepted after about
/// [`DEFER_ACCEPT_SECS`] (the kernel's next SYN-ACK retransmission), and then meets the
/// header deadline as before. Traffic Server and nginx (`listen ... deferred`) use the same
/// option. std has it only unstable (`TcpStreamExt::set_deferaccept`), hence `libc`.
#[cfg(target_os = "linux")]
fn defer_accept(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = DEFER_ACCEPT_SECS;
    // SAFETY: the descriptor is the socket's own, open for the call; the option value is a
    // live `c_int` whose size is the length passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Serves `proxy` on `listener` (from [`listen`]) until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let protocols = Arc::new(Protocols::new(&settings));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ticket = match settings.gate.admit(peer.ip()) {
                    Admission::Admitted(ticket) => ticket,
                    refused => {
                        tokio::spawn(refuse::answer(stream, peer, refused, settings.tls.is_some()));
                        continue;
                    }
                };
                // Linux copies TCP_NODELAY from the listener (see `listen`).
                #[cfg(not(target_os = "linux"))]
                let _ = stream.set_nodelay(true);
                let (proxy, protocols, stop, open) = (proxy.clone(), protocols.clone(), stop_rx.clone(), open.clone());
                let (tls, handshake_timeout) = (settings.tls.clone(), settings.header_timeout);
                open.fetch_add(1, Ordering::Relaxed);
                let counted = crate::metrics::ConnectionGuard::open();
                tokio::spawn(async move {
                    let _counted = counted;
                    match tls {
                        None => connection(SendFile::new(stream), peer, false, proxy, &protocols, stop).await,
                        // Boxed: inline, the handshake and the TLS stream would make every
                        // connection's task larger, plain ones included (tokio copies the
                        // task's future when it spawns and completes it).
                        Some(acceptor) => {
                            let handshake = (acceptor, handshake_timeout);
                            Box::pin(tls_connection(handshake, stream, peer, proxy, &protocols, stop)).await
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                    drop(ticket);
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = open.load(Ordering::Relaxed);
    tracing::info!(connections = in_flight, grace_s = settings.grace.as_secs(), "shutting down: draining");
    let deadline = tokio::time::Instant::now() + settings.grace;
    while open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = open.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(connections = left, "grace period over: closing remaining connections");
    }
}

/// The HTTP servers a connection may get, configured once.
struct Protocols {
    /// HTTP/1.1: keep-alive, the header deadline, upgrades.
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    /// How long a client may take to send its first bytes (the header deadline).
    first_bytes: Duration,
}

impl Protocols {
    fn new(settings: &ServerSettings) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .keep_alive(true)
            .max_buf_size(settings.max_header_size.max(8192))
            .max_headers(settings.max_headers);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        let header_list = u32::try_from(settings.max_header_size).unwrap_or(u32::MAX);
        h2.timer(TokioTimer::new()).max_header_list_size(header_list);
        Self { h1, h2, first_bytes: settings.header_timeout }
    }
}

/// Completes the TLS handshake within the deadline, then serves the connection.
async fn tls_connection(
    (acceptor, deadline): (TlsAcceptor, Duration),
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    protocols: &Protocols,
    stop: watch::Receiver<bool>,
) {
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => connection(stream, peer, true, proxy, protocols, stop).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Serves one connection until it closes or the stop flag asks it to finish.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    tls: bool,
    proxy: Arc<Proxy>,
    protocols: &Protocols,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = ClientInfo { addr: peer, tls };
    // `map` rather than an `async` block around `handle`: the block would hold the request
    // future as its own state, and hyper moves the whole thing into place per request.
    let service = service_fn(move |req| proxy.clone().handle(req, client).map(Ok::<_, Infallible>));
    let mut io = ReadAhead::new(io);
    let protocol = match tokio::time::timeout(protocols.first_bytes, io.sniff()).await {
        Ok(Ok(protocol)) => protocol,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "connection failed before a request"),
        Err(_) => return tracing::debug!(%peer, "no request within the header deadline"),
    };
    let result = match protocol {
        Protocol::Http1 => {
            let conn = protocols.h1.serve_connection(TokioIo::new(io), service).with_upgrades();
            until_stopped(Box::pin(conn), &mut stop, |c| c.graceful_shutdown()).await
        }
        Protocol::Http2 => {
            let conn = protocols.h2.serve_connection(TokioIo::new(io), service);
            until_stopped(Box::pin(conn), &mut stop, |c| c.graceful_shutdown()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Drives `conn` to its end; once the stop flag is set, asks it to finish gracefully first.
/// The connection lives in a box: kept inline, hyper's connection state (one for each
/// protocol) made the task's future several times larger, and tokio copies that future
/// when it spawns and completes the task.
async fn until_stopped<C: Future>(
    mut conn: Pin<Box<C>>,
    stop: &mut watch::Receiver<bool>,
    graceful: fn(Pin<&mut C>),
) -> C::Output {
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(stop) => {
            graceful(conn.as_mut());
            conn.await
        }
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn accepted_connections_get_nodelay_from_the_listener() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        client.write_all(b"GET").await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // `serve` relies on this on Linux instead of setting it on every connection.
        assert!(accepted.nodelay().unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_connection_is_accepted_once_its_first_bytes_arrive() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        // Connected on the client's side, but held by the kernel until data comes (about a
        // second at most, far beyond this wait).
        let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(early.is_err(), "a silent connection was accepted at once");
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 3];
        tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut first).await.unwrap();
        assert_eq!(&first, b"GET");
    }
}
