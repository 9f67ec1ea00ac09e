//! The RocksDB store.
//!
//! One store per role instance directory, with column families:
//!
//! | family      | key                 | value                       |
//! |-------------|---------------------|-----------------------------|
//! | `meta`      | `format`, `identity`, `promised`, `chosen`, `max_round`, `applied`, `trim`, `base`, `epoch`, `instances_open`, `moved_to`, `rounds_known_in` | versioned postcard |
//! | `accepted`  | slot (u64 BE)       | `AcceptedValue`             |
//! | `instances` | instance name       | `RegisterVote`              |
//! | `decided`   | slot (u64 BE)       | `Value`                     |
//! | `learned`   | instance name       | decided value bytes         |
//!
//! Every `write_batch` is one RocksDB `WriteBatch` written with
//! `sync = true`, ending with a commit marker (`meta/group`, see
//! [`crate::wal`]). The store is opened with paranoid checks and
//! `AbsoluteConsistency` WAL recovery: a damaged WAL record is an error at
//! open, never a silent rollback to an older state. One case is told apart
//! and repaired: a newest WAL that ends inside a record without its commit
//! marker was torn by a crash before that record's fsync, so the record was
//! never acknowledged; its bytes are cut off and the strict open retried.

use crate::codec::{decode, encode, key_slot, slot_key};
use crate::error::{from_rocksdb, with_context};
use crate::wal::{self, Inspection, TornTail};
use rocksdb::{
    ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode, IteratorMode, Options,
    WriteBatch, WriteOptions,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use synod_core::{
    AcceptedValue, AcceptorState, AcceptorWrite, Ballot, Epoch, LearnerState, LearnerWrite,
    ProposerState, ProposerWrite, RegisterVote, Slot,
};
use synod_storage::{
    AcceptorStore, LearnerStore, ProposerStore, StorageError, Store, StoreStamp, Write,
};

const META: &str = "meta";
const ACCEPTED: &str = "accepted";
const INSTANCES: &str = "instances";
const DECIDED: &str = "decided";
const LEARNED: &str = "learned";
const FAMILIES: [&str; 5] = [META, ACCEPTED, INSTANCES, DECIDED, LEARNED];

const KEY_FORMAT: &[u8] = b"format";
const KEY_PROMISED: &[u8] = b"promised";
const KEY_CHOSEN: &[u8] = b"chosen";
const KEY_MAX_ROUND: &[u8] = b"max_round";
const KEY_APPLIED: &[u8] = b"applied";
const KEY_BASE: &[u8] = b"base";
const KEY_TRIM: &[u8] = b"trim";
const KEY_EPOCH: &[u8] = b"epoch";
const KEY_MOVED_TO: &[u8] = b"moved_to";
const KEY_INSTANCES_OPEN: &[u8] = b"instances_open";
const KEY_ROUNDS_KNOWN_IN: &[u8] = b"rounds_known_in";
const KEY_GROUP: &[u8] = b"group";
const KEY_IDENTITY: &[u8] = b"identity";

/// Whether `epoch` is later than `known` (epochs only move forward).
fn later(epoch: &Epoch, known: &Option<Epoch>) -> bool {
    known
        .as_ref()
        .is_none_or(|known| epoch.membership.epoch > known.membership.epoch)
}

/// The stamp as stored: cluster, node, role, incarnation.
type StampRecord = (String, String, synod_core::RoleId, u64);

/// A raw key with its decoded value.
type Record<T> = (Box<[u8]>, T);

/// The single-valued fields, cached so a write can take the maximum
/// without reading.
#[derive(Clone, Debug, Default)]
struct Meta {
    promised: Ballot,
    chosen: Slot,
    max_round: u64,
    applied: Slot,
    trim: Slot,
    /// The learner's compaction point.
    base: Slot,
    /// The latest epoch an acceptor was told of.
    epoch: Option<Epoch>,
    /// The latest epoch an acceptor's instance votes were carried into.
    instances_open: u32,
    /// The latest epoch a proposer moved to.
    moved_to: Option<Epoch>,
    /// The latest epoch a proposer discovered its rounds in.
    rounds_known_in: u32,
    /// Groups written so far; the last one's number is its commit marker.
    group: u64,
}

/// A RocksDB-backed store for one role instance's directory.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    meta: Meta,
    poisoned: Option<String>,
    torn_tail: Option<TornTail>,
    /// The directory and its RocksDB `LOCK` file as opened: if either is
    /// removed or replaced while the store is open, writes would go to
    /// deleted files and be lost at the next open.
    presence: Presence,
}

/// Identifies the files a store was opened on (device and inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Presence {
    directory: (u64, u64),
    lock: (u64, u64),
}

impl Presence {
    fn of(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            directory: file_id(path)?,
            lock: file_id(&path.join("LOCK"))?,
        })
    }
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Memtable bytes one store holds before it flushes, over all its column
/// families. RocksDB's default (64 MiB per family) would let each of a
/// node's stores grow by hundreds of MiB before the first flush; values
/// here are small and every write is synced anyway.
const MEMTABLE_BYTES: usize = 8 << 20;
/// WAL bytes after which the oldest memtables are flushed, so the WAL
/// files are bounded too.
const WAL_BYTES: u64 = 32 << 20;

fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_paranoid_checks(true);
    options.set_wal_recovery_mode(DBRecoveryMode::AbsoluteConsistency);
    options.set_db_write_buffer_size(MEMTABLE_BYTES);
    options.set_max_total_wal_size(WAL_BYTES);
    options
}

/// Flushes write uncompressed: most of what a memtable holds (accepted
/// and decided values) is trimmed soon after, and compressing it cost
/// the flush threads about 2 % of a loaded cluster's CPU. What lives long
/// enough to reach the last level is compressed there.
fn family_options() -> Options {
    let mut options = Options::default();
    options.set_write_buffer_size(MEMTABLE_BYTES / 2);
    options.set_compression_type(DBCompressionType::None);
    options.set_bottommost_compression_type(DBCompressionType::Lz4);
    options
}

fn open_db(path: &Path) -> Result<DB, StorageError> {
    let families = FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, family_options()));
    DB::open_cf_descriptors(&options(), path, families).map_err(|e| from_rocksdb(path, e))
}

/// Open strictly; if that fails on corruption, drop a torn tail of the
/// newest WAL (and only that) and open strictly again.
fn open_db_recovering_torn_tail(path: &Path) -> Result<(DB, Option<TornTail>), StorageError> {
    let error = match open_db(path) {
        Ok(db) => return Ok((db, None)),
        Err(error) if error.is_corruption() => error,
        Err(error) => return Err(error),
    };
    match wal::inspect_newest(path)? {
        Inspection::Nothing => Err(error),
        Inspection::Damaged(reason) => Err(with_context(error, &reason)),
        Inspection::Dropped(torn) => Ok((open_db(path)?, Some(torn))),
    }
}

fn check_directory(path: &Path) -> Result<(), StorageError> {
    let reason = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "is not a directory".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "does not exist; create it first".to_owned()
        }
        Err(e) => e.to_string(),
    };
    Err(StorageError::DataDir {
        path: path.to_path_buf(),
        reason,
    })
}

impl RocksStore {
    /// Open (or initialise) the store in the existing directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        check_directory(&path)?;
        let (db, torn_tail) = open_db_recovering_torn_tail(&path)?;
        let presence = Presence::of(&path).map_err(|e| StorageError::DataDir {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut store = Self {
            db,
            path,
            meta: Meta::default(),
            poisoned: None,
            torn_tail,
            presence,
        };
        store.check_format()?;
        store.meta = store.load_meta()?;
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The torn, never-acknowledged WAL tail this open cut off, if any
    /// (worth a line in the operator's log).
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }

    /// The identity stamp written when the store was created, if any.
    pub fn stamp(&self) -> Result<Option<StoreStamp>, StorageError> {
        let record: Option<StampRecord> = self.get(META, KEY_IDENTITY)?;
        Ok(record.map(|(cluster, node, role, incarnation)| StoreStamp {
            cluster,
            node,
            role,
            incarnation,
        }))
    }

    /// Stamp the store (synced). A store is stamped once, when created.
    pub fn write_stamp(&mut self, stamp: &StoreStamp) -> Result<(), StorageError> {
        let record: StampRecord = (
            stamp.cluster.clone(),
            stamp.node.clone(),
            stamp.role,
            stamp.incarnation,
        );
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(META), KEY_IDENTITY, encode(&record));
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| self.error(e))
    }

    /// Fail if the directory or its lock file was removed or replaced
    /// since the open (`rm -rf` of a running node's data).
    fn check_presence(&self) -> Result<(), StorageError> {
        let detail = match Presence::of(&self.path) {
            Ok(now) if now == self.presence => return Ok(()),
            Ok(_) => "the directory or its LOCK file was replaced".to_owned(),
            Err(e) => format!("the directory or its LOCK file is gone ({e})"),
        };
        Err(StorageError::Vanished {
            path: self.path.clone(),
            detail,
        })
    }

    /// Write memtables out to SST files (maintenance, and tests that need
    /// data in SSTs rather than only in the WAL).
    pub fn flush(&self) -> Result<(), StorageError> {
        for family in FAMILIES {
            self.db
                .flush_cf(self.cf(family))
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn error(&self, error: rocksdb::Error) -> StorageError {
        from_rocksdb(&self.path, error)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is opened")
    }

    /// Refuse a store written in another format; stamp a new one.
    fn check_format(&self) -> Result<(), StorageError> {
        if let Some(bytes) = self
            .db
            .get_cf(self.cf(META), KEY_FORMAT)
            .map_err(|e| self.error(e))?
        {
            return decode::<()>(&self.path, &bytes);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(META), KEY_FORMAT, encode(&()));
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| self.error(e))
    }

    fn get_meta<T: serde::de::DeserializeOwned + Default>(
        &self,
        key: &[u8],
    ) -> Result<T, StorageError> {
        match self
            .db
            .get_cf(self.cf(META), key)
            .map_err(|e| self.error(e))?
        {
            Some(bytes) => decode(&self.path, &bytes),
            None => Ok(T::default()),
        }
    }

    fn load_meta(&self) -> Result<Meta, StorageError> {
        Ok(Meta {
            promised: self.get_meta(KEY_PROMISED)?,
            chosen: self.get_meta(KEY_CHOSEN)?,
            max_round: self.get_meta(KEY_MAX_ROUND)?,
            applied: self.get_meta(KEY_APPLIED)?,
            trim: self.get_meta(KEY_TRIM)?,
            base: self.get_meta(KEY_BASE)?,
            epoch: self.get_meta(KEY_EPOCH)?,
            instances_open: self.get_meta(KEY_INSTANCES_OPEN)?,
            moved_to: self.get_meta(KEY_MOVED_TO)?,
            rounds_known_in: self.get_meta(KEY_ROUNDS_KNOWN_IN)?,
            group: self.load_group()?,
        })
    }

    fn load_group(&self) -> Result<u64, StorageError> {
        let Some(bytes) = self
            .db
            .get_cf(self.cf(META), KEY_GROUP)
            .map_err(|e| self.error(e))?
        else {
            return Ok(0);
        };
        wal::parse_marker(&bytes).ok_or_else(|| StorageError::Corruption {
            path: self.path.clone(),
            detail: "the commit marker (meta/group) is malformed".to_owned(),
        })
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self
            .db
            .get_cf(self.cf(family), key)
            .map_err(|e| self.error(e))?
        {
            Some(bytes) => decode(&self.path, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn contains(&self, family: &str, key: &[u8]) -> Result<bool, StorageError> {
        let found = self
            .db
            .get_pinned_cf(self.cf(family), key)
            .map_err(|e| self.error(e))?;
        Ok(found.is_some())
    }

    /// Every record of `family`, decoded, in key order.
    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
    ) -> Result<Vec<Record<T>>, StorageError> {
        let mut records = Vec::new();
        for item in self.db.iterator_cf(self.cf(family), IteratorMode::Start) {
            let (key, value) = item.map_err(|e| self.error(e))?;
            records.push((key, decode(&self.path, &value)?));
        }
        Ok(records)
    }

    fn scan_slots<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
    ) -> Result<BTreeMap<Slot, T>, StorageError> {
        let mut map = BTreeMap::new();
        for (key, value) in self.scan(family)? {
            map.insert(key_slot(&self.path, &key)?, value);
        }
        Ok(map)
    }

    fn scan_names<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
    ) -> Result<BTreeMap<String, T>, StorageError> {
        let mut map = BTreeMap::new();
        for (key, value) in self.scan(family)? {
            let name = String::from_utf8(key.into_vec()).map_err(|_| StorageError::Corruption {
                path: self.path.clone(),
                detail: format!("instance name in {family} is not UTF-8"),
            })?;
            map.insert(name, value);
        }
        Ok(map)
    }
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

/// Builds one `WriteBatch` from a list of writes with the same meaning as
/// the core's `apply`: maxima for promises, rounds and indexes, first value
/// wins for decisions. Reads see earlier writes of the same batch.
struct BatchBuilder<'a> {
    store: &'a RocksStore,
    batch: WriteBatch,
    meta: Meta,
    votes: HashMap<String, RegisterVote>,
    decided: HashSet<Slot>,
    learned: HashSet<String>,
}

impl<'a> BatchBuilder<'a> {
    fn new(store: &'a RocksStore) -> Self {
        Self {
            store,
            batch: WriteBatch::default(),
            meta: store.meta.clone(),
            votes: HashMap::new(),
            decided: HashSet::new(),
            learned: HashSet::new(),
        }
    }

    fn put(&mut self, family: &str, key: &[u8], value: Vec<u8>) {
        self.batch.put_cf(self.store.cf(family), key, value);
    }

    fn add(&mut self, write: &Write) -> Result<(), StorageError> {
        match write {
            Write::Acceptor(w) => self.acceptor(w)?,
            Write::Proposer(ProposerWrite::Round(round)) => {
                self.meta.max_round = self.meta.max_round.max(*round);
                self.put(META, KEY_MAX_ROUND, encode(&self.meta.max_round));
            }
            Write::Proposer(ProposerWrite::Epoch(epoch)) => {
                if later(epoch, &self.meta.moved_to) {
                    self.meta.moved_to = Some(epoch.clone());
                    self.put(META, KEY_MOVED_TO, encode(&self.meta.moved_to));
                }
            }
            Write::Proposer(ProposerWrite::RoundsKnown(epoch)) => {
                if *epoch > self.meta.rounds_known_in {
                    self.meta.rounds_known_in = *epoch;
                    self.put(META, KEY_ROUNDS_KNOWN_IN, encode(epoch));
                }
            }
            Write::Learner(w) => self.learner(w)?,
        }
        Ok(())
    }

    /// The batch, ending with the next commit marker, and the meta it
    /// leaves behind. The marker must be the last operation: a torn record
    /// is recognised by its missing marker.
    fn finish(mut self) -> (WriteBatch, Meta) {
        self.meta.group += 1;
        let marker = wal::marker(self.meta.group);
        self.put(META, KEY_GROUP, marker.to_vec());
        (self.batch, self.meta)
    }

    fn raise_promise(&mut self, ballot: Ballot) {
        if ballot > self.meta.promised {
            self.meta.promised = ballot;
            self.put(META, KEY_PROMISED, encode(&ballot));
        }
    }

    fn vote(&mut self, name: &str) -> Result<RegisterVote, StorageError> {
        if let Some(vote) = self.votes.get(name) {
            return Ok(vote.clone());
        }
        Ok(self
            .store
            .get(INSTANCES, name.as_bytes())?
            .unwrap_or_default())
    }

    fn put_vote(&mut self, name: &str, vote: RegisterVote) {
        self.put(INSTANCES, name.as_bytes(), encode(&vote));
        self.votes.insert(name.to_owned(), vote);
    }

    fn acceptor(&mut self, write: &AcceptorWrite) -> Result<(), StorageError> {
        match write {
            AcceptorWrite::Promise(ballot) => self.raise_promise(*ballot),
            AcceptorWrite::Chosen(slot) => {
                if *slot > self.meta.chosen {
                    self.meta.chosen = *slot;
                    self.put(META, KEY_CHOSEN, encode(slot));
                }
            }
            AcceptorWrite::Accept {
                slot,
                ballot,
                value,
            } => {
                self.raise_promise(*ballot);
                if *slot >= self.meta.trim {
                    let accepted = AcceptedValue {
                        ballot: *ballot,
                        value: value.clone(),
                    };
                    self.put(ACCEPTED, &slot_key(*slot), encode(&accepted));
                }
            }
            AcceptorWrite::InstancePromise { name, ballot } => {
                let mut vote = self.vote(name)?;
                vote.promised = vote.promised.max(*ballot);
                self.put_vote(name, vote);
            }
            AcceptorWrite::InstanceAccept {
                name,
                ballot,
                value,
            } => {
                let mut vote = self.vote(name)?;
                vote.promised = vote.promised.max(*ballot);
                vote.accepted = Some(synod_core::AcceptedRegister {
                    ballot: *ballot,
                    value: value.clone(),
                });
                self.put_vote(name, vote);
            }
            AcceptorWrite::Trim(below) if *below > self.meta.trim => {
                self.meta.trim = *below;
                self.put(META, KEY_TRIM, encode(&self.meta.trim));
                let cf = self.store.cf(ACCEPTED);
                self.batch
                    .delete_range_cf(cf, slot_key(0), slot_key(*below));
            }
            AcceptorWrite::Trim(_) => {}
            AcceptorWrite::Epoch(epoch) if later(epoch, &self.meta.epoch) => {
                self.meta.epoch = Some(epoch.clone());
                self.put(META, KEY_EPOCH, encode(&self.meta.epoch));
            }
            AcceptorWrite::Epoch(_) => {}
            AcceptorWrite::InstancesOpen(epoch) if *epoch > self.meta.instances_open => {
                self.meta.instances_open = *epoch;
                self.put(META, KEY_INSTANCES_OPEN, encode(epoch));
            }
            AcceptorWrite::InstancesOpen(_) => {}
        }
        Ok(())
    }

    fn learner(&mut self, write: &LearnerWrite) -> Result<(), StorageError> {
        match write {
            LearnerWrite::Decided { slot, .. } if *slot < self.meta.base => {}
            LearnerWrite::Decided { slot, value } => {
                let key = slot_key(*slot);
                let known = self.decided.contains(slot) || self.store.contains(DECIDED, &key)?;
                if !known {
                    self.put(DECIDED, &key, encode(value));
                    self.decided.insert(*slot);
                }
            }
            LearnerWrite::Applied(slot) => {
                self.meta.applied = self.meta.applied.max(*slot);
                self.put(META, KEY_APPLIED, encode(&self.meta.applied));
            }
            LearnerWrite::InstanceDecided { name, value } => {
                let known =
                    self.learned.contains(name) || self.store.contains(LEARNED, name.as_bytes())?;
                if !known {
                    self.put(LEARNED, name.as_bytes(), encode(value));
                    self.learned.insert(name.clone());
                }
            }
            LearnerWrite::Compact(upto) if *upto > self.meta.base => {
                self.meta.base = *upto;
                self.put(META, KEY_BASE, encode(&self.meta.base));
                let cf = self.store.cf(DECIDED);
                self.batch.delete_range_cf(cf, slot_key(0), slot_key(*upto));
                self.decided.retain(|slot| *slot >= *upto);
            }
            LearnerWrite::Compact(_) => {}
        }
        Ok(())
    }
}

impl Store for RocksStore {
    fn write_batch(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        if let Some(detail) = &self.poisoned {
            return Err(StorageError::Poisoned {
                path: self.path.clone(),
                detail: detail.clone(),
            });
        }
        if let Err(vanished) = self.check_presence() {
            self.poisoned = Some(vanished.to_string());
            return Err(vanished);
        }
        let mut builder = BatchBuilder::new(self);
        for write in writes {
            builder.add(write)?;
        }
        let (batch, meta) = builder.finish();
        match self.db.write_opt(batch, &synced()) {
            Ok(()) => {
                self.meta = meta;
                Ok(())
            }
            Err(e) => {
                let detail = e.to_string();
                self.poisoned = Some(detail.clone());
                Err(StorageError::WriteFailed {
                    path: self.path.clone(),
                    detail,
                })
            }
        }
    }
}

impl AcceptorStore for RocksStore {
    fn load_acceptor(&self) -> Result<AcceptorState, StorageError> {
        let mut accepted: BTreeMap<Slot, AcceptedValue> = self.scan_slots(ACCEPTED)?;
        accepted = accepted.split_off(&self.meta.trim);
        Ok(AcceptorState {
            promised: self.meta.promised,
            accepted,
            instances: self.scan_names(INSTANCES)?,
            chosen_upto: self.meta.chosen,
            trimmed_below: self.meta.trim,
            epoch: self.meta.epoch.clone(),
            instances_open: self.meta.instances_open,
        })
    }
}

impl ProposerStore for RocksStore {
    fn load_proposer(&self) -> Result<ProposerState, StorageError> {
        Ok(ProposerState {
            max_round: self.meta.max_round,
            epoch: self.meta.moved_to.clone(),
            rounds_known_in: self.meta.rounds_known_in,
        })
    }
}

impl LearnerStore for RocksStore {
    fn load_learner(&self) -> Result<LearnerState, StorageError> {
        let mut decided = self.scan_slots(DECIDED)?;
        let decided = decided.split_off(&self.meta.base);
        Ok(LearnerState {
            decided,
            applied: self.meta.applied,
            instances: self.scan_names(LEARNED)?,
            base: self.meta.base,
        })
    }
}
