//! The client table: each client's recent responses, for answering retries
//! with the original response. Bounded two ways, deterministically (every
//! learner evicts the same entries): the oldest sequence numbers of a client
//! beyond `per_client`, and the client idle longest (in log order) beyond
//! `max_clients`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use synod_core::CommandId;

/// One client's kept responses, by sequence number.
pub(crate) type Responses = BTreeMap<u64, Vec<u8>>;

#[derive(Debug)]
struct Entry {
    last_used: u64,
    /// Where this client is filed in `idle` (at most `last_used`).
    listed: u64,
    responses: Responses,
}

#[derive(Debug)]
pub(crate) struct ClientTable {
    per_client: usize,
    max_clients: usize,
    clients: HashMap<u64, Entry>,
    /// (listed, client), one entry per client, refiled lazily: only the
    /// front is brought up to date, when a client must be evicted, so
    /// recording a response costs no reordering.
    idle: BTreeSet<(u64, u64)>,
}

impl ClientTable {
    pub(crate) fn new(per_client: usize, max_clients: usize) -> Self {
        Self {
            per_client: per_client.max(1),
            max_clients: max_clients.max(1),
            clients: HashMap::new(),
            idle: BTreeSet::new(),
        }
    }

    /// Remember `response` to `id`, applied at log position `now`.
    pub(crate) fn record(&mut self, id: CommandId, now: u64, response: Vec<u8>) {
        let entry = self.clients.entry(id.client).or_insert_with(|| {
            self.idle.insert((now, id.client));
            Entry {
                last_used: now,
                listed: now,
                responses: BTreeMap::new(),
            }
        });
        entry.last_used = now;
        entry.responses.insert(id.seq, response);
        while entry.responses.len() > self.per_client {
            entry.responses.pop_first();
        }
        self.evict_beyond_bound();
    }

    /// Drop the clients idle longest (ties: the lowest id) while there are
    /// more than `max_clients`. Out-of-date entries at the front of `idle`
    /// are refiled first; each is at most its client's `last_used`, so the
    /// first up-to-date one is the idlest client.
    fn evict_beyond_bound(&mut self) {
        while self.clients.len() > self.max_clients {
            let (listed, client) = self.idle.pop_first().expect("one idle entry per client");
            let entry = self.clients.get_mut(&client).expect("filed clients exist");
            if entry.last_used == listed {
                self.clients.remove(&client);
            } else {
                entry.listed = entry.last_used;
                self.idle.insert((entry.last_used, client));
            }
        }
    }

    /// The response recorded for `id`, if still kept.
    pub(crate) fn response(&self, id: CommandId) -> Option<&[u8]> {
        self.clients
            .get(&id.client)?
            .responses
            .get(&id.seq)
            .map(Vec::as_slice)
    }

    /// Every client with when it was last used and its kept responses, in
    /// client order (a snapshot is the same bytes on every learner).
    pub(crate) fn entries(&self) -> Vec<(u64, u64, &Responses)> {
        let mut entries: Vec<_> = self
            .clients
            .iter()
            .map(|(client, entry)| (*client, entry.last_used, &entry.responses))
            .collect();
        entries.sort_by_key(|(client, _, _)| *client);
        entries
    }

    /// Put back a client read from a snapshot, keeping the table's bounds.
    pub(crate) fn restore(&mut self, client: u64, last_used: u64, responses: Vec<(u64, Vec<u8>)>) {
        let mut kept: Responses = responses.into_iter().collect();
        while kept.len() > self.per_client {
            kept.pop_first();
        }
        let entry = Entry {
            last_used,
            listed: last_used,
            responses: kept,
        };
        if let Some(old) = self.clients.insert(client, entry) {
            self.idle.remove(&(old.listed, client));
        }
        self.idle.insert((last_used, client));
        self.evict_beyond_bound();
    }

    #[cfg(test)]
    pub(crate) fn clients(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn lazy_filing_evicts_exactly_the_idlest_client() {
        // Against a plain model: every client's last use.
        let mut table = ClientTable::new(1, 25);
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for now in 1..5_000u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let client = (state >> 33) % 60;
            table.record(CommandId { client, seq: now }, now, vec![]);
            model.insert(client, now);
            while model.len() > 25 {
                let (&idlest, _) = model.iter().min_by_key(|(c, used)| (**used, **c)).unwrap();
                model.remove(&idlest);
            }
            let kept: BTreeMap<u64, u64> = table
                .entries()
                .into_iter()
                .map(|(client, used, _)| (client, used))
                .collect();
            assert_eq!(kept, model, "at {now}");
        }
    }
}
