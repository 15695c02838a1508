//! A lean HTTP/1.1 client for the hot path: bodiless GET and HEAD requests to plain-HTTP
//! upstreams, which is every fill and revalidation and most pass-throughs. The task that
//! serves the client writes the request and reads the answer on the socket itself, so an
//! exchange needs no hand-off to a connection task and no channel, as hyper's client does.
//! Callgrind put hyper's client machinery at about 32k of a pass-through's 74k instructions.
//! Requests with a body, other methods and TLS still go through hyper. Heads are parsed by
//! httparse, as in hyper.

mod body;
mod head;
mod pool;

use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Request, Response};
use http_body_util::Either;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::UpstreamBody;
use crate::access::SharedTargets;

pub use body::PlainBody;
use pool::Pool;

/// A connection and the bytes read from it but not yet consumed.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// A target rule refused every address.
    Refused(String),
    /// The connect deadline passed.
    ConnectTimeout,
    /// Could not connect (refused, unreachable, no address).
    Connect(String),
    /// The connection broke or the answer was not HTTP. `closed_early`: it closed before
    /// sending any byte of a response, as a reused connection the upstream just timed out
    /// does, so an idempotent request can be sent again.
    Protocol { reason: String, closed_early: bool },
}

impl Failure {
    fn protocol(reason: &str) -> Self {
        Failure::Protocol { reason: reason.to_string(), closed_early: false }
    }

    fn closed(reason: &str) -> Self {
        Failure::Protocol { reason: reason.to_string(), closed_early: true }
    }
}

/// The client: a connection pool and the rules on where it may connect.
#[derive(Clone)]
pub struct PlainClient {
    pool: Pool,
    targets: SharedTargets,
    connect_timeout: Duration,
}

impl PlainClient {
    /// `max_idle_per_host` idle connections per host are kept for `idle_timeout`.
    pub fn new(
        targets: SharedTargets,
        connect_timeout: Duration,
        max_idle_per_host: usize,
        idle_timeout: Duration,
    ) -> Self {
        PlainClient { pool: Pool::new(max_idle_per_host, idle_timeout), targets, connect_timeout }
    }

    /// Whether this client handles `req`: a bodiless GET or HEAD to an `http` URI.
    pub fn handles(req: &Request<UpstreamBody>) -> bool {
        matches!(*req.method(), Method::GET | Method::HEAD)
            && req.uri().scheme() == Some(&http::uri::Scheme::HTTP)
            && req.uri().host().is_some()
            && matches!(req.body(), Either::Left(_))
    }

    /// Sends `req` and reads the response head; the body is read as it is polled.
    pub async fn send(&self, req: &Request<UpstreamBody>) -> Result<Response<PlainBody>, Failure> {
        let uri = req.uri();
        let authority = uri.authority().cloned().ok_or_else(|| Failure::Connect("no host".into()))?;
        let wire = head::encode_request(req);
        let mut conn = match self.pool.take(authority.as_str()) {
            Some(conn) => conn,
            None => self.connect(authority.host(), authority.port_u16().unwrap_or(80)).await?,
        };
        if let Err(e) = conn.io.write_all(&wire).await {
            return Err(Failure::closed(&e.to_string()));
        }
        let head = head::read_response(&mut conn, req.method()).await?;
        let home = head.reusable.then(|| (self.pool.clone(), authority));
        let mut resp = Response::new(PlainBody::new(conn, head.framing, home));
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }

    /// Connects to the first address of `host` that the target rules allow and that answers
    /// (what is checked is what is connected: no second lookup).
    async fn connect(&self, host: &str, port: u16) -> Result<Conn, Failure> {
        let targets = self.targets.load_full();
        let attempt = async {
            let addrs = targets.resolve(host, port).await.map_err(|e| match e {
                Ok(refused) => Failure::Refused(refused.0),
                Err(io) => Failure::Connect(io.to_string()),
            })?;
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(io) => {
                        let _ = io.set_nodelay(true);
                        return Ok(Conn { io, buf: BytesMut::with_capacity(8 * 1024) });
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(Failure::Connect(last.map_or_else(|| "no address to connect to".into(), |e| e.to_string())))
        };
        tokio::time::timeout(self.connect_timeout, attempt).await.unwrap_or(Err(Failure::ConnectTimeout))
    }
}
