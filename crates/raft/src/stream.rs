//! `RaftService.Stream`: every group's AppendEntries, Vote and ReadIndex to one peer over one
//! long-lived bidirectional stream.
//!
//! A unary call costs an HTTP/2 stream on both ends (headers, trailers, flow-control state, a
//! task); under a write load a node sends thousands of small appends a second (a third of them
//! only carry the commit index), so that fixed cost, not the bytes, was a large share of the
//! transport's CPU. Over the stream a call costs a map entry and a few bytes of framing, and
//! calls of several groups that are ready at once share one message, in both directions.
//!
//! Each call keeps its unary semantics: the same handler, its own result or status. When the
//! stream breaks, every call in flight fails with `UNAVAILABLE` (the peer is unreachable, so
//! openraft backs off) and the next call opens a new stream. A peer without the method answers
//! `UNIMPLEMENTED`; the caller then uses the unary calls (see `network.rs`).
//!
//! One thing a unary call did implicitly needs care here: an append that openraft gave up on
//! (timed out) was reset, so a receiver that was paused, or cut off while the data sat in a
//! buffer, never served it late. On the stream it is served late, and the freshness mark it
//! carries (`freshness.rs`) must not count its transit as zero. So appends on the stream carry
//! the leader's quorum confirmation time on the *receiver's* clock, mapped through a lower bound
//! on the clocks' offset that round trips give ([`PeerClock`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use prost::Message;
use raftcache_core::waiting::{Abandoned, Waiting};
use raftcache_proto::raft::raft_call_result::Outcome;
use raftcache_proto::raft::raft_service_client::RaftServiceClient;
use raftcache_proto::raft::{
    RaftCall, RaftCallResult, RaftCalls, RaftFailure, RaftReply, RaftRequest, RaftResults, RaftRpc,
};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::codec::encode;
use crate::network::MAX_RAFT_MESSAGE;
use crate::service::RaftServiceImpl;

/// Calls that are ready together share a message while it stays under this size; a larger call
/// goes alone. Appends are cut to 16 MiB (`MAX_APPEND_PAYLOAD`), so a message stays well under
/// [`MAX_RAFT_MESSAGE`].
const BATCH_BYTES: usize = 1024 * 1024;
/// Messages queued for the stream before the sender waits for HTTP/2 to take them (calls wait in
/// [`Waiting`] meanwhile).
const OUTBOUND_QUEUE: usize = 16;
/// Calls of one stream in service at once; beyond this the node stops reading the stream and
/// HTTP/2 flow control holds the sender back. openraft keeps one append per group and peer in
/// flight, so a healthy peer never gets near it.
const SERVE_IN_FLIGHT: usize = 1024;

type Reply = oneshot::Sender<Result<RaftReply, Status>>;

/// This process's origin for the microsecond timestamps it exchanges with peers.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// `t` in microseconds since this process's [`EPOCH`] (0 before it).
pub(crate) fn local_us(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH).as_micros() as u64
}

/// The instant `us` microseconds after this process's [`EPOCH`].
pub(crate) fn local_instant(us: u64) -> Instant {
    *EPOCH + Duration::from_micros(us)
}

/// How fast two nodes' monotonic clocks may drift apart, in parts per million (NTP keeps real
/// clocks within 500).
const DRIFT_PPM: u128 = 1000;

/// A lower bound on how far the peer's clock (microseconds since its [`EPOCH`]) is ahead of
/// ours. A result the peer read at `received_us` (its clock) and we got at `arrived` (ours) gives
/// `offset >= received_us - arrived`: the call was read before the result left, and the result
/// left before it arrived. The best (largest) bound is kept, and weakened by [`DRIFT_PPM`] of the
/// time since it was taken.
#[derive(Debug, Default)]
pub(crate) struct PeerClock {
    /// When the best bound was taken (our clock), and the bound.
    best: Option<(Instant, i128)>,
}

impl PeerClock {
    fn drift(from: Instant, to: Instant) -> i128 {
        let gap = if to > from { to - from } else { from - to };
        (gap.as_micros() * DRIFT_PPM / 1_000_000) as i128
    }

    /// Takes the bound a result gives.
    pub(crate) fn observe(&mut self, received_us: u64, arrived: Instant) {
        let bound = received_us as i128 - local_us(arrived) as i128;
        match self.best {
            Some((at, best)) if best - Self::drift(at, arrived) > bound => {}
            _ => self.best = Some((arrived, bound)),
        }
    }

    /// `t` (our clock) on the peer's clock, no later than the truth; `None` before any round
    /// trip.
    pub(crate) fn to_peer(&self, t: Instant) -> Option<u64> {
        let (at, bound) = self.best?;
        u64::try_from(local_us(t) as i128 + bound - Self::drift(at, t)).ok()
    }
}

struct Pending {
    rpc: RaftRpc,
    request: RaftRequest,
    reply: Reply,
}

impl Abandoned for Pending {
    /// True once openraft gave up on it (timed out): it is then dropped unsent.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Fails every call still waiting to be sent with `status`.
fn fail_waiting(waiting: &mut Waiting<Pending>, status: &Status) {
    for p in waiting.drain() {
        let _ = p.reply.send(Err(Status::new(status.code(), status.message())));
    }
}

/// The stream to one peer. Cheap to clone; the stream closes when the last clone is dropped
/// (after the calls in flight are answered) or breaks.
#[derive(Clone)]
pub(crate) struct PeerStream {
    tx: mpsc::UnboundedSender<Pending>,
    clock: Arc<Mutex<PeerClock>>,
}

impl PeerStream {
    /// A stream to `peer` over `channel`; it opens with the first call.
    pub(crate) fn open(channel: Channel, peer: u64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = RaftServiceClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        let clock = Arc::new(Mutex::new(PeerClock::default()));
        tokio::spawn(drive(client, rx, peer, clock.clone()));
        Self { tx, clock }
    }

    /// `t` on the peer's clock, no later than the truth, as this stream's round trips bound it;
    /// `None` before the first one.
    pub(crate) fn peer_time(&self, t: Instant) -> Option<u64> {
        self.clock.lock().expect("peer clock lock poisoned").to_peer(t)
    }

    /// Whether the stream has ended (a new one is needed).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends `request` to the peer's `rpc` handler and waits for the reply. The caller bounds
    /// the wait (openraft times its RPCs out itself).
    pub(crate) async fn call(&self, rpc: RaftRpc, request: RaftRequest) -> Result<RaftReply, Status> {
        let (reply, rx) = oneshot::channel();
        let lost = || Status::unavailable("raft stream closed");
        self.tx.send(Pending { rpc, request, reply }).map_err(|_| lost())?;
        rx.await.map_err(|_| lost())?
    }
}

/// Runs one stream: sends queued calls, hands results to their callers, fails what is in flight
/// when the stream ends.
///
/// It never stops taking calls from the handles: while the peer does not read (paused, or cut
/// off with full windows) or the stream is still opening, calls wait in [`Waiting`], which drops
/// those openraft gave up on. So a stalled peer costs the live calls' payloads (one append per
/// group, a vote, read indexes), not every retry's.
async fn drive(
    mut client: RaftServiceClient<Channel>,
    mut calls: mpsc::UnboundedReceiver<Pending>,
    peer: u64,
    clock: Arc<Mutex<PeerClock>>,
) {
    let Some(first) = calls.recv().await else { return };
    let mut waiting = Waiting::default();
    waiting.push(first);
    let (out_tx, out_rx) = mpsc::channel::<RaftCalls>(OUTBOUND_QUEUE);
    let mut flight = InFlight { clock, ..InFlight::default() };
    // The first message is queued before the call opens, so it leaves with the headers.
    let batch = flight.take_batch(&mut waiting);
    if !batch.is_empty() && out_tx.try_send(RaftCalls { calls: batch }).is_err() {
        return;
    }
    let outbound = futures::stream::unfold(out_rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let open = client.stream(outbound);
    tokio::pin!(open);
    let mut inbound = loop {
        tokio::select! {
            opened = &mut open => match opened {
                Ok(r) => break r.into_inner(),
                Err(s) => {
                    // UNIMPLEMENTED tells the callers to fall back to unary calls; anything else
                    // is a transport failure.
                    let s = if s.code() == tonic::Code::Unimplemented { s } else { unreachable(peer, &s) };
                    flight.fail_all(&s);
                    fail_waiting(&mut waiting, &s);
                    return;
                }
            },
            call = calls.recv() => match call {
                Some(c) => waiting.push(c),
                None => return, // every handle is gone: nobody waits for an answer
            },
        }
    };
    let ended = loop {
        tokio::select! {
            permit = out_tx.reserve(), if !waiting.is_empty() => match permit {
                Ok(permit) => {
                    let batch = flight.take_batch(&mut waiting);
                    if !batch.is_empty() {
                        permit.send(RaftCalls { calls: batch });
                    }
                }
                Err(_) => break Status::unavailable(format!("raft stream to node {peer} closed")),
            },
            call = calls.recv() => match call {
                Some(c) => {
                    // Everything queued with it goes into the same message.
                    waiting.push(c);
                    while let Ok(c) = calls.try_recv() {
                        waiting.push(c);
                    }
                }
                // Every handle is gone: nobody waits for an answer; dropping the stream ends it.
                None => return,
            },
            msg = inbound.message() => match msg {
                Ok(Some(msg)) => flight.answer(msg.results),
                Ok(None) => break Status::unavailable(format!("node {peer} ended the raft stream")),
                Err(s) => break unreachable(peer, &s),
            },
        }
    };
    calls.close();
    while let Ok(p) = calls.try_recv() {
        waiting.push(p);
    }
    flight.fail_all(&ended);
    fail_waiting(&mut waiting, &ended);
}

fn unreachable(peer: u64, s: &Status) -> Status {
    Status::unavailable(format!("raft stream to node {peer}: {}", s.message()))
}

/// The calls sent and not yet answered.
#[derive(Default)]
struct InFlight {
    /// Where the results' receive times go.
    clock: Arc<Mutex<PeerClock>>,
    next_id: u64,
    replies: HashMap<u64, Reply>,
    /// `replies.len()` after the last sweep of abandoned calls.
    swept_at: usize,
}

impl InFlight {
    /// The next message's calls from the front of `waiting`, while it stays under
    /// [`BATCH_BYTES`] (a larger call goes alone); calls whose callers gave up are dropped.
    fn take_batch(&mut self, waiting: &mut Waiting<Pending>) -> Vec<RaftCall> {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(p) = waiting.pop() {
            let call = RaftCall { id: self.next_id + 1, rpc: p.rpc as i32, request: Some(p.request) };
            let len = call.encoded_len();
            if !batch.is_empty() && size + len > BATCH_BYTES {
                let request = call.request.expect("set above");
                waiting.unpop(Pending { rpc: p.rpc, request, reply: p.reply });
                break;
            }
            self.next_id += 1;
            size += len;
            self.replies.insert(call.id, p.reply);
            batch.push(call);
        }
        self.sweep();
        batch
    }

    fn answer(&mut self, results: Vec<RaftCallResult>) {
        let arrived = Instant::now();
        if let Some(received_us) = results.iter().map(|r| r.received_us).filter(|us| *us > 0).max() {
            self.clock.lock().expect("peer clock lock poisoned").observe(received_us, arrived);
        }
        for r in results {
            if let Some(reply) = self.replies.remove(&r.id) {
                let _ = reply.send(match r.outcome {
                    Some(Outcome::Reply(reply)) => Ok(reply),
                    Some(Outcome::Failure(f)) => Err(Status::new(tonic::Code::from(f.code), f.message)),
                    None => Err(Status::internal(format!("raft call {} answered without an outcome", r.id))),
                });
            }
        }
    }

    /// Forgets calls whose callers gave up, so that a peer that never answers does not make the
    /// map grow without bound. Amortized: runs when the map doubled since last time.
    fn sweep(&mut self) {
        if self.replies.len() > 1024 && self.replies.len() > 2 * self.swept_at {
            self.replies.retain(|_, r| !r.is_closed());
            self.swept_at = self.replies.len();
        }
    }

    fn fail_all(&mut self, status: &Status) {
        for (_, reply) in self.replies.drain() {
            let _ = reply.send(Err(Status::new(status.code(), status.message())));
        }
    }
}

/// The response stream of one `Stream` call.
pub type ResultStream = std::pin::Pin<Box<dyn Stream<Item = Result<RaftResults, Status>> + Send>>;

/// Serves the calls of `inbound` through `service` and returns the stream of their results.
/// Once `shutdown` becomes true the stream takes no more calls and ends after answering the
/// ones it took, so that a node's graceful shutdown is not held open by its peers' streams.
pub(crate) fn serve(
    service: RaftServiceImpl,
    inbound: Streaming<RaftCalls>,
    shutdown: watch::Receiver<bool>,
) -> ResultStream {
    let rx = serve_calls(
        inbound,
        shutdown,
        SERVE_IN_FLIGHT,
        |m: RaftCalls| m.calls,
        move |call, received| {
            let service = service.clone();
            async move { serve_call(&service, call, received).await }
        },
    );
    Box::pin(batched(rx, SERVE_IN_FLIGHT, BATCH_BYTES, |results| RaftResults { results }))
}

async fn serve_call(service: &RaftServiceImpl, call: RaftCall, received: Instant) -> RaftCallResult {
    let outcome = match (RaftRpc::try_from(call.rpc), call.request) {
        (_, None) => Err(Status::invalid_argument(format!("raft call {} carries no request", call.id))),
        (Ok(RaftRpc::AppendEntries), Some(r)) => service.serve_append(r, received).await,
        (Ok(RaftRpc::Vote), Some(r)) => service.serve_vote(r).await,
        (Ok(RaftRpc::ReadIndex), Some(r)) => {
            service.serve_read_index(r.group).await.map(|index| RaftReply { payload: encode(&index).into() })
        }
        (_, Some(_)) => Err(Status::invalid_argument(format!(
            "raft call {} names rpc {}, expected append entries (1), vote (2) or read index (3)",
            call.id, call.rpc
        ))),
    };
    let outcome = match outcome {
        Ok(reply) => Outcome::Reply(reply),
        Err(s) => Outcome::Failure(RaftFailure { code: s.code() as i32, message: s.message().to_owned() }),
    };
    RaftCallResult { id: call.id, outcome: Some(outcome), received_us: local_us(received) }
}

/// A served call's result with its in-flight permit, or the status that ends the stream.
pub type Completed<T> = Result<(T, OwnedSemaphorePermit), Status>;

/// Reads the messages of `inbound` (a gRPC request stream, or any stream of messages) and serves
/// each of their calls (`calls_of` takes them out of a message) through `handle`, given the call
/// and when its message was read: where it is read if it completes in its first poll, else in a
/// task of its own. The results come out of the returned channel in completion order, for
/// [`batched`].
///
/// At most `in_flight` calls are in service or have results not yet in a message: beyond that
/// the reader stops reading, and HTTP/2 flow control holds the sender back, so no peer or client
/// can make a node queue unbounded work or results. Once `shutdown` becomes true no more calls
/// are taken; the channel ends after the ones taken are answered. A malformed or oversized
/// message ends it with its status, after the results that completed before it.
pub fn serve_calls<M, S, C, T, H, F>(
    mut inbound: S,
    mut shutdown: watch::Receiver<bool>,
    in_flight: usize,
    calls_of: fn(M) -> Vec<C>,
    handle: H,
) -> mpsc::UnboundedReceiver<Completed<T>>
where
    M: Send + 'static,
    S: Stream<Item = Result<M, Status>> + Unpin + Send + 'static,
    C: Send + 'static,
    T: Send + 'static,
    H: Fn(C, Instant) -> F + Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Completed<T>>();
    let permits = Arc::new(Semaphore::new(in_flight));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                m = futures::StreamExt::next(&mut inbound) => m,
                Ok(_) = shutdown.wait_for(|stop| *stop) => break,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                None => break,
                Some(Err(s)) => {
                    let _ = tx.send(Err(s));
                    break;
                }
            };
            let received = Instant::now();
            for call in calls_of(msg) {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                // The handler's future goes on the heap once, here; spawned inline, its kilobyte or
                // two would be copied again by every layer of the spawn and on completion.
                let mut served = Box::pin(handle(call, received));
                // A call that completes at once (a read under the leader's lease) is answered
                // without a task of its own. Polled here with a waker that does nothing, a call
                // that must wait is spawned, and its task's first poll registers the real one.
                if let Some(result) = futures::FutureExt::now_or_never(&mut served) {
                    let _ = tx.send(Ok((result, permit)));
                    continue;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Ok((served.await, permit)));
                });
            }
        }
    });
    rx
}

/// The results of `rx` (from [`serve_calls`] with the same `in_flight`) in messages built by
/// `wrap`: waits for one result, then adds every result already completed while the message stays
/// under `limit` bytes (a single larger result goes alone). A result's permit is returned once it
/// is in a message. Ends when every sender is gone, or with the status that ended the calls'
/// stream.
///
/// While other calls are in service, it yields once before taking the completed results: calls
/// answered together (the writes of one log entry) finish in tasks of their own, and a turn of
/// the scheduler lets them join the message instead of each following in one of its own.
pub fn batched<T, M>(
    rx: mpsc::UnboundedReceiver<Completed<T>>,
    in_flight: usize,
    limit: usize,
    wrap: fn(Vec<T>) -> M,
) -> impl Stream<Item = Result<M, Status>> + Send
where
    T: Message + Send + 'static,
    M: Send + 'static,
{
    struct Out<T> {
        rx: mpsc::UnboundedReceiver<Completed<T>>,
        held: Option<Completed<T>>,
        ended: bool,
    }
    let out = Out { rx, held: None, ended: false };
    futures::stream::unfold(out, move |mut o| async move {
        if o.ended {
            return None;
        }
        let first = match o.held.take() {
            Some(r) => r,
            None => o.rx.recv().await?,
        };
        let first = match first {
            Ok((r, permit)) => {
                // `permit` is this result's own; any other taken means another call in service.
                if permit.semaphore().available_permits() + 1 < in_flight {
                    tokio::task::yield_now().await;
                }
                r
            }
            Err(s) => {
                o.ended = true;
                return Some((Err(s), o));
            }
        };
        let mut size = first.encoded_len();
        let mut batch = vec![first];
        while let Ok(next) = o.rx.try_recv() {
            match next {
                Ok((r, _permit)) if size + r.encoded_len() <= limit => {
                    size += r.encoded_len();
                    batch.push(r);
                }
                other => {
                    o.held = Some(other);
                    break;
                }
            }
        }
        Some((Ok(wrap(batch)), o))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use openraft::error::RaftError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{VoteRequest, VoteResponse};
    use openraft::Vote;
    use raftcache_proto::raft::raft_service_server::{RaftService, RaftServiceServer};
    use raftcache_proto::raft::{ReadIndexReply, ReadIndexRequest};
    use tonic::{Request, Response};

    use super::*;
    use crate::network::{GroupNetworkFactory, PeerChannels};
    use crate::registry::GroupRegistry;

    /// A peer that answers each message's calls in reverse order, never answers calls of group
    /// [`SILENT`], ends the stream with an error on a call of group [`BREAK`], and knows the
    /// stream only if `streams`.
    #[derive(Clone, Default)]
    struct Fake {
        streams: bool,
        opens: Arc<AtomicUsize>,
        unary: Arc<AtomicUsize>,
    }

    const SILENT: u64 = 5;
    const BREAK: u64 = 7;

    fn echo(kind: &str, r: &RaftRequest) -> RaftReply {
        RaftReply { payload: format!("{kind}:{}:{}", r.group, String::from_utf8_lossy(&r.payload)).into_bytes().into() }
    }

    fn vote_reply() -> RaftReply {
        let res: Result<VoteResponse<u64>, RaftError<u64>> = Ok(VoteResponse::new(Vote::new(1, 2), None, true));
        RaftReply { payload: encode(&res).into() }
    }

    #[tonic::async_trait]
    impl RaftService for Fake {
        type StreamStream = ResultStream;

        async fn stream(&self, req: Request<Streaming<RaftCalls>>) -> Result<Response<ResultStream>, Status> {
            self.opens.fetch_add(1, Ordering::SeqCst);
            if !self.streams {
                return Err(Status::unimplemented("no stream here"));
            }
            let mut inbound = req.into_inner();
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok(Some(msg)) = inbound.message().await {
                    let mut results = Vec::new();
                    for call in msg.calls.into_iter().rev() {
                        let r = call.request.expect("request");
                        match r.group {
                            SILENT => {}
                            BREAK => {
                                let _ = tx.send(Err(Status::internal("peer broke the stream")));
                                return;
                            }
                            _ if call.rpc == RaftRpc::ReadIndex as i32 => {
                                let reply = RaftReply { payload: encode(&(r.group * 10)).into() };
                                let outcome = Some(Outcome::Reply(reply));
                                results.push(RaftCallResult { id: call.id, outcome, received_us: 0 });
                            }
                            _ => {
                                let kind = if call.rpc == RaftRpc::Vote as i32 { "vote" } else { "append" };
                                results.push(RaftCallResult {
                                    id: call.id,
                                    outcome: Some(Outcome::Reply(echo(kind, &r))),
                                    received_us: local_us(Instant::now()),
                                });
                            }
                        }
                    }
                    let _ = tx.send(Ok(RaftResults { results }));
                }
            });
            Ok(Response::new(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|m| (m, rx))
            }))))
        }

        async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
            self.unary.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(echo("unary", &req.into_inner())))
        }

        async fn vote(&self, _req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
            self.unary.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(vote_reply()))
        }

        async fn install_snapshot(&self, _req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn read_index(&self, _req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
            self.unary.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(ReadIndexReply { index: 42 }))
        }
    }

    /// Serves `service` on a loopback port; its address.
    async fn start<S: RaftService>(service: S) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServiceServer::new(service))
                .serve_with_incoming(incoming),
        );
        addr
    }

    fn request(group: u64, payload: &str) -> RaftRequest {
        RaftRequest {
            group,
            payload: payload.as_bytes().to_vec().into(),
            leader_quorum_age_us: None,
            quorum_confirmed_at_us: None,
        }
    }

    #[test]
    fn the_peer_clock_never_maps_a_time_later_than_the_truth() {
        const AHEAD_US: u64 = 5_000_000; // the peer's clock reads 5 s more than ours
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut clock = PeerClock::default();
        assert_eq!(clock.to_peer(t0), None, "no round trip yet");
        // Read 300 µs after we sent it, answered at once, arrived back 300 µs later.
        let arrived = t0 + Duration::from_micros(600);
        clock.observe(local_us(t0) + AHEAD_US + 300, arrived);
        let truth = local_us(t0) + AHEAD_US;
        let mapped = clock.to_peer(t0).expect("a bound");
        assert!(mapped <= truth && truth - mapped <= 600, "mapped {mapped}, truth {truth}");
        // A result that sat in a buffer gives a weaker bound, which does not replace the better.
        clock.observe(local_us(t0) + AHEAD_US + 700, t0 + Duration::from_millis(900));
        assert_eq!(clock.to_peer(t0), Some(mapped));
        // A tighter one does.
        clock.observe(local_us(t0) + AHEAD_US + 1_000, t0 + Duration::from_micros(1_100));
        let tighter = clock.to_peer(t0).expect("a bound");
        assert!(tighter > mapped && tighter <= truth, "tighter {tighter}, before {mapped}, truth {truth}");
        // Far from the bound's time, drift is allowed for: 1 ms per second.
        let later = t0 + Duration::from_secs(10);
        let mapped_later = clock.to_peer(later).expect("a bound");
        assert!(mapped_later + 10_000 <= local_us(later) + AHEAD_US, "drift allowance missing");
    }

    #[tokio::test]
    async fn calls_of_many_groups_share_one_stream_and_each_gets_its_own_reply() {
        let fake = Fake { streams: true, ..Fake::default() };
        let addr = start(fake.clone()).await;
        let stream = PeerChannels::default().stream(2, &addr).expect("a stream");
        let calls = (0..64u64).filter(|g| ![SILENT, BREAK].contains(g)).map(|g| {
            let (stream, rpc) = (stream.clone(), if g % 2 == 0 { RaftRpc::Vote } else { RaftRpc::AppendEntries });
            async move { (g, rpc, stream.call(rpc, request(g, &format!("p{g}"))).await) }
        });
        for (g, rpc, res) in futures::future::join_all(calls).await {
            let kind = if rpc == RaftRpc::Vote { "vote" } else { "append" };
            let reply = res.unwrap_or_else(|s| panic!("call of group {g} failed: {s}"));
            assert_eq!(String::from_utf8_lossy(&reply.payload), format!("{kind}:{g}:p{g}"));
        }
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1, "one stream for all calls");
        assert_eq!(fake.unary.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_broken_stream_fails_its_calls_as_unavailable_and_the_next_call_reopens() {
        let fake = Fake { streams: true, ..Fake::default() };
        let addr = start(fake.clone()).await;
        let peers = PeerChannels::default();
        let stream = peers.stream(2, &addr).expect("a stream");
        let silent = tokio::spawn({
            let stream = stream.clone();
            async move { stream.call(RaftRpc::AppendEntries, request(SILENT, "waits")).await }
        });
        assert!(stream.call(RaftRpc::AppendEntries, request(1, "x")).await.is_ok());
        let broke = stream.call(RaftRpc::AppendEntries, request(BREAK, "breaks")).await.expect_err("stream broke");
        let waited = silent.await.expect("task").expect_err("stream broke under it");
        for s in [&broke, &waited] {
            assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
        }
        assert!(stream.is_closed());
        let again = peers.stream(2, &addr).expect("a new stream");
        let reply = again.call(RaftRpc::Vote, request(3, "y")).await.expect("the new stream works");
        assert_eq!(&reply.payload[..], b"vote:3:y");
        assert_eq!(fake.opens.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_peer_without_the_stream_gets_unary_calls() {
        let fake = Fake::default();
        let addr = start(fake.clone()).await;
        let mut factory = GroupNetworkFactory::new(1, 1, PeerChannels::default(), Arc::default(), Arc::default());
        let mut net = factory.new_client(2, &openraft::BasicNode { addr }).await;
        let option = RPCOption::new(std::time::Duration::from_secs(5));
        for _ in 0..3 {
            let res = net.vote(VoteRequest::new(Vote::new(1, 1), None), option.clone()).await.expect("vote over unary");
            assert!(res.vote_granted);
        }
        assert_eq!(fake.unary.load(Ordering::SeqCst), 3);
        assert_eq!(fake.opens.load(Ordering::SeqCst), 1, "the stream is not retried at once");
    }

    /// A peer that opens the stream and never reads it (a paused process).
    #[derive(Clone, Default)]
    struct Stalled {
        streams: Arc<Mutex<Vec<Streaming<RaftCalls>>>>,
    }

    #[tonic::async_trait]
    impl RaftService for Stalled {
        type StreamStream = ResultStream;

        async fn stream(&self, req: Request<Streaming<RaftCalls>>) -> Result<Response<ResultStream>, Status> {
            self.streams.lock().unwrap().push(req.into_inner());
            Ok(Response::new(Box::pin(futures::stream::pending())))
        }

        async fn append_entries(&self, _req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn vote(&self, _req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn install_snapshot(&self, _req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn read_index(&self, _req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    /// A payload that counts its drops.
    struct Counted(Vec<u8>, Arc<AtomicUsize>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_holds_only_the_live_calls_payloads() {
        const CALLS: usize = 2_000;
        let addr = start(Stalled::default()).await;
        let stream = PeerChannels::default().stream(2, &addr).expect("a stream");
        let dropped = Arc::new(AtomicUsize::new(0));
        for i in 0..CALLS {
            let payload = bytes::Bytes::from_owner(Counted(vec![0; 64 * 1024], dropped.clone()));
            let request = RaftRequest { group: i as u64, payload, ..RaftRequest::default() };
            // openraft gives up on an append after its timeout; so does this caller.
            let call =
                tokio::time::timeout(std::time::Duration::from_millis(1), stream.call(RaftRpc::AppendEntries, request));
            assert!(call.await.is_err(), "the stalled peer answered");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let held = CALLS - dropped.load(Ordering::SeqCst);
        // What HTTP/2 and the outbound queue took before the peer's windows filled, plus the
        // calls waiting since the last sweep: a few hundred, not all 2,000 (128 MiB).
        assert!(held < 600, "{held} of {CALLS} abandoned calls still hold their payload");
    }

    #[tokio::test]
    async fn read_indexes_go_over_the_stream_or_unary_to_a_peer_without_it() {
        let timeout = std::time::Duration::from_secs(5);
        let streaming = Fake { streams: true, ..Fake::default() };
        let addr = start(streaming.clone()).await;
        assert_eq!(PeerChannels::default().read_index(2, &addr, 4, timeout).await.expect("read index"), 40);
        assert_eq!((streaming.opens.load(Ordering::SeqCst), streaming.unary.load(Ordering::SeqCst)), (1, 0));

        let unary = Fake::default();
        let addr = start(unary.clone()).await;
        let peers = PeerChannels::default();
        for _ in 0..2 {
            assert_eq!(peers.read_index(2, &addr, 4, timeout).await.expect("read index"), 42);
        }
        assert_eq!((unary.opens.load(Ordering::SeqCst), unary.unary.load(Ordering::SeqCst)), (1, 2));
    }

    #[tokio::test]
    async fn the_node_side_names_bad_calls_and_ends_streams_at_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let addr = start(RaftServiceImpl::new(GroupRegistry::default(), shutdown)).await;
        let stream = PeerChannels::default().stream(2, &addr).expect("a stream");
        let s = stream.call(RaftRpc::Unspecified, request(1, "")).await.expect_err("no rpc named");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("names rpc 0"), "{s:?}");
        for rpc in [RaftRpc::AppendEntries, RaftRpc::Vote, RaftRpc::ReadIndex] {
            let s = stream.call(rpc, request(3, "")).await.expect_err("no such group");
            assert_eq!(s.code(), tonic::Code::NotFound, "{rpc:?}");
            assert!(s.message().contains("group 3"), "{rpc:?}: {s:?}");
        }
        stop.send(true).expect("send");
        // The node answers what it took, then ends the stream: calls fail as unreachable.
        let mut ended = None;
        for _ in 0..100 {
            match stream.call(RaftRpc::Vote, request(3, "")).await {
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    ended = Some(s);
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        assert!(ended.is_some(), "the stream outlived the node's shutdown");
        assert!(stream.is_closed());
    }

    /// A call that completes in its first poll is answered by the reader, without a task of its
    /// own; a call that must wait gets one, and the calls after it are not held up by it.
    #[tokio::test]
    async fn a_call_done_in_its_first_poll_is_answered_without_a_task_and_a_waiting_one_gets_its_own() {
        let release = Arc::new(tokio::sync::Notify::new());
        let waits = release.clone();
        let inbound = futures::stream::iter(vec![Ok::<_, Status>(vec![1u32, 2, 3]), Ok(vec![4])]);
        let (_stop, shutdown) = watch::channel(false);
        let mut rx = serve_calls(
            inbound,
            shutdown,
            8,
            |m: Vec<u32>| m,
            move |call: u32, _received| {
                let waits = waits.clone();
                async move {
                    if call == 2 {
                        waits.notified().await;
                    }
                    (call, tokio::task::try_id())
                }
            },
        );
        // The reader runs in a task of its own; let it read both messages.
        let mut done = Vec::new();
        for _ in 0..100 {
            tokio::task::yield_now().await;
            while let Ok(Ok(((call, task), _permit))) = rx.try_recv() {
                done.push((call, task));
            }
            if done.len() == 3 {
                break;
            }
        }
        let calls: Vec<u32> = done.iter().map(|(c, _)| *c).collect();
        assert_eq!(calls, [1, 3, 4], "the waiting call held up the ones after it, or one is missing");
        let reader = done[0].1.expect("served inside a task");
        assert!(done.iter().all(|(_, t)| *t == Some(reader)), "a call done at once got a task of its own: {done:?}");
        release.notify_one();
        let ((call, task), _permit) = rx.recv().await.expect("the waiting call's result").expect("no status");
        assert_eq!(call, 2);
        assert_ne!(task, Some(reader), "the waiting call ran in the reader's task");
        assert!(rx.recv().await.is_none(), "the results end after the last call once the input ends");
    }
}
