//! The key/value store's snapshot format: a stream of records, each a
//! 4-byte little-endian length and a postcard `Record`. A header with the
//! record counts comes first and an `End` record last, so a stream cut
//! short or padded is refused; the learner's snapshot file adds the
//! checksum. Written in key, lock and client order, so every learner
//! writes the same bytes for the same state.
//!
//! ```text
//! Header { format, applied, keys, locks, clients } · KeyLeased* · LockLeased* · Client*
//!   · History { horizon, changes } · Change* · Leases { clock, count } · Lease* · End
//! ```
//!
//! Variant positions are the format: never reorder, bump `FORMAT` for a
//! change a reader of the old format cannot take. Format 2 added the keys'
//! revisions (`KeyAt`); a format-1 snapshot still restores, each of its
//! keys at version 1 with created and modified revision 0 ("before
//! revisions were kept"), with an empty watch history that starts after it.
//! Format 3 added leases: each key's and lock's lease (`KeyLeased`,
//! `LockLeased`, which also carries the lock's queue), the log's clock and
//! the leases themselves; a format-2 snapshot restores with no leases and
//! the clock at 0. A lease's keys and locks are not listed twice: they are
//! rebuilt from the keys' and locks' records.

use crate::client_table::ClientTable;
use crate::history::Changes;
use crate::locks::{LockRecord, Waiter};
use crate::{Change, Entry, KvStore};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use synod_api::{SnapshotError, SnapshotImage};
use synod_core::Ballot;

/// The snapshot format this build writes.
const FORMAT: u16 = 3;

/// The oldest format this build reads.
const OLDEST_FORMAT: u16 = 1;

/// Largest record a reader accepts (a key and a value within any sane
/// limit, or one client's responses).
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// A record as read back.
#[derive(Debug, Deserialize)]
enum Record {
    Header {
        format: u16,
        applied: u64,
        keys: u64,
        locks: u64,
        clients: u64,
    },
    Key {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Lock {
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        owner: String,
        token: u64,
    },
    Client {
        client: u64,
        last_used: u64,
        responses: Vec<(u64, Vec<u8>)>,
    },
    End,
    KeyAt {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        created: u64,
        modified: u64,
        version: u64,
    },
    History {
        horizon: u64,
        changes: u64,
    },
    Change(Change),
    KeyLeased {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        created: u64,
        modified: u64,
        version: u64,
        lease: u64,
    },
    LockLeased {
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        owner: String,
        token: u64,
        lease: u64,
        waiters: Vec<(String, u64)>,
    },
    Leases {
        clock: Option<(Ballot, u64)>,
        now: u64,
        count: u64,
    },
    Lease {
        id: u64,
        ttl: u64,
        deadline: u64,
    },
}

/// The same records, borrowed from the store while it is written (the
/// encoding is identical: postcard writes a byte slice as a `Vec<u8>`).
#[derive(Serialize)]
enum RecordOut<'a> {
    Header {
        format: u16,
        applied: u64,
        keys: u64,
        locks: u64,
        clients: u64,
    },
    /// Format 1's key record: written only by tests now, kept for its
    /// position.
    #[cfg_attr(not(test), allow(dead_code))]
    Key {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// Formats 1 and 2's lock record: kept for its position.
    #[allow(dead_code)]
    Lock {
        name: &'a [u8],
        owner: &'a str,
        token: u64,
    },
    Client {
        client: u64,
        last_used: u64,
        responses: Vec<(u64, &'a [u8])>,
    },
    End,
    /// Format 2's key record: kept for its position.
    #[allow(dead_code)]
    KeyAt {
        key: &'a [u8],
        value: &'a [u8],
        created: u64,
        modified: u64,
        version: u64,
    },
    History {
        horizon: u64,
        changes: u64,
    },
    Change(&'a Change),
    KeyLeased {
        key: &'a [u8],
        value: &'a [u8],
        created: u64,
        modified: u64,
        version: u64,
        lease: u64,
    },
    LockLeased {
        name: &'a [u8],
        owner: &'a str,
        token: u64,
        lease: u64,
        waiters: Vec<(&'a str, u64)>,
    },
    Leases {
        clock: Option<(Ballot, u64)>,
        now: u64,
        count: u64,
    },
    Lease {
        id: u64,
        ttl: u64,
        deadline: u64,
    },
}

/// Writes records to a snapshot stream, each encoded into one buffer kept
/// for the next (a snapshot has a record per key and per change).
struct RecordWriter<'a> {
    out: &'a mut dyn Write,
    scratch: Vec<u8>,
}

impl<'a> RecordWriter<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            scratch: Vec::new(),
        }
    }

    fn put(&mut self, record: &RecordOut<'_>) -> std::io::Result<()> {
        self.scratch.clear();
        let scratch = std::mem::take(&mut self.scratch);
        self.scratch = postcard::to_extend(record, scratch).map_err(std::io::Error::other)?;
        let len = u32::try_from(self.scratch.len()).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&self.scratch)
    }
}

fn read_record(input: &mut dyn Read) -> Result<Record, SnapshotError> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_RECORD {
        return Err(SnapshotError::Invalid(format!("a {len}-byte record")));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes)?;
    postcard::from_bytes(&bytes).map_err(|e| SnapshotError::Invalid(e.to_string()))
}

/// Write `store` to `out`.
pub(crate) fn write(store: &KvStore, out: &mut dyn Write) -> std::io::Result<()> {
    let mut out = RecordWriter::new(out);
    write_head(store, &mut out)?;
    write_history(store.history.horizon(), store.history.changes(), &mut out)?;
    write_tail(store, &mut out)
}

/// `store`'s snapshot as [`write`] would write it, to be written later on
/// any thread: the records before and after the watch history are encoded
/// now, the history's sealed chunks are shared (most of a snapshot's
/// bytes when the key space is small) and encoded when it is written.
pub(crate) fn image(store: &KvStore) -> SnapshotImage {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let encoded = write_head(store, &mut RecordWriter::new(&mut head))
        .and_then(|()| write_tail(store, &mut RecordWriter::new(&mut tail)));
    let horizon = store.history.horizon();
    let changes = store.history.changes().clone();
    Box::new(move |out: &mut dyn Write| {
        encoded?;
        out.write_all(&head)?;
        write_history(horizon, &changes, &mut RecordWriter::new(out))?;
        out.write_all(&tail)
    })
}

/// The header, keys, locks and client table.
fn write_head(store: &KvStore, out: &mut RecordWriter<'_>) -> std::io::Result<()> {
    let clients = store.clients.entries();
    out.put(&RecordOut::Header {
        format: FORMAT,
        applied: store.applied,
        keys: store.data.len() as u64,
        locks: store.locks.len() as u64,
        clients: clients.len() as u64,
    })?;
    for (key, entry) in store.data.iter() {
        let record = RecordOut::KeyLeased {
            key,
            value: &entry.value,
            created: entry.created,
            modified: entry.modified,
            version: entry.version,
            lease: entry.lease,
        };
        out.put(&record)?;
    }
    for (name, lock) in &store.locks {
        let record = RecordOut::LockLeased {
            name,
            owner: &lock.owner,
            token: lock.token,
            lease: lock.lease,
            waiters: lock
                .waiters
                .iter()
                .map(|w| (w.owner.as_str(), w.lease))
                .collect(),
        };
        out.put(&record)?;
    }
    for (client, last_used, responses) in clients {
        let responses = responses.iter().map(|(s, r)| (*s, r.as_slice())).collect();
        out.put(&RecordOut::Client {
            client,
            last_used,
            responses,
        })?;
    }
    Ok(())
}

/// The watch history: its horizon and count, then each change.
fn write_history(
    horizon: u64,
    changes: &Changes,
    out: &mut RecordWriter<'_>,
) -> std::io::Result<()> {
    let count = changes.len() as u64;
    out.put(&RecordOut::History {
        horizon,
        changes: count,
    })?;
    for change in changes.iter() {
        out.put(&RecordOut::Change(change))?;
    }
    Ok(())
}

/// The log's clock and the leases, then the end.
fn write_tail(store: &KvStore, out: &mut RecordWriter<'_>) -> std::io::Result<()> {
    let leases = &store.leases;
    let clock = leases.clock;
    out.put(&RecordOut::Leases {
        clock: clock.last,
        now: clock.now,
        count: leases.len() as u64,
    })?;
    for (id, lease) in leases.iter() {
        let (ttl, deadline) = (lease.ttl, lease.deadline);
        out.put(&RecordOut::Lease { id, ttl, deadline })?;
    }
    out.put(&RecordOut::End)
}

/// Read a store with `store`'s limits from `input`.
pub(crate) fn read(store: &KvStore, input: &mut dyn Read) -> Result<KvStore, SnapshotError> {
    let Record::Header {
        format,
        applied,
        keys,
        locks,
        clients,
    } = read_record(input)?
    else {
        return Err(SnapshotError::Invalid("no header".into()));
    };
    if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
        return Err(SnapshotError::Invalid(format!(
            "format {format}; this build reads {OLDEST_FORMAT} to {FORMAT}"
        )));
    }
    let limits = store.limits;
    let mut restored = KvStore::new(limits);
    restored.applied = applied;
    restored.clients = ClientTable::new(limits.responses_per_client, limits.max_clients);
    for _ in 0..keys {
        let (key, entry) = match read_record(input)? {
            Record::KeyLeased {
                key,
                value,
                created,
                modified,
                version,
                lease,
            } if format >= 3 => {
                let entry = Entry {
                    value,
                    created,
                    modified,
                    version,
                    lease,
                };
                (key, entry)
            }
            Record::KeyAt {
                key,
                value,
                created,
                modified,
                version,
            } if format == 2 => {
                let entry = Entry {
                    value,
                    created,
                    modified,
                    version,
                    lease: 0,
                };
                (key, entry)
            }
            Record::Key { key, value } if format == 1 => (key, Entry::before_revisions(value)),
            _ => {
                return Err(SnapshotError::Invalid(
                    "fewer keys than the header says".into(),
                ));
            }
        };
        restored.data.insert(&key, entry);
    }
    for _ in 0..locks {
        let (name, record) = read_lock(format, input)?;
        restored.locks.insert(name, record);
    }
    for _ in 0..clients {
        let Record::Client {
            client,
            last_used,
            responses,
        } = read_record(input)?
        else {
            return Err(SnapshotError::Invalid(
                "fewer clients than the header says".into(),
            ));
        };
        restored.clients.restore(client, last_used, responses);
    }
    restored.history = if format >= 2 {
        read_history(&restored, input)?
    } else {
        // Nothing was kept: watchers start after the snapshot.
        restored.history.clone().restored(applied + 1, Vec::new())
    };
    if format >= 3 {
        read_leases(&mut restored, input)?;
    }
    match read_record(input)? {
        Record::End => {}
        _ => {
            return Err(SnapshotError::Invalid(
                "more records than the header says".into(),
            ));
        }
    }
    let mut trailing = [0u8; 1];
    if input.read(&mut trailing)? != 0 {
        return Err(SnapshotError::Invalid("bytes after the end".into()));
    }
    Ok(restored)
}

/// One lock: with its lease and queue from format 3 on.
fn read_lock(format: u16, input: &mut dyn Read) -> Result<(Vec<u8>, LockRecord), SnapshotError> {
    let (name, owner, token, lease, waiters) = match read_record(input)? {
        Record::LockLeased {
            name,
            owner,
            token,
            lease,
            waiters,
        } if format >= 3 => (name, owner, token, lease, waiters),
        Record::Lock { name, owner, token } if format < 3 => (name, owner, token, 0, Vec::new()),
        _ => {
            return Err(SnapshotError::Invalid(
                "fewer locks than the header says".into(),
            ));
        }
    };
    let waiters = waiters
        .into_iter()
        .map(|(owner, lease)| Waiter { owner, lease })
        .collect();
    let record = LockRecord {
        owner,
        token,
        lease,
        waiters,
    };
    Ok((name, record))
}

/// The clock and the leases, then what hangs on each, rebuilt from the
/// keys and locks already restored.
fn read_leases(store: &mut KvStore, input: &mut dyn Read) -> Result<(), SnapshotError> {
    let Record::Leases { clock, now, count } = read_record(input)? else {
        return Err(SnapshotError::Invalid("no leases".into()));
    };
    store.leases.clock.last = clock;
    store.leases.clock.now = now;
    for _ in 0..count {
        let Record::Lease { id, ttl, deadline } = read_record(input)? else {
            return Err(SnapshotError::Invalid(
                "fewer leases than the header says".into(),
            ));
        };
        store.leases.restore(id, ttl, deadline);
    }
    let keys: Vec<(u64, Vec<u8>)> = store
        .data
        .iter()
        .filter(|(_, entry)| entry.lease != 0)
        .map(|(key, entry)| (entry.lease, key.to_vec()))
        .collect();
    for (lease, key) in keys {
        let Some(lease) = store.leases.get_mut(lease) else {
            return Err(SnapshotError::Invalid("a key of a lease not kept".into()));
        };
        lease.keys.insert(key);
    }
    let mut claims = Vec::new();
    for (name, lock) in &store.locks {
        let holder = (lock.lease != 0).then(|| (lock.lease, lock.owner.clone()));
        let waiters = lock.waiters.iter().map(|w| (w.lease, w.owner.clone()));
        for (lease, owner) in holder.into_iter().chain(waiters) {
            claims.push((lease, name.clone(), owner));
        }
    }
    for (lease, name, owner) in claims {
        if store.leases.get(lease).is_none() {
            return Err(SnapshotError::Invalid("a lock of a lease not kept".into()));
        }
        store.claim(lease, name, owner);
    }
    Ok(())
}

/// The watch history: a `History` record, then its changes.
fn read_history(
    store: &KvStore,
    input: &mut dyn Read,
) -> Result<crate::history::History, SnapshotError> {
    let Record::History { horizon, changes } = read_record(input)? else {
        return Err(SnapshotError::Invalid("no watch history".into()));
    };
    let mut kept = Vec::new();
    for _ in 0..changes {
        let Record::Change(change) = read_record(input)? else {
            return Err(SnapshotError::Invalid(
                "fewer changes than the history says".into(),
            ));
        };
        kept.push(change);
    }
    Ok(store.history.clone().restored(horizon, kept))
}

/// A format-1 snapshot of keys `k0..k{n}`, each `v`, at applied `n`: what
/// a build before revisions wrote.
#[cfg(test)]
pub(crate) fn write_format_one(out: &mut dyn Write, n: u64) -> std::io::Result<()> {
    let header = RecordOut::Header {
        format: 1,
        applied: n,
        keys: n,
        locks: 0,
        clients: 0,
    };
    let mut out = RecordWriter {
        out,
        scratch: Vec::new(),
    };
    out.put(&header)?;
    for i in 0..n {
        let key = format!("k{i}");
        let record = RecordOut::Key {
            key: key.as_bytes(),
            value: b"v",
        };
        out.put(&record)?;
    }
    out.put(&RecordOut::End)
}
