//! # synod-acceptor: the acceptor role as an actix actor
//!
//! Owns a `synod_core::Acceptor` by value and a group-commit writer. A
//! handler never blocks: it runs the core, hands the writes to the writer,
//! and parks the replies in an [`Outbox`] until the writer reports the
//! covering write durable. Promise and Accepted therefore never leave
//! before the vote is on disk.
//!
//! ```text
//! Inbound ──▶ core.handle ──writes──▶ GroupCommit ──done──▶ Durable(ticket)
//!                  └──replies──▶ Outbox ─────────────────────────┘──▶ router
//! ```
//!
//! A failed write stops the actor: an acceptor that cannot trust its
//! state must not vote.
#![deny(missing_docs)]

use actix::prelude::*;
use synod_core::{Acceptor, Message, Outgoing, Output, RoleId};
use synod_storage::{GroupCommit, Outbox, StorageError, Store, Write};
use synod_transport::{Inbound, Outbound, OutboundBatch};

/// The acceptor actor.
pub struct AcceptorActor<S: Store> {
    core: Acceptor,
    writer: GroupCommit<S>,
    router: Recipient<OutboundBatch<Message>>,
    outbox: Outbox<Outgoing>,
}

impl<S: Store> AcceptorActor<S> {
    /// An actor around `core` (restored from the store behind `writer`),
    /// sending through `router`.
    pub fn new(
        core: Acceptor,
        writer: GroupCommit<S>,
        router: Recipient<OutboundBatch<Message>>,
    ) -> Self {
        Self {
            core,
            writer,
            router,
            outbox: Outbox::new(),
        }
    }

    fn emit(&mut self, out: Output<synod_core::AcceptorWrite>, ctx: &mut Context<Self>) {
        if out.persist.is_empty() {
            let ready = self.outbox.without_write(out.send);
            send(&self.router, self.core.id(), ready);
            return;
        }
        let ticket = self.outbox.after_write(out.send);
        let writes: Vec<Write> = out.persist.into_iter().map(Write::from).collect();
        let me = ctx.address();
        self.writer
            .submit(writes, move |result| me.do_send(Durable { ticket, result }));
    }
}

/// Hand `messages` from `from` to the router in one mailbox trip.
fn send(router: &Recipient<OutboundBatch<Message>>, from: RoleId, messages: Vec<Outgoing>) {
    if messages.is_empty() {
        return;
    }
    let batch = messages
        .into_iter()
        .map(|o| Outbound {
            from,
            to: o.to,
            message: o.message,
        })
        .collect();
    router.do_send(OutboundBatch(batch));
}

/// The writer finished write `ticket`.
#[derive(Message)]
#[rtype(result = "()")]
struct Durable {
    ticket: u64,
    result: Result<(), StorageError>,
}

impl<S: Store> Actor for AcceptorActor<S> {
    type Context = Context<Self>;
}

impl<S: Store> Handler<Inbound<Message>> for AcceptorActor<S> {
    type Result = ();

    fn handle(&mut self, inbound: Inbound<Message>, ctx: &mut Context<Self>) {
        let out = self.core.handle(inbound.from, inbound.message);
        self.emit(out, ctx);
    }
}

impl<S: Store> Handler<Durable> for AcceptorActor<S> {
    type Result = ();

    fn handle(&mut self, durable: Durable, ctx: &mut Context<Self>) {
        match durable.result {
            Ok(()) => {
                let ready = self.outbox.durable(durable.ticket);
                send(&self.router, self.core.id(), ready);
            }
            Err(error) => {
                let dropped = self.outbox.discard();
                tracing::error!(acceptor = %self.core.id(), %error, dropped, "write failed; this acceptor stops voting");
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

impl<S: Store> Handler<Stop> for AcceptorActor<S> {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
