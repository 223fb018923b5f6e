//! The liveness probe: after the last fault heals, every data group must accept a write and a
//! linearizable read again within a bound (10 s by default).

use std::time::{Duration, Instant};

use raftcache_client::{Client, ClientOptions};

use super::NS;

/// When each group served again, measured from the heal.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// (group, time from the heal to its first successful write + read; `None`: not within
    /// the probe's patience).
    pub groups: Vec<(u64, Option<Duration>)>,
}

impl Recovery {
    /// The slowest group (`None` if one never recovered).
    pub fn slowest(&self) -> Option<Duration> {
        self.groups.iter().map(|(_, d)| *d).try_fold(Duration::ZERO, |m, d| d.map(|d| m.max(d)))
    }
}

fn key_in(client: &Client, group: u64) -> String {
    (0..100_000u32)
        .map(|n| format!("live.g{group}.{n}"))
        .find(|k| client.group_of(NS, k.as_bytes()).ok() == Some(group))
        .unwrap_or_else(|| format!("live.g{group}"))
}

/// Probes every group of `groups` until it serves or `patience` has passed since `healed_at`.
pub async fn probe(endpoints: &[String], groups: &[u64], healed_at: Instant, patience: Duration) -> Recovery {
    let opts = ClientOptions { timeout: Duration::from_secs(1), ..ClientOptions::default() };
    let deadline = healed_at + patience;
    let client = loop {
        match Client::connect_with(endpoints.to_vec(), opts.clone()).await {
            Ok(c) => break Some(c),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => break None,
        }
    };
    let Some(client) = client else {
        return Recovery { groups: groups.iter().map(|g| (*g, None)).collect() };
    };
    let probes = groups.iter().map(|&g| {
        let client = client.clone();
        async move {
            let key = key_in(&client, g);
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let ok = client.set(NS, key.as_bytes(), format!("probe-{n}")).await.is_ok()
                    && client.get(NS, key.as_bytes()).await.is_ok();
                if ok {
                    return (g, Some(healed_at.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (g, None)
        }
    });
    Recovery { groups: futures::future::join_all(probes).await }
}
