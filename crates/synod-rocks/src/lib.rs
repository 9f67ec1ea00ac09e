//! # synod-rocks: Synod's durable store on RocksDB
//!
//! The one place Synod touches RocksDB. [`RocksStore`] implements
//! synod-storage's traits: column families, big-endian slot keys,
//! versioned postcard records, and a paranoid open that repairs only a
//! provably torn, never-acknowledged WAL tail (see `wal`). [`RocksBackend`]
//! opens one store per role instance for a node.
//!
//! ```text
//! role actor ─▶ GroupCommit (synod-storage) ─WriteBatch(sync)─▶ RocksStore ─▶ data_dir/<role>/
//! ```
//!
//! Semantics are synod-core's `AcceptorState::apply` (and its proposer and
//! learner twins); this store and the memory store are checked against
//! them by one conformance suite (`tests/conformance.rs`).
#![deny(missing_docs)]

mod codec;
mod error;
mod rocks;
mod wal;

pub use codec::FORMAT_VERSION;
pub use rocks::RocksStore;
pub use wal::TornTail;

use std::path::Path;
use synod_core::RoleId;
use synod_storage::{Backend, StorageError, StoreStamp, role_dir};

/// Opens a [`RocksStore`] per role instance, in `data_dir/<role>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RocksBackend;

impl Backend for RocksBackend {
    type Store = RocksStore;

    fn open(&self, data_dir: &Path, role: RoleId) -> Result<RocksStore, StorageError> {
        let path = role_dir(data_dir, role);
        std::fs::create_dir_all(&path).map_err(|reason| StorageError::DataDir {
            path: path.clone(),
            reason: reason.to_string(),
        })?;
        let store = RocksStore::open(&path)?;
        if let Some(torn) = store.torn_tail() {
            tracing::warn!(
                wal = %torn.wal.display(),
                kept = torn.kept,
                dropped = torn.dropped,
                "cut off a torn, never-acknowledged WAL record left by a crash"
            );
        }
        Ok(store)
    }

    fn exists(&self, data_dir: &Path, role: RoleId) -> bool {
        role_dir(data_dir, role).join("CURRENT").exists()
    }

    fn read_stamp(&self, store: &RocksStore) -> Result<Option<StoreStamp>, StorageError> {
        store.stamp()
    }

    fn write_stamp(&self, store: &mut RocksStore, stamp: &StoreStamp) -> Result<(), StorageError> {
        store.write_stamp(stamp)
    }
}
