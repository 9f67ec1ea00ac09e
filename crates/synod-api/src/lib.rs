//! # synod-api: what applications and clients share with a cluster
//!
//! The one crate both sides of a Synod deployment depend on, and it pulls
//! in nothing but serde and the protocol core's types:
//!
//! - [`StateMachine`] and [`Decision`]: what an application implements and
//!   what it is told, in log order, by a learner;
//! - [`wire`]: the client protocol (requests, replies, failures, status
//!   reports) spoken on a node's client port;
//! - [`SubmitError`]: why a command was not answered, shared by the
//!   embedding API and the client port (which sends it as a [`wire::Failure`]).
//!
//! ```text
//! synod-client ─┐                    ┌─ synod-runtime (client port, gateway)
//! synod-kv ─────┼──▶ synod-api ◀─────┼─ synod-roles (learner applies StateMachine)
//!               └──▶ synod-core ◀────┘
//! ```
//!
//! A program that only talks to a cluster builds this, synod-core and its
//! client library, never the server's storage engine or actor runtime.
#![deny(missing_docs)]

mod error;
mod machine;
pub mod wire;

pub use error::SubmitError;
pub use machine::{Decision, SnapshotError, SnapshotImage, StateMachine};
