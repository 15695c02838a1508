//! Hostile-input guards: request heads that could be read two ways (smuggling), request sizes,
//! and upstream response heads that could be read two ways (response splitting). hyper already
//! rejects most malformed syntax itself (bare CR, NUL and other control characters, obs-fold,
//! differing duplicate Content-Length, a Transfer-Encoding not ending in chunked, bad chunk
//! sizes); these checks cover what it lets through. Every refusal closes the connection, since
//! the rest of the bytes on it can no longer be framed with confidence.

pub mod body;
pub mod request;
pub mod response;

use http::{header, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use super::respond;

/// Size limits on what clients send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request target (path and query, plus the authority in absolute form); 414 over.
    pub max_uri_length: usize,
    /// Largest request body; 413 over (0: no limit).
    pub max_request_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_uri_length: 8 * 1024, max_request_body: 0 }
    }
}

/// Why a request is refused before anything is forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status answered.
    pub status: StatusCode,
    /// The short body.
    pub reason: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into() }
    }

    /// The answer: the status and reason, and `Connection: close`.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut resp = respond::error(self.status, &self.reason);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}
