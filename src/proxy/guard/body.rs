//! The client's request body as it goes upstream. The first part (up to `PREREAD` bytes) is
//! read before anything is sent, so a body that is malformed (a bad chunk size, a cut
//! connection) or over `--max-request-body` within it is answered 400/413 and never reaches
//! the origin. A longer body streams on, still bounded by the limit: past the preread, going
//! over it aborts the upstream request and cuts the client's connection.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::Refusal;

/// How much of a request body is read before the request is forwarded.
pub const PREREAD: u64 = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body: read whole, or a read prefix followed by the rest of the stream.
pub enum ClientBody {
    /// The whole body (it ended within the preread).
    Whole(Option<Bytes>),
    /// The preread bytes, then the remaining stream (bounded by what is left of the limit).
    Streaming { head: Option<Bytes>, rest: Limited<Incoming>, hint: SizeHint },
}

impl ClientBody {
    /// Whether the body is known to be empty (no bytes to send).
    pub fn is_empty(&self) -> bool {
        matches!(self, ClientBody::Whole(None))
    }
}

/// Reads up to `PREREAD` bytes of `incoming`; `max` is the body limit (0: none).
pub async fn prepare(mut incoming: Incoming, max: u64) -> Result<ClientBody, Refusal> {
    let hint = incoming.size_hint();
    let mut head = BytesMut::new();
    let over = |len: u64| max > 0 && len > max;
    while (head.len() as u64) < PREREAD {
        match incoming.frame().await {
            None => {
                let bytes = (!head.is_empty()).then(|| head.freeze());
                return Ok(ClientBody::Whole(bytes));
            }
            Some(Err(e)) => {
                let msg = format!("malformed or incomplete request body: {e}");
                return Err(Refusal::new(StatusCode::BAD_REQUEST, msg));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                    if over(head.len() as u64) {
                        let msg = format!("request body larger than {max} bytes");
                        return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, msg));
                    }
                }
            }
        }
    }
    let left = if max == 0 { usize::MAX } else { (max - head.len() as u64) as usize };
    Ok(ClientBody::Streaming { head: Some(head.freeze()), rest: Limited::new(incoming, left), hint })
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ClientBody::Streaming { head, rest, .. } => match head.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ClientBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Whole(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ClientBody::Streaming { hint, .. } => *hint,
        }
    }
}
