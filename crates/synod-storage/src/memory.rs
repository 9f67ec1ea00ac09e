//! An in-memory store with the same semantics as the RocksDB one, for
//! tests, the simulator and embedders that do not need durability. Clones
//! share state, so "reopening" is cloning; a switch makes writes fail, to
//! test what callers do with a failing disk.

use crate::error::StorageError;
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

    /// The store of `role` in `data_dir` (to inject failures into it).
    pub fn store(&self, data_dir: &Path, role: RoleId) -> MemoryStore {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        stores.entry(role_dir(data_dir, role)).or_default().clone()
    }
}

impl Backend for MemoryBackend {
    type Store = MemoryStore;

    fn open(&self, data_dir: &Path, role: RoleId) -> Result<MemoryStore, StorageError> {
        Ok(self.store(data_dir, role).reopen())
    }

    /// Nothing of a memory node touches the disk: its learners keep their
    /// whole log.
    fn snapshots(&self, _: &Path, _: RoleId) -> Result<Option<SnapshotDir>, StorageError> {
        Ok(None)
    }
}
