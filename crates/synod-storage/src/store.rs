//! The storage traits. Each role's persist commands from synod-core map
//! one to one onto its trait's `write_*` method; every write call is one
//! atomic, synced batch.

use crate::error::StorageError;
use crate::identity::StoreStamp;
use crate::snapshot::SnapshotDir;
use std::path::{Path, PathBuf};
use synod_core::{
    AcceptorState, AcceptorWrite, LearnerState, LearnerWrite, ProposerState, ProposerWrite, RoleId,
};

/// One durable change, of any role. A batch of these is what the
/// group-commit writer writes at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// An acceptor's promise or vote.
    Acceptor(AcceptorWrite),
    /// A proposer's round.
    Proposer(ProposerWrite),
    /// A learner's decision or applied index.
    Learner(LearnerWrite),
}

impl From<AcceptorWrite> for Write {
    fn from(write: AcceptorWrite) -> Self {
        Write::Acceptor(write)
    }
}

impl From<ProposerWrite> for Write {
    fn from(write: ProposerWrite) -> Self {
        Write::Proposer(write)
    }
}

impl From<LearnerWrite> for Write {
    fn from(write: LearnerWrite) -> Self {
        Write::Learner(write)
    }
}

/// A durable store: atomic, synced batches.
///
/// `write_batch` returns only once every write is durable (fsync'd); after a
/// crash, a batch is either wholly visible or not at all. A store whose write
/// failed refuses later writes ([`StorageError::Poisoned`]): after a failed
/// fsync the disk's contents are unknown.
pub trait Store: Send + 'static {
    /// Make `writes` durable, atomically.
    fn write_batch(&mut self, writes: &[Write]) -> Result<(), StorageError>;
}

fn wrap<W: Clone + Into<Write>>(writes: &[W]) -> Vec<Write> {
    writes.iter().cloned().map(Into::into).collect()
}

/// An acceptor's durable state.
pub trait AcceptorStore: Store {
    /// The state to resume from: exactly what `AcceptorState::apply` of every
    /// durable write gives (so nothing below the trim point).
    fn load_acceptor(&self) -> Result<AcceptorState, StorageError>;
    /// Persist an acceptor's writes as one batch.
    fn write_acceptor(&mut self, writes: &[AcceptorWrite]) -> Result<(), StorageError> {
        self.write_batch(&wrap(writes))
    }
}

/// A proposer's durable state.
pub trait ProposerStore: Store {
    /// The state to resume from.
    fn load_proposer(&self) -> Result<ProposerState, StorageError>;
    /// Persist a proposer's writes as one batch.
    fn write_proposer(&mut self, writes: &[ProposerWrite]) -> Result<(), StorageError> {
        self.write_batch(&wrap(writes))
    }
}

/// A learner's durable state.
pub trait LearnerStore: Store {
    /// The state to resume from.
    fn load_learner(&self) -> Result<LearnerState, StorageError>;
    /// Persist a learner's writes as one batch.
    fn write_learner(&mut self, writes: &[LearnerWrite]) -> Result<(), StorageError> {
        self.write_batch(&wrap(writes))
    }
}

/// A store that can back any role: what a node opens per role instance.
pub trait RoleStore: AcceptorStore + ProposerStore + LearnerStore {}

impl<T: AcceptorStore + ProposerStore + LearnerStore> RoleStore for T {}

/// Opens the store of one role instance, so a node (and everything that
/// names it) is generic over the storage engine instead of compiling one.
pub trait Backend: 'static {
    /// The store it opens.
    type Store: RoleStore;

    /// The store of `role` in `data_dir` ([`role_dir`]), created if absent.
    /// Fails if it is locked, unreadable or not a store this build reads.
    /// Nodes open stores through [`crate::open_stamped`], which checks
    /// whose store it is.
    fn open(&self, data_dir: &Path, role: RoleId) -> Result<Self::Store, StorageError>;

    /// Whether the store of `role` in `data_dir` has been created (it may
    /// still be unstamped, if its creation was interrupted).
    fn exists(&self, data_dir: &Path, role: RoleId) -> bool;

    /// The stamp written when `store` was created, if any.
    fn read_stamp(&self, store: &Self::Store) -> Result<Option<StoreStamp>, StorageError>;

    /// Stamp `store` (synced before it returns). Written once, at creation.
    fn write_stamp(&self, store: &mut Self::Store, stamp: &StoreStamp) -> Result<(), StorageError>;

    /// Where a learner keeps its snapshots: `data_dir/<role>.snapshots`
    /// beside its store. `None`: this backend keeps none (its learners do
    /// not compact their logs).
    fn snapshots(
        &self,
        data_dir: &Path,
        role: RoleId,
    ) -> Result<Option<SnapshotDir>, StorageError> {
        let dir = role_dir(data_dir, role).with_extension("snapshots");
        SnapshotDir::open(dir).map(Some)
    }
}

/// Where the store of `role` lives in a node's `data_dir`: one directory
/// per role instance, named after it (`acceptor-1`).
pub fn role_dir(data_dir: &Path, role: RoleId) -> PathBuf {
    data_dir.join(role.to_string())
}
