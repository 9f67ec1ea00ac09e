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
//! **Locks** (the seed's mutual exclusion): `Lock { name, owner }` grants a
//! free lock and returns a fencing token, the position of the granting
//! command in the applied sequence, which only grows, so a resource can
//! refuse a stale holder's token. Locks have no expiry (the state machine
//! has no clock); the owner unlocks.
#![deny(missing_docs)]

mod client_table;
mod history;
mod range;
mod snapshot;
mod txn;

pub use history::Change;
pub use range::ListEntry;
pub use txn::{Compare, CompareOp, Target, TxnOp};

use client_table::ClientTable;
use history::History;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use synod_api::{SnapshotError, StateMachine};
use synod_core::{Command, CommandId};

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
            KvCommand::Lock { name, .. } | KvCommand::Unlock { name, .. } if name.is_empty() => {
                Err("the lock name is empty")
            }
            KvCommand::Lock { owner, .. } | KvCommand::Unlock { owner, .. }
                if owner.trim().is_empty() =>
            {
                Err("the lock owner is empty")
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

    /// The bytes of this response, as a learner answers a command.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding into a Vec cannot fail")
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
}

impl Entry {
    /// A key restored from a snapshot written before revisions were kept.
    fn before_revisions(value: Vec<u8>) -> Self {
        Self {
            value,
            created: 0,
            modified: 0,
            version: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LockRecord {
    owner: String,
    token: u64,
}

/// The key/value state machine.
#[derive(Debug)]
pub struct KvStore {
    limits: KvLimits,
    data: BTreeMap<Vec<u8>, Entry>,
    locks: BTreeMap<Vec<u8>, LockRecord>,
    /// Commands applied so far: the log-order clock for revisions, tokens
    /// and eviction.
    applied: u64,
    clients: ClientTable,
    /// Recent changes, for watchers.
    history: History,
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
            data: BTreeMap::new(),
            locks: BTreeMap::new(),
            applied: 0,
            clients: ClientTable::new(limits.responses_per_client, limits.max_clients),
            history: History::new(limits.watch_history, limits.watch_history_bytes),
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
            read @ (KvCommand::Get { .. } | KvCommand::List { .. } | KvCommand::Changes { .. }) => {
                self.answer_read(read)
            }
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
        }
    }

    /// Set `key` to `value` at the current revision.
    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let revision = self.applied;
        // The history takes `key` and `value`; the map copies them, into
        // the buffer it already has when the key exists.
        match self.data.get_mut(&key) {
            Some(entry) => {
                entry.value.clone_from(&value);
                entry.modified = revision;
                entry.version += 1;
            }
            None => {
                let entry = Entry {
                    value: value.clone(),
                    created: revision,
                    modified: revision,
                    version: 1,
                };
                self.data.insert(key.clone(), entry);
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
        if self.data.remove(&key).is_none() {
            return false;
        }
        self.history.record(Change {
            revision: self.applied,
            key,
            value: None,
        });
        true
    }

    fn lock(&mut self, name: Vec<u8>, owner: String) -> KvResponse {
        match self.locks.get(&name) {
            Some(held) if held.owner == owner => KvResponse::Granted { token: held.token },
            Some(held) => KvResponse::Held {
                owner: held.owner.clone(),
                token: held.token,
            },
            None => {
                let token = self.applied;
                self.locks.insert(name, LockRecord { owner, token });
                KvResponse::Granted { token }
            }
        }
    }

    fn unlock(&mut self, name: &[u8], owner: &str) -> KvResponse {
        match self.locks.get(name) {
            Some(held) if held.owner == owner => {
                self.locks.remove(name);
                KvResponse::Unlocked
            }
            held => KvResponse::NotOwner {
                owner: held.map(|h| h.owner.clone()),
            },
        }
    }

    fn check_limits(&self, command: &KvCommand) -> Option<KvResponse> {
        let (key, value) = match command {
            KvCommand::Put { key, value } => (key, Some(value)),
            KvCommand::Cas { key, new, .. } => (key, Some(new)),
            KvCommand::Get { key } | KvCommand::Delete { key } => (key, None),
            KvCommand::Lock { name, .. } | KvCommand::Unlock { name, .. } => (name, None),
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
            _ => KvResponse::Malformed(
                "only get, list and changes are served outside the log".into(),
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

    fn restore(&mut self, input: &mut dyn std::io::Read) -> Result<(), SnapshotError> {
        *self = snapshot::read(self, input)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
