//! The learner: the shared shell plus a [`StateMachine`]. Decisions are
//! persisted by the shell; once durable, slots are applied in order, each
//! command's response goes to whoever waits for it ([`WatchCommand`]), and
//! every decision is streamed to subscribers ([`Subscribe`]).
//!
//! **Snapshots.** With a [`SnapshotDir`], the learner snapshots after every
//! `every` applied commands, at a moment when nothing is pending (so the
//! state machine holds exactly what the core delivered), then compacts its
//! log below the snapshot. A snapshot file's body is the learner's part
//! (its end, the exactly-once filter), the applied log's digest and count,
//! then the state machine's own bytes ([`restore`] reads it back). On start
//! the node restores the latest snapshot and replays only the log after it.
//! The snapshot is written in the actor, synchronously: the learner pauses
//! for as long as the state machine takes to write and the disk to sync.

use crate::driver::{Hooks, RoleActor};
use crate::status::{LearnerStatus, RoleStatus};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use synod_api::{Decision, SnapshotError, StateMachine};
use synod_core::{CommandId, Delivery, Learner, LearnerSnapshot, LearnerWrite, Output, Slot};
use synod_storage::{Snapshot, SnapshotDir, Store};
use tokio::sync::{mpsc, oneshot};

/// The learner actor, applying to state machine `M`.
pub type LearnerActor<S, M> = RoleActor<Learner, S, Applier<M>>;

/// Waiter count below which abandoned waiters are not pruned.
const MIN_PRUNE: usize = 1024;

/// Largest learner part a snapshot file may claim.
const MAX_LEARNER_PART: usize = 256 << 20;

/// What a learner adds to the shell: the state machine, who waits for its
/// answers, and its snapshots.
pub struct Applier<M> {
    machine: M,
    waiters: HashMap<CommandId, oneshot::Sender<Vec<u8>>>,
    prune_waiters_at: usize,
    subscribers: Vec<mpsc::Sender<Decision>>,
    progress: Progress,
    snapshots: Option<Snapshots>,
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

struct Snapshots {
    dir: SnapshotDir,
    every: u64,
    since: u64,
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
            waiters: HashMap::new(),
            prune_waiters_at: MIN_PRUNE,
            subscribers: Vec::new(),
            progress: Progress::default(),
            snapshots: None,
        }
    }

    /// Snapshot into `dir` after every `every` applied commands (0: never).
    pub fn with_snapshots(mut self, dir: SnapshotDir, every: u64) -> Self {
        if every > 0 {
            let since = 0;
            self.snapshots = Some(Snapshots { dir, every, since });
        }
        self
    }

    /// Restore `machine` and this applier from `snapshot`; the learner's part
    /// comes back for `Learner::restored`.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<LearnerSnapshot, SnapshotError> {
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

    fn apply(&mut self, delivery: Delivery) -> Decision {
        match delivery {
            Delivery::Slot { slot, commands } => {
                let responses: Vec<Vec<u8>> =
                    commands.iter().map(|c| self.machine.apply(c)).collect();
                self.record(slot, &commands);
                for (command, response) in commands.iter().zip(&responses) {
                    if let Some(waiter) = self.waiters.remove(&command.id) {
                        let _ = waiter.send(response.clone());
                    }
                }
                Decision::Slot {
                    slot,
                    commands,
                    responses,
                }
            }
            Delivery::Instance { name, value } => Decision::Instance { name, value },
        }
    }

    fn record(&mut self, slot: Slot, commands: &[synod_core::Command]) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let ids: Vec<CommandId> = commands.iter().map(|c| c.id).collect();
        (self.progress.digest, slot, ids).hash(&mut hasher);
        self.progress.digest = hasher.finish();
        self.progress.commands += commands.len() as u64;
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.since += commands.len() as u64;
        }
    }

    fn watch(&mut self, watch: WatchCommand) {
        if let Some(response) = self.machine.response_to(watch.id) {
            let _ = watch.reply.send(response); // applied before: answer now
            return;
        }
        // Waiters whose caller gave up are pruned when the map has doubled,
        // so the scan costs O(1) per watch on average.
        if self.waiters.len() >= self.prune_waiters_at {
            self.waiters.retain(|_, waiter| !waiter.is_closed());
            self.prune_waiters_at = (2 * self.waiters.len()).max(MIN_PRUNE);
        }
        self.waiters.insert(watch.id, watch.reply);
    }

    /// Write a snapshot of everything applied, then compact the log below it.
    fn snapshot(&mut self, core: &mut Learner) -> Output<LearnerWrite> {
        let Some(snapshots) = self.snapshots.as_mut().filter(|s| s.since >= s.every) else {
            return Output::new();
        };
        snapshots.since = 0;
        let header = Header {
            learner: core.snapshot(),
            progress: self.progress,
        };
        let upto = header.learner.upto;
        let machine = &self.machine;
        let written = snapshots
            .dir
            .install(upto, |out| write_body(out, &header, machine));
        match written {
            Ok(snapshot) => {
                tracing::info!(learner = %core.id(), upto, bytes = snapshot.len, "snapshot installed");
                core.compact(upto)
            }
            Err(error) => {
                // The log stays whole; the next attempt comes after `every`
                // more commands.
                tracing::error!(learner = %core.id(), %error, "snapshot failed");
                Output::new()
            }
        }
    }
}

fn write_body<M: StateMachine>(
    out: &mut dyn Write,
    header: &Header,
    machine: &M,
) -> std::io::Result<()> {
    let header = postcard::to_stdvec(header).map_err(std::io::Error::other)?;
    let len = u32::try_from(header.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&header)?;
    machine.snapshot(out)
}

impl<M: StateMachine> Hooks<Learner> for Applier<M> {
    fn deliver(&mut self, _core: &Learner, delivery: Delivery) {
        let decision = self.apply(delivery);
        self.subscribers
            .retain(|s| s.try_send(decision.clone()).is_ok());
    }

    fn status(&self, core: &Learner) -> RoleStatus {
        RoleStatus::Learner(LearnerStatus {
            id: core.id(),
            applied: core.next_delivery(),
            decided: core.state().decided.len(),
            log_digest: self.progress.digest,
            commands_applied: self.progress.commands,
            compacted_below: core.state().base,
        })
    }

    fn idle(&mut self, core: &mut Learner) -> Output<LearnerWrite> {
        self.snapshot(core)
    }
}

/// Send the response of command `id` to `reply` when it is applied.
/// Register before submitting the command.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WatchCommand {
    /// The command.
    pub id: CommandId,
    /// Where its response goes.
    pub reply: oneshot::Sender<Vec<u8>>,
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

impl<S: Store, M: StateMachine> Handler<Subscribe> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, Subscribe(sender): Subscribe, _: &mut Context<Self>) {
        self.hooks.subscribers.push(sender);
    }
}
