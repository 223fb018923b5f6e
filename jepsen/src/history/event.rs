use serde::{Deserialize, Serialize};

/// Whether an event starts an operation or tells how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client is about to send the operation.
    Invoke,
    /// It took effect; the event carries what it returned.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown: it may have taken effect (now or later) or not.
    Info,
}

/// The operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// Get; `value` on `ok` is what it saw (`null`: absent).
    Read,
    /// Unconditional set of `value`.
    Write,
    /// Set conditioned on the key's version: `value` is `[expected_version, new_value]`;
    /// `result` on `ok` says whether the condition held.
    Cas,
    /// Unconditional delete.
    Delete,
    /// Invalidate (delete and fence); `version` on `ok` is the fence.
    Invalidate,
}

/// Which workload an event belongs to; each uses its own keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Linearizable reads, writes, compare-and-set and deletes.
    Register,
    /// Slow conditional loaders racing invalidators.
    Fence,
    /// Session and eventual reads through followers.
    Session,
}

/// The consistency level a read asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Leader after ReadIndex (strict).
    Linearizable,
    /// Follower after the leader's read index (strict).
    FollowerLinearizable,
    /// Replica that applied the client's session token.
    Session,
    /// Replica that heard from a leader within `max_staleness_ms`.
    Eventual,
}

impl Consistency {
    /// Whether reads at this level must be linearizable.
    pub fn is_strict(self) -> bool {
        matches!(self, Consistency::Linearizable | Consistency::FollowerLinearizable)
    }
}

/// An operation's argument or result: an integer, or the `[expected_version, new_value]` pair
/// of a cas. Absent values are JSON `null` (`Option::None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A value or a version.
    Int(u64),
    /// `[expected_version, new_value]` of a cas.
    Pair(u64, u64),
}

impl Value {
    /// The integer, if this is one.
    pub fn int(self) -> Option<u64> {
        match self {
            Value::Int(v) => Some(v),
            Value::Pair(..) => None,
        }
    }

    /// The pair, if this is one.
    pub fn pair(self) -> Option<(u64, u64)> {
        match self {
            Value::Pair(a, b) => Some((a, b)),
            Value::Int(_) => None,
        }
    }
}

/// One line of `history.jsonl`.
///
/// The first seven fields are the common Jepsen-style core; the rest are optional extensions
/// the checkers use (omitted from the JSON when absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The logical client. One operation at a time per process.
    pub process: u64,
    /// invoke, ok, fail or info.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation.
    pub f: F,
    /// The key (all keys live in the namespace `jepsen`).
    pub key: String,
    /// Argument on invoke; what a read saw on ok (`null` when absent).
    #[serde(default)]
    pub value: Option<Value>,
    /// cas on ok: whether the condition held and the write happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<bool>,
    /// Nanoseconds since the run started (monotonic).
    pub time: u64,
    /// The workload the key belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Reads: the level asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// Eventual reads: the staleness bound asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness_ms: Option<u64>,
    /// On ok: the version the operation produced (write, cas, delete; an invalidation's fence) or
    /// saw (read; for an absent key its fence or 0). On a cas whose condition failed: the key's
    /// current version as the server reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// On ok: the Raft group of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
    /// On ok: the node that served the operation. On invoke of a direct read: the node asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// On fail or info: the error; on a cas with `result: false`: `condition_failed` or `fenced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// A bare event; the builder methods below fill in the rest.
    pub fn new(process: u64, kind: EventType, f: F, key: impl Into<String>, value: Option<Value>, time: u64) -> Self {
        Self {
            process,
            kind,
            f,
            key: key.into(),
            value,
            result: None,
            time,
            workload: None,
            consistency: None,
            max_staleness_ms: None,
            version: None,
            group: None,
            node: None,
            error: None,
        }
    }

    /// Whether this event ends an operation.
    pub fn is_completion(&self) -> bool {
        self.kind != EventType::Invoke
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_in_the_documented_shape() {
        let mut e = Event::new(3, EventType::Ok, F::Cas, "k1", Some(Value::Pair(7, 12)), 1500);
        e.result = Some(true);
        e.version = Some(19);
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"process":3,"type":"ok","f":"cas","key":"k1","value":[7,12],"result":true,"time":1500,"version":19}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        let read: Event =
            serde_json::from_str(r#"{"process":1,"type":"ok","f":"read","key":"k","value":null,"time":5}"#).unwrap();
        assert_eq!(read.value, None);
        let read: Event =
            serde_json::from_str(r#"{"process":1,"type":"ok","f":"read","key":"k","value":4,"time":5}"#).unwrap();
        assert_eq!(read.value, Some(Value::Int(4)));
    }
}
