//! Unit tests of apply: conditions, fences, TTL, de-duplication, snapshots.
use bytes::Bytes;

use super::*;
use crate::command::{BatchItem, ClientSeq};
use crate::limits::{SESSION_IDLE_MS, SESSION_WINDOW};

const RETENTION: u64 = 1_000;

fn state() -> CacheState {
    CacheState::new(StateConfig { fence_retention_ms: RETENTION, max_sessions: 4 })
}

fn key(k: &str) -> CacheKey {
    CacheKey::new("ns", Bytes::copy_from_slice(k.as_bytes())).unwrap()
}

fn req(now_ms: u64, cmd: Command) -> Request {
    Request { now_ms, client: None, cmd }
}

fn set(k: &str, v: &str, ttl_ms: Option<u64>, cond: Condition) -> Command {
    Command::Set { key: key(k), value: Bytes::copy_from_slice(v.as_bytes()), ttl_ms, cond }
}

fn found_version(s: &CacheState, k: &str, now: u64) -> Option<u64> {
    match s.get(&key(k), now) {
        ReadResult::Found(e) => Some(e.version),
        ReadResult::Missing { .. } => None,
    }
}

fn missing_version(s: &CacheState, k: &str, now: u64) -> Option<u64> {
    match s.get(&key(k), now) {
        ReadResult::Found(_) => None,
        ReadResult::Missing { version } => Some(version),
    }
}

#[test]
fn set_get_versions_are_log_indexes() {
    let mut s = state();
    assert_eq!(s.apply(1, &req(10, set("a", "1", None, Condition::None))), Response::Written { version: 1 });
    assert_eq!(s.apply(5, &req(20, set("a", "2", None, Condition::None))), Response::Written { version: 5 });
    let ReadResult::Found(e) = s.get(&key("a"), 0) else { panic!("a missing") };
    assert_eq!((e.value, e.version, e.expires_at_ms), (Bytes::from_static(b"2"), 5, None));
    assert_eq!(missing_version(&s, "b", 0), Some(0));
    assert_eq!((s.last_index(), s.now_ms(), s.len()), (5, 20, 1));
}

#[test]
fn time_never_runs_backwards() {
    let mut s = state();
    s.apply(1, &req(100, Command::Noop));
    s.apply(2, &req(50, set("a", "1", Some(10), Condition::None)));
    assert_eq!(s.now_ms(), 100);
    let ReadResult::Found(e) = s.get(&key("a"), 0) else { panic!("a missing") };
    assert_eq!(e.expires_at_ms, Some(110), "ttl counts from the monotonic now, not the stamp");
}

#[test]
fn conditions() {
    let mut s = state();
    assert_eq!(s.apply(1, &req(0, set("a", "1", None, Condition::IfAbsent))), Response::Written { version: 1 });
    assert_eq!(
        s.apply(2, &req(0, set("a", "2", None, Condition::IfAbsent))),
        Response::Rejected(Rejection::ConditionFailed { current_version: 1 })
    );
    assert_eq!(
        s.apply(3, &req(0, set("a", "3", None, Condition::IfVersion(7)))),
        Response::Rejected(Rejection::ConditionFailed { current_version: 1 })
    );
    assert_eq!(s.apply(4, &req(0, set("a", "4", None, Condition::IfVersion(1)))), Response::Written { version: 4 });
    assert_eq!(s.apply(5, &req(0, set("b", "1", None, Condition::IfVersion(0)))), Response::Written { version: 5 });
    assert_eq!(
        s.apply(6, &req(0, Command::Delete { key: key("a"), cond: Condition::IfVersion(1) })),
        Response::Rejected(Rejection::ConditionFailed { current_version: 4 })
    );
    assert_eq!(
        s.apply(7, &req(0, Command::Delete { key: key("a"), cond: Condition::IfVersion(4) })),
        Response::Deleted { version: 7, existed: true }
    );
    assert_eq!(
        s.apply(8, &req(0, Command::Delete { key: key("a"), cond: Condition::None })),
        Response::Deleted { version: 8, existed: false }
    );
    assert_eq!(found_version(&s, "a", 0), None);
    assert_eq!(found_version(&s, "b", 0), Some(5));
}

#[test]
fn invalidate_fences_stale_loaders_until_retention_elapses() {
    let mut s = state();
    s.apply(1, &req(1_000, set("a", "v1", None, Condition::None)));
    // A loader read version 1, the source changed, and the key was invalidated.
    assert_eq!(s.apply(2, &req(1_100, Command::Invalidate { key: key("a") })), Response::Invalidated { fence: 2 });
    assert_eq!(missing_version(&s, "a", 1_100), Some(2));
    assert_eq!(
        s.apply(3, &req(1_200, set("a", "stale", None, Condition::IfVersion(1)))),
        Response::Rejected(Rejection::Fenced { fence: 2 })
    );
    assert_eq!(
        s.apply(4, &req(1_200, set("a", "stale", None, Condition::IfVersion(0)))),
        Response::Rejected(Rejection::Fenced { fence: 2 })
    );
    assert_eq!(
        s.apply(5, &req(1_200, set("a", "x", None, Condition::IfAbsent))),
        Response::Written { version: 5 },
        "a fence does not stop writes that do not claim a version"
    );
    assert_eq!(
        s.apply(6, &req(1_200, Command::Delete { key: key("a"), cond: Condition::IfVersion(5) })),
        Response::Deleted { version: 6, existed: true }
    );
    // Absent again: the version is the fence, and a fill against it succeeds.
    assert_eq!(missing_version(&s, "a", 1_200), Some(2));
    assert_eq!(
        s.apply(7, &req(1_300, set("a", "fresh", None, Condition::IfVersion(2)))),
        Response::Written { version: 7 }
    );
    assert_eq!(s.fence_count(), 1);

    // Reads look ahead: at 2_100 (= 1_100 + retention) the fence is no longer retained.
    assert_eq!(
        s.apply(8, &req(1_300, Command::Delete { key: key("a"), cond: Condition::None })),
        Response::Deleted { version: 8, existed: true }
    );
    assert_eq!(missing_version(&s, "a", 2_099), Some(2));
    assert_eq!(missing_version(&s, "a", 2_100), Some(0));
    s.apply(9, &req(2_100, Command::Noop));
    assert_eq!(s.fence_count(), 0, "pruned once leader time passes the retention");
    assert_eq!(
        s.apply(10, &req(2_100, set("a", "old", None, Condition::IfVersion(0)))),
        Response::Written { version: 10 }
    );
}

#[test]
fn a_newer_fence_replaces_the_older_and_survives_its_pruning() {
    let mut s = state();
    s.apply(1, &req(0, Command::Invalidate { key: key("a") }));
    s.apply(2, &req(600, Command::Invalidate { key: key("a") }));
    s.apply(3, &req(1_000, Command::Noop)); // the first fence's retention ends here
    assert_eq!(s.fence_count(), 1);
    assert_eq!(missing_version(&s, "a", 0), Some(2));
    s.apply(4, &req(1_600, Command::Noop));
    assert_eq!(s.fence_count(), 0);
    assert_eq!(s.fences.queue_len(), 0);
}

#[test]
fn ttl_hides_and_expire_removes_only_expired_listed_keys() {
    let mut s = state();
    s.apply(1, &req(1_000, set("a", "1", Some(100), Condition::None))); // expires 1_100
    s.apply(2, &req(1_000, set("b", "1", Some(500), Condition::None))); // expires 1_500
    s.apply(3, &req(1_000, set("c", "1", None, Condition::None)));
    s.apply(4, &req(1_000, set("d", "1", Some(50), Condition::None))); // expires 1_050
    assert_eq!(found_version(&s, "a", 1_099), Some(1));
    assert_eq!(found_version(&s, "a", 1_100), None, "expired at its expiry instant");
    assert_eq!(s.expired_keys(1_200, 10), vec![key("d"), key("a")]);
    assert_eq!(s.expired_keys(1_200, 1), vec![key("d")]);
    assert!(s.expired_keys(1_000, 10).is_empty());

    // An expired key counts as absent for conditions.
    s.apply(5, &req(1_060, Command::Noop));
    assert_eq!(
        s.apply(6, &req(1_060, set("d", "2", None, Condition::IfVersion(4)))),
        Response::Rejected(Rejection::ConditionFailed { current_version: 0 })
    );

    // The sweep's as_of bounds what it may remove, and so does the state's now.
    let sweep = |as_of_ms| Command::Expire { as_of_ms, keys: vec![key("a"), key("b"), key("c"), key("d"), key("zz")] };
    assert_eq!(s.apply(7, &req(1_060, sweep(1_200))), Response::Expired { removed: 1 }); // only d (now = 1_060)
    assert_eq!(s.apply(8, &req(1_600, sweep(1_200))), Response::Expired { removed: 1 }); // a, not b
    assert_eq!(s.len(), 2);
    assert_eq!(s.apply(9, &req(1_600, sweep(1_600))), Response::Expired { removed: 1 }); // b
    assert_eq!(s.len(), 1);
    assert!(s.expired_keys(u64::MAX, 10).is_empty());
}

#[test]
fn a_key_rewritten_after_expiry_survives_an_older_sweep() {
    let mut s = state();
    s.apply(1, &req(1_000, set("a", "1", Some(100), Condition::None)));
    // The leader computes a sweep at 1_200 ...
    let keys = s.expired_keys(1_200, 10);
    assert_eq!(keys, vec![key("a")]);
    // ... but a rewrite lands first.
    s.apply(2, &req(1_250, set("a", "2", Some(1_000), Condition::None)));
    s.apply(3, &req(1_300, set("b", "1", None, Condition::None)));
    assert_eq!(s.apply(4, &req(1_300, Command::Expire { as_of_ms: 1_200, keys })), Response::Expired { removed: 0 });
    assert_eq!(found_version(&s, "a", 1_300), Some(2));
    // Even a short ttl rewritten value is only removed once expired as of the sweep's own stamp.
    s.apply(5, &req(1_300, set("c", "1", Some(10), Condition::None)));
    s.apply(6, &req(1_400, Command::Noop));
    assert_eq!(
        s.apply(7, &req(1_400, Command::Expire { as_of_ms: 1_305, keys: vec![key("c")] })),
        Response::Expired { removed: 0 }
    );
    assert_eq!(
        s.apply(8, &req(1_400, Command::Expire { as_of_ms: 1_310, keys: vec![key("c")] })),
        Response::Expired { removed: 1 }
    );
}

fn client_req(now_ms: u64, client_id: u64, seq: u64, cmd: Command) -> Request {
    Request { now_ms, client: Some(ClientSeq { client_id, seq }), cmd }
}

#[test]
fn a_retry_replays_the_first_response_and_applies_once() {
    let mut s = state();
    let first = s.apply(1, &client_req(0, 9, 1, set("a", "1", None, Condition::IfAbsent)));
    assert_eq!(first, Response::Written { version: 1 });
    s.apply(2, &req(0, set("b", "x", None, Condition::None)));
    let retry = s.apply(3, &client_req(0, 9, 1, set("a", "1", None, Condition::IfAbsent)));
    assert_eq!(retry, first, "not ConditionFailed: the retry must not apply again");
    assert_eq!(found_version(&s, "a", 0), Some(1));

    // Rejections are remembered too.
    let rejected = s.apply(4, &client_req(0, 9, 2, set("a", "2", None, Condition::IfVersion(77))));
    s.apply(5, &req(0, set("a", "3", None, Condition::None)));
    assert_eq!(s.apply(6, &client_req(0, 9, 2, set("a", "2", None, Condition::IfVersion(5)))), rejected);
    assert_eq!(found_version(&s, "a", 0), Some(5));
}

#[test]
fn out_of_order_seqs_of_one_client_are_new_writes() {
    // A client numbers writes across all groups and sends them concurrently: a group may see
    // seq 10 before seq 3. Seq 3 never applied here, so it must apply.
    let mut s = state();
    let w10 = s.apply(1, &client_req(0, 7, 10, set("a", "ten", None, Condition::None)));
    let w3 = s.apply(2, &client_req(0, 7, 3, set("b", "three", None, Condition::None)));
    assert_eq!(w10, Response::Written { version: 1 });
    assert_eq!(w3, Response::Written { version: 2 });
    // Both are remembered: retries replay, they do not apply again.
    assert_eq!(s.apply(3, &client_req(0, 7, 3, set("b", "again", None, Condition::None))), w3);
    assert_eq!(s.apply(4, &client_req(0, 7, 10, set("a", "again", None, Condition::None))), w10);
    assert_eq!(s.len(), 2);
}

#[test]
fn seq_below_the_window_is_too_old() {
    let mut s = state();
    let mut index = 0;
    for seq in 10..10 + SESSION_WINDOW as u64 + 5 {
        index += 1;
        s.apply(index, &client_req(0, 1, seq, set("a", "v", None, Condition::None)));
    }
    let len = s.len();
    // Seqs 10..15 were forgotten; 15 is the oldest remembered. 9 never applied, but it is below
    // the forgotten range's top, so it cannot be told from a forgotten retry.
    for (seq, expected) in [(14, None), (9, None), (15, Some(Response::Written { version: 6 }))] {
        index += 1;
        let r = s.apply(index, &client_req(0, 1, seq, set("b", "v", None, Condition::None)));
        assert_eq!(r, expected.unwrap_or(Response::Rejected(Rejection::DuplicateTooOld)), "seq {seq}");
    }
    assert_eq!(s.len(), len, "nothing applied");
    // A gap inside the window never applied here: it is a new write.
    index += 1;
    let r = s.apply(index, &client_req(0, 1, 10_000, set("b", "v", None, Condition::None)));
    assert_eq!(r, Response::Written { version: index });
}

#[test]
fn sessions_are_bounded_and_evict_the_least_recent_writer() {
    let mut s = state(); // max_sessions = 4
    for client in 1..=4 {
        s.apply(client, &client_req(0, client, 1, Command::Noop));
    }
    // Client 1 writes again (a replay counts), so client 2 is now the least recent.
    s.apply(5, &client_req(0, 1, 1, Command::Noop));
    s.apply(6, &client_req(0, 5, 1, Command::Noop));
    assert_eq!(s.session_count(), 4);
    let clients: Vec<u64> = s.sessions.map().keys().copied().collect();
    assert_eq!(clients, vec![1, 3, 4, 5]);
    // Client 2 is forgotten: its retry applies again (the documented limit).
    assert_eq!(
        s.apply(7, &client_req(0, 2, 1, set("a", "1", None, Condition::None))),
        Response::Written { version: 7 }
    );
}

#[test]
fn idle_sessions_expire_by_leader_time() {
    let mut s = state();
    s.apply(1, &client_req(1_000, 1, 1, Command::Noop));
    s.apply(2, &client_req(5_000, 2, 1, Command::Noop));
    s.apply(3, &req(1_000 + SESSION_IDLE_MS - 1, Command::Noop));
    assert_eq!(s.session_count(), 2);
    s.apply(4, &req(1_000 + SESSION_IDLE_MS, Command::Noop));
    assert_eq!(s.session_count(), 1);
    s.apply(5, &req(5_000 + SESSION_IDLE_MS, Command::Noop));
    assert_eq!(s.session_count(), 0);
}

#[test]
fn snapshot_round_trip_keeps_state_and_behaviour() {
    let mut s = state();
    s.apply(1, &client_req(1_000, 1, 1, set("a", "1", Some(500), Condition::None)));
    s.apply(2, &req(1_000, set("b", "2", None, Condition::None)));
    s.apply(3, &req(1_100, Command::Invalidate { key: key("c") }));
    let bytes = s.to_bytes();
    let mut t = CacheState::from_bytes(&bytes).unwrap();
    assert_eq!(t.digest(), s.digest());
    assert_eq!(t.to_bytes(), bytes);
    assert_eq!((t.mem_bytes(), t.fence_count(), t.session_count()), (s.mem_bytes(), 1, 1));
    assert_eq!(t.expired_keys(2_000, 10), vec![key("a")]);
    for st in [&mut s, &mut t] {
        assert_eq!(
            st.apply(4, &req(1_200, set("c", "x", None, Condition::IfVersion(0)))),
            Response::Rejected(Rejection::Fenced { fence: 3 })
        );
        assert_eq!(st.apply(5, &client_req(1_200, 1, 1, Command::Noop)), Response::Written { version: 1 });
    }
    assert_eq!(t.digest(), s.digest());
}

#[test]
fn corrupt_snapshots_are_errors() {
    let mut s = state();
    s.apply(1, &req(0, set("a", "hello", None, Condition::None)));
    let bytes = s.to_bytes();
    for cut in 0..bytes.len() {
        assert!(matches!(CacheState::from_bytes(&bytes[..cut]), Err(crate::Error::Corrupt(_))), "cut {cut}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(CacheState::from_bytes(&long), Err(crate::Error::Corrupt(_))));
    let mut bad_format = bytes.clone();
    bad_format[0] = 2;
    assert!(matches!(CacheState::from_bytes(&bad_format), Err(crate::Error::Corrupt(_))));
    // A value length prefix claiming ~2^62 bytes must fail cleanly, not try to allocate.
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap() - 1;
    let mut huge = bytes[..at].to_vec();
    huge.push(253); // bincode varint marker: a u64 follows
    huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
    huge.extend_from_slice(&bytes[at + 1..]);
    assert!(matches!(CacheState::from_bytes(&huge), Err(crate::Error::Corrupt(_))));
}

#[test]
fn snapshot_refuses_impossible_state() {
    let mut s = state();
    s.apply(3, &req(0, set("a", "1", None, Condition::None)));
    s.last_index = 2; // an entry newer than the last applied index
    assert!(matches!(CacheState::from_bytes(&s.to_bytes()), Err(crate::Error::Corrupt(_))));
}

#[test]
fn mem_bytes_tracks_inserts_and_removals() {
    let mut s = state();
    let empty = s.mem_bytes();
    s.apply(1, &req(0, set("a", &"x".repeat(1_000), Some(10), Condition::None)));
    let one = s.mem_bytes();
    assert!(one >= empty + 1_000);
    s.apply(2, &req(0, set("a", &"x".repeat(10), None, Condition::None)));
    assert!(s.mem_bytes() < one);
    s.apply(3, &req(0, Command::Delete { key: key("a"), cond: Condition::None }));
    assert_eq!(s.mem_bytes(), empty);
}

#[test]
fn a_batch_applies_each_write_at_its_index_and_remembers_each_client() {
    let mut s = state();
    s.apply(1, &req(10, set("a", "old", None, Condition::None)));
    let item = |client_id, seq, cmd| BatchItem { client: Some(ClientSeq { client_id, seq }), cmd };
    let batch = Command::Batch(vec![
        item(7, 1, set("a", "new", None, Condition::IfVersion(1))),
        item(8, 1, set("b", "x", None, Condition::IfAbsent)),
        item(9, 1, Command::Invalidate { key: key("c") }),
        item(7, 2, set("d", "y", None, Condition::IfVersion(5))),
    ]);
    let got = s.apply(2, &req(20, batch.clone()));
    assert_eq!(
        got,
        Response::Batch(vec![
            Response::Written { version: 2 },
            Response::Written { version: 2 },
            Response::Invalidated { fence: 2 },
            Response::Rejected(Rejection::ConditionFailed { current_version: 0 }),
        ])
    );
    assert_eq!((found_version(&s, "a", 20), found_version(&s, "b", 20)), (Some(2), Some(2)));
    assert_eq!(missing_version(&s, "c", 20), Some(2));

    // Three clients last wrote at index 2; a snapshot keeps them all.
    let mut restored = CacheState::from_bytes(&s.to_bytes()).expect("snapshot of a batched state decodes");
    assert_eq!(restored.session_count(), 3);
    assert_eq!(restored.digest(), s.digest());

    // A retry of the whole batch replays every answer and changes nothing.
    let before = restored.digest();
    let again = restored.apply(3, &req(30, batch));
    assert_eq!(again, got);
    assert_eq!(found_version(&restored, "a", 30), Some(2));
    assert_eq!(restored.len(), s.len());
    assert_ne!(restored.digest(), before, "the replay still advances the applied index");
}

#[test]
fn a_batch_inside_a_batch_applies_nothing() {
    let mut s = state();
    let inner = Command::Batch(vec![BatchItem { client: None, cmd: set("a", "v", None, Condition::None) }]);
    let got = s.apply(1, &req(10, Command::Batch(vec![BatchItem { client: None, cmd: inner }])));
    assert_eq!(got, Response::Batch(vec![Response::Batch(Vec::new())]));
    assert!(s.is_empty());
}
