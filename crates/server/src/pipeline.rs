//! `CacheService.Pipeline`: many calls over one bidirectional stream.
//!
//! Each call is served exactly as its unary RPC would be (same handler, same deadline and
//! forwarding rules), concurrently with the stream's other calls, and answered as soon as it
//! completes. Results that complete together share one response message. A stream has at most
//! [`MAX_IN_FLIGHT`] calls in service or with results not yet taken by the client: beyond that
//! the node stops reading the stream, and HTTP/2 flow control holds the client back, so no
//! client can make a node queue unbounded work or results.

use std::time::{Duration, Instant};

use futures::Stream;
use raftcache_proto::cache::pipeline_call::Op;
use raftcache_proto::cache::pipeline_result::Outcome;
use raftcache_proto::cache::{PipelineCall, PipelineFailure, PipelineRequest, PipelineResponse, PipelineResult};
use tokio::sync::watch;
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
    inbound: Streaming<PipelineRequest>,
    shutdown: watch::Receiver<bool>,
) -> ResultStream {
    let rx = raftcache_raft::serve_calls(
        inbound,
        shutdown,
        MAX_IN_FLIGHT,
        |m: PipelineRequest| m.calls,
        move |call, _| {
            let service = service.clone();
            async move { serve_call(&service, call).await }
        },
    );
    // Results that completed together share a message; the permit goes back once its result
    // is in one.
    Box::pin(raftcache_raft::batched(rx, MAX_IN_FLIGHT, RESPONSE_BATCH_BYTES, |results| PipelineResponse { results }))
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
