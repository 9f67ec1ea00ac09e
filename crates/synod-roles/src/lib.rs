//! # synod-roles: the proposer, acceptor and learner as actix actors
//!
//! Each role is a separate actor, placed on nodes by config, and all
//! three are one generic shell, [`RoleActor`], around a sans-IO core from
//! synod-core (anything implementing `RoleCore`). The shell owns what the
//! roles share: the persist-then-release [`Pipeline`](synod_storage::Pipeline)
//! over a group-commit writer, the timer at the core's next deadline,
//! stopping on a failed write, [`Stop`] and [`GetStatus`]. A role adds only
//! what is its own ([`Hooks`]):
//!
//! | actor | core | adds |
//! |---|---|---|
//! | [`AcceptorActor`] | `Acceptor` | nothing ([`NoHooks`]): its replies leave once its vote is durable |
//! | [`ProposerActor`] | `Proposer` | client intake: [`Submit`], [`ProposeInstance`], [`Reconfigure`]; logs elections and leader changes ([`ProposerHooks`]) |
//! | [`LearnerActor`] | `Learner` | a `StateMachine` ([`Applier`]): [`WatchCommand`]/[`WatchCommands`], [`WatchInstance`], [`InstanceValue`], [`Subscribe`] |
//!
//! ```text
//! Inbound / tick / Submit ──▶ core ──Output──▶ Pipeline ──writes──▶ GroupCommit ──Durable──┐
//!                                                 └──held effects released on Durable ◀────┘──▶ router, state machine
//! ```
#![deny(missing_docs)]

mod driver;
mod leader_hint;
mod learner;
mod proposer;
mod status;

pub use driver::{Core, GetStatus, Hooks, Job, Jobs, NoHooks, RoleActor, Stop};
pub use leader_hint::LeaderHint;
pub use learner::{
    AnswerQueue, Applier, CommandAnswer, InstanceValue, LearnerActor, Query, ReadAt, ReplyTo,
    SnapshotEvery, SnapshotWritten, Stagger, Subscribe, TakeSnapshot, Unwatch, WatchCommand,
    WatchCommands, WatchInstance,
};
pub use proposer::{ProposeInstance, ProposerActor, ProposerHooks, Reconfigure, Submit};
pub use status::{AcceptorStatus, LearnerStatus, ProposerStatus, Report, RoleStatus};

/// The acceptor actor: the shell with no hooks. Its Promise and Accepted
/// replies leave only once the vote is durable.
pub type AcceptorActor<S> = RoleActor<synod_core::Acceptor, S, NoHooks>;
