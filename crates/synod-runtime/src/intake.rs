//! Batching at the node's front door. Commands that enter the gateway in
//! the same turn of the event loop (from every client connection and from
//! `Node::submit`) leave together: one `WatchCommands` to the local
//! learner, then one `Submit` to the local proposer or one `Forward` per
//! frame-sized chunk to a remote one. A follower's proposer then forwards
//! them to the leader as one message too, so the per-message costs (actor
//! round trips, frames, syscalls) are paid per batch, not per command.
//!
//! ```text
//! submit_as ─┐                         one task per batch:
//! enqueue   ─┼─▶ Intake (RefCell) ──▶   WatchCommands(all) ─▶ learner (awaited: watched before decided)
//! enqueue   ─┘     first one spawns      Submit(chunk) ─▶ proposer   or  Forward(chunk) ─▶ router
//!                  the flush task        each command told Ok / Busy / ShuttingDown
//! ```
//!
//! `submit_as` (`Node::submit`) waits to be told; a client connection's
//! `enqueue` is told only of a refusal, on its answer queue ([`Told`]).
//!
//! Only a command's first send goes through here; resends (after
//! `submit_retry`, or at once when the leader changes) go one by one. On a
//! node without a proposer, first sends go to the proposer the local
//! learner last heard leading ([`LeaderHint`]).

use actix::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use synod_api::SubmitError;
use synod_core::{Command, CommandId, Message, RoleId, chunk_by_bytes};
use synod_roles::{AnswerQueue, LeaderHint, Submit, WatchCommand, WatchCommands};
use synod_transport::{Outbound, OutboundBatch};
use tokio::sync::oneshot;

use crate::router::Router;

/// Most commands in one `Submit` to the local proposer.
const SUBMIT_CHUNK: usize = 1024;

/// Where a batch goes once its commands are watched.
#[derive(Clone)]
pub(crate) enum Destination {
    /// The node's own proposer.
    Local(Recipient<Submit>),
    /// No proposer here: forward through the router, from the local
    /// learner, in chunks of at most `max_bytes`, to the proposer that
    /// sent the learner its latest decision (`to`, the learner's hint).
    Remote {
        router: Addr<Router>,
        from: RoleId,
        to: Rc<LeaderHint>,
        max_bytes: usize,
    },
}

/// Who hears whether a command was handed on.
pub(crate) enum Told {
    /// One caller, told either way.
    One(oneshot::Sender<Result<(), SubmitError>>),
    /// A client connection, told only of a refusal, as the command's
    /// answer: handed on, the command's answer comes from the learner.
    Queue(CommandId, AnswerQueue),
}

impl Told {
    fn tell(self, outcome: &Result<(), SubmitError>) {
        match (self, outcome) {
            (Told::One(one), outcome) => {
                let _ = one.send(outcome.clone());
            }
            (Told::Queue(..), Ok(())) => {}
            (Told::Queue(id, queue), Err(error)) => {
                let _ = queue.send((id, Err(error.clone())));
            }
        }
    }
}

/// Commands gathered in this turn, and whether a flush is on its way.
#[derive(Default)]
struct Gathered {
    watches: Vec<WatchCommand>,
    commands: Vec<Command>,
    told: Vec<Told>,
    flush_spawned: bool,
}

/// The gateway's batching queue.
pub(crate) struct Intake {
    gathered: Rc<RefCell<Gathered>>,
    learner: Recipient<WatchCommands>,
    destination: Destination,
}

impl Intake {
    pub(crate) fn new(learner: Recipient<WatchCommands>, destination: Destination) -> Self {
        Self {
            gathered: Rc::default(),
            learner,
            destination,
        }
    }

    /// Watch `command` at the learner and send it on, in a batch with
    /// whatever else arrives this turn. Resolves once the command is
    /// handed on (or refused).
    pub(crate) async fn send(
        &self,
        watch: WatchCommand,
        command: Command,
    ) -> Result<(), SubmitError> {
        let (told, sent) = oneshot::channel();
        self.push(watch, command, Told::One(told));
        sent.await.unwrap_or(Err(SubmitError::ShuttingDown))
    }

    /// [`Intake::send`] without waiting: `told` hears the outcome.
    pub(crate) fn push(&self, watch: WatchCommand, command: Command, told: Told) {
        let spawn = {
            let mut gathered = self.gathered.borrow_mut();
            gathered.watches.push(watch);
            gathered.commands.push(command);
            gathered.told.push(told);
            !std::mem::replace(&mut gathered.flush_spawned, true)
        };
        if spawn {
            let (gathered, learner) = (Rc::clone(&self.gathered), self.learner.clone());
            actix::spawn(flush(gathered, learner, self.destination.clone()));
        }
    }
}

/// Runs after the tasks already woken this turn, so their commands join.
async fn flush(
    gathered: Rc<RefCell<Gathered>>,
    learner: Recipient<WatchCommands>,
    destination: Destination,
) {
    tokio::task::yield_now().await;
    let batch = std::mem::take(&mut *gathered.borrow_mut());
    if learner.send(WatchCommands(batch.watches)).await.is_err() {
        tell(batch.told, Err(SubmitError::ShuttingDown));
        return;
    }
    match destination {
        Destination::Local(proposer) => submit_local(&proposer, batch.commands, batch.told).await,
        Destination::Remote {
            router,
            from,
            to,
            max_bytes,
        } => {
            forward(&router, from, to.get(), max_bytes, batch.commands);
            tell(batch.told, Ok(()));
        }
    }
}

async fn submit_local(
    proposer: &Recipient<Submit>,
    mut commands: Vec<Command>,
    mut told: Vec<Told>,
) {
    while !commands.is_empty() {
        let rest = commands.split_off(commands.len().min(SUBMIT_CHUNK));
        let rest_told = told.split_off(commands.len());
        tell(told, submit_to(proposer, commands).await);
        (commands, told) = (rest, rest_told);
    }
}

/// Hand `commands` to the local `proposer`: refused as `Busy` when its
/// queue is full, `ShuttingDown` when it has stopped.
pub(crate) async fn submit_to(
    proposer: &Recipient<Submit>,
    commands: Vec<Command>,
) -> Result<(), SubmitError> {
    match proposer.send(Submit(commands)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_busy)) => Err(SubmitError::Busy),
        Err(_) => Err(SubmitError::ShuttingDown),
    }
}

/// One `Forward` per chunk of at most `max_bytes` (a single larger
/// command goes alone; the gateway refused any above the command limit).
fn forward(router: &Addr<Router>, from: RoleId, to: u32, max_bytes: usize, commands: Vec<Command>) {
    let outbound = chunk_by_bytes(commands, max_bytes)
        .into_iter()
        .map(|commands| Outbound {
            from,
            to: RoleId::proposer(to),
            message: Message::Forward { commands },
        })
        .collect();
    router.do_send(OutboundBatch(outbound));
}

fn tell(told: Vec<Told>, outcome: Result<(), SubmitError>) {
    for one in told {
        one.tell(&outcome);
    }
}
