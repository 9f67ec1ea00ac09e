//! Read index: linearizable reads that take no log slot.
//!
//! A learner asks the leader for a read index (`ReadIndex { id }`). The
//! leader notes the slot its next proposal would take (every value chosen
//! before the request arrived is below it: chosen by this leader, or
//! re-proposed by it in phase 1), then runs a **confirmation round**:
//! `Confirm { ballot, round }` to the acceptors, each answering
//! `Confirmed` if it has promised nothing higher (no write), else `Nack`.
//! Once a phase-2 quorum confirmed, no higher ballot had completed phase 1
//! when the round started (any phase-1 quorum meets that phase-2 quorum),
//! so no other leader chose anything this one does not cover; the leader
//! answers `ReadReady { id, index }`, and the learner serves the read once
//! it has applied every slot below the index.
//!
//! Reads that arrive while a round is out wait for the next one (a round
//! sent before a read arrived cannot vouch for it); one round serves
//! every read waiting when it was sent. Unanswered `Confirm`s are resent
//! every retransmit interval; a leader that stops leading drops its reads
//! (learners ask again).

use super::{Phase, Proposer, ProposerWrite};
use crate::message::Message;
use crate::output::Output;
use crate::types::{Ballot, Millis, RoleId, Slot};
use std::collections::BTreeSet;

/// Most reads one leader holds; past it the oldest waiting ones are
/// dropped (their learners ask again).
const MAX_READS: usize = 100_000;

/// A learner's read waiting for its index.
#[derive(Clone, Debug)]
struct Read {
    from: RoleId,
    id: u64,
    index: Slot,
}

/// A confirmation round in flight.
#[derive(Clone, Debug)]
struct Round {
    number: u64,
    ballot: Ballot,
    reads: Vec<Read>,
    confirmed: BTreeSet<u32>,
    sent_at: Millis,
}

/// The leader's reads: waiting for a round, and in the round out.
#[derive(Clone, Debug, Default)]
pub(super) struct Reads {
    waiting: Vec<Read>,
    round: Option<Round>,
    rounds: u64,
}

impl Reads {
    /// When the round out is due for a resend.
    pub(super) fn next_deadline(&self, retransmit: Millis) -> Option<Millis> {
        self.round
            .as_ref()
            .map(|round| round.sent_at.saturating_add(retransmit))
    }
}

impl Proposer {
    /// A learner asks for a read index; only a leader answers.
    pub(super) fn handle_read_index(
        &mut self,
        now: Millis,
        from: RoleId,
        id: u64,
        out: &mut Output<ProposerWrite>,
    ) {
        let Phase::Leading(leading) = &self.phase else {
            return;
        };
        let index = leading.next_slot();
        if self.reads.waiting.len() >= MAX_READS {
            self.reads.waiting.remove(0);
        }
        self.reads.waiting.push(Read { from, id, index });
        self.start_confirm_round(now, out);
    }

    /// Send a round for the waiting reads, unless one is out.
    fn start_confirm_round(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        let Some(ballot) = self.leading_ballot() else {
            return;
        };
        if self.reads.round.is_some() || self.reads.waiting.is_empty() {
            return;
        }
        self.reads.rounds += 1;
        let number = self.reads.rounds;
        self.reads.round = Some(Round {
            number,
            ballot,
            reads: std::mem::take(&mut self.reads.waiting),
            confirmed: BTreeSet::new(),
            sent_at: now,
        });
        let confirm = Message::Confirm {
            ballot,
            round: number,
        };
        out.broadcast(self.acceptor_ids().collect::<Vec<_>>(), &confirm);
    }

    /// An acceptor confirmed round `round` of `ballot`.
    pub(super) fn handle_confirmed(
        &mut self,
        now: Millis,
        from: RoleId,
        ballot: Ballot,
        round: u64,
        out: &mut Output<ProposerWrite>,
    ) {
        let Some(current) = self.reads.round.as_mut() else {
            return;
        };
        if current.number != round || current.ballot != ballot {
            return;
        }
        current.confirmed.insert(from.index);
        if !self.epoch.membership.phase2(&current.confirmed) {
            return;
        }
        let done = self.reads.round.take().expect("checked above");
        for read in done.reads {
            let ready = Message::ReadReady {
                id: read.id,
                index: read.index,
            };
            out.send(read.from, ready);
        }
        self.start_confirm_round(now, out);
    }

    /// Resend the round's `Confirm` to the acceptors that have not
    /// answered, every retransmit interval.
    pub(super) fn resend_confirm(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        let retransmit = self.config.retransmit_interval;
        let due = self
            .reads
            .round
            .as_ref()
            .is_some_and(|round| now >= round.sent_at.saturating_add(retransmit));
        if !due {
            return;
        }
        let acceptors = &self.epoch.membership.acceptors;
        let round = self.reads.round.as_mut().expect("due");
        round.sent_at = now;
        let confirm = Message::Confirm {
            ballot: round.ballot,
            round: round.number,
        };
        for acceptor in acceptors.iter().filter(|a| !round.confirmed.contains(a)) {
            out.send(RoleId::acceptor(*acceptor), confirm.clone());
        }
    }

    /// Leadership ended: the reads go (their learners ask again).
    pub(super) fn drop_reads(&mut self) {
        self.reads.waiting.clear();
        self.reads.round = None;
    }
}
