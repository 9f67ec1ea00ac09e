//! Lock order: on every learner, after every slot, each lock has at most
//! one holder (the state machine holds one record per lock), a new holder
//! gets a fencing token larger than every earlier holder's, and a holder
//! bound to a lease never outlives the lease. Together with the state
//! digest (every learner's state equal after every slot, so leases expire
//! at the same slot everywhere) this is mutual exclusion in log time.

use super::{Check, Violation};
use std::collections::BTreeMap;
use synod_core::{RoleId, Slot};

/// What one learner's state said of one lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    holder: Option<String>,
    /// The highest token granted so far.
    max_token: u64,
}

/// A lock as a learner's state shows it after a slot.
#[derive(Clone, Copy, Debug)]
pub struct LockView<'a> {
    /// The lock.
    pub name: &'a str,
    /// Its holder (`None`: free).
    pub holder: Option<&'a str>,
    /// The holder's fencing token.
    pub token: u64,
    /// The holder's lease (0: none).
    pub lease: u64,
    /// Whether that lease is live.
    pub lease_live: bool,
}

/// Locks by (learner, name), since each learner's current start.
#[derive(Debug, Default)]
pub struct LockOrder {
    seen: BTreeMap<(u32, String), Seen>,
    /// Times a learner saw a lock go to a new holder.
    pub grants: u64,
}

impl LockOrder {
    /// `learner` starts over (from slot 0 or a snapshot).
    pub fn restarted(&mut self, learner: RoleId) {
        self.seen.retain(|(l, _), _| *l != learner.index);
    }

    /// `learner`'s state after `slot` shows `lock`.
    pub fn observed(&mut self, learner: RoleId, slot: Slot, lock: LockView<'_>) -> Check {
        let fail = |detail: String| Err(Violation::new("lock order", detail));
        let name = lock.name;
        if lock.holder.is_some() && lock.lease != 0 && !lock.lease_live {
            return fail(format!(
                "{learner}: after slot {slot} {name} is held by {:?} on lease {}, which ended",
                lock.holder, lock.lease
            ));
        }
        let seen = self
            .seen
            .entry((learner.index, name.to_owned()))
            .or_default();
        let new_holder = lock.holder.is_some() && lock.holder != seen.holder.as_deref();
        if new_holder && lock.token <= seen.max_token {
            return fail(format!(
                "{learner}: after slot {slot} {name} went to {:?} with token {}, not above {}",
                lock.holder, lock.token, seen.max_token
            ));
        }
        self.grants += u64::from(new_holder);
        seen.holder = lock.holder.map(str::to_owned);
        seen.max_token = seen.max_token.max(lock.token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(holder: Option<&'a str>, token: u64, lease_live: bool) -> LockView<'a> {
        LockView {
            name: "job",
            holder,
            token,
            lease: 9,
            lease_live,
        }
    }

    #[test]
    fn growing_tokens_pass_and_a_reused_token_or_an_ended_lease_is_caught() {
        let l = RoleId::learner(1);
        let mut order = LockOrder::default();
        assert!(order.observed(l, 1, view(Some("a"), 3, true)).is_ok());
        assert!(order.observed(l, 2, view(Some("a"), 3, true)).is_ok());
        assert!(order.observed(l, 3, view(None, 0, false)).is_ok());
        assert!(order.observed(l, 4, view(Some("b"), 7, true)).is_ok());
        let reused = order.observed(l, 5, view(Some("c"), 7, true));
        assert_eq!(reused.unwrap_err().property, "lock order");
        let mut order = LockOrder::default();
        let stale = order.observed(l, 1, view(Some("a"), 3, false));
        assert_eq!(stale.unwrap_err().property, "lock order");
        // A restart starts the learner's record over.
        let mut order = LockOrder::default();
        assert!(order.observed(l, 1, view(Some("a"), 3, true)).is_ok());
        order.restarted(l);
        assert!(order.observed(l, 1, view(Some("b"), 3, true)).is_ok());
    }
}
