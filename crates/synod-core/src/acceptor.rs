//! The acceptor: votes on ballots and remembers its votes.
//!
//! One promise covers the whole log (Multi-Paxos: a leader prepares every
//! slot from `from_slot` up with one ballot); each single-decree instance has
//! its own promise, so a register election never disturbs the log leader.
//!
//! Safety rests on two rules, both enforced here and both durable before
//! any reply leaves (see [`Output`]):
//! - never promise or accept a ballot below the current promise;
//! - report every accepted value in a Promise, so a new leader adopts it.
//!
//! A Promise is paged: it carries at most `reply_max_bytes` of accepted
//! entries and says where it stopped, and the proposer asks for the next
//! page with the same ballot. So a phase-1 reply fits a frame whatever the
//! history. Each Promise also reports `chosen_upto`, the highest "every
//! slot below is chosen" a leader has told this acceptor (it rides on
//! Accepts and is persisted with them), so a leader elected after a
//! restart skips the chosen prefix.

use crate::membership::Epoch;
use crate::message::{AcceptedEntry, AcceptedRegister, CarriedVote, CarryPage, Message};
use crate::output::Output;
use crate::types::{Ballot, ByteBudget, InstanceName, Role, RoleId, Slot, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A durable change to an acceptor's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptorWrite {
    /// Promise the log ballot.
    Promise(Ballot),
    /// Every slot below this is chosen (a leader said so); only rises.
    Chosen(Slot),
    /// Accept `value` for `slot` in `ballot` (which also becomes the promise
    /// if it is higher).
    Accept {
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: Value,
    },
    /// Promise `ballot` for one instance.
    InstancePromise {
        /// The instance.
        name: InstanceName,
        /// The ballot.
        ballot: Ballot,
    },
    /// Accept `value` for one instance in `ballot`.
    InstanceAccept {
        /// The instance.
        name: InstanceName,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: Vec<u8>,
    },
    /// Discard the accepted values below this slot; only rises.
    Trim(Slot),
    /// The latest epoch (configuration) a leader announced; only rises.
    Epoch(Epoch),
    /// Every instance vote of the epochs before this one was carried into
    /// it: instance votes in it are open here. Only rises.
    InstancesOpen(u32),
}

/// A value accepted for one slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedValue {
    /// The ballot it was accepted in.
    pub ballot: Ballot,
    /// The value.
    pub value: Value,
}

/// One single-decree instance as an acceptor sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterVote {
    /// The instance's promise.
    pub promised: Ballot,
    /// What was accepted, if anything.
    pub accepted: Option<AcceptedRegister>,
}

/// Everything an acceptor must remember across a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptorState {
    /// The log promise.
    pub promised: Ballot,
    /// Accepted values by slot.
    pub accepted: BTreeMap<Slot, AcceptedValue>,
    /// Single-decree instances by name.
    pub instances: BTreeMap<InstanceName, RegisterVote>,
    /// Every slot below this is chosen, as leaders told this acceptor.
    pub chosen_upto: Slot,
    /// Accepted values below this slot were discarded (a leader's
    /// [`Message::Trim`]); nothing is stored below it again.
    pub trimmed_below: Slot,
    /// The latest epoch a leader announced ([`Message::EpochInfo`]):
    /// told to proposers that ask, so one that missed a reconfiguration
    /// (or lost its store) finds the current configuration.
    pub epoch: Option<Epoch>,
    /// The latest epoch whose carry completed ([`Message::InstanceCarry`]):
    /// instance ballots of a later epoch wait, so no instance is decided
    /// in an epoch before the values the earlier one may have chosen are
    /// there (see `proposer/carry.rs`).
    pub instances_open: u32,
}

impl AcceptorState {
    /// The highest ballot promised, for the log or any instance (every
    /// accepted ballot is also promised). A scan of the instances, which
    /// are bounded; asked only by proposers starting on empty stores.
    pub fn highest_promise(&self) -> Ballot {
        let instances = self.instances.values().map(|vote| vote.promised);
        instances.fold(self.promised, Ballot::max)
    }

    /// Apply one write. Storage implementations and the acceptor itself use
    /// this one definition, so memory and disk cannot disagree.
    pub fn apply(&mut self, write: &AcceptorWrite) {
        match write {
            AcceptorWrite::Promise(ballot) => self.promised = self.promised.max(*ballot),
            AcceptorWrite::Chosen(slot) => self.chosen_upto = self.chosen_upto.max(*slot),
            AcceptorWrite::Accept {
                slot,
                ballot,
                value,
            } => {
                self.promised = self.promised.max(*ballot);
                if *slot >= self.trimmed_below {
                    let entry = AcceptedValue {
                        ballot: *ballot,
                        value: value.clone(),
                    };
                    self.accepted.insert(*slot, entry);
                }
            }
            AcceptorWrite::Trim(below) if *below > self.trimmed_below => {
                self.trimmed_below = *below;
                self.accepted = self.accepted.split_off(below);
            }
            AcceptorWrite::Trim(_) => {}
            AcceptorWrite::Epoch(epoch) => {
                let newer = |known: &Epoch| epoch.membership.epoch > known.membership.epoch;
                if self.epoch.as_ref().is_none_or(newer) {
                    self.epoch = Some(epoch.clone());
                }
            }
            AcceptorWrite::InstancePromise { name, ballot } => {
                let vote = self.instances.entry(name.clone()).or_default();
                vote.promised = vote.promised.max(*ballot);
            }
            AcceptorWrite::InstancesOpen(epoch) => {
                self.instances_open = self.instances_open.max(*epoch);
            }
            AcceptorWrite::InstanceAccept {
                name,
                ballot,
                value,
            } => {
                let vote = self.instances.entry(name.clone()).or_default();
                vote.promised = vote.promised.max(*ballot);
                vote.accepted = Some(AcceptedRegister {
                    ballot: *ballot,
                    value: value.clone(),
                });
            }
        }
    }
}

/// Bytes of accepted entries one Promise page carries unless configured
/// otherwise (see [`Acceptor::with_reply_max_bytes`]).
pub const DEFAULT_REPLY_MAX_BYTES: usize = 1024 * 1024;

/// The acceptor state machine.
#[derive(Clone, Debug)]
pub struct Acceptor {
    id: u32,
    state: AcceptorState,
    reply_max_bytes: usize,
}

impl Acceptor {
    /// Acceptor `id`, resuming from its durable `state` (empty on first start).
    pub fn new(id: u32, state: AcceptorState) -> Self {
        Self {
            id,
            state,
            reply_max_bytes: DEFAULT_REPLY_MAX_BYTES,
        }
    }

    /// Bound the bytes of accepted entries (by [`AcceptedEntry::encoded_len`])
    /// one Promise page carries. A page always holds at least one entry, so
    /// it is at most `max(bytes, largest entry)`.
    pub fn with_reply_max_bytes(mut self, bytes: usize) -> Self {
        self.reply_max_bytes = bytes;
        self
    }

    /// This acceptor's id.
    pub fn id(&self) -> RoleId {
        RoleId::acceptor(self.id)
    }

    /// The current state (what the durable store holds once writes land).
    pub fn state(&self) -> &AcceptorState {
        &self.state
    }

    /// Handle one message from `from`. Messages an acceptor does not take are
    /// ignored.
    pub fn handle(&mut self, from: RoleId, message: Message) -> Output<AcceptorWrite> {
        if let Some(ballot) = Self::ballot_of(&message)
            && ballot.epoch > self.known_epoch()
        {
            // Vote only in epochs it knows, so that it can name the
            // configuration of any ballot it promised: ask the sender.
            let mut out = Output::new();
            out.send(from, Message::EpochQuery);
            return out;
        }
        match message {
            Message::Prepare { ballot, from_slot } => self.handle_prepare(from, ballot, from_slot),
            Message::Accept {
                ballot,
                slot,
                value,
                chosen_upto,
            } => self.handle_accept(from, ballot, slot, value, chosen_upto),
            Message::InstancePrepare { name, ballot }
            | Message::InstanceAccept { name, ballot, .. }
                if ballot.epoch < self.known_epoch() =>
            {
                self.refuse_earlier_epoch(from, name, ballot)
            }
            Message::InstancePrepare { ballot, .. } | Message::InstanceAccept { ballot, .. }
                if ballot.epoch > self.state.instances_open =>
            {
                Output::new() // not carried here yet: the proposer retries
            }
            Message::InstancePrepare { name, ballot } => {
                self.handle_instance_prepare(from, name, ballot)
            }
            Message::InstanceAccept {
                name,
                ballot,
                value,
            } => self.handle_instance_accept(from, name, ballot, value),
            Message::InstanceRead {
                ballot,
                from: first,
            } if from.role == Role::Proposer => self.handle_instance_read(from, ballot, first),
            Message::InstanceCarry {
                ballot,
                page,
                votes,
                open,
            } if from.role == Role::Proposer => {
                self.handle_instance_carry(from, (ballot, page), votes, open)
            }
            Message::Trim { below, ballot } => self.handle_trim(below, ballot),
            Message::Confirm { ballot, round } => self.handle_confirm(from, ballot, round),
            Message::RoundQuery => self.handle_round_query(from),
            Message::EpochInfo { epoch } if from.role == Role::Proposer => {
                self.handle_epoch_info(epoch)
            }
            Message::EpochQuery if from.role == Role::Proposer => self.handle_epoch_query(from),
            _ => Output::new(),
        }
    }

    /// The latest epoch this acceptor was told of (0: the initial one).
    fn known_epoch(&self) -> u32 {
        self.state.epoch.as_ref().map_or(0, |e| e.membership.epoch)
    }

    /// The ballot a vote-changing message carries.
    fn ballot_of(message: &Message) -> Option<Ballot> {
        match message {
            Message::Prepare { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::InstancePrepare { ballot, .. }
            | Message::InstanceAccept { ballot, .. }
            | Message::Trim { ballot, .. }
            | Message::InstanceRead { ballot, .. }
            | Message::InstanceCarry { ballot, .. } => Some(*ballot),
            _ => None,
        }
    }

    /// A leader announces an epoch: keep the latest.
    fn handle_epoch_info(&mut self, epoch: Epoch) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if epoch.membership.epoch > self.known_epoch() {
            self.write(&mut out, AcceptorWrite::Epoch(epoch));
        }
        out
    }

    /// A proposer behind on epochs asks which is the latest.
    fn handle_epoch_query(&mut self, from: RoleId) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if let Some(epoch) = self.state.epoch.clone() {
            out.send(from, Message::EpochInfo { epoch });
        }
        out
    }

    /// A proposer with an empty store asks for the highest ballot promised
    /// here, log or instance, so that it starts above every round it may
    /// have used before. Nothing changes here; the answer leaves after
    /// every write before it is durable, like any reply.
    fn handle_round_query(&mut self, from: RoleId) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        let promised = self.state.highest_promise();
        out.send(from, Message::RoundReport { promised });
        out
    }

    /// A leader checks it still leads: confirmed unless a higher ballot was
    /// promised (then `Nack`, and it steps down). Nothing changes here.
    fn handle_confirm(
        &mut self,
        from: RoleId,
        ballot: Ballot,
        round: u64,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        let promised = self.state.promised;
        let reply = match ballot < promised {
            true => Message::Nack { ballot, promised },
            false => Message::Confirmed { ballot, round },
        };
        out.send(from, reply);
        out
    }

    fn handle_prepare(
        &mut self,
        from: RoleId,
        ballot: Ballot,
        from_slot: Slot,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if ballot < self.state.promised {
            out.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.state.promised,
                },
            );
            return out;
        }
        if ballot > self.state.promised {
            self.write(&mut out, AcceptorWrite::Promise(ballot));
        }
        out.send(from, self.promise_page(ballot, from_slot));
        out
    }

    /// The accepted entries from `from_slot` up, as many as fit in
    /// `reply_max_bytes` (at least one), and where the page stopped.
    fn promise_page(&self, ballot: Ballot, from_slot: Slot) -> Message {
        let mut accepted = Vec::new();
        let mut budget = ByteBudget::new(self.reply_max_bytes);
        let mut next = None;
        for (slot, a) in self.state.accepted.range(from_slot..) {
            if !budget.take(AcceptedEntry::encoded_len(&a.value)) {
                next = Some(*slot);
                break;
            }
            accepted.push(AcceptedEntry {
                slot: *slot,
                ballot: a.ballot,
                value: a.value.clone(),
            });
        }
        Message::Promise {
            ballot,
            from_slot,
            accepted,
            next,
            chosen_upto: self.state.chosen_upto,
            trimmed_below: self.state.trimmed_below,
        }
    }

    /// The leader's safe point: every slot below `below` is chosen and in
    /// every learner's durable snapshot, so the values can go. It marks
    /// them chosen too, so a later leader skips them.
    /// A leader trims below `below`, and this acceptor promises its
    /// ballot: the trim may drop an epoch's stop sign, and a leader still
    /// working in that epoch must not count on this acceptor after it.
    fn handle_trim(&mut self, below: Slot, ballot: Ballot) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if below <= self.state.trimmed_below {
            return out;
        }
        if ballot > self.state.promised {
            self.write(&mut out, AcceptorWrite::Promise(ballot));
        }
        if below > self.state.chosen_upto {
            self.write(&mut out, AcceptorWrite::Chosen(below));
        }
        self.write(&mut out, AcceptorWrite::Trim(below));
        out
    }

    fn handle_accept(
        &mut self,
        from: RoleId,
        ballot: Ballot,
        slot: Slot,
        value: Value,
        chosen_upto: Slot,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if ballot < self.state.promised {
            out.send(
                from,
                Message::Nack {
                    ballot,
                    promised: self.state.promised,
                },
            );
            return out;
        }
        if slot < self.state.trimmed_below {
            // Chosen, and trimmed: storing it would bring back a value
            // below the trim point. No vote, so no answer either; a leader
            // that learns the trim point (its next phase 1) stops asking.
            return out;
        }
        // A duplicate Accept (same slot and ballot) carries the same value: a
        // proposer proposes one value per slot per ballot. Skip the rewrite.
        let already = self
            .state
            .accepted
            .get(&slot)
            .is_some_and(|a| a.ballot == ballot);
        if !already {
            self.write(
                &mut out,
                AcceptorWrite::Accept {
                    slot,
                    ballot,
                    value,
                },
            );
            // The watermark rides on the accept's own write: no extra sync.
            if chosen_upto > self.state.chosen_upto {
                self.write(&mut out, AcceptorWrite::Chosen(chosen_upto));
            }
        }
        out.send(from, Message::Accepted { ballot, slot });
        out
    }

    fn handle_instance_prepare(
        &mut self,
        from: RoleId,
        name: InstanceName,
        ballot: Ballot,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        let vote = self.state.instances.get(&name).cloned().unwrap_or_default();
        if ballot < vote.promised {
            out.send(
                from,
                Message::InstanceNack {
                    name,
                    ballot,
                    promised: vote.promised,
                },
            );
            return out;
        }
        if ballot > vote.promised {
            self.write(
                &mut out,
                AcceptorWrite::InstancePromise {
                    name: name.clone(),
                    ballot,
                },
            );
        }
        out.send(
            from,
            Message::InstancePromise {
                name,
                ballot,
                accepted: vote.accepted,
            },
        );
        out
    }

    fn handle_instance_accept(
        &mut self,
        from: RoleId,
        name: InstanceName,
        ballot: Ballot,
        value: Vec<u8>,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        let vote = self.state.instances.get(&name).cloned().unwrap_or_default();
        if ballot < vote.promised {
            out.send(
                from,
                Message::InstanceNack {
                    name,
                    ballot,
                    promised: vote.promised,
                },
            );
            return out;
        }
        let already = vote.accepted.is_some_and(|a| a.ballot == ballot);
        if !already {
            let write = AcceptorWrite::InstanceAccept {
                name: name.clone(),
                ballot,
                value,
            };
            self.write(&mut out, write);
        }
        out.send(from, Message::InstanceAccepted { name, ballot });
        out
    }

    /// An instance ballot of an epoch before the one this acceptor knows:
    /// refused with a promise of the known epoch, so the proposer learns
    /// that a later epoch exists and asks which.
    fn refuse_earlier_epoch(
        &mut self,
        from: RoleId,
        name: InstanceName,
        ballot: Ballot,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        let vote = self.state.instances.get(&name);
        let known = Ballot::in_epoch(self.known_epoch(), 0, 0);
        let promised = vote.map_or(known, |v| v.promised.max(known));
        out.send(
            from,
            Message::InstanceNack {
                name,
                ballot,
                promised,
            },
        );
        out
    }

    /// The leader of a later epoch reads this acceptor's instance votes
    /// from `first` on, one page of at most `reply_max_bytes`. This
    /// acceptor knows that epoch (durably: the check in `handle`), so it
    /// votes no more in earlier ones. A read for an epoch this acceptor
    /// has left behind is ignored.
    fn handle_instance_read(
        &mut self,
        from: RoleId,
        ballot: Ballot,
        first: InstanceName,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if ballot.epoch < self.known_epoch() {
            return out;
        }
        let mut votes = Vec::new();
        let mut budget = ByteBudget::new(self.reply_max_bytes);
        let mut next = None;
        let with_values = self.state.instances.range(first.clone()..);
        for (name, vote) in with_values {
            let Some(accepted) = &vote.accepted else {
                continue;
            };
            let vote = CarriedVote {
                name: name.clone(),
                accepted: accepted.clone(),
            };
            if !budget.take(vote.encoded_len()) {
                next = Some(name.clone());
                break;
            }
            votes.push(vote);
        }
        let page = Message::InstanceVotes {
            ballot,
            from: first,
            votes,
            next,
        };
        out.send(from, page);
        out
    }

    /// The leader of this acceptor's epoch carries instance values into
    /// it: accept each in the carry's ballot unless a higher ballot was
    /// promised for it (which holds the carried value already, see
    /// `proposer/carry.rs`). `open` ends the carry.
    fn handle_instance_carry(
        &mut self,
        from: RoleId,
        (ballot, page): (Ballot, CarryPage),
        votes: Vec<CarriedVote>,
        open: bool,
    ) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if ballot.epoch < self.known_epoch() {
            return out;
        }
        for vote in votes {
            let known = self.state.instances.get(&vote.name);
            let promised = known.map_or(Ballot::ZERO, |v| v.promised);
            let already = known
                .and_then(|v| v.accepted.as_ref())
                .is_some_and(|a| a.ballot == ballot);
            if ballot >= promised && !already {
                let write = AcceptorWrite::InstanceAccept {
                    name: vote.name,
                    ballot,
                    value: vote.accepted.value,
                };
                self.write(&mut out, write);
            }
        }
        if open && ballot.epoch > self.state.instances_open {
            self.write(&mut out, AcceptorWrite::InstancesOpen(ballot.epoch));
        }
        let open = self.state.instances_open >= ballot.epoch;
        out.send(from, Message::InstanceCarried { ballot, page, open });
        out
    }

    fn write(&mut self, out: &mut Output<AcceptorWrite>, write: AcceptorWrite) {
        self.state.apply(&write);
        out.persist.push(write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Command, CommandId};

    const LEADER: RoleId = RoleId::proposer(1);

    fn value(n: u64) -> Value {
        Value::batch(vec![Command {
            id: CommandId { client: n, seq: 0 },
            payload: vec![n as u8],
        }])
    }

    fn acceptor() -> Acceptor {
        Acceptor::new(1, AcceptorState::default())
    }

    #[test]
    fn a_round_query_reports_the_highest_promise_of_the_log_and_every_instance() {
        let mut a = acceptor();
        let report = |a: &mut Acceptor| {
            let out = a.handle(LEADER, Message::RoundQuery);
            assert!(out.persist.is_empty(), "a query writes nothing");
            out.send[0].message.clone()
        };
        let promised = |round, proposer| Message::RoundReport {
            promised: Ballot::new(round, proposer),
        };
        assert_eq!(report(&mut a), promised(0, 0));
        let prepare = |ballot, name: &str| Message::InstancePrepare {
            name: name.into(),
            ballot,
        };
        a.handle(LEADER, prepare(Ballot::new(7, 2), "a"));
        a.handle(LEADER, prepare(Ballot::new(3, 1), "b"));
        assert_eq!(report(&mut a), promised(7, 2));
        let log = Message::Prepare {
            ballot: Ballot::new(9, 1),
            from_slot: 0,
        };
        a.handle(LEADER, log);
        assert_eq!(report(&mut a), promised(9, 1));
    }

    #[test]
    fn prepare_persists_promise_then_replies() {
        let mut a = acceptor();
        let b = Ballot::new(1, 1);
        let out = a.handle(
            LEADER,
            Message::Prepare {
                ballot: b,
                from_slot: 0,
            },
        );
        assert_eq!(out.persist, vec![AcceptorWrite::Promise(b)]);
        assert_eq!(
            out.send[0].message,
            Message::Promise {
                ballot: b,
                from_slot: 0,
                accepted: vec![],
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            }
        );
    }

    #[test]
    fn duplicate_prepare_is_answered_without_a_new_write() {
        let mut a = acceptor();
        let b = Ballot::new(1, 1);
        a.handle(
            LEADER,
            Message::Prepare {
                ballot: b,
                from_slot: 0,
            },
        );
        let out = a.handle(
            LEADER,
            Message::Prepare {
                ballot: b,
                from_slot: 0,
            },
        );
        assert!(out.persist.is_empty());
        assert!(matches!(out.send[0].message, Message::Promise { .. }));
    }

    #[test]
    fn acceptor_never_promises_below_its_promise() {
        let mut a = acceptor();
        a.handle(
            LEADER,
            Message::Prepare {
                ballot: Ballot::new(5, 2),
                from_slot: 0,
            },
        );
        let low = Ballot::new(4, 9);
        let out = a.handle(
            LEADER,
            Message::Prepare {
                ballot: low,
                from_slot: 0,
            },
        );
        assert!(out.persist.is_empty());
        assert_eq!(
            out.send[0].message,
            Message::Nack {
                ballot: low,
                promised: Ballot::new(5, 2)
            }
        );
    }

    #[test]
    fn acceptor_never_accepts_below_its_promise() {
        let mut a = acceptor();
        a.handle(
            LEADER,
            Message::Prepare {
                ballot: Ballot::new(5, 2),
                from_slot: 0,
            },
        );
        let low = Ballot::new(5, 1);
        let out = a.handle(
            LEADER,
            Message::Accept {
                ballot: low,
                slot: 0,
                value: value(1),
                chosen_upto: 0,
            },
        );
        assert!(out.persist.is_empty());
        assert!(matches!(out.send[0].message, Message::Nack { .. }));
        assert!(a.state().accepted.is_empty());
    }

    #[test]
    fn accept_persists_value_and_raises_promise() {
        let mut a = acceptor();
        let b = Ballot::new(3, 1);
        let out = a.handle(
            LEADER,
            Message::Accept {
                ballot: b,
                slot: 4,
                value: value(7),
                chosen_upto: 0,
            },
        );
        assert_eq!(
            out.persist,
            vec![AcceptorWrite::Accept {
                slot: 4,
                ballot: b,
                value: value(7)
            }]
        );
        assert_eq!(
            out.send[0].message,
            Message::Accepted { ballot: b, slot: 4 }
        );
        assert_eq!(a.state().promised, b);
        // A duplicate is acknowledged again but not rewritten.
        let again = a.handle(
            LEADER,
            Message::Accept {
                ballot: b,
                slot: 4,
                value: value(7),
                chosen_upto: 0,
            },
        );
        assert!(again.persist.is_empty());
        assert_eq!(again.send.len(), 1);
    }

    #[test]
    fn promise_reports_accepted_values_from_the_requested_slot() {
        let mut a = acceptor();
        let b1 = Ballot::new(1, 1);
        for slot in 0..3 {
            a.handle(
                LEADER,
                Message::Accept {
                    ballot: b1,
                    slot,
                    value: value(slot),
                    chosen_upto: 0,
                },
            );
        }
        let b2 = Ballot::new(2, 2);
        let out = a.handle(
            RoleId::proposer(2),
            Message::Prepare {
                ballot: b2,
                from_slot: 1,
            },
        );
        let Message::Promise { accepted, .. } = &out.send[0].message else {
            panic!()
        };
        let slots: Vec<Slot> = accepted.iter().map(|e| e.slot).collect();
        assert_eq!(slots, vec![1, 2]);
        assert!(accepted.iter().all(|e| e.ballot == b1));
    }

    #[test]
    fn instance_promises_are_independent_of_the_log_promise() {
        let mut a = acceptor();
        a.handle(
            LEADER,
            Message::Prepare {
                ballot: Ballot::new(9, 1),
                from_slot: 0,
            },
        );
        let b = Ballot::new(1, 2);
        let out = a.handle(
            RoleId::proposer(2),
            Message::InstancePrepare {
                name: "lock".into(),
                ballot: b,
            },
        );
        assert_eq!(
            out.send[0].message,
            Message::InstancePromise {
                name: "lock".into(),
                ballot: b,
                accepted: None
            }
        );
        let low = Ballot::new(0, 3);
        let out = a.handle(
            RoleId::proposer(3),
            Message::InstanceAccept {
                name: "lock".into(),
                ballot: low,
                value: b"x".to_vec(),
            },
        );
        assert!(matches!(out.send[0].message, Message::InstanceNack { .. }));
    }

    #[test]
    fn restart_from_applied_writes_restores_the_same_state() {
        let mut a = acceptor();
        let mut durable = AcceptorState::default();
        let msgs = [
            Message::Prepare {
                ballot: Ballot::new(2, 1),
                from_slot: 0,
            },
            Message::Accept {
                ballot: Ballot::new(2, 1),
                slot: 0,
                value: value(1),
                chosen_upto: 0,
            },
            Message::InstanceAccept {
                name: "n".into(),
                ballot: Ballot::new(1, 1),
                value: vec![1],
            },
        ];
        for m in msgs {
            for w in a.handle(LEADER, m).persist {
                durable.apply(&w);
            }
        }
        assert_eq!(&durable, a.state());
    }

    fn accept(
        a: &mut Acceptor,
        ballot: Ballot,
        slot: Slot,
        chosen_upto: Slot,
    ) -> Output<AcceptorWrite> {
        a.handle(
            LEADER,
            Message::Accept {
                ballot,
                slot,
                value: value(slot),
                chosen_upto,
            },
        )
    }

    #[test]
    fn trim_discards_values_below_it_and_marks_them_chosen() {
        let mut a = acceptor();
        let b1 = Ballot::new(1, 1);
        for slot in 0..6 {
            accept(&mut a, b1, slot, 0);
        }
        let out = a.handle(
            LEADER,
            Message::Trim {
                below: 4,
                ballot: b1,
            },
        );
        assert_eq!(
            out.persist,
            vec![AcceptorWrite::Chosen(4), AcceptorWrite::Trim(4)]
        );
        assert!(out.send.is_empty());
        assert!(
            a.handle(
                LEADER,
                Message::Trim {
                    below: 3,
                    ballot: b1
                }
            )
            .is_empty()
        );
        assert!(
            a.handle(
                LEADER,
                Message::Trim {
                    below: 4,
                    ballot: b1
                }
            )
            .is_empty()
        );
        let out = a.handle(
            LEADER,
            Message::Prepare {
                ballot: Ballot::new(2, 1),
                from_slot: 0,
            },
        );
        let Message::Promise {
            accepted,
            chosen_upto,
            trimmed_below,
            ..
        } = &out.send[0].message
        else {
            panic!("no promise")
        };
        let slots: Vec<Slot> = accepted.iter().map(|e| e.slot).collect();
        assert_eq!(slots, vec![4, 5]);
        assert_eq!((*chosen_upto, *trimmed_below), (4, 4));
    }

    #[test]
    fn an_acceptor_votes_only_in_epochs_it_knows_and_tells_them_to_proposers() {
        let mut a = acceptor();
        let ballot = Ballot::in_epoch(1, 1, 1);
        let prepare = Message::Prepare {
            ballot,
            from_slot: 0,
        };
        let out = a.handle(LEADER, prepare.clone());
        assert!(out.persist.is_empty(), "no promise in an unknown epoch");
        assert_eq!(out.send[0].message, Message::EpochQuery);
        assert!(a.handle(LEADER, Message::EpochQuery).send.is_empty());

        let first = crate::Membership::initial(
            vec![1, 2, 3],
            crate::Quorums::majority(3),
            vec![1],
            vec![1],
        );
        let next = first.with_acceptors(vec![1, 2, 4], crate::Quorums::majority(3));
        let epoch = Epoch::initial(first).next(next, 7);
        let info = Message::EpochInfo {
            epoch: epoch.clone(),
        };
        let out = a.handle(LEADER, info.clone());
        assert_eq!(out.persist, vec![AcceptorWrite::Epoch(epoch.clone())]);
        assert!(a.handle(LEADER, info.clone()).is_empty(), "known already");
        assert!(matches!(
            a.handle(LEADER, prepare).send[0].message,
            Message::Promise { .. }
        ));
        let asked = a.handle(RoleId::proposer(2), Message::EpochQuery);
        assert_eq!(asked.send[0].message, info);
        let mut durable = AcceptorState::default();
        durable.apply(&AcceptorWrite::Epoch(epoch.clone()));
        assert_eq!(durable.epoch, Some(epoch));
    }

    #[test]
    fn a_trim_promises_the_leaders_ballot() {
        let mut a = acceptor();
        accept(&mut a, Ballot::new(1, 1), 0, 0);
        let later = Ballot::new(9, 2);
        let out = a.handle(
            LEADER,
            Message::Trim {
                below: 1,
                ballot: later,
            },
        );
        assert_eq!(out.persist[0], AcceptorWrite::Promise(later));
        let stale = accept(&mut a, Ballot::new(8, 1), 3, 0);
        assert!(
            matches!(stale.send[0].message, Message::Nack { promised, .. } if promised == later)
        );
    }

    #[test]
    fn an_accept_below_the_trim_point_is_neither_stored_nor_answered() {
        let mut a = acceptor();
        let trim = Message::Trim {
            below: 10,
            ballot: Ballot::ZERO,
        };
        a.handle(LEADER, trim);
        let out = accept(&mut a, Ballot::new(1, 1), 3, 0);
        assert!(out.is_empty(), "{out:?}");
        assert!(a.state().accepted.is_empty());
        let mut durable = AcceptorState::default();
        durable.apply(&AcceptorWrite::Trim(10));
        durable.apply(&AcceptorWrite::Accept {
            slot: 3,
            ballot: Ballot::new(1, 1),
            value: value(3),
        });
        assert!(durable.accepted.is_empty(), "apply keeps the same rule");
        assert_eq!(durable.promised, Ballot::new(1, 1));
    }

    fn page(a: &mut Acceptor, ballot: Ballot, from_slot: Slot) -> (Vec<Slot>, Option<Slot>, Slot) {
        let out = a.handle(LEADER, Message::Prepare { ballot, from_slot });
        let Message::Promise {
            from_slot: reported,
            accepted,
            next,
            chosen_upto,
            ..
        } = &out.send[0].message
        else {
            panic!("no promise: {:?}", out.send)
        };
        assert_eq!(*reported, from_slot);
        (
            accepted.iter().map(|e| e.slot).collect(),
            *next,
            *chosen_upto,
        )
    }

    #[test]
    fn promise_pages_stay_within_the_byte_budget_and_cover_every_slot() {
        let entry = AcceptedEntry::encoded_len(&value(0));
        let mut a = acceptor().with_reply_max_bytes(3 * entry);
        let b1 = Ballot::new(1, 1);
        for slot in 0..8 {
            accept(&mut a, b1, slot, 0);
        }
        let b2 = Ballot::new(2, 1);
        assert_eq!(page(&mut a, b2, 0), (vec![0, 1, 2], Some(3), 0));
        assert_eq!(page(&mut a, b2, 3), (vec![3, 4, 5], Some(6), 0));
        assert_eq!(page(&mut a, b2, 6), (vec![6, 7], None, 0));
        // A budget below one entry still makes progress, one entry a page.
        let mut tiny = acceptor().with_reply_max_bytes(1);
        accept(&mut tiny, b1, 0, 0);
        accept(&mut tiny, b1, 1, 0);
        assert_eq!(page(&mut tiny, b2, 0), (vec![0], Some(1), 0));
    }

    #[test]
    fn the_chosen_watermark_rides_on_accepts_and_is_reported_in_promises() {
        let mut a = acceptor();
        let b = Ballot::new(1, 1);
        let out = accept(&mut a, b, 0, 0);
        assert_eq!(out.persist.len(), 1, "no watermark write while it is 0");
        let out = accept(&mut a, b, 5, 5);
        assert_eq!(out.persist[1], AcceptorWrite::Chosen(5));
        assert!(
            accept(&mut a, b, 5, 6).persist.is_empty(),
            "a duplicate accept writes nothing, watermark included"
        );
        let low = accept(&mut a, Ballot::new(0, 9), 6, 9);
        assert!(low.persist.is_empty(), "a refused accept teaches nothing");
        assert_eq!(page(&mut a, Ballot::new(2, 2), 0).2, 5);
        let mut durable = AcceptorState::default();
        for w in [AcceptorWrite::Chosen(5), AcceptorWrite::Chosen(3)] {
            durable.apply(&w);
        }
        assert_eq!(durable.chosen_upto, 5, "the watermark only rises");
    }
}
