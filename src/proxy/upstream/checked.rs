//! The TCP connector under the upstream client: resolves the target itself, drops the
//! addresses the target rules refuse, and connects only to the ones left, so the address
//! checked is the address connected (no second lookup that DNS could answer differently).
//! TLS wraps this connector and still verifies and names the original host.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::access::SharedTargets;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `HttpConnector` behind the target rules.
#[derive(Clone)]
pub struct CheckedConnector {
    inner: HttpConnector,
    acl: SharedTargets,
}

impl CheckedConnector {
    pub fn new(inner: HttpConnector, acl: SharedTargets) -> Self {
        Self { inner, acl }
    }
}

impl Service<Uri> for CheckedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (mut inner, acl) = (self.inner.clone(), self.acl.load_full());
        Box::pin(async move {
            let host = uri.host().ok_or("the upstream URI names no host")?.to_string();
            let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
            let port = uri.port_u16().unwrap_or(default_port);
            let addrs = match acl.resolve(&host, port).await {
                Ok(addrs) => addrs,
                Err(Ok(refused)) => return Err(Box::new(refused) as BoxError),
                Err(Err(io)) => return Err(Box::new(io) as BoxError),
            };
            let mut last: Option<BoxError> = None;
            for addr in addrs {
                match inner.call(literal(addr)).await {
                    Ok(io) => return Ok(io),
                    Err(e) => last = Some(Box::new(e)),
                }
            }
            Err(last.unwrap_or_else(|| "no address to connect to".into()))
        })
    }
}

/// A URI naming the checked address itself: the inner connector then connects to exactly
/// that address without resolving again (TLS above still uses the original host name).
fn literal(addr: SocketAddr) -> Uri {
    let authority = match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    Uri::builder().scheme("http").authority(authority).path_and_query("/").build().unwrap_or_default()
}
