//! The one actor shell every role runs in.
//!
//! `RoleActor<R, S, H>` owns a sans-IO core `R`, the group-commit writer of
//! its store `S`, and the role-specific part `H` ([`Hooks`]). It does
//! everything the three roles share, once:
//!
//! - **persist, then release**: each output goes through a
//!   [`Pipeline`]; its writes to the writer, its messages and deliveries
//!   held until the writer reports them durable;
//! - **timers**: one timer armed at the core's `next_deadline()`, so the
//!   actor sleeps exactly as long as the core has nothing to do;
//! - **a failed write stops the actor**: a role that cannot trust its
//!   state must not speak;
//! - **blocking work off the actor**: what a role hands off at an idle
//!   moment (the learner's snapshot file) runs on tokio's blocking pool,
//!   and its result comes back to the actor ([`Hooks::finished`]), in
//!   order with everything else the actor does;
//! - [`Stop`] and [`GetStatus`].

use actix::prelude::*;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use synod_core::{Delivery, Message, Millis, Output, RoleCore, RoleId, wake_at};
use synod_storage::{Effect, GroupCommit, Pipeline, StorageError, Store, Write};
use synod_transport::{Inbound, Outbound, OutboundBatch};

use crate::status::{Report, RoleStatus};

/// A core the shell can drive: its writes are storage writes.
pub trait Core: RoleCore<Write: Into<Write>> + Unpin + 'static {}

impl<R: RoleCore<Write: Into<Write>> + Unpin + 'static> Core for R {}

/// Blocking work a role hands off its actor at an idle moment
/// ([`Hooks::idle`]); what it returns comes back to [`Hooks::finished`].
pub type Jobs<T> = Vec<Job<T>>;

/// One of a role's [`Jobs`].
pub type Job<T> = Box<dyn FnOnce() -> T + Send>;

/// What a role adds to the shared shell.
pub trait Hooks<R>: Unpin + 'static {
    /// What the role's [`Jobs`] report back with.
    type Finished: Send + 'static;

    /// `delivery` is durable: hand it on (the learner applies it, stages
    /// or serves snapshot bytes). What it returns is carried out next; an
    /// error means the role can no longer trust its state and stops.
    fn deliver(&mut self, core: &mut R, delivery: Delivery) -> Result<Output<R::Write>, String>
    where
        R: RoleCore,
    {
        let _ = (core, delivery);
        Ok(Output::new())
    }

    /// A message is about to reach the core (the learner notes which
    /// proposer is deciding, for its node's gateway).
    fn inbound(&mut self, from: RoleId, message: &Message) {
        let _ = (from, message);
    }

    /// What [`GetStatus`] reports.
    fn status(&self, core: &R) -> RoleStatus;

    /// The core has just produced an output (the proposer logs a change of
    /// leader here). Runs after every step: keep it to a few comparisons.
    fn stepped(&mut self, core: &R) {
        let _ = core;
    }

    /// Whether the role wants the next `idle` moment now: inbound messages
    /// are then held (not given to the core) until every pending write is
    /// durable, so that moment comes even under load that would never let
    /// the writer drain (the learner, when a snapshot is due).
    fn wants_idle(&self) -> bool {
        false
    }

    /// Every output so far has been carried out (no write pending, so every
    /// delivery has been handed on): the moment a learner may snapshot.
    /// Work pushed onto `jobs` runs off the actor.
    fn idle(&mut self, core: &mut R, jobs: &mut Jobs<Self::Finished>) -> Output<R::Write>
    where
        R: RoleCore,
    {
        let _ = (core, jobs);
        Output::new()
    }

    /// A job handed off in [`Hooks::idle`] is done. What it returns is
    /// carried out next; an error means the role can no longer trust its
    /// state and stops.
    fn finished(
        &mut self,
        core: &mut R,
        finished: Self::Finished,
    ) -> Result<Output<R::Write>, String>
    where
        R: RoleCore,
    {
        let _ = (core, finished);
        Ok(Output::new())
    }
}

/// The hooks of a role that adds nothing to the shell (the acceptor; the
/// proposer adds only message handlers): its status is its core's.
#[derive(Debug, Default)]
pub struct NoHooks;

impl<R: Report> Hooks<R> for NoHooks {
    type Finished = ();

    fn status(&self, core: &R) -> RoleStatus {
        core.report()
    }
}

/// A role core in its actor.
pub struct RoleActor<R, S: Store, H> {
    pub(crate) core: R,
    pub(crate) hooks: H,
    pipeline: Pipeline,
    writer: GroupCommit<S>,
    router: Recipient<OutboundBatch<Message>>,
    epoch: Instant,
    timer: Option<(Millis, SpawnHandle)>,
    /// Inbound messages held while the role waits for an idle moment
    /// ([`Hooks::wants_idle`]): at most one fsync's worth of arrivals.
    held: VecDeque<Inbound<Message>>,
}

/// Inbound messages held for an idle moment beyond which the role takes
/// them anyway (the moment then waits for the writer to catch up).
const MAX_HELD: usize = 100_000;

impl<R, S, H> RoleActor<R, S, H>
where
    R: Core,
    S: Store,
    H: Hooks<R>,
{
    /// An actor around `core` (restored from the store behind `writer`),
    /// sending through `router`. The core's clock is milliseconds since
    /// `epoch`, the instant the core was created at.
    pub fn new(
        core: R,
        hooks: H,
        writer: GroupCommit<S>,
        router: Recipient<OutboundBatch<Message>>,
        epoch: Instant,
    ) -> Self {
        Self {
            core,
            hooks,
            pipeline: Pipeline::new(),
            writer,
            router,
            epoch,
            timer: None,
            held: VecDeque::new(),
        }
    }

    /// Whether every write handed to the writer is durable.
    pub(crate) fn writes_settled(&self) -> bool {
        self.pipeline.pending_writes() == 0
    }

    pub(crate) fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    /// Carry out one output of the core: writes first, the rest once they
    /// are durable. Then re-arm the timer (the output may have moved the
    /// core's next deadline).
    pub(crate) fn emit(&mut self, out: Output<R::Write>, ctx: &mut Context<Self>) {
        let step = self.pipeline.run(out);
        self.release(step.release, ctx);
        if let Some((ticket, writes)) = step.submit {
            let me = ctx.address();
            self.writer
                .submit(writes, move |result| me.do_send(Durable { ticket, result }));
        }
        self.hooks.stepped(&self.core);
        self.arm_timer(ctx);
    }

    /// Send and deliver what is durable now, then carry out what the
    /// deliveries asked for.
    fn release(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        let from = self.core.id();
        let mut batch = Vec::new();
        let mut follow_ups = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send(o) => batch.push(Outbound {
                    from,
                    to: o.to,
                    message: o.message,
                }),
                Effect::Deliver(delivery) => match self.hooks.deliver(&mut self.core, delivery) {
                    Ok(out) if out.is_empty() => {}
                    Ok(out) => follow_ups.push(out),
                    Err(reason) => {
                        tracing::error!(role = %self.role(), %reason, "this role stops");
                        ctx.stop();
                        return;
                    }
                },
            }
        }
        if !batch.is_empty() {
            self.router.do_send(OutboundBatch(batch));
        }
        for out in follow_ups {
            self.emit(out, ctx);
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        let Some(deadline) = wake_at(&self.core, now) else {
            return;
        };
        if self.timer.as_ref().is_some_and(|(at, _)| *at <= deadline) {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let sleep = Duration::from_millis(deadline - now);
        let handle = ctx.run_later(sleep, |actor, ctx| {
            actor.timer = None;
            let out = actor.core.tick(actor.now());
            actor.emit(out, ctx);
        });
        self.timer = Some((deadline, handle));
    }

    fn role(&self) -> RoleId {
        self.core.id()
    }

    /// Every output so far has been carried out: the role's idle moment,
    /// then what was held for it. Call only when the writes are settled.
    pub(crate) fn idle(&mut self, ctx: &mut Context<Self>) {
        let mut jobs = Jobs::new();
        let out = self.hooks.idle(&mut self.core, &mut jobs);
        if !out.is_empty() {
            self.emit(out, ctx);
        }
        for job in jobs {
            self.off_the_actor(job, ctx);
        }
        self.take_held(ctx);
    }

    /// Run `job` on the blocking pool and hand its result to the hooks
    /// back on the actor; an idle moment follows if nothing is pending
    /// then (a caller may be waiting for the next job).
    fn off_the_actor(&mut self, job: Job<H::Finished>, ctx: &mut Context<Self>) {
        let running = actix::fut::wrap_future(tokio::task::spawn_blocking(job));
        ctx.spawn(running.map(|joined, actor: &mut Self, ctx| {
            let result = joined
                .map_err(|e| format!("a job off the actor failed: {e}"))
                .and_then(|finished| actor.hooks.finished(&mut actor.core, finished));
            match result {
                Ok(out) => {
                    actor.emit(out, ctx);
                    if actor.writes_settled() {
                        actor.idle(ctx);
                    }
                }
                Err(reason) => {
                    tracing::error!(role = %actor.role(), %reason, "this role stops");
                    ctx.stop();
                }
            }
        }));
    }

    /// Give the core what was held for the idle moment, in arrival order.
    fn take_held(&mut self, ctx: &mut Context<Self>) {
        while let Some(inbound) = self.held.pop_front() {
            self.hooks.inbound(inbound.from, &inbound.message);
            let out = self.core.handle(self.now(), inbound.from, inbound.message);
            self.emit(out, ctx);
        }
    }
}

impl<R, S, H> Actor for RoleActor<R, S, H>
where
    R: Core,
    S: Store,
    H: Hooks<R>,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let out = self.core.start(self.now());
        self.emit(out, ctx);
    }
}

impl<R, S, H> Handler<Inbound<Message>> for RoleActor<R, S, H>
where
    R: Core,
    S: Store,
    H: Hooks<R>,
{
    type Result = ();

    fn handle(&mut self, inbound: Inbound<Message>, ctx: &mut Context<Self>) {
        let waiting = self.hooks.wants_idle() && !self.writes_settled();
        if waiting && self.held.len() < MAX_HELD {
            self.held.push_back(inbound);
            return;
        }
        self.hooks.inbound(inbound.from, &inbound.message);
        let out = self.core.handle(self.now(), inbound.from, inbound.message);
        self.emit(out, ctx);
    }
}

/// The writer finished write `ticket`.
#[derive(Message)]
#[rtype(result = "()")]
struct Durable {
    ticket: u64,
    result: Result<(), StorageError>,
}

impl<R, S, H> Handler<Durable> for RoleActor<R, S, H>
where
    R: Core,
    S: Store,
    H: Hooks<R>,
{
    type Result = ();

    fn handle(&mut self, durable: Durable, ctx: &mut Context<Self>) {
        match durable.result {
            Ok(()) => {
                let ready = self.pipeline.durable(durable.ticket);
                self.release(ready, ctx);
                if self.writes_settled() {
                    self.idle(ctx);
                }
            }
            Err(error) => {
                let dropped = self.pipeline.failed();
                tracing::error!(role = %self.role(), %error, dropped, "write failed; this role stops");
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

impl<R, S, H> Handler<Stop> for RoleActor<R, S, H>
where
    R: Core,
    S: Store,
    H: Hooks<R>,
{
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Ask a role what it reports about itself.
#[derive(Debug, Message)]
#[rtype(result = "RoleStatus")]
pub struct GetStatus;

impl<R, S, H> Handler<GetStatus> for RoleActor<R, S, H>
where
    R: Core,
    S: Store,
    H: Hooks<R>,
{
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.hooks.status(&self.core))
    }
}
