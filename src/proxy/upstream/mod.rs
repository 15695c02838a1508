//! The outbound HTTP client: pooled keep-alive connections over plain TCP or TLS, deadlines on
//! connect, on the response head and between body chunks, one retry of an idempotent request
//! whose reused connection the upstream had closed, and errors classified into 502 and 504.

mod checked;
mod h1;
mod limit;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use self::checked::CheckedConnector;
use self::h1::{Failure, PlainClient};
use super::guard::body::ClientBody;
use super::guard::response::check_upstream_head;
use crate::access::{SharedTargets, TargetRefused};

pub use limit::{HostLimits, UpstreamIncoming};
pub use tls::{client_config, TlsSetupError};

/// The body of an upstream request: empty (GET, revalidation) or the client's own.
pub type UpstreamBody = Either<Empty<Bytes>, ClientBody>;

/// Deadlines for upstream exchanges.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect and TLS handshake.
    pub connect: Duration,
    /// From sending the request to the response head (first byte).
    pub first_byte: Duration,
    /// Longest silence between body chunks.
    pub idle: Duration,
}

/// Settings of the upstream client.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// Deadlines.
    pub timeouts: Timeouts,
    /// Idle connections kept per upstream host.
    pub max_idle_per_host: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Extra trusted CA certificates (PEM) for HTTPS upstreams.
    pub extra_ca: Option<PathBuf>,
    /// Requests in flight per upstream host (each holds a connection); 0: no limit.
    pub max_per_host: usize,
    /// Which targets may be connected to (checked on the resolved address).
    pub targets: SharedTargets,
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect (refused, unreachable, DNS failure, TLS handshake or certificate).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// `host:port`.
        target: String,
        /// The underlying cause.
        reason: String,
    },
    /// No answer in time.
    #[error("{target} did not answer within {secs:.1} s")]
    Timeout {
        /// `host:port`.
        target: String,
        /// The deadline that passed.
        secs: f64,
    },
    /// Every connection allowed to the host stayed busy until the deadline.
    #[error("all {limit} connections to {target} stayed busy for {secs:.1} s")]
    Busy {
        /// `host:port`.
        target: String,
        /// The per-host limit.
        limit: usize,
        /// How long the request waited.
        secs: f64,
    },
    /// A target rule (--allow-target, --deny-target, built-in ranges) refused the target.
    #[error("{reason}")]
    Refused {
        /// The target as named.
        target: String,
        /// Which rule refused it.
        reason: String,
    },
    /// The client's body went over --max-request-body while it was being sent (past the
    /// preread, so after the request had started).
    #[error("{reason}")]
    BodyTooLarge {
        /// The target as named.
        target: String,
        /// What happened.
        reason: String,
    },
    /// The connection broke or the answer was not valid HTTP.
    #[error("bad response from {target}: {reason}")]
    Protocol {
        /// `host:port`.
        target: String,
        /// The underlying cause.
        reason: String,
    },
}

impl UpstreamError {
    /// The status to answer the client with.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::Refused { .. } => StatusCode::FORBIDDEN,
            UpstreamError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The pooled client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<CheckedConnector>, UpstreamBody>,
    plain: PlainClient,
    timeouts: Timeouts,
    limits: HostLimits,
}

impl Upstream {
    /// A client with the given settings.
    pub fn new(settings: &UpstreamSettings) -> Result<Self, TlsSetupError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(settings.timeouts.connect));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = client_config(settings.extra_ca.as_deref())?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(CheckedConnector::new(http, settings.targets.clone()));
        let plain = PlainClient::new(
            settings.targets.clone(),
            settings.timeouts.connect,
            settings.max_idle_per_host,
            settings.pool_idle_timeout,
        );
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            plain,
            timeouts: settings.timeouts,
            limits: HostLimits::new(settings.max_per_host),
        })
    }

    /// The configured deadlines.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Sends `req` (whose URI must be absolute) and waits for the response head. A bodiless
    /// idempotent request that fails because a pooled connection was closed under it is sent
    /// once more, on a new connection (RFC 9110 §9.2.2). The request holds one of the
    /// host's connection slots until its response body is dropped.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        target: &str,
    ) -> Result<Response<UpstreamIncoming>, UpstreamError> {
        let permit = self.limits.acquire(target, self.timeouts.connect).await?;
        let started = std::time::Instant::now();
        let sent = if PlainClient::handles(&req) {
            // Bodiless GET or HEAD over plain HTTP: the lean client (always retryable).
            let again = || self.plain_once(&req, target);
            let sent = retry_once(target, self.plain_once(&req, target), Some(again)).await;
            sent.map(|resp| resp.map(|body| UpstreamIncoming::plain(body, permit)))
        } else {
            let again = retryable(&req).then(|| copy_head(&req));
            let again = again.map(|req| move || self.send_once(req, target));
            let sent = retry_once(target, self.send_once(req, target), again).await;
            sent.map(|resp| resp.map(|body| UpstreamIncoming::new(body, permit)))
        };
        crate::metrics::global().upstream_sent(started.elapsed(), sent.is_ok());
        sent
    }

    /// One attempt; the flag says whether the connection closed before any response.
    async fn plain_once(
        &self,
        req: &Request<UpstreamBody>,
        target: &str,
    ) -> Result<Response<h1::PlainBody>, (UpstreamError, bool)> {
        let deadline = self.timeouts.first_byte;
        let target = || target.to_string();
        match tokio::time::timeout(deadline, self.plain.send(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Err(_) => Err((UpstreamError::Timeout { target: target(), secs: deadline.as_secs_f64() }, false)),
            Ok(Err(Failure::ConnectTimeout)) => Err((
                UpstreamError::Timeout { target: target(), secs: self.timeouts.connect.as_secs_f64() },
                false,
            )),
            Ok(Err(Failure::Refused(reason))) => {
                Err((UpstreamError::Refused { target: target(), reason }, false))
            }
            Ok(Err(Failure::Connect(reason))) => {
                Err((UpstreamError::Connect { target: target(), reason }, false))
            }
            Ok(Err(Failure::Protocol { reason, closed_early })) => {
                Err((UpstreamError::Protocol { target: target(), reason }, closed_early))
            }
        }
    }

    /// One attempt; the flag says whether the connection closed before any response.
    async fn send_once(
        &self,
        req: Request<UpstreamBody>,
        target: &str,
    ) -> Result<Response<Incoming>, (UpstreamError, bool)> {
        let deadline = self.timeouts.first_byte;
        match tokio::time::timeout(deadline, self.client.request(req)).await {
            Err(_) => Err((
                UpstreamError::Timeout { target: target.to_string(), secs: deadline.as_secs_f64() },
                false,
            )),
            Ok(Ok(resp)) => match check_upstream_head(resp.headers()) {
                Ok(_) => Ok(resp),
                Err(reason) => Err((UpstreamError::Protocol { target: target.to_string(), reason }, false)),
            },
            Ok(Err(e)) if caused_by::<http_body_util::LengthLimitError>(&e) => {
                let reason = "request body over --max-request-body: upload cut".to_string();
                Err((UpstreamError::BodyTooLarge { target: target.to_string(), reason }, false))
            }
            Ok(Err(e)) if refusal(&e).is_some() => {
                let reason = refusal(&e).unwrap_or_default();
                Err((UpstreamError::Refused { target: target.to_string(), reason }, false))
            }
            Ok(Err(e)) if e.is_connect() => {
                let reason = root_cause(&e);
                if reason.contains("timed out") {
                    let secs = self.timeouts.connect.as_secs_f64();
                    Err((UpstreamError::Timeout { target: target.to_string(), secs }, false))
                } else {
                    Err((UpstreamError::Connect { target: target.to_string(), reason }, false))
                }
            }
            Ok(Err(e)) => {
                let closed = closed_before_response(&e);
                Err((UpstreamError::Protocol { target: target.to_string(), reason: root_cause(&e) }, closed))
            }
        }
    }
}

/// Awaits `first`; when it failed because a pooled connection was closed before any response,
/// runs `again` (if the request may be sent twice) and returns that instead. This is the one
/// retry RFC 9110 §9.2.2 allows an idempotent request.
async fn retry_once<T, Fut>(
    target: &str,
    first: Fut,
    again: Option<impl FnOnce() -> Fut>,
) -> Result<T, UpstreamError>
where
    Fut: std::future::Future<Output = Result<T, (UpstreamError, bool)>>,
{
    match (first.await, again) {
        (Err((_, true)), Some(again)) => {
            tracing::debug!(%target, "pooled connection closed by the upstream: retrying once");
            again().await.map_err(|(e, _)| e)
        }
        (other, _) => other.map_err(|(e, _)| e),
    }
}

/// GET, HEAD and OPTIONS without a body can be sent again safely.
fn retryable(req: &Request<UpstreamBody>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && matches!(req.body(), Either::Left(_))
}

fn copy_head(req: &Request<UpstreamBody>) -> Request<UpstreamBody> {
    let mut copy = Request::new(Either::Left(Empty::new()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// Whether the upstream closed or reset the connection before sending any response: what a
/// reused keep-alive connection that the upstream had just timed out looks like (a close
/// with the request unread in its buffer arrives as a reset).
fn closed_before_response(e: &hyper_util::client::legacy::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof);
        }
        cur = err.source();
    }
    false
}

/// Whether an error of type `T` is somewhere in `e`'s causes.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The target rule's refusal somewhere in `e`'s causes.
fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<TargetRefused>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// The innermost error message, which names the actual cause (e.g. "Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
