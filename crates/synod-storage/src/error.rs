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
