//! RocksDB errors, classified into the storage crate's [`StorageError`].

use std::path::Path;
use synod_storage::StorageError;

/// Classify a RocksDB error for the store at `path`.
pub(crate) fn from_rocksdb(path: &Path, error: rocksdb::Error) -> StorageError {
    let path = path.to_path_buf();
    let detail = error.to_string();
    let lower = detail.to_lowercase();
    match error.kind() {
        rocksdb::ErrorKind::Corruption => StorageError::Corruption { path, detail },
        rocksdb::ErrorKind::IOError if lower.contains("lock") => StorageError::Locked { path },
        rocksdb::ErrorKind::IOError
            if lower.contains("permission denied")
                || lower.contains("read-only")
                || lower.contains("no such file")
                || lower.contains("not a directory") =>
        {
            StorageError::DataDir {
                path,
                reason: detail,
            }
        }
        _ => StorageError::Other { path, detail },
    }
}

/// The same error with `context` appended to what a corruption reports.
pub(crate) fn with_context(error: StorageError, context: &str) -> StorageError {
    match error {
        StorageError::Corruption { path, detail } => StorageError::Corruption {
            path,
            detail: format!("{detail}; {context}"),
        },
        other => other,
    }
}
