//! One adapter per system under test. The generator only sees `get` and `set`, so every system
//! is driven by the same closed loop and measured the same way.
//!
//! Connections: an SDK or gRPC client (raftcache, etcd) multiplexes requests over HTTP/2, so one
//! connection serves [`CLIENTS_PER_CHANNEL`] simulated clients; a Redis connection is one TCP
//! stream, so every simulated client gets its own (requests on a shared multiplexed Redis
//! connection would be pipelined, which the comparison rules out).
//!
//! Consistency: raftcache reads at any of its four levels. etcd reads are linearizable by
//! default; its serializable (member-local, unbounded staleness) reads are the only stale read it
//! has and are recorded as `eventual` — the report marks them as serializable. Redis is one
//! server with no levels: its records say `n/a`.

mod etcd;
mod raftcache;
mod redis;

use anyhow::bail;
use bytes::Bytes;
use clap::ValueEnum;
use serde::Serialize;

pub use self::raftcache::NS;
pub use self::redis::client as redis_client;

/// Whether this build has the etcd adapter (cargo feature `etcd`).
pub const ETCD_BUILT_IN: bool = cfg!(feature = "etcd");

/// Simulated clients per HTTP/2 connection for raftcache and etcd.
pub const CLIENTS_PER_CHANNEL: usize = 16;

/// The system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// raftcache through its SDK.
    Raftcache,
    /// etcd v3 through etcd-client.
    Etcd,
    /// A single Redis server through redis-rs.
    Redis,
}

impl System {
    /// The name records use.
    pub fn name(self) -> &'static str {
        match self {
            System::Raftcache => "raftcache",
            System::Etcd => "etcd",
            System::Redis => "redis",
        }
    }

    /// The endpoints of a local default installation.
    pub fn default_endpoints(self) -> Vec<String> {
        let eps: &[&str] = match self {
            System::Raftcache => &["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"],
            System::Etcd => &["127.0.0.1:2379"],
            System::Redis => &["127.0.0.1:6379"],
        };
        eps.iter().map(|s| s.to_string()).collect()
    }

    /// Connections `clients` simulated clients share (see the module docs).
    pub fn connections_for(self, clients: usize) -> usize {
        match self {
            System::Redis => clients.max(1),
            System::Raftcache | System::Etcd => clients.div_ceil(CLIENTS_PER_CHANNEL).max(1),
        }
    }

    /// The read level to use when `asked` (None = the system's default), or an error saying what
    /// the system offers. `Ok(None)` means the system has no levels (Redis).
    pub fn read_level(self, asked: Option<Level>) -> anyhow::Result<Option<Level>> {
        match (self, asked) {
            (System::Raftcache, l) => Ok(Some(l.unwrap_or(Level::Linearizable))),
            (System::Etcd, None | Some(Level::Linearizable)) => Ok(Some(Level::Linearizable)),
            (System::Etcd, Some(Level::Eventual)) => Ok(Some(Level::Eventual)),
            (System::Etcd, Some(l)) => {
                bail!("etcd has no {} reads; use linearizable or eventual (= etcd serializable reads)", l.name())
            }
            (System::Redis, None) => Ok(None),
            (System::Redis, Some(l)) => {
                bail!("redis is a single server without consistency levels; drop --consistency {}", l.name())
            }
        }
    }
}

/// Consistency of reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Leader after ReadIndex (etcd: default linearizable get).
    Linearizable,
    /// raftcache follower after the leader's read index.
    Follower,
    /// raftcache: any replica at the client's session token.
    Session,
    /// raftcache: any replica within 1 s of staleness (etcd: serializable get).
    Eventual,
}

impl Level {
    /// Every level, strictest first.
    pub const ALL: [Level; 4] = [Level::Linearizable, Level::Follower, Level::Session, Level::Eventual];

    /// The name records use.
    pub fn name(self) -> &'static str {
        match self {
            Level::Linearizable => "linearizable",
            Level::Follower => "follower",
            Level::Session => "session",
            Level::Eventual => "eventual",
        }
    }
}

/// A connection to the system under test. Cloning shares the connection.
#[derive(Clone)]
pub enum Adapter {
    /// raftcache through the SDK.
    Raftcache(raftcache::RaftcacheAdapter),
    /// etcd (boxed: its client is several hundred bytes).
    Etcd(Box<etcd::EtcdAdapter>),
    /// Redis.
    Redis(redis::RedisAdapter),
}

impl Adapter {
    /// Opens one connection to `system` at `endpoints`, reading at `level` (from
    /// [`System::read_level`]).
    pub async fn connect(system: System, endpoints: &[String], level: Option<Level>) -> anyhow::Result<Self> {
        if endpoints.is_empty() {
            bail!("no endpoints given for {}", system.name());
        }
        Ok(match system {
            System::Raftcache => Adapter::Raftcache(
                raftcache::RaftcacheAdapter::connect(endpoints, level.unwrap_or(Level::Linearizable)).await?,
            ),
            System::Etcd => Adapter::Etcd(Box::new(etcd::EtcdAdapter::connect(endpoints, level).await?)),
            System::Redis => {
                if endpoints.len() != 1 {
                    bail!("redis takes one endpoint (host:port), got {}", endpoints.join(","));
                }
                Adapter::Redis(redis::RedisAdapter::connect(&endpoints[0]).await?)
            }
        })
    }

    /// Reads `key`; whether it was found.
    pub async fn get(&mut self, key: &str) -> anyhow::Result<bool> {
        match self {
            Adapter::Raftcache(a) => a.get(key).await,
            Adapter::Etcd(a) => a.get(key).await,
            Adapter::Redis(a) => a.get(key).await,
        }
    }

    /// Writes `key`.
    pub async fn set(&mut self, key: &str, value: &Bytes) -> anyhow::Result<()> {
        match self {
            Adapter::Raftcache(a) => a.set(key, value).await,
            Adapter::Etcd(a) => a.set(key, value).await,
            Adapter::Redis(a) => a.set(key, value).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_levels_each_system_offers() {
        for l in Level::ALL {
            assert_eq!(System::Raftcache.read_level(Some(l)).unwrap(), Some(l));
        }
        assert_eq!(System::Raftcache.read_level(None).unwrap(), Some(Level::Linearizable));
        assert_eq!(System::Etcd.read_level(None).unwrap(), Some(Level::Linearizable));
        assert_eq!(System::Etcd.read_level(Some(Level::Eventual)).unwrap(), Some(Level::Eventual));
        let e = System::Etcd.read_level(Some(Level::Follower)).unwrap_err().to_string();
        assert!(e.contains("etcd has no follower reads"), "{e}");
        assert!(System::Etcd.read_level(Some(Level::Session)).is_err());
        assert_eq!(System::Redis.read_level(None).unwrap(), None);
        let e = System::Redis.read_level(Some(Level::Eventual)).unwrap_err().to_string();
        assert!(e.contains("--consistency eventual"), "{e}");
    }

    #[test]
    fn redis_gets_a_connection_per_client() {
        assert_eq!(System::Redis.connections_for(64), 64);
        assert_eq!(System::Raftcache.connections_for(64), 4);
        assert_eq!(System::Etcd.connections_for(1), 1);
        assert_eq!(System::Etcd.connections_for(17), 2);
    }
}
