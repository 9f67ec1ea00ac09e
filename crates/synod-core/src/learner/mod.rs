//! The learner: turns decision announcements into an ordered, gap-free,
//! duplicate-free stream of deliveries.
//!
//! ```text
//! Decided(slot, v) ──▶ decided log (durable) ──▶ deliver slots in order ──▶ state machine
//!        ▲                     │ gap?
//!        └── CatchUp ◀─────────┘ (asks other learners; escalates to the leader)
//! ```
//!
//! A learner snapshots (its host writes the file, then calls
//! [`Learner::compact`]) and tells the proposers how far its durable
//! snapshot reaches ([`Message::Snapshotted`]); the leader trims the
//! acceptors below the lowest such point. A learner that asks for slots a
//! peer has compacted away gets a [`Message::SnapshotOffer`] and fetches
//! the snapshot ([`transfer`]).

mod sessions;
mod transfer;

pub use sessions::OPEN_SESSION;
use sessions::{SessionRecord, Sessions};

use crate::message::Message;
use crate::output::{Delivery, Output, SnapshotBytes};
use crate::role::earliest;
use crate::types::{ByteBudget, InstanceName, Millis, Role, RoleId, Slot, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// A durable change to a learner's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnerWrite {
    /// `slot` is decided with `value`.
    Decided {
        /// The slot.
        slot: Slot,
        /// The value.
        value: Value,
    },
    /// Every slot below this one has been delivered.
    Applied(Slot),
    /// A single-decree instance is decided.
    InstanceDecided {
        /// The instance.
        name: InstanceName,
        /// The value.
        value: Vec<u8>,
    },
    /// A durable snapshot covers every slot below this one: the decided
    /// values below it are dropped. Only rises.
    Compact(Slot),
}

/// Everything a learner keeps across a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LearnerState {
    /// Decided values by slot.
    pub decided: BTreeMap<Slot, Value>,
    /// Every slot below this one was delivered. A durable state machine
    /// resumes here; an in-memory one replays from slot 0.
    pub applied: Slot,
    /// Decided single-decree instances.
    pub instances: BTreeMap<InstanceName, Vec<u8>>,
    /// Every slot below this one is covered by a durable snapshot and no
    /// longer kept in `decided`.
    pub base: Slot,
}

impl LearnerState {
    /// Apply one write.
    pub fn apply(&mut self, write: &LearnerWrite) {
        match write {
            LearnerWrite::Decided { slot, .. } if *slot < self.base => {}
            LearnerWrite::Decided { slot, value } => {
                self.decided.entry(*slot).or_insert_with(|| value.clone());
            }
            LearnerWrite::Compact(upto) if *upto > self.base => {
                self.base = *upto;
                self.decided = self.decided.split_off(upto);
            }
            LearnerWrite::Compact(_) => {}
            LearnerWrite::Applied(slot) => self.applied = self.applied.max(*slot),
            LearnerWrite::InstanceDecided { name, value } => {
                self.instances
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
    }
}

/// The learner's part of a snapshot: where it ends and the exactly-once
/// filter (the live sessions) as of that slot. The state machine's own
/// snapshot goes beside it; restoring both and delivering the log from
/// `upto` on continues exactly where delivering the whole log would be.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerSnapshot {
    /// Every slot below this one is in the snapshot.
    pub upto: Slot,
    /// Per session: its id, the last slot it was active in, every sequence
    /// number up to the third is applied, and those listed above it.
    sessions: Vec<SessionRecord>,
}

/// Learner settings.
#[derive(Clone, Debug)]
pub struct LearnerConfig {
    /// This learner's id.
    pub id: u32,
    /// Every learner id (including this one).
    pub learners: Vec<u32>,
    /// Every proposer id.
    pub proposers: Vec<u32>,
    /// How long to wait before asking again for a missing slot.
    pub catch_up_interval: Millis,
    /// The most slots one catch-up answer carries.
    pub catch_up_batch: u64,
    /// The most bytes of values one catch-up or instance-sync answer
    /// carries (at least one always goes).
    pub reply_max_bytes: usize,
    /// How often to compare decided instances with one peer learner.
    pub instance_sync_interval: Millis,
    /// A client session idle for this many slots is forgotten (see
    /// [`OPEN_SESSION`]).
    pub session_horizon: Slot,
    /// At most this many client sessions are kept; the idlest go first.
    pub max_sessions: usize,
}

/// Slots a session may stay idle unless configured otherwise.
pub const DEFAULT_SESSION_HORIZON: Slot = 1_000_000;
/// Sessions kept unless configured otherwise.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// The learner state machine.
#[derive(Clone, Debug)]
pub struct Learner {
    config: LearnerConfig,
    state: LearnerState,
    /// The next slot to deliver in this incarnation.
    next_delivery: Slot,
    /// What each client session has had applied (exactly-once filter).
    sessions: Sessions,
    /// Every slot below this is known to be decided somewhere.
    known_upto: Slot,
    catch_up: CatchUpState,
    /// When to send the next instance digest, and to which peer.
    next_sync_at: Millis,
    sync_cursor: usize,
    /// Per peer learner: the last instance name sent in answer to its
    /// digest, so the next answer continues after it.
    sync_answered: HashMap<u32, InstanceName>,
    /// A peer's snapshot being fetched.
    fetch: Option<transfer::Fetch>,
    fetches_started: u64,
    /// When to repeat [`Message::Snapshotted`] to the proposers.
    next_report_at: Millis,
    /// Reads a leader made ready, by the slot that must be applied first.
    reads: BTreeMap<Slot, Vec<u64>>,
    /// How many reads `reads` holds.
    read_count: usize,
}

/// Most ready reads a learner holds while it applies up to their index;
/// past it new ones are dropped (their callers time out and ask again).
const MAX_READS: usize = 100_000;

#[derive(Clone, Debug, Default)]
struct CatchUpState {
    next_at: Millis,
    from_slot: Slot,
    attempts: u32,
    /// The end of what the last request can bring (its range, cut to one
    /// answer's `catch_up_batch`).
    asked_to: Slot,
}

/// Plain requests for the same gap before the learner asks the leader to
/// recover it from the acceptors.
const ESCALATE_AFTER: u32 = 2;

impl Learner {
    /// A learner resuming from durable `state`. Call [`Learner::replay`] to
    /// re-deliver what is already decided to a fresh state machine.
    pub fn new(config: LearnerConfig, state: LearnerState) -> Self {
        let known_upto = state.decided.last_key_value().map_or(0, |(s, _)| s + 1);
        Self {
            config,
            state,
            next_delivery: 0,
            sessions: Sessions::default(),
            known_upto,
            catch_up: CatchUpState::default(),
            next_sync_at: 0,
            sync_cursor: 0,
            sync_answered: HashMap::new(),
            fetch: None,
            fetches_started: 0,
            next_report_at: 0,
            reads: BTreeMap::new(),
            read_count: 0,
        }
    }

    /// A learner resuming from `snapshot` (its state machine restored from
    /// the same snapshot) and durable `state`: it delivers from the
    /// snapshot's end on. If a crash came between installing the snapshot
    /// and compacting the log, [`Learner::replay`] compacts it now.
    pub fn restored(
        config: LearnerConfig,
        state: LearnerState,
        snapshot: &LearnerSnapshot,
    ) -> Self {
        let mut learner = Self::new(config, state);
        learner.adopt(snapshot);
        learner
    }

    /// Continue from the end of `snapshot`, with its exactly-once filter.
    fn adopt(&mut self, snapshot: &LearnerSnapshot) {
        self.next_delivery = snapshot.upto;
        self.sessions = Sessions::from_records(&snapshot.sessions);
        self.known_upto = self.known_upto.max(snapshot.upto);
    }

    /// The learner's part of a snapshot of everything delivered so far.
    /// Take it only when every delivery emitted has reached the state
    /// machine (no write pending), so the two parts match.
    pub fn snapshot(&self) -> LearnerSnapshot {
        LearnerSnapshot {
            upto: self.next_delivery,
            sessions: self.sessions.records(),
        }
    }

    /// Client sessions kept now.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// A snapshot covering every slot below `upto` is durable: drop the
    /// decided values below it (never past what was delivered), and tell
    /// the proposers, who trim the acceptors once every learner has one.
    pub fn compact(&mut self, upto: Slot) -> Output<LearnerWrite> {
        let mut out = Output::new();
        let upto = upto.min(self.next_delivery);
        if upto > self.state.base {
            let write = LearnerWrite::Compact(upto);
            self.state.apply(&write);
            out.persist.push(write);
            self.report_snapshot(&mut out);
        }
        out
    }

    fn report_snapshot(&self, out: &mut Output<LearnerWrite>) {
        let report = Message::Snapshotted {
            upto: self.state.base,
        };
        out.broadcast(self.proposer_ids(), &report);
    }

    fn proposer_ids(&self) -> impl Iterator<Item = RoleId> + '_ {
        self.config.proposers.iter().map(|p| RoleId::proposer(*p))
    }

    /// This learner's id.
    pub fn id(&self) -> RoleId {
        RoleId::learner(self.config.id)
    }

    /// The durable state as this learner sees it.
    pub fn state(&self) -> &LearnerState {
        &self.state
    }

    /// The next slot this learner will deliver.
    pub fn next_delivery(&self) -> Slot {
        self.next_delivery
    }

    /// Deliver, from slot 0 (or the end of the snapshot it was restored
    /// from), every contiguous decided slot and every decided instance:
    /// rebuilds an in-memory state machine after a restart.
    pub fn replay(&mut self) -> Output<LearnerWrite> {
        let mut out = self.compact(self.next_delivery);
        for (name, value) in &self.state.instances {
            out.deliver.push(Delivery::Instance {
                name: name.clone(),
                value: value.clone(),
            });
        }
        self.deliver_ready(&mut out);
        out
    }

    /// Handle one message from `from`.
    pub fn handle(&mut self, now: Millis, from: RoleId, message: Message) -> Output<LearnerWrite> {
        match message {
            Message::Decided { slot, value } => {
                let mut out = self.handle_decided(slot, value);
                self.continue_catch_up(now, from, &mut out);
                out
            }
            Message::Heartbeat { decided_upto, .. } => {
                self.known_upto = self.known_upto.max(decided_upto);
                Output::new()
            }
            Message::CatchUp {
                from_slot, to_slot, ..
            } => self.handle_catch_up(from, from_slot, to_slot),
            Message::InstanceDecided { name, value } => {
                self.handle_instance_decided(from, name, value)
            }
            Message::InstanceSync { count, digest } => {
                self.handle_instance_sync(from, count, digest)
            }
            Message::SnapshotOffer { upto } => self.handle_snapshot_offer(now, from, upto),
            Message::SnapshotRequest { upto, offset } => {
                self.handle_snapshot_request(from, upto, offset)
            }
            Message::SnapshotChunk {
                upto,
                offset,
                total,
                data,
            } => {
                let chunk = SnapshotBytes {
                    upto,
                    offset,
                    total,
                    data,
                };
                self.handle_snapshot_chunk(now, from, chunk)
            }
            Message::ReadReady { id, index } if from.role == Role::Proposer => {
                self.handle_read_ready(id, index)
            }
            _ => Output::new(),
        }
    }

    /// Advance time: ask for missing slots when a gap has lasted too long,
    /// compare decided instances with the next peer, repeat how far the
    /// durable snapshot reaches, and move a snapshot fetch along.
    pub fn tick(&mut self, now: Millis) -> Output<LearnerWrite> {
        let mut out = Output::new();
        self.sync_instances(now, &mut out);
        self.request_catch_up(now, &mut out);
        self.tick_fetch(now, &mut out);
        if self.state.base > 0 && now >= self.next_report_at {
            self.next_report_at = now + self.config.instance_sync_interval;
            self.report_snapshot(&mut out);
        }
        out
    }

    /// When [`Learner::tick`] next has work: the next instance sync with
    /// a peer, a catch-up request while a gap is open, the next snapshot
    /// report, a chunk to ask for again.
    pub fn next_deadline(&self) -> Option<Millis> {
        let sync = self.peers().next().map(|_| self.next_sync_at);
        let catch_up = (self.next_delivery < self.known_upto).then_some(self.catch_up.next_at);
        let report = (self.state.base > 0).then_some(self.next_report_at);
        earliest(
            earliest(sync, catch_up),
            earliest(report, self.fetch_deadline()),
        )
    }

    fn sync_instances(&mut self, now: Millis, out: &mut Output<LearnerWrite>) {
        let peers: Vec<RoleId> = self.peers().collect();
        if peers.is_empty() || now < self.next_sync_at {
            return;
        }
        self.next_sync_at = now + self.config.instance_sync_interval;
        self.sync_cursor = (self.sync_cursor + 1) % peers.len();
        let (count, digest) = self.instance_digest();
        out.send(
            peers[self.sync_cursor],
            Message::InstanceSync { count, digest },
        );
    }

    /// FNV-1a over the sorted instance names: equal sets, equal digests.
    fn instance_digest(&self) -> (u64, u64) {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for name in self.state.instances.keys() {
            for byte in name.bytes().chain([0]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        (self.state.instances.len() as u64, hash)
    }

    /// A peer whose digest differs gets our decided instances, at most
    /// `reply_max_bytes` of them per answer; the next answer continues
    /// after the last one sent, so every instance reaches it in turn.
    fn handle_instance_sync(
        &mut self,
        from: RoleId,
        count: u64,
        digest: u64,
    ) -> Output<LearnerWrite> {
        let mut out = Output::new();
        if (count, digest) == self.instance_digest() {
            return out;
        }
        let after = match self.sync_answered.get(&from.index) {
            Some(name) => Bound::Excluded(name.clone()),
            None => Bound::Unbounded,
        };
        let mut budget = ByteBudget::new(self.config.reply_max_bytes);
        let mut last = None;
        for (name, value) in self.state.instances.range((after, Bound::Unbounded)) {
            if !budget.take(name.len() + value.len()) {
                break;
            }
            last = Some(name.clone());
            out.send(
                from,
                Message::InstanceDecided {
                    name: name.clone(),
                    value: value.clone(),
                },
            );
        }
        let reached_end = last.as_ref() == self.state.instances.keys().next_back();
        match last {
            Some(name) if !reached_end => self.sync_answered.insert(from.index, name),
            _ => self.sync_answered.remove(&from.index),
        };
        out
    }

    /// The last request's range has been delivered (`from` sent its end)
    /// and the gap is still open: ask `from` alone for the next batch now,
    /// rather than everybody after `catch_up_interval`, so a learner far
    /// behind pages through the log at the speed of its disk and the
    /// network. If `from` has no more, the timer asks everybody again.
    fn continue_catch_up(&mut self, now: Millis, from: RoleId, out: &mut Output<LearnerWrite>) {
        let answered = self.catch_up.asked_to > 0 && self.next_delivery >= self.catch_up.asked_to;
        if answered && self.next_delivery < self.known_upto && !self.awaiting_install() {
            self.catch_up.next_at = now;
            self.request_catch_up_from(now, Some(from), out);
        }
    }

    fn request_catch_up(&mut self, now: Millis, out: &mut Output<LearnerWrite>) {
        self.request_catch_up_from(now, None, out);
    }

    /// Ask `only` (or every peer learner and proposer) for the gap.
    fn request_catch_up_from(
        &mut self,
        now: Millis,
        only: Option<RoleId>,
        out: &mut Output<LearnerWrite>,
    ) {
        if self.next_delivery >= self.known_upto || now < self.catch_up.next_at {
            return;
        }
        if self.catch_up.from_slot == self.next_delivery {
            self.catch_up.attempts += 1;
        } else {
            self.catch_up = CatchUpState {
                from_slot: self.next_delivery,
                attempts: 0,
                next_at: 0,
                asked_to: 0,
            };
        }
        self.catch_up.next_at = now + self.config.catch_up_interval;
        let from_slot = self.next_delivery;
        let to_slot = self
            .state
            .decided
            .range(from_slot..)
            .next()
            .map_or(self.known_upto, |(s, _)| *s);
        self.catch_up.asked_to = to_slot.min(from_slot.saturating_add(self.config.catch_up_batch));
        let escalate = self.catch_up.attempts >= ESCALATE_AFTER;
        let request = Message::CatchUp {
            from_slot,
            to_slot,
            escalate,
        };
        if let Some(peer) = only {
            out.send(peer, request);
            return;
        }
        out.broadcast(self.peers(), &request);
        out.broadcast(self.proposer_ids(), &request);
    }

    fn peers(&self) -> impl Iterator<Item = RoleId> + '_ {
        let me = self.config.id;
        self.config
            .learners
            .iter()
            .filter(move |l| **l != me)
            .map(|l| RoleId::learner(*l))
    }

    fn handle_decided(&mut self, slot: Slot, value: Value) -> Output<LearnerWrite> {
        let mut out = Output::new();
        self.known_upto = self.known_upto.max(slot + 1);
        if slot < self.next_delivery.max(self.state.base) || self.state.decided.contains_key(&slot)
        {
            return out; // delivered (maybe compacted away) or a duplicate
        }
        let write = LearnerWrite::Decided { slot, value };
        self.state.apply(&write);
        out.persist.push(write);
        self.deliver_ready(&mut out);
        out
    }

    fn deliver_ready(&mut self, out: &mut Output<LearnerWrite>) {
        if self.awaiting_install() {
            return;
        }
        let start = self.next_delivery;
        while let Some(value) = self.state.decided.get(&self.next_delivery) {
            let slot = self.next_delivery;
            let filtered = self.sessions.filter(slot, value.commands());
            let (horizon, max) = (self.config.session_horizon, self.config.max_sessions);
            self.sessions.expire(slot, horizon, max);
            let clock = match value {
                Value::Clock(stamp) => Some(*stamp),
                _ => None,
            };
            out.deliver.push(Delivery::Slot {
                slot,
                commands: filtered.apply,
                opened: filtered.opened,
                expired: filtered.expired,
                clock,
            });
            self.next_delivery += 1;
        }
        self.release_reads(out);
        if self.next_delivery > start && self.next_delivery > self.state.applied {
            let write = LearnerWrite::Applied(self.next_delivery);
            self.state.apply(&write);
            out.persist.push(write);
        }
    }

    /// A leader confirmed read `id` at `index`: deliver it once every slot
    /// below `index` is applied.
    fn handle_read_ready(&mut self, id: u64, index: Slot) -> Output<LearnerWrite> {
        let mut out = Output::new();
        if self.read_count >= MAX_READS {
            return out;
        }
        self.reads.entry(index).or_default().push(id);
        self.read_count += 1;
        if !self.awaiting_install() {
            self.release_reads(&mut out);
        }
        out
    }

    /// Deliver every read whose index is applied.
    fn release_reads(&mut self, out: &mut Output<LearnerWrite>) {
        if self.reads.is_empty() {
            return;
        }
        let waiting = self.reads.split_off(&(self.next_delivery + 1));
        let ready = std::mem::replace(&mut self.reads, waiting);
        for id in ready.into_values().flatten() {
            self.read_count -= 1;
            out.deliver.push(Delivery::ReadReady { id });
        }
    }

    fn handle_catch_up(
        &mut self,
        from: RoleId,
        from_slot: Slot,
        to_slot: Slot,
    ) -> Output<LearnerWrite> {
        let mut out = Output::new();
        let end = to_slot.min(from_slot.saturating_add(self.config.catch_up_batch));
        if end <= from_slot {
            return out; // malformed or empty request
        }
        if from_slot < self.state.base && from.role == Role::Learner {
            let offer = Message::SnapshotOffer {
                upto: self.state.base,
            };
            out.send(from, offer);
        }
        let mut budget = ByteBudget::new(self.config.reply_max_bytes);
        for (slot, value) in self.state.decided.range(from_slot..end) {
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
        out
    }

    fn handle_instance_decided(
        &mut self,
        from: RoleId,
        name: InstanceName,
        value: Vec<u8>,
    ) -> Output<LearnerWrite> {
        let mut out = Output::new();
        if from.role == Role::Learner && self.state.instances.contains_key(&name) {
            return out; // a peer's anti-entropy answer we already hold
        }
        if !self.state.instances.contains_key(&name) {
            let write = LearnerWrite::InstanceDecided {
                name: name.clone(),
                value: value.clone(),
            };
            self.state.apply(&write);
            out.persist.push(write);
            out.deliver.push(Delivery::Instance {
                name: name.clone(),
                value,
            });
        }
        out.send(from, Message::InstanceLearned { name });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Command, CommandId};

    const LEADER: RoleId = RoleId::proposer(1);

    pub(super) fn config() -> LearnerConfig {
        LearnerConfig {
            id: 1,
            learners: vec![1, 2],
            proposers: vec![1],
            catch_up_interval: 50,
            catch_up_batch: 100,
            reply_max_bytes: 1 << 20,
            instance_sync_interval: 1_000_000,
            session_horizon: DEFAULT_SESSION_HORIZON,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }

    fn command(session: u64, seq: u64) -> Command {
        Command {
            id: CommandId {
                client: session,
                seq,
            },
            payload: vec![],
        }
    }

    fn batch(client: u64) -> Value {
        Value::batch(vec![command(client, 1)])
    }

    /// The session opened by the first command of slot `slot`.
    fn session_of(slot: Slot) -> u64 {
        slot << 20
    }

    fn open() -> Value {
        Value::batch(vec![command(42, OPEN_SESSION)])
    }

    fn decided(l: &mut Learner, slot: Slot, value: Value) -> Output<LearnerWrite> {
        l.handle(0, LEADER, Message::Decided { slot, value })
    }

    #[test]
    fn a_ready_read_is_delivered_once_every_slot_below_its_index_is_applied() {
        let mut l = Learner::new(config(), LearnerState::default());
        let is_read =
            |out: &Output<LearnerWrite>, id: u64| out.deliver.contains(&Delivery::ReadReady { id });
        let ready = l.handle(0, LEADER, Message::ReadReady { id: 5, index: 2 });
        assert!(!is_read(&ready, 5), "slots 0 and 1 are not applied");
        let out = decided(&mut l, 1, Value::Noop);
        assert!(!is_read(&out, 5), "slot 0 is missing");
        let out = decided(&mut l, 0, Value::Noop);
        assert_eq!(delivered_slots(&out), vec![0, 1]);
        assert!(is_read(&out, 5), "after the slots it waited for");
        assert_eq!(out.deliver.last(), Some(&Delivery::ReadReady { id: 5 }));
        let now = l.handle(0, LEADER, Message::ReadReady { id: 6, index: 1 });
        assert!(is_read(&now, 6), "already applied: at once");
        let learner = RoleId::learner(2);
        let forged = l.handle(0, learner, Message::ReadReady { id: 7, index: 0 });
        assert!(
            forged.deliver.is_empty(),
            "only a proposer makes a read ready"
        );
    }

    fn delivered_slots(out: &Output<LearnerWrite>) -> Vec<Slot> {
        out.deliver
            .iter()
            .filter_map(|d| match d {
                Delivery::Slot { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn delivers_in_slot_order_after_a_gap_fills() {
        let mut l = Learner::new(config(), LearnerState::default());
        let out = decided(&mut l, 1, batch(2));
        assert_eq!(
            out.persist,
            vec![LearnerWrite::Decided {
                slot: 1,
                value: batch(2)
            }]
        );
        assert!(out.deliver.is_empty());
        let out = decided(&mut l, 0, batch(1));
        assert_eq!(delivered_slots(&out), vec![0, 1]);
        assert_eq!(out.persist.last(), Some(&LearnerWrite::Applied(2)));
    }

    #[test]
    fn duplicate_announcements_are_ignored() {
        let mut l = Learner::new(config(), LearnerState::default());
        decided(&mut l, 0, batch(1));
        let out = decided(&mut l, 0, batch(1));
        assert!(out.is_empty());
    }

    #[test]
    fn a_command_decided_twice_is_delivered_once() {
        let mut l = Learner::new(config(), LearnerState::default());
        let opened = decided(&mut l, 0, open());
        let Delivery::Slot { opened, .. } = &opened.deliver[0] else {
            panic!("a slot")
        };
        assert_eq!(
            opened,
            &vec![(CommandId { client: 42, seq: 0 }, session_of(0))]
        );
        let first = decided(&mut l, 1, batch(session_of(0)));
        assert!(
            matches!(&first.deliver[0], Delivery::Slot { commands, .. } if commands.len() == 1)
        );
        let out = decided(&mut l, 2, batch(session_of(0)));
        assert_eq!(
            out.deliver,
            vec![Delivery::Slot {
                slot: 2,
                commands: vec![],
                opened: vec![],
                expired: vec![],
                clock: None,
            }]
        );
    }

    #[test]
    fn a_command_without_a_session_is_not_applied() {
        let mut l = Learner::new(config(), LearnerState::default());
        let out = decided(&mut l, 0, batch(77));
        assert_eq!(
            out.deliver,
            vec![Delivery::Slot {
                slot: 0,
                commands: vec![],
                opened: vec![],
                expired: vec![CommandId { client: 77, seq: 1 }],
                clock: None,
            }]
        );
    }

    #[test]
    fn a_learner_restored_from_a_snapshot_continues_where_the_log_would() {
        let mut l = Learner::new(config(), LearnerState::default());
        decided(&mut l, 0, open());
        decided(&mut l, 1, open());
        for slot in 2..5 {
            decided(
                &mut l,
                slot,
                Value::batch(vec![command(session_of(0), slot - 1)]),
            );
        }
        let snapshot = l.snapshot();
        assert_eq!(snapshot.upto, 5);
        let out = l.compact(9);
        assert_eq!(
            out.persist,
            vec![LearnerWrite::Compact(5)],
            "never past delivery"
        );
        assert!(
            l.state().decided.is_empty(),
            "the log below the snapshot is gone"
        );
        assert!(
            decided(&mut l, 3, batch(9)).is_empty(),
            "below the base: ignored"
        );

        let mut state = l.state().clone();
        state.apply(&LearnerWrite::Decided {
            slot: 5,
            value: Value::batch(vec![
                command(session_of(0), 1), // applied in slot 2
                command(session_of(1), 1),
            ]),
        });
        let mut restored = Learner::restored(config(), state, &snapshot);
        let replayed = restored.replay();
        assert_eq!(delivered_slots(&replayed), vec![5], "only the tail");
        let Delivery::Slot { commands, .. } = &replayed.deliver[0] else {
            panic!("a slot")
        };
        let ids: Vec<u64> = commands.iter().map(|c| c.id.client).collect();
        assert_eq!(
            ids,
            vec![session_of(1)],
            "the sessions came back with the snapshot"
        );
        assert_eq!(restored.snapshot().upto, 6);
    }

    #[test]
    fn a_crash_between_snapshot_and_compaction_compacts_at_start() {
        let mut l = Learner::new(config(), LearnerState::default());
        for slot in 0..3 {
            decided(&mut l, slot, batch(slot));
        }
        let snapshot = l.snapshot();
        let mut restored = Learner::restored(config(), l.state().clone(), &snapshot);
        let out = restored.replay();
        assert_eq!(out.persist.first(), Some(&LearnerWrite::Compact(3)));
        assert!(delivered_slots(&out).is_empty());
    }

    #[test]
    fn next_deadline_is_the_next_sync_or_catch_up() {
        let mut l = Learner::new(config(), LearnerState::default());
        assert_eq!(l.next_deadline(), Some(0), "the first instance digest");
        l.tick(0);
        assert_eq!(
            l.next_deadline(),
            Some(1_000_000),
            "no gap: the next digest"
        );
        decided(&mut l, 3, batch(1));
        assert_eq!(l.next_deadline(), Some(0), "a gap: catch up now");
        assert!(!l.tick(0).is_empty());
        assert_eq!(l.next_deadline(), Some(50), "then every catch_up_interval");
        assert!(l.tick(49).is_empty());
    }

    #[test]
    fn a_gap_triggers_catch_up_and_then_escalates() {
        let mut l = Learner::new(config(), LearnerState::default());
        l.tick(0); // first instance digest goes out
        decided(&mut l, 3, batch(1));
        let out = l.tick(10);
        let expected = Message::CatchUp {
            from_slot: 0,
            to_slot: 3,
            escalate: false,
        };
        assert_eq!(out.send.len(), 2); // learner 2 and proposer 1
        assert!(out.send.iter().all(|o| o.message == expected));
        assert!(
            l.tick(20).is_empty(),
            "waits catch_up_interval between requests"
        );
        l.tick(60);
        let out = l.tick(110);
        assert!(matches!(
            out.send[0].message,
            Message::CatchUp { escalate: true, .. }
        ));
    }

    #[test]
    fn a_learner_far_behind_asks_for_the_next_batch_as_soon_as_one_is_delivered() {
        let mut l = Learner::new(config(), LearnerState::default());
        let heartbeat = Message::Heartbeat {
            ballot: crate::types::Ballot::new(1, 1),
            decided_upto: 1_000,
        };
        l.handle(0, LEADER, heartbeat);
        l.tick(0);
        for slot in 0..99 {
            let out = decided(&mut l, slot, Value::Noop);
            assert!(out.send.is_empty(), "slot {slot}: the batch is not in yet");
        }
        let out = decided(&mut l, 99, Value::Noop);
        assert!(
            out.send.iter().any(|o| matches!(
                o.message,
                Message::CatchUp {
                    from_slot: 100,
                    to_slot: 1_000,
                    ..
                }
            )),
            "{:?}",
            out.send
        );
    }

    #[test]
    fn heartbeat_reveals_a_missing_tail() {
        let mut l = Learner::new(config(), LearnerState::default());
        assert!(
            l.tick(0)
                .send
                .iter()
                .all(|o| matches!(o.message, Message::InstanceSync { .. }))
        );
        l.handle(
            0,
            LEADER,
            Message::Heartbeat {
                ballot: Default::default(),
                decided_upto: 2,
            },
        );
        let out = l.tick(1);
        assert!(matches!(
            out.send[0].message,
            Message::CatchUp {
                from_slot: 0,
                to_slot: 2,
                ..
            }
        ));
    }

    #[test]
    fn serves_catch_up_from_its_log() {
        let mut l = Learner::new(config(), LearnerState::default());
        for s in 0..5 {
            decided(&mut l, s, batch(s));
        }
        let peer = RoleId::learner(2);
        let out = l.handle(
            0,
            peer,
            Message::CatchUp {
                from_slot: 1,
                to_slot: 3,
                escalate: false,
            },
        );
        let slots: Vec<_> = out
            .send
            .iter()
            .map(|o| match o.message {
                Message::Decided { slot, .. } => slot,
                _ => panic!(),
            })
            .collect();
        assert_eq!(slots, vec![1, 2]);
    }

    #[test]
    fn restart_replays_the_durable_log() {
        let mut l = Learner::new(config(), LearnerState::default());
        let mut durable = LearnerState::default();
        for s in 0..3 {
            for w in decided(&mut l, s, batch(s)).persist {
                durable.apply(&w);
            }
        }
        let mut restarted = Learner::new(config(), durable);
        assert_eq!(delivered_slots(&restarted.replay()), vec![0, 1, 2]);
    }

    #[test]
    fn instance_decision_is_persisted_delivered_and_acknowledged() {
        let mut l = Learner::new(config(), LearnerState::default());
        let out = l.handle(
            0,
            LEADER,
            Message::InstanceDecided {
                name: "x".into(),
                value: vec![1],
            },
        );
        assert_eq!(out.persist.len(), 1);
        assert_eq!(
            out.deliver,
            vec![Delivery::Instance {
                name: "x".into(),
                value: vec![1]
            }]
        );
        assert_eq!(
            out.send[0].message,
            Message::InstanceLearned { name: "x".into() }
        );
        let again = l.handle(
            0,
            LEADER,
            Message::InstanceDecided {
                name: "x".into(),
                value: vec![1],
            },
        );
        assert!(again.persist.is_empty() && again.deliver.is_empty());
    }

    #[test]
    fn instance_sync_sends_decisions_to_a_peer_that_lacks_them() {
        let mut l = Learner::new(config(), LearnerState::default());
        l.handle(
            0,
            LEADER,
            Message::InstanceDecided {
                name: "x".into(),
                value: vec![1],
            },
        );
        let peer = RoleId::learner(2);
        let mut empty = Learner::new(LearnerConfig { id: 2, ..config() }, LearnerState::default());
        let digest = empty.tick(0);
        assert_eq!(digest.send[0].to, RoleId::learner(1));
        let answer = l.handle(0, peer, digest.send[0].message.clone());
        assert_eq!(
            answer.send[0].message,
            Message::InstanceDecided {
                name: "x".into(),
                value: vec![1]
            }
        );
        let learned = empty.handle(0, RoleId::learner(1), answer.send[0].message.clone());
        assert_eq!(learned.deliver.len(), 1);
        // Equal sets: nothing to send.
        let (count, digest) = l.instance_digest();
        assert!(
            empty
                .handle(
                    0,
                    RoleId::learner(1),
                    Message::InstanceSync { count, digest }
                )
                .send
                .is_empty()
        );
    }

    #[test]
    fn a_catch_up_answer_is_bounded_in_bytes() {
        let budget = 2 * batch(0).encoded_len();
        let mut l = Learner::new(
            LearnerConfig {
                reply_max_bytes: budget,
                ..config()
            },
            LearnerState::default(),
        );
        for s in 0..10 {
            decided(&mut l, s, batch(s));
        }
        let request = Message::CatchUp {
            from_slot: 0,
            to_slot: 10,
            escalate: false,
        };
        let out = l.handle(0, RoleId::learner(2), request);
        assert_eq!(out.send.len(), 2);
    }

    #[test]
    fn instance_sync_answers_page_through_every_instance() {
        let one = "a".len() + 1;
        let mut l = Learner::new(
            LearnerConfig {
                reply_max_bytes: 2 * one,
                ..config()
            },
            LearnerState::default(),
        );
        for name in ["a", "b", "c", "d", "e"] {
            l.handle(
                0,
                LEADER,
                Message::InstanceDecided {
                    name: name.into(),
                    value: vec![1],
                },
            );
        }
        let peer = RoleId::learner(2);
        let mut sent = Vec::new();
        for _ in 0..3 {
            let out = l.handle(
                0,
                peer,
                Message::InstanceSync {
                    count: 0,
                    digest: 0,
                },
            );
            assert!(out.send.len() <= 2, "bounded: {:?}", out.send);
            for o in out.send {
                if let Message::InstanceDecided { name, .. } = o.message {
                    sent.push(name);
                }
            }
        }
        assert_eq!(
            sent,
            ["a", "b", "c", "d", "e"],
            "each answer continues the last"
        );
        let out = l.handle(
            0,
            peer,
            Message::InstanceSync {
                count: 0,
                digest: 0,
            },
        );
        assert!(
            matches!(&out.send[0].message, Message::InstanceDecided { name, .. } if name == "a")
        );
    }
}
