//! # synod-kv: the default replicated state machine
//!
//! A key/value map with compare-and-set, and named locks with fencing
//! tokens, applied by every learner in log order. Everything here is
//! deterministic (no clocks, no randomness, ordered maps), so replaying the
//! log rebuilds the same state and the same answers on every learner.
//!
//! ```text
//! Command.payload = postcard(KvCommand) ──▶ KvStore::apply ──▶ postcard(KvResponse)
//!                                              │
//!                                              └─ client table: (client, seq) → original response
//! ```
//!
//! **Exactly once.** The learner applies each (client, seq) once; the
//! client table keeps each client's recent responses so a retry — through
//! any node — is answered with the original response. The table is
//! bounded (responses per client, and clients, evicting the one idle
//! longest in log order) and, being part of the state, is rebuilt by replay
//! after a restart.
//!
//! **Revisions.** The position of a command in the applied sequence is its
//! revision. Every key keeps the revision that created it, the one that
//! last changed it, and its version (changes since it was created), so a
//! transaction can compare them and a listing reports them.
//!
//! **Transactions** (`Txn`): compares on values, versions and revisions,
//! then a list of puts and deletes if all hold, another list if not; one
//! command, one revision. **Ranges** (`List`): keys under a prefix, in key
//! order, in pages bounded by count and bytes.
//!
//! **Leases** (`Grant`, `KeepAlive`, `Revoke`): a lease lasts its TTL of
//! the log's clock unless kept alive, and the keys (`PutLeased`) and locks
//! (`Acquire`) attached to it go when it ends. The store has no clock of
//! its own: time is counted from the leaders' clock stamps in log order
//! (see `lease.rs`), so every learner expires a lease at the same revision.
//!
//! **Locks** (the seed's mutual exclusion): `Lock { name, owner }` grants a
//! free lock and returns a fencing token, the revision of the granting
//! command, which only grows, so a resource can refuse a stale holder's
//! token. A plain lock lasts until its owner unlocks; one taken with
//! `Acquire` is bound to a lease, and waiting acquirers queue for it in
//! order (see `locks.rs`).
#![deny(missing_docs)]

mod client_table;
mod history;
mod keymap;
mod lease;
mod locks;
mod range;
mod snapshot;
mod txn;

pub use history::Change;
pub use range::ListEntry;
pub use txn::{Compare, CompareOp, Target, TxnOp};

use client_table::ClientTable;
use history::History;
use keymap::KeyMap;
use lease::Leases;
use locks::LockRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use synod_api::{SnapshotError, StateMachine};
use synod_core::{ClockStamp, Command, CommandId};

/// An operation. Tags are wire and log tags: never reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Tag 0: set `key` to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Tag 1: read `key` (through the log: linearizable).
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Tag 2: remove `key`.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Tag 3: set `key` to `new` if its value is `expected` (`None`: if absent).
    Cas {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value required now; `None` requires the key to be absent.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The value to set.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    /// Tag 4: take lock `name` for `owner`.
    Lock {
        /// The lock.
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        /// Who takes it.
        owner: String,
    },
    /// Tag 5: release lock `name` held by `owner`.
    Unlock {
        /// The lock.
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        /// Who releases it.
        owner: String,
    },
    /// Tag 6: if every compare holds, apply `success`, else `failure`, as
    /// one command at one revision.
    Txn {
        /// All must hold for `success` to apply.
        compares: Vec<Compare>,
        /// Applied, in order, if every compare holds.
        success: Vec<TxnOp>,
        /// Applied, in order, otherwise.
        failure: Vec<TxnOp>,
    },
    /// Tag 7: the keys starting with `prefix`, in key order, from after
    /// `after` (the last key of the previous page) on (through the log:
    /// linearizable).
    List {
        /// The prefix (empty: every key).
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        /// Start after this key (`None`: from the first).
        #[serde(with = "serde_bytes")]
        after: Option<Vec<u8>>,
        /// At most this many entries (0, or above [`MAX_LIST_ENTRIES`]:
        /// that many); a page also stops at [`KvLimits::list_page_bytes`].
        limit: u32,
        /// Leave the values out.
        keys_only: bool,
    },
    /// Tag 8: the changes to keys under `prefix` from revision `from` on
    /// (0: from now), from the recent history the store keeps, whole
    /// revisions at a time (for watchers; usually asked as a query).
    Changes {
        /// The prefix (empty: every key).
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        /// The first revision wanted.
        from: u64,
        /// At most about this many changes (0, or above
        /// [`MAX_LIST_ENTRIES`]: that many); a revision is never split.
        limit: u32,
    },
    /// Tag 9: start a lease of `ttl_ms` milliseconds of the log's clock;
    /// its id is this command's revision.
    Grant {
        /// Its time to live.
        ttl_ms: u64,
    },
    /// Tag 10: restart lease `lease`'s TTL.
    KeepAlive {
        /// The lease.
        lease: u64,
    },
    /// Tag 11: end lease `lease` now: its keys are deleted and its locks
    /// released.
    Revoke {
        /// The lease.
        lease: u64,
    },
    /// Tag 12: set `key` to `value`, attached to `lease` (deleted when it
    /// ends). A plain put on the key later detaches it.
    PutLeased {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// The lease.
        lease: u64,
    },
    /// Tag 13: take lock `name` for `owner`, bound to `lease` (released
    /// when it ends); if it is held and `wait`, join its queue.
    Acquire {
        /// The lock.
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        /// Who takes it.
        owner: String,
        /// The lease it is bound to.
        lease: u64,
        /// Queue for it if held.
        wait: bool,
    },
    /// Tag 14: lease `lease`'s TTL and what is left of it (a read).
    LeaseInfo {
        /// The lease.
        lease: u64,
    },
    /// Tag 15: lock `name`'s holder and queue (a read).
    LockInfo {
        /// The lock.
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
    },
}

/// The most entries one `List` page returns.
pub const MAX_LIST_ENTRIES: u32 = 10_000;

/// The answer to a [`KvCommand`]. Tags are wire tags: never reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// Tag 0: a put, delete or compare-and-set took effect.
    Done,
    /// Tag 1: the value of a key.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Tag 2: the key does not exist.
    NotFound,
    /// Tag 3: compare-and-set refused; this is the current value.
    CasFailed {
        /// The current value (`None`: absent).
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
    },
    /// Tag 4: the lock is yours, with this fencing token.
    Granted {
        /// Fencing token: grows with every grant.
        token: u64,
    },
    /// Tag 5: someone else holds the lock.
    Held {
        /// The holder.
        owner: String,
        /// The holder's fencing token.
        token: u64,
    },
    /// Tag 6: the lock was released.
    Unlocked,
    /// Tag 7: unlock refused: the lock is not yours.
    NotOwner {
        /// The holder, if any.
        owner: Option<String>,
    },
    /// Tag 8: a key or value exceeds its limit.
    TooLarge {
        /// "key" or "value".
        what: String,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Tag 9: the command's payload is not a `KvCommand`.
    Malformed(String),
    /// Tag 10: a transaction was applied at `revision`; `succeeded` says
    /// whether its compares held (and `success` ran) or not (`failure` ran).
    Txn {
        /// Whether every compare held.
        succeeded: bool,
        /// The transaction's revision.
        revision: u64,
    },
    /// Tag 11: one page of a listing, read at `revision`.
    Entries {
        /// The entries, in key order.
        entries: Vec<ListEntry>,
        /// Whether more keys match after the last one (ask again with
        /// `after` set to it).
        more: bool,
        /// The revision the page was read at.
        revision: u64,
    },
    /// Tag 12: changes in revision order, and the revision to ask from next.
    Changes {
        /// The changes, whole revisions.
        changes: Vec<Change>,
        /// Ask from this revision next.
        next: u64,
        /// Whether more changes were already applied after these.
        more: bool,
    },
    /// Tag 13: the history no longer holds the revision asked from: the
    /// oldest complete one is `horizon`. List again, then watch from the
    /// listing's revision + 1.
    Compacted {
        /// The oldest revision the history still holds whole.
        horizon: u64,
    },
    /// Tag 14: a live lease.
    Lease {
        /// Its id.
        id: u64,
        /// Its time to live, in milliseconds.
        ttl_ms: u64,
        /// Milliseconds of the log's clock left before it expires.
        remaining_ms: u64,
    },
    /// Tag 15: no such lease (it expired, was revoked, or never was).
    NoLease {
        /// The lease asked for.
        id: u64,
    },
    /// Tag 16: the lock is held; the acquirer waits at `position` (1:
    /// next) and is granted it, with a new token, when its turn comes.
    Queued {
        /// Its place in the queue, from 1.
        position: u32,
        /// The holder now.
        holder: String,
        /// The holder's fencing token.
        token: u64,
    },
    /// Tag 17: a lock's state.
    LockState {
        /// The holder (`None`: free).
        holder: Option<String>,
        /// The holder's fencing token (0: free).
        token: u64,
        /// The holder's lease (0: none).
        lease: u64,
        /// Who waits, in order.
        waiters: Vec<String>,
    },
}

impl KvCommand {
    /// Whether the command is well formed: a key (or lock name) and a lock
    /// owner are never empty. Clients check before submitting; the state
    /// machine applies what the log holds, unchanged, so logs written
    /// before this check replay as they did.
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            KvCommand::Put { key, .. }
            | KvCommand::Get { key }
            | KvCommand::Delete { key }
            | KvCommand::Cas { key, .. }
                if key.is_empty() =>
            {
                Err("the key is empty")
            }
            KvCommand::PutLeased { key, .. } if key.is_empty() => Err("the key is empty"),
            KvCommand::Lock { name, .. }
            | KvCommand::Unlock { name, .. }
            | KvCommand::Acquire { name, .. }
            | KvCommand::LockInfo { name }
                if name.is_empty() =>
            {
                Err("the lock name is empty")
            }
            KvCommand::Lock { owner, .. }
            | KvCommand::Unlock { owner, .. }
            | KvCommand::Acquire { owner, .. }
                if owner.trim().is_empty() =>
            {
                Err("the lock owner is empty")
            }
            KvCommand::Grant { ttl_ms: 0 } => Err("the lease TTL is zero"),
            KvCommand::PutLeased { lease: 0, .. } | KvCommand::Acquire { lease: 0, .. } => {
                Err("lease 0 is no lease")
            }
            KvCommand::Txn {
                compares,
                success,
                failure,
            } => txn::check(compares, success, failure),
            _ => Ok(()),
        }
    }

    /// The bytes to submit as a command payload.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding into a Vec cannot fail")
    }
}

impl KvResponse {
    /// Decode a response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// The bytes of this response, as a learner answers a command. Most
    /// responses are a few bytes: one allocation that fits them, not a
    /// Vec grown byte by byte from empty (every learner encodes one per
    /// command).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, Vec::with_capacity(32)).expect("encoding into a Vec cannot fail")
    }
}

/// Size limits, identical on every learner (they are part of
/// determinism). The `synod` binary reads them from the `[kv]` section of
/// its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvLimits {
    /// Longest key (and lock name), in bytes.
    pub max_key_len: usize,
    /// Longest value, in bytes.
    pub max_value_len: usize,
    /// Responses kept per client for retries.
    pub responses_per_client: usize,
    /// Clients kept in the client table.
    pub max_clients: usize,
    /// Most compares, and most operations in each branch, of one
    /// transaction.
    pub max_txn_ops: usize,
    /// Changes kept for watchers.
    pub watch_history: usize,
    /// Bytes of keys and values those changes may hold.
    pub watch_history_bytes: usize,
    /// Most live leases.
    pub max_leases: usize,
    /// Longest lease TTL, in milliseconds.
    pub max_lease_ttl_ms: u64,
    /// Most acquirers waiting for one lock.
    pub max_lock_waiters: usize,
}

/// Bytes a key/value command adds to its key and value (tags, lengths).
const COMMAND_HEADROOM: usize = 64;

impl KvLimits {
    /// The longest encoded command these limits allow: a compare-and-set
    /// carries a key and two values.
    pub fn largest_command(&self) -> usize {
        self.max_value_len
            .saturating_mul(2)
            .saturating_add(self.max_key_len)
            .saturating_add(COMMAND_HEADROOM)
    }

    /// The bytes of keys and values one `List` page holds at most (it
    /// always holds at least one entry): one largest key and value, so a
    /// page is never larger than the largest `Get` answer.
    pub fn list_page_bytes(&self) -> usize {
        self.max_value_len
            .saturating_add(self.max_key_len)
            .max(64 * 1024)
    }
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_key_len: 1024,
            max_value_len: 1024 * 1024,
            responses_per_client: 128,
            max_clients: 100_000,
            max_txn_ops: 128,
            watch_history: 100_000,
            watch_history_bytes: 16 * 1024 * 1024,
            max_leases: 100_000,
            max_lease_ttl_ms: 24 * 60 * 60 * 1000,
            max_lock_waiters: 1024,
        }
    }
}

/// A key's value and history.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    /// The revision that created the key.
    created: u64,
    /// The revision that last changed it.
    modified: u64,
    /// Changes since it was created (1 after the first put).
    version: u64,
    /// The lease it is attached to (0: none).
    lease: u64,
}

impl Entry {
    /// A key restored from a snapshot written before revisions were kept.
    fn before_revisions(value: Vec<u8>) -> Self {
        Self {
            value,
            created: 0,
            modified: 0,
            version: 1,
            lease: 0,
        }
    }
}

/// The key/value state machine.
#[derive(Debug)]
pub struct KvStore {
    limits: KvLimits,
    data: KeyMap<Entry>,
    locks: BTreeMap<Vec<u8>, LockRecord>,
    /// Commands applied so far: the log-order clock for revisions, tokens
    /// and eviction.
    applied: u64,
    clients: ClientTable,
    /// Recent changes, for watchers.
    history: History,
    /// Live leases and the log's clock.
    leases: Leases,
}

impl Default for KvStore {
    fn default() -> Self {
        Self::new(KvLimits::default())
    }
}

impl KvStore {
    /// An empty store with `limits`.
    pub fn new(limits: KvLimits) -> Self {
        Self {
            limits,
            data: KeyMap::default(),
            locks: BTreeMap::new(),
            applied: 0,
            clients: ClientTable::new(limits.responses_per_client, limits.max_clients),
            history: History::new(limits.watch_history, limits.watch_history_bytes),
            leases: Leases::default(),
        }
    }

    /// Read `key` from this replica's state without going through the log.
    /// May be stale: only for callers that opted into stale reads.
    pub fn read_local(&self, key: &[u8]) -> Option<&[u8]> {
        self.data.get(key).map(|entry| entry.value.as_slice())
    }

    /// The revision of the last command applied.
    pub fn revision(&self) -> u64 {
        self.applied
    }

    /// Number of live leases.
    pub fn leases(&self) -> usize {
        self.leases.len()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn execute(&mut self, command: KvCommand) -> KvResponse {
        if let Some(too_large) = self.check_limits(&command) {
            return too_large;
        }
        match command {
            KvCommand::Put { key, value } => {
                self.set(key, value);
                KvResponse::Done
            }
            read @ (KvCommand::Get { .. }
            | KvCommand::List { .. }
            | KvCommand::Changes { .. }
            | KvCommand::LeaseInfo { .. }
            | KvCommand::LockInfo { .. }) => self.answer_read(read),
            KvCommand::Delete { key } => match self.remove(key) {
                true => KvResponse::Done,
                false => KvResponse::NotFound,
            },
            KvCommand::Cas { key, expected, new } => {
                let current = self.read_local(&key);
                if current != expected.as_deref() {
                    return KvResponse::CasFailed {
                        current: current.map(<[u8]>::to_vec),
                    };
                }
                self.set(key, new);
                KvResponse::Done
            }
            KvCommand::Lock { name, owner } => self.lock(name, owner),
            KvCommand::Unlock { name, owner } => self.unlock(&name, &owner),
            KvCommand::Txn {
                compares,
                success,
                failure,
            } => self.transaction(&compares, success, failure),
            KvCommand::Grant { ttl_ms } => self.grant(ttl_ms),
            KvCommand::KeepAlive { lease } => match self.leases.keep_alive(lease) {
                Some(kept) => KvResponse::Lease {
                    id: lease,
                    ttl_ms: kept.ttl,
                    remaining_ms: kept.ttl,
                },
                None => KvResponse::NoLease { id: lease },
            },
            KvCommand::Revoke { lease } => match self.leases.remove(lease) {
                Some(ended) => {
                    self.end_lease(lease, ended);
                    KvResponse::Done
                }
                None => KvResponse::NoLease { id: lease },
            },
            KvCommand::PutLeased { key, value, lease } => {
                if self.leases.get(lease).is_none() {
                    return KvResponse::NoLease { id: lease };
                }
                self.set_attached(key, value, lease);
                KvResponse::Done
            }
            KvCommand::Acquire {
                name,
                owner,
                lease,
                wait,
            } => self.acquire(name, owner, lease, wait),
        }
    }

    /// Start a lease; its id is this revision.
    fn grant(&mut self, ttl_ms: u64) -> KvResponse {
        if let Some(full) = too_large("leases", self.leases.len() + 1, self.limits.max_leases) {
            return full;
        }
        let id = self.applied;
        self.leases.grant(id, ttl_ms);
        KvResponse::Lease {
            id,
            ttl_ms,
            remaining_ms: ttl_ms,
        }
    }

    /// Lease `id` ended (revoked or expired): delete its keys and give up
    /// its locks, at the current revision.
    fn end_lease(&mut self, id: u64, lease: lease::Lease) {
        for key in lease.keys {
            if self.data.get(&key).is_some_and(|entry| entry.lease == id) {
                self.remove(key);
            }
        }
        for (name, owner) in lease.locks {
            self.drop_claim(&name, &owner, id);
        }
    }

    /// Set `key` to `value`, attached to no lease, at the current revision.
    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set_attached(key, value, 0);
    }

    /// Set `key` to `value`, attached to `lease` (0: none), at the current
    /// revision.
    fn set_attached(&mut self, key: Vec<u8>, value: Vec<u8>, lease: u64) {
        let revision = self.applied;
        // The history takes `key` and `value`; the map copies them, into
        // the buffer it already has when the key exists.
        let before = match self.data.get_mut(&key) {
            Some(entry) => {
                entry.value.clone_from(&value);
                entry.modified = revision;
                entry.version += 1;
                std::mem::replace(&mut entry.lease, lease)
            }
            None => {
                let entry = Entry {
                    value: value.clone(),
                    created: revision,
                    modified: revision,
                    version: 1,
                    lease,
                };
                self.data.insert(&key, entry);
                0
            }
        };
        if before != lease {
            self.detach(before, &key);
            if let Some(attached) = self.leases.get_mut(lease) {
                attached.keys.insert(key.clone());
            }
        }
        self.history.record(Change {
            revision,
            key,
            value: Some(value),
        });
    }

    /// Remove `key` at the current revision; false if it was absent.
    fn remove(&mut self, key: Vec<u8>) -> bool {
        let Some(removed) = self.data.remove(&key) else {
            return false;
        };
        self.detach(removed.lease, &key);
        self.history.record(Change {
            revision: self.applied,
            key,
            value: None,
        });
        true
    }

    /// `key` no longer hangs on `lease`.
    fn detach(&mut self, lease: u64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(lease) {
            lease.keys.remove(key);
        }
    }

    fn check_limits(&self, command: &KvCommand) -> Option<KvResponse> {
        let (key, value) = match command {
            KvCommand::Put { key, value } => (key, Some(value)),
            KvCommand::Cas { key, new, .. } => (key, Some(new)),
            KvCommand::Get { key } | KvCommand::Delete { key } => (key, None),
            KvCommand::PutLeased { key, value, .. } => (key, Some(value)),
            KvCommand::LockInfo { name } => (name, None),
            KvCommand::Lock { name, owner }
            | KvCommand::Unlock { name, owner }
            | KvCommand::Acquire { name, owner, .. } => {
                return self
                    .key_too_large(name)
                    .or_else(|| too_large("lock owner", owner.len(), self.limits.max_key_len));
            }
            KvCommand::Grant { ttl_ms } => {
                let (ttl, max) = (*ttl_ms, self.limits.max_lease_ttl_ms);
                let as_len = |ms: u64| usize::try_from(ms).unwrap_or(usize::MAX);
                return too_large("lease TTL", as_len(ttl), as_len(max));
            }
            KvCommand::KeepAlive { .. }
            | KvCommand::Revoke { .. }
            | KvCommand::LeaseInfo { .. } => return None,
            KvCommand::Changes { prefix, .. } => return self.key_too_large(prefix),
            KvCommand::List { prefix, after, .. } => {
                return self
                    .key_too_large(prefix)
                    .or_else(|| after.as_ref().and_then(|after| self.key_too_large(after)));
            }
            KvCommand::Txn {
                compares,
                success,
                failure,
            } => return txn::check_limits(&self.limits, compares, success, failure),
        };
        self.key_too_large(key)
            .or_else(|| value.and_then(|v| too_large("value", v.len(), self.limits.max_value_len)))
    }

    /// A read-only command answered from the current state.
    fn read(&self, request: &[u8]) -> KvResponse {
        let command = match postcard::from_bytes::<KvCommand>(request) {
            Ok(command) => command,
            Err(e) => return KvResponse::Malformed(e.to_string()),
        };
        match self.check_limits(&command) {
            Some(too_large) => too_large,
            None => self.answer_read(command),
        }
    }

    /// The answer to a `Get` or `List`; any other command is refused.
    fn answer_read(&self, command: KvCommand) -> KvResponse {
        match command {
            KvCommand::Get { key } => self
                .read_local(&key)
                .map_or(KvResponse::NotFound, |v| KvResponse::Value(v.to_vec())),
            KvCommand::List {
                prefix,
                after,
                limit,
                keys_only,
            } => self.list(&prefix, after.as_deref(), limit, keys_only),
            KvCommand::Changes {
                prefix,
                from,
                limit,
            } => self.history.since(history::Since {
                prefix: &prefix,
                from,
                limit,
                budget: self.limits.list_page_bytes(),
                applied: self.applied,
            }),
            KvCommand::LeaseInfo { lease } => match self.leases.get(lease) {
                Some(live) => KvResponse::Lease {
                    id: lease,
                    ttl_ms: live.ttl,
                    remaining_ms: self.leases.remaining(live),
                },
                None => KvResponse::NoLease { id: lease },
            },
            KvCommand::LockInfo { name } => self.lock_info(&name),
            _ => KvResponse::Malformed(
                "only get, list, changes, lease info and lock info are served outside the log"
                    .into(),
            ),
        }
    }

    fn key_too_large(&self, key: &[u8]) -> Option<KvResponse> {
        too_large("key", key.len(), self.limits.max_key_len)
    }
}

/// `TooLarge` if `len` is over `limit`.
fn too_large(what: &str, len: usize, limit: usize) -> Option<KvResponse> {
    (len > limit).then(|| KvResponse::TooLarge {
        what: what.into(),
        len,
        limit,
    })
}

impl StateMachine for KvStore {
    fn apply(&mut self, command: &Command) -> Vec<u8> {
        self.applied += 1;
        let response = match postcard::from_bytes::<KvCommand>(&command.payload) {
            Ok(kv) => self.execute(kv),
            Err(e) => KvResponse::Malformed(e.to_string()),
        }
        .encode();
        self.clients
            .record(command.id, self.applied, response.clone());
        response
    }

    /// Count the log's clock on, and end every lease whose time is up, at
    /// a revision of their own (if any ends).
    fn clock(&mut self, stamp: ClockStamp) {
        self.leases.clock.advance(stamp);
        if !self.leases.any_expired() {
            return;
        }
        self.applied += 1;
        while let Some(id) = self.leases.next_expired() {
            let ended = self.leases.remove(id).expect("listed by deadline");
            self.end_lease(id, ended);
        }
    }

    /// `Get` and `List` from the state as applied so far (serializable);
    /// any other command is answered `Malformed`, unapplied.
    fn query(&self, request: &[u8]) -> Option<Vec<u8>> {
        Some(self.read(request).encode())
    }

    fn response_to(&self, id: CommandId) -> Option<Vec<u8>> {
        self.clients.response(id).map(<[u8]>::to_vec)
    }

    /// Keys, locks (with their fencing tokens), the client table and the
    /// applied count: everything later commands and retries depend on.
    fn snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        snapshot::write(self, out)
    }

    /// The same bytes, with the watch history's sealed chunks shared
    /// rather than encoded on the learner's actor.
    fn snapshot_image(&self) -> synod_api::SnapshotImage {
        snapshot::image(self)
    }

    fn restore(&mut self, input: &mut dyn std::io::Read) -> Result<(), SnapshotError> {
        *self = snapshot::read(self, input)?;
        Ok(())
    }
}

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod tests;
