//! One signature for every role, so one driver (the actix actor in
//! synod-roles, the simulator's event loop) runs all three.
//!
//! ```text
//! driver: start(now) once ─┐
//!         handle(now, from, message) ─┼─▶ Output { persist, send, deliver }
//!         tick(now) at next_deadline()┘        (persist first, then release)
//! ```
//!
//! `next_deadline` says when `tick` next has work, so a driver sleeps
//! exactly that long instead of polling. It may be early (a tick with
//! nothing to do is harmless) but never late, and after `tick(now)` it is
//! past `now` unless new work is due at once.

use crate::acceptor::{Acceptor, AcceptorWrite};
use crate::learner::{Learner, LearnerWrite};
use crate::message::Message;
use crate::output::Output;
use crate::proposer::{Proposer, ProposerWrite};
use crate::types::{Millis, RoleId};

/// A protocol role as a driver sees it.
pub trait RoleCore {
    /// What this role asks to persist.
    type Write: Clone + std::fmt::Debug;

    /// This role instance.
    fn id(&self) -> RoleId;

    /// Once, when the role starts from its durable state (a learner
    /// replays its log here).
    fn start(&mut self, now: Millis) -> Output<Self::Write> {
        let _ = now;
        Output::new()
    }

    /// One message from `from`.
    fn handle(&mut self, now: Millis, from: RoleId, message: Message) -> Output<Self::Write>;

    /// Time has passed: elections, retransmissions, catch-up.
    fn tick(&mut self, now: Millis) -> Output<Self::Write>;

    /// When `tick` next has something to do; `None`: nothing until a
    /// message (or a command) arrives.
    fn next_deadline(&self) -> Option<Millis>;
}

impl RoleCore for Acceptor {
    type Write = AcceptorWrite;

    fn id(&self) -> RoleId {
        Acceptor::id(self)
    }

    fn handle(&mut self, _now: Millis, from: RoleId, message: Message) -> Output<AcceptorWrite> {
        Acceptor::handle(self, from, message)
    }

    /// An acceptor only answers; it has no timers.
    fn tick(&mut self, _now: Millis) -> Output<AcceptorWrite> {
        Output::new()
    }

    fn next_deadline(&self) -> Option<Millis> {
        None
    }
}

impl RoleCore for Proposer {
    type Write = ProposerWrite;

    fn id(&self) -> RoleId {
        Proposer::id(self)
    }

    /// Ask the acceptors for their promises if the store holds no round.
    fn start(&mut self, now: Millis) -> Output<ProposerWrite> {
        Proposer::start(self, now)
    }

    fn handle(&mut self, now: Millis, from: RoleId, message: Message) -> Output<ProposerWrite> {
        Proposer::handle(self, now, from, message)
    }

    fn tick(&mut self, now: Millis) -> Output<ProposerWrite> {
        Proposer::tick(self, now)
    }

    fn next_deadline(&self) -> Option<Millis> {
        Proposer::next_deadline(self)
    }
}

impl RoleCore for Learner {
    type Write = LearnerWrite;

    fn id(&self) -> RoleId {
        Learner::id(self)
    }

    /// Replay the durable log into the state machine.
    fn start(&mut self, _now: Millis) -> Output<LearnerWrite> {
        self.replay()
    }

    fn handle(&mut self, now: Millis, from: RoleId, message: Message) -> Output<LearnerWrite> {
        Learner::handle(self, now, from, message)
    }

    fn tick(&mut self, now: Millis) -> Output<LearnerWrite> {
        Learner::tick(self, now)
    }

    fn next_deadline(&self) -> Option<Millis> {
        Learner::next_deadline(self)
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The longest a driver sleeps before ticking a role anyway (a deadline
/// further out is re-armed after it).
pub const MAX_SLEEP: Millis = 60_000;

/// When a driver should next tick `core`, at time `now`: its deadline, at
/// least 1 ms ahead (a role whose deadline has passed is not spun on) and at
/// most [`MAX_SLEEP`]. `None`: no timer until the next message.
pub fn wake_at(core: &impl RoleCore, now: Millis) -> Option<Millis> {
    let deadline = core.next_deadline()?;
    Some(deadline.clamp(now + 1, now + MAX_SLEEP))
}
