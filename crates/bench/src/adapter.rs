//! One adapter per system under test. The generator only sees `get` and `set`.

use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use raftcache_client::{Client, ClientOptions, Consistency};
use serde::Serialize;

/// Consistency of raftcache reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Leader after ReadIndex.
    Linearizable,
    /// Follower after the leader's read index.
    Follower,
    /// Any replica at the client's session token.
    Session,
    /// Any replica within 1 s of staleness.
    Eventual,
}

impl Level {
    fn consistency(self) -> Consistency {
        match self {
            Level::Linearizable => Consistency::Linearizable,
            Level::Follower => Consistency::FollowerLinearizable,
            Level::Session => Consistency::Session { min_index: 0 },
            Level::Eventual => Consistency::Eventual { max_staleness: Duration::from_secs(1) },
        }
    }
}

/// Namespace all bench keys live in.
pub const NS: &str = "bench";

/// A connection to the system under test.
#[derive(Clone)]
pub enum Adapter {
    /// raftcache through the SDK.
    Raftcache {
        /// The SDK client.
        client: Client,
        /// Read consistency.
        level: Consistency,
    },
}

impl Adapter {
    /// Connects to raftcache.
    pub async fn raftcache(endpoints: &[String], level: Level) -> anyhow::Result<Self> {
        let opts = ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() };
        let client = Client::connect_with(endpoints.to_vec(), opts).await?;
        Ok(Adapter::Raftcache { client, level: level.consistency() })
    }

    /// Reads `key`; whether it was found.
    pub async fn get(&self, key: &str) -> anyhow::Result<bool> {
        match self {
            Adapter::Raftcache { client, level } => {
                Ok(client.get_with(NS, key.as_bytes(), *level).await?.value.is_some())
            }
        }
    }

    /// Writes `key`.
    pub async fn set(&self, key: &str, value: Bytes) -> anyhow::Result<()> {
        match self {
            Adapter::Raftcache { client, .. } => {
                client.set(NS, key.as_bytes(), value).await?;
                Ok(())
            }
        }
    }
}
