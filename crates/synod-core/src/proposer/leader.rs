//! The leader's side of the proposer: adopting values from promises, the
//! phase-2 pipeline, batching, heartbeats and answering catch-up.

use super::{EPOCH_INFO_EVERY, Phase, Preparing, Proposer, ProposerWrite, doubled_wait};
use crate::message::Message;
use crate::output::Output;
use crate::types::{Ballot, ByteBudget, ClockStamp, Command, Millis, RoleId, Slot, Value};
use std::collections::{BTreeMap, BTreeSet};

/// State while this proposer leads with `ballot`.
#[derive(Clone, Debug)]
pub(super) struct Leading {
    pub(super) ballot: Ballot,
    next_slot: Slot,
    in_flight: BTreeMap<Slot, InFlight>,
    /// When the next clock stamp is due.
    next_clock: Millis,
    /// A read of slots an earlier epoch decided (see `recovery.rs`).
    pub(super) old_read: Option<super::recovery::OldRead>,
}

impl Leading {
    /// The slot the next proposal takes.
    pub(super) fn next_slot(&self) -> Slot {
        self.next_slot
    }

    /// Take the next slot for a new proposal.
    pub(super) fn take_slot(&mut self) -> Slot {
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// The earliest Accept resend or quorum give-up among the slots in
    /// flight, or clock stamp (`clock_interval` 0: none).
    pub(super) fn next_deadline(&self, quorum_timeout: Millis, clock_interval: Millis) -> Millis {
        let clock = match clock_interval {
            0 => Millis::MAX,
            _ => self.next_clock,
        };
        self.in_flight
            .values()
            .map(|e| {
                let resend = e.last_sent.saturating_add(e.resend_after);
                resend.min(e.proposed_at.saturating_add(quorum_timeout))
            })
            .min()
            .unwrap_or(Millis::MAX)
            .min(clock)
    }
}

#[derive(Clone, Debug)]
struct InFlight {
    value: Value,
    bytes: usize,
    accepted_by: BTreeSet<u32>,
    proposed_at: Millis,
    last_sent: Millis,
    /// Wait before the next resend; doubles with each resend, so a slow
    /// (not lost) acceptor is not buried under copies of the same value.
    resend_after: Millis,
}

impl InFlight {
    fn new(value: Value, now: Millis, resend_after: Millis) -> Self {
        Self {
            bytes: value.commands().iter().map(Command::encoded_len).sum(),
            value,
            accepted_by: BTreeSet::new(),
            proposed_at: now,
            last_sent: now,
            resend_after,
        }
    }
}

impl Proposer {
    /// A majority promised: re-propose every reported value that is not
    /// known to be chosen (and every one a learner asked to recover), fill
    /// holes with no-ops, then stream new commands.
    pub(super) fn become_leader(
        &mut self,
        now: Millis,
        mut preparing: Preparing,
        out: &mut Output<ProposerWrite>,
    ) {
        let ballot = preparing.ballot;
        let floor = preparing.floor();
        let mut adopted = std::mem::take(&mut preparing.adopted);
        // A page read before a later one raised the chosen watermark may
        // have adopted values of slots now known chosen: stale ones, and
        // a stale stop sign among them would end the epoch at a slot
        // chosen with another value.
        adopted.retain(|slot, _| preparing.wanted(*slot));
        // The epoch may end at a stop sign: nothing is proposed after it.
        let stop = Self::end_of_epoch(&mut adopted);
        // Chosen slots need no proposal: every slot below `chosen` is
        // decided, and the promises covered everything from there up.
        // Nor do trimmed ones: their values are only in learners' snapshots.
        let mut resume = preparing.chosen.max(preparing.recover_end);
        self.first_unchosen = self.first_unchosen.max(preparing.chosen);
        self.trimmed_below = self.trimmed_below.max(preparing.trimmed);
        let mut end = adopted
            .last_key_value()
            .map_or(resume, |(slot, _)| (slot + 1).max(resume));
        if let Some((slot, _)) = &stop {
            end = slot + 1;
            resume = resume.min(end);
        }
        self.stop = stop;
        let watermark = self.watermark();
        let start = preparing.from_slot.max(floor);
        let slots = (start..preparing.recover_end.min(resume)).chain(resume..end);
        let mut in_flight = BTreeMap::new();
        for slot in slots {
            let value = adopted.remove(&slot).map_or(Value::Noop, |(_, v)| v);
            out.broadcast(
                self.acceptor_ids(),
                &Message::Accept {
                    ballot,
                    slot,
                    value: value.clone(),
                    chosen_upto: watermark,
                },
            );
            in_flight.insert(
                slot,
                InFlight::new(value, now, self.config.retransmit_interval),
            );
        }
        self.phase = Phase::Leading(Leading {
            ballot,
            next_slot: end,
            in_flight,
            next_clock: now,
            old_read: None,
        });
        self.next_heartbeat = now;
        self.leader = Some((self.config.id, ballot));
        self.lost_campaigns = 0;
        self.trim_to_safe_point(out);
        self.tick_leader(now, out);
    }

    pub(super) fn handle_accepted(
        &mut self,
        now: Millis,
        from: RoleId,
        ballot: Ballot,
        slot: Slot,
        out: &mut Output<ProposerWrite>,
    ) {
        let Phase::Leading(leading) = &mut self.phase else {
            return;
        };
        if leading.ballot != ballot {
            return;
        }
        let Some(entry) = leading.in_flight.get_mut(&slot) else {
            return;
        };
        entry.accepted_by.insert(from.index);
        if !self.epoch.membership.phase2(&entry.accepted_by) {
            return;
        }
        let value = leading.in_flight.remove(&slot).expect("present").value;
        out.broadcast(
            self.learner_ids(),
            &Message::Decided {
                slot,
                value: value.clone(),
            },
        );
        self.record_decided(slot, value);
        self.enter_next_epoch_if_ready(now, out);
        self.propose_queued(now, out);
    }

    /// Keep `value` in the decided cache, which is bounded by slots and by
    /// bytes: the oldest go first, but only from below `first_unchosen`
    /// (a slot decided past a gap is needed to move it on).
    fn record_decided(&mut self, slot: Slot, value: Value) {
        let bytes = value.encoded_len();
        if let Some(old) = self.decided.insert(slot, value) {
            self.decided_bytes -= old.encoded_len();
        }
        self.decided_bytes += bytes;
        while self.decided.contains_key(&self.first_unchosen) {
            self.first_unchosen += 1;
        }
        let over = |p: &Self| {
            p.decided.len() > p.config.decided_cache
                || p.decided_bytes > p.config.decided_cache_bytes
        };
        while over(self)
            && self
                .decided
                .first_key_value()
                .is_some_and(|(oldest, _)| *oldest + 1 < self.first_unchosen)
        {
            let (_, evicted) = self.decided.pop_first().expect("checked above");
            self.decided_bytes -= evicted.encoded_len();
        }
    }

    /// Fill the pipeline window with batches of queued commands: at most
    /// `pipeline_window` slots and (beyond the first) `pipeline_max_bytes`
    /// payload bytes in flight, so queued bulk data never delays heartbeats
    /// and votes by more than that much. Beyond `pipeline_eager` slots in
    /// flight only a full batch opens one; the rest waits for a decision.
    pub(super) fn propose_queued(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        if self.stop.is_some() {
            return; // the epoch ends: commands wait for the next one
        }
        loop {
            let Phase::Leading(leading) = &self.phase else {
                return;
            };
            let slots_full = leading.in_flight.len() >= self.config.pipeline_window;
            let in_flight_bytes: usize = leading.in_flight.values().map(|e| e.bytes).sum();
            let bytes_full =
                !leading.in_flight.is_empty() && in_flight_bytes >= self.config.pipeline_max_bytes;
            let eager = leading.in_flight.len() < self.config.pipeline_eager.max(1);
            if slots_full || bytes_full || self.queue.is_empty() || !(eager || self.full_batch()) {
                return;
            }
            let batch = self.take_batch();
            let watermark = self.watermark();
            let Phase::Leading(leading) = &mut self.phase else {
                return;
            };
            let slot = leading.take_slot();
            let ballot = leading.ballot;
            let value = Value::batch(batch);
            self.send_new_accept(now, ballot, slot, value, watermark, out);
        }
    }

    /// Propose `value` in `slot` (just taken) with the leading `ballot`.
    pub(super) fn send_new_accept(
        &mut self,
        now: Millis,
        ballot: Ballot,
        slot: Slot,
        value: Value,
        chosen_upto: Slot,
        out: &mut Output<ProposerWrite>,
    ) {
        let accept = Message::Accept {
            ballot,
            slot,
            value: value.clone(),
            chosen_upto,
        };
        out.broadcast(self.acceptor_ids(), &accept);
        let entry = InFlight::new(value, now, self.config.retransmit_interval);
        if let Phase::Leading(leading) = &mut self.phase {
            leading.in_flight.insert(slot, entry);
        }
    }

    /// Whether the queue holds a whole batch: `batch_max_commands`
    /// commands or `batch_max_bytes` bytes.
    fn full_batch(&self) -> bool {
        self.queue.len() >= self.config.batch_max_commands
            || self.queue.bytes() >= self.config.batch_max_bytes
    }

    /// Up to `batch_max_commands` commands and `batch_max_bytes` bytes (at
    /// least one command, however large).
    fn take_batch(&mut self) -> Vec<Command> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.queue.front() {
            let size = next.encoded_len();
            let full = batch.len() >= self.config.batch_max_commands
                || bytes + size > self.config.batch_max_bytes;
            if full && !batch.is_empty() {
                break;
            }
            bytes += size;
            batch.push(self.queue.pop_front().expect("front exists"));
        }
        batch
    }

    /// Heartbeats and retransmission of unanswered Accepts; give the
    /// ballot up if an Accept has waited `quorum_timeout` for a majority.
    pub(super) fn tick_leader(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        if self.quorum_lost(now) {
            self.give_up_ballot(now);
            return;
        }
        let Some(ballot) = self.leading_ballot() else {
            return;
        };
        self.heartbeat_if_due(now, ballot, out);
        self.stamp_clock_if_due(now, out);
        self.resend_confirm(now, out);
        let retransmit = self.config.retransmit_interval;
        let first_unchosen = self.watermark();
        let acceptors: Vec<u32> = self.epoch.membership.acceptors.clone();
        let Phase::Leading(leading) = &mut self.phase else {
            return;
        };
        for (slot, entry) in leading.in_flight.iter_mut() {
            if now < entry.last_sent + entry.resend_after {
                continue;
            }
            entry.last_sent = now;
            entry.resend_after = doubled_wait(entry.resend_after, retransmit);
            let accept = Message::Accept {
                ballot: leading.ballot,
                slot: *slot,
                value: entry.value.clone(),
                chosen_upto: first_unchosen,
            };
            for acceptor in acceptors.iter().filter(|a| !entry.accepted_by.contains(a)) {
                out.send(RoleId::acceptor(*acceptor), accept.clone());
            }
        }
    }

    /// Propose this leader's clock reading in the next slot, every
    /// `clock_interval` (right away once elected). A stamp does not wait
    /// for room in the pipeline window: it is a few bytes, and a stamp
    /// held back behind a full window would make the log's clock lag.
    fn stamp_clock_if_due(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        let interval = self.config.clock_interval;
        let due = matches!(&self.phase, Phase::Leading(l) if interval > 0 && now >= l.next_clock);
        if !due || self.stop.is_some() {
            return;
        }
        let watermark = self.watermark();
        let Phase::Leading(leading) = &mut self.phase else {
            return;
        };
        leading.next_clock = now.saturating_add(interval);
        let slot = leading.take_slot();
        let ballot = leading.ballot;
        let value = Value::Clock(ClockStamp {
            ballot,
            millis: now,
        });
        self.send_new_accept(now, ballot, slot, value, watermark, out);
    }

    /// Tell the other proposers and the learners who leads and how far
    /// the log is decided, every `heartbeat_interval`.
    pub(super) fn heartbeat_if_due(
        &mut self,
        now: Millis,
        ballot: Ballot,
        out: &mut Output<ProposerWrite>,
    ) {
        if now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = now + self.config.heartbeat_interval;
        let targets: Vec<RoleId> = self
            .other_proposer_ids()
            .chain(self.learner_ids())
            .collect();
        let heartbeat = Message::Heartbeat {
            ballot,
            decided_upto: self.watermark(),
        };
        out.broadcast(targets, &heartbeat);
        if self.trimmed_below > 0 {
            // Repeated with each heartbeat, so an acceptor that missed a
            // Trim (or was down) catches up; acceptors ignore repeats.
            let trim = Message::Trim {
                below: self.trimmed_below,
                ballot,
            };
            out.broadcast(self.acceptor_ids(), &trim);
        }
        self.heartbeats_sent += 1;
        if self.epoch.membership.epoch > 0 && self.heartbeats_sent % EPOCH_INFO_EVERY == 1 {
            // So that every acceptor of this and the remembered earlier
            // epochs can tell a proposer that missed the change (or lost
            // its store) which configuration is current. Every tenth
            // heartbeat: an acceptor asked in an unknown epoch asks the
            // sender itself, so this only serves proposers that ask.
            let info = Message::EpochInfo {
                epoch: self.epoch.clone(),
            };
            let past = self.epoch.past.iter().map(|(_, m)| &m.acceptors);
            let all: BTreeSet<u32> = std::iter::once(&self.epoch.membership.acceptors)
                .chain(past)
                .flatten()
                .copied()
                .collect();
            out.broadcast(all.into_iter().map(RoleId::acceptor), &info);
            // Every placed proposer and learner too: their nodes follow
            // the placement the configuration carries, and a node that was
            // down at a move learns it here.
            let others = self.other_proposer_ids().chain(self.learner_ids());
            out.broadcast(others, &info);
            self.tell_unopened(out);
        }
    }

    /// A learner's snapshot is durable up to `upto`. The leader trims the
    /// acceptors below the cluster-wide safe point: the lowest snapshot end
    /// over every learner of the configuration (a learner not heard from
    /// counts as 0), never past the chosen prefix. Then any learner can be
    /// rebuilt from any other's snapshot and the log the acceptors keep.
    pub(super) fn handle_snapshotted(
        &mut self,
        from: RoleId,
        upto: Slot,
        out: &mut Output<ProposerWrite>,
    ) {
        if !self.config.learners.contains(&from.index) {
            return;
        }
        let known = self.learner_snapshots.entry(from.index).or_default();
        *known = (*known).max(upto);
        if matches!(self.phase, Phase::Leading(_)) {
            self.trim_to_safe_point(out);
        }
    }

    pub(super) fn trim_to_safe_point(&mut self, out: &mut Output<ProposerWrite>) {
        let safe = self
            .epoch
            .membership
            .learners
            .iter()
            .map(|l| self.learner_snapshots.get(l).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
            .min(self.watermark());
        let Some(ballot) = self.leading_ballot() else {
            return;
        };
        if safe > self.trimmed_below {
            self.trimmed_below = safe;
            let trim = Message::Trim {
                below: safe,
                ballot,
            };
            out.broadcast(self.acceptor_ids(), &trim);
        }
    }

    fn quorum_lost(&self, now: Millis) -> bool {
        let Phase::Leading(leading) = &self.phase else {
            return false;
        };
        let timeout = self.config.quorum_timeout;
        leading
            .in_flight
            .values()
            .any(|entry| now.saturating_sub(entry.proposed_at) >= timeout)
    }

    /// Give the commands of undecided slots back to the queue when a ballot
    /// ends, so they are proposed (or forwarded) again. Learners drop a
    /// command that ends up decided twice.
    pub(super) fn requeue_in_flight(&mut self) {
        let Phase::Leading(leading) = &mut self.phase else {
            return;
        };
        let in_flight = std::mem::take(&mut leading.in_flight);
        for entry in in_flight.into_values().rev() {
            for command in entry.value.commands().iter().rev() {
                self.queue.push_front(command.clone());
            }
        }
    }

    /// A learner misses `[from_slot, to_slot)`: send what the cache holds,
    /// up to `reply_max_bytes`. On an escalated request the leader recovers
    /// slots nobody has by running phase 1 again from `from_slot` (the
    /// acceptors still hold every chosen value), for at most
    /// `pipeline_window` slots of them at a time.
    pub(super) fn handle_catch_up(
        &mut self,
        now: Millis,
        from: RoleId,
        from_slot: Slot,
        to_slot: Slot,
        escalate: bool,
        out: &mut Output<ProposerWrite>,
    ) {
        if to_slot <= from_slot {
            return; // malformed or empty request
        }
        let mut budget = ByteBudget::new(self.config.reply_max_bytes);
        for (slot, value) in self.decided.range(from_slot..to_slot) {
            if !budget.take(value.encoded_len()) {
                break;
            }
            out.send(
                from,
                Message::Decided {
                    slot: *slot,
                    value: value.clone(),
                },
            );
        }
        let known_end = to_slot.min(self.first_unchosen).max(from_slot);
        let cached = self.decided.range(from_slot..known_end).count() as u64;
        let missing = cached < known_end.saturating_sub(from_slot);
        // A slot already in flight in this ballot is being recovered (or
        // decided) right now: a new phase 1 would only supersede it, and
        // learners asking again every catch-up interval would keep that up
        // forever.
        let in_flight = match &self.phase {
            Phase::Leading(leading) => leading.in_flight.contains_key(&from_slot),
            _ => true,
        };
        // Below the trim point the acceptors hold nothing to recover: the
        // learner fetches a peer's snapshot instead. Below this epoch's
        // first slot, the epoch that decided the slot is read.
        let trimmed = from_slot < self.trimmed_below;
        if escalate && missing && !trimmed && from_slot < self.epoch.start {
            self.read_old_slots(now, from_slot, known_end, out);
            return;
        }
        if escalate && missing && !in_flight && !trimmed {
            let window = self.config.pipeline_window as u64;
            let recover_end = known_end.min(from_slot.saturating_add(window));
            self.start_phase1(now, from_slot, recover_end, out);
        }
    }
}
