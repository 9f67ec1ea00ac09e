//! Leases: grants that last `ttl` milliseconds of the log's clock unless
//! kept alive; keys and locks attached to a lease go when it ends.
//!
//! **The log's clock.** The state machine has no clock of its own: time is
//! counted from the leaders' stamps ([`ClockStamp`]) in log order. Two
//! stamps of the same ballot (one leader, one process lifetime) advance
//! the clock by the difference of their readings (never backwards); the
//! first stamp of another ballot only sets the new starting reading. So the
//! time without a leader, and the time until a new leader's first stamp,
//! is not counted: a leader change makes leases last longer, never shorter
//! (etcd extends leases by the election timeout for the same reason).
//! Every learner applies the same stamps at the same slots, so every
//! learner expires the same lease at the same revision.
//!
//! **What a holder may assume.** The clock reading a command is applied
//! at is the last stamp's, up to one `clock_interval` before the leader
//! proposed the command, which was after the client sent it. A lease kept
//! alive by a request sent at local time `t` therefore lasts, in real
//! time, at least until `t + ttl - clock_interval` (clock rates assumed
//! equal); the CLI renews at a third of the TTL.

use std::collections::{BTreeMap, BTreeSet};
use synod_core::{Ballot, ClockStamp, Millis};

/// Time as the log counts it (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogClock {
    /// The latest stamp's ballot and the highest reading seen in it.
    pub(crate) last: Option<(Ballot, Millis)>,
    /// Milliseconds counted so far.
    pub(crate) now: u64,
}

impl LogClock {
    /// Count the time since the last stamp of the same ballot.
    pub(crate) fn advance(&mut self, stamp: ClockStamp) {
        match self.last {
            Some((ballot, reading)) if ballot == stamp.ballot => {
                self.now = self
                    .now
                    .saturating_add(stamp.millis.saturating_sub(reading));
                self.last = Some((ballot, reading.max(stamp.millis)));
            }
            _ => self.last = Some((stamp.ballot, stamp.millis)),
        }
    }
}

/// One lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Its time to live, in milliseconds.
    pub(crate) ttl: u64,
    /// The clock reading it expires at.
    pub(crate) deadline: u64,
    /// Keys attached to it.
    pub(crate) keys: BTreeSet<Vec<u8>>,
    /// Locks it holds or waits for: (lock name, owner).
    pub(crate) locks: BTreeSet<(Vec<u8>, String)>,
}

/// Every live lease, by id and by deadline, and the clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Leases {
    pub(crate) clock: LogClock,
    leases: BTreeMap<u64, Lease>,
    /// (deadline, id) of every lease: expiry in order.
    deadlines: BTreeSet<(u64, u64)>,
}

impl Leases {
    /// Live leases.
    pub(crate) fn len(&self) -> usize {
        self.leases.len()
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Lease> {
        self.leases.get_mut(&id)
    }

    /// Every lease, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Lease)> {
        self.leases.iter().map(|(id, lease)| (*id, lease))
    }

    /// Milliseconds left of lease `id` (0: due to expire at the next stamp).
    pub(crate) fn remaining(&self, lease: &Lease) -> u64 {
        lease.deadline.saturating_sub(self.clock.now)
    }

    /// Start lease `id` for `ttl` milliseconds from now.
    pub(crate) fn grant(&mut self, id: u64, ttl: u64) {
        self.restore(id, ttl, self.clock.now.saturating_add(ttl));
    }

    /// A lease as a snapshot recorded it (keys and locks are attached
    /// afterwards).
    pub(crate) fn restore(&mut self, id: u64, ttl: u64, deadline: u64) {
        let lease = Lease {
            ttl,
            deadline,
            ..Lease::default()
        };
        self.deadlines.insert((deadline, id));
        self.leases.insert(id, lease);
    }

    /// Restart lease `id`'s TTL from now; `None` if it does not exist.
    pub(crate) fn keep_alive(&mut self, id: u64) -> Option<&Lease> {
        let now = self.clock.now;
        let lease = self.leases.get_mut(&id)?;
        self.deadlines.remove(&(lease.deadline, id));
        lease.deadline = now.saturating_add(lease.ttl);
        self.deadlines.insert((lease.deadline, id));
        Some(lease)
    }

    /// End lease `id` (revoked or expired), returning what hung on it.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        self.deadlines.remove(&(lease.deadline, id));
        Some(lease)
    }

    /// Whether a lease's deadline has passed.
    pub(crate) fn any_expired(&self) -> bool {
        self.deadlines
            .first()
            .is_some_and(|(deadline, _)| *deadline <= self.clock.now)
    }

    /// The id of a lease whose deadline has passed, earliest first.
    pub(crate) fn next_expired(&self) -> Option<u64> {
        self.deadlines
            .first()
            .filter(|(deadline, _)| *deadline <= self.clock.now)
            .map(|(_, id)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(round: u64, millis: Millis) -> ClockStamp {
        ClockStamp {
            ballot: Ballot::new(round, 1),
            millis,
        }
    }

    #[test]
    fn the_clock_counts_within_a_ballot_and_not_across_leaders() {
        let mut clock = LogClock::default();
        clock.advance(stamp(1, 1000));
        assert_eq!(clock.now, 0, "the first stamp only sets the start");
        clock.advance(stamp(1, 1500));
        assert_eq!(clock.now, 500);
        clock.advance(stamp(1, 1200));
        assert_eq!(clock.now, 500, "a reading never goes back");
        clock.advance(stamp(1, 1600));
        assert_eq!(clock.now, 600, "counted from the highest reading");
        clock.advance(stamp(2, 90_000));
        assert_eq!(clock.now, 600, "a new leader's first stamp counts nothing");
        clock.advance(stamp(2, 90_250));
        assert_eq!(clock.now, 850);
        clock.advance(stamp(1, 2600));
        assert_eq!(clock.now, 850, "an old leader's late stamp counts nothing");
    }

    #[test]
    fn leases_expire_in_deadline_order_and_keep_alive_moves_the_deadline() {
        let mut leases = Leases::default();
        leases.clock.advance(stamp(1, 0));
        leases.grant(7, 1000);
        leases.grant(8, 500);
        leases.clock.advance(stamp(1, 400));
        assert!(leases.keep_alive(8).is_some()); // now due at 900
        assert!(leases.keep_alive(9).is_none());
        leases.clock.advance(stamp(1, 899));
        assert_eq!(leases.next_expired(), None);
        leases.clock.advance(stamp(1, 1000));
        assert_eq!(leases.next_expired(), Some(8));
        assert!(leases.remove(8).is_some());
        assert_eq!(leases.next_expired(), Some(7));
        assert!(leases.remove(7).is_some());
        assert!(!leases.any_expired());
        assert_eq!(leases.len(), 0);
    }
}
