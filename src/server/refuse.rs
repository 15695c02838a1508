//! Connections the client gate turns away: a short HTTP answer (403 for an address not
//! allowed, 503 at a connection limit) with `Connection: close`, or, on a TLS listener, a
//! plain close. The answer is written before the request is read, so the socket is then
//! drained briefly: closing with unread bytes would reset the connection and lose the answer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::access::Admission;

/// Answers a refused connection and closes it.
pub async fn answer(mut stream: TcpStream, peer: SocketAddr, verdict: Admission, tls: bool) {
    let (status, reason) = match verdict {
        Admission::NotAllowed => ("403 Forbidden", "client address not allowed (--allow-client)"),
        Admission::Full => ("503 Service Unavailable", "too many connections (--max-connections)"),
        Admission::ClientFull => (
            "503 Service Unavailable",
            "too many connections from this address (--max-connections-per-client)",
        ),
        Admission::Admitted(_) => return,
    };
    // Debug, not info: a flood of refused connections must not become a flood of log lines.
    tracing::debug!(%peer, status, "{reason}: connection refused");
    if tls {
        return;
    }
    let body = format!("{reason}\n");
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(Duration::from_secs(2), write).await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut left = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n.min(left),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
