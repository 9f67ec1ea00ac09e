//! What can go wrong with durable state, named after the condition.

use std::path::PathBuf;

/// A storage failure. Every variant names the store's path; none of them
/// is ever papered over by opening an empty store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The data directory is missing, not a directory, or not writable.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Another process (or another handle in this one) holds the directory.
    #[error("data directory {path} is locked by another process; is another synod node using it?")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A record failed its checksum or does not decode.
    #[error("storage at {path} is corrupt and cannot be trusted: {detail}")]
    Corruption {
        /// The store.
        path: PathBuf,
        /// What RocksDB or the decoder reported.
        detail: String,
    },
    /// The store was written by a build with another on-disk format.
    #[error("storage at {path} has format version {found}; this build reads version {supported}")]
    UnknownFormat {
        /// The store.
        path: PathBuf,
        /// The version byte found.
        found: u8,
        /// The version this build understands.
        supported: u8,
    },
    /// A write (or its fsync) failed; nothing of that batch is acknowledged.
    #[error("write to {path} failed: {detail}")]
    WriteFailed {
        /// The store.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
    /// An earlier write failed, so the store no longer knows what is on disk
    /// and refuses further writes until it is reopened.
    #[error("storage at {path} refuses writes after an earlier failure: {detail}")]
    Poisoned {
        /// The store.
        path: PathBuf,
        /// The first failure.
        detail: String,
    },
    /// A node of a running cluster found no store for one of its roles:
    /// it was never created, or it was deleted.
    #[error(
        "no store for {owner} at {path}: its durable state is gone or was never created. \
         A node of a running cluster must not come back empty (an acceptor would forget \
         what it promised). If this is a brand-new cluster or a new member, start it with \
         --init; to replace a wiped node, see \"Identity\" in ARCHITECTURE.md"
    )]
    Missing {
        /// The store's directory.
        path: PathBuf,
        /// Whose store it should be.
        owner: String,
    },
    /// The store is stamped for another cluster, node or role.
    #[error(
        "storage at {path} belongs to {found}, not {expected}; point data_dir at this \
         node's own directory"
    )]
    Foreign {
        /// The store.
        path: PathBuf,
        /// The owner its stamp names.
        found: String,
        /// The owner opening it.
        expected: String,
    },
    /// The store exists but was never stamped (its creation was
    /// interrupted, or its files were deleted under it).
    #[error(
        "storage at {path} has no identity stamp: its creation was interrupted, or its \
         files were deleted. Only if this is a brand-new node, start it with --init"
    )]
    Unstamped {
        /// The store.
        path: PathBuf,
    },
    /// The store's directory was removed or replaced while the node ran.
    #[error("storage at {path} vanished while the node ran: {detail}")]
    Vanished {
        /// The store.
        path: PathBuf,
        /// What changed.
        detail: String,
    },
    /// The group-commit writer thread is gone (shut down or panicked).
    #[error("group-commit writer for {path} has stopped")]
    WriterStopped {
        /// The store.
        path: PathBuf,
    },
    /// Any other RocksDB error.
    #[error("storage at {path}: {detail}")]
    Other {
        /// The store.
        path: PathBuf,
        /// What RocksDB reported.
        detail: String,
    },
}

impl StorageError {
    /// Whether the stored state cannot be trusted (as opposed to a store
    /// that cannot be reached or written right now).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageError::Corruption { .. } | StorageError::UnknownFormat { .. }
        )
    }
}
