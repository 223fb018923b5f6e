//! raftcache through its SDK, which routes each key to its group's leader or a replica.

use std::time::Duration;

use bytes::Bytes;
use raftcache_client::{Client, ClientOptions, Consistency};

use super::Level;

/// Namespace all bench keys live in.
pub const NS: &str = "bench";

/// Staleness bound of `eventual` reads.
const MAX_STALENESS: Duration = Duration::from_secs(1);

/// One SDK client (a channel per node) and the level its reads use.
#[derive(Clone)]
pub struct RaftcacheAdapter {
    client: Client,
    level: Consistency,
}

impl RaftcacheAdapter {
    /// Connects to the cluster at `endpoints`.
    pub async fn connect(endpoints: &[String], level: Level) -> anyhow::Result<Self> {
        let opts = ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() };
        let client = Client::connect_with(endpoints.to_vec(), opts).await?;
        let level = match level {
            Level::Linearizable => Consistency::Linearizable,
            Level::Follower => Consistency::FollowerLinearizable,
            // 0 = this client's own token per group: read-your-writes.
            Level::Session => Consistency::Session { min_index: 0 },
            Level::Eventual => Consistency::Eventual { max_staleness: MAX_STALENESS },
        };
        Ok(Self { client, level })
    }

    pub async fn get(&mut self, key: &str) -> anyhow::Result<bool> {
        Ok(self.client.get_with(NS, key.as_bytes(), self.level).await?.value.is_some())
    }

    pub async fn set(&mut self, key: &str, value: &Bytes) -> anyhow::Result<()> {
        self.client.set(NS, key.as_bytes(), value.clone()).await?;
        Ok(())
    }
}
