//! # synod-storage: durable Paxos state, without a storage engine
//!
//! What every role needs from storage, and nothing that compiles one
//! (RocksDB lives in synod-rocks). It owns:
//!
//! - the role traits [`AcceptorStore`], [`ProposerStore`], [`LearnerStore`]
//!   (one `write_*` per role, mapping synod-core's persist commands one to
//!   one; every call is one atomic, synced batch), over a base [`Store`];
//!   [`Backend`] opens the store of one role instance, so a node is
//!   generic over the engine;
//! - [`MemoryStore`] and [`MemoryBackend`]: the same semantics in memory,
//!   with failure injection, for tests, the simulator and embedders;
//! - [`GroupCommit`], the writer thread that turns many submissions into
//!   one synced batch and completes them in order;
//! - [`Pipeline`] (over [`Outbox`]): persist, then release. The actors and
//!   the simulator both run every role output through it;
//! - [`open_stamped`]: every store carries a [`StoreStamp`] (cluster,
//!   node, role, incarnation); a node opens only its own, and creates a
//!   missing one only when told this is a new cluster or member;
//! - [`SnapshotDir`]: a learner's snapshot files, checksummed and
//!   installed atomically (old or new after a crash, never torn).
//!
//! ```text
//! role output ─▶ Pipeline ─(ticket, writes)─▶ GroupCommit thread ─write_batch(sync)─▶ Store
//!                   ▲                                      │
//!                   └─── durable(ticket) releases effects ◀┘
//! ```
//!
//! Semantics are defined once, by synod-core's `AcceptorState::apply` (and
//! its proposer and learner twins); the stores are checked against them by
//! one conformance suite (synod-rocks `tests/conformance.rs`).
#![deny(missing_docs)]

mod error;
mod identity;
mod memory;
mod outbox;
mod pipeline;
mod snapshot;
mod store;
mod writer;

pub use error::StorageError;
pub use identity::{Bootstrap, StoreOwner, StoreStamp, open_stamped};
pub use memory::{MemoryBackend, MemoryStore};
pub use outbox::Outbox;
pub use pipeline::{Effect, Pipeline, Step};
pub use snapshot::{Incoming, SNAPSHOT_FORMAT, Snapshot, SnapshotDir};
pub use store::{
    AcceptorStore, Backend, LearnerStore, ProposerStore, RoleStore, Store, Write, role_dir,
};
pub use writer::{Completion, GroupCommit, GroupLimits, GroupObserver};
