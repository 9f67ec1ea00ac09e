//! The key space: a hash map for what every command does (find one key),
//! beside an ordered index for what listings and snapshots do (walk keys
//! in order). A put to an existing key touches only the hash map; a new or
//! deleted key also updates the index. The hash map hashes with foldhash
//! (randomly seeded per map), which costs a fraction of std's SipHash on
//! short keys: every learner hashes every command's key.
//!
//! A key of up to [`INLINE`] bytes is kept inside the map's slot (and
//! copied into the index), so finding it compares bytes already in the
//! cache line the lookup reads anyway; a longer key is one shared
//! allocation for both. Every learner looks up every command's key, and
//! with keys behind a pointer that second cache miss was a tenth of a
//! node's time at its peak.

use foldhash::quality::RandomState;
use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

/// Longest key kept in place (a [`Key`] is 24 bytes either way).
pub(crate) const INLINE: usize = 22;

/// A key as the map holds it.
#[derive(Clone)]
enum Key {
    /// Up to [`INLINE`] bytes, in place.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A longer key, shared by the map and the index.
    Shared(Arc<[u8]>),
}

impl Key {
    fn new(key: &[u8]) -> Self {
        if key.len() > INLINE {
            return Key::Shared(Arc::from(key));
        }
        let mut bytes = [0; INLINE];
        bytes[..key.len()].copy_from_slice(key);
        Key::Inline {
            len: key.len() as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Shared(key) => key,
        }
    }
}

// Equality, order and hash are the bytes', as `Borrow<[u8]>` requires.
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_bytes().fmt(f)
    }
}

/// Keys to values of type `V`, iterated in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyMap<V> {
    entries: HashMap<Key, V, RandomState>,
    order: BTreeSet<Key>,
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
        let key = Key::new(key);
        self.order.insert(key.clone());
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
        keys: impl Iterator<Item = &'a Key>,
    ) -> impl Iterator<Item = (&'a [u8], &'a V)> {
        keys.map(|key| (key.as_bytes(), &self.entries[key]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn keys_at_the_inline_limit_keep_their_bytes_and_order() {
        let mut map = KeyMap::default();
        let lengths = [0, 1, INLINE - 1, INLINE, INLINE + 1, 4 * INLINE];
        for (i, len) in lengths.iter().enumerate() {
            map.insert(&vec![b'a'; *len], i);
        }
        for (i, len) in lengths.iter().enumerate() {
            assert_eq!(map.get(&vec![b'a'; *len]), Some(&i));
        }
        let walked: Vec<usize> = map.iter().map(|(key, _)| key.len()).collect();
        assert_eq!(walked, lengths, "a prefix sorts first");
        assert!(matches!(Key::new(&[1; INLINE]), Key::Inline { .. }));
        assert!(matches!(Key::new(&[1; INLINE + 1]), Key::Shared(_)));
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut map = KeyMap::default();
        let mut model = BTreeMap::new();
        let mut rng = synod_core::SplitMix64::new(0x2545_f491_4f6c_dd1d);
        for step in 0..20_000u64 {
            let state = rng.next_u64();
            // Short keys are kept in place, long ones shared: both kinds,
            // interleaved in one order.
            let key = match state % 3 {
                0 => format!("k{}-{}", state % 500, "x".repeat(INLINE)),
                _ => format!("k{}", state % 500),
            }
            .into_bytes();
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
