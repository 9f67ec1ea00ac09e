//! The learner: the shared shell plus a [`StateMachine`]. Decisions are
//! persisted by the shell and applied in slot order as they arrive, without
//! waiting for the learner's own copy to be synced (a decided value is
//! already durable at a phase-2 quorum of acceptors; see
//! `Delivery::is_chosen`); each command's response goes to whoever waits
//! for it ([`WatchCommand`]), and every decision is streamed to subscribers
//! ([`Subscribe`]).
//!
//! **Snapshots.** With a [`SnapshotDir`], the learner snapshots after every
//! `every` applied commands, at a moment when nothing is pending (so the
//! state machine holds exactly what the core delivered), then compacts its
//! log below the snapshot. A snapshot file's body is the learner's part
//! (its end, the exactly-once filter), the applied log's digest and count,
//! then the state machine's own bytes ([`restore`] reads it back). On start
//! the node restores the latest snapshot and replays only the log after it.
//! The learner pauses only while the state machine takes an image of itself
//! ([`StateMachine::snapshot_image`]: by default its bytes in memory; the
//! KV store shares its watch history's sealed chunks instead); the image
//! is encoded into the file, hashed and synced on the blocking pool while
//! the learner goes on, and only once it
//! is durable is it installed, the log compacted below it and whoever asked
//! for it answered ([`SnapshotWritten`]). One snapshot is written at a time.
//!
//! **Snapshot transfer.** The same directory serves peers: a chunk asked
//! for is read from the latest snapshot file ([`Delivery::ServeSnapshot`]).
//! A snapshot fetched from a peer is staged chunk by chunk
//! ([`Delivery::SnapshotChunk`]); once complete it is synced and verified,
//! the state machine is restored from it, it is promoted to be the latest
//! snapshot, and only then does the core continue from its end. A crash
//! anywhere in between leaves the old snapshot and log, or the new
//! snapshot: never a mix.

use crate::driver::{Hooks, Jobs, RoleActor};
use crate::leader_hint::LeaderHint;
use crate::status::{LearnerStatus, RoleStatus};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};
use synod_api::{Decision, SnapshotError, StateMachine, SubmitError};
use synod_core::{
    CommandId, Delivery, Learner, LearnerSnapshot, LearnerWrite, Message, Output, Role, RoleId,
    Slot, SnapshotBytes,
};
use synod_storage::{Incoming, Snapshot, SnapshotDir, StorageError, Store};
use tokio::sync::{mpsc, oneshot};

/// The learner actor, applying to state machine `M`.
pub type LearnerActor<S, M> = RoleActor<Learner, S, Applier<M>>;

/// A command's answer: the state machine's response (or, for a session
/// open, the new session's id), or why there is none.
pub type CommandAnswer = Result<Vec<u8>, SubmitError>;

/// A queue many commands answer into, each answer with its command's id.
pub type AnswerQueue = mpsc::UnboundedSender<(CommandId, CommandAnswer)>;

/// Where the answer to a watched command goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// One caller, waiting for this command alone.
    One(oneshot::Sender<CommandAnswer>),
    /// A queue many commands answer into, each answer with its command's
    /// id: a client connection's, so a batch of answers costs its reader
    /// one wakeup instead of one channel and one wakeup per command.
    Queue(AnswerQueue),
}

impl ReplyTo {
    /// Deliver the answer to command `id` (nothing if the caller left).
    pub fn send(self, id: CommandId, answer: CommandAnswer) {
        match self {
            ReplyTo::One(reply) => {
                let _ = reply.send(answer);
            }
            ReplyTo::Queue(queue) => {
                let _ = queue.send((id, answer));
            }
        }
    }

    /// The caller is gone: nobody reads the answer.
    pub fn is_closed(&self) -> bool {
        match self {
            ReplyTo::One(reply) => reply.is_closed(),
            ReplyTo::Queue(queue) => queue.is_closed(),
        }
    }

    /// Whether this answers into `queue`.
    fn is_queue(&self, queue: &AnswerQueue) -> bool {
        matches!(self, ReplyTo::Queue(mine) if mine.same_channel(queue))
    }
}

/// Who waits for which command's answer. Whoever still waits when the
/// learner stops (it moved away, or the node shuts down) is told
/// [`SubmitError::ShuttingDown`] rather than left waiting: a queue shared
/// by many commands would not notice one answer never coming.
#[derive(Debug, Default)]
struct Waiters {
    by_command: HashMap<CommandId, ReplyTo, foldhash::quality::RandomState>,
    prune_at: usize,
}

impl Waiters {
    fn answer(&mut self, id: CommandId, answer: CommandAnswer) {
        if let Some(waiter) = self.by_command.remove(&id) {
            waiter.send(id, answer);
        }
    }

    /// Waiters whose caller gave up are pruned when the map has doubled,
    /// so the scan costs O(1) per watch on average.
    fn insert(&mut self, id: CommandId, reply: ReplyTo) {
        if self.by_command.len() >= self.prune_at.max(MIN_PRUNE) {
            self.by_command.retain(|_, waiter| !waiter.is_closed());
            self.prune_at = 2 * self.by_command.len();
        }
        self.by_command.insert(id, reply);
    }

    /// Forget the waiters of `ids` that answer into `queue`.
    fn unwatch(&mut self, ids: &[CommandId], queue: &AnswerQueue) {
        for id in ids {
            if self.by_command.get(id).is_some_and(|w| w.is_queue(queue)) {
                self.by_command.remove(id);
            }
        }
    }

    fn take(&mut self) -> impl Iterator<Item = (CommandId, ReplyTo)> + use<> {
        std::mem::take(&mut self.by_command).into_iter()
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        for (id, waiter) in self.take() {
            waiter.send(id, Err(SubmitError::ShuttingDown));
        }
    }
}

/// Who waits for a snapshot ([`TakeSnapshot`]).
type SnapshotWaiter = oneshot::Sender<Result<Snapshot, String>>;

/// Waiter count below which abandoned waiters are not pruned.
const MIN_PRUNE: usize = 1024;

/// Largest learner part a snapshot file may claim.
const MAX_LEARNER_PART: usize = 256 << 20;

/// What a learner adds to the shell: the state machine, who waits for its
/// answers, and its snapshots.
pub struct Applier<M> {
    machine: M,
    waiters: Waiters,
    subscribers: Vec<mpsc::Sender<Decision>>,
    progress: Progress,
    snapshots: Option<Snapshots>,
    /// The leader, as far as this learner can tell (shared with the
    /// node's gateway).
    leader: Rc<LeaderHint>,
    /// Who waits for the decision of a single-decree instance.
    instance_waiters: HashMap<String, Vec<oneshot::Sender<Vec<u8>>>>,
    prune_instance_waiters_at: usize,
    /// Read-index reads waiting for their `Delivery::ReadReady`.
    reads: HashMap<u64, ReadWaiter>,
    prune_reads_at: usize,
}

/// A read-index read: the request, and who gets the answer.
struct ReadWaiter {
    request: Vec<u8>,
    reply: oneshot::Sender<Option<Vec<u8>>>,
}

/// What the applied log amounts to; kept in snapshots so a restored
/// learner reports the same as one that replayed everything.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// Hash chain over the applied slots and their commands.
    digest: u64,
    /// Commands applied.
    commands: u64,
}

/// When a learner snapshots: after this many applied commands or this many
/// bytes of applied payloads, whichever comes first (0: not by that
/// measure; both 0: never, though the directory still serves and receives
/// snapshots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotEvery {
    /// Applied commands.
    pub commands: u64,
    /// Bytes of applied command payloads.
    pub bytes: u64,
    /// Where this learner's schedule starts among its peers'.
    pub stagger: Stagger,
}

/// Learners that apply the same log on the same schedule would all
/// snapshot at the same slot, and every node would spend its CPU and disk
/// on it at once. Learner `place` of `of` starts `place / of` of the way
/// into its first period, so their snapshots are spread evenly over it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stagger {
    /// This learner's position among its peers, from 0.
    pub place: u64,
    /// How many learners there are (0 or 1: no stagger).
    pub of: u64,
}

impl SnapshotEvery {
    /// The commands and bytes counted as already applied when a schedule
    /// starts (see [`Stagger`]).
    fn head_start(&self) -> (u64, u64) {
        let Stagger { place, of } = self.stagger;
        if of < 2 {
            return (0, 0);
        }
        let share = |period: u64| period / of * (place % of);
        (share(self.commands), share(self.bytes))
    }
}

struct Snapshots {
    dir: SnapshotDir,
    every: SnapshotEvery,
    /// Commands and payload bytes applied since the last snapshot.
    since: u64,
    since_bytes: u64,
    /// The latest installed snapshot: what peers are served.
    current: Option<Snapshot>,
    /// A peer's snapshot being staged.
    incoming: Option<Incoming>,
    /// Snapshots fetched from peers and installed.
    fetched: u64,
    /// Callers of [`TakeSnapshot`] waiting for the next one.
    waiting: Vec<SnapshotWaiter>,
    /// A snapshot file being written off the actor.
    writing: Option<Writing>,
}

/// A snapshot file being written off the actor.
struct Writing {
    /// The callers it answers once installed.
    waiting: Vec<SnapshotWaiter>,
    /// When the learner began to serialize it.
    started: Instant,
    /// How long the learner paused to serialize it.
    serializing: Duration,
}

/// A snapshot file written off the learner's actor, durable but not yet
/// installed (or why it could not be written).
pub struct SnapshotWritten(Result<Snapshot, StorageError>);

impl Snapshots {
    fn new(dir: SnapshotDir, every: SnapshotEvery) -> Self {
        let (since, since_bytes) = every.head_start();
        Self {
            dir,
            every,
            since,
            since_bytes,
            current: None,
            incoming: None,
            fetched: 0,
            waiting: Vec::new(),
            writing: None,
        }
    }

    /// A snapshot is due: enough commands or bytes applied since the last,
    /// or a caller asked for one; and none is being written.
    fn due(&self) -> bool {
        let by_count = self.every.commands > 0 && self.since >= self.every.commands;
        let by_bytes = self.every.bytes > 0 && self.since_bytes >= self.every.bytes;
        (by_count || by_bytes || !self.waiting.is_empty()) && self.writing.is_none()
    }

    /// Install a snapshot written off the actor, unless a newer one (fetched
    /// from a peer) was installed meanwhile: the installed one either way.
    fn install_written(&mut self, written: Snapshot) -> Result<Snapshot, StorageError> {
        if let Some(newer) = self.current.as_ref().filter(|c| c.upto > written.upto) {
            let newer = newer.clone();
            self.dir.discard(written);
            return Ok(newer);
        }
        let installed = self.dir.promote(written)?;
        self.current = Some(installed.clone());
        Ok(installed)
    }
}

/// The learner's part of a snapshot file, before the state machine's bytes.
#[derive(Serialize, Deserialize)]
struct Header {
    learner: LearnerSnapshot,
    progress: Progress,
}

impl<M: StateMachine> Applier<M> {
    /// Apply decisions to `machine`; no snapshots.
    pub fn new(machine: M) -> Self {
        Self {
            machine,
            waiters: Waiters::default(),
            subscribers: Vec::new(),
            progress: Progress::default(),
            snapshots: None,
            leader: Rc::default(),
            instance_waiters: HashMap::new(),
            prune_instance_waiters_at: MIN_PRUNE,
            reads: HashMap::new(),
            prune_reads_at: MIN_PRUNE,
        }
    }

    /// Keep in `leader` the proposer leading with the highest ballot this
    /// learner has heard a heartbeat from: a hint of where to send
    /// commands (until the first heartbeat it holds what the caller put
    /// there).
    pub fn with_leader_hint(mut self, leader: Rc<LeaderHint>) -> Self {
        self.leader = leader;
        self
    }

    /// Keep snapshots in `dir`: take one as often as `every` says, serve
    /// the latest to peers, stage theirs.
    pub fn with_snapshots(mut self, dir: SnapshotDir, every: SnapshotEvery) -> Self {
        self.snapshots = Some(Snapshots::new(dir, every));
        self
    }

    /// Restore `machine` and this applier from `snapshot` (the latest in
    /// the directory given to `with_snapshots`); the learner's part comes
    /// back for `Learner::restored`.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<LearnerSnapshot, SnapshotError> {
        let part = self.restore_from(snapshot)?;
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.current = Some(snapshot.clone());
        }
        Ok(part)
    }

    fn restore_from(&mut self, snapshot: &Snapshot) -> Result<LearnerSnapshot, SnapshotError> {
        let mut body = snapshot
            .body()
            .map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        let mut len = [0u8; 4];
        body.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_LEARNER_PART {
            return Err(SnapshotError::Invalid(format!("a {len}-byte learner part")));
        }
        let mut header = vec![0u8; len];
        body.read_exact(&mut header)?;
        let header: Header =
            postcard::from_bytes(&header).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        self.machine.restore(&mut body)?;
        self.progress = header.progress;
        Ok(header.learner)
    }

    /// Apply a slot's new commands and answer whoever waits: with the state
    /// machine's response, a new session's id, or "session expired".
    fn apply(
        &mut self,
        slot: Slot,
        commands: Vec<synod_core::Command>,
        opened: Vec<(CommandId, u64)>,
        expired: Vec<CommandId>,
    ) -> Decision {
        let responses: Vec<Vec<u8>> = commands.iter().map(|c| self.machine.apply(c)).collect();
        self.record(slot, &commands);
        for (command, response) in commands.iter().zip(&responses) {
            self.answer(command.id, Ok(response.clone()));
        }
        for (open, session) in opened {
            self.answer(open, Ok(session.to_be_bytes().to_vec()));
        }
        for id in expired {
            self.answer(id, Err(SubmitError::SessionExpired));
        }
        Decision::Slot {
            slot,
            commands,
            responses,
        }
    }

    fn record(&mut self, slot: Slot, commands: &[synod_core::Command]) {
        self.progress.digest = chain_digest(self.progress.digest, slot, commands);
        self.progress.commands += commands.len() as u64;
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.since += commands.len() as u64;
            let bytes: usize = commands.iter().map(|c| c.payload.len()).sum();
            snapshots.since_bytes += bytes as u64;
        }
    }

    fn answer(&mut self, id: CommandId, answer: CommandAnswer) {
        self.waiters.answer(id, answer);
    }

    fn watch(&mut self, watch: WatchCommand) {
        if let Some(response) = self.machine.response_to(watch.id) {
            watch.reply.send(watch.id, Ok(response)); // applied before: answer now
            return;
        }
        self.waiters.insert(watch.id, watch.reply);
    }

    /// Serialize everything applied and hand the file's writing to `jobs`
    /// ([`Applier::written`] installs it): when `every` commands were
    /// applied since the last, or when a caller asked for one
    /// ([`TakeSnapshot`]).
    fn snapshot(&mut self, core: &Learner, jobs: &mut Jobs<SnapshotWritten>) {
        let Some(snapshots) = self.snapshots.as_mut().filter(|s| s.due()) else {
            return;
        };
        snapshots.since = 0;
        snapshots.since_bytes = 0;
        let header = Header {
            learner: core.snapshot(),
            progress: self.progress,
        };
        let upto = header.learner.upto;
        let started = Instant::now();
        let header = match encode_header(&header) {
            Ok(header) => header,
            Err(error) => {
                // The log stays whole; the next attempt comes after `every`
                // more commands.
                tracing::error!(learner = %core.id(), %error, "snapshot failed");
                for waiter in snapshots.waiting.drain(..) {
                    let _ = waiter.send(Err(error.to_string()));
                }
                return;
            }
        };
        let image = self.machine.snapshot_image();
        snapshots.writing = Some(Writing {
            waiting: std::mem::take(&mut snapshots.waiting),
            started,
            serializing: started.elapsed(),
        });
        let dir = snapshots.dir.clone();
        jobs.push(Box::new(move || {
            SnapshotWritten(dir.write(upto, |out| {
                out.write_all(&header)?;
                image(out)
            }))
        }));
    }

    /// The snapshot file handed off in [`Applier::snapshot`] is written:
    /// install it, answer who asked for it, and compact the log below it.
    fn written(&mut self, core: &mut Learner, written: SnapshotWritten) -> Output<LearnerWrite> {
        let Some(snapshots) = self.snapshots.as_mut() else {
            return Output::new();
        };
        let Some(writing) = snapshots.writing.take() else {
            return Output::new();
        };
        match written.0.and_then(|w| snapshots.install_written(w)) {
            Ok(snapshot) => {
                tracing::info!(
                    learner = %core.id(),
                    upto = snapshot.upto,
                    bytes = snapshot.len,
                    serialize_ms = writing.serializing.as_secs_f64() * 1e3,
                    total_ms = writing.started.elapsed().as_secs_f64() * 1e3,
                    "snapshot installed"
                );
                for waiter in writing.waiting {
                    let _ = waiter.send(Ok(snapshot.clone()));
                }
                core.compact(snapshot.upto)
            }
            Err(error) => {
                // The log stays whole; the next attempt comes after `every`
                // more commands.
                tracing::error!(learner = %core.id(), %error, "snapshot failed");
                for waiter in writing.waiting {
                    let _ = waiter.send(Err(error.to_string()));
                }
                Output::new()
            }
        }
    }
}

impl<M: StateMachine> Applier<M> {
    /// A peer asks for bytes of snapshot `upto`: read them from the latest
    /// snapshot, or offer that one if it is another.
    fn serve(&self, to: RoleId, upto: Slot, offset: u64, max_bytes: usize) -> Output<LearnerWrite> {
        let mut out = Output::new();
        let Some(current) = self.snapshots.as_ref().and_then(|s| s.current.as_ref()) else {
            return out;
        };
        if current.upto != upto {
            out.send(to, Message::SnapshotOffer { upto: current.upto });
            return out;
        }
        match current.read_at(offset, max_bytes) {
            Ok(data) => out.send(
                to,
                Message::SnapshotChunk {
                    upto,
                    offset,
                    total: current.file_len(),
                    data,
                },
            ),
            Err(error) => tracing::warn!(%error, "cannot serve a snapshot chunk"),
        }
        out
    }

    /// Stage the next chunk of a fetched snapshot; on the last one,
    /// install it. Only a failure after the state machine was replaced is
    /// an error (the learner stops); anything before just abandons the
    /// fetch, and the next offer starts over.
    fn stage(
        &mut self,
        core: &mut Learner,
        chunk: SnapshotBytes,
    ) -> Result<Output<LearnerWrite>, String> {
        let staged = match self.stage_bytes(chunk) {
            Ok(Staging::More) => return Ok(Output::new()),
            Ok(Staging::Complete(incoming)) if core.wants_snapshot(incoming.upto()) => {
                incoming.finish()
            }
            Ok(Staging::Complete(incoming)) => {
                incoming.discard();
                return Ok(core.abandon_fetch());
            }
            Ok(Staging::Dropped) => return Ok(core.abandon_fetch()),
            Err(error) => Err(error),
        };
        let staged = match staged {
            Ok(staged) => staged,
            Err(error) => {
                tracing::warn!(learner = %core.id(), %error, "a fetched snapshot was refused");
                return Ok(core.abandon_fetch());
            }
        };
        let upto = staged.upto;
        let part = self
            .restore_from(&staged)
            .map_err(|e| format!("restoring the snapshot fetched up to slot {upto}: {e}"))?;
        let snapshots = self.snapshots.as_mut().expect("staged in it");
        let installed = snapshots
            .dir
            .promote(staged)
            .map_err(|e| format!("installing the snapshot fetched up to slot {upto}: {e}"))?;
        snapshots.current = Some(installed);
        // The peer just snapshotted here: keep this learner's place apart.
        (snapshots.since, snapshots.since_bytes) = snapshots.every.head_start();
        snapshots.fetched += 1;
        self.answer_restored_waiters();
        tracing::info!(learner = %core.id(), upto, "installed a snapshot fetched from a peer");
        Ok(core.install(&part))
    }

    /// Append a chunk to the staging file (a chunk at offset 0 starts a new
    /// one); the staging once it holds every byte.
    fn stage_bytes(&mut self, chunk: SnapshotBytes) -> Result<Staging, StorageError> {
        let Some(snapshots) = self.snapshots.as_mut() else {
            return Ok(Staging::Dropped); // no snapshot directory to stage in
        };
        if chunk.offset == 0 {
            if let Some(old) = snapshots.incoming.take() {
                old.discard();
            }
            snapshots.incoming = Some(snapshots.dir.receive(chunk.upto)?);
        }
        let Some(mut incoming) = snapshots.incoming.take() else {
            return Ok(Staging::Dropped);
        };
        if incoming.upto() != chunk.upto || incoming.written() != chunk.offset {
            incoming.discard();
            return Ok(Staging::Dropped);
        }
        if let Err(error) = incoming.append(&chunk.data) {
            incoming.discard();
            return Err(error);
        }
        if incoming.written() < chunk.total {
            snapshots.incoming = Some(incoming);
            return Ok(Staging::More);
        }
        Ok(Staging::Complete(incoming))
    }

    /// The state machine jumped ahead: waiters whose command it now holds
    /// get their answer, the others "outcome unknown" (their command may be
    /// inside the snapshot without its response); subscribers, who would
    /// miss the decisions inside the snapshot, are dropped (they can
    /// subscribe again).
    fn answer_restored_waiters(&mut self) {
        for (id, waiter) in self.waiters.take() {
            let answer = self
                .machine
                .response_to(id)
                .ok_or(SubmitError::OutcomeUnknown);
            waiter.send(id, answer);
        }
        self.subscribers.clear();
    }
}

/// Where staging a fetched snapshot stands after a chunk.
enum Staging {
    /// More chunks to come.
    More,
    /// Every byte is staged.
    Complete(Incoming),
    /// Nothing to stage into, or the chunk did not follow the staged ones.
    Dropped,
}

/// The applied log's digest after `slot`: a hash of the digest before,
/// the slot and its commands' ids. Exactly what hashing `(digest, slot,
/// ids)` with the ids in a `Vec` gives (the digest is compared across
/// learners, whichever version computed it), without collecting the ids.
fn chain_digest(digest: u64, slot: Slot, commands: &[synod_core::Command]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (digest, slot).hash(&mut hasher);
    hasher.write_usize(commands.len());
    for command in commands {
        command.id.hash(&mut hasher);
    }
    hasher.finish()
}

/// The learner's part of a snapshot file, framed: its length, then it.
fn encode_header(header: &Header) -> std::io::Result<Vec<u8>> {
    let header = postcard::to_stdvec(header).map_err(std::io::Error::other)?;
    let len = u32::try_from(header.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(4 + header.len());
    framed.extend_from_slice(&len.to_le_bytes());
    framed.extend_from_slice(&header);
    Ok(framed)
}

impl<M: StateMachine> Hooks<Learner> for Applier<M> {
    type Finished = SnapshotWritten;

    fn inbound(&mut self, from: RoleId, message: &Message) {
        if let (Role::Proposer, Message::Heartbeat { ballot, .. }) = (from.role, message) {
            self.leader.heard(from.index, *ballot);
        }
    }

    fn deliver(
        &mut self,
        core: &mut Learner,
        delivery: Delivery,
    ) -> Result<Output<LearnerWrite>, String> {
        let decision = match delivery {
            Delivery::SnapshotChunk(chunk) => return self.stage(core, chunk),
            Delivery::ServeSnapshot {
                to,
                upto,
                offset,
                max_bytes,
            } => return Ok(self.serve(to, upto, offset, max_bytes)),
            Delivery::Slot {
                slot,
                commands,
                opened,
                expired,
                clock,
            } => {
                if let Some(stamp) = clock {
                    self.machine.clock(stamp);
                }
                self.apply(slot, commands, opened, expired)
            }
            Delivery::ReadReady { id } => {
                if let Some(read) = self.reads.remove(&id) {
                    let _ = read.reply.send(self.machine.query(&read.request));
                }
                return Ok(Output::new());
            }
            Delivery::Instance { name, value } => {
                for waiter in self.instance_waiters.remove(&name).unwrap_or_default() {
                    let _ = waiter.send(value.clone());
                }
                Decision::Instance { name, value }
            }
        };
        self.subscribers
            .retain(|s| s.try_send(decision.clone()).is_ok());
        Ok(Output::new())
    }

    fn status(&self, core: &Learner) -> RoleStatus {
        RoleStatus::Learner(LearnerStatus {
            id: core.id(),
            applied: core.next_delivery(),
            decided: core.state().decided.len(),
            log_digest: self.progress.digest,
            commands_applied: self.progress.commands,
            compacted_below: core.state().base,
            snapshots_fetched: self.snapshots.as_ref().map_or(0, |s| s.fetched),
        })
    }

    fn wants_idle(&self) -> bool {
        self.snapshots.as_ref().is_some_and(Snapshots::due)
    }

    fn idle(
        &mut self,
        core: &mut Learner,
        jobs: &mut Jobs<SnapshotWritten>,
    ) -> Output<LearnerWrite> {
        self.snapshot(core, jobs);
        Output::new()
    }

    fn finished(
        &mut self,
        core: &mut Learner,
        written: SnapshotWritten,
    ) -> Result<Output<LearnerWrite>, String> {
        Ok(self.written(core, written))
    }
}

/// Send the response of command `id` to `reply` when it is applied.
/// Register before submitting the command.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WatchCommand {
    /// The command.
    pub id: CommandId,
    /// Where its answer goes.
    pub reply: ReplyTo,
}

/// Stream every later decision to `sender`. A subscriber that falls a full
/// channel behind is dropped (it can resubscribe and read the log).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub mpsc::Sender<Decision>);

impl<S: Store, M: StateMachine> Handler<WatchCommand> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, watch: WatchCommand, _: &mut Context<Self>) {
        self.hooks.watch(watch);
    }
}

/// Several [`WatchCommand`]s in one message: a gateway gathers the
/// commands that arrive together.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WatchCommands(pub Vec<WatchCommand>);

impl<S: Store, M: StateMachine> Handler<WatchCommands> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, WatchCommands(watches): WatchCommands, _: &mut Context<Self>) {
        for watch in watches {
            self.hooks.watch(watch);
        }
    }
}

/// The caller answered by `queue` gave up on these commands (refused as
/// busy, or timed out): forget their waiters, which a queue that stays
/// open would otherwise keep. A waiter since registered by someone else
/// stays.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    /// The commands.
    pub ids: Vec<CommandId>,
    /// The queue their answers would have gone to.
    pub queue: AnswerQueue,
}

impl<S: Store, M: StateMachine> Handler<Unwatch> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, unwatch: Unwatch, _: &mut Context<Self>) {
        self.hooks.waiters.unwatch(&unwatch.ids, &unwatch.queue);
    }
}

/// Take a snapshot of everything applied as soon as nothing is pending (at
/// once if nothing is), and answer with it once it is installed: a
/// consistent copy of the state at one slot, for backups. The file stays
/// readable through an open handle even after a newer snapshot replaces it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot(pub oneshot::Sender<Result<Snapshot, String>>);

impl<S: Store, M: StateMachine> Handler<TakeSnapshot> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, TakeSnapshot(reply): TakeSnapshot, ctx: &mut Context<Self>) {
        let Some(snapshots) = self.hooks.snapshots.as_mut() else {
            let _ = reply.send(Err("this learner keeps no snapshots".into()));
            return;
        };
        snapshots.waiting.push(reply);
        if self.writes_settled() {
            self.idle(ctx);
        }
    }
}

/// Answer a read-only request from the state machine as applied so far,
/// without the log ([`StateMachine::query`]); `None` if the machine serves
/// no such reads.
#[derive(Debug, Message)]
#[rtype(result = "Option<Vec<u8>>")]
pub struct Query(pub Vec<u8>);

impl<S: Store, M: StateMachine> Handler<Query> for LearnerActor<S, M> {
    type Result = Option<Vec<u8>>;

    fn handle(&mut self, Query(request): Query, _: &mut Context<Self>) -> Self::Result {
        self.hooks.machine.query(&request)
    }
}

/// Wait for single-decree instance `name`'s decision (answered at once if
/// it is decided). Refused with `Err(count)` if the instance is not decided
/// and this learner already holds `max_instances` decided instances: a
/// caller's bound on how many registers the cluster keeps.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), usize>")]
pub struct WatchInstance {
    /// The instance.
    pub name: String,
    /// Refuse a new instance past this many decided ones.
    pub max_instances: usize,
    /// Gets the decided value.
    pub reply: oneshot::Sender<Vec<u8>>,
}

impl<S: Store, M: StateMachine> Handler<WatchInstance> for LearnerActor<S, M> {
    type Result = Result<(), usize>;

    fn handle(&mut self, watch: WatchInstance, _: &mut Context<Self>) -> Self::Result {
        let decided = &self.core.state().instances;
        if let Some(value) = decided.get(&watch.name) {
            let _ = watch.reply.send(value.clone());
            return Ok(());
        }
        if decided.len() >= watch.max_instances {
            return Err(decided.len());
        }
        let hooks = &mut self.hooks;
        if hooks.instance_waiters.len() >= hooks.prune_instance_waiters_at {
            hooks.instance_waiters.retain(|_, waiters| {
                waiters.retain(|w| !w.is_closed());
                !waiters.is_empty()
            });
            hooks.prune_instance_waiters_at = (2 * hooks.instance_waiters.len()).max(MIN_PRUNE);
        }
        hooks
            .instance_waiters
            .entry(watch.name)
            .or_default()
            .push(watch.reply);
        Ok(())
    }
}

/// Serve `request` ([`StateMachine::query`]) as a linearizable read once
/// the leader makes read `id` ready (the caller sends the leader
/// `Message::ReadIndex { id }`) and the learner has applied up to its
/// index. `None` if the machine serves no such reads.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReadAt {
    /// The read; unique among this learner's reads.
    pub id: u64,
    /// The state machine's read request.
    pub request: Vec<u8>,
    /// Gets the answer.
    pub reply: oneshot::Sender<Option<Vec<u8>>>,
}

impl<S: Store, M: StateMachine> Handler<ReadAt> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, read: ReadAt, _: &mut Context<Self>) {
        let hooks = &mut self.hooks;
        if hooks.reads.len() >= hooks.prune_reads_at {
            hooks.reads.retain(|_, waiting| !waiting.reply.is_closed());
            hooks.prune_reads_at = (2 * hooks.reads.len()).max(MIN_PRUNE);
        }
        let waiter = ReadWaiter {
            request: read.request,
            reply: read.reply,
        };
        hooks.reads.insert(read.id, waiter);
    }
}

/// The value decided for single-decree instance `name`, if this learner
/// knows it.
#[derive(Debug, Message)]
#[rtype(result = "Option<Vec<u8>>")]
pub struct InstanceValue(pub String);

impl<S: Store, M: StateMachine> Handler<InstanceValue> for LearnerActor<S, M> {
    type Result = Option<Vec<u8>>;

    fn handle(
        &mut self,
        InstanceValue(name): InstanceValue,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.core.state().instances.get(&name).cloned()
    }
}

impl<S: Store, M: StateMachine> Handler<Subscribe> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, Subscribe(sender): Subscribe, _: &mut Context<Self>) {
        self.hooks.subscribers.push(sender);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshots_in(dir: &std::path::Path) -> Snapshots {
        Snapshots::new(SnapshotDir::open(dir).unwrap(), SnapshotEvery::default())
    }

    #[test]
    fn unwatching_forgets_only_that_queues_waiters_and_a_stop_answers_the_rest() {
        let id = |seq| CommandId { client: 1, seq };
        let (mine, mut my_answers) = mpsc::unbounded_channel();
        let (theirs, mut their_answers) = mpsc::unbounded_channel();
        let mut waiters = Waiters::default();
        waiters.insert(id(1), ReplyTo::Queue(mine.clone()));
        waiters.insert(id(2), ReplyTo::Queue(mine.clone()));
        waiters.insert(id(3), ReplyTo::Queue(theirs.clone()));
        waiters.unwatch(&[id(1), id(3)], &mine);
        assert!(!waiters.by_command.contains_key(&id(1)));
        assert!(waiters.by_command.contains_key(&id(3)), "another queue's");
        waiters.answer(id(2), Ok(b"two".to_vec()));
        assert_eq!(my_answers.try_recv().unwrap(), (id(2), Ok(b"two".to_vec())));
        assert!(my_answers.try_recv().is_err(), "command 1 is not answered");
        drop(waiters);
        assert_eq!(
            their_answers.try_recv().unwrap(),
            (id(3), Err(SubmitError::ShuttingDown))
        );
    }

    #[test]
    fn the_digest_chain_is_the_hash_of_the_collected_ids() {
        let commands: Vec<synod_core::Command> = (1..=5)
            .map(|seq| synod_core::Command {
                id: CommandId { client: 7, seq },
                payload: vec![seq as u8],
            })
            .collect();
        let ids: Vec<CommandId> = commands.iter().map(|c| c.id).collect();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (0xfeed_u64, 42 as Slot, ids).hash(&mut hasher);
        assert_eq!(chain_digest(0xfeed, 42, &commands), hasher.finish());
        assert_ne!(chain_digest(0xfeed, 43, &commands), hasher.finish());
    }

    #[test]
    fn learners_start_their_snapshot_schedules_spread_over_one_period() {
        let every = |place, of| SnapshotEvery {
            commands: 90_000,
            bytes: 300,
            stagger: Stagger { place, of },
        };
        let starts: Vec<_> = (0..3).map(|place| every(place, 3).head_start()).collect();
        assert_eq!(starts, [(0, 0), (30_000, 100), (60_000, 200)]);
        assert_eq!(every(0, 1).head_start(), (0, 0), "one learner: no stagger");
        assert_eq!(every(4, 0).head_start(), (0, 0), "no count: no stagger");
        let tmp = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::new(SnapshotDir::open(tmp.path()).unwrap(), every(2, 3));
        assert_eq!((snapshots.since, snapshots.since_bytes), (60_000, 200));
        assert!(
            !snapshots.due(),
            "the first comes after the rest of the period"
        );
    }

    #[test]
    fn a_snapshot_written_behind_a_newer_install_is_discarded() {
        let tmp = tempfile::tempdir().unwrap();
        let mut snapshots = snapshots_in(tmp.path());
        let written = snapshots
            .dir
            .write(10, |out| out.write_all(b"ten"))
            .unwrap();
        let fetched = snapshots
            .dir
            .install(20, |out| out.write_all(b"twenty"))
            .unwrap();
        snapshots.current = Some(fetched.clone());
        assert_eq!(snapshots.install_written(written).unwrap(), fetched);
        assert_eq!(snapshots.current, Some(fetched.clone()));
        assert_eq!(snapshots.dir.latest().unwrap(), Some(fetched));
        let leftovers = std::fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the fetched snapshot is left");

        let written = snapshots
            .dir
            .write(30, |out| out.write_all(b"thirty"))
            .unwrap();
        let installed = snapshots.install_written(written).unwrap();
        assert_eq!(installed.upto, 30);
        assert_eq!(snapshots.current, Some(installed.clone()));
        assert_eq!(snapshots.dir.latest().unwrap(), Some(installed));
    }
}
