//! bincode 2 (serde) encoding used for log entries, votes, snapshots and Raft RPC payloads.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes `v` with bincode 2's standard configuration.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail.
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("bincode encoding into a Vec")
}

/// Decodes a value produced by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    let (v, _) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
    Ok(v)
}
