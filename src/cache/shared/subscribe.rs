//! The invalidation subscriber: every proxy listens on [`CHANNEL`] and drops its local copy of
//! each key published there. In a cluster, PUBLISH reaches every node, so one connection to
//! any node hears all; on a lost connection the subscriber moves on to the next node.
//! Invalidations published while a proxy is cut off from Redis are not replayed to it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{SharedTier, CHANNEL};
use crate::cache::key::CacheKey;
use crate::cache::Cache;

const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Spawns the subscriber that applies invalidations from the fleet to `cache`.
pub fn spawn(tier: Arc<SharedTier>, cache: Arc<Cache>) {
    tokio::spawn(async move {
        for node in tier.config.url.nodes().iter().cycle() {
            if let Err(e) = listen(&tier, &cache, node).await {
                tracing::debug!(error = %e, "shared cache: invalidation subscriber lost its connection");
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    });
}

async fn listen(tier: &SharedTier, cache: &Cache, node: &str) -> redis::RedisResult<()> {
    let client = super::conn::client(node, tier.config.ca.as_deref())?;
    let connect = tokio::time::timeout(tier.config.timeout.max(RETRY_EVERY), client.get_async_pubsub());
    let mut pubsub = connect
        .await
        .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    pubsub.subscribe(CHANNEL).await?;
    tracing::info!("shared cache: subscribed to invalidations");
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Ok(url) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
        cache.remove(&CacheKey::from_url(url.to_string())).await;
        tier.stats.invalidations_received.fetch_add(1, Relaxed);
    }
    Ok(())
}
