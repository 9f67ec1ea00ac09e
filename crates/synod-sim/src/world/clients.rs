//! The simulated clients: each opens a session, then issues one command at
//! a time in it, retrying (same id) until a learner applies it. A command
//! refused because its session expired was not applied anywhere (session
//! ids are never reused, and every learner forgets the same sessions at
//! the same slot), so the client opens a new session and submits it again
//! under a new id.

use super::{CLIENT_RETRY, Event, World};
use rand::Rng;
use synod_core::{Command, CommandId, OPEN_SESSION};

impl World {
    pub(super) fn client_send(&mut self, client_id: u64) {
        if self.healed_at.is_none() {
            self.next_command(client_id);
        }
    }

    /// The client's next command: submitted once it has a session, and
    /// retried until answered.
    pub(super) fn next_command(&mut self, client_id: u64) {
        let client = self.clients.get_mut(&client_id).expect("exists");
        client.seq += 1;
        client.answered = false;
        client.in_flight = None;
        let seq = client.seq;
        let payload = match self.options.leases {
            true => self.lease_payload(client_id),
            false => format!("c{client_id}-{seq}").into_bytes(),
        };
        self.clients.get_mut(&client_id).expect("exists").payload = payload;
        self.send_current(client_id);
        let retry = Event::ClientRetry {
            client: client_id,
            seq,
        };
        self.schedule(self.now + CLIENT_RETRY, retry);
    }

    pub(super) fn client_retry(&mut self, client_id: u64, seq: u64) {
        let client = self.clients.get_mut(&client_id).expect("exists");
        if client.seq != seq || client.answered {
            return;
        }
        if self.options.resubmit_on_timeout {
            client.in_flight = None; // the negative control: a new id
        }
        self.send_current(client_id);
        let wait = CLIENT_RETRY + self.rng.random_range(0..CLIENT_RETRY);
        let retry = Event::ClientRetry {
            client: client_id,
            seq,
        };
        self.schedule(self.now + wait, retry);
    }

    /// Submit (or resubmit) the current command; without a session, ask
    /// for one first (its nonce is the client's number).
    fn send_current(&mut self, client_id: u64) {
        let client = self.clients.get_mut(&client_id).expect("exists");
        let Some(session) = client.session else {
            let open = Command {
                id: CommandId {
                    client: client_id,
                    seq: OPEN_SESSION,
                },
                payload: Vec::new(),
            };
            self.checkers
                .validity
                .proposed_command(open.id, &open.payload);
            self.submit(open);
            return;
        };
        let id = *client.in_flight.get_or_insert_with(|| {
            client.session_seq += 1;
            CommandId {
                client: session,
                seq: client.session_seq,
            }
        });
        let command = Command {
            id,
            payload: client.payload.clone(),
        };
        if self.submitted.insert(id) {
            self.checkers
                .validity
                .proposed_command(id, &command.payload);
        }
        self.submit(command);
    }

    /// A learner opened `session` for the open command `open`: the first
    /// one the client hears of is its session; later copies go unused.
    pub(super) fn session_opened(&mut self, open: CommandId, session: u64) {
        let Some(client) = self.clients.get_mut(&open.client) else {
            return;
        };
        if client.session.is_some() || self.sessions.contains_key(&session) {
            return;
        }
        client.session = Some(session);
        client.session_seq = 0;
        self.sessions.insert(session, open.client);
        if client.seq > 0 && !client.answered {
            self.send_current(open.client);
        }
    }

    /// Command `id` was refused: its session is unknown or expired.
    pub(super) fn session_expired(&mut self, id: CommandId) {
        let Some(&client_id) = self.sessions.get(&id.client) else {
            return;
        };
        let client = self.clients.get_mut(&client_id).expect("exists");
        if client.in_flight != Some(id) || client.answered {
            return;
        }
        // Never applied, and never will be: it is no longer owed.
        self.submitted.remove(&id);
        self.expiries += 1;
        client.in_flight = None;
        if client.session == Some(id.client) {
            client.session = None;
        }
        self.send_current(client_id);
    }

    /// A learner applied `id` (and answered `response`, under the lease
    /// workload): its client gets the answer and, while faults are still
    /// on, thinks a little and sends its next command.
    pub(super) fn answer(&mut self, id: CommandId, response: Option<&[u8]>) {
        let Some(&client_id) = self.sessions.get(&id.client) else {
            return;
        };
        let client = self.clients.get_mut(&client_id).expect("exists");
        if client.in_flight != Some(id) || client.answered {
            return;
        }
        client.answered = true;
        if let Some(response) = response {
            self.lease_answered(client_id, response);
        }
        let client = self.clients.get_mut(&client_id).expect("exists");
        if std::mem::take(&mut client.final_write_due) {
            self.schedule(self.now, Event::FinalWrite { client: client_id });
        } else if self.healed_at.is_none() {
            let think = self.rng.random_range(0..50);
            let next = Event::ClientSend { client: client_id };
            self.schedule(self.now + think, next);
        }
    }
}
