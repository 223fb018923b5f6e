//! etcd v3 through etcd-client: writes are `Put`, reads are `Range` on one key — linearizable by
//! default, serializable (member-local) when the bench asks for `eventual`.
//!
//! Behind the crate's `etcd` feature: etcd-client's build script needs a system `protoc`.

#[cfg(feature = "etcd")]
mod imp {
    use std::time::Duration;

    use anyhow::Context;
    use bytes::Bytes;
    use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};

    use crate::adapter::Level;

    /// One etcd client (a balanced HTTP/2 channel over the endpoints).
    #[derive(Clone)]
    pub struct EtcdAdapter {
        kv: KvClient,
        serializable: bool,
    }

    impl EtcdAdapter {
        pub async fn connect(endpoints: &[String], level: Option<Level>) -> anyhow::Result<Self> {
            let opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(10));
            let client = Client::connect(endpoints, Some(opts))
                .await
                .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
            Ok(Self { kv: client.kv_client(), serializable: level == Some(Level::Eventual) })
        }

        pub async fn get(&mut self, key: &str) -> anyhow::Result<bool> {
            let opts = self.serializable.then(|| GetOptions::new().with_serializable());
            Ok(!self.kv.get(key, opts).await?.kvs().is_empty())
        }

        pub async fn set(&mut self, key: &str, value: &Bytes) -> anyhow::Result<()> {
            self.kv.put(key, value.to_vec(), None).await?;
            Ok(())
        }
    }
}

#[cfg(not(feature = "etcd"))]
mod imp {
    use anyhow::bail;
    use bytes::Bytes;

    use crate::adapter::Level;

    /// Stands in for the etcd adapter in a build without it; connecting says how to get it.
    #[derive(Clone)]
    pub struct EtcdAdapter;

    impl EtcdAdapter {
        pub async fn connect(_: &[String], _: Option<Level>) -> anyhow::Result<Self> {
            bail!(
                "this raftcache-bench was built without the etcd adapter; build it with \
                 `cargo build --release -p raftcache-bench --features etcd` (needs protoc; scripts/bench.sh does this)"
            )
        }

        pub async fn get(&mut self, _: &str) -> anyhow::Result<bool> {
            unreachable!("never connected")
        }

        pub async fn set(&mut self, _: &str, _: &Bytes) -> anyhow::Result<()> {
            unreachable!("never connected")
        }
    }
}

pub use imp::EtcdAdapter;
