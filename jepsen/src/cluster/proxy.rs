//! The per-link TCP proxy that carries all node-to-node traffic, so the harness can cut, black
//! hole or slow each directed link on its own.
//!
//! Node `i` reaches node `j` (Raft RPCs, ReadIndex, forwarded client requests) through the
//! proxy of link `i→j`: its `--peer-addr j=…` names that proxy, which forwards to `j`'s real
//! port. Replies travel back on the same connection, so a link is the connections `i` opens to
//! `j`; traffic that `j` initiates towards `i` uses link `j→i`. A symmetric partition cuts both.
//! Clients are not proxied: they reach every node directly, as in Jepsen.
//!
//! Modes of a link:
//! - **pass** — bytes flow;
//! - **drop** — open connections are closed and new ones are accepted and closed at once
//!   (peers see resets, fail fast and retry);
//! - **blackhole** — nothing is forwarded and nothing is answered (peers see timeouts); when the
//!   link heals, connections that lost bytes are closed, as a real stream would be broken;
//! - **delay** — every chunk is held for `ms ± jitter` before it is forwarded, in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward.
    Pass,
    /// Close connections.
    Drop,
    /// Swallow everything.
    Blackhole,
    /// Forward after `ms` plus up to `jitter_ms`.
    Delay {
        /// Base one-way delay.
        ms: u64,
        /// Extra random delay per chunk (order is kept).
        jitter_ms: u64,
    },
}

struct Link {
    addr: SocketAddr,
    mode: watch::Sender<LinkMode>,
    task: JoinHandle<()>,
}

/// Every directed link between the nodes of a cluster.
pub struct Net {
    links: BTreeMap<(u64, u64), Link>,
}

impl Net {
    /// Starts a proxy for every ordered pair of `nodes` (id → real address).
    pub async fn start(nodes: &BTreeMap<u64, String>) -> Result<Net> {
        let mut links = BTreeMap::new();
        for &from in nodes.keys() {
            for (&to, target) in nodes {
                if from == to {
                    continue;
                }
                let target: SocketAddr = target.parse().with_context(|| format!("node {to} address {target}"))?;
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let (tx, rx) = watch::channel(LinkMode::Pass);
                let task = tokio::spawn(accept_loop(listener, target, rx));
                links.insert((from, to), Link { addr, mode: tx, task });
            }
        }
        Ok(Net { links })
    }

    /// The address node `from` dials to reach node `to`.
    pub fn proxy_addr(&self, from: u64, to: u64) -> String {
        self.links[&(from, to)].addr.to_string()
    }

    /// `--peer-addr` value for node `from`: every peer through its proxy.
    pub fn peer_addr_arg(&self, from: u64) -> String {
        self.links
            .iter()
            .filter(|((f, _), _)| *f == from)
            .map(|((_, to), l)| format!("{to}={}", l.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sets the mode of link `from→to`.
    pub fn set(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(l) = self.links.get(&(from, to)) {
            l.mode.send_replace(mode);
        }
    }

    /// The mode of link `from→to`.
    pub fn mode(&self, from: u64, to: u64) -> LinkMode {
        self.links.get(&(from, to)).map(|l| *l.mode.borrow()).unwrap_or(LinkMode::Pass)
    }

    /// Every link back to pass.
    pub fn heal_all(&self) {
        for l in self.links.values() {
            l.mode.send_if_modified(|m| std::mem::replace(m, LinkMode::Pass) != LinkMode::Pass);
        }
    }

    /// All directed links.
    pub fn links(&self) -> Vec<(u64, u64)> {
        self.links.keys().copied().collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for l in self.links.values() {
            l.task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    // Owned here, so aborting the accept loop (dropping the Net) ends every connection too.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        conns.spawn(connection(inbound, target, mode.clone()));
    }
}

async fn connection(inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<LinkMode>) {
    let current = *mode.borrow_and_update();
    match current {
        LinkMode::Drop => return,
        LinkMode::Blackhole => return swallow(inbound, mode).await,
        _ => {}
    }
    let Ok(outbound) = TcpStream::connect(target).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    tokio::select! {
        _ = pipe(ri, wo, mode.clone()) => {}
        _ = pipe(ro, wi, mode.clone()) => {}
        _ = cut(&mut mode) => {}
    }
}

/// Returns when the connection must close: the link drops, or heals after losing bytes.
async fn cut(mode: &mut watch::Receiver<LinkMode>) {
    let mut lost_bytes = false;
    while mode.changed().await.is_ok() {
        match *mode.borrow_and_update() {
            LinkMode::Drop => return,
            LinkMode::Blackhole => lost_bytes = true,
            _ if lost_bytes => return,
            _ => {}
        }
    }
}

/// A connection opened while the link is a black hole: read and discard until it heals, then
/// close.
async fn swallow(mut inbound: TcpStream, mut mode: watch::Receiver<LinkMode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = inbound.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow_and_update() != LinkMode::Blackhole {
                    return;
                }
            }
        }
    }
}

/// Copies one direction through a delay line that keeps order.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mode: watch::Receiver<LinkMode>) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = Instant::now();
            let at = match *mode.borrow() {
                LinkMode::Drop => return,
                LinkMode::Blackhole => continue,
                LinkMode::Pass => now,
                LinkMode::Delay { ms, jitter_ms } => {
                    let jitter = if jitter_ms == 0 { 0 } else { rand::thread_rng().gen_range(0..=jitter_ms) };
                    now + Duration::from_millis(ms + jitter)
                }
            };
            last = last.max(at);
            if tx.send((last, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::pin!(writer);
    tokio::select! {
        _ = reader => {}
        _ = &mut writer => return,
    }
    // The reader hit end of stream: deliver what is still in the delay line.
    writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(addr: &str, timeout: Duration) -> Option<Duration> {
        let start = std::time::Instant::now();
        let fut = async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(b"ping").await.ok()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"ping").then_some(())
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten().map(|_| start.elapsed())
    }

    #[tokio::test]
    async fn links_pass_drop_blackhole_and_delay() {
        let echo = echo_server().await;
        let nodes = BTreeMap::from([(1, echo.clone()), (2, echo)]);
        let net = Net::start(&nodes).await.unwrap();
        let a = net.proxy_addr(1, 2);
        assert!(roundtrip(&a, Duration::from_secs(2)).await.is_some(), "pass");
        net.set(1, 2, LinkMode::Drop);
        assert!(roundtrip(&a, Duration::from_millis(500)).await.is_none(), "drop");
        net.set(1, 2, LinkMode::Blackhole);
        assert!(roundtrip(&a, Duration::from_millis(300)).await.is_none(), "blackhole");
        net.set(1, 2, LinkMode::Delay { ms: 150, jitter_ms: 0 });
        let took = roundtrip(&a, Duration::from_secs(3)).await.expect("delay still delivers");
        assert!(took >= Duration::from_millis(280), "both directions delayed: {took:?}");
        net.heal_all();
        assert!(roundtrip(&a, Duration::from_secs(2)).await.is_some(), "healed");
        // The other direction was never touched.
        assert!(roundtrip(&net.proxy_addr(2, 1), Duration::from_secs(2)).await.is_some());
    }
}
