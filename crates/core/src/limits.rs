//! Limits on client input (DESIGN §9). Every violation is an [`crate::Error::InvalidArgument`]
//! that names the limit.

/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;
/// Longest key, in bytes. Keys are at least one byte.
pub const MAX_KEY_BYTES: usize = 4096;
/// Default largest value, in bytes (8 MiB); a node may be configured with another.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;
/// Longest TTL: one year, in milliseconds.
pub const MAX_TTL_MS: u64 = 365 * 24 * 3600 * 1000;
/// How long an invalidation fence is retained after the invalidation, by default.
pub const DEFAULT_FENCE_RETENTION_MS: u64 = 60_000;
/// How many clients' recent write results a group remembers for de-duplication.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// How many recent results are remembered per client.
pub const SESSION_WINDOW: usize = 128;
/// A client's de-duplication record is dropped after this much leader time without a write.
/// Retries arrive within seconds; a client silent for this long is gone or has moved on.
pub const SESSION_IDLE_MS: u64 = 10 * 60 * 1000;
