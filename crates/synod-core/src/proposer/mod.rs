//! The proposer: elects itself leader, runs phase 1 once per ballot, streams
//! phase 2, batches client commands, and runs single-decree instances.
//!
//! ```text
//!            election timeout              majority of Promises
//! Follower ───────────────────▶ Preparing ─────────────────────▶ Leading
//!    ▲                             │                                │
//!    └──── Nack / higher ballot ◀──┴────────────────────────────────┘
//!          (randomized backoff, then a higher round)
//!          or no quorum for `quorum_timeout`
//!          (a fresh election timeout, then a higher round)
//! ```
//!
//! Phase 1 is paged: each acceptor's Promise carries a bounded number of
//! bytes and says where it stopped; the candidate asks each acceptor for
//! its next page and counts a promise only once it covers every slot from
//! the start. Promises also report how far the log is known to be chosen;
//! the candidate skips that prefix (it needs no new proposal), so an
//! election after a full restart reads the unchosen tail, not the history.
//!
//! A leader gives up its ballot when a majority of acceptors has not
//! answered its Prepare (no page advanced), or its oldest outstanding
//! Accept, for `quorum_timeout`. Without that, a leader cut off from the acceptors but
//! not from the other proposers would keep them quiet with heartbeats
//! forever, and nothing would be decided while a majority is reachable.
//!
//! The submodules hold the leader's phase-2 pipeline ([`leader`]) and the
//! single-decree instances ([`register`]); this file holds the state, the
//! dispatch and the election.

mod carry;
mod epochs;
mod leader;
mod queue;
mod reads;
mod recovery;
mod register;
mod rounds;

use crate::acceptor::DEFAULT_REPLY_MAX_BYTES;
use crate::membership::{Epoch, Membership};
use crate::message::{AcceptedEntry, Message};
use crate::output::Output;
use crate::quorum::Quorums;
use crate::rng::SplitMix64;
use crate::role::earliest;
use crate::types::{Ballot, Command, Millis, Role, RoleId, Slot, Value, chunk_by_bytes};
use carry::CarryState;
pub use epochs::ReconfigureError;
use leader::Leading;
use queue::CommandQueue;
use register::Register;
use rounds::RoundFloor;
use std::collections::{BTreeMap, BTreeSet};

/// A durable change to a proposer's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposerWrite {
    /// The highest round this proposer has used (or is about to use).
    Round(u64),
    /// The proposer moved to a later epoch (configuration).
    Epoch(Epoch),
    /// Round discovery completed in this epoch (see `rounds.rs`); only
    /// rises.
    RoundsKnown(u32),
}

/// Everything a proposer keeps across a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProposerState {
    /// The highest round ever used; a restarted proposer starts above it.
    pub max_round: u64,
    /// The latest epoch it moved to (`None`: the initial configuration).
    pub epoch: Option<Epoch>,
    /// The latest epoch in which it made sure its next round is above
    /// every round it may have used in that epoch, in this life or an
    /// earlier one (round discovery, see `rounds.rs`).
    pub rounds_known_in: u32,
}

impl ProposerState {
    /// Apply one write.
    pub fn apply(&mut self, write: &ProposerWrite) {
        match write {
            ProposerWrite::Round(round) => self.max_round = self.max_round.max(*round),
            ProposerWrite::Epoch(epoch) => {
                let newer = |known: &Epoch| epoch.membership.epoch > known.membership.epoch;
                if self.epoch.as_ref().is_none_or(newer) {
                    self.epoch = Some(epoch.clone());
                }
            }
            ProposerWrite::RoundsKnown(epoch) => {
                self.rounds_known_in = self.rounds_known_in.max(*epoch);
            }
        }
    }

    /// The epoch this proposer works in (0: the initial one).
    pub fn epoch_number(&self) -> u32 {
        self.epoch.as_ref().map_or(0, |e| e.membership.epoch)
    }
}

/// Proposer settings.
#[derive(Clone, Debug)]
pub struct ProposerConfig {
    /// This proposer's id (the `proposer` half of its ballots).
    pub id: u32,
    /// Every proposer id (including this one): the ones it heartbeats and
    /// asks, members of the configuration or not.
    pub proposers: Vec<u32>,
    /// Every acceptor id of the initial configuration (epoch 0; later
    /// ones come through the log).
    pub acceptors: Vec<u32>,
    /// Every learner id: the ones it heartbeats and answers.
    pub learners: Vec<u32>,
    /// The proposers of the initial configuration (a subset of
    /// `proposers`; [`ProposerConfig::new`] takes them all).
    pub initial_proposers: Vec<u32>,
    /// The learners of the initial configuration (a subset of `learners`).
    pub initial_learners: Vec<u32>,
    /// Most commands packed into one value.
    pub batch_max_commands: usize,
    /// Most payload bytes packed into one value (a single larger command
    /// still goes alone).
    pub batch_max_bytes: usize,
    /// Most slots in phase 2 at once.
    pub pipeline_window: usize,
    /// Slots in phase 2 at once that a partial batch may open: beyond
    /// this many, a new slot waits for a full batch (`batch_max_commands`
    /// or `batch_max_bytes` queued) or for a slot to be decided. At
    /// moderate load commands then gather into a few larger slots instead
    /// of each arrival taking its own (fewer accepts, fsyncs and decided
    /// messages for the same commands); under heavy load batches fill and
    /// the whole window is used. At least 1; `pipeline_window` (or more)
    /// lets every slot go out partial.
    pub pipeline_eager: usize,
    /// Most payload bytes in phase 2 at once (one value is always allowed).
    pub pipeline_max_bytes: usize,
    /// Most commands waiting for a slot; beyond it `submit` says busy.
    pub queue_limit: usize,
    /// How often the leader sends heartbeats.
    pub heartbeat_interval: Millis,
    /// Election timeout range; each wait is drawn uniformly from it.
    pub election_timeout_min: Millis,
    /// Upper end of the election timeout range.
    pub election_timeout_max: Millis,
    /// Resend unanswered Prepare / Accept messages after this long.
    pub retransmit_interval: Millis,
    /// Upper end of the randomized backoff after a Nack; it doubles with
    /// each campaign lost in a row (up to 64 times), so that proposers
    /// whose phase 1 takes several round trips (many promise pages) settle.
    pub backoff_max: Millis,
    /// A ballot whose Prepare, or oldest outstanding Accept, has not
    /// reached a majority for this long is given up (see the module docs).
    pub quorum_timeout: Millis,
    /// Recently decided slots kept to answer learners' catch-up requests.
    pub decided_cache: usize,
    /// Most bytes of values that cache holds (the newest slot always stays).
    pub decided_cache_bytes: usize,
    /// Most bytes of decided values one catch-up answer carries (at least
    /// one slot always goes).
    pub reply_max_bytes: usize,
    /// Which sets of the initial acceptors are quorums in each phase
    /// (majorities unless configured otherwise).
    pub quorums: Quorums,
    /// How often the leader proposes its clock reading
    /// ([`crate::Value::Clock`]), for state machines that need time; 0:
    /// never.
    pub clock_interval: Millis,
    /// Seed for timeouts and backoff.
    pub seed: u64,
}

impl ProposerConfig {
    /// Settings suited to a LAN (and to the simulator) for proposer `id`.
    pub fn new(id: u32, proposers: Vec<u32>, acceptors: Vec<u32>, learners: Vec<u32>) -> Self {
        Self {
            id,
            initial_proposers: proposers.clone(),
            initial_learners: learners.clone(),
            proposers,
            learners,
            batch_max_commands: 256,
            batch_max_bytes: 64 * 1024,
            pipeline_window: 32,
            pipeline_eager: 4,
            pipeline_max_bytes: 8 * 1024 * 1024,
            queue_limit: 100_000,
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            retransmit_interval: 100,
            backoff_max: 150,
            quorum_timeout: 1000,
            decided_cache: 4096,
            decided_cache_bytes: 64 << 20,
            reply_max_bytes: DEFAULT_REPLY_MAX_BYTES,
            quorums: Quorums::majority(acceptors.len()),
            clock_interval: 0,
            seed: u64::from(id),
            acceptors,
        }
    }
}

/// Resends of one Prepare or Accept back off up to this many retransmit
/// intervals.
const MAX_RESEND_BACKOFF: u64 = 8;

/// The wait after a resend that waited `wait`: twice as long, at most
/// [`MAX_RESEND_BACKOFF`] retransmit intervals.
fn doubled_wait(wait: Millis, retransmit_interval: Millis) -> Millis {
    (wait * 2).min(retransmit_interval * MAX_RESEND_BACKOFF)
}

/// The leader repeats its epoch (`EpochInfo`) and the carry's `open` to
/// the acceptors with one heartbeat in this many.
const EPOCH_INFO_EVERY: u64 = 10;

/// The backoff after a Nack doubles at most this many times (64×).
const MAX_BACKOFF_DOUBLINGS: u32 = 6;

/// One page of a Promise, as `handle_promise` takes it.
struct PromisePage {
    from_slot: Slot,
    accepted: Vec<AcceptedEntry>,
    next: Option<Slot>,
    chosen_upto: Slot,
    trimmed_below: Slot,
}

/// Where each acceptor stands in a paged promise that reports on slots
/// from `start` up: the next slot it must still report on, or `None` once
/// it has reported on everything asked (phase 1, and the old-epoch read of
/// `recovery.rs`).
#[derive(Clone, Debug)]
struct PageCursors {
    start: Slot,
    cursors: BTreeMap<u32, Option<Slot>>,
}

impl PageCursors {
    fn new(start: Slot) -> Self {
        Self {
            start,
            cursors: BTreeMap::new(),
        }
    }

    /// The slot to ask `acceptor` for next, or `None` if its report is
    /// complete.
    fn pending(&self, acceptor: u32) -> Option<Slot> {
        self.cursors
            .get(&acceptor)
            .copied()
            .unwrap_or(Some(self.start))
    }

    /// The slots `page` from `acceptor` newly reports on, or `None` if it
    /// starts past what is still wanted from it or adds nothing (a
    /// duplicate, or a complete report).
    fn fresh(&self, acceptor: u32, page: &PromisePage) -> Option<std::ops::Range<Slot>> {
        let cursor = self.pending(acceptor)?;
        let end = page.next.unwrap_or(Slot::MAX);
        (page.from_slot <= cursor && cursor < end).then_some(cursor..end)
    }

    /// `acceptor` reported up to `next` (`None`: everything asked).
    fn advance(&mut self, acceptor: u32, next: Option<Slot>) {
        self.cursors.insert(acceptor, next);
    }

    /// The acceptors whose report is complete.
    fn complete(&self) -> BTreeSet<u32> {
        let complete = self.cursors.iter().filter(|(_, c)| c.is_none());
        complete.map(|(acceptor, _)| *acceptor).collect()
    }
}

/// Keep the value accepted in the highest ballot for its slot (the first
/// one reported, between equal ballots).
fn keep_highest(adopted: &mut BTreeMap<Slot, (Ballot, Value)>, entry: AcceptedEntry) {
    match adopted.get(&entry.slot) {
        Some((ballot, _)) if *ballot >= entry.ballot => {}
        _ => {
            adopted.insert(entry.slot, (entry.ballot, entry.value));
        }
    }
}

/// `submit` refused the commands: the queue is at its limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busy;

#[derive(Clone, Debug)]
enum Phase {
    Follower,
    Preparing(Preparing),
    Leading(Leading),
}

/// Phase 1 in progress: the promise pages gathered so far.
#[derive(Clone, Debug)]
struct Preparing {
    ballot: Ballot,
    from_slot: Slot,
    /// Slots in `[from_slot, recover_end)` are wanted even if chosen: a
    /// learner asked the leader to recover them. Above it, the chosen
    /// prefix is skipped.
    recover_end: Slot,
    /// Every slot below this is chosen (the highest watermark reported).
    chosen: Slot,
    /// Some acceptor discarded its values below this slot (the highest
    /// trim point reported): those slots are chosen and never proposed.
    trimmed: Slot,
    /// The first slot of this proposer's epoch: slots below it belong to
    /// earlier epochs, are chosen, and are never proposed here.
    epoch_start: Slot,
    /// Where each acceptor's promise pages have got to.
    pages: PageCursors,
    /// The highest-ballot value reported for each slot still wanted.
    adopted: BTreeMap<Slot, (Ballot, Value)>,
    /// When a page last advanced (or phase 1 began).
    progressed: Millis,
    last_sent: Millis,
    /// Wait before the next resend of unanswered Prepares: one retransmit
    /// interval after progress, doubling with each resend while none comes
    /// (up to [`MAX_RESEND_BACKOFF`] intervals). An acceptor that is slow
    /// to build a large promise page is not handed copies of the request
    /// faster than it answers them.
    resend_after: Millis,
    /// This proposer was leading when it began this phase 1 (to recover
    /// slots for a learner): it keeps heartbeating, so that the other
    /// proposers do not take a phase 1 of many pages for a dead leader.
    was_leading: bool,
}

impl Preparing {
    /// Below this slot nothing is proposed: trimmed, or an earlier epoch's.
    fn floor(&self) -> Slot {
        self.trimmed.max(self.epoch_start)
    }

    fn wanted(&self, slot: Slot) -> bool {
        slot >= self.floor() && (slot < self.recover_end || slot >= self.chosen)
    }

    /// The next slot to ask an acceptor for once it reported up to `next`:
    /// never below the trim point; past the recovery range, jump over the
    /// chosen prefix.
    fn skip_chosen(&self, next: Slot) -> Slot {
        let next = next.max(self.floor());
        if next >= self.recover_end {
            next.max(self.chosen)
        } else {
            next
        }
    }

    /// Keep the value accepted in the highest ballot for each slot. This
    /// is what keeps a chosen value chosen. A value accepted in a ballot
    /// of an earlier epoch is void here: every slot this epoch decides
    /// comes after that epoch's stop sign, where nothing of it is chosen.
    fn adopt(&mut self, entry: AcceptedEntry) {
        if self.wanted(entry.slot) && entry.ballot.epoch >= self.ballot.epoch {
            keep_highest(&mut self.adopted, entry);
        }
    }
}

/// The proposer state machine.
#[derive(Clone, Debug)]
pub struct Proposer {
    config: ProposerConfig,
    rng: SplitMix64,
    state: ProposerState,
    /// The highest ballot seen anywhere (Nacks, heartbeats, round reports).
    highest_seen: Ballot,
    /// Whether a new ballot is sure to be above every round this proposer
    /// used before (see `rounds.rs`).
    round_floor: RoundFloor,
    /// The configuration this proposer works in, and its first slot.
    epoch: Epoch,
    /// The stop sign of this epoch that this proposer knows of (it
    /// proposed or adopted it): its slot and the next configuration.
    /// Nothing is proposed after it (see `epochs.rs`).
    stop: Option<(Slot, Membership)>,
    /// Whether the single-decree instances of earlier epochs are carried
    /// into this one (see `carry.rs`).
    carry: CarryState,
    phase: Phase,
    /// The leader this proposer follows, with its ballot.
    leader: Option<(u32, Ballot)>,
    election_deadline: Millis,
    /// When the next heartbeat is due (while leading, or re-running phase 1
    /// as the leader).
    next_heartbeat: Millis,
    /// Heartbeats sent (for what goes out with one in several).
    heartbeats_sent: u64,
    /// Campaigns lost to a Nack since this proposer last led or followed a
    /// leader: the backoff after the next Nack doubles with each.
    lost_campaigns: u32,
    /// Every slot below this is decided.
    first_unchosen: Slot,
    /// Recently decided values, for catch-up.
    decided: BTreeMap<Slot, Value>,
    /// Bytes of the values in `decided` (by `Value::encoded_len`).
    decided_bytes: usize,
    /// The highest trim point this proposer sent or saw reported: slots
    /// below it are never proposed or recovered again.
    trimmed_below: Slot,
    /// Per learner: the end of its latest durable snapshot, as it said.
    learner_snapshots: BTreeMap<u32, Slot>,
    /// Commands waiting for a slot (or for a leader to forward to).
    queue: CommandQueue,
    registers: BTreeMap<String, Register>,
    /// Reads waiting for a read index (see `reads.rs`).
    reads: reads::Reads,
}

impl Proposer {
    /// A proposer resuming from durable `state` at time `now`.
    pub fn new(config: ProposerConfig, state: ProposerState, now: Millis) -> Self {
        let mut proposer = Self {
            rng: SplitMix64::new(config.seed),
            round_floor: RoundFloor::for_stored(&state),
            epoch: state.epoch.clone().unwrap_or_else(|| {
                Epoch::initial(Membership::initial(
                    config.acceptors.clone(),
                    config.quorums,
                    config.initial_proposers.clone(),
                    config.initial_learners.clone(),
                ))
            }),
            stop: None,
            carry: CarryState::Unknown,
            config,
            state,
            highest_seen: Ballot::ZERO,
            phase: Phase::Follower,
            leader: None,
            election_deadline: 0,
            next_heartbeat: 0,
            heartbeats_sent: 0,
            lost_campaigns: 0,
            first_unchosen: 0,
            decided: BTreeMap::new(),
            decided_bytes: 0,
            trimmed_below: 0,
            learner_snapshots: BTreeMap::new(),
            queue: CommandQueue::default(),
            registers: BTreeMap::new(),
            reads: reads::Reads::default(),
        };
        proposer.first_unchosen = proposer.epoch.start;
        if proposer.epoch.membership.epoch == 0 {
            proposer.carry = CarryState::complete();
        }
        proposer.reset_election_timer(now);
        proposer
    }

    /// Once, at start: a proposer whose store holds no round asks the
    /// acceptors for their highest promises at once, so that the answers
    /// are in before its first election timeout (see `rounds.rs`).
    pub fn start(&mut self, now: Millis) -> Output<ProposerWrite> {
        let mut out = Output::new();
        self.may_take_ballot(now, &mut out);
        out
    }

    /// This proposer's id.
    pub fn id(&self) -> RoleId {
        RoleId::proposer(self.config.id)
    }

    /// The durable state as this proposer sees it.
    pub fn state(&self) -> &ProposerState {
        &self.state
    }

    /// The ballot this proposer leads with, if it is the leader.
    pub fn leading_ballot(&self) -> Option<Ballot> {
        match &self.phase {
            Phase::Leading(leading) => Some(leading.ballot),
            _ => None,
        }
    }

    /// The leader this proposer knows of (itself when leading).
    pub fn known_leader(&self) -> Option<u32> {
        match self.phase {
            Phase::Leading(_) => Some(self.config.id),
            _ => self.leader.map(|(id, _)| id),
        }
    }

    /// Every slot below this one is known to be decided.
    pub fn first_unchosen(&self) -> Slot {
        self.first_unchosen
    }

    /// Client commands arrive: the leader proposes them, a follower forwards
    /// them to the leader it knows, or queues them until it knows one.
    pub fn submit(
        &mut self,
        now: Millis,
        commands: Vec<Command>,
    ) -> Result<Output<ProposerWrite>, Busy> {
        if self.queue.len() + commands.len() > self.config.queue_limit {
            return Err(Busy);
        }
        let mut out = Output::new();
        match (&self.phase, self.leader) {
            (Phase::Leading(_), _) | (Phase::Preparing(_), _) | (Phase::Follower, None) => {
                self.queue.extend(commands);
                self.propose_queued(now, &mut out);
            }
            (Phase::Follower, Some((leader, _))) => self.forward(leader, commands, &mut out),
        }
        Ok(out)
    }

    /// Handle one message from `from`.
    pub fn handle(&mut self, now: Millis, from: RoleId, message: Message) -> Output<ProposerWrite> {
        let mut out = Output::new();
        match message {
            Message::Promise {
                ballot,
                from_slot,
                accepted,
                next,
                chosen_upto,
                trimmed_below,
            } => {
                let page = PromisePage {
                    from_slot,
                    accepted,
                    next,
                    chosen_upto,
                    trimmed_below,
                };
                self.handle_promise(now, from, ballot, page, &mut out)
            }
            Message::Accepted { ballot, slot } => {
                self.handle_accepted(now, from, ballot, slot, &mut out)
            }
            Message::Nack { ballot, promised } => self.handle_nack(now, ballot, promised),
            Message::Heartbeat {
                ballot,
                decided_upto,
            } => self.handle_heartbeat(now, from, ballot, decided_upto, &mut out),
            Message::Forward { commands } => self.handle_forward(now, from, commands, &mut out),
            Message::CatchUp {
                from_slot,
                to_slot,
                escalate,
            } => self.handle_catch_up(now, from, from_slot, to_slot, escalate, &mut out),
            Message::InstancePromise {
                name,
                ballot,
                accepted,
            } => self.handle_instance_promise(now, from, name, ballot, accepted, &mut out),
            Message::InstanceAccepted { name, ballot } => {
                self.handle_instance_accepted(now, from, name, ballot, &mut out)
            }
            Message::InstanceNack {
                name,
                ballot,
                promised,
            } => self.handle_instance_nack(now, name, ballot, promised),
            Message::InstanceLearned { name } => self.handle_instance_learned(from, name),
            Message::Snapshotted { upto } => self.handle_snapshotted(from, upto, &mut out),
            Message::ProposeInstance { name, value } if from.role == Role::Learner => {
                out = self.propose_instance(now, name, value);
            }
            Message::ReadIndex { id } if from.role == Role::Learner => {
                self.handle_read_index(now, from, id, &mut out);
            }
            Message::Confirmed { ballot, round } if from.role == Role::Acceptor => {
                self.handle_confirmed(now, from, ballot, round, &mut out);
            }
            Message::RoundReport { promised } if from.role == Role::Acceptor => {
                self.handle_round_report(from, promised, &mut out);
            }
            Message::EpochQuery if from.role != Role::Learner => {
                self.handle_epoch_query(from, &mut out);
            }
            Message::EpochInfo { epoch } if from.role != Role::Learner => {
                self.handle_epoch_info(now, epoch, &mut out);
            }
            Message::InstanceVotes {
                ballot,
                from: first,
                votes,
                next,
            } if from.role == Role::Acceptor => {
                let page = (ballot, first, votes, next);
                self.handle_instance_votes(now, from, page, &mut out);
            }
            Message::Reconfigure { next } if from.role == Role::Proposer => {
                if let Ok(proposed) = self.reconfigure(now, next) {
                    out = proposed;
                }
            }
            Message::InstanceCarried { ballot, page, open } if from.role == Role::Acceptor => {
                self.handle_instance_carried(now, from, (ballot, page), open, &mut out);
            }
            _ => {}
        }
        out
    }

    /// Advance time: elections, heartbeats, retransmissions, retries.
    pub fn tick(&mut self, now: Millis) -> Output<ProposerWrite> {
        let mut out = Output::new();
        match &self.phase {
            Phase::Follower if now >= self.election_deadline => {
                if self.behind_an_epoch() {
                    // A later epoch exists: learn it before campaigning.
                    let ask = self.epoch_askees();
                    out.broadcast(ask, &Message::EpochQuery);
                    self.reset_election_timer(now);
                } else if !self.may_lead() {
                    self.tell_members_of_epoch(&mut out);
                    self.reset_election_timer(now);
                } else if self.may_take_ballot(now, &mut out) {
                    let from_slot = self.first_unchosen;
                    self.start_phase1(now, from_slot, from_slot, &mut out);
                } else {
                    self.election_deadline = now + self.config.retransmit_interval;
                }
            }
            Phase::Follower => {}
            Phase::Preparing(_) => self.retransmit_prepare(now, &mut out),
            Phase::Leading(_) => self.tick_leader(now, &mut out),
        }
        self.tick_carry(now, &mut out);
        self.tick_registers(now, &mut out);
        out
    }

    /// When [`Proposer::tick`] next has work: the election deadline, a
    /// phase-1 retransmission or give-up, a heartbeat, an Accept to resend
    /// or a quorum that went quiet, a single-decree retry.
    pub fn next_deadline(&self) -> Option<Millis> {
        let quorum = self.config.quorum_timeout;
        let phase = match &self.phase {
            Phase::Follower => self.election_deadline,
            Phase::Preparing(p) => {
                let retry = p.last_sent.saturating_add(p.resend_after);
                let give_up = p.progressed.saturating_add(quorum);
                let heartbeat = if p.was_leading {
                    self.next_heartbeat
                } else {
                    Millis::MAX
                };
                retry.min(give_up).min(heartbeat)
            }
            Phase::Leading(leading) => self
                .next_heartbeat
                .min(leading.next_deadline(quorum, self.config.clock_interval))
                .min(
                    self.reads
                        .next_deadline(self.config.retransmit_interval)
                        .unwrap_or(Millis::MAX),
                ),
        };
        let registers = self.registers.values().map(|r| r.retry_at).min();
        let registers = earliest(registers, self.carry_deadline());
        earliest(Some(phase), registers)
    }

    // ---- election -------------------------------------------------------

    /// Take a fresh round above everything used or seen, persisting it
    /// before any message that carries it leaves.
    fn next_ballot(&mut self, out: &mut Output<ProposerWrite>) -> Ballot {
        debug_assert!(self.knows_its_rounds(), "a ballot before round discovery");
        let round = self.state.max_round.max(self.highest_seen.round) + 1;
        let write = ProposerWrite::Round(round);
        self.state.apply(&write);
        out.persist.push(write);
        Ballot::in_epoch(self.epoch.membership.epoch, round, self.config.id)
    }

    /// Campaign for every slot from `from_slot` up; slots below
    /// `recover_end` are re-proposed even if acceptors know them chosen.
    fn start_phase1(
        &mut self,
        now: Millis,
        from_slot: Slot,
        recover_end: Slot,
        out: &mut Output<ProposerWrite>,
    ) {
        let was_leading = matches!(self.phase, Phase::Leading(_));
        self.requeue_in_flight();
        let ballot = self.next_ballot(out);
        self.phase = Phase::Preparing(Preparing {
            was_leading,
            ballot,
            from_slot,
            recover_end,
            chosen: self.first_unchosen,
            trimmed: self.trimmed_below,
            epoch_start: self.epoch.start,
            pages: PageCursors::new(from_slot),
            adopted: BTreeMap::new(),
            progressed: now,
            last_sent: now,
            resend_after: self.config.retransmit_interval,
        });
        self.leader = None;
        out.broadcast(self.acceptor_ids(), &Message::Prepare { ballot, from_slot });
    }

    fn retransmit_prepare(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        let Phase::Preparing(preparing) = &self.phase else {
            return;
        };
        if now.saturating_sub(preparing.progressed) >= self.config.quorum_timeout {
            self.give_up_ballot(now);
            return;
        }
        if preparing.was_leading {
            let ballot = preparing.ballot;
            self.heartbeat_if_due(now, ballot, out);
        }
        let Phase::Preparing(preparing) = &mut self.phase else {
            return;
        };
        if now < preparing.last_sent + preparing.resend_after {
            return;
        }
        preparing.last_sent = now;
        preparing.resend_after =
            doubled_wait(preparing.resend_after, self.config.retransmit_interval);
        for acceptor in &self.epoch.membership.acceptors {
            let Some(cursor) = preparing.pages.pending(*acceptor) else {
                continue; // its promise is complete
            };
            let message = Message::Prepare {
                ballot: preparing.ballot,
                from_slot: cursor,
            };
            out.send(RoleId::acceptor(*acceptor), message);
        }
    }

    /// One page of an acceptor's promise. A page that starts past what we
    /// still need from that acceptor, or adds nothing (a duplicate), is
    /// ignored; otherwise its entries are adopted, the acceptor's cursor
    /// moves on, and the next page is asked for at once.
    fn handle_promise(
        &mut self,
        now: Millis,
        from: RoleId,
        ballot: Ballot,
        page: PromisePage,
        out: &mut Output<ProposerWrite>,
    ) {
        if let Phase::Leading(_) = self.phase {
            self.handle_old_read_page(now, from, ballot, page, out);
            return;
        }
        let Phase::Preparing(preparing) = &mut self.phase else {
            return;
        };
        if preparing.ballot != ballot {
            return;
        }
        let Some(fresh) = preparing.pages.fresh(from.index, &page) else {
            return;
        };
        preparing.trimmed = preparing.trimmed.max(page.trimmed_below);
        preparing.chosen = preparing
            .chosen
            .max(page.chosen_upto)
            .max(preparing.trimmed);
        for entry in page.accepted {
            if fresh.contains(&entry.slot) {
                preparing.adopt(entry);
            }
        }
        let next = page.next.map(|next| preparing.skip_chosen(next));
        preparing.pages.advance(from.index, next);
        preparing.progressed = now;
        preparing.resend_after = self.config.retransmit_interval;
        if let Some(from_slot) = next {
            out.send(from, Message::Prepare { ballot, from_slot });
            return;
        }
        if self.epoch.membership.phase1(&preparing.pages.complete()) {
            let Phase::Preparing(preparing) = std::mem::replace(&mut self.phase, Phase::Follower)
            else {
                unreachable!()
            };
            self.become_leader(now, preparing, out);
        }
    }

    /// A Nack for our ballot: someone promised higher. Abandon the ballot
    /// and retry after a randomized backoff so dueling proposers settle.
    fn handle_nack(&mut self, now: Millis, ballot: Ballot, promised: Ballot) {
        self.highest_seen = self.highest_seen.max(promised);
        let current = match &self.phase {
            Phase::Preparing(p) => Some(p.ballot),
            Phase::Leading(l) => Some(l.ballot),
            Phase::Follower => None,
        };
        if current == Some(ballot) {
            self.step_down();
            let ceiling = self.config.backoff_max << self.lost_campaigns.min(MAX_BACKOFF_DOUBLINGS);
            self.lost_campaigns += 1;
            self.election_deadline = now + self.rng.between(1, ceiling.max(1));
        }
    }

    fn handle_heartbeat(
        &mut self,
        now: Millis,
        from: RoleId,
        ballot: Ballot,
        decided_upto: Slot,
        out: &mut Output<ProposerWrite>,
    ) {
        self.highest_seen = self.highest_seen.max(ballot);
        if ballot.epoch != self.epoch.membership.epoch {
            self.heartbeat_of_other_epoch(from, ballot, out);
            return;
        }
        self.first_unchosen = self.first_unchosen.max(decided_upto);
        let own = match &self.phase {
            Phase::Preparing(p) => Some(p.ballot),
            Phase::Leading(l) => Some(l.ballot),
            Phase::Follower => None,
        };
        if own.is_some_and(|own| own > ballot) {
            return; // a deposed leader that has not heard yet; its acceptors will tell it
        }
        if own.is_some() {
            self.step_down();
        }
        if self.leader.is_none_or(|(_, known)| ballot >= known) {
            self.lost_campaigns = 0;
            self.leader = Some((from.index, ballot));
            self.reset_election_timer(now);
            self.forward_queue(out);
        }
    }

    fn step_down(&mut self) {
        self.abandon_carry();
        self.requeue_in_flight();
        self.drop_reads();
        self.phase = Phase::Follower;
        self.leader = None;
    }

    /// No majority answered in time: stop leading (or campaigning) so that
    /// a proposer that can reach the acceptors takes over; campaign again
    /// only after a fresh election timeout.
    fn give_up_ballot(&mut self, now: Millis) {
        self.step_down();
        self.reset_election_timer(now);
    }

    fn reset_election_timer(&mut self, now: Millis) {
        let wait = self.rng.between(
            self.config.election_timeout_min,
            self.config.election_timeout_max,
        );
        self.election_deadline = now + wait;
    }

    fn forward_queue(&mut self, out: &mut Output<ProposerWrite>) {
        let Some((leader, _)) = self.leader else {
            return;
        };
        if self.queue.is_empty() || leader == self.config.id {
            return;
        }
        let commands = self.queue.take_all();
        self.forward(leader, commands, out);
    }

    /// Send `commands` to proposer `to` in messages of at most
    /// `batch_max_bytes` each (a single larger command goes alone), so a
    /// long queue never makes a frame too large to send.
    fn forward(&self, to: u32, commands: Vec<Command>, out: &mut Output<ProposerWrite>) {
        for commands in chunk_by_bytes(commands, self.config.batch_max_bytes) {
            out.send(RoleId::proposer(to), Message::Forward { commands });
        }
    }

    fn handle_forward(
        &mut self,
        now: Millis,
        from: RoleId,
        commands: Vec<Command>,
        out: &mut Output<ProposerWrite>,
    ) {
        // A proposer that the sender took for the leader: pass the commands on
        // once, or keep them if the sender is who we take for the leader.
        let bounce = matches!(self.phase, Phase::Follower)
            && self.leader.is_some_and(|(leader, _)| leader != from.index);
        if self.queue.len() + commands.len() > self.config.queue_limit {
            return; // overloaded: drop; the client retries
        }
        self.queue.extend(commands);
        if bounce {
            self.forward_queue(out);
        } else {
            self.propose_queued(now, out);
        }
    }

    fn acceptor_ids(&self) -> impl Iterator<Item = RoleId> + '_ {
        self.epoch
            .membership
            .acceptors
            .iter()
            .map(|a| RoleId::acceptor(*a))
    }

    /// Whether the current configuration names this proposer: only its
    /// members campaign (the others forward to the leader they hear).
    pub fn may_lead(&self) -> bool {
        self.epoch.membership.includes(self.id())
    }

    fn learner_ids(&self) -> impl Iterator<Item = RoleId> + '_ {
        self.config.learners.iter().map(|l| RoleId::learner(*l))
    }

    fn other_proposer_ids(&self) -> impl Iterator<Item = RoleId> + '_ {
        let me = self.config.id;
        self.config
            .proposers
            .iter()
            .filter(move |p| **p != me)
            .map(|p| RoleId::proposer(*p))
    }
}

#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
mod tests;
