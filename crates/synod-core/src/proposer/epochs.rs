//! Reconfiguration: stop signs, and moving to the next epoch.
//!
//! The rules that keep one log across epochs are in the docs of
//! [`crate::Membership`]; this file carries them out:
//! - [`Proposer::reconfigure`] puts the stop sign in the leader's next slot
//!   (above everything it proposed or adopted) and stops proposing;
//! - [`Proposer::end_of_epoch`] finds, among the values a phase 1 adopted,
//!   the stop sign the epoch ends at, turning dead ones into no-ops;
//! - [`Proposer::watermark`] never reports a stop sign's slot as chosen;
//! - once every slot up to the stop sign is decided, the leader moves to
//!   the next epoch and campaigns there at once; other proposers learn the
//!   epoch from its heartbeats (`EpochQuery` / `EpochInfo`).

use super::{CarryState, Phase, Proposer, ProposerWrite, RoundFloor};
use crate::membership::{Epoch, Membership};
use crate::message::Message;
use crate::output::Output;
use crate::types::{Ballot, Millis, RoleId, Slot, Value};
use std::collections::BTreeMap;

/// Why a reconfiguration was not proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReconfigureError {
    /// This proposer does not lead; ask the leader.
    NotLeader,
    /// A stop sign of this epoch is already proposed.
    InProgress,
    /// The single-decree instances of the previous epoch are still being
    /// carried into this one; its acceptors are needed until then.
    CarryInProgress,
    /// The configuration cannot follow the current one.
    Invalid(String),
}

impl std::fmt::Display for ReconfigureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReconfigureError::NotLeader => write!(f, "no leader is known yet; try again"),
            ReconfigureError::InProgress => {
                write!(f, "a configuration change is in progress; wait for it")
            }
            ReconfigureError::CarryInProgress => write!(
                f,
                "the registers are still being carried into this configuration; wait for it"
            ),
            ReconfigureError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for ReconfigureError {}

impl Proposer {
    /// The configuration this proposer works in, and its first slot.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// Propose `next` as the configuration after this epoch: a stop sign
    /// in the next slot. Nothing is proposed after it; once every slot up
    /// to it is decided, this leader moves to the next epoch.
    pub fn reconfigure(
        &mut self,
        now: Millis,
        next: Membership,
    ) -> Result<Output<ProposerWrite>, ReconfigureError> {
        self.check_next(&next)?;
        if self.stop.is_some() {
            return Err(ReconfigureError::InProgress);
        }
        if !self.instances_carried() {
            return Err(ReconfigureError::CarryInProgress);
        }
        let watermark = self.watermark();
        let Phase::Leading(leading) = &mut self.phase else {
            return Err(ReconfigureError::NotLeader);
        };
        let slot = leading.take_slot();
        let ballot = leading.ballot;
        let value = Value::Reconfigure(Box::new(next.clone()));
        let mut out = Output::new();
        self.stop = Some((slot, next));
        self.send_new_accept(now, ballot, slot, value, watermark, &mut out);
        Ok(out)
    }

    /// An operator asks for `next`: proposed here if this proposer leads,
    /// else forwarded to the leader it knows (which answers nothing: the
    /// operator watches the epoch).
    pub fn request_reconfigure(
        &mut self,
        now: Millis,
        next: Membership,
    ) -> Result<Output<ProposerWrite>, ReconfigureError> {
        if matches!(self.phase, Phase::Leading(_)) {
            return self.reconfigure(now, next);
        }
        self.check_next(&next)?;
        let Some((leader, _)) = self.leader else {
            return Err(ReconfigureError::NotLeader);
        };
        let mut out = Output::new();
        out.send(RoleId::proposer(leader), Message::Reconfigure { next });
        Ok(out)
    }

    /// Why `next` cannot follow this epoch, if it cannot: besides
    /// [`Membership::check_after`], its proposers and learners must be
    /// ones this proposer talks to (a learner it never hears from would
    /// stop trimming for good).
    fn check_next(&self, next: &Membership) -> Result<(), ReconfigureError> {
        next.check_after(&self.epoch.membership)
            .map_err(ReconfigureError::Invalid)?;
        let unknown = |ids: &[u32], known: &[u32]| ids.iter().find(|i| !known.contains(i)).copied();
        if let Some(p) = unknown(&next.proposers, &self.config.proposers) {
            return Err(ReconfigureError::Invalid(format!(
                "proposer-{p} is not configured"
            )));
        }
        if let Some(l) = unknown(&next.learners, &self.config.learners) {
            return Err(ReconfigureError::Invalid(format!(
                "learner-{l} is not configured"
            )));
        }
        Ok(())
    }

    /// Every slot below this is chosen, as this proposer may report it:
    /// its first unchosen slot, but never past a stop sign it knows, so
    /// that every phase 1 of the epoch reads the stop sign.
    pub(super) fn watermark(&self) -> Slot {
        match &self.stop {
            Some((slot, _)) => self.first_unchosen.min(*slot),
            None => self.first_unchosen,
        }
    }

    /// Among the values a phase 1 adopted, the stop sign this epoch ends
    /// at, if any: the lowest one that no value above it outranks. A stop
    /// sign outranked by a value accepted above it in a higher ballot was
    /// never chosen (a leader whose phase 1 met a chosen stop sign
    /// proposes nothing above it), so it becomes a no-op. Values above
    /// the end are dropped: none of them can have been chosen.
    pub(super) fn end_of_epoch(
        adopted: &mut BTreeMap<Slot, (Ballot, Value)>,
    ) -> Option<(Slot, Membership)> {
        let stops: Vec<(Slot, Ballot)> = adopted
            .iter()
            .filter(|(_, (_, value))| matches!(value, Value::Reconfigure(_)))
            .map(|(slot, (ballot, _))| (*slot, *ballot))
            .collect();
        for (slot, ballot) in stops {
            let outranked = adopted.range(slot + 1..).any(|(_, (b, _))| *b > ballot);
            let Some((_, Value::Reconfigure(next))) = adopted.get(&slot) else {
                unreachable!("listed above");
            };
            let follows = next.epoch == ballot.epoch + 1;
            if outranked || !follows {
                adopted.insert(slot, (ballot, Value::Noop));
                continue;
            }
            let next = (**next).clone();
            let above: Vec<Slot> = adopted.range(slot + 1..).map(|(s, _)| *s).collect();
            for s in above {
                adopted.remove(&s);
            }
            return Some((slot, next));
        }
        None
    }

    /// Every slot up to the stop sign is decided: move to the next epoch
    /// and, if leading, campaign there at once.
    pub(super) fn enter_next_epoch_if_ready(
        &mut self,
        now: Millis,
        out: &mut Output<ProposerWrite>,
    ) {
        let Some((slot, next)) = &self.stop else {
            return;
        };
        if self.first_unchosen <= *slot {
            return;
        }
        let epoch = self.epoch.next(next.clone(), slot + 1);
        // The acceptors of both epochs keep it for proposers that ask.
        let old: Vec<u32> = self.epoch.membership.acceptors.clone();
        let told = old.into_iter().chain(next.acceptors.iter().copied());
        let told: std::collections::BTreeSet<u32> = told.collect();
        let info = Message::EpochInfo {
            epoch: epoch.clone(),
        };
        out.broadcast(told.into_iter().map(RoleId::acceptor), &info);
        // And every other placed role: the nodes hosting them follow the
        // configuration's placement (`moved`) from these announcements.
        let others = self.other_proposer_ids().chain(self.learner_ids());
        out.broadcast(others, &info);
        let was_leading = matches!(self.phase, Phase::Leading(_));
        self.enter_epoch(now, epoch, out);
        if !was_leading {
            return;
        }
        if !self.may_lead() {
            self.tell_members_of_epoch(out);
            return;
        }
        if self.may_take_ballot(now, out) {
            let from = self.first_unchosen;
            self.start_phase1(now, from, from, out);
        } else {
            // Campaign as soon as this epoch's rounds are discovered.
            self.election_deadline = now;
        }
    }

    /// Work in `epoch` from now on (persisted first): any ballot of the
    /// earlier one ends.
    pub(super) fn enter_epoch(
        &mut self,
        now: Millis,
        epoch: Epoch,
        out: &mut Output<ProposerWrite>,
    ) {
        let write = ProposerWrite::Epoch(epoch.clone());
        self.state.apply(&write);
        out.persist.push(write);
        self.first_unchosen = self.first_unchosen.max(epoch.start);
        self.epoch = epoch;
        self.stop = None;
        self.step_down();
        self.carry = CarryState::Unknown;
        // An earlier life may have used rounds in this epoch: discover
        // them from its acceptors before the first ballot (`rounds.rs`).
        self.round_floor = RoundFloor::asking();
        self.reset_election_timer(now);
    }

    /// A heartbeat from proposer `from` carried a ballot of another epoch.
    /// A later one: ask it which configuration that is (and campaign no
    /// more meanwhile, see [`Proposer::behind_an_epoch`]). An earlier
    /// one: tell it the current configuration.
    pub(super) fn heartbeat_of_other_epoch(
        &mut self,
        from: RoleId,
        ballot: Ballot,
        out: &mut Output<ProposerWrite>,
    ) {
        if ballot.epoch > self.epoch.membership.epoch {
            out.send(from, Message::EpochQuery);
        } else {
            let epoch = self.epoch.clone();
            out.send(from, Message::EpochInfo { epoch });
        }
    }

    /// A proposer that may not lead in its epoch and hears no leader there
    /// (it just left the leadership, or an election timeout passed
    /// without a heartbeat) tells the other proposers the epoch: the
    /// members may not know it, and nobody else announces it (only
    /// leaders heartbeat).
    pub(super) fn tell_members_of_epoch(&mut self, out: &mut Output<ProposerWrite>) {
        self.leader = None;
        if self.epoch.membership.epoch > 0 {
            let info = Message::EpochInfo {
                epoch: self.epoch.clone(),
            };
            out.broadcast(self.other_proposer_ids(), &info);
        }
    }

    /// Who may know a later epoch: the other proposers, and this epoch's
    /// acceptors (leaders announce each new epoch to the acceptors of the
    /// old and the new one).
    pub(super) fn epoch_askees(&self) -> Vec<RoleId> {
        self.other_proposer_ids()
            .chain(self.acceptor_ids())
            .collect()
    }

    /// Whether a ballot of a later epoch than this proposer's was seen: it
    /// must learn that epoch before it campaigns again.
    pub(super) fn behind_an_epoch(&self) -> bool {
        self.highest_seen.epoch > self.epoch.membership.epoch
    }

    pub(super) fn handle_epoch_query(&mut self, from: RoleId, out: &mut Output<ProposerWrite>) {
        if self.epoch.membership.epoch > 0 {
            let epoch = self.epoch.clone();
            out.send(from, Message::EpochInfo { epoch });
        }
    }

    pub(super) fn handle_epoch_info(
        &mut self,
        now: Millis,
        epoch: Epoch,
        out: &mut Output<ProposerWrite>,
    ) {
        if epoch.membership.epoch > self.epoch.membership.epoch {
            self.enter_epoch(now, epoch, out);
        }
    }
}
