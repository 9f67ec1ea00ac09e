//! # synod-storage: durable Paxos state
//!
//! The one place Synod touches RocksDB. It owns:
//!
//! - the role traits [`AcceptorStore`], [`ProposerStore`], [`LearnerStore`]
//!   (one `write_*` per role, mapping synod-core's persist commands one to
//!   one; every call is one atomic, synced batch), over a base [`Store`];
//! - [`RocksStore`], the durable implementation (column families, big-endian
//!   slot keys, versioned postcard records, paranoid open that repairs
//!   only a provably torn, never-acknowledged WAL tail — see `wal`);
//! - [`MemoryStore`], the same semantics in memory, with failure injection;
//! - [`GroupCommit`], the writer thread that turns many submissions into
//!   one synced `WriteBatch` and completes them in order;
//! - [`Outbox`], which holds a role's replies until the writes they depend
//!   on are durable.
//!
//! ```text
//! acceptor actor ─submit(writes, done)─▶ GroupCommit thread ─WriteBatch(sync)─▶ RocksStore
//!        ▲                                          │
//!        └──────────── done(Ok) releases replies ◀──┘
//! ```
//!
//! Semantics are defined once, by synod-core's `AcceptorState::apply` (and
//! its proposer and learner twins); both stores are checked against them by
//! one conformance suite (`tests/conformance.rs`).
#![deny(missing_docs)]

mod codec;
mod error;
mod memory;
mod outbox;
mod rocks;
mod store;
mod wal;
mod writer;

pub use codec::FORMAT_VERSION;
pub use error::StorageError;
pub use memory::MemoryStore;
pub use outbox::Outbox;
pub use rocks::RocksStore;
pub use store::{AcceptorStore, LearnerStore, ProposerStore, SnapshotMarker, Store, Write};
pub use wal::TornTail;
pub use writer::{Completion, GroupCommit, GroupLimits};
