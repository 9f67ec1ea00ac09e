//! Transactions: compares on keys, then one list of puts and deletes or
//! another, applied as one command at one revision (etcd's `txn`).
//!
//! A key that does not exist has version, created and modified revision 0,
//! so `Version Equal 0` asks for absence and `Version Greater 0` for
//! existence; a value compare on an absent key never holds.

use crate::{Entry, KvLimits, KvResponse, KvStore, too_large};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// One condition of a transaction. Tags are wire and log tags: never
/// reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key compared.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// How the key's field relates to the target.
    pub op: CompareOp,
    /// The field compared, and the value it is compared with.
    pub target: Target,
}

/// How a key's field must relate to a compare's target. Tags are wire
/// and log tags: never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// Tag 0: the field equals the target.
    Equal,
    /// Tag 1: the field differs from the target.
    NotEqual,
    /// Tag 2: the field is below the target (values: bytewise).
    Less,
    /// Tag 3: the field is above the target (values: bytewise).
    Greater,
}

/// The field a compare reads, with the value it is compared with. Tags
/// are wire and log tags: never reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Tag 0: the value (never holds for an absent key).
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Tag 1: the version: changes since the key was created (0: absent).
    Version(u64),
    /// Tag 2: the revision that created the key (0: absent).
    Created(u64),
    /// Tag 3: the revision that last changed the key (0: absent).
    Modified(u64),
}

/// A write in a transaction branch. Tags are wire and log tags: never
/// reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Tag 0: set `key` to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Tag 1: remove `key` (nothing if absent).
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

impl TxnOp {
    fn key(&self) -> &[u8] {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

impl Compare {
    /// Whether the compare holds against `entry` (`None`: the key is absent).
    fn holds(&self, entry: Option<&Entry>) -> bool {
        let ordering = match (&self.target, entry) {
            (Target::Value(_), None) => return false,
            (Target::Value(value), Some(entry)) => entry.value.as_slice().cmp(value.as_slice()),
            (Target::Version(n), entry) => entry.map_or(0, |e| e.version).cmp(n),
            (Target::Created(n), entry) => entry.map_or(0, |e| e.created).cmp(n),
            (Target::Modified(n), entry) => entry.map_or(0, |e| e.modified).cmp(n),
        };
        match self.op {
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
            CompareOp::Less => ordering == Ordering::Less,
            CompareOp::Greater => ordering == Ordering::Greater,
        }
    }
}

/// A transaction's keys are never empty.
pub(crate) fn check(
    compares: &[Compare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Result<(), &'static str> {
    let mut keys = compares
        .iter()
        .map(|c| c.key.as_slice())
        .chain(success.iter().chain(failure).map(TxnOp::key));
    if keys.any(<[u8]>::is_empty) {
        return Err("a key in the transaction is empty");
    }
    Ok(())
}

/// `TooLarge` for a transaction with too many compares or operations, or
/// a key or value over its limit.
pub(crate) fn check_limits(
    limits: &KvLimits,
    compares: &[Compare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Option<KvResponse> {
    let counts = [
        ("compares", compares.len()),
        ("success operations", success.len()),
        ("failure operations", failure.len()),
    ];
    let counted = counts
        .into_iter()
        .find_map(|(what, n)| too_large(what, n, limits.max_txn_ops));
    let mut keys = compares
        .iter()
        .map(|c| c.key.as_slice())
        .chain(success.iter().chain(failure).map(TxnOp::key));
    let values = compares
        .iter()
        .filter_map(|c| match &c.target {
            Target::Value(value) => Some(value),
            _ => None,
        })
        .chain(success.iter().chain(failure).filter_map(|op| match op {
            TxnOp::Put { value, .. } => Some(value),
            TxnOp::Delete { .. } => None,
        }));
    counted
        .or_else(|| keys.find_map(|k| too_large("key", k.len(), limits.max_key_len)))
        .or_else(|| {
            let mut values = values;
            values.find_map(|v| too_large("value", v.len(), limits.max_value_len))
        })
}

impl KvStore {
    /// Apply `success` if every compare holds, `failure` otherwise.
    pub(crate) fn transaction(
        &mut self,
        compares: &[Compare],
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> KvResponse {
        let succeeded = compares.iter().all(|c| c.holds(self.data.get(&c.key)));
        let branch = if succeeded { success } else { failure };
        for op in branch {
            match op {
                TxnOp::Put { key, value } => self.set(key, value),
                TxnOp::Delete { key } => {
                    self.remove(key);
                }
            }
        }
        KvResponse::Txn {
            succeeded,
            revision: self.applied,
        }
    }
}
