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
use std::sync::Arc;

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

/// Changes per sealed chunk of the history.
const CHUNK: usize = 1024;

/// The changes kept, oldest first, in chunks: every full chunk is sealed
/// and never changes again, so a snapshot takes the history by sharing
/// them (a pointer each) and writes it off the learner's actor. Cloning
/// copies only the open chunk (fewer than [`CHUNK`] changes).
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes {
    /// Full chunks, oldest first.
    sealed: VecDeque<Arc<[Change]>>,
    /// Changes at the front of `sealed[0]` already dropped.
    skip: usize,
    /// The newest changes, fewer than `CHUNK`.
    open: VecDeque<Change>,
    len: usize,
}

impl Changes {
    fn from_vec(changes: Vec<Change>) -> Self {
        let mut chunks = Self::default();
        for change in changes {
            chunks.push_back(change);
        }
        chunks
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn push_back(&mut self, change: Change) {
        self.open.push_back(change);
        self.len += 1;
        if self.open.len() == CHUNK {
            self.sealed.push_back(self.open.drain(..).collect());
        }
    }

    fn front(&self) -> Option<&Change> {
        match self.sealed.front() {
            Some(chunk) => chunk.get(self.skip),
            None => self.open.front(),
        }
    }

    /// Drop the oldest change; its size.
    fn pop_front(&mut self) -> Option<usize> {
        let size = self.front()?.size();
        self.len -= 1;
        match self.sealed.front() {
            Some(chunk) if self.skip + 1 == chunk.len() => {
                self.sealed.pop_front();
                self.skip = 0;
            }
            Some(_) => self.skip += 1,
            None => {
                self.open.pop_front();
            }
        }
        Some(size)
    }

    /// The changes as runs of contiguous memory, oldest first.
    fn slices(&self) -> impl Iterator<Item = &[Change]> {
        let (front, back) = self.open.as_slices();
        let skip = self.skip;
        let sealed = self.sealed.iter().enumerate();
        sealed
            .map(move |(i, chunk)| if i == 0 { &chunk[skip..] } else { &chunk[..] })
            .chain([front, back])
    }

    /// Every change, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Change> {
        self.slices().flatten()
    }

    /// The changes from revision `from` on, oldest first: whole chunks
    /// before it are skipped, the first one kept is found by bisection.
    fn starting_at(&self, from: u64) -> impl Iterator<Item = &Change> {
        self.slices()
            .filter(move |s| s.last().is_some_and(|c| c.revision >= from))
            .flat_map(move |s| &s[s.partition_point(|c| c.revision < from)..])
    }
}

impl PartialEq for Changes {
    /// The same changes, however they are chunked.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Changes {}

/// The recent changes, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct History {
    changes: Changes,
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
            changes: Changes::default(),
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
        self.changes = Changes::from_vec(changes);
        self
    }

    /// The oldest revision still complete.
    pub(crate) fn horizon(&self) -> u64 {
        self.horizon
    }

    /// The changes kept: shared with the history (a clone copies the open
    /// chunk only), for a snapshot to write later.
    pub(crate) fn changes(&self) -> &Changes {
        &self.changes
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
            self.bytes -= self.changes.pop_front().expect("checked above");
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
        let matching = self
            .changes
            .starting_at(ask.from)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain list the chunks must behave like.
    #[derive(Default)]
    struct Model {
        changes: VecDeque<Change>,
        bytes: usize,
        horizon: u64,
    }

    impl Model {
        fn record(&mut self, change: Change, max_changes: usize, max_bytes: usize) {
            self.bytes += change.size();
            self.changes.push_back(change);
            while self.changes.len() > max_changes || self.bytes > max_bytes {
                let oldest = self.changes[0].revision;
                while self.changes.front().is_some_and(|c| c.revision == oldest) {
                    self.bytes -= self.changes.pop_front().unwrap().size();
                }
                self.horizon = oldest + 1;
            }
        }
    }

    /// SplitMix64: reproducible draws without a dependency.
    fn draw(state: &mut u64, below: u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % below
    }

    #[test]
    fn chunked_changes_keep_what_a_plain_list_keeps() {
        let mut state = 7;
        for max_changes in [1, 3, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let max_bytes = 40 * max_changes + draw(&mut state, 2_000) as usize;
            let mut history = History::new(max_changes, max_bytes);
            let mut model = Model {
                horizon: 1,
                ..Model::default()
            };
            let mut revision = 1;
            for _ in 0..5 * CHUNK {
                revision += draw(&mut state, 2); // some revisions change several keys
                let value =
                    (draw(&mut state, 4) > 0).then(|| vec![0; draw(&mut state, 40) as usize]);
                let change = Change {
                    revision,
                    key: format!("k{}", draw(&mut state, 50)).into_bytes(),
                    value,
                };
                history.record(change.clone());
                model.record(change, max_changes, max_bytes);
                assert!(history.changes().iter().eq(model.changes.iter()));
                assert_eq!(history.changes().len(), model.changes.len());
                assert_eq!(
                    (history.bytes, history.horizon),
                    (model.bytes, model.horizon)
                );
                let from = revision.saturating_sub(draw(&mut state, 3 * CHUNK as u64));
                let expected = model.changes.iter().filter(|c| c.revision >= from);
                assert!(
                    history.changes.starting_at(from).eq(expected),
                    "from {from}"
                );
            }
            let copy = history.changes().clone();
            history.record(Change {
                revision: revision + 1,
                key: b"after".to_vec(),
                value: None,
            });
            assert!(
                copy.iter().eq(model.changes.iter()),
                "a clone keeps its changes"
            );
        }
    }
}
