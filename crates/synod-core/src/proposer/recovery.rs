//! Reading slots an earlier epoch decided, for a learner that missed them.
//!
//! A new epoch's acceptors hold nothing below its first slot, so a leader
//! asked (by an escalated catch-up) for a slot an earlier epoch decided
//! reads it from that epoch's acceptors: a Prepare of its own ballot to
//! them, promise pages as in phase 1, and once a phase-1 quorum of them
//! has reported on the range, the highest-ballot value of each slot. Every
//! such slot is chosen (an epoch starts only once every slot before it
//! is), every value accepted for a chosen slot in the choosing ballot or a
//! higher one is the chosen value, and a phase-1 quorum meets the phase-2
//! quorum that chose it: so the highest value reported is the chosen one,
//! and the leader sends it as decided, without a phase 2. Slots those
//! acceptors trimmed are in learners' snapshots instead.

use super::{PageCursors, Phase, PromisePage, Proposer, ProposerWrite, keep_highest};
use crate::membership::Membership;
use crate::message::Message;
use crate::output::Output;
use crate::types::{Ballot, Millis, RoleId, Slot, Value};
use std::collections::BTreeMap;

/// A read of `[from, end)` from the acceptors of the epoch that decided it.
#[derive(Clone, Debug)]
pub(super) struct OldRead {
    membership: Membership,
    from: Slot,
    end: Slot,
    /// Where each acceptor's pages have got to (complete at `end`).
    pages: PageCursors,
    adopted: BTreeMap<Slot, (Ballot, Value)>,
    /// The highest trim point reported: nothing below it can be read.
    trimmed: Slot,
    /// When a page last advanced the read (or it began).
    progressed: Millis,
}

impl Proposer {
    /// A learner escalated a catch-up from `from` (below this epoch's first
    /// slot): read the slots from the epoch that decided them, unless a
    /// read is under way (one at a time; one without a page for a
    /// retransmit interval is started over).
    pub(super) fn read_old_slots(
        &mut self,
        now: Millis,
        from: Slot,
        to: Slot,
        out: &mut Output<ProposerWrite>,
    ) {
        let Some((membership, epoch_end)) = self.epoch.decided_by(from) else {
            return; // older than this proposer remembers: peers' snapshots
        };
        let membership = membership.clone();
        let window = self.config.pipeline_window as u64;
        let end = to.min(epoch_end).min(from.saturating_add(window));
        let retransmit = self.config.retransmit_interval;
        let Phase::Leading(leading) = &mut self.phase else {
            return;
        };
        let busy = leading
            .old_read
            .as_ref()
            .is_some_and(|read| now < read.progressed + retransmit);
        if busy || end <= from {
            return;
        }
        let prepare = Message::Prepare {
            ballot: leading.ballot,
            from_slot: from,
        };
        let acceptors: Vec<RoleId> = membership
            .acceptors
            .iter()
            .map(|a| RoleId::acceptor(*a))
            .collect();
        leading.old_read = Some(OldRead {
            membership,
            from,
            end,
            pages: PageCursors::new(from),
            adopted: BTreeMap::new(),
            trimmed: 0,
            progressed: now,
        });
        out.broadcast(acceptors, &prepare);
    }

    /// A promise page for the old-epoch read: adopt what it reports in the
    /// range, ask for the next page, and once a phase-1 quorum of that
    /// epoch has covered the range, send every slot read as decided.
    pub(super) fn handle_old_read_page(
        &mut self,
        now: Millis,
        from: RoleId,
        ballot: Ballot,
        page: PromisePage,
        out: &mut Output<ProposerWrite>,
    ) {
        let Phase::Leading(leading) = &mut self.phase else {
            return;
        };
        let Some(read) = leading.old_read.as_mut() else {
            return;
        };
        if leading.ballot != ballot || !read.membership.acceptors.contains(&from.index) {
            return;
        }
        let Some(fresh) = read.pages.fresh(from.index, &page) else {
            return;
        };
        read.trimmed = read.trimmed.max(page.trimmed_below);
        read.progressed = now;
        for entry in page.accepted {
            if fresh.contains(&entry.slot) && entry.slot < read.end {
                keep_highest(&mut read.adopted, entry);
            }
        }
        let next = page.next.filter(|next| *next < read.end);
        read.pages.advance(from.index, next);
        if let Some(from_slot) = next {
            out.send(from, Message::Prepare { ballot, from_slot });
            return;
        }
        if !read.membership.phase1(&read.pages.complete()) {
            return;
        }
        let read = leading.old_read.take().expect("checked above");
        let readable = read.trimmed.max(read.from)..read.end;
        for (slot, (_, value)) in read.adopted.iter().filter(|(s, _)| readable.contains(s)) {
            let decided = Message::Decided {
                slot: *slot,
                value: value.clone(),
            };
            out.broadcast(self.learner_ids(), &decided);
        }
    }
}
