//! The response body type the proxy serves: whole bytes (hits, errors), the upstream's own
//! body (pass-through, with hyper's backpressure), or a channel fed by a task that streams a
//! fill or a disk entry.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::proxy::upstream::UpstreamIncoming;
use std::collections::VecDeque;

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
    /// Chunks from a feeder task, after any taken early by [`ProxyBody::failed_before_start`].
    Channel(mpsc::Receiver<Result<Bytes, BodyError>>, VecDeque<Bytes>),
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
        (tx, ProxyBody::Channel(rx, VecDeque::new()))
    }

    /// Whether a channel body's feeder has already failed among the chunks it has queued
    /// (at most [`CHANNEL_DEPTH`] are looked at; they are kept and served first). Before any
    /// byte of the response is sent, such a body can still become a clean 502: hyper, given
    /// the head, the chunks and the error in one go, would close the connection instead.
    pub fn failed_before_start(&mut self) -> bool {
        let ProxyBody::Channel(rx, early) = self else { return false };
        for _ in 0..CHANNEL_DEPTH {
            match rx.try_recv() {
                Ok(Ok(chunk)) => early.push_back(chunk),
                Ok(Err(_)) => return true,
                Err(_) => break,
            }
        }
        false
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
            ProxyBody::Channel(rx, early) => match early.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            ProxyBody::Upstream(inc) => inc.is_end_stream(),
            ProxyBody::Channel(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Upstream(inc) => inc.size_hint(),
            ProxyBody::Channel(..) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_feeder_that_already_failed_is_seen_before_the_response_starts() {
        let (tx, mut body) = ProxyBody::channel();
        tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
        tx.send(Err("upstream cut".into())).await.unwrap();
        assert!(body.failed_before_start());
    }

    #[tokio::test]
    async fn chunks_taken_early_are_served_first_and_in_order() {
        let (tx, mut body) = ProxyBody::channel();
        tx.send(Ok(Bytes::from_static(b"one "))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"two "))).await.unwrap();
        assert!(!body.failed_before_start());
        tx.send(Ok(Bytes::from_static(b"three"))).await.unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "one two three");
    }

    #[tokio::test]
    async fn an_error_behind_the_queued_chunks_is_left_for_the_stream() {
        let (tx, mut body) = ProxyBody::channel();
        for _ in 0..CHANNEL_DEPTH {
            tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        }
        let feeder = tokio::spawn(async move { tx.send(Err("late cut".into())).await });
        assert!(!body.failed_before_start(), "only what was queued is looked at");
        feeder.await.unwrap().unwrap();
        let mut got = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e,
                None => panic!("the error was lost"),
            }
        };
        assert_eq!((got, err.to_string()), (CHANNEL_DEPTH, "late cut".to_string()));
    }

    #[test]
    fn other_bodies_have_not_failed() {
        assert!(!ProxyBody::full("x").failed_before_start());
        assert!(!ProxyBody::empty().failed_before_start());
    }
}
