//! Round discovery: a proposer whose store holds no round learns the
//! highest promised round before it takes its first ballot.
//!
//! A proposer persists each round before it uses it, so a restart never
//! reuses one. A store that holds no round is new: either the proposer
//! never used a round, or its earlier store is gone (a lost disk, a move
//! to another node, `synod node --init`). Then the rounds it used may
//! still be the ballots of values acceptors accepted, and proposing a
//! different value under the same ballot breaks Paxos. So before its
//! first ballot it asks every acceptor for its highest promise
//! (`RoundQuery`) and waits for a phase-2 quorum of answers
//! (`RoundReport`). A ballot that ever carried an Accept was promised by a
//! phase-1 quorum first; every phase-1 quorum meets every phase-2 quorum,
//! and promises only rise, so the highest answer is at least that round,
//! and the first round taken is above it. (A ballot that only ever went
//! out in Prepares may be used again: no accepted value carries it.)
//!
//! The quorums are the current epoch's, so the answer covers only the
//! rounds used in that epoch: a proposer discovers its rounds again in
//! each epoch it enters (an earlier life may have used rounds in a later
//! epoch than the one a wiped proposer starts in). It persists the epoch
//! it last discovered in (`ProposerWrite::RoundsKnown`), so a restart in
//! the middle of an epoch change asks again too.
//!
//! Until the answers are in, the proposer starts no campaign and no
//! register ballot; it asks again, at most once per retransmit interval,
//! each time it wants one. Following a leader and forwarding commands need
//! no ballot and go on meanwhile.

use super::{Proposer, ProposerState, ProposerWrite};
use crate::message::Message;
use crate::output::Output;
use crate::types::{Ballot, Millis, RoleId};
use std::collections::BTreeMap;

/// Whether the proposer knows a round above every one it may have used.
#[derive(Clone, Debug)]
pub(super) enum RoundFloor {
    /// Its store recorded a round (`ProposerState::max_round`), or a
    /// phase-2 quorum of acceptors answered: every ballot it takes from
    /// here is new.
    Known,
    /// Its store holds no round: waiting for the acceptors' answers.
    Asking {
        /// The highest promise each acceptor reported.
        reports: BTreeMap<u32, Ballot>,
        /// When the question last went out.
        asked_at: Option<Millis>,
    },
}

impl RoundFloor {
    /// The floor of a proposer resuming from `state`: known if the store
    /// recorded a round and discovery completed in its epoch.
    pub(super) fn for_stored(state: &ProposerState) -> Self {
        let known = state.max_round > 0 && state.rounds_known_in >= state.epoch_number();
        match known {
            true => RoundFloor::Known,
            false => Self::asking(),
        }
    }

    /// Not known yet: ask.
    pub(super) fn asking() -> Self {
        RoundFloor::Asking {
            reports: BTreeMap::new(),
            asked_at: None,
        }
    }
}

impl Proposer {
    /// Whether this proposer may take a ballot now. If not, it asks the
    /// acceptors (unless it asked less than a retransmit interval ago).
    pub(super) fn may_take_ballot(&mut self, now: Millis, out: &mut Output<ProposerWrite>) -> bool {
        let RoundFloor::Asking { asked_at, .. } = &mut self.round_floor else {
            return true;
        };
        let due = asked_at.is_none_or(|at| now >= at + self.config.retransmit_interval);
        if due {
            *asked_at = Some(now);
            out.broadcast(self.acceptor_ids(), &Message::RoundQuery);
        }
        false
    }

    /// An acceptor's highest promise. Once a phase-2 quorum has answered,
    /// the highest of them is a floor for every new round.
    pub(super) fn handle_round_report(
        &mut self,
        from: RoleId,
        promised: Ballot,
        out: &mut Output<ProposerWrite>,
    ) {
        let RoundFloor::Asking { reports, .. } = &mut self.round_floor else {
            return;
        };
        reports.insert(from.index, promised);
        if !self
            .epoch
            .membership
            .phase2(&reports.keys().copied().collect())
        {
            return;
        }
        let highest = reports.values().copied().max().unwrap_or(Ballot::ZERO);
        self.highest_seen = self.highest_seen.max(highest);
        self.round_floor = RoundFloor::Known;
        let write = ProposerWrite::RoundsKnown(self.epoch.membership.epoch);
        self.state.apply(&write);
        out.persist.push(write);
    }

    /// Whether this proposer knows a round above every one it may have
    /// used (see the module docs).
    pub fn knows_its_rounds(&self) -> bool {
        matches!(self.round_floor, RoundFloor::Known)
    }
}
