//! The one place where node errors become gRPC statuses.
//!
//! Every status carries `x-raftcache-error` (a stable, machine-readable kind) and the topology
//! epoch; `NOT_LEADER` adds the leader's id and address, `FENCED`/`CONDITION_FAILED` add the
//! version that decided it.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The request breaks a limit or is malformed; the message names the problem.
    #[error("{0}")]
    InvalidArgument(String),
    /// This node cannot serve it and will not forward it; the leader if known.
    #[error("not the leader of group {group}")]
    NotLeader {
        /// The group.
        group: u64,
        /// Leader id and address.
        leader: Option<(u64, String)>,
    },
    /// The precondition did not hold.
    #[error("condition failed: current version is {current_version}")]
    ConditionFailed {
        /// Version at apply time.
        current_version: u64,
    },
    /// The expected version predates an invalidation.
    #[error("fenced: key was invalidated at version {fence}, after the version the write expected")]
    Fenced {
        /// The fence.
        fence: u64,
    },
    /// A retried write whose result is forgotten.
    #[error("duplicate write (client_id, seq) is older than the remembered window; it may or may not have applied")]
    DuplicateTooOld,
    /// No leader, no quorum, or a replica not fresh enough.
    #[error("{0}")]
    Unavailable(String),
    /// The request's deadline passed; the outcome of a write is unknown.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or an impossible state; the message says what.
    #[error("internal: {0}")]
    Internal(String),
}

impl ServeError {
    fn kind(&self) -> &'static str {
        match self {
            ServeError::InvalidArgument(_) => "invalid_argument",
            ServeError::NotLeader { .. } => "not_leader",
            ServeError::ConditionFailed { .. } => "condition_failed",
            ServeError::Fenced { .. } => "fenced",
            ServeError::DuplicateTooOld => "duplicate_too_old",
            ServeError::Unavailable(_) => "unavailable",
            ServeError::DeadlineExceeded(_) => "deadline_exceeded",
            ServeError::Internal(_) => "internal",
        }
    }

    fn code(&self) -> Code {
        match self {
            ServeError::InvalidArgument(_) => Code::InvalidArgument,
            ServeError::NotLeader { .. } | ServeError::Unavailable(_) => Code::Unavailable,
            ServeError::ConditionFailed { .. } | ServeError::Fenced { .. } => Code::FailedPrecondition,
            ServeError::DuplicateTooOld => Code::Aborted,
            ServeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ServeError::Internal(_) => Code::Internal,
        }
    }
}

fn put(status: &mut Status, key: &'static str, value: &str) {
    if let Ok(v) = MetadataValue::try_from(value) {
        status.metadata_mut().insert(key, v);
    }
}

impl From<ServeError> for Status {
    fn from(e: ServeError) -> Self {
        let mut status = Status::new(e.code(), e.to_string());
        put(&mut status, "x-raftcache-error", e.kind());
        match &e {
            ServeError::NotLeader { leader: Some((id, addr)), .. } => {
                put(&mut status, "x-raftcache-leader", &id.to_string());
                put(&mut status, "x-raftcache-leader-addr", addr);
            }
            ServeError::ConditionFailed { current_version: v } | ServeError::Fenced { fence: v } => {
                put(&mut status, "x-raftcache-version", &v.to_string());
            }
            _ => {}
        }
        status
    }
}

impl From<raftcache_core::Error> for ServeError {
    fn from(e: raftcache_core::Error) -> Self {
        match e {
            raftcache_core::Error::InvalidArgument(m) => ServeError::InvalidArgument(m),
            raftcache_core::Error::Corrupt(m) => ServeError::Internal(m),
        }
    }
}

impl From<raftcache_core::Rejection> for ServeError {
    fn from(r: raftcache_core::Rejection) -> Self {
        match r {
            raftcache_core::Rejection::ConditionFailed { current_version } => {
                ServeError::ConditionFailed { current_version }
            }
            raftcache_core::Rejection::Fenced { fence } => ServeError::Fenced { fence },
            raftcache_core::Rejection::DuplicateTooOld => ServeError::DuplicateTooOld,
        }
    }
}
