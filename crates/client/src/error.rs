use thiserror::Error;
use tonic::{Code, Status};

/// What can go wrong with a client operation.
#[derive(Debug, Clone, Error)]
pub enum Error {
    /// The request is outside the limits; the message names the problem. Never retried.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A conditional write's precondition did not hold.
    #[error("condition failed: current version is {current_version}")]
    ConditionFailed {
        /// The key's version when the write was applied.
        current_version: u64,
    },
    /// A conditional write was based on a version older than an invalidation fence.
    #[error("fenced: the key was invalidated at {fence}, after the version the write was based on")]
    Fenced {
        /// The invalidation's log index.
        fence: u64,
    },
    /// A retried write whose original result is no longer remembered; it may or may not have
    /// applied.
    #[error("duplicate write too old to answer; it may or may not have applied")]
    DuplicateTooOld,
    /// No leader (or no replica fresh enough) answered within the deadline.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed. The operation may or may not have taken effect.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The node refused for lack of resources (memory, queues).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// Anything else the server said.
    #[error("server error {code:?}: {message}")]
    Server {
        /// gRPC code.
        code: Code,
        /// Server message.
        message: String,
    },
    /// The client was misconfigured (bad endpoint).
    #[error("config: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// Whether the operation certainly had no effect (false when it may have applied).
    pub fn is_definite(&self) -> bool {
        !matches!(self, Error::DeadlineExceeded(_) | Error::Unavailable(_) | Error::DuplicateTooOld)
    }

    /// The leader hint a `NOT_LEADER` status carries: (node id, address).
    pub(crate) fn leader_hint(status: &Status) -> Option<(u64, String)> {
        let md = status.metadata();
        let id = md.get("x-raftcache-leader")?.to_str().ok()?.parse().ok()?;
        let addr = md.get("x-raftcache-leader-addr").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Some((id, addr))
    }
}

fn md_u64(status: &Status, key: &str) -> u64 {
    status.metadata().get(key).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let kind = status.metadata().get("x-raftcache-error").and_then(|v| v.to_str().ok()).unwrap_or("");
        let msg = status.message().to_owned();
        match (status.code(), kind) {
            (_, "fenced") => Error::Fenced { fence: md_u64(&status, "x-raftcache-version") },
            (_, "condition_failed") => {
                Error::ConditionFailed { current_version: md_u64(&status, "x-raftcache-version") }
            }
            (_, "duplicate_too_old") => Error::DuplicateTooOld,
            (Code::InvalidArgument, _) => Error::InvalidArgument(msg),
            (Code::Unavailable, _) => Error::Unavailable(msg),
            (Code::DeadlineExceeded, _) => Error::DeadlineExceeded(msg),
            (Code::ResourceExhausted, _) => Error::ResourceExhausted(msg),
            (Code::Cancelled, _) | (Code::Unknown, _) => Error::Unavailable(format!("{:?}: {msg}", status.code())),
            (code, _) => Error::Server { code, message: msg },
        }
    }
}

/// Result with the client [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
