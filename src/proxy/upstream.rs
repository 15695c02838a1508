//! The outbound HTTP client: pooled keep-alive connections with deadlines on connect, on the
//! response head and between body chunks, and errors classified into 502 and 504.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The body of an upstream request: empty (GET, revalidation) or the client's own.
pub type UpstreamBody = Either<Empty<Bytes>, Incoming>;

/// Deadlines for upstream exchanges.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From sending the request to the response head, and between body chunks.
    pub read: Duration,
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect (refused, unreachable, DNS failure).
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
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The pooled client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, UpstreamBody>,
    timeouts: Timeouts,
}

impl Upstream {
    /// A client with the given deadlines.
    pub fn new(timeouts: Timeouts) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self { client, timeouts }
    }

    /// The configured deadlines.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Sends `req` (whose URI must be absolute) and waits for the response head.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        target: &str,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.timeouts.read, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout {
                target: target.to_string(),
                secs: self.timeouts.read.as_secs_f64(),
            }),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => {
                let reason = root_cause(&e);
                if reason.contains("timed out") {
                    Err(UpstreamError::Timeout {
                        target: target.to_string(),
                        secs: self.timeouts.connect.as_secs_f64(),
                    })
                } else {
                    Err(UpstreamError::Connect { target: target.to_string(), reason })
                }
            }
            Ok(Err(e)) => Err(UpstreamError::Protocol { target: target.to_string(), reason: root_cause(&e) }),
        }
    }
}

/// The innermost error message, which names the actual cause (e.g. "Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
