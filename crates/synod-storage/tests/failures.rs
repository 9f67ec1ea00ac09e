//! Bad directories, locks, unknown formats and corruption give clear
//! errors that name the path; a store that cannot be trusted never opens
//! as empty.

use std::path::{Path, PathBuf};
use synod_core::{AcceptorWrite, Ballot, Value};
use synod_storage::{AcceptorStore, RocksStore, StorageError};
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

/// A small tmpfs mounted for one test and unmounted when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// `None` where this process may not mount (not root): the test then
    /// says so and passes vacuously. CI runs as root, where it mounts.
    fn mount(size: &str) -> Option<Self> {
        let dir = TempDir::new().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_write_and_poisons_the_store() {
    let Some(disk) = SmallDisk::mount("8m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut store = RocksStore::open(disk.dir.path()).unwrap();
    let big = Value::Batch(vec![synod_core::Command {
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
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(disk.dir.path())
        .status()
        .expect("mount");
    assert!(remounted.success(), "remount read-only");
    let error = RocksStore::open(disk.dir.path()).unwrap_err();
    assert!(matches!(error, StorageError::DataDir { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&disk.dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.to_lowercase().contains("read-only"), "{message}");
}
