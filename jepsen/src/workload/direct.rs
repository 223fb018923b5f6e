//! Reads sent straight to a chosen node over the raw gRPC API, as a client without the SDK
//! would: one attempt, no routing. A node that is not the group's leader must forward a
//! LINEARIZABLE read to the leader, so these reads test that every node — follower, deposed
//! leader, partitioned minority — answers linearizably.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use raftcache_proto::cache::cache_service_client::CacheServiceClient;
use raftcache_proto::cache::{Consistency as PbConsistency, GetRequest, ReadOptions};
use tonic::transport::{Channel, Endpoint};

use super::ops::{decode, invoke, Proc};
use super::{Ctx, NS};
use crate::history::{Consistency, Workload, F};

/// Channels to every node, made on first use.
#[derive(Default)]
pub struct Direct {
    channels: HashMap<u64, Channel>,
}

impl Direct {
    fn channel(&mut self, node: u64, addr: &str) -> Option<Channel> {
        if let Some(c) = self.channels.get(&node) {
            return Some(c.clone());
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            .connect_lazy();
        self.channels.insert(node, c.clone());
        Some(c)
    }

    /// A LINEARIZABLE read of `key` sent to node `node`. Returns (value, version) when ok.
    pub async fn read(
        &mut self,
        ctx: &Ctx,
        proc: &mut Proc,
        workload: Workload,
        key: &str,
        node: u64,
        addr: &str,
    ) -> Option<(Option<u64>, u64)> {
        let mut e = invoke(proc, workload, F::Read, key, None);
        e.consistency = Some(Consistency::Linearizable);
        e.node = Some(node);
        let p = ctx.rec.invoke(e);
        let Some(channel) = self.channel(node, addr) else {
            p.fail("bad address");
            return None;
        };
        let mut req = tonic::Request::new(GetRequest {
            namespace: NS.to_owned(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            read: Some(ReadOptions {
                consistency: PbConsistency::Linearizable as i32,
                min_index: 0,
                max_staleness_ms: 0,
            }),
        });
        req.set_timeout(Duration::from_millis(ctx.opts.op_timeout_ms));
        match CacheServiceClient::new(channel).get(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let h = r.header.unwrap_or_default();
                let value = r.found.then(|| decode(&r.value));
                p.read_ok(value, r.version, h.group, h.served_by);
                Some((value, r.version))
            }
            Err(status) => {
                p.fail(format!("{:?}: {}", status.code(), status.message()));
                None
            }
        }
    }
}
