//! What each role reports about itself. The acceptor and the proposer
//! report from their cores alone ([`Report`]); the learner's hooks add
//! what they count.

use synod_core::{Acceptor, Ballot, Epoch, Proposer, RoleId, Slot};

/// A proposer's view of leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposerStatus {
    /// This proposer.
    pub id: RoleId,
    /// The leader it knows (itself when leading).
    pub leader: Option<u32>,
    /// Its ballot, when leading.
    pub leading_ballot: Option<Ballot>,
    /// Every slot below this is decided.
    pub first_unchosen: Slot,
    /// The highest ballot round this proposer has used (one per campaign).
    pub max_round: u64,
    /// Times it was elected (started leading) since the node started.
    pub elections_won: u64,
    /// Times the leader it knows changed since the node started.
    pub leader_changes: u64,
    /// The configuration it works in (the acceptors that vote) and the
    /// slot it took effect at.
    pub epoch: Epoch,
    /// Every single-decree instance of earlier epochs is carried into
    /// this one (so the previous acceptors are no longer needed).
    pub instances_carried: bool,
}

/// An acceptor's promise and votes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptorStatus {
    /// This acceptor.
    pub id: RoleId,
    /// The log ballot it promised.
    pub promised: Ballot,
    /// Accepted log slots it holds.
    pub accepted: usize,
    /// It discarded its accepted values below this slot (the safe point).
    pub trimmed_below: Slot,
}

/// A learner's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnerStatus {
    /// This learner.
    pub id: RoleId,
    /// Every slot below this one is applied.
    pub applied: Slot,
    /// Decided slots held (applied or waiting for a gap).
    pub decided: usize,
    /// Hash of the applied log (slot, value) in order: equal logs, equal digests.
    pub log_digest: u64,
    /// Commands applied to this state machine, counting those in the
    /// snapshot it was restored from.
    pub commands_applied: u64,
    /// Slots below this are in the latest snapshot and no longer in the log.
    pub compacted_below: Slot,
    /// Snapshots fetched from a peer learner and installed since start.
    pub snapshots_fetched: u64,
}

/// One role's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleStatus {
    /// A proposer's.
    Proposer(ProposerStatus),
    /// An acceptor's.
    Acceptor(AcceptorStatus),
    /// A learner's.
    Learner(LearnerStatus),
}

/// A core that can say what [`crate::GetStatus`] reports.
pub trait Report {
    /// This core's status.
    fn report(&self) -> RoleStatus;
}

impl Report for Acceptor {
    fn report(&self) -> RoleStatus {
        RoleStatus::Acceptor(AcceptorStatus {
            id: self.id(),
            promised: self.state().promised,
            accepted: self.state().accepted.len(),
            trimmed_below: self.state().trimmed_below,
        })
    }
}

impl Report for Proposer {
    fn report(&self) -> RoleStatus {
        RoleStatus::Proposer(ProposerStatus {
            id: self.id(),
            leader: self.known_leader(),
            leading_ballot: self.leading_ballot(),
            first_unchosen: self.first_unchosen(),
            max_round: self.state().max_round,
            elections_won: 0,
            leader_changes: 0,
            epoch: self.epoch().clone(),
            instances_carried: self.instances_carried(),
        })
    }
}
