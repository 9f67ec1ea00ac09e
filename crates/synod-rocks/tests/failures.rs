//! Bad directories, locks, unknown formats and corruption give clear
//! errors that name the path; a store that cannot be trusted never opens
//! as empty.

use std::path::{Path, PathBuf};
use synod_core::{AcceptorWrite, Ballot, Value};
use synod_rocks::RocksStore;
use synod_storage::{AcceptorStore, StorageError};
use synod_testkit::SmallDisk;
use tempfile::TempDir;

fn write_some(dir: &Path, slots: u64) {
    let mut store = RocksStore::open(dir).unwrap();
    for slot in 0..slots {
        let write = AcceptorWrite::Accept {
            slot,
            ballot: Ballot::new(1, 1),
            value: Value::Noop,
        };
        store.write_acceptor(&[write]).unwrap();
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy().ends_with(suffix) && std::fs::metadata(p).unwrap().len() > 0
        })
        .collect();
    files.sort();
    files
}

/// Flip every byte in the middle half of `file`.
fn damage(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let len = bytes.len();
    for byte in &mut bytes[len / 4..3 * len / 4] {
        *byte ^= 0x5a;
    }
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn missing_directory_is_named_in_the_error() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope");
    let error = RocksStore::open(&missing).unwrap_err();
    assert!(matches!(error, StorageError::DataDir { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("nope") && message.contains("does not exist"),
        "{message}"
    );
}

#[test]
fn a_file_is_not_a_data_directory() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let error = RocksStore::open(&file).unwrap_err();
    assert!(error.to_string().contains("not a directory"), "{error}");
}

#[test]
fn a_second_open_in_the_same_process_is_locked() {
    let dir = TempDir::new().unwrap();
    let _first = RocksStore::open(dir.path()).unwrap();
    let error = RocksStore::open(dir.path()).unwrap_err();
    assert!(matches!(error, StorageError::Locked { .. }), "{error}");
}

#[test]
fn an_unknown_store_format_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(RocksStore::open(dir.path()).unwrap());
    {
        let options = rocksdb::Options::default();
        let families = rocksdb::DB::list_cf(&options, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&options, dir.path(), &families).unwrap();
        db.put_cf(db.cf_handle("meta").unwrap(), b"format", [9u8])
            .unwrap();
    }
    let error = RocksStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::UnknownFormat {
                found: 9,
                supported: 1,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_record_in_an_unknown_format_is_refused_on_load() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), 1);
    {
        let options = rocksdb::Options::default();
        let families = rocksdb::DB::list_cf(&options, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&options, dir.path(), &families).unwrap();
        db.put_cf(
            db.cf_handle("accepted").unwrap(),
            5u64.to_be_bytes(),
            [7u8, 0, 0],
        )
        .unwrap();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    let error = store.load_acceptor().unwrap_err();
    assert!(
        matches!(error, StorageError::UnknownFormat { found: 7, .. }),
        "{error}"
    );
}

#[test]
fn a_damaged_wal_fails_open_with_corruption() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), 200);
    let wal = files_ending(dir.path(), ".log");
    assert!(!wal.is_empty(), "synced writes live in the WAL");
    for file in &wal {
        damage(file);
    }
    let error = RocksStore::open(dir.path()).unwrap_err();
    assert!(error.is_corruption(), "expected corruption, got {error}");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string())
    );
}

/// The newest WAL file of the store in `dir`, and its length.
fn newest_wal(dir: &Path) -> (PathBuf, u64) {
    let wal = files_or_empty(dir, ".log").pop().expect("a WAL file");
    let len = std::fs::metadata(&wal).unwrap().len();
    (wal, len)
}

fn files_or_empty(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn accept(slot: u64, payload: usize) -> AcceptorWrite {
    AcceptorWrite::Accept {
        slot,
        ballot: Ballot::new(1, 1),
        value: Value::batch(vec![synod_core::Command {
            id: synod_core::CommandId {
                client: 1,
                seq: slot,
            },
            payload: vec![0x42; payload],
        }]),
    }
}

/// Writes `sizes.len()` synced batches (one accept each, with a payload
/// of that size) in one open of the store; returns the WAL and the offset
/// where each batch's record starts, plus the end.
fn write_records(dir: &Path, sizes: &[usize]) -> (PathBuf, Vec<u64>) {
    let mut store = RocksStore::open(dir).unwrap();
    let mut offsets = vec![newest_wal(dir).1];
    for (slot, size) in sizes.iter().enumerate() {
        store.write_acceptor(&[accept(slot as u64, *size)]).unwrap();
        offsets.push(newest_wal(dir).1);
    }
    (newest_wal(dir).0, offsets)
}

fn truncate(file: &Path, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    file.set_len(len).unwrap();
}

fn slots(dir: &Path) -> Vec<u64> {
    let store = RocksStore::open(dir).unwrap();
    let state = store.load_acceptor().unwrap();
    state.accepted.keys().copied().collect()
}

#[test]
fn a_torn_last_wal_record_is_dropped_and_the_store_opens() {
    // The last record is small (one block) in the first shape, and spans
    // several blocks in the second.
    for last in [64, 100_000] {
        let mut sizes = vec![64; 30];
        sizes.push(last);
        let probe = TempDir::new().unwrap();
        let (_, offsets) = write_records(probe.path(), &sizes);
        let (start, end) = (offsets[30], offsets[31]);
        for cut in [start + 1, start + 6, start + 7, (start + end) / 2, end - 1] {
            let dir = TempDir::new().unwrap();
            let (wal, _) = write_records(dir.path(), &sizes);
            truncate(&wal, cut);
            let store = RocksStore::open(dir.path())
                .unwrap_or_else(|e| panic!("cut at {cut} of {start}..{end}: {e}"));
            let torn = store.torn_tail().expect("the torn tail is reported");
            assert_eq!((torn.kept, torn.dropped), (start, cut - start));
            drop(store);
            assert_eq!(slots(dir.path()), (0..30).collect::<Vec<_>>());
        }
    }
}

#[test]
fn a_store_repaired_from_a_torn_tail_keeps_working() {
    let dir = TempDir::new().unwrap();
    let (wal, offsets) = write_records(dir.path(), &[64; 10]);
    truncate(&wal, offsets[10] - 3);
    let mut store = RocksStore::open(dir.path()).unwrap();
    assert!(store.torn_tail().is_some());
    store.write_acceptor(&[accept(9, 64)]).unwrap();
    store.write_acceptor(&[accept(10, 64)]).unwrap();
    drop(store);
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.torn_tail(), None, "a clean reopen drops nothing");
    let state = store.load_acceptor().unwrap();
    assert_eq!(state.accepted.len(), 11);
}

#[test]
fn a_length_field_that_looks_torn_but_hides_synced_records_fails_open() {
    let dir = TempDir::new().unwrap();
    let (wal, offsets) = write_records(dir.path(), &[64; 40]);
    let end = *offsets.last().unwrap();
    // Record 20's length now points past the end of the (one-block) file:
    // to RocksDB exactly what a torn record looks like, but records 20..40
    // were synced and acknowledged.
    let at = offsets[20] as usize;
    let mut bytes = std::fs::read(&wal).unwrap();
    let past_end = (end as usize - at) as u16;
    bytes[at + 4..at + 6].copy_from_slice(&past_end.to_le_bytes());
    std::fs::write(&wal, &bytes).unwrap();
    let error = RocksStore::open(dir.path()).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert!(error.to_string().contains("commit marker"), "{error}");
    assert_eq!(std::fs::read(&wal).unwrap(), bytes, "the WAL is left alone");
}

#[test]
fn a_torn_tail_does_not_excuse_damage_before_it() {
    let dir = TempDir::new().unwrap();
    let (wal, offsets) = write_records(dir.path(), &[64; 40]);
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[offsets[10] as usize + 20] ^= 0xff;
    bytes.truncate(offsets[40] as usize - 5);
    std::fs::write(&wal, &bytes).unwrap();
    let error = RocksStore::open(dir.path()).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    let again = RocksStore::open(dir.path()).unwrap_err();
    assert!(again.is_corruption(), "still refused: {again}");
}

#[test]
fn a_damaged_sst_fails_open_or_load_with_corruption() {
    let dir = TempDir::new().unwrap();
    write_some(dir.path(), 200);
    RocksStore::open(dir.path()).unwrap().flush().unwrap();
    let ssts = files_ending(dir.path(), ".sst");
    assert!(!ssts.is_empty(), "flush writes SST files");
    for file in &ssts {
        damage(file);
    }
    let error = match RocksStore::open(dir.path()) {
        Err(error) => error,
        Ok(store) => store
            .load_acceptor()
            .expect_err("a damaged SST must not load"),
    };
    assert!(error.is_corruption(), "expected corruption, got {error}");
}

/// A small tmpfs in a fresh temporary directory.
fn small_disk(size: &str) -> Option<(TempDir, SmallDisk)> {
    let dir = TempDir::new().unwrap();
    let disk = SmallDisk::mount_or_skip(dir.path(), size)?;
    Some((dir, disk))
}

#[test]
fn a_full_disk_fails_the_write_and_poisons_the_store() {
    let Some((_dir, disk)) = small_disk("8m") else {
        return;
    };
    let mut store = RocksStore::open(disk.path()).unwrap();
    let big = Value::batch(vec![synod_core::Command {
        id: synod_core::CommandId { client: 1, seq: 1 },
        payload: vec![0x42; 256 * 1024],
    }]);
    let mut failure = None;
    for slot in 0..1_000 {
        let write = AcceptorWrite::Accept {
            slot,
            ballot: Ballot::new(1, 1),
            value: big.clone(),
        };
        if let Err(error) = store.write_acceptor(&[write]) {
            failure = Some((slot, error));
            break;
        }
    }
    let (slot, error) = failure.expect("an 8 MiB disk fills up");
    assert!(matches!(error, StorageError::WriteFailed { .. }), "{error}");
    let next = AcceptorWrite::Promise(Ballot::new(2, 1));
    let error = store.write_acceptor(&[next]).unwrap_err();
    assert!(
        matches!(error, StorageError::Poisoned { .. }),
        "after a failed write at slot {slot}: {error}"
    );
}

#[test]
fn a_read_only_data_directory_is_a_clear_error() {
    let Some((_dir, disk)) = small_disk("1m") else {
        return;
    };
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(disk.path())
        .status()
        .expect("mount");
    assert!(remounted.success(), "remount read-only");
    let error = RocksStore::open(disk.path()).unwrap_err();
    assert!(matches!(error, StorageError::DataDir { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&disk.path().display().to_string()),
        "{message}"
    );
    assert!(message.to_lowercase().contains("read-only"), "{message}");
}
