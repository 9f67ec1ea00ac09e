//! The recent changes to keys, for watchers: every put and delete with its
//! revision, oldest first, bounded by `kv.watch_history` changes and
//! `kv.watch_history_bytes`. Part of the state (and of snapshots), so
//! every learner keeps the same changes and a watcher can resume on any
//! node from the revision after the last one it saw.
//!
//! Trimming drops whole revisions (a transaction's changes go together);
//! `horizon` is the oldest revision still complete. A watcher asking from
//! before it gets `Compacted` and must list again.

use crate::{KvResponse, MAX_LIST_ENTRIES};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The revision of the command that made it.
    pub revision: u64,
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The new value (`None`: the key was deleted).
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// Bytes a change costs beyond its key and value.
const CHANGE_OVERHEAD: usize = 32;

impl Change {
    fn size(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len) + CHANGE_OVERHEAD
    }
}

/// The recent changes, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct History {
    changes: VecDeque<Change>,
    bytes: usize,
    /// Every change from this revision on is kept.
    horizon: u64,
    max_changes: usize,
    max_bytes: usize,
}

/// What `History::since` is asked for.
pub(crate) struct Since<'a> {
    pub prefix: &'a [u8],
    pub from: u64,
    pub limit: u32,
    pub budget: usize,
    pub applied: u64,
}

impl History {
    pub(crate) fn new(max_changes: usize, max_bytes: usize) -> Self {
        Self {
            changes: VecDeque::new(),
            bytes: 0,
            horizon: 1,
            max_changes,
            max_bytes,
        }
    }

    /// A history restored from a snapshot: `changes` from `horizon` on.
    pub(crate) fn restored(mut self, horizon: u64, changes: Vec<Change>) -> Self {
        self.horizon = horizon;
        self.bytes = changes.iter().map(Change::size).sum();
        self.changes = changes.into();
        self
    }

    /// The oldest revision still complete.
    pub(crate) fn horizon(&self) -> u64 {
        self.horizon
    }

    pub(crate) fn changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.changes.len()
    }

    /// Keep `change`, then drop the oldest revisions past the bounds.
    pub(crate) fn record(&mut self, change: Change) {
        self.bytes += change.size();
        self.changes.push_back(change);
        while self.changes.len() > self.max_changes || self.bytes > self.max_bytes {
            self.drop_oldest_revision();
        }
    }

    fn drop_oldest_revision(&mut self) {
        let Some(oldest) = self.changes.front().map(|c| c.revision) else {
            return;
        };
        while self.changes.front().is_some_and(|c| c.revision == oldest) {
            let dropped = self.changes.pop_front().expect("checked above");
            self.bytes -= dropped.size();
        }
        self.horizon = oldest + 1;
    }

    /// The changes under `prefix` from revision `from` on (0: from now),
    /// whole revisions only, within `limit` changes and `budget` bytes (at
    /// least one revision).
    pub(crate) fn since(&self, ask: Since<'_>) -> KvResponse {
        let now = ask.applied + 1;
        if ask.from == 0 || ask.from >= now {
            return KvResponse::Changes {
                changes: Vec::new(),
                next: ask.from.max(now),
                more: false,
            };
        }
        if ask.from < self.horizon {
            return KvResponse::Compacted {
                horizon: self.horizon,
            };
        }
        let limit = match ask.limit {
            0 => MAX_LIST_ENTRIES,
            n => n.min(MAX_LIST_ENTRIES),
        } as usize;
        let start = self.changes.partition_point(|c| c.revision < ask.from);
        let matching = self
            .changes
            .range(start..)
            .filter(|c| c.key.starts_with(ask.prefix));
        let mut changes: Vec<Change> = Vec::new();
        let mut bytes = 0;
        for change in matching {
            let starts_revision = changes.last().is_none_or(|c| c.revision != change.revision);
            let full = changes.len() >= limit || bytes + change.size() > ask.budget;
            if starts_revision && full && !changes.is_empty() {
                let next = changes.last().map_or(now, |c| c.revision + 1);
                return KvResponse::Changes {
                    changes,
                    next,
                    more: true,
                };
            }
            bytes += change.size();
            changes.push(change.clone());
        }
        KvResponse::Changes {
            changes,
            next: now,
            more: false,
        }
    }
}
