//! The client table: each client's recent responses, for answering retries
//! with the original response. Bounded two ways, deterministically (every
//! learner evicts the same entries): the oldest sequence numbers of a client
//! beyond `per_client`, and the client idle longest (in log order) beyond
//! `max_clients`.

use foldhash::quality::RandomState;
use std::collections::{BTreeSet, HashMap, VecDeque};
use synod_core::CommandId;

/// One client's kept responses, ascending by sequence number. A client
/// numbers its commands upwards, so a response almost always goes at the
/// back and the oldest leaves from the front: no reordering per command.
pub(crate) type Responses = VecDeque<(u64, Vec<u8>)>;

/// Keep `response` to `seq` in order (replacing one already kept for it),
/// then drop the lowest sequence numbers beyond `bound`.
fn keep(responses: &mut Responses, seq: u64, response: Vec<u8>, bound: usize) {
    match responses.back() {
        Some((last, _)) if *last >= seq => {
            match responses.binary_search_by_key(&seq, |(s, _)| *s) {
                Ok(at) => responses[at].1 = response,
                Err(at) => responses.insert(at, (seq, response)),
            }
        }
        _ => responses.push_back((seq, response)),
    }
    while responses.len() > bound {
        responses.pop_front();
    }
}

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
    /// By client id (foldhash, randomly seeded: hashed once per command).
    clients: HashMap<u64, Entry, RandomState>,
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
            clients: HashMap::default(),
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
                responses: Responses::new(),
            }
        });
        entry.last_used = now;
        keep(&mut entry.responses, id.seq, response, self.per_client);
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
        let responses = &self.clients.get(&id.client)?.responses;
        let at = responses.binary_search_by_key(&id.seq, |(s, _)| *s).ok()?;
        Some(&responses[at].1)
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
        let mut kept = Responses::new();
        for (seq, response) in responses {
            keep(&mut kept, seq, response, self.per_client);
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

    #[test]
    fn kept_responses_behave_like_an_ordered_map_of_the_highest_sequence_numbers() {
        // Mostly ascending, with repeats and late arrivals, as retries and
        // resends make them.
        let mut table = ClientTable::new(8, 1);
        let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut rng = synod_core::SplitMix64::new(0x2545_f491_4f6c_dd1d);
        for step in 0..5_000u64 {
            let state = rng.next_u64();
            let seq = match state % 5 {
                0 => step.saturating_sub(state % 20),
                _ => step,
            };
            let response = step.to_be_bytes().to_vec();
            table.record(CommandId { client: 7, seq }, step, response.clone());
            model.insert(seq, response);
            while model.len() > 8 {
                model.pop_first();
            }
            let (_, _, kept) = table.entries()[0];
            let kept: BTreeMap<u64, Vec<u8>> = kept.iter().cloned().collect();
            assert_eq!(kept, model, "at step {step}");
            for probe in seq.saturating_sub(10)..=seq {
                let id = CommandId {
                    client: 7,
                    seq: probe,
                };
                assert_eq!(table.response(id), model.get(&probe).map(Vec::as_slice));
            }
        }
    }
}
