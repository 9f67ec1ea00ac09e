//! Configurations of the roles, changed through the log.
//!
//! A configuration names the acceptors that vote (and their quorums), the
//! proposers that campaign for leadership, and the learners whose
//! snapshots bound trimming. Epoch 0 is the one the cluster started with. A
//! [`crate::Value::Reconfigure`] chosen in slot `s` is a *stop sign*: it
//! ends its epoch at `s`, and every slot after `s` is decided by the next
//! epoch's acceptors, with ballots of the next epoch (which are above
//! every ballot of the earlier one, see [`crate::Ballot`]).
//!
//! What keeps one log across epochs (the proposer enforces it):
//! - the leader that proposes a stop sign puts it above every slot it has
//!   proposed or adopted, and proposes nothing after it;
//! - a leader whose phase 1 adopts a stop sign at `s` proposes nothing
//!   above `s`, unless a value above `s` was accepted in a higher ballot
//!   than the stop sign: then that stop sign was never chosen, and the
//!   leader proposes a no-op in its place;
//! - no leader reports a stop sign's slot as chosen (`chosen_upto`,
//!   `decided_upto` and the trim point stop at it), so every phase 1 of
//!   the epoch reads it;
//! - the next epoch starts only once every slot up to the stop sign is
//!   chosen, and its leaders never propose below its first slot.
//!
//! So no value of an epoch is chosen after its stop sign, and the next
//! epoch decides every slot after it.

use crate::quorum::Quorums;
use crate::types::{Role, RoleId, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One configuration: the acceptors that vote and which sets of them are
/// quorums, the proposers that may lead, the learners that count.
///
/// Proposers and learners outside it may still run (placed but standby):
/// such a proposer forwards commands to the leader and never campaigns;
/// such a learner still learns, but the leader trims without waiting for
/// its snapshots (it catches up from a peer's snapshot if it falls
/// behind the trim point).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The epoch this configuration is; epoch 0 is the initial one.
    pub epoch: u32,
    /// Acceptor ids, ascending.
    pub acceptors: Vec<u32>,
    /// The quorum system over them.
    pub quorums: Quorums,
    /// Proposer ids that campaign for leadership, ascending. (`default`:
    /// the JSON of nodes from before they were part of it still reads.)
    #[serde(default)]
    pub proposers: Vec<u32>,
    /// Learner ids whose snapshots the trim point waits for, ascending.
    #[serde(default)]
    pub learners: Vec<u32>,
    /// Roles the log has placed on another node than the config file
    /// does (`synod member move`): each role and its node's name,
    /// ascending by role. The core only carries it from epoch to epoch;
    /// each node's router follows it.
    #[serde(default)]
    pub moved: Vec<(RoleId, String)>,
}

impl Membership {
    /// The configuration a cluster starts with.
    pub fn initial(
        acceptors: Vec<u32>,
        quorums: Quorums,
        proposers: Vec<u32>,
        learners: Vec<u32>,
    ) -> Self {
        Self {
            epoch: 0,
            acceptors,
            quorums,
            proposers,
            learners,
            moved: Vec::new(),
        }
    }

    /// This configuration, as the next epoch, with `acceptors` (and
    /// `quorums` over them) instead of its own.
    pub fn with_acceptors(&self, acceptors: Vec<u32>, quorums: Quorums) -> Self {
        Self {
            epoch: self.epoch + 1,
            acceptors,
            quorums,
            ..self.clone()
        }
    }

    /// This configuration, as the next epoch, with the roles the log
    /// moves off the config file's placement replaced by `moved`.
    pub fn with_moved(&self, moved: Vec<(RoleId, String)>) -> Self {
        Self {
            epoch: self.epoch + 1,
            moved,
            ..self.clone()
        }
    }

    /// The node the log moved `role` to, if it did.
    pub fn moved_to(&self, role: RoleId) -> Option<&str> {
        let at = self.moved.binary_search_by(|(r, _)| r.cmp(&role)).ok()?;
        Some(&self.moved[at].1)
    }

    /// The ids of `role`'s instances in this configuration.
    pub fn ids(&self, role: Role) -> &[u32] {
        match role {
            Role::Acceptor => &self.acceptors,
            Role::Proposer => &self.proposers,
            Role::Learner => &self.learners,
        }
    }

    /// Whether this configuration names `role`.
    pub fn includes(&self, role: RoleId) -> bool {
        self.ids(role.role).contains(&role.index)
    }

    /// Whether promises from `answered` complete phase 1.
    pub fn phase1(&self, answered: &BTreeSet<u32>) -> bool {
        self.quorums.phase1(&self.acceptors, answered)
    }

    /// Whether acceptances from `answered` choose a value.
    pub fn phase2(&self, answered: &BTreeSet<u32>) -> bool {
        self.quorums.phase2(&self.acceptors, answered)
    }

    /// Why this configuration cannot follow `current`, if it cannot.
    pub fn check_after(&self, current: &Membership) -> Result<(), String> {
        if self.epoch != current.epoch + 1 {
            return Err(format!(
                "epoch {} does not follow the current epoch {}",
                self.epoch, current.epoch
            ));
        }
        let roles = [
            ("acceptor", &self.acceptors),
            ("proposer", &self.proposers),
            ("learner", &self.learners),
        ];
        for (role, ids) in roles {
            if ids.is_empty() || !ids.is_sorted_by(|a, b| a < b) {
                return Err(format!(
                    "{role} ids must be distinct, ascending and not empty"
                ));
            }
        }
        let ascending = self.moved.is_sorted_by(|(a, _), (b, _)| a < b);
        if !ascending || self.moved.iter().any(|(_, node)| node.is_empty()) {
            return Err("moved roles must be distinct, ascending and name a node".into());
        }
        self.quorums.check(self.acceptors.len())
    }
}

/// Past configurations an [`Epoch`] remembers, to read the slots they
/// decided for a learner that missed them (older ones are left to peer
/// learners' snapshots).
pub const MAX_PAST_EPOCHS: usize = 8;

/// The configuration a proposer works in and the first slot it decides.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Epoch {
    /// The configuration.
    pub membership: Membership,
    /// The first slot of the epoch: one past the previous epoch's stop
    /// sign (0 for epoch 0).
    pub start: Slot,
    /// The configurations before it, latest first, each with its first
    /// slot (at most [`MAX_PAST_EPOCHS`]).
    pub past: Vec<(Slot, Membership)>,
}

impl Epoch {
    /// The first epoch: `membership` from slot 0.
    pub fn initial(membership: Membership) -> Self {
        Self {
            membership,
            start: 0,
            past: Vec::new(),
        }
    }

    /// The epoch after this one: `membership` from `start`.
    pub fn next(&self, membership: Membership, start: Slot) -> Self {
        let mut past = vec![(self.start, self.membership.clone())];
        past.extend(self.past.iter().cloned());
        past.truncate(MAX_PAST_EPOCHS);
        Self {
            membership,
            start,
            past,
        }
    }

    /// The past configuration that decided `slot`, and the first slot of
    /// the one after it, if this epoch remembers it.
    pub fn decided_by(&self, slot: Slot) -> Option<(&Membership, Slot)> {
        let mut end = self.start;
        for (start, membership) in &self.past {
            if slot >= *start && slot < end {
                return Some((membership, end));
            }
            end = *start;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(epoch: u32, acceptors: &[u32]) -> Membership {
        Membership {
            epoch,
            acceptors: acceptors.to_vec(),
            quorums: Quorums::majority(acceptors.len()),
            proposers: vec![1, 2],
            learners: vec![1],
            moved: Vec::new(),
        }
    }

    #[test]
    fn a_configuration_must_follow_the_current_one_and_be_well_formed() {
        let current = members(0, &[1, 2, 3]);
        assert!(members(1, &[2, 3, 4]).check_after(&current).is_ok());
        assert!(members(2, &[2, 3, 4]).check_after(&current).is_err());
        assert!(members(1, &[3, 2, 4]).check_after(&current).is_err());
        assert!(members(1, &[2, 2, 4]).check_after(&current).is_err());
        assert!(members(1, &[]).check_after(&current).is_err());
        let mut no_proposer = members(1, &[2, 3, 4]);
        no_proposer.proposers.clear();
        assert!(no_proposer.check_after(&current).is_err());
        let mut learners_unsorted = members(1, &[2, 3, 4]);
        learners_unsorted.learners = vec![2, 1];
        assert!(learners_unsorted.check_after(&current).is_err());
        let mut unsafe_quorums = members(1, &[1, 2, 3, 4]);
        unsafe_quorums.quorums = Quorums::Counts {
            phase1: 2,
            phase2: 2,
        };
        assert!(unsafe_quorums.check_after(&current).is_err());
    }

    #[test]
    fn moved_roles_are_carried_to_the_next_epoch_and_must_be_well_formed() {
        let current = members(0, &[1, 2, 3]);
        let p2 = (RoleId::proposer(2), "n3".to_owned());
        let l1 = (RoleId::learner(1), "n2".to_owned());
        let moved = current.with_moved(vec![p2.clone(), l1.clone()]);
        assert!(
            moved.check_after(&current).is_ok(),
            "proposers sort before learners"
        );
        assert_eq!(moved.moved_to(RoleId::proposer(2)), Some("n3"));
        assert_eq!(moved.moved_to(RoleId::proposer(1)), None);
        let grown = moved.with_acceptors(vec![1, 2, 3, 4], Quorums::majority(4));
        assert_eq!(
            grown.moved, moved.moved,
            "a membership change keeps the moves"
        );
        assert!(
            current
                .with_moved(vec![l1.clone(), p2.clone()])
                .check_after(&current)
                .is_err()
        );
        assert!(
            current
                .with_moved(vec![p2.clone(), p2])
                .check_after(&current)
                .is_err()
        );
        let nowhere = (RoleId::learner(1), String::new());
        assert!(
            current
                .with_moved(vec![nowhere])
                .check_after(&current)
                .is_err()
        );
    }

    #[test]
    fn an_epoch_remembers_which_configuration_decided_each_earlier_slot() {
        let mut epoch = Epoch::initial(members(0, &[1, 2, 3]));
        assert_eq!(epoch.decided_by(0), None, "slot 0 is this epoch's own");
        epoch = epoch.next(members(1, &[2, 3, 4]), 10);
        epoch = epoch.next(members(2, &[3, 4, 5]), 20);
        assert_eq!(epoch.decided_by(9), Some((&members(0, &[1, 2, 3]), 10)));
        assert_eq!(epoch.decided_by(10), Some((&members(1, &[2, 3, 4]), 20)));
        assert_eq!(epoch.decided_by(20), None);
        for n in 3..20 {
            epoch = epoch.next(members(n, &[1, 2, 3]), 10 * Slot::from(n));
        }
        assert_eq!(epoch.past.len(), MAX_PAST_EPOCHS, "bounded");
        assert_eq!(epoch.decided_by(0), None, "forgotten: peers' snapshots");
    }
}
