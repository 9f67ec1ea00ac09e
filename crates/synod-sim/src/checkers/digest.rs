//! State digest: every learner's state machine, after applying slot `s`,
//! is the same as replaying the decided log from the start through `s`.
//! The simulator's state machine is a hash chain over the commands each
//! slot applied; the first learner to apply a slot fixes its digest, and
//! every other learner and incarnation (replaying from slot 0 or restored
//! from a snapshot) must reach the same one. A snapshot that lost commands,
//! kept duplicates, or was installed without its tail shows up here.

use super::{Check, Violation};
use std::collections::BTreeMap;
use synod_core::{RoleId, Slot};

/// Digests by slot, as the first learner to apply each slot computed them.
#[derive(Debug, Default)]
pub struct StateDigest {
    reference: BTreeMap<Slot, u64>,
}

impl StateDigest {
    /// `learner`'s state machine has digest `digest` after applying `slot`.
    pub fn applied(&mut self, learner: RoleId, slot: Slot, digest: u64) -> Check {
        let expected = *self.reference.entry(slot).or_insert(digest);
        if expected == digest {
            return Ok(());
        }
        Err(Violation::new(
            "state digest",
            format!(
                "{learner}: after slot {slot} its state is {digest:#x}, replaying the log gives {expected:#x}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_states_pass_and_a_different_one_is_caught() {
        let mut digest = StateDigest::default();
        assert!(digest.applied(RoleId::learner(1), 0, 11).is_ok());
        assert!(digest.applied(RoleId::learner(2), 0, 11).is_ok());
        assert!(digest.applied(RoleId::learner(1), 1, 12).is_ok());
        let caught = digest.applied(RoleId::learner(2), 1, 13);
        assert_eq!(caught.unwrap_err().property, "state digest");
    }
}
