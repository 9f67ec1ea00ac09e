//! # synod-core: the sans-IO Paxos protocol
//!
//! This crate owns the protocol and nothing else: identities and ballots,
//! the wire messages, and the three role state machines. It performs no IO,
//! reads no clock and draws no global randomness; time comes in as `now`
//! arguments and each proposer owns a seeded generator. That is what lets
//! the simulator (`synod-sim`) replay any run from one seed, and the actix
//! role crates wrap the same code unchanged.
//!
//! ```text
//!  client ─submit─▶ Proposer ──Prepare/Accept──▶ Acceptor
//!                      ▲  ◀──Promise/Accepted/Nack──┘
//!                      └──Decided / Heartbeat──▶ Learner ─deliver─▶ state machine
//! ```
//!
//! Every role implements [`RoleCore`] (`start`, `handle`, `tick`,
//! `next_deadline`), so one driver runs all three. Every handler returns an [`Output`]: writes to persist, then messages to
//! send and values to deliver. The caller makes the writes durable before it
//! releases anything else, which is how "persist, then reply" is kept.
//!
//! Multi-Paxos runs over log [`Slot`]s with one leader; single-decree Paxos
//! (the Synod protocol) runs per named instance through
//! [`Proposer::propose_instance`] and the same acceptors.
#![deny(missing_docs)]

mod acceptor;
mod learner;
mod membership;
mod message;
mod output;
mod proposer;
mod quorum;
mod rng;
mod role;
mod types;

pub use acceptor::{AcceptedValue, Acceptor, AcceptorState, AcceptorWrite, RegisterVote};
pub use learner::{
    DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_HORIZON, Learner, LearnerConfig, LearnerSnapshot,
    LearnerState, LearnerWrite, OPEN_SESSION,
};
pub use membership::{Epoch, Membership};
pub use message::{AcceptedEntry, AcceptedRegister, CarriedVote, CarryPage, Message};
pub use output::{Delivery, Outgoing, Output, SnapshotBytes};
pub use proposer::{
    Busy, Proposer, ProposerConfig, ProposerState, ProposerWrite, ReconfigureError,
};
pub use quorum::Quorums;
pub use rng::SplitMix64;
pub use role::{MAX_SLEEP, RoleCore, wake_at};
pub use types::{
    Ballot, ClockStamp, Command, CommandId, InstanceName, Millis, Role, RoleId, Slot, Value,
    chunk_by_bytes,
};
