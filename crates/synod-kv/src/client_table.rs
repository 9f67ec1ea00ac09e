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
    responses: Responses,
}

#[derive(Debug)]
pub(crate) struct ClientTable {
    per_client: usize,
    max_clients: usize,
    clients: HashMap<u64, Entry>,
    /// (last_used, client), oldest first.
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
        let entry = self.clients.entry(id.client).or_insert_with(|| Entry {
            last_used: now,
            responses: BTreeMap::new(),
        });
        self.idle.remove(&(entry.last_used, id.client));
        entry.last_used = now;
        self.idle.insert((now, id.client));
        entry.responses.insert(id.seq, response);
        while entry.responses.len() > self.per_client {
            entry.responses.pop_first();
        }
        while self.clients.len() > self.max_clients {
            let (_, client) = self.idle.pop_first().expect("one idle entry per client");
            self.clients.remove(&client);
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
        if let Some(old) = self.clients.insert(
            client,
            Entry {
                last_used,
                responses: kept,
            },
        ) {
            self.idle.remove(&(old.last_used, client));
        }
        self.idle.insert((last_used, client));
        while self.clients.len() > self.max_clients {
            let (_, evicted) = self.idle.pop_first().expect("one idle entry per client");
            self.clients.remove(&evicted);
        }
    }

    #[cfg(test)]
    pub(crate) fn clients(&self) -> usize {
        self.clients.len()
    }
}
