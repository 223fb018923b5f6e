use thiserror::Error;

/// Errors of the Raft layer that callers act on.
#[derive(Debug, Error)]
pub enum Error {
    /// The local store failed. The node must stop: this is never a client error.
    #[error("storage: {0}")]
    Storage(String),
    /// A configuration value is not acceptable.
    #[error("config: {0}")]
    Config(String),
}

/// Result with the raft [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
