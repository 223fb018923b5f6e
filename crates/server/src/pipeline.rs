//! `CacheService.Pipeline`: many calls over one bidirectional stream.
//!
//! Each call is served exactly as its unary RPC would be (same handler, same deadline and
//! forwarding rules), concurrently with the stream's other calls, and answered as soon as it
//! completes. Results that complete together share one response message. A stream has at most
//! [`MAX_IN_FLIGHT`] calls in service or with results not yet taken by the client: beyond that
//! the node stops reading the stream, and HTTP/2 flow control holds the client back, so no
//! client can make a node queue unbounded work or results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use prost::Message;
use raftcache_proto::cache::pipeline_call::Op;
use raftcache_proto::cache::pipeline_result::Outcome;
use raftcache_proto::cache::{PipelineCall, PipelineFailure, PipelineRequest, PipelineResponse, PipelineResult};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tonic::{Status, Streaming};

use crate::cache_service::CacheServiceImpl;
use crate::router::{DEFAULT_DEADLINE, MAX_DEADLINE};

/// Calls of one stream in service at once.
pub const MAX_IN_FLIGHT: usize = 4096;
/// Results that completed together are sent in one message while it stays under this size (a
/// single larger result goes alone).
const RESPONSE_BATCH_BYTES: usize = 64 * 1024;

/// The response stream of one pipeline.
pub type ResultStream = std::pin::Pin<Box<dyn Stream<Item = Result<PipelineResponse, Status>> + Send>>;

/// Starts serving the calls of `inbound` and returns the stream of their results.
///
/// Once `shutdown` becomes true the stream takes no more calls and ends after answering the
/// ones it took; the client opens a new stream elsewhere.
pub fn serve(
    service: CacheServiceImpl,
    mut inbound: Streaming<PipelineRequest>,
    mut shutdown: watch::Receiver<bool>,
) -> ResultStream {
    let (tx, rx) = mpsc::unbounded_channel::<Item>();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                m = inbound.message() => m,
                Ok(_) = shutdown.wait_for(|stop| *stop) => break,
            };
            let msg = match next {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(s) => {
                    // A malformed or oversized message ends the stream with its status, after the
                    // results that completed before it.
                    let _ = tx.send(Err(s));
                    break;
                }
            };
            for call in msg.calls {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (service, tx) = (service.clone(), tx.clone());
                tokio::spawn(async move {
                    let result = serve_call(&service, call).await;
                    // The permit goes with the result: it is returned once the result is handed
                    // to the response stream.
                    let _ = tx.send(Ok((result, permit)));
                });
            }
        }
    });
    Box::pin(results(Outbound { rx, held: None, ended: false }))
}

/// A completed call and its in-flight permit, or the status that ends the stream.
type Item = Result<(PipelineResult, OwnedSemaphorePermit), Status>;

struct Outbound {
    rx: mpsc::UnboundedReceiver<Item>,
    /// What did not fit into the previous message.
    held: Option<Item>,
    ended: bool,
}

/// The results in messages: waits for one, then adds every result already completed while the
/// message stays under [`RESPONSE_BATCH_BYTES`]. Ends when every call was answered and the client
/// closed its side, or with the status that broke the inbound stream.
fn results(out: Outbound) -> impl Stream<Item = Result<PipelineResponse, Status>> + Send {
    futures::stream::unfold(out, |mut o| async move {
        if o.ended {
            return None;
        }
        let first = match o.held.take() {
            Some(r) => r,
            None => o.rx.recv().await?,
        };
        let first = match first {
            Ok((r, _permit)) => r,
            Err(s) => {
                o.ended = true;
                return Some((Err(s), o));
            }
        };
        let mut size = first.encoded_len();
        let mut batch = vec![first];
        while let Ok(next) = o.rx.try_recv() {
            match next {
                Ok((r, _permit)) if size + r.encoded_len() <= RESPONSE_BATCH_BYTES => {
                    size += r.encoded_len();
                    batch.push(r);
                }
                other => {
                    o.held = Some(other);
                    break;
                }
            }
        }
        Some((Ok(PipelineResponse { results: batch }), o))
    })
}

async fn serve_call(service: &CacheServiceImpl, call: PipelineCall) -> PipelineResult {
    let deadline = Instant::now() + call_timeout(call.timeout_ms);
    let outcome = match call.op {
        Some(Op::Get(r)) => service.serve_get(r, false, deadline).await.map(|r| Outcome::Get(r.into_inner())),
        Some(Op::Set(r)) => service.serve_set(r, false, deadline).await.map(|r| Outcome::Set(r.into_inner())),
        Some(Op::Delete(r)) => service.serve_delete(r, false, deadline).await.map(|r| Outcome::Delete(r.into_inner())),
        Some(Op::Invalidate(r)) => {
            service.serve_invalidate(r, false, deadline).await.map(|r| Outcome::Invalidate(r.into_inner()))
        }
        None => Err(Status::invalid_argument(format!(
            "pipeline call {} names no operation (expected get, set, delete or invalidate)",
            call.id
        ))),
    };
    PipelineResult { id: call.id, outcome: Some(outcome.unwrap_or_else(|s| Outcome::Failure(failure(&s)))) }
}

/// A call's time budget: its `timeout_ms`, as a unary call's `grpc-timeout` is read.
fn call_timeout(timeout_ms: u64) -> Duration {
    if timeout_ms == 0 {
        DEFAULT_DEADLINE
    } else {
        Duration::from_millis(timeout_ms).min(MAX_DEADLINE)
    }
}

/// `s` as a result: code, message and the `x-raftcache-*` metadata clients act on.
fn failure(s: &Status) -> PipelineFailure {
    let metadata = s
        .metadata()
        .iter()
        .filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) if k.as_str().starts_with("x-raftcache-") => {
                Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
            }
            _ => None,
        })
        .collect();
    PipelineFailure { code: s.code() as i32, message: s.message().to_owned(), metadata }
}
