//! The shared tier's flags (`--shared-cache` and its limits).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{parse_duration, parse_size};
use crate::cache::shared::{SharedConfig, SharedUrl};

/// Flags of the shared (Redis) tier.
#[derive(Args, Debug, Clone)]
pub struct SharedArgs {
    /// Share the cache with other proxies through Redis: redis://host:port[/db],
    /// rediss://host:port[/db] (TLS) or redis+cluster://host1:port1,host2:port2,...
    /// Looked up after memory and disk; Redis trouble degrades to local-only.
    #[arg(long, value_name = "URL", value_parser = SharedUrl::parse)]
    pub shared_cache: Option<SharedUrl>,
    /// Largest body written to the shared tier (stored in 512 KiB chunks).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub shared_max_object_size: u64,
    /// Deadline of each Redis call; a slower call counts as an error and is given up.
    #[arg(long, default_value = "250ms", value_parser = parse_timeout)]
    pub shared_timeout: Duration,
    /// CA certificates (PEM) trusted for a rediss:// shared cache instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub shared_ca: Option<PathBuf>,
}

impl SharedArgs {
    /// The shared tier's settings, when `--shared-cache` is given.
    pub fn config(&self) -> anyhow::Result<Option<SharedConfig>> {
        let Some(url) = self.shared_cache.clone() else { return Ok(None) };
        let ca = match &self.shared_ca {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("--shared-ca {}: cannot read", path.display()))?,
            ),
            None => None,
        };
        Ok(Some(SharedConfig {
            url,
            max_object: self.shared_max_object_size,
            timeout: self.shared_timeout,
            ca,
        }))
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_must_be_positive() {
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_timeout("0s").is_err());
    }
}
