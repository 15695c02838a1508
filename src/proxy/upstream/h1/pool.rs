//! Idle keep-alive connections per upstream `host:port`: the newest is reused first, ones
//! idle past the timeout or closed by the upstream are dropped, and a reaper closes expired
//! ones even for hosts no longer asked for, so idle sockets do not pile up.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;

use super::Conn;

/// Largest read buffer an idle connection keeps.
const IDLE_BUFFER_MAX: usize = 16 * 1024;

/// The pool (cheap to clone; clones share it).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<HashMap<String, Vec<Idle>, foldhash::fast::RandomState>>,
    max_per_host: usize,
    timeout: Duration,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    /// Keeps at most `max_per_host` idle connections per host, each for at most `timeout`.
    /// Inside a tokio runtime a reaper task runs until the pool is dropped.
    pub fn new(max_per_host: usize, timeout: Duration) -> Self {
        let inner = Arc::new(Inner { idle: Mutex::default(), max_per_host, timeout });
        if max_per_host > 0 {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(&inner)));
            }
        }
        Pool { inner }
    }

    /// An idle connection to `host` that still looks open, newest first.
    pub fn take(&self, host: &str) -> Option<Conn> {
        loop {
            let idle = {
                let mut hosts = self.inner.idle.lock();
                hosts.get_mut(host)?.pop()?
            };
            if idle.since.elapsed() < self.inner.timeout && still_open(&idle.conn) {
                return Some(idle.conn);
            }
        }
    }

    /// Keeps `conn` for reuse, dropping the host's oldest idle connection if it has too many.
    pub fn put(&self, host: &str, mut conn: Conn) {
        if self.inner.max_per_host == 0 {
            return;
        }
        // A buffer grown for a large body stays allocated while the connection idles (and
        // keeps the last chunks' memory alive): an idle connection keeps at most a small one.
        if conn.buf.capacity() > IDLE_BUFFER_MAX {
            conn.buf = BytesMut::new();
        }
        let idle = Idle { conn, since: Instant::now() };
        let oldest = {
            let mut hosts = self.inner.idle.lock();
            let list = match hosts.get_mut(host) {
                Some(list) => list,
                None => hosts.entry(host.to_string()).or_default(),
            };
            let oldest = (list.len() >= self.inner.max_per_host).then(|| list.remove(0));
            list.push(idle);
            oldest
        };
        drop(oldest); // closed outside the lock
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.inner.idle.lock().values().map(Vec::len).sum()
    }
}

/// An idle connection with something to read has been closed by the upstream (or is out of
/// step with it): either way it cannot carry a request. Costs no system call while the
/// runtime has seen no readiness on the socket.
fn still_open(conn: &Conn) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Closes expired idle connections every half timeout, until the pool is gone.
async fn reap(pool: Weak<Inner>) {
    let period =
        pool.upgrade().map_or(Duration::from_secs(1), |p| p.timeout / 2).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = pool.upgrade() else { return };
        let expired: Vec<Idle> = {
            let mut hosts = inner.idle.lock();
            let mut expired = Vec::new();
            for list in hosts.values_mut() {
                // Oldest first: the expired ones are a prefix.
                let n = list.iter().take_while(|i| i.since.elapsed() >= inner.timeout).count();
                expired.extend(list.drain(..n));
            }
            hosts.retain(|_, list| !list.is_empty());
            expired
        };
        drop(expired); // closed outside the lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(listener: &TcpListener) -> (Conn, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Conn { io: client, buf: BytesMut::new() }, server)
    }

    #[tokio::test]
    async fn reuses_open_connections_and_drops_closed_and_expired_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(2, Duration::from_secs(60));
        let (mut a, _a_server) = pair(&listener).await;
        a.buf.reserve(256 * 1024);
        pool.put("h:80", a);
        let reused = pool.take("h:80").expect("an open connection is reused");
        assert!(reused.buf.capacity() <= IDLE_BUFFER_MAX, "a large read buffer is not kept idle");
        assert!(pool.take("h:80").is_none());
        assert!(pool.take("other:80").is_none());

        let (b, b_server) = pair(&listener).await;
        drop(b_server);
        b.io.readable().await.unwrap(); // the runtime has seen the FIN
        pool.put("h:80", b);
        assert!(pool.take("h:80").is_none(), "a connection the upstream closed is dropped");

        let short = Pool::new(2, Duration::from_millis(60));
        let (c, _c_server) = pair(&listener).await;
        let (d, _d_server) = pair(&listener).await;
        let (e, _e_server) = pair(&listener).await;
        short.put("h:80", c);
        short.put("h:80", d);
        short.put("h:80", e);
        assert_eq!(short.idle_count(), 2, "at most two per host");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(short.idle_count(), 0, "the reaper closed the expired ones");
    }
}
