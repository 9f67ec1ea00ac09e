//! The learner: the shared shell plus a [`StateMachine`]. Decisions are
//! persisted by the shell; once durable, slots are applied in order, each
//! command's response goes to whoever waits for it ([`WatchCommand`]), and
//! every decision is streamed to subscribers ([`Subscribe`]). On start the
//! durable log is replayed into the (in-memory) state machine.

use crate::driver::{Hooks, RoleActor};
use crate::status::{LearnerStatus, RoleStatus};
use actix::prelude::*;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use synod_api::{Decision, StateMachine};
use synod_core::{CommandId, Delivery, Learner};
use synod_storage::Store;
use tokio::sync::{mpsc, oneshot};

/// The learner actor, applying to state machine `M`.
pub type LearnerActor<S, M> = RoleActor<Learner, S, Applier<M>>;

/// Waiter count below which abandoned waiters are not pruned.
const MIN_PRUNE: usize = 1024;

/// What a learner adds to the shell: the state machine and who waits for
/// its answers.
pub struct Applier<M> {
    machine: M,
    waiters: HashMap<CommandId, oneshot::Sender<Vec<u8>>>,
    prune_waiters_at: usize,
    subscribers: Vec<mpsc::Sender<Decision>>,
    commands_applied: u64,
}

impl<M: StateMachine> Applier<M> {
    /// Apply decisions to `machine`.
    pub fn new(machine: M) -> Self {
        Self {
            machine,
            waiters: HashMap::new(),
            prune_waiters_at: MIN_PRUNE,
            subscribers: Vec::new(),
            commands_applied: 0,
        }
    }

    fn apply(&mut self, delivery: Delivery) -> Decision {
        match delivery {
            Delivery::Slot { slot, commands } => {
                let responses: Vec<Vec<u8>> =
                    commands.iter().map(|c| self.machine.apply(c)).collect();
                self.commands_applied += commands.len() as u64;
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
}

impl<M: StateMachine> Hooks<Learner> for Applier<M> {
    fn deliver(&mut self, _core: &Learner, delivery: Delivery) {
        let decision = self.apply(delivery);
        self.subscribers
            .retain(|s| s.try_send(decision.clone()).is_ok());
    }

    fn status(&self, core: &Learner) -> RoleStatus {
        let applied = core.next_delivery();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (slot, value) in core.state().decided.range(..applied) {
            (slot, value).hash(&mut hasher);
        }
        RoleStatus::Learner(LearnerStatus {
            id: core.id(),
            applied,
            decided: core.state().decided.len(),
            log_digest: hasher.finish(),
            commands_applied: self.commands_applied,
        })
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
