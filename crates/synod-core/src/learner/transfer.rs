//! Catch-up by snapshot: a learner whose next slot a peer has compacted
//! away fetches that peer's snapshot, chunk by chunk, then catches up the
//! tail from the log.
//!
//! ```text
//! CatchUp(from) ──▶ peer: from < its base ──▶ SnapshotOffer(upto)
//! SnapshotRequest(upto, 0) ──▶ SnapshotChunk(upto, 0, total, bytes) ──▶ stage
//! SnapshotRequest(upto, n) ──▶ …                      last chunk ──▶ host verifies,
//!                                                      restores, calls install(upto)
//! ```
//!
//! One request is outstanding at a time and the next is sent only once a
//! chunk was handed to the host (flow control: the receiver's disk sets the
//! pace). A lost request or chunk is asked for again from the same offset
//! after `catch_up_interval`; a peer that stays silent is given up after a
//! few tries, and the next offer starts over. A duplicate or out-of-order
//! chunk is ignored. A peer whose snapshot changed answers with a new offer,
//! and the fetch restarts from byte 0 of the new one. The bytes are the
//! snapshot file itself, checksum included: the host verifies it before
//! anything is installed, so a damaged transfer is refused, never applied.

use super::{Learner, LearnerSnapshot, LearnerWrite};
use crate::message::Message;
use crate::output::{Delivery, Output, SnapshotBytes};
use crate::types::{Millis, Role, RoleId, Slot};

/// Unanswered requests before a fetch is given up.
const FETCH_ATTEMPTS: u32 = 4;

/// Catch-up intervals a host may take to install a complete fetch before
/// the learner gives up on it and delivers from its log again.
const INSTALL_TIMEOUT_INTERVALS: u64 = 20;

/// A snapshot being fetched from a peer.
#[derive(Clone, Debug)]
pub(super) struct Fetch {
    peer: RoleId,
    upto: Slot,
    /// Bytes handed to the host so far.
    received: u64,
    /// The length the first chunk announced.
    total: Option<u64>,
    /// Every byte arrived; the host is verifying and installing it.
    complete: bool,
    next_at: Millis,
    attempts: u32,
}

impl Fetch {
    fn request(&self) -> Message {
        Message::SnapshotRequest {
            upto: self.upto,
            offset: self.received,
        }
    }
}

impl Learner {
    /// A peer has compacted the slots we asked for into a snapshot. Fetch
    /// it if the log could not fill the gap (a plain catch-up request went
    /// unanswered first), unless a fetch is already under way; the same
    /// peer offering another snapshot restarts the fetch with it.
    pub(super) fn handle_snapshot_offer(
        &mut self,
        now: Millis,
        from: RoleId,
        upto: Slot,
    ) -> Output<LearnerWrite> {
        let mut out = Output::new();
        let behind = self.catch_up.from_slot == self.next_delivery && self.catch_up.attempts >= 1;
        if from.role != Role::Learner || upto <= self.next_delivery || !behind {
            return out;
        }
        let busy = self
            .fetch
            .as_ref()
            .is_some_and(|f| f.peer != from || f.upto == upto);
        if busy {
            return out;
        }
        let fetch = Fetch {
            peer: from,
            upto,
            received: 0,
            total: None,
            complete: false,
            next_at: now + self.config.catch_up_interval,
            attempts: 0,
        };
        out.send(from, fetch.request());
        self.fetch = Some(fetch);
        self.fetches_started += 1;
        out
    }

    /// The next chunk of the snapshot being fetched: hand it to the host
    /// and ask for the one after it. Anything else is ignored.
    pub(super) fn handle_snapshot_chunk(
        &mut self,
        now: Millis,
        from: RoleId,
        chunk: SnapshotBytes,
    ) -> Output<LearnerWrite> {
        let mut out = Output::new();
        let Some(fetch) = self.fetch.as_mut() else {
            return out;
        };
        let expected = fetch.peer == from
            && fetch.upto == chunk.upto
            && fetch.received == chunk.offset
            && !fetch.complete;
        if !expected {
            return out;
        }
        let end = chunk.offset.checked_add(chunk.data.len() as u64);
        let consistent = fetch.total.is_none_or(|t| t == chunk.total)
            && end.is_some_and(|end| end <= chunk.total)
            && (!chunk.data.is_empty() || chunk.total == chunk.offset);
        if !consistent {
            self.fetch = None; // a confused peer: the next offer starts over
            return out;
        }
        fetch.total = Some(chunk.total);
        fetch.received += chunk.data.len() as u64;
        fetch.complete = fetch.received == chunk.total;
        fetch.next_at = now + self.config.catch_up_interval;
        fetch.attempts = 0;
        if !fetch.complete {
            out.send(from, fetch.request());
        } else if fetch.upto <= self.next_delivery {
            self.fetch = None; // the log got there first; the host discards it
        } else {
            // Deliveries pause until the host installs or refuses it: a
            // slot delivered behind the last chunk would reach the state
            // machine after the restore and be applied on top of it.
            fetch.next_at = now + INSTALL_TIMEOUT_INTERVALS * self.config.catch_up_interval;
        }
        out.deliver.push(Delivery::SnapshotChunk(chunk));
        out
    }

    /// A peer wants bytes of our snapshot: the host reads them.
    pub(super) fn handle_snapshot_request(
        &mut self,
        from: RoleId,
        upto: Slot,
        offset: u64,
    ) -> Output<LearnerWrite> {
        let mut out = Output::new();
        if from.role == Role::Learner {
            out.deliver.push(Delivery::ServeSnapshot {
                to: from,
                upto,
                offset,
                max_bytes: self.config.reply_max_bytes,
            });
        }
        out
    }

    /// Ask again for a chunk that did not come; give up on a silent peer
    /// (or a host that never installed a complete fetch).
    pub(super) fn tick_fetch(&mut self, now: Millis, out: &mut Output<LearnerWrite>) {
        let Some(fetch) = self.fetch.as_mut() else {
            return;
        };
        if now < fetch.next_at {
            return;
        }
        if fetch.complete {
            self.fetch = None;
            self.deliver_ready(out);
            return;
        }
        fetch.attempts += 1;
        if fetch.attempts >= FETCH_ATTEMPTS {
            self.fetch = None;
            return;
        }
        fetch.next_at = now + self.config.catch_up_interval;
        out.send(fetch.peer, fetch.request());
    }

    pub(super) fn fetch_deadline(&self) -> Option<Millis> {
        self.fetch.as_ref().map(|f| f.next_at)
    }

    /// A complete fetch waits for the host: nothing is delivered meanwhile.
    pub(super) fn awaiting_install(&self) -> bool {
        self.fetch.as_ref().is_some_and(|f| f.complete)
    }

    /// Whether the host should install the snapshot `upto` it has just
    /// staged completely: it is the one being fetched and still ahead.
    pub fn wants_snapshot(&self, upto: Slot) -> bool {
        self.fetch
            .as_ref()
            .is_some_and(|f| f.complete && f.upto == upto && upto > self.next_delivery)
    }

    /// The host installed a fetched snapshot durably and restored its state
    /// machine from it: continue from its end, drop the log below it, and
    /// deliver whatever of the tail is already here.
    pub fn install(&mut self, snapshot: &LearnerSnapshot) -> Output<LearnerWrite> {
        if !self.wants_snapshot(snapshot.upto) {
            return Output::new();
        }
        self.fetch = None;
        self.adopt(snapshot);
        self.catch_up.attempts = 0;
        self.catch_up.next_at = 0; // ask for the tail at the next tick
        let mut out = self.compact(snapshot.upto);
        let write = LearnerWrite::Applied(snapshot.upto);
        self.state.apply(&write);
        out.persist.push(write);
        self.deliver_ready(&mut out);
        out
    }

    /// The host will not install the fetch (it did not verify, could not
    /// be staged, or is no longer wanted): drop it, deliver from the log
    /// again; the next offer starts over.
    pub fn abandon_fetch(&mut self) -> Output<LearnerWrite> {
        let mut out = Output::new();
        if self.fetch.take().is_some() {
            self.deliver_ready(&mut out);
        }
        out
    }

    /// Snapshots fetched from peers so far in this incarnation (started).
    pub fn fetches_started(&self) -> u64 {
        self.fetches_started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::{LearnerConfig, LearnerState};
    use crate::types::{Command, CommandId, Value};

    const PEER: RoleId = RoleId::learner(2);
    const INTERVAL: Millis = 50;

    fn config() -> LearnerConfig {
        LearnerConfig {
            id: 1,
            learners: vec![1, 2, 3],
            proposers: vec![1],
            catch_up_interval: INTERVAL,
            catch_up_batch: 100,
            reply_max_bytes: 1 << 20,
            instance_sync_interval: 1_000_000,
            session_horizon: crate::learner::DEFAULT_SESSION_HORIZON,
            max_sessions: crate::learner::DEFAULT_MAX_SESSIONS,
        }
    }

    fn batch(client: u64) -> Value {
        Value::batch(vec![Command {
            id: CommandId { client, seq: 1 },
            payload: vec![],
        }])
    }

    /// A learner that knows slots up to 100 are decided and has asked for
    /// them twice without an answer.
    fn behind() -> Learner {
        let mut l = Learner::new(config(), LearnerState::default());
        l.handle(
            0,
            RoleId::proposer(1),
            Message::Heartbeat {
                ballot: crate::types::Ballot::new(1, 1),
                decided_upto: 100,
            },
        );
        l.tick(0);
        l.tick(INTERVAL);
        l
    }

    fn chunk(upto: Slot, offset: u64, total: u64, data: &[u8]) -> Message {
        Message::SnapshotChunk {
            upto,
            offset,
            total,
            data: data.to_vec(),
        }
    }

    fn requests(out: &Output<LearnerWrite>) -> Vec<(RoleId, Slot, u64)> {
        out.send
            .iter()
            .filter_map(|o| match o.message {
                Message::SnapshotRequest { upto, offset } => Some((o.to, upto, offset)),
                _ => None,
            })
            .collect()
    }

    fn staged(out: &Output<LearnerWrite>) -> Vec<(u64, Vec<u8>)> {
        out.deliver
            .iter()
            .filter_map(|d| match d {
                Delivery::SnapshotChunk(bytes) => Some((bytes.offset, bytes.data.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_peer_offers_its_snapshot_for_slots_it_compacted() {
        let mut state = LearnerState::default();
        state.apply(&LearnerWrite::Compact(40));
        let mut peer = Learner::restored(config(), state, &LearnerSnapshot::default());
        let catch_up = Message::CatchUp {
            from_slot: 10,
            to_slot: 50,
            escalate: false,
        };
        let out = peer.handle(0, RoleId::learner(3), catch_up.clone());
        assert_eq!(out.send[0].message, Message::SnapshotOffer { upto: 40 });
        let out = peer.handle(0, RoleId::proposer(1), catch_up);
        assert!(out.send.is_empty(), "only learners are offered snapshots");
        let out = peer.handle(
            0,
            RoleId::learner(3),
            Message::SnapshotRequest {
                upto: 40,
                offset: 7,
            },
        );
        assert!(matches!(
            out.deliver[..],
            [Delivery::ServeSnapshot {
                to: RoleId { index: 3, .. },
                upto: 40,
                offset: 7,
                ..
            }]
        ));
    }

    #[test]
    fn an_offer_is_taken_only_once_the_log_failed_to_fill_the_gap() {
        let mut l = Learner::new(config(), LearnerState::default());
        let out = l.handle(0, PEER, Message::SnapshotOffer { upto: 40 });
        assert!(out.send.is_empty(), "no catch-up was tried yet");
        let mut l = behind();
        let out = l.handle(INTERVAL, PEER, Message::SnapshotOffer { upto: 40 });
        assert_eq!(requests(&out), vec![(PEER, 40, 0)]);
        let other = l.handle(
            INTERVAL,
            RoleId::learner(3),
            Message::SnapshotOffer { upto: 60 },
        );
        assert!(other.send.is_empty(), "one fetch at a time");
    }

    #[test]
    fn chunks_are_staged_in_order_and_duplicates_ignored() {
        let mut l = behind();
        l.handle(INTERVAL, PEER, Message::SnapshotOffer { upto: 40 });
        let now = INTERVAL + 1;
        let out = l.handle(now, PEER, chunk(40, 0, 6, b"abc"));
        assert_eq!(staged(&out), vec![(0, b"abc".to_vec())]);
        assert_eq!(requests(&out), vec![(PEER, 40, 3)]);
        for stale in [
            chunk(40, 0, 6, b"abc"),
            chunk(40, 4, 6, b"ef"),
            chunk(39, 3, 6, b"def"),
        ] {
            assert!(l.handle(now, PEER, stale).is_empty());
        }
        let out = l.handle(now, RoleId::learner(3), chunk(40, 3, 6, b"def"));
        assert!(out.is_empty(), "only the peer fetched from");
        let out = l.handle(now, PEER, chunk(40, 3, 6, b"def"));
        assert_eq!(staged(&out), vec![(3, b"def".to_vec())]);
        assert!(requests(&out).is_empty(), "complete");
        assert!(l.wants_snapshot(40));
    }

    #[test]
    fn a_lost_chunk_is_asked_for_again_and_a_silent_peer_given_up() {
        let mut l = behind();
        l.handle(INTERVAL, PEER, Message::SnapshotOffer { upto: 40 });
        l.handle(INTERVAL, PEER, chunk(40, 0, 9, b"abc"));
        let deadline = l.next_deadline().expect("a deadline");
        assert!(deadline <= 2 * INTERVAL);
        let out = l.tick(2 * INTERVAL);
        assert_eq!(requests(&out), vec![(PEER, 40, 3)], "from where it stopped");
        for n in 3..=(FETCH_ATTEMPTS as u64 + 1) {
            l.tick(n * INTERVAL);
        }
        assert!(l.fetch.is_none(), "given up");
    }

    #[test]
    fn deliveries_wait_for_the_install_and_resume_after_the_snapshot() {
        let mut l = behind();
        l.handle(INTERVAL, PEER, Message::SnapshotOffer { upto: 3 });
        l.handle(INTERVAL, PEER, chunk(3, 0, 2, b"ok"));
        let proposer = RoleId::proposer(1);
        for slot in 0..5 {
            let out = l.handle(
                INTERVAL,
                proposer,
                Message::Decided {
                    slot,
                    value: batch(slot),
                },
            );
            assert!(
                out.deliver.is_empty(),
                "slot {slot} delivered while installing"
            );
        }
        assert!(l.wants_snapshot(3));
        let out = l.install(&LearnerSnapshot {
            upto: 3,
            sessions: vec![],
        });
        let delivered: Vec<Slot> = out
            .deliver
            .iter()
            .filter_map(|d| match d {
                Delivery::Slot { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect();
        assert_eq!(delivered, vec![3, 4], "the tail after the snapshot");
        assert!(out.persist.contains(&LearnerWrite::Compact(3)));
        assert!(
            out.send
                .iter()
                .any(|o| o.message == Message::Snapshotted { upto: 3 }),
            "the proposers hear of the new snapshot"
        );
        assert_eq!(l.state().base, 3);
        assert!(!l.wants_snapshot(3));
    }

    #[test]
    fn an_abandoned_fetch_delivers_from_the_log_again() {
        let mut l = behind();
        l.handle(INTERVAL, PEER, Message::SnapshotOffer { upto: 3 });
        l.handle(INTERVAL, PEER, chunk(3, 0, 2, b"ok"));
        let proposer = RoleId::proposer(1);
        l.handle(
            INTERVAL,
            proposer,
            Message::Decided {
                slot: 0,
                value: batch(0),
            },
        );
        let out = l.abandon_fetch();
        assert_eq!(out.deliver.len(), 1);
        assert_eq!(l.next_delivery(), 1);
        assert!(l.install(&LearnerSnapshot::default()).is_empty());
    }
}
