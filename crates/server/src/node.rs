//! A running node: its identity, its groups, its gRPC server, and clean shutdown.
//!
//! ## BOOTSTRAP
//!
//! On first start the node derives the cluster layout from `--initial-cluster`, `--groups` and
//! `--replicas` (the same on every founding node, so every node derives the same layout) and
//! stores it, with its id, in the `node` tree of its sled database. The first replica of each
//! group initializes that group's membership; the others wait to be contacted. The metadata
//! group 0 (every node) then records the layout. A node restarted on existing data reads its
//! identity from disk and ignores the flags.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use openraft::BasicNode;
use raftcache_core::{place_groups, StateConfig, Topology};
use raftcache_proto::admin::admin_service_server::AdminServiceServer;
use raftcache_proto::cache::cache_service_server::CacheServiceServer;
use raftcache_proto::raft::raft_service_server::RaftServiceServer;
use raftcache_raft::{
    decode, encode, Durability, Group, GroupHost, GroupRegistry, PeerChannels, RaftServiceImpl, RaftTuning, Wal,
    WalOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::admin_service::AdminServiceImpl;
use crate::cache_service::CacheServiceImpl;
use crate::config::{parse_initial_cluster, DurabilityArg, ServeArgs};
use crate::router::{Router, MESSAGE_OVERHEAD};

/// What a node persists about itself on first start.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Identity {
    node_id: u64,
    topology: Topology,
    state_config: StateConfig,
}

const IDENTITY: &[u8] = b"identity";

fn load_or_create_identity(db: &sled::Db, args: &ServeArgs) -> anyhow::Result<Identity> {
    let tree = db.open_tree("node")?;
    if let Some(bytes) = tree.get(IDENTITY)? {
        let ident: Identity = decode(&bytes).context("node identity in the data dir is corrupt")?;
        if ident.node_id != args.id {
            bail!("data dir {} belongs to node {}, but --id is {}", args.data_dir.display(), ident.node_id, args.id);
        }
        if args.initial_cluster.is_some() {
            tracing::info!("data dir holds a cluster already; ignoring --initial-cluster");
        }
        return Ok(ident);
    }
    let nodes = match &args.initial_cluster {
        Some(s) => parse_initial_cluster(s).map_err(anyhow::Error::msg)?,
        None => [(args.id, args.listen.clone())].into(),
    };
    if !nodes.contains_key(&args.id) {
        bail!("--initial-cluster does not name this node's --id {}", args.id);
    }
    let ids: Vec<u64> = nodes.keys().copied().collect();
    let group_count = args.groups.unwrap_or(ids.len() as u64);
    let groups = place_groups(&ids, group_count, args.replicas as usize);
    let ident = Identity {
        node_id: args.id,
        topology: Topology { epoch: 1, nodes, groups },
        state_config: StateConfig { fence_retention_ms: args.fence_retention_ms, ..StateConfig::default() },
    };
    tree.insert(IDENTITY, encode(&ident))?;
    db.flush()?;
    tracing::info!(node = args.id, nodes = ident.topology.nodes.len(), groups = group_count, "bootstrapped new node");
    Ok(ident)
}

/// sled keeps only the node's identity (and, once, a log or snapshot an earlier version left
/// there to be moved out): a small cache is plenty.
const SLED_CACHE_BYTES: u64 = 8 << 20;

fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// Runs a node until SIGTERM or SIGINT.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let db = sled::Config::new()
        .path(args.data_dir.join("db"))
        .flush_every_ms(Some(500))
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .with_context(|| {
            format!("cannot open the database in {} (is another node using it?)", args.data_dir.display())
        })?;
    let ident = load_or_create_identity(&db, &args)?;
    let node_id = ident.node_id;
    let topology = Arc::new(ident.topology);
    let listen: SocketAddr =
        args.listen.parse().with_context(|| format!("--listen {:?} is not ip:port", args.listen))?;

    let durability = match args.durability {
        DurabilityArg::Fsync => Durability::Fsync,
        DurabilityArg::Async => Durability::Async,
    };
    let tuning = RaftTuning {
        heartbeat_ms: args.heartbeat_ms,
        election_min_ms: args.election_timeout_ms,
        election_max_ms: args.election_timeout_ms * 2,
        snapshot_every: args.snapshot_every,
        keep_logs_behind_snapshot: args.keep_logs,
        lease_reads: !args.no_lease_reads,
        fork_snapshots: !args.snapshot_in_process,
        write_linger: std::time::Duration::from_millis(args.write_linger_ms),
    };
    let overrides = if args.peer_addrs.is_empty() {
        Default::default()
    } else {
        parse_initial_cluster(&args.peer_addrs.join(","))
            .map_err(|e| anyhow::anyhow!("--peer-addr: {}", e.trim_start_matches("--initial-cluster ")))?
            .into_iter()
            .collect()
    };
    let peers = PeerChannels::with_overrides(overrides);
    let wal_dir = args.data_dir.join("wal");
    let wal = Wal::open(
        &wal_dir,
        WalOptions {
            segment_bytes: args.wal_segment_mb << 20,
            cache_bytes: mib_to_bytes(args.disk_cache_mb),
            preallocate: !args.no_wal_preallocate,
        },
    )
    .with_context(|| format!("cannot open the write-ahead log in {}", wal_dir.display()))?;
    crate::trim::start();
    let host = GroupHost {
        node_id,
        db: db.clone(),
        snap_dir: args.data_dir.join("snapshots"),
        wal: wal.clone(),
        peers: peers.clone(),
        tuning,
        state_config: ident.state_config.clone(),
        durability,
    };
    let mut groups = Vec::new();
    for gid in topology.groups_of(node_id) {
        groups.push(Group::open(gid, &host).await.with_context(|| format!("cannot open group {gid}"))?);
    }
    let registry = GroupRegistry::new(groups);
    #[cfg(feature = "fault-injection")]
    let bugs = crate::router::Bugs::from_list(&args.bugs);
    #[cfg(not(feature = "fault-injection"))]
    let bugs = crate::router::Bugs::default();
    if bugs.stale_read || bugs.no_fence {
        tracing::warn!(?bugs, "PLANTED BUGS ENABLED: this node is deliberately incorrect");
    }
    let router = Arc::new(Router::new(node_id, topology.clone(), registry.clone(), peers, args.max_value_bytes, bugs));

    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let max_msg = args.max_value_bytes + MESSAGE_OVERHEAD;
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .concurrency_limit_per_connection(4096)
        // openraft cancels appends that outlive its 50 ms timeout; each cancel resets a stream on
        // the one connection a peer pair shares. h2's default limit (20) then closes it for all
        // groups at once.
        .http2_max_pending_accept_reset_streams(Some(100_000))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .add_service(
            CacheServiceServer::new(CacheServiceImpl::new(router.clone(), shutdown_rx.clone()))
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(max_msg),
        )
        .add_service(
            RaftServiceServer::new(RaftServiceImpl::new(registry.clone(), shutdown_rx.clone()))
                .max_decoding_message_size(raftcache_raft::MAX_RAFT_MESSAGE)
                .max_encoding_message_size(raftcache_raft::MAX_RAFT_MESSAGE),
        )
        .add_service(AdminServiceServer::new(AdminServiceImpl::new(router.clone())));
    let mut stop = shutdown_rx.clone();
    // The builder's `tcp_nodelay` applies only to listeners tonic binds itself; without it on
    // the accepted sockets, small responses wait for delayed ACKs (~40 ms per request).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server_task = tokio::spawn(server.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop.changed().await;
    }));
    tracing::info!(node = node_id, %listen, groups = registry.iter().count(), "serving");

    for g in registry.iter() {
        let replicas = &topology.groups[&g.id];
        if replicas.first() == Some(&node_id) && !g.has_state() {
            let members = replicas.iter().map(|id| (*id, BasicNode { addr: topology.nodes[id].clone() })).collect();
            g.initialize(members).await.with_context(|| format!("cannot initialize group {}", g.id))?;
        }
    }
    let sweeper = tokio::spawn(crate::sweeper::run(router.clone(), shutdown_rx.clone()));

    wait_for_signal().await;
    tracing::info!(node = node_id, "shutting down");
    let _ = shutdown_tx.send(true);
    let _ = sweeper.await;
    for g in registry.iter() {
        let _ = g.raft.shutdown().await;
    }
    match server_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "server task failed"),
    }
    wal.sync().await.map_err(anyhow::Error::msg).context("final sync of the write-ahead log")?;
    db.flush_async().await.context("final flush of the node database")?;
    tracing::info!(node = node_id, "stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Tasks a tokio worker runs from its own queue between looks at the runtime's shared queue
/// (where tasks woken from other threads wait: the write-ahead log's sync thread, the blocking
/// pool). tokio otherwise tunes this to about 200 µs of task polls, 2 to 127 tasks. Fixed at 61
/// (tokio's own target count), a node on one worker, as nodes sharing a machine run, took more
/// writes at high concurrency (`scripts/ab.sh --alone`, 64 clients: 12 pairs, +2.2% on average,
/// 10 of them ≥ 1.000; 256 clients +2.9% / +5.3%) and as many at 1 and 16 clients, in a 90/10
/// mix and in reads; 8 and 255 lost 3–6%, 127 −1.7% and 31 +0.7% against 61 (4 pairs each: a
/// fixed count near tokio's target is what pays). On two workers per node it changed nothing (3
/// pairs, −1.8% to +0.9%).
const GLOBAL_QUEUE_INTERVAL: u32 = 61;

/// Runs `raftcache serve` to completion in its own runtime, logging to stderr (`RUST_LOG`,
/// default `info,openraft=warn`): the whole of a node binary's `main`.
pub fn serve_main(args: ServeArgs) -> std::process::ExitCode {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n as usize);
    }
    runtime.global_queue_interval(GLOBAL_QUEUE_INTERVAL);
    let runtime = runtime.enable_all().build().expect("tokio runtime");
    match runtime.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
