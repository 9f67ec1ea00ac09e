//! The key space: a hash map for what every command does (find one key),
//! beside an ordered index for what listings and snapshots do (walk keys
//! in order). A put to an existing key touches only the hash map; a new or
//! deleted key also updates the index. Both share one allocation per key.
//! The hash map hashes with foldhash (randomly seeded per map), which
//! costs a fraction of std's SipHash on short keys: every learner hashes
//! every command's key.

use foldhash::quality::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// Keys to values of type `V`, iterated in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyMap<V> {
    entries: HashMap<Arc<[u8]>, V, RandomState>,
    order: BTreeSet<Arc<[u8]>>,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::default(),
            order: BTreeSet::new(),
        }
    }
}

impl<V> KeyMap<V> {
    pub(crate) fn get(&self, key: &[u8]) -> Option<&V> {
        self.entries.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        self.entries.get_mut(key)
    }

    /// Set `key` to `value`, returning the value it replaces.
    pub(crate) fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        if let Some(slot) = self.entries.get_mut(key) {
            return Some(std::mem::replace(slot, value));
        }
        let key: Arc<[u8]> = Arc::from(key);
        self.order.insert(Arc::clone(&key));
        self.entries.insert(key, value);
        None
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<V> {
        let value = self.entries.remove(key)?;
        self.order.remove(key);
        Some(value)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key and value, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.ordered(self.order.iter())
    }

    /// The keys from `start` on and their values, in key order.
    pub(crate) fn range_from<'a>(
        &'a self,
        start: Bound<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a V)> {
        self.ordered(self.order.range::<[u8], _>((start, Bound::Unbounded)))
    }

    fn ordered<'a>(
        &'a self,
        keys: impl Iterator<Item = &'a Arc<[u8]>>,
    ) -> impl Iterator<Item = (&'a [u8], &'a V)> {
        keys.map(|key| (&**key, &self.entries[&**key]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut map = KeyMap::default();
        let mut model = BTreeMap::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..20_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = format!("k{}", state % 500).into_bytes();
            match state % 4 {
                0 => assert_eq!(map.remove(&key), model.remove(&key)),
                _ => assert_eq!(map.insert(&key, step), model.insert(key.clone(), step)),
            }
            assert_eq!(map.get(&key), model.get(&key));
        }
        assert_eq!(map.len(), model.len());
        let ordered: Vec<(&[u8], &u64)> = map.iter().collect();
        let expected: Vec<(&[u8], &u64)> = model.iter().map(|(k, v)| (&k[..], v)).collect();
        assert_eq!(ordered, expected);
        let from: Vec<&[u8]> = map
            .range_from(Bound::Excluded(b"k3"))
            .map(|(k, _)| k)
            .collect();
        let model_from: Vec<&[u8]> = model
            .range::<[u8], _>((Bound::Excluded(&b"k3"[..]), Bound::Unbounded))
            .map(|(k, _)| &k[..])
            .collect();
        assert_eq!(from, model_from);
    }
}
