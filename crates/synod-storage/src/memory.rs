//! An in-memory store with the same semantics as the RocksDB one, for
//! tests, the simulator and embedders that do not need durability. Clones
//! share state, so "reopening" is cloning; a switch makes writes fail, to
//! test what callers do with a failing disk.

use crate::error::StorageError;
use crate::identity::StoreStamp;
use crate::snapshot::SnapshotDir;
use crate::store::{AcceptorStore, Backend, LearnerStore, ProposerStore, Store, Write, role_dir};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use synod_core::{AcceptorState, LearnerState, ProposerState, RoleId};

#[derive(Debug, Default)]
struct Contents {
    acceptor: AcceptorState,
    proposer: ProposerState,
    learner: LearnerState,
    stamp: Option<StoreStamp>,
    fail_writes: bool,
    poisoned: Option<String>,
}

impl Contents {
    fn apply(&mut self, write: &Write) {
        match write {
            Write::Acceptor(w) => self.acceptor.apply(w),
            Write::Proposer(w) => self.proposer.apply(w),
            Write::Learner(w) => self.learner.apply(w),
        }
    }
}

/// A store held in memory. Cloning gives another handle on the same state.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    contents: Arc<Mutex<Contents>>,
}

fn path() -> PathBuf {
    PathBuf::from("<memory>")
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make every later write fail (as a dying disk would), or stop doing so.
    /// A failed write poisons the store, as it does the RocksDB store.
    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// The stamp written when the store was created, if any.
    pub fn stamp(&self) -> Option<StoreStamp> {
        self.lock().stamp.clone()
    }

    /// Stamp the store (see [`crate::open_stamped`]).
    pub fn set_stamp(&self, stamp: StoreStamp) {
        self.lock().stamp = Some(stamp);
    }

    /// Forget an earlier failure, as reopening a store does.
    pub fn reopen(&self) -> Self {
        self.lock().poisoned = None;
        self.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Contents> {
        self.contents
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Store for MemoryStore {
    fn write_batch(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        let mut contents = self.lock();
        if let Some(detail) = &contents.poisoned {
            return Err(StorageError::Poisoned {
                path: path(),
                detail: detail.clone(),
            });
        }
        if contents.fail_writes {
            let detail = "injected write failure".to_owned();
            contents.poisoned = Some(detail.clone());
            return Err(StorageError::WriteFailed {
                path: path(),
                detail,
            });
        }
        for write in writes {
            contents.apply(write);
        }
        Ok(())
    }
}

impl AcceptorStore for MemoryStore {
    fn load_acceptor(&self) -> Result<AcceptorState, StorageError> {
        Ok(self.lock().acceptor.clone())
    }
}

impl ProposerStore for MemoryStore {
    fn load_proposer(&self) -> Result<ProposerState, StorageError> {
        Ok(self.lock().proposer.clone())
    }
}

impl LearnerStore for MemoryStore {
    fn load_learner(&self) -> Result<LearnerState, StorageError> {
        Ok(self.lock().learner.clone())
    }
}

/// Memory stores by data directory and role. Opening the same pair again
/// (a restarted node) gives the same contents, as a disk would; clones
/// share the stores.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    stores: Arc<Mutex<HashMap<PathBuf, MemoryStore>>>,
}

impl MemoryBackend {
    /// No stores yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store of `role` in `data_dir` (to inject failures into it),
    /// created if absent.
    pub fn store(&self, data_dir: &Path, role: RoleId) -> MemoryStore {
        self.stores()
            .entry(role_dir(data_dir, role))
            .or_default()
            .clone()
    }

    /// Delete the store of `role` in `data_dir`, as wiping its disk would
    /// (handles already open keep the old contents).
    pub fn wipe(&self, data_dir: &Path, role: RoleId) {
        self.stores().remove(&role_dir(data_dir, role));
    }

    fn stores(&self) -> MutexGuard<'_, HashMap<PathBuf, MemoryStore>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemoryBackend {
    type Store = MemoryStore;

    fn open(&self, data_dir: &Path, role: RoleId) -> Result<MemoryStore, StorageError> {
        Ok(self.store(data_dir, role).reopen())
    }

    fn exists(&self, data_dir: &Path, role: RoleId) -> bool {
        self.stores().contains_key(&role_dir(data_dir, role))
    }

    fn read_stamp(&self, store: &MemoryStore) -> Result<Option<StoreStamp>, StorageError> {
        Ok(store.stamp())
    }

    fn write_stamp(&self, store: &mut MemoryStore, stamp: &StoreStamp) -> Result<(), StorageError> {
        store.set_stamp(stamp.clone());
        Ok(())
    }

    /// Nothing of a memory node touches the disk: its learners keep their
    /// whole log.
    fn snapshots(&self, _: &Path, _: RoleId) -> Result<Option<SnapshotDir>, StorageError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Bootstrap, StoreOwner, open_stamped};

    fn owner(node: &str) -> StoreOwner {
        StoreOwner {
            cluster: "c".into(),
            node: node.into(),
            role: RoleId::acceptor(1),
        }
    }

    #[test]
    fn a_wiped_memory_store_is_missing_and_a_new_one_gets_a_new_incarnation() {
        let backend = MemoryBackend::new();
        let dir = Path::new("/n1");
        let open = |bootstrap, incarnation| {
            open_stamped(&backend, dir, &owner("n1"), bootstrap, incarnation)
        };
        assert!(matches!(
            open(Bootstrap::Existing, 1),
            Err(StorageError::Missing { .. })
        ));
        assert_eq!(open(Bootstrap::New, 1).unwrap().1.incarnation, 1);
        assert_eq!(open(Bootstrap::Existing, 2).unwrap().1.incarnation, 1);
        let foreign = open_stamped(&backend, dir, &owner("n2"), Bootstrap::New, 3);
        assert!(matches!(foreign, Err(StorageError::Foreign { .. })));
        backend.wipe(dir, RoleId::acceptor(1));
        assert!(matches!(
            open(Bootstrap::Existing, 4),
            Err(StorageError::Missing { .. })
        ));
        assert_eq!(open(Bootstrap::New, 5).unwrap().1.incarnation, 5);
    }
}
