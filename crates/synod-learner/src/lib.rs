//! # synod-learner: the learner role as an actix actor
//!
//! Owns a `synod_core::Learner` by value and a [`StateMachine`]. Decisions
//! are persisted through the group-commit writer; once durable, slots are
//! applied to the state machine in order, each command's response goes to
//! whoever waits for that command ([`WatchCommand`]), and every decision is
//! streamed to subscribers ([`Subscribe`]). On start the durable log is
//! replayed into the (in-memory) state machine; gaps are caught up from
//! peer learners by the core's catch-up protocol.
//!
//! ```text
//! Decided ──▶ core ──writes──▶ GroupCommit ──done──▶ apply in slot order ──▶ waiters, subscribers
//! ```
#![deny(missing_docs)]

use actix::prelude::*;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};
use synod_core::{
    Command, CommandId, Delivery, Learner, LearnerWrite, Message, Outgoing, Output, RoleId, Slot,
};
use synod_storage::{GroupCommit, Outbox, StorageError, Store, Write};
use synod_transport::{Inbound, Outbound, OutboundBatch};
use tokio::sync::{mpsc, oneshot};

/// A deterministic replicated state machine: the same commands in the same
/// order give the same responses on every learner.
pub trait StateMachine: Unpin + 'static {
    /// Apply one command and return its response.
    fn apply(&mut self, command: &Command) -> Vec<u8>;

    /// The response this machine gave to command `id`, if it still keeps
    /// it. A client that retries a command already applied (through this
    /// or another node) gets the original answer instead of a timeout.
    fn response_to(&self, id: CommandId) -> Option<Vec<u8>> {
        let _ = id;
        None
    }
}

/// One decision, as subscribers see it, in slot order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A log slot was applied.
    Slot {
        /// The slot.
        slot: Slot,
        /// Its commands that were applied (retried duplicates left out).
        commands: Vec<Command>,
        /// The state machine's response to each command.
        responses: Vec<Vec<u8>>,
    },
    /// A single-decree instance was decided.
    Instance {
        /// The instance.
        name: String,
        /// Its value.
        value: Vec<u8>,
    },
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

/// Ask for the learner's progress.
#[derive(Debug, Message)]
#[rtype(result = "LearnerStatus")]
pub struct GetStatus;

/// A learner's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnerStatus {
    /// This learner.
    pub id: RoleId,
    /// Every slot below this one is applied.
    pub applied: Slot,
    /// Decided slots held (applied or waiting for a gap).
    pub decided: usize,
    /// Hash of the applied log (slot, value) in order: equal logs, equal digests.
    pub log_digest: u64,
    /// Commands applied to this actor's state machine (replay included).
    pub commands_applied: u64,
}

/// Waiter count below which abandoned waiters are not pruned.
const MIN_PRUNE: usize = 1024;

#[derive(Debug)]
enum Effect {
    Send(Outgoing),
    Deliver(Delivery),
}

/// The learner actor.
pub struct LearnerActor<S: Store, M: StateMachine> {
    core: Learner,
    machine: M,
    writer: GroupCommit<S>,
    router: Recipient<OutboundBatch<Message>>,
    outbox: Outbox<Effect>,
    waiters: HashMap<CommandId, oneshot::Sender<Vec<u8>>>,
    prune_waiters_at: usize,
    subscribers: Vec<mpsc::Sender<Decision>>,
    commands_applied: u64,
    epoch: Instant,
    tick_every: Duration,
}

impl<S: Store, M: StateMachine> LearnerActor<S, M> {
    /// An actor around `core` (restored from the store behind `writer`)
    /// applying to `machine`.
    pub fn new(
        core: Learner,
        machine: M,
        writer: GroupCommit<S>,
        router: Recipient<OutboundBatch<Message>>,
        tick_every: Duration,
    ) -> Self {
        Self {
            core,
            machine,
            writer,
            router,
            outbox: Outbox::new(),
            waiters: HashMap::new(),
            prune_waiters_at: MIN_PRUNE,
            subscribers: Vec::new(),
            commands_applied: 0,
            epoch: Instant::now(),
            tick_every,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn emit(&mut self, out: Output<LearnerWrite>, ctx: &mut Context<Self>) {
        let effects: Vec<Effect> = out
            .send
            .into_iter()
            .map(Effect::Send)
            .chain(out.deliver.into_iter().map(Effect::Deliver))
            .collect();
        if out.persist.is_empty() {
            let ready = self.outbox.without_write(effects);
            self.release(ready);
            return;
        }
        let ticket = self.outbox.after_write(effects);
        let writes: Vec<Write> = out.persist.into_iter().map(Write::from).collect();
        let me = ctx.address();
        self.writer
            .submit(writes, move |result| me.do_send(Durable { ticket, result }));
    }

    fn release(&mut self, effects: Vec<Effect>) {
        let from = self.core.id();
        let mut batch = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send(o) => batch.push(Outbound {
                    from,
                    to: o.to,
                    message: o.message,
                }),
                Effect::Deliver(delivery) => self.apply(delivery),
            }
        }
        if !batch.is_empty() {
            self.router.do_send(OutboundBatch(batch));
        }
    }

    fn apply(&mut self, delivery: Delivery) {
        let decision = match delivery {
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
        };
        self.subscribers
            .retain(|s| s.try_send(decision.clone()).is_ok());
    }

    fn status(&self) -> LearnerStatus {
        let applied = self.core.next_delivery();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (slot, value) in self.core.state().decided.range(..applied) {
            (slot, value).hash(&mut hasher);
        }
        LearnerStatus {
            id: self.core.id(),
            applied,
            decided: self.core.state().decided.len(),
            log_digest: hasher.finish(),
            commands_applied: self.commands_applied,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Durable {
    ticket: u64,
    result: Result<(), StorageError>,
}

impl<S: Store, M: StateMachine> Actor for LearnerActor<S, M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let replayed = self.core.replay();
        self.emit(replayed, ctx);
        ctx.run_interval(self.tick_every, |actor, ctx| {
            let out = actor.core.tick(actor.now());
            actor.emit(out, ctx);
        });
    }
}

impl<S: Store, M: StateMachine> Handler<Inbound<Message>> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, inbound: Inbound<Message>, ctx: &mut Context<Self>) {
        let out = self.core.handle(self.now(), inbound.from, inbound.message);
        self.emit(out, ctx);
    }
}

impl<S: Store, M: StateMachine> Handler<WatchCommand> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, watch: WatchCommand, _: &mut Context<Self>) {
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

impl<S: Store, M: StateMachine> Handler<Subscribe> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, Subscribe(sender): Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(sender);
    }
}

impl<S: Store, M: StateMachine> Handler<GetStatus> for LearnerActor<S, M> {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl<S: Store, M: StateMachine> Handler<Durable> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, durable: Durable, ctx: &mut Context<Self>) {
        match durable.result {
            Ok(()) => {
                let ready = self.outbox.durable(durable.ticket);
                self.release(ready);
            }
            Err(error) => {
                self.outbox.discard();
                tracing::error!(learner = %self.core.id(), %error, "write failed; this learner stops");
                ctx.stop();
            }
        }
    }
}

/// Stop the actor. Writes already handed to the group-commit writer finish
/// before its thread exits (the writer joins when the actor is dropped).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

impl<S: Store, M: StateMachine> Handler<Stop> for LearnerActor<S, M> {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
