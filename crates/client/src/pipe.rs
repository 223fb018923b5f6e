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
/// Messages queued for the stream before the driver waits for HTTP/2 to take them.
const OUTBOUND_QUEUE: usize = 64;

type Reply = oneshot::Sender<Result<Outcome, Status>>;

struct Pending {
    op: Op,
    timeout: Duration,
    reply: Reply,
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
async fn drive(mut client: CacheServiceClient<Channel>, mut calls: mpsc::UnboundedReceiver<Pending>, addr: String) {
    let Some(first) = calls.recv().await else { return };
    let (out_tx, out_rx) = mpsc::channel::<PipelineRequest>(OUTBOUND_QUEUE);
    let mut flight = InFlight::default();
    let mut held = Some(first);
    if !flight.send_batch(&mut held, &mut calls, &out_tx).await {
        return;
    }
    let mut inbound = match client.pipeline(tokio_stream::wrappers::ReceiverStream::new(out_rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            flight.fail_all(&s);
            return;
        }
    };
    let ended = loop {
        tokio::select! {
            call = calls.recv(), if held.is_none() => match call {
                Some(c) => {
                    held = Some(c);
                    if !flight.send_batch(&mut held, &mut calls, &out_tx).await {
                        break Status::unavailable(format!("pipeline to {addr} closed"));
                    }
                }
                // Every handle is gone: close our side; the node ends the stream after answering.
                None => {
                    drop(out_tx);
                    while let Ok(Some(msg)) = inbound.message().await {
                        flight.answer(msg.results);
                    }
                    break Status::unavailable(format!("pipeline to {addr} closed"));
                }
            },
            msg = inbound.message() => match msg {
                Ok(Some(msg)) => flight.answer(msg.results),
                Ok(None) => break Status::unavailable(format!("{addr} ended the pipeline")),
                Err(s) => break Status::unavailable(format!("pipeline to {addr}: {}", s.message())),
            },
        }
        // A call that did not fit into the last message goes first in the next.
        if held.is_some() && !flight.send_batch(&mut held, &mut calls, &out_tx).await {
            break Status::unavailable(format!("pipeline to {addr} closed"));
        }
    };
    calls.close();
    flight.fail_all(&ended);
    // Calls queued after the stream ended: their senders drop here, their callers see `lost`.
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
    /// Sends `held` and every call already queued, while the message stays under
    /// [`REQUEST_BATCH_BYTES`]; a call that does not fit stays in `held`. False if the stream is
    /// gone.
    async fn send_batch(
        &mut self,
        held: &mut Option<Pending>,
        calls: &mut mpsc::UnboundedReceiver<Pending>,
        out: &mpsc::Sender<PipelineRequest>,
    ) -> bool {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(p) = held.take().or_else(|| calls.try_recv().ok()) {
            if p.reply.is_closed() {
                continue; // its caller gave up before it was sent
            }
            self.next_id += 1;
            let call = PipelineCall {
                id: self.next_id,
                timeout_ms: p.timeout.as_millis().clamp(1, u64::MAX as u128) as u64,
                op: Some(p.op),
            };
            let len = call.encoded_len();
            if !batch.is_empty() && size + len > REQUEST_BATCH_BYTES {
                self.next_id -= 1;
                *held = Some(Pending { op: call.op.expect("set above"), timeout: p.timeout, reply: p.reply });
                break;
            }
            size += len;
            self.replies.insert(call.id, p.reply);
            batch.push(call);
        }
        self.sweep();
        batch.is_empty() || out.send(PipelineRequest { calls: batch }).await.is_ok()
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
