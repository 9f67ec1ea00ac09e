//! Ranges: the keys under a prefix, in key order, one bounded page at a
//! time. A page holds at most [`MAX_LIST_ENTRIES`] entries and
//! [`KvLimits::list_page_bytes`](crate::KvLimits::list_page_bytes) of keys
//! and values (at least one entry, so paging always moves on); `more`
//! says to ask again from the last key.

use crate::{Entry, KvResponse, KvStore, MAX_LIST_ENTRIES};
use serde::{Deserialize, Serialize};
use std::ops::Bound;

/// One key of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value (`None` when the listing asked for keys only).
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// Changes since the key was created.
    pub version: u64,
    /// The revision that created the key.
    pub created: u64,
    /// The revision that last changed it.
    pub modified: u64,
}

/// Bytes an entry costs in a page beyond its key and value (its numbers
/// and lengths, encoded).
const ENTRY_OVERHEAD: usize = 40;

impl ListEntry {
    fn new(key: &[u8], entry: &Entry, keys_only: bool) -> Self {
        Self {
            key: key.to_vec(),
            value: (!keys_only).then(|| entry.value.clone()),
            version: entry.version,
            created: entry.created,
            modified: entry.modified,
        }
    }

    fn size(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
    }
}

impl KvStore {
    /// One page of the keys starting with `prefix`, after `after`.
    pub(crate) fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
        keys_only: bool,
    ) -> KvResponse {
        let limit = match limit {
            0 => MAX_LIST_ENTRIES,
            n => n.min(MAX_LIST_ENTRIES),
        } as usize;
        let budget = self.limits.list_page_bytes();
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut matching = self
            .data
            .range_from(start)
            .take_while(|(key, _)| key.starts_with(prefix));
        let mut entries = Vec::new();
        let mut bytes = 0;
        let more = loop {
            let Some((key, entry)) = matching.next() else {
                break false;
            };
            let listed = ListEntry::new(key, entry, keys_only);
            let full = entries.len() == limit || bytes + listed.size() > budget;
            if full && !entries.is_empty() {
                break true;
            }
            bytes += listed.size();
            entries.push(listed);
        };
        KvResponse::Entries {
            entries,
            more,
            revision: self.applied,
        }
    }
}
