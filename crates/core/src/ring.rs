//! Consistent hash ring: which data group owns a key.
//!
//! Each data group puts [`VNODES_PER_GROUP`] points on a 64-bit circle; a key belongs to the
//! group of the first point at or after the key's hash, wrapping past the top. Many points per
//! group even out the share each group gets, and adding a group only takes keys from the arcs
//! its new points split, so about `1/(G+1)` of the keys move — all of them to the new group.
//!
//! ## CONTRACT
//!
//! Every node and every client must map a key to the same group, across versions, so the
//! mapping is fixed and must never change:
//!
//! - point `i` of group `g` is `xxh3_64_with_seed(format!("group-{g}-vnode-{i}"), RING_SEED)`
//!   for `i` in `0..VNODES_PER_GROUP`;
//! - a key hashes as `xxh3_64_with_seed(key.ring_bytes(), RING_SEED)`, where `ring_bytes` is
//!   `namespace \0 key`;
//! - the owner is the first point with hash `>=` the key's, wrapping to the lowest point; points
//!   with equal hashes are ordered by group id, so the lowest group wins a collision.
//!
//! The ring depends only on the set of groups, never on the order they are listed in.
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::key::CacheKey;
use crate::topology::GroupId;

/// Seed of the ring's xxh3-64 hash. Part of the on-disk and wire contract: never change it.
pub const RING_SEED: u64 = 0x7261_6674_6361_6368; // "raftcach"
/// Virtual points per group. Part of the contract, like [`RING_SEED`].
pub const VNODES_PER_GROUP: u32 = 256;

/// Maps keys onto groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashRing {
    /// `(point hash, group)`, sorted ascending; `VNODES_PER_GROUP` points per distinct group.
    points: Vec<(u64, GroupId)>,
}

impl HashRing {
    /// A ring over `groups` (duplicates are ignored, order does not matter).
    ///
    /// An empty `groups` gives an empty ring, which owns no key: check [`HashRing::is_empty`]
    /// before routing with a ring built from untrusted input.
    pub fn new(groups: &[GroupId]) -> Self {
        let mut groups = groups.to_vec();
        groups.sort_unstable();
        groups.dedup();
        let mut points: Vec<(u64, GroupId)> =
            groups.iter().flat_map(|g| (0..VNODES_PER_GROUP).map(move |i| (point_hash(*g, i), *g))).collect();
        points.sort_unstable();
        Self { points }
    }

    /// Whether the ring has no groups.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The group that owns `key`.
    ///
    /// # Panics
    ///
    /// If the ring is empty.
    pub fn group_for(&self, key: &CacheKey) -> GroupId {
        self.group_for_bytes(&key.ring_bytes())
    }

    /// The group that owns the key whose [`CacheKey::ring_bytes`] are `ring_bytes`; lets a caller
    /// route without building a `CacheKey`.
    ///
    /// # Panics
    ///
    /// If the ring is empty.
    pub fn group_for_bytes(&self, ring_bytes: &[u8]) -> GroupId {
        self.try_group_for_bytes(ring_bytes).expect("HashRing::group_for on an empty ring")
    }

    /// Like [`HashRing::group_for_bytes`], but `None` on an empty ring.
    pub fn try_group_for_bytes(&self, ring_bytes: &[u8]) -> Option<GroupId> {
        let h = xxh3_64_with_seed(ring_bytes, RING_SEED);
        let at = self.points.partition_point(|(p, _)| *p < h);
        self.points.get(at).or_else(|| self.points.first()).map(|(_, g)| *g)
    }
}

fn point_hash(group: GroupId, vnode: u32) -> u64 {
    xxh3_64_with_seed(format!("group-{group}-vnode-{vnode}").as_bytes(), RING_SEED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> CacheKey {
        CacheKey::new("ns", format!("k{i}")).unwrap()
    }

    #[test]
    fn hash_is_pinned() {
        // The contract in numbers: what every deployed node and client computes. If this test
        // fails, the change would silently re-route keys across a running cluster.
        assert_eq!(point_hash(1, 0), 0xf12a_c1dd_dd7f_9c23);
        assert_eq!(xxh3_64_with_seed(b"ns\0k0", RING_SEED), 0xf92f_fe3e_25f4_98d6);
        assert_eq!(key(0).ring_bytes(), b"ns\0k0");
        let ring = HashRing::new(&[1, 2, 3]);
        let owners: Vec<_> = (0..8).map(|i| ring.group_for(&key(i))).collect();
        assert_eq!(owners, [1, 2, 3, 2, 3, 1, 1, 2]);
    }

    #[test]
    fn order_and_duplicates_do_not_matter() {
        assert_eq!(HashRing::new(&[3, 1, 2]), HashRing::new(&[1, 2, 3, 2]));
    }

    #[test]
    fn owner_is_the_next_point_clockwise_with_wrap() {
        let ring = HashRing::new(&[1, 2, 3, 4]);
        assert_eq!(ring.points.len(), 4 * VNODES_PER_GROUP as usize);
        let (top, _) = *ring.points.last().unwrap();
        let mut wrapped = 0;
        for i in 0..20_000 {
            let k = key(i);
            let h = xxh3_64_with_seed(&k.ring_bytes(), RING_SEED);
            let expected = match ring.points.iter().find(|(p, _)| *p >= h) {
                Some((_, g)) => *g,
                None => {
                    wrapped += 1;
                    ring.points[0].1
                }
            };
            assert_eq!(ring.group_for(&k), expected, "key {k} hash {h:#x} top {top:#x}");
        }
        assert!(wrapped > 0, "some key should hash above the top point");
    }

    #[test]
    fn empty_ring_owns_nothing() {
        let ring = HashRing::new(&[]);
        assert!(ring.is_empty());
        assert_eq!(ring.try_group_for_bytes(b"ns\0k"), None);
    }

    #[test]
    #[should_panic(expected = "empty ring")]
    fn empty_ring_panics_on_group_for() {
        HashRing::new(&[]).group_for(&key(1));
    }
}
