//! # synod-proposer: the proposer role as an actix actor
//!
//! Owns a `synod_core::Proposer` by value. A timer ticks the core (elections,
//! heartbeats, retransmissions); client commands arrive as [`Submit`].
//! Every new round is persisted through the group-commit writer before the
//! Prepare that carries it leaves (the replies wait in an [`Outbox`]).
//!
//! ```text
//! Submit / Inbound / tick ──▶ core ──Round──▶ GroupCommit ──done──▶ release
//!                               └──Prepare, Accept, Decided, Heartbeat──▶ Outbox ──▶ router
//! ```
#![deny(missing_docs)]

use actix::prelude::*;
use std::time::{Duration, Instant};
use synod_core::{
    Ballot, Busy, Command, Message, Outgoing, Output, Proposer, ProposerWrite, RoleId, Slot,
};
use synod_storage::{GroupCommit, Outbox, StorageError, Store, Write};
use synod_transport::{Inbound, Outbound, OutboundBatch};

/// Client commands for the log. Answered `Err(Busy)` when the proposer's
/// queue is full (admission control: the caller backs off).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Busy>")]
pub struct Submit(pub Vec<Command>);

/// Propose a value for a single-decree instance.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ProposeInstance {
    /// The instance.
    pub name: String,
    /// The proposed value.
    pub value: Vec<u8>,
}

/// Ask for the proposer's view of leadership.
#[derive(Debug, Message)]
#[rtype(result = "ProposerStatus")]
pub struct GetStatus;

/// A proposer's view of leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposerStatus {
    /// This proposer.
    pub id: RoleId,
    /// The leader it knows (itself when leading).
    pub leader: Option<u32>,
    /// Its ballot, when leading.
    pub leading_ballot: Option<Ballot>,
    /// Every slot below this is decided.
    pub first_unchosen: Slot,
    /// The highest ballot round this proposer has used (one per campaign).
    pub max_round: u64,
}

/// The proposer actor.
pub struct ProposerActor<S: Store> {
    core: Proposer,
    writer: GroupCommit<S>,
    router: Recipient<OutboundBatch<Message>>,
    outbox: Outbox<Outgoing>,
    epoch: Instant,
    tick_every: Duration,
}

impl<S: Store> ProposerActor<S> {
    /// An actor around `core` (restored from the store behind `writer`);
    /// `tick_every` paces elections and heartbeats. The core's clock is
    /// milliseconds since `epoch`, the instant `core` was created at.
    pub fn new(
        core: Proposer,
        writer: GroupCommit<S>,
        router: Recipient<OutboundBatch<Message>>,
        epoch: Instant,
        tick_every: Duration,
    ) -> Self {
        Self {
            core,
            writer,
            router,
            outbox: Outbox::new(),
            epoch,
            tick_every,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn emit(&mut self, out: Output<ProposerWrite>, ctx: &mut Context<Self>) {
        if out.persist.is_empty() {
            let ready = self.outbox.without_write(out.send);
            self.send(ready);
            return;
        }
        let ticket = self.outbox.after_write(out.send);
        let writes: Vec<Write> = out.persist.into_iter().map(Write::from).collect();
        let me = ctx.address();
        self.writer
            .submit(writes, move |result| me.do_send(Durable { ticket, result }));
    }

    fn send(&self, messages: Vec<Outgoing>) {
        if messages.is_empty() {
            return;
        }
        let from = self.core.id();
        let batch = messages
            .into_iter()
            .map(|o| Outbound {
                from,
                to: o.to,
                message: o.message,
            })
            .collect();
        self.router.do_send(OutboundBatch(batch));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Durable {
    ticket: u64,
    result: Result<(), StorageError>,
}

impl<S: Store> Actor for ProposerActor<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick_every, |actor, ctx| {
            let out = actor.core.tick(actor.now());
            actor.emit(out, ctx);
        });
    }
}

impl<S: Store> Handler<Inbound<Message>> for ProposerActor<S> {
    type Result = ();

    fn handle(&mut self, inbound: Inbound<Message>, ctx: &mut Context<Self>) {
        let out = self.core.handle(self.now(), inbound.from, inbound.message);
        self.emit(out, ctx);
    }
}

impl<S: Store> Handler<Submit> for ProposerActor<S> {
    type Result = Result<(), Busy>;

    fn handle(&mut self, Submit(commands): Submit, ctx: &mut Context<Self>) -> Result<(), Busy> {
        let out = self.core.submit(self.now(), commands)?;
        self.emit(out, ctx);
        Ok(())
    }
}

impl<S: Store> Handler<ProposeInstance> for ProposerActor<S> {
    type Result = ();

    fn handle(&mut self, propose: ProposeInstance, ctx: &mut Context<Self>) {
        let out = self
            .core
            .propose_instance(self.now(), propose.name, propose.value);
        self.emit(out, ctx);
    }
}

impl<S: Store> Handler<GetStatus> for ProposerActor<S> {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ProposerStatus {
            id: self.core.id(),
            leader: self.core.known_leader(),
            leading_ballot: self.core.leading_ballot(),
            first_unchosen: self.core.first_unchosen(),
            max_round: self.core.state().max_round,
        })
    }
}

impl<S: Store> Handler<Durable> for ProposerActor<S> {
    type Result = ();

    fn handle(&mut self, durable: Durable, ctx: &mut Context<Self>) {
        match durable.result {
            Ok(()) => {
                let ready = self.outbox.durable(durable.ticket);
                self.send(ready);
            }
            Err(error) => {
                // Without a durable round this proposer could reuse a ballot.
                self.outbox.discard();
                tracing::error!(proposer = %self.core.id(), %error, "write failed; this proposer stops");
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

impl<S: Store> Handler<Stop> for ProposerActor<S> {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
