//! Carrying single-decree instances into a new epoch.
//!
//! An instance's votes live at the acceptors of the epoch that took them;
//! the next epoch's acceptors know nothing of them, so without a carry a
//! proposer there could decide an instance a second time. So the leader
//! of a new epoch E runs, once, what amounts to one ballot of every
//! instance at once: the carry ballot `(E, round 0, leader)`, below every
//! ballot a proposer takes in E (rounds start at 1).
//! - Phase 1 over the previous epoch: [`Message::InstanceRead`] pages from
//!   a phase-1 quorum of its acceptors. Each answers only once it knows E,
//!   and from then on refuses instance ballots of earlier epochs, so
//!   nothing more is chosen there. For each instance the highest-ballot
//!   value read is the one the previous epoch may have chosen.
//! - Phase 2 in E: [`Message::InstanceCarry`] of those values to E's
//!   acceptors, page by page, each page acknowledged by a phase-2 quorum.
//! - Then `open`: acceptors of E vote on instances in E only once told the
//!   carry completed. So every phase 1 of an instance in E meets a
//!   carried value (or a higher one), as if a proposer had run both
//!   phases in the carry ballot.
//!
//! Nothing is ever decided in a carry ballot (it is never announced), so
//! two carries racing (a leader change mid-carry, or a proposer whose
//! registers wait carrying beside the leader) can only disagree on
//! instances the previous epoch did not choose. A proposer that finds any
//! acceptor of E open knows the carry completed and skips it. The next
//! reconfiguration waits for the carry ([`Proposer::reconfigure`]), so the
//! previous epoch's acceptors are needed until it ends, and no longer.

use super::{Phase, Proposer, ProposerWrite};
use crate::message::{AcceptedRegister, CarriedVote, CarryPage, Message};
use crate::output::Output;
use crate::types::{Ballot, ByteBudget, InstanceName, Millis, RoleId};
use std::collections::{BTreeMap, BTreeSet};

/// Where this proposer stands on the carry into its epoch.
#[derive(Clone, Debug)]
pub(super) enum CarryState {
    /// Not known to be complete; the leader runs it.
    Unknown,
    /// The leader is carrying.
    Running(Carry),
    /// Complete (or epoch 0, which has nothing to carry). The acceptors
    /// that confirmed they are open; the leader tells the others with its
    /// heartbeats.
    Complete { opened: BTreeSet<u32> },
}

/// A carry in progress: one page at a time, names from `from` on.
#[derive(Clone, Debug)]
pub(super) struct Carry {
    ballot: Ballot,
    /// The page being read or written.
    page: CarryPage,
    from: InstanceName,
    stage: Stage,
    retry_at: Millis,
    /// When the carry began or last completed a page. A leader whose
    /// carry makes no progress for `quorum_timeout` gives up its ballot,
    /// as with an Accept: the registers of its epoch wait on the carry,
    /// and another proposer may reach the acceptors.
    progressed: Millis,
}

#[derive(Clone, Debug)]
enum Stage {
    /// Reading the page at `from` from the previous epoch's acceptors.
    Reading {
        pages: BTreeMap<u32, (Vec<CarriedVote>, Option<InstanceName>)>,
    },
    /// Writing the merged page; `next` is where the following one starts
    /// (`None`: this is the last).
    Writing {
        votes: Vec<CarriedVote>,
        next: Option<InstanceName>,
        acked: BTreeSet<u32>,
    },
}

impl CarryState {
    /// Nothing (more) to carry.
    pub(super) fn complete() -> Self {
        CarryState::Complete {
            opened: BTreeSet::new(),
        }
    }
}

impl Proposer {
    /// Whether every instance of earlier epochs is carried into this one.
    pub fn instances_carried(&self) -> bool {
        matches!(self.carry, CarryState::Complete { .. })
    }

    /// The carry ballot of this proposer in its epoch.
    fn carry_ballot(&self) -> Ballot {
        Ballot::in_epoch(self.epoch.membership.epoch, 0, self.config.id)
    }

    /// The previous epoch's acceptors (the carry reads them).
    fn previous_acceptors(&self) -> Vec<RoleId> {
        let previous = self.epoch.past.first().map(|(_, m)| m.acceptors.clone());
        let ids = previous.unwrap_or_default();
        ids.into_iter().map(RoleId::acceptor).collect()
    }

    /// A leader, or a proposer with registers waiting, that does not know
    /// the carry complete starts it: the first read, and an empty carry
    /// that asks the acceptors whether someone completed it already. (A
    /// leader that completed a carry may be cut off before its `open`
    /// arrives; any proposer may carry, see the module docs.)
    pub(super) fn start_carry_if_needed(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        let leading = matches!(self.phase, Phase::Leading(_));
        let waiting = !self.registers.is_empty();
        let unknown = matches!(self.carry, CarryState::Unknown);
        if !(leading || waiting) || !unknown || !self.knows_its_rounds() {
            return;
        }
        let ballot = self.carry_ballot();
        // A round of its own names the run, so no answer to an earlier
        // run (of this life or a past one) counts in this one.
        let run = self.next_ballot(out).round;
        let carry = Carry {
            ballot,
            page: CarryPage { run, page: 1 },
            from: InstanceName::new(),
            stage: Stage::Reading {
                pages: BTreeMap::new(),
            },
            retry_at: now + self.config.retransmit_interval,
            progressed: now,
        };
        self.probe_carry_if_unknown(out);
        let read = Message::InstanceRead {
            ballot,
            from: carry.from.clone(),
        };
        out.broadcast(self.previous_acceptors(), &read);
        self.carry = CarryState::Running(carry);
    }

    /// A proposer that does not know whether the carry into its epoch
    /// completed asks the acceptors (an empty carry): one that is open
    /// says so, and the proposer then opens the others. So registers do
    /// not depend on the leader alone to spread `open` (a leader cut off
    /// from the acceptors, with nothing outstanding, may lead on for
    /// long).
    pub(super) fn probe_carry_if_unknown(&self, out: &mut Output<ProposerWrite>) {
        if self.epoch.membership.epoch == 0 || !matches!(self.carry, CarryState::Unknown) {
            return;
        }
        out.broadcast(self.acceptor_ids(), &self.empty_carry(false));
    }

    /// A carry with no votes, of this proposer's carry ballot: a probe
    /// (`open: false`), or the news that the carry completed.
    fn empty_carry(&self, open: bool) -> Message {
        Message::InstanceCarry {
            ballot: self.carry_ballot(),
            page: CarryPage::default(),
            votes: Vec::new(),
            open,
        }
    }

    /// A leader that steps down leaves its carry to the next one.
    pub(super) fn abandon_carry(&mut self) {
        if matches!(self.carry, CarryState::Running(_)) {
            self.carry = CarryState::Unknown;
        }
    }

    /// When the carry next resends (or gives up).
    pub(super) fn carry_deadline(&self) -> Option<Millis> {
        match &self.carry {
            CarryState::Running(carry) => {
                let give_up = carry.progressed.saturating_add(self.config.quorum_timeout);
                Some(carry.retry_at.min(give_up))
            }
            _ => None,
        }
    }

    /// Resend what the current page still waits for; give up the ballot
    /// if the carry is stuck.
    pub(super) fn tick_carry(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        self.start_carry_if_needed(now, out);
        let leading = matches!(self.phase, Phase::Leading(_));
        if let CarryState::Running(carry) = &self.carry
            && leading
            && now >= carry.progressed.saturating_add(self.config.quorum_timeout)
        {
            self.give_up_ballot(now);
            return;
        }
        let interval = self.config.retransmit_interval;
        let previous = self.previous_acceptors();
        let current: Vec<RoleId> = self.acceptor_ids().collect();
        let CarryState::Running(carry) = &mut self.carry else {
            return;
        };
        if now < carry.retry_at {
            return;
        }
        carry.retry_at = now + interval;
        match &carry.stage {
            Stage::Reading { pages } => {
                let read = Message::InstanceRead {
                    ballot: carry.ballot,
                    from: carry.from.clone(),
                };
                let pending = previous
                    .into_iter()
                    .filter(|a| !pages.contains_key(&a.index));
                out.broadcast(pending, &read);
            }
            Stage::Writing { votes, acked, .. } => {
                let write = Message::InstanceCarry {
                    ballot: carry.ballot,
                    page: carry.page,
                    votes: votes.clone(),
                    open: false,
                };
                let pending = current.into_iter().filter(|a| !acked.contains(&a.index));
                out.broadcast(pending, &write);
            }
        }
    }

    /// One page of an acceptor of the previous epoch. Once a phase-1
    /// quorum of them answered for this page, write the merge.
    pub(super) fn handle_instance_votes(
        &mut self,
        now: Millis,
        from: RoleId,
        page: (Ballot, InstanceName, Vec<CarriedVote>, Option<InstanceName>),
        out: &mut Output<ProposerWrite>,
    ) {
        let (ballot, first, votes, next) = page;
        let Some((_, previous)) = self.epoch.past.first() else {
            return;
        };
        if !previous.acceptors.contains(&from.index) {
            return;
        }
        let budget = self.config.reply_max_bytes;
        let CarryState::Running(carry) = &mut self.carry else {
            return;
        };
        let Stage::Reading { pages } = &mut carry.stage else {
            return;
        };
        if carry.ballot != ballot || carry.from != first {
            return;
        }
        pages.insert(from.index, (votes, next));
        if !previous.phase1(&pages.keys().copied().collect()) {
            return;
        }
        let (votes, next) = merge_pages(std::mem::take(pages), budget);
        let write = Message::InstanceCarry {
            ballot,
            page: carry.page,
            votes: votes.clone(),
            open: false,
        };
        carry.stage = Stage::Writing {
            votes,
            next,
            acked: BTreeSet::new(),
        };
        carry.progressed = now;
        carry.retry_at = now + self.config.retransmit_interval;
        out.broadcast(self.acceptor_ids(), &write);
    }

    /// An acceptor of this epoch holds the page written (or says it is
    /// open: the carry completed before). Once a phase-2 quorum holds it,
    /// read the next page, or open the epoch after the last.
    pub(super) fn handle_instance_carried(
        &mut self,
        now: Millis,
        from: RoleId,
        (ballot, page): (Ballot, CarryPage),
        open: bool,
        out: &mut Output<ProposerWrite>,
    ) {
        if ballot.epoch != self.epoch.membership.epoch {
            return;
        }
        if open {
            self.carry_complete(from.index, out);
            return;
        }
        let CarryState::Running(carry) = &mut self.carry else {
            return;
        };
        let Stage::Writing { next, acked, .. } = &mut carry.stage else {
            return;
        };
        if carry.ballot != ballot || carry.page != page {
            return;
        }
        acked.insert(from.index);
        if !self.epoch.membership.phase2(acked) {
            return;
        }
        let Some(next) = next.take() else {
            self.carry = CarryState::complete();
            self.tell_unopened(out);
            return;
        };
        carry.from = next;
        carry.page.page += 1;
        carry.progressed = now;
        carry.stage = Stage::Reading {
            pages: BTreeMap::new(),
        };
        carry.retry_at = now + self.config.retransmit_interval;
        let read = Message::InstanceRead {
            ballot,
            from: carry.from.clone(),
        };
        out.broadcast(self.previous_acceptors(), &read);
    }

    /// Acceptor `opened` is open in this epoch: the carry completed.
    fn carry_complete(&mut self, opened: u32, out: &mut Output<ProposerWrite>) {
        match &mut self.carry {
            CarryState::Complete { opened: all } => {
                all.insert(opened);
            }
            _ => {
                self.carry = CarryState::Complete {
                    opened: BTreeSet::from([opened]),
                };
                self.tell_unopened(out);
            }
        }
    }

    /// Tell the acceptors of this epoch that have not confirmed it that
    /// the carry is complete (with the leader's heartbeats).
    pub(super) fn tell_unopened(&self, out: &mut Output<ProposerWrite>) {
        let CarryState::Complete { opened } = &self.carry else {
            return;
        };
        if self.epoch.membership.epoch == 0 {
            return;
        }
        let pending = self.acceptor_ids().filter(|a| !opened.contains(&a.index));
        out.broadcast(pending, &self.empty_carry(true));
    }
}

/// Merge one page from each acceptor of a phase-1 quorum. Each reported
/// every name below its `next`, so below the lowest `next` the merge is
/// complete; keep the highest-ballot value of each instance there, as
/// many as fit in `budget` bytes (at least one). Returns the merged votes
/// and where the next page starts (`None`: every name is covered).
fn merge_pages(
    pages: BTreeMap<u32, (Vec<CarriedVote>, Option<InstanceName>)>,
    budget: usize,
) -> (Vec<CarriedVote>, Option<InstanceName>) {
    let mut end: Option<InstanceName> = None;
    for (_, next) in pages.values() {
        if let Some(next) = next
            && end.as_ref().is_none_or(|end| next < end)
        {
            end = Some(next.clone());
        }
    }
    let mut highest: BTreeMap<InstanceName, AcceptedRegister> = BTreeMap::new();
    let below_end = |name: &InstanceName| end.as_ref().is_none_or(|end| name < end);
    for vote in pages.into_values().flat_map(|(votes, _)| votes) {
        if !below_end(&vote.name) {
            continue;
        }
        match highest.get(&vote.name) {
            Some(known) if known.ballot >= vote.accepted.ballot => {}
            _ => {
                highest.insert(vote.name, vote.accepted);
            }
        }
    }
    let mut votes = Vec::new();
    let mut budget = ByteBudget::new(budget);
    for (name, accepted) in highest {
        let vote = CarriedVote { name, accepted };
        if !budget.take(vote.encoded_len()) {
            return (votes, Some(vote.name));
        }
        votes.push(vote);
    }
    (votes, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(name: &str, round: u64, value: u8) -> CarriedVote {
        CarriedVote {
            name: name.into(),
            accepted: AcceptedRegister {
                ballot: Ballot::new(round, 1),
                value: vec![value],
            },
        }
    }

    #[test]
    fn a_merge_keeps_the_highest_value_below_the_lowest_page_end() {
        let pages = BTreeMap::from([
            (
                1,
                (vec![vote("a", 1, 1), vote("c", 3, 3)], Some("d".into())),
            ),
            (
                2,
                (vec![vote("a", 2, 2), vote("b", 1, 9)], Some("c".into())),
            ),
            (3, (vec![vote("a", 1, 1)], None)),
        ]);
        let (votes, next) = merge_pages(pages, 1 << 20);
        assert_eq!(votes, vec![vote("a", 2, 2), vote("b", 1, 9)]);
        assert_eq!(next, Some("c".into()), "c is known to acceptor 1 only");
    }

    #[test]
    fn a_merge_stops_at_its_budget_and_a_complete_one_ends_the_carry() {
        let pages = BTreeMap::from([
            (1, (vec![vote("a", 1, 1), vote("b", 1, 2)], None)),
            (2, (vec![], None)),
        ]);
        let (votes, next) = merge_pages(pages.clone(), 1);
        assert_eq!((votes, next), (vec![vote("a", 1, 1)], Some("b".into())));
        let (votes, next) = merge_pages(pages, 1 << 20);
        assert_eq!((votes.len(), next), (2, None));
    }
}
