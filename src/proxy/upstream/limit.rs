//! The per-host cap on upstream connections in use: a request takes a slot before it is sent
//! and gives it back when its response body is dropped, so one busy host cannot take every
//! socket and a slow origin is not flooded.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::h1::PlainBody;
use super::UpstreamError;
use crate::proxy::body::BodyError;

/// One semaphore per upstream `host:port`.
#[derive(Clone)]
pub struct HostLimits {
    per_host: usize,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>, foldhash::fast::RandomState>>>,
}

impl HostLimits {
    /// `per_host` slots for each host; 0: no limit.
    pub fn new(per_host: usize) -> Self {
        Self { per_host, hosts: Arc::default() }
    }

    /// Takes a slot for `target`, waiting at most `wait`.
    pub async fn acquire(
        &self,
        target: &str,
        wait: Duration,
    ) -> Result<Option<OwnedSemaphorePermit>, UpstreamError> {
        if self.per_host == 0 {
            return Ok(None);
        }
        let semaphore = {
            let mut hosts = self.hosts.lock();
            // Forget hosts with every slot free, so the map only holds hosts in use.
            if hosts.len() > 1024 {
                hosts.retain(|_, s| s.available_permits() < self.per_host);
            }
            match hosts.get(target) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(Semaphore::new(self.per_host));
                    hosts.insert(target.to_string(), s.clone());
                    s
                }
            }
        };
        match tokio::time::timeout(wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(UpstreamError::Busy {
                target: target.to_string(),
                limit: self.per_host,
                secs: wait.as_secs_f64(),
            }),
        }
    }
}

/// An upstream response body (from hyper's client or the plain HTTP/1.1 one) that holds its
/// host slot until dropped.
pub struct UpstreamIncoming {
    body: Source,
    _slot: Option<OwnedSemaphorePermit>,
}

enum Source {
    Hyper(Incoming),
    Plain(PlainBody),
}

impl UpstreamIncoming {
    /// Wraps `body`, keeping `slot` taken while it lives.
    pub fn new(body: Incoming, slot: Option<OwnedSemaphorePermit>) -> Self {
        Self { body: Source::Hyper(body), _slot: slot }
    }

    /// Wraps a body of the plain HTTP/1.1 client.
    pub fn plain(body: PlainBody, slot: Option<OwnedSemaphorePermit>) -> Self {
        Self { body: Source::Plain(body), _slot: slot }
    }

    /// Whether the body, read to its end, came as one chunk that owns exactly its own
    /// allocation ([`PlainBody::came_exact`]): the cache may keep that chunk instead of a
    /// copy. Only the plain client's bodies can.
    pub fn came_exact(&self) -> bool {
        matches!(&self.body, Source::Plain(body) if body.came_exact())
    }
}

impl Body for UpstreamIncoming {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.body {
            Source::Hyper(b) => Pin::new(b).poll_frame(cx).map(|f| f.map(|r| r.map_err(Into::into))),
            Source::Plain(b) => Pin::new(b).poll_frame(cx).map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Source::Hyper(b) => b.is_end_stream(),
            Source::Plain(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Source::Hyper(b) => b.size_hint(),
            Source::Plain(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_per_host_and_bounded() {
        let limits = HostLimits::new(2);
        let wait = Duration::from_millis(20);
        let a1 = limits.acquire("a:80", wait).await.unwrap();
        let _a2 = limits.acquire("a:80", wait).await.unwrap();
        assert!(matches!(limits.acquire("a:80", wait).await, Err(UpstreamError::Busy { limit: 2, .. })));
        assert!(limits.acquire("b:80", wait).await.unwrap().is_some(), "another host has its own slots");
        drop(a1);
        assert!(limits.acquire("a:80", wait).await.unwrap().is_some(), "a freed slot is reused");
        assert!(HostLimits::new(0).acquire("a:80", wait).await.unwrap().is_none());
    }
}
