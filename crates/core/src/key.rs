use std::fmt;

use bytes::Bytes;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::limits::{MAX_KEY_BYTES, MAX_NAMESPACE_BYTES, MAX_TTL_MS};

/// A validated namespace: 1..=128 bytes of `[A-Za-z0-9._:-]`.
///
/// Deserializing validates too, so a corrupt snapshot cannot smuggle in a namespace that
/// [`Namespace::new`] would refuse.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `ns` against the namespace limits.
    pub fn new(ns: &str) -> Result<Self> {
        if ns.is_empty() {
            return Err(Error::InvalidArgument("namespace must not be empty".into()));
        }
        if ns.len() > MAX_NAMESPACE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "namespace is {} bytes; the limit is {MAX_NAMESPACE_BYTES} bytes",
                ns.len()
            )));
        }
        if let Some(c) = ns.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))) {
            return Err(Error::InvalidArgument(format!(
                "namespace {ns:?} contains {c:?}; allowed characters are [A-Za-z0-9._:-]"
            )));
        }
        Ok(Self(ns.to_owned()))
    }

    /// The namespace as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated cache key: a namespace and 1..=4096 bytes of opaque key.
///
/// Deserializing validates both parts (see [`Namespace`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawCacheKey")]
pub struct CacheKey {
    /// The namespace the key lives in.
    pub ns: Namespace,
    /// The key bytes within the namespace.
    #[serde(with = "crate::serde_bytes")]
    pub key: Bytes,
}

/// The unvalidated shape of a [`CacheKey`] on the wire; serde converts it with `TryFrom`.
#[derive(Deserialize)]
struct RawCacheKey {
    ns: Namespace,
    #[serde(with = "crate::serde_bytes")]
    key: Bytes,
}

impl TryFrom<RawCacheKey> for CacheKey {
    type Error = Error;

    fn try_from(raw: RawCacheKey) -> Result<Self> {
        CacheKey::new(raw.ns.as_str(), raw.key)
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct NamespaceVisitor;

        impl Visitor<'_> for NamespaceVisitor {
            type Value = Namespace;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a namespace string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Namespace, E> {
                Namespace::new(v).map_err(E::custom)
            }
        }

        // `deserialize_str` rather than `deserialize_string`: a borrowing decoder then checks the
        // length prefix against the input before allocating anything for it.
        deserializer.deserialize_str(NamespaceVisitor)
    }
}

impl CacheKey {
    /// A copy that owns exactly its bytes. A key decoded from a request may be a slice of the
    /// whole receive buffer; stored as is, it would keep that buffer alive as long as the key.
    pub fn compact(&self) -> Self {
        Self { ns: self.ns.clone(), key: Bytes::copy_from_slice(&self.key) }
    }

    /// Validates both parts.
    pub fn new(ns: &str, key: impl Into<Bytes>) -> Result<Self> {
        let ns = Namespace::new(ns)?;
        let key = key.into();
        if key.is_empty() {
            return Err(Error::InvalidArgument("key must not be empty".into()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::InvalidArgument(format!(
                "key is {} bytes; the limit is {MAX_KEY_BYTES} bytes",
                key.len()
            )));
        }
        Ok(Self { ns, key })
    }

    /// The bytes the hash ring hashes: `namespace \0 key`.
    pub fn ring_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.ns.0.len() + 1 + self.key.len());
        b.extend_from_slice(self.ns.0.as_bytes());
        b.push(0);
        b.extend_from_slice(&self.key);
        b
    }

    /// Approximate memory this key occupies, for accounting.
    pub fn size_bytes(&self) -> usize {
        self.ns.0.len() + self.key.len()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ns.0, String::from_utf8_lossy(&self.key))
    }
}

/// Checks a value's size against `max_bytes`.
pub fn validate_value(len: usize, max_bytes: usize) -> Result<()> {
    if len > max_bytes {
        return Err(Error::InvalidArgument(format!("value is {len} bytes; the limit is {max_bytes} bytes")));
    }
    Ok(())
}

/// Checks a TTL: more than zero and at most one year.
pub fn validate_ttl_ms(ttl_ms: u64) -> Result<()> {
    if ttl_ms == 0 {
        return Err(Error::InvalidArgument("ttl must be greater than zero".into()));
    }
    if ttl_ms > MAX_TTL_MS {
        return Err(Error::InvalidArgument(format!("ttl is {ttl_ms} ms; the limit is {MAX_TTL_MS} ms (1 year)")));
    }
    Ok(())
}
