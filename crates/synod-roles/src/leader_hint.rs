//! Where a node sends commands: the proposer leading with the highest
//! ballot a learner has heard a heartbeat from, and a signal when that
//! changes.

use std::cell::Cell;
use synod_core::Ballot;
use tokio::sync::{Notify, futures::Notified};

/// A learner's view of the leader, shared with its node's gateway.
///
/// A change of leader wakes [`LeaderHint::changed`]: commands and reads
/// sent to a leader that is gone are sent again at once instead of after
/// the gateway's resend interval.
#[derive(Debug, Default)]
pub struct LeaderHint {
    proposer: Cell<u32>,
    ballot: Cell<Ballot>,
    changed: Notify,
}

impl LeaderHint {
    /// A hint of `proposer` until a leader is heard from.
    pub fn new(proposer: u32) -> Self {
        Self {
            proposer: Cell::new(proposer),
            ..Self::default()
        }
    }

    /// The proposer commands go to.
    pub fn get(&self) -> u32 {
        self.proposer.get()
    }

    /// `proposer` leads with `ballot`: taken if no higher ballot was heard.
    pub fn heard(&self, proposer: u32, ballot: Ballot) {
        if ballot <= self.ballot.get() {
            return;
        }
        self.ballot.set(ballot);
        if self.proposer.replace(proposer) != proposer {
            self.changed.notify_waiters();
        }
    }

    /// Resolves at the next change of leader after this call (create it
    /// before sending, so a change in between is not missed).
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn ready(future: std::pin::Pin<&mut Notified<'_>>) -> bool {
        let mut context = Context::from_waker(Waker::noop());
        future.poll(&mut context) == Poll::Ready(())
    }

    #[test]
    fn only_a_higher_ballot_of_another_proposer_is_a_change() {
        let hint = LeaderHint::new(1);
        let mut first = pin!(hint.changed());
        assert!(!ready(first.as_mut()));
        hint.heard(1, Ballot::new(3, 1));
        assert!(!ready(first.as_mut()), "the same proposer, a new ballot");
        hint.heard(2, Ballot::new(2, 2));
        assert!(!ready(first.as_mut()), "a deposed leader's late heartbeat");
        assert_eq!(hint.get(), 1);
        hint.heard(2, Ballot::new(4, 2));
        assert!(ready(first.as_mut()));
        assert_eq!(hint.get(), 2);
        let mut second = pin!(hint.changed());
        hint.heard(2, Ballot::new(5, 2));
        assert!(!ready(second.as_mut()));
    }
}
