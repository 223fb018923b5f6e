//! A single Redis server, one connection per simulated client, one command in flight on it.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// One Redis connection.
#[derive(Clone)]
pub struct RedisAdapter {
    conn: MultiplexedConnection,
}

/// A Redis client for `addr` (`host:port`, or a `redis://` URL).
pub fn client(addr: &str) -> anyhow::Result<redis::Client> {
    let url = if addr.contains("://") { addr.to_string() } else { format!("redis://{addr}/") };
    redis::Client::open(url.as_str()).with_context(|| format!("bad redis address {addr:?}"))
}

impl RedisAdapter {
    /// Connects to `addr` (`host:port`, or a `redis://` URL).
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let client = client(addr)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(10));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to redis at {addr}"))?;
        Ok(Self { conn })
    }

    pub async fn get(&mut self, key: &str) -> anyhow::Result<bool> {
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut self.conn).await?;
        Ok(v.is_some())
    }

    pub async fn set(&mut self, key: &str, value: &Bytes) -> anyhow::Result<()> {
        redis::cmd("SET").arg(key).arg(value.as_ref()).query_async::<()>(&mut self.conn).await?;
        Ok(())
    }
}
