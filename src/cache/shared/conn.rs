//! Where the shared tier lives (`--shared-cache` URL) and the connection to it: one
//! auto-reconnecting multiplexed connection to a standalone Redis, or a cluster connection
//! that follows slot moves.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, FromRedisValue, RedisResult, TlsCertificates};

/// A parsed `--shared-cache` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedUrl {
    /// `redis://host:port[/db]` or `rediss://...` (TLS).
    Single(String),
    /// `redis+cluster://h1:p1,h2:p2,...` (or `rediss+cluster://`): seed nodes.
    Cluster(Vec<String>),
}

const USAGE: &str = "expected redis://host:port[/db], rediss://host:port[/db] or \
                     redis+cluster://host1:port1,host2:port2,...";

impl SharedUrl {
    /// Parses and checks a `--shared-cache` value.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| USAGE.to_string())?;
        let check = |url: &str| {
            redis::Client::open(url).map(|_| ()).map_err(|e| format!("{url}: {e}"))?;
            let host = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
            if host
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .split(['/', ':'])
                .next()
                .unwrap_or_default()
                .is_empty()
            {
                return Err(format!("{url}: no host ({USAGE})"));
            }
            Ok(())
        };
        match scheme {
            "redis" | "rediss" => {
                check(s)?;
                Ok(SharedUrl::Single(s.to_string()))
            }
            "redis+cluster" | "rediss+cluster" => {
                let base = scheme.trim_end_matches("+cluster");
                let nodes: Vec<String> =
                    rest.split(',').filter(|n| !n.is_empty()).map(|n| format!("{base}://{n}")).collect();
                if nodes.is_empty() {
                    return Err(format!("no cluster nodes ({USAGE})"));
                }
                nodes.iter().try_for_each(|n| check(n))?;
                Ok(SharedUrl::Cluster(nodes))
            }
            _ => Err(format!("unknown scheme {scheme:?} ({USAGE})")),
        }
    }

    /// The node URLs (one for a standalone Redis).
    pub fn nodes(&self) -> &[String] {
        match self {
            SharedUrl::Single(u) => std::slice::from_ref(u),
            SharedUrl::Cluster(n) => n,
        }
    }

    /// The value for logs, without any password.
    pub fn redacted(&self) -> String {
        let strip = |u: &str| match (u.split_once("://"), u.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***@{}", &u[at + 1..]),
            _ => u.to_string(),
        };
        match self {
            SharedUrl::Single(u) => strip(u),
            SharedUrl::Cluster(n) => n.iter().map(|u| strip(u)).collect::<Vec<_>>().join(","),
        }
    }
}

/// A client for one node URL; `ca` (PEM) replaces the system roots for `rediss://`.
pub fn client(url: &str, ca: Option<&[u8]>) -> RedisResult<Client> {
    match ca {
        Some(ca) if url.starts_with("rediss://") => Client::build_with_tls(url, certificates(ca)),
        _ => Client::open(url),
    }
}

fn certificates(ca: &[u8]) -> TlsCertificates {
    TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) }
}

/// A live connection; cheap to clone (both kinds multiplex one socket per node).
#[derive(Clone)]
pub enum Conn {
    /// Standalone Redis; reconnects by itself after an error.
    Single(ConnectionManager),
    /// Redis Cluster; reconnects and refreshes its slot map by itself.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects; `timeout` bounds the connect and each response.
    pub async fn connect(url: &SharedUrl, ca: Option<&[u8]>, timeout: Duration) -> RedisResult<Conn> {
        let connect_timeout = timeout.max(Duration::from_secs(1));
        match url {
            SharedUrl::Single(u) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = client(u, ca)?.get_connection_manager_with_config(config).await?;
                Ok(Conn::Single(manager))
            }
            SharedUrl::Cluster(nodes) => {
                let mut builder = ClusterClient::builder(nodes.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(timeout)
                    .retries(1);
                if let Some(ca) = ca {
                    builder = builder.certs(certificates(ca));
                }
                let client = builder.build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            SharedUrl::parse("redis://127.0.0.1:6379/2"),
            Ok(SharedUrl::Single("redis://127.0.0.1:6379/2".into()))
        );
        assert!(matches!(SharedUrl::parse("rediss://cache.internal:6380"), Ok(SharedUrl::Single(_))));
        assert_eq!(
            SharedUrl::parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7001").map(|u| u.nodes().to_vec()),
            Ok(vec!["redis://10.0.0.1:7000".to_string(), "redis://10.0.0.2:7001".to_string()])
        );
    }

    #[test]
    fn refuses_bad_values() {
        for bad in ["localhost:6379", "http://x:1", "redis+cluster://", "redis://", "redis://:6379"] {
            assert!(SharedUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redacts_passwords() {
        let u = SharedUrl::parse("redis://user:secret@10.0.0.1:6379").unwrap();
        assert_eq!(u.redacted(), "redis://***@10.0.0.1:6379");
    }
}
