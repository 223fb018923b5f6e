//! The calls a stream has taken from its callers and not sent yet.
//!
//! Both streams between processes (the SDK's `Pipeline` to a node, a node's Raft stream to a
//! peer) keep taking calls while the other side does not read, so that a stalled peer never
//! blocks the callers; those calls wait here. Callers give up at their deadlines, so the queue
//! drops abandoned calls as it grows: it holds about twice the live calls at most, not every
//! call made while the peer stalled.

use std::collections::VecDeque;

/// A queued call whose caller may have stopped waiting for it.
pub trait Abandoned {
    /// Whether the caller gave up (its reply channel is closed).
    fn abandoned(&self) -> bool;
}

/// Calls not sent yet, in order.
#[derive(Debug)]
pub struct Waiting<T> {
    calls: VecDeque<T>,
    /// `calls.len()` after the last sweep of abandoned calls.
    swept_at: usize,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Self { calls: VecDeque::new(), swept_at: 0 }
    }
}

impl<T: Abandoned> Waiting<T> {
    /// Queues `call`; drops the calls whose callers gave up once the queue doubled since the
    /// last sweep.
    pub fn push(&mut self, call: T) {
        // Calls taken since the last push shrink the baseline the doubling counts from.
        self.swept_at = self.swept_at.min(self.calls.len());
        self.calls.push_back(call);
        if self.calls.len() > 64 && self.calls.len() > 2 * self.swept_at {
            self.calls.retain(|c| !c.abandoned());
            self.swept_at = self.calls.len();
        }
    }

    /// The oldest call whose caller still waits; abandoned ones before it are dropped.
    pub fn pop(&mut self) -> Option<T> {
        std::iter::from_fn(|| self.calls.pop_front()).find(|c| !c.abandoned())
    }

    /// Puts back a call [`Waiting::pop`] gave, to go first next time.
    pub fn unpop(&mut self, call: T) {
        self.calls.push_front(call);
    }

    /// Whether no call waits.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Takes every call (to fail them all).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.swept_at = 0;
        self.calls.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Call(u32, bool);

    impl Abandoned for Call {
        fn abandoned(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn pop_skips_abandoned_calls_and_unpop_puts_one_back_first() {
        let mut w = Waiting::default();
        for (i, gone) in [(1, true), (2, false), (3, true), (4, false)] {
            w.push(Call(i, gone));
        }
        assert_eq!(w.pop().map(|c| c.0), Some(2));
        let c = w.pop().unwrap();
        assert_eq!(c.0, 4);
        w.unpop(c);
        assert_eq!(w.pop().map(|c| c.0), Some(4));
        assert!(w.pop().is_none());
        assert!(w.is_empty());
    }

    #[test]
    fn the_queue_holds_about_twice_the_live_calls() {
        let mut w = Waiting::default();
        w.push(Call(0, false));
        for i in 1..10_000 {
            w.push(Call(i, true));
        }
        assert!(w.calls.len() <= 130, "{} calls held with one live", w.calls.len());
        assert_eq!(w.drain().filter(|c| !c.1).count(), 1, "the live call is kept");
        assert!(w.is_empty());
    }
}
