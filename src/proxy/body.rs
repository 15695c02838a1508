//! The response body type the proxy serves: whole bytes (hits, errors), the upstream's own
//! body (pass-through, with hyper's backpressure), or a channel fed by a task that streams a
//! fill or a disk entry.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::proxy::upstream::UpstreamIncoming;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Errors end the response early; hyper then closes the connection so the client can never
/// mistake a cut body for a complete one.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Chunks a feeder task has ready before it waits for the client to take them.
pub const CHANNEL_DEPTH: usize = 4;

/// A response body.
pub enum ProxyBody {
    /// A complete body (taken on first poll).
    Full(Option<Bytes>),
    /// The upstream's body, passed through.
    Upstream(UpstreamIncoming),
    /// Chunks from a feeder task.
    Channel(mpsc::Receiver<Result<Bytes, BodyError>>),
}

impl ProxyBody {
    /// An empty body.
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }

    /// A complete body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(b.into()))
    }

    /// A channel body and the sender that feeds it.
    pub fn channel() -> (mpsc::Sender<Result<Bytes, BodyError>>, Self) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        (tx, ProxyBody::Channel(rx))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(inc) => Pin::new(inc).poll_frame(cx),
            ProxyBody::Channel(rx) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            ProxyBody::Upstream(inc) => inc.is_end_stream(),
            ProxyBody::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Upstream(inc) => inc.size_hint(),
            ProxyBody::Channel(_) => SizeHint::default(),
        }
    }
}
