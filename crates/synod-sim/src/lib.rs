//! # synod-sim: a deterministic simulator for the Paxos core
//!
//! One `u64` seed decides everything: the cluster shape (1–3 proposers, 3 or
//! 5 acceptors, 1–3 learners), message delays and reordering, loss (0–30 %),
//! duplication (0–50 %), partitions that come and go (one node, a split,
//! one-way), crashes and restarts of any role (durable state kept, volatile
//! state lost), clients submitting commands to random proposers, and
//! single-decree instances with competing proposers.
//!
//! ```text
//! seed ─▶ Shape ─▶ World: event queue (time, id) ─▶ step ─▶ core handler
//!                     ▲                                     │ Output
//!                     └── Network (delay/loss/dup/cuts) ◀───┤ persist → durable copy
//!                                                           └ checkers after every event
//! ```
//!
//! Four checkers (validity, agreement, integrity, promise order) watch every
//! event. After the fault phase the world heals (all but a random minority
//! of acceptors come back, loss and partitions stop) and every submitted
//! command must be delivered by every learner, and the learners must level,
//! within a bounded simulated time.
#![deny(missing_docs)]

pub mod checkers;
mod network;
mod shape;
mod world;

pub use network::{Network, Partition};
pub use shape::Shape;
pub use world::{FLEXIBLE_QUORUMS, SeedReport, SimOptions, SimQuorums, UNSAFE_QUORUMS, run_seed};
