use thiserror::Error;

/// Errors of the pure cache layer: input validation and snapshot decoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The client sent something outside the limits; the message names the limit.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A snapshot could not be decoded. This is corruption, never a client error.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

impl Error {
    /// Whether retrying the same request could succeed.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Result with the core [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
