//! One `CacheService.Pipeline` stream per node: every call of this client to that node travels
//! over it, and calls that are ready together share one message.
//!
//! A unary gRPC call costs an HTTP/2 stream (headers, trailers, flow-control state) on both
//! ends; for small requests that is most of the work. Over the pipeline a call costs a map
//! entry and a few bytes of framing. Each call keeps the unary call's semantics: its own
//! deadline, its own result, the same status (metadata included) when it fails.
//!
//! When the stream breaks, every call in flight fails with `UNAVAILABLE` and no
//! `x-raftcache-error` metadata, the mark of a transport failure that the retry logic acts on; the
//! next call opens a new stream.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use raftcache_core::waiting::{Abandoned, Waiting};
use raftcache_proto::cache::cache_service_client::CacheServiceClient;
use raftcache_proto::cache::pipeline_call::Op;
use raftcache_proto::cache::pipeline_result::Outcome;
use raftcache_proto::cache::{PipelineCall, PipelineFailure, PipelineRequest, PipelineResult};
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::Status;

/// Calls that are ready together share a message while it stays under this size; a larger call
/// goes alone (the node accepts one value of its limit plus 64 KiB per message).
const REQUEST_BATCH_BYTES: usize = 32 * 1024;
/// Messages queued for the stream before the driver waits for HTTP/2 to take them (calls wait in
/// [`Waiting`] meanwhile).
const OUTBOUND_QUEUE: usize = 16;

type Reply = oneshot::Sender<Result<Outcome, Status>>;

struct Pending {
    op: Op,
    timeout: Duration,
    reply: Reply,
}

impl Abandoned for Pending {
    /// True once its caller gave up (deadline): it is then dropped unsent.
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

/// The pipeline to one node. Cheap to clone; dropping the last clone closes the stream once the
/// calls in flight are answered.
#[derive(Clone)]
pub(crate) struct Pipe {
    tx: mpsc::UnboundedSender<Pending>,
    addr: std::sync::Arc<str>,
}

impl Pipe {
    /// A pipe to `addr` over `client`'s connection. The stream opens with the first call.
    pub(crate) fn open(client: CacheServiceClient<Channel>, addr: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive(client, rx, addr.to_owned()));
        Self { tx, addr: addr.into() }
    }

    /// Whether the stream has ended (a new pipe is needed).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends `op` and waits for its outcome for at most `timeout` (also the call's deadline on
    /// the node).
    pub(crate) async fn call(&self, op: Op, timeout: Duration) -> Result<Outcome, Status> {
        let (reply, rx) = oneshot::channel();
        let lost = || Status::unavailable(format!("connection to {} lost", self.addr));
        self.tx.send(Pending { op, timeout, reply }).map_err(|_| lost())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(lost()),
            // What a unary call's client-side deadline gives.
            Err(_) => Err(Status::cancelled("Timeout expired")),
        }
    }
}

/// Runs one stream: sends queued calls, hands results to their callers, fails what is in flight
/// when the stream ends.
///
/// It never stops taking calls from the handles: while the node does not read (paused, or cut
/// off with full windows) or the stream is still opening, calls wait in [`Waiting`], which drops
/// those whose callers gave up. So a stalled node costs the live calls' payloads, not those of
/// every call made (and abandoned) meanwhile.
async fn drive(mut client: CacheServiceClient<Channel>, mut calls: mpsc::UnboundedReceiver<Pending>, addr: String) {
    let Some(first) = calls.recv().await else { return };
    let mut waiting = Waiting::default();
    waiting.push(first);
    let (out_tx, out_rx) = mpsc::channel::<PipelineRequest>(OUTBOUND_QUEUE);
    let mut flight = InFlight::default();
    // The first message is queued before the call opens, so it leaves with the headers.
    let batch = flight.take_batch(&mut waiting);
    if !batch.is_empty() && out_tx.try_send(PipelineRequest { calls: batch }).is_err() {
        return;
    }
    let open = client.pipeline(tokio_stream::wrappers::ReceiverStream::new(out_rx));
    tokio::pin!(open);
    let mut inbound = loop {
        tokio::select! {
            opened = &mut open => match opened {
                Ok(r) => break r.into_inner(),
                Err(s) => {
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
                        permit.send(PipelineRequest { calls: batch });
                    }
                }
                Err(_) => break Status::unavailable(format!("pipeline to {addr} closed")),
            },
            call = calls.recv() => match call {
                Some(c) => {
                    // Everything queued with it goes into the same message.
                    waiting.push(c);
                    // While other calls are in flight, their callers (answered by one message)
                    // are likely making their next calls now: a turn of the scheduler lets those
                    // join this message instead of each following in one of its own.
                    if !flight.replies.is_empty() {
                        tokio::task::yield_now().await;
                    }
                    while let Ok(c) = calls.try_recv() {
                        waiting.push(c);
                    }
                    // With room on the stream (the usual case) they leave now, not a turn later.
                    if let Ok(permit) = out_tx.try_reserve() {
                        let batch = flight.take_batch(&mut waiting);
                        if !batch.is_empty() {
                            permit.send(PipelineRequest { calls: batch });
                        }
                    }
                }
                // Every handle is gone: nobody waits for an answer; dropping the stream ends it.
                None => return,
            },
            msg = inbound.message() => match msg {
                Ok(Some(msg)) => flight.answer(msg.results),
                Ok(None) => break Status::unavailable(format!("{addr} ended the pipeline")),
                Err(s) => break Status::unavailable(format!("pipeline to {addr}: {}", s.message())),
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

/// The calls sent and not yet answered.
#[derive(Default)]
struct InFlight {
    next_id: u64,
    replies: HashMap<u64, Reply>,
    /// `replies.len()` after the last sweep of abandoned calls.
    swept_at: usize,
}

impl InFlight {
    /// The next message's calls from the front of `waiting`, while it stays under
    /// [`REQUEST_BATCH_BYTES`] (a larger call goes alone); calls whose callers gave up are
    /// dropped.
    fn take_batch(&mut self, waiting: &mut Waiting<Pending>) -> Vec<PipelineCall> {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(p) = waiting.pop() {
            let call = PipelineCall {
                id: self.next_id + 1,
                timeout_ms: p.timeout.as_millis().clamp(1, u64::MAX as u128) as u64,
                op: Some(p.op),
            };
            let len = call.encoded_len();
            if !batch.is_empty() && size + len > REQUEST_BATCH_BYTES {
                waiting.unpop(Pending { op: call.op.expect("set above"), timeout: p.timeout, reply: p.reply });
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

    fn answer(&mut self, results: Vec<PipelineResult>) {
        for r in results {
            if let Some(reply) = self.replies.remove(&r.id) {
                let _ = reply.send(outcome(r));
            }
        }
    }

    /// Forgets calls whose callers gave up (deadline passed), so a node that never answers does
    /// not make the map grow without bound. Amortized: runs when the map doubled since last time.
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

fn outcome(r: PipelineResult) -> Result<Outcome, Status> {
    match r.outcome {
        Some(Outcome::Failure(f)) => Err(status_of(f)),
        Some(o) => Ok(o),
        None => Err(Status::internal(format!("pipeline result {} carries no outcome", r.id))),
    }
}

/// The status a unary call would have returned.
fn status_of(f: PipelineFailure) -> Status {
    let mut md = MetadataMap::new();
    for (k, v) in f.metadata {
        if let (Ok(k), Ok(v)) = (k.parse::<tonic::metadata::AsciiMetadataKey>(), MetadataValue::try_from(v.as_str())) {
            md.insert(k, v);
        }
    }
    Status::with_metadata(tonic::Code::from(f.code), f.message, md)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use raftcache_proto::cache::cache_service_server::{CacheService, CacheServiceServer};
    use raftcache_proto::cache::{
        DeleteRequest, DeleteResponse, GetRequest, GetResponse, InvalidateRequest, InvalidateResponse,
        PipelineResponse, SetRequest, SetResponse, TopologyRequest, TopologyResponse,
    };
    use tonic::{Request, Response, Streaming};

    use super::*;

    type ResultStream = Pin<Box<dyn futures::Stream<Item = Result<PipelineResponse, Status>> + Send>>;

    /// A node that opens the pipeline and never reads it (a paused process).
    #[derive(Clone, Default)]
    struct Stalled {
        streams: Arc<Mutex<Vec<Streaming<PipelineRequest>>>>,
    }

    #[tonic::async_trait]
    impl CacheService for Stalled {
        type PipelineStream = ResultStream;

        async fn pipeline(&self, req: Request<Streaming<PipelineRequest>>) -> Result<Response<ResultStream>, Status> {
            self.streams.lock().unwrap().push(req.into_inner());
            Ok(Response::new(Box::pin(futures::stream::pending())))
        }

        async fn get(&self, _req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn set(&self, _req: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn delete(&self, _req: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn invalidate(&self, _req: Request<InvalidateRequest>) -> Result<Response<InvalidateResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn topology(&self, _req: Request<TopologyRequest>) -> Result<Response<TopologyResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    /// A value that counts its drops.
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
    async fn a_node_that_stops_reading_holds_only_the_live_calls_payloads() {
        const CALLS: usize = 2_000;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CacheServiceServer::new(Stalled::default()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
        let pipe = Pipe::open(CacheServiceClient::new(channel), &addr);
        let dropped = Arc::new(AtomicUsize::new(0));
        for i in 0..CALLS {
            let value = bytes::Bytes::from_owner(Counted(vec![0; 64 * 1024], dropped.clone()));
            let op = Op::Set(SetRequest {
                namespace: "ns".into(),
                key: format!("k{i}").into(),
                value,
                ..Default::default()
            });
            let answer = pipe.call(op, Duration::from_millis(1)).await;
            assert!(answer.is_err(), "the stalled node answered");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = CALLS - dropped.load(Ordering::SeqCst);
        // What HTTP/2 and the outbound queue took before the node's windows filled, plus the
        // calls waiting since the last sweep: a few hundred, not all 2,000 (128 MiB).
        assert!(held < 600, "{held} of {CALLS} abandoned calls still hold their payload");
    }
}
