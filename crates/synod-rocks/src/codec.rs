//! On-disk encoding: big-endian `u64` keys, so RocksDB's byte order is slot
//! order; values are one format-version byte followed by postcard.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use synod_core::Slot;
use synod_storage::StorageError;

/// The record format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// The key of `slot`: eight big-endian bytes.
pub fn slot_key(slot: Slot) -> [u8; 8] {
    slot.to_be_bytes()
}

/// The slot a key names.
pub fn key_slot(path: &Path, key: &[u8]) -> Result<Slot, StorageError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StorageError::Corruption {
        path: path.to_path_buf(),
        detail: format!("slot key of {} bytes, expected 8", key.len()),
    })?;
    Ok(Slot::from_be_bytes(bytes))
}

/// A versioned record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

/// Decode a versioned record, refusing versions this build does not know.
pub fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| StorageError::Corruption {
                path: path.to_path_buf(),
                detail: format!("record does not decode: {e}"),
            })
        }
        Some((&found, _)) => Err(StorageError::UnknownFormat {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
        None => Err(StorageError::Corruption {
            path: path.to_path_buf(),
            detail: "empty record".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::Ballot;

    #[test]
    fn keys_sort_in_slot_order() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 1 << 40, 0]
            .iter()
            .map(|s| slot_key(*s))
            .collect();
        keys.sort();
        let slots: Vec<Slot> = keys
            .iter()
            .map(|k| key_slot(Path::new("t"), k).unwrap())
            .collect();
        assert_eq!(slots, vec![0, 2, 300, 1 << 40]);
    }

    #[test]
    fn records_round_trip_and_unknown_versions_are_refused() {
        let path = Path::new("t");
        let bytes = encode(&Ballot::new(3, 1));
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Ballot>(path, &bytes).unwrap(), Ballot::new(3, 1));
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<Ballot>(path, &future),
            Err(StorageError::UnknownFormat { found: 9, .. })
        ));
        assert!(decode::<Ballot>(path, &[]).unwrap_err().is_corruption());
        assert!(
            decode::<Ballot>(path, &[FORMAT_VERSION])
                .unwrap_err()
                .is_corruption()
        );
    }
}
