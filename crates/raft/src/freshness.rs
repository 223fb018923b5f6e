//! How fresh a follower's applied state is, for EVENTUAL reads with a staleness bound.
//!
//! Hearing from the leader is not enough: a replica that was paused or restarted receives
//! heartbeats at once but may still be applying a long backlog. Each AppendEntries carries the
//! leader's commit index at the time it was sent; once this replica has *applied* that index,
//! its state contains every write the leader had acknowledged when it sent the message. So the
//! replica is "fresh as of" the receive time of the newest such message whose commit index it
//! has applied.
//!
//! But a leader cut off from its quorum keeps sending to the followers on its side while another
//! leader acknowledges writes elsewhere. So the leader stamps each AppendEntries with the age of
//! its last quorum confirmation ([`QuorumClock`]): the send time of the newest append a majority
//! acknowledged in its term. No other leader can have acknowledged a write before that moment
//! that this leader's commit index lacks, provided the commit index is of the leader's own term.
//! The follower's mark is therefore `receive time − quorum age`, earlier than the truth by the
//! message's transit time, which is documented slack.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most pending (receive time, commit index) marks kept; older ones are dropped, which can only
/// make the replica look staler than it is.
const MAX_MARKS: usize = 1024;

/// Tracks the receive times of leader commit indexes this replica has not applied yet.
#[derive(Debug, Default)]
pub struct Freshness {
    /// Receive time and leader commit index, both increasing front to back.
    pending: VecDeque<(Instant, u64)>,
    /// Receive time of the newest message whose commit index is applied.
    fresh_as_of: Option<Instant>,
}

impl Freshness {
    /// Records a message from the leader received at `at` carrying its commit index `commit`.
    pub fn heard(&mut self, at: Instant, commit: u64) {
        match self.pending.back_mut() {
            // The same or a lower commit index at a later time: the later time is as good.
            Some((t, c)) if *c >= commit => *t = (*t).max(at),
            _ => {
                if self.pending.len() == MAX_MARKS {
                    self.pending.pop_front();
                }
                self.pending.push_back((at, commit));
            }
        }
    }

    /// The receive time of the newest leader message whose commit index is `<= applied`.
    pub fn fresh_as_of(&mut self, applied: u64) -> Option<Instant> {
        while let Some(&(t, c)) = self.pending.front() {
            if c > applied {
                break;
            }
            self.fresh_as_of = Some(self.fresh_as_of.map_or(t, |f| f.max(t)));
            self.pending.pop_front();
        }
        self.fresh_as_of
    }
}

/// When this node, as leader of one group, last had its leadership confirmed by a quorum.
#[derive(Debug, Default)]
pub struct QuorumClock {
    inner: Mutex<Acks>,
}

#[derive(Debug, Default)]
struct Acks {
    term: u64,
    /// Follower id → send time of the newest append it acknowledged in `term`.
    sent: HashMap<u64, Instant>,
}

impl QuorumClock {
    /// Records that `follower` accepted (did not reject for a higher vote) an append of `term`
    /// sent at `sent`.
    pub fn acked(&self, term: u64, follower: u64, sent: Instant) {
        let mut a = self.inner.lock().expect("quorum clock lock poisoned");
        if term > a.term {
            a.term = term;
            a.sent.clear();
        }
        if term == a.term {
            let t = a.sent.entry(follower).or_insert(sent);
            *t = (*t).max(sent);
        }
    }

    /// The send time of the newest append of `term` that a majority of `voters` acknowledged,
    /// this leader (`me`) counting as acknowledging everything at `now`. `None` if no quorum has
    /// acknowledged anything in `term`.
    pub fn confirmed_at(&self, term: u64, me: u64, voters: &[u64], now: Instant) -> Option<Instant> {
        let a = self.inner.lock().expect("quorum clock lock poisoned");
        let mut times: Vec<Instant> = voters
            .iter()
            .filter_map(|v| {
                if *v == me {
                    Some(now)
                } else if a.term == term {
                    a.sent.get(v).copied()
                } else {
                    None
                }
            })
            .collect();
        kth_newest(&mut times, voters.len() / 2 + 1)
    }

    /// The start of this leader's read lease in `term`: the newest send time `t` such that enough
    /// followers acknowledged an append of `term` sent at or after `t` that, until their own
    /// leases run out (openraft: a follower that accepted an append refuses every vote for
    /// `election_timeout_max` after receiving it), the followers *not* holding such a lease plus
    /// this leader are fewer than a majority. No other leader can then be elected before
    /// `t + lease`, whoever this leader votes for. That takes `⌈n/2⌉` of the `n − 1` followers
    /// (2 of 2 with 3 voters, 3 of 4 with 5); a single voter always holds the lease.
    /// `None` while too few followers have acknowledged anything in `term`.
    pub fn lease_start(&self, term: u64, me: u64, voters: &[u64], now: Instant) -> Option<Instant> {
        let need = voters.len().div_ceil(2);
        if voters.len() == 1 && voters[0] == me {
            return Some(now);
        }
        let a = self.inner.lock().expect("quorum clock lock poisoned");
        if a.term != term {
            return None;
        }
        let mut times: Vec<Instant> =
            voters.iter().filter(|v| **v != me).filter_map(|v| a.sent.get(v).copied()).collect();
        kth_newest(&mut times, need)
    }

    /// How long ago the quorum confirmation of `term` was, at `now`.
    pub fn age(&self, term: u64, me: u64, voters: &[u64], now: Instant) -> Option<Duration> {
        self.confirmed_at(term, me, voters, now).map(|t| now.saturating_duration_since(t))
    }
}

/// The `k`-th newest of `times` (1-based); `None` if `k` is 0 or there are fewer than `k`.
fn kth_newest(times: &mut [Instant], k: usize) -> Option<Instant> {
    if k == 0 || times.len() < k {
        return None;
    }
    times.sort_unstable_by(|x, y| y.cmp(x));
    Some(times[k - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_confirmation_needs_a_majority_and_takes_its_oldest_member() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let clock = QuorumClock::default();
        let voters = [1, 2, 3, 4, 5];
        assert_eq!(clock.confirmed_at(3, 1, &voters, ms(100)), None, "no follower answered yet");
        clock.acked(3, 2, ms(10));
        assert_eq!(clock.confirmed_at(3, 1, &voters, ms(100)), None, "2 of 5 is not a majority");
        clock.acked(3, 4, ms(40));
        clock.acked(3, 5, ms(20));
        // Majority = me (now) + the two newest of {40, 20, 10}.
        assert_eq!(clock.confirmed_at(3, 1, &voters, ms(100)), Some(ms(20)));
        clock.acked(3, 2, ms(5)); // an older ack never moves a follower back
        assert_eq!(clock.confirmed_at(3, 1, &voters, ms(100)), Some(ms(20)));
        assert_eq!(clock.age(3, 1, &voters, ms(100)), Some(Duration::from_millis(80)));
    }

    #[test]
    fn acks_of_another_term_do_not_count() {
        let t0 = Instant::now();
        let clock = QuorumClock::default();
        let voters = [1, 2, 3];
        clock.acked(3, 2, t0);
        assert_eq!(clock.confirmed_at(4, 1, &voters, t0), None, "acks of term 3 say nothing about term 4");
        clock.acked(5, 3, t0);
        clock.acked(3, 2, t0); // late answer from an older term
        assert_eq!(clock.confirmed_at(3, 1, &voters, t0), None);
        assert_eq!(clock.confirmed_at(5, 1, &voters, t0), Some(t0));
    }

    #[test]
    fn the_read_lease_needs_acks_from_a_majority_of_followers_not_counting_the_leader() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let clock = QuorumClock::default();
        // 3 voters: the leader's own vote could complete a rival's majority, so both followers.
        clock.acked(7, 2, ms(10));
        assert_eq!(clock.lease_start(7, 1, &[1, 2, 3], ms(50)), None, "one follower of two is not enough");
        clock.acked(7, 3, ms(30));
        assert_eq!(clock.lease_start(7, 1, &[1, 2, 3], ms(50)), Some(ms(10)), "the older of the two acks");
        assert_eq!(clock.lease_start(8, 1, &[1, 2, 3], ms(50)), None, "acks of term 7 give no lease in term 8");
        // 5 voters: 3 of the 4 followers.
        let clock = QuorumClock::default();
        for (f, t) in [(2, 40), (3, 10), (4, 30)] {
            clock.acked(2, f, ms(t));
        }
        assert_eq!(clock.lease_start(2, 1, &[1, 2, 3, 4, 5], ms(50)), Some(ms(10)));
        clock.acked(2, 5, ms(45));
        assert_eq!(clock.lease_start(2, 1, &[1, 2, 3, 4, 5], ms(50)), Some(ms(30)), "the three newest of four");
        // A single voter holds its lease; 2 voters need the one follower.
        assert_eq!(QuorumClock::default().lease_start(1, 1, &[1], ms(5)), Some(ms(5)));
        assert_eq!(QuorumClock::default().lease_start(1, 1, &[1, 2], ms(5)), None);
    }

    #[test]
    fn a_single_voter_is_its_own_quorum() {
        let now = Instant::now();
        assert_eq!(QuorumClock::default().confirmed_at(1, 1, &[1], now), Some(now));
    }

    #[test]
    fn a_replica_behind_the_leader_commit_is_not_fresh() {
        let t0 = Instant::now();
        let mut f = Freshness::default();
        f.heard(t0, 10);
        assert_eq!(f.fresh_as_of(9), None, "applied 9 < leader commit 10");
        assert_eq!(f.fresh_as_of(10), Some(t0));
    }

    #[test]
    fn freshness_is_the_newest_applied_mark() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let (t1, t2, t3) = (ms(10), ms(20), ms(30));
        let mut f = Freshness::default();
        f.heard(t0, 5);
        f.heard(t1, 5); // a later heartbeat with the same commit moves the mark forward
        f.heard(t2, 8);
        f.heard(t3, 12);
        assert_eq!(f.fresh_as_of(4), None);
        assert_eq!(f.fresh_as_of(5), Some(t1));
        assert_eq!(f.fresh_as_of(11), Some(t2));
        assert_eq!(f.fresh_as_of(12), Some(t3));
        // Once fresh, freshness never goes backwards, even with an older applied index passed.
        assert_eq!(f.fresh_as_of(0), Some(t3));
    }

    #[test]
    fn a_backlog_longer_than_the_mark_limit_stays_conservative() {
        let t0 = Instant::now();
        let mut f = Freshness::default();
        for i in 0..(MAX_MARKS as u64 * 2) {
            f.heard(t0 + Duration::from_millis(i), i + 1);
        }
        assert!(f.pending.len() <= MAX_MARKS);
        assert_eq!(f.fresh_as_of(0), None);
        let last = MAX_MARKS as u64 * 2;
        assert_eq!(f.fresh_as_of(last), Some(t0 + Duration::from_millis(last - 1)));
    }
}
