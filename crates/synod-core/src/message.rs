//! Protocol messages.
//!
//! Every variant's position is its wire tag (postcard encodes an enum
//! variant as its index). Tags are documented on each variant and are never
//! reordered or reused: new messages go at the end.

use crate::membership::{Epoch, Membership};
use crate::types::{Ballot, Command, InstanceName, Slot, VARINT_MAX, Value};
use serde::{Deserialize, Serialize};

/// One accepted log entry reported in a [`Message::Promise`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AcceptedEntry {
    /// The slot.
    pub slot: Slot,
    /// The ballot the value was accepted in.
    pub ballot: Ballot,
    /// The accepted value.
    pub value: Value,
}

impl AcceptedEntry {
    /// An upper bound of the bytes an entry holding `value` takes on the
    /// wire (slot, ballot and value), for the promise page budget.
    pub fn encoded_len(value: &Value) -> usize {
        3 * VARINT_MAX + value.encoded_len()
    }
}

/// A value accepted for a single-decree instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AcceptedRegister {
    /// The ballot the value was accepted in.
    pub ballot: Ballot,
    /// The accepted value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A single-decree instance's accepted value, as a carry reads it from the
/// acceptors of an epoch and writes it to the next epoch's (see
/// `proposer/carry.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CarriedVote {
    /// The instance.
    pub name: InstanceName,
    /// What was accepted for it.
    pub accepted: AcceptedRegister,
}

impl CarriedVote {
    /// An upper bound of the bytes this vote takes on the wire, for the
    /// page budgets.
    pub fn encoded_len(&self) -> usize {
        4 * VARINT_MAX + self.name.len() + self.accepted.value.len()
    }
}

/// One page of one run of a carry: the run is a round the leader took
/// for it (so no answer from an earlier run, or an earlier life, counts),
/// and pages count from 1 within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CarryPage {
    /// The run (0: no run).
    pub run: u64,
    /// The page within the run.
    pub page: u64,
}

/// Every message exchanged between role instances.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Tag 0, proposer → acceptor: phase 1a for every slot `>= from_slot`.
    /// Sent again with the same ballot and a later `from_slot` to ask for
    /// the next page of a promise.
    Prepare {
        /// The ballot being prepared.
        ballot: Ballot,
        /// First slot whose accepted values the proposer needs.
        from_slot: Slot,
    },
    /// Tag 1, acceptor → proposer: phase 1b, one page of it. Sent only
    /// after the promise is durable. A page carries a bounded number of
    /// bytes of accepted entries; the proposer counts the promise once it
    /// has a page with `next: None`.
    Promise {
        /// The promised ballot (equal to the Prepare's).
        ballot: Ballot,
        /// The Prepare's `from_slot`: this page reports on slots from here.
        from_slot: Slot,
        /// Every value this acceptor accepted in `[from_slot, next)`.
        accepted: Vec<AcceptedEntry>,
        /// Where the page stopped (ask again from here), or `None` if it
        /// reports on every slot from `from_slot` up.
        next: Option<Slot>,
        /// Every slot below this is chosen, as far as this acceptor was
        /// told by leaders (see [`Message::Accept`]).
        chosen_upto: Slot,
        /// This acceptor discarded its accepted values below this slot
        /// ([`Message::Trim`]): they are chosen, and learners' snapshots
        /// hold them. A leader must never propose below it.
        trimmed_below: Slot,
    },
    /// Tag 2, proposer → acceptor: phase 2a for one slot.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// The proposed value.
        value: Value,
        /// The leader's first unchosen slot: every slot below it is chosen.
        /// Acceptors keep it so that a leader elected after a restart
        /// starts phase 1 at the end of the log, not at slot 0.
        chosen_upto: Slot,
    },
    /// Tag 3, acceptor → proposer: phase 2b. Sent only after the value is durable.
    Accepted {
        /// The ballot accepted in.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
    },
    /// Tag 4, acceptor → proposer: the ballot was refused because the acceptor
    /// promised a higher one.
    Nack {
        /// The refused ballot.
        ballot: Ballot,
        /// The acceptor's promise, higher than `ballot`.
        promised: Ballot,
    },
    /// Tag 5, proposer → learner (and learner → learner for catch-up): `slot` is
    /// decided with `value`.
    Decided {
        /// The slot.
        slot: Slot,
        /// The chosen value.
        value: Value,
    },
    /// Tag 6, leader → proposers and learners: leadership and progress.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// Every slot below this one is decided.
        decided_upto: Slot,
    },
    /// Tag 7, proposer → leader: client commands forwarded to the leader.
    Forward {
        /// The commands.
        commands: Vec<Command>,
    },
    /// Tag 8, learner → learners and proposers: send me decided slots in
    /// `[from_slot, to_slot)`.
    CatchUp {
        /// First missing slot.
        from_slot: Slot,
        /// One past the last slot wanted.
        to_slot: Slot,
        /// Set after plain requests went unanswered: asks the leader to
        /// recover the slots from the acceptors if nobody else has them.
        escalate: bool,
    },
    /// Tag 9, proposer → acceptor: phase 1a of a single-decree instance.
    InstancePrepare {
        /// The instance.
        name: InstanceName,
        /// The ballot being prepared.
        ballot: Ballot,
    },
    /// Tag 10, acceptor → proposer: phase 1b of a single-decree instance.
    InstancePromise {
        /// The instance.
        name: InstanceName,
        /// The promised ballot.
        ballot: Ballot,
        /// What this acceptor accepted for the instance, if anything.
        accepted: Option<AcceptedRegister>,
    },
    /// Tag 11, proposer → acceptor: phase 2a of a single-decree instance.
    InstanceAccept {
        /// The instance.
        name: InstanceName,
        /// The ballot.
        ballot: Ballot,
        /// The proposed value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Tag 12, acceptor → proposer: phase 2b of a single-decree instance.
    InstanceAccepted {
        /// The instance.
        name: InstanceName,
        /// The ballot accepted in.
        ballot: Ballot,
    },
    /// Tag 13, acceptor → proposer: refusal for a single-decree instance.
    InstanceNack {
        /// The instance.
        name: InstanceName,
        /// The refused ballot.
        ballot: Ballot,
        /// The acceptor's promise for this instance.
        promised: Ballot,
    },
    /// Tag 14, proposer → learner: the instance is decided with `value`.
    InstanceDecided {
        /// The instance.
        name: InstanceName,
        /// The chosen value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Tag 15, learner → proposer: the instance's decision is durable here.
    InstanceLearned {
        /// The instance.
        name: InstanceName,
    },
    /// Tag 16, learner → learner: anti-entropy for single-decree instances.
    /// A peer whose digest differs answers with its decided instances.
    InstanceSync {
        /// How many instances the sender knows.
        count: u64,
        /// Order-independent digest of the sender's instance names.
        digest: u64,
    },
    /// Tag 17, learner → proposers: a durable snapshot of this learner
    /// covers every slot below `upto`.
    Snapshotted {
        /// The snapshot's end.
        upto: Slot,
    },
    /// Tag 18, leader → acceptors: discard accepted values below `below`.
    /// Every slot below it is chosen and covered by every learner's durable
    /// snapshot (the cluster-wide safe point).
    Trim {
        /// The new trim point.
        below: Slot,
        /// The leader's ballot: the acceptor promises it too (so an
        /// acceptor that dropped an epoch's stop sign refuses every leader
        /// still working in that epoch).
        ballot: Ballot,
    },
    /// Tag 19, learner → learner: the slots asked for are compacted into
    /// a snapshot covering every slot below `upto`; fetch it instead.
    SnapshotOffer {
        /// The snapshot's end.
        upto: Slot,
    },
    /// Tag 20, learner → learner: send the bytes of your snapshot `upto`
    /// from `offset`.
    SnapshotRequest {
        /// Which snapshot (its end).
        upto: Slot,
        /// The first byte wanted.
        offset: u64,
    },
    /// Tag 21, learner → learner: bytes of snapshot `upto` from `offset`.
    /// The bytes are the snapshot file itself, checksum included, so the
    /// receiver verifies it before installing.
    SnapshotChunk {
        /// Which snapshot (its end).
        upto: Slot,
        /// Where `data` starts.
        offset: u64,
        /// The snapshot's length in bytes.
        total: u64,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Tag 22, learner → proposer: propose `value` for single-decree
    /// instance `name` (a client's `decide` through a node without a
    /// proposer). Proposing again, or after the decision, is harmless: a
    /// later run only finds the chosen value.
    ProposeInstance {
        /// The instance.
        name: InstanceName,
        /// The proposed value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Tag 23, learner → leader: read `id` wants a read index (a
    /// linearizable read without a log slot). A proposer that does not
    /// lead ignores it; the learner asks again.
    ReadIndex {
        /// The learner's read.
        id: u64,
    },
    /// Tag 24, leader → acceptors: is `ballot` still the highest you
    /// promised? Nothing is written.
    Confirm {
        /// The leader's ballot.
        ballot: Ballot,
        /// The leader's confirmation round.
        round: u64,
    },
    /// Tag 25, acceptor → leader: it has promised nothing above `ballot`
    /// (a higher promise is answered `Nack`).
    Confirmed {
        /// The leader's ballot.
        ballot: Ballot,
        /// The round confirmed.
        round: u64,
    },
    /// Tag 26, leader → learner: read `id` may be served once every slot
    /// below `index` is applied.
    ReadReady {
        /// The learner's read.
        id: u64,
        /// Serve once applied up to here.
        index: Slot,
    },
    /// Tag 27, proposer → acceptors: what is the highest ballot you
    /// promised, for the log or any single-decree instance? A proposer
    /// whose store holds no round asks before it takes its first ballot
    /// (it may have used rounds in a life whose store is gone). Nothing is
    /// written.
    RoundQuery,
    /// Tag 28, acceptor → proposer: the answer to [`Message::RoundQuery`],
    /// released only once every promise it reports is durable.
    RoundReport {
        /// The highest ballot this acceptor promised (log or instance).
        promised: Ballot,
    },
    /// Tag 29, proposer → proposer: I heard a ballot of a later epoch
    /// than mine; which configuration is it?
    EpochQuery,
    /// Tag 30, proposer → proposer: the epoch the sender works in (an
    /// answer to [`Message::EpochQuery`], or to a leader of an earlier
    /// epoch).
    EpochInfo {
        /// The configuration and its first slot.
        epoch: Epoch,
    },
    /// Tag 31, leader → acceptors of the previous epoch: report your
    /// single-decree votes for instances named `from` or later. `ballot`
    /// is the carry's, of the new epoch: an acceptor answers only once it
    /// knows that epoch (and so votes no more in the earlier one).
    InstanceRead {
        /// The carry's ballot (round 0 of the new epoch).
        ballot: Ballot,
        /// The first name wanted.
        from: InstanceName,
    },
    /// Tag 32, acceptor → leader: one page of the answer to
    /// [`Message::InstanceRead`].
    InstanceVotes {
        /// The carry's ballot.
        ballot: Ballot,
        /// The request's `from`.
        from: InstanceName,
        /// Every instance from `from` up to `next` with an accepted value.
        votes: Vec<CarriedVote>,
        /// Where the page stopped (ask again from here), or `None` if it
        /// reports on every name from `from` on.
        next: Option<InstanceName>,
    },
    /// Tag 33, leader → acceptors of the new epoch: accept these values
    /// in the carry's ballot. With `open`, the carry is complete: this
    /// acceptor may vote on instances in the new epoch. An empty carry
    /// asks only whether it is open.
    InstanceCarry {
        /// The carry's ballot (round 0 of the new epoch, below every
        /// ballot a proposer takes in it).
        ballot: Ballot,
        /// Which page of which run of the carry (0: none, an empty carry
        /// that only asks), echoed in the answer.
        page: CarryPage,
        /// The values to accept.
        votes: Vec<CarriedVote>,
        /// Every instance is carried: open instance votes in the epoch.
        open: bool,
    },
    /// Tag 34, acceptor → leader: the carry's values are durable here
    /// (or a higher ballot holds them), and whether instance votes in the
    /// epoch are open here.
    InstanceCarried {
        /// The carry's ballot.
        ballot: Ballot,
        /// The page answered.
        page: CarryPage,
        /// Instance votes in the carry's epoch are open here.
        open: bool,
    },
    /// Tag 35, proposer → leader: an operator asks for `next` as the
    /// configuration after the current one (`synod member`). The leader
    /// proposes it as a stop sign, unless it does not follow the current
    /// epoch or a change is in progress; the operator watches the epoch.
    Reconfigure {
        /// The configuration asked for.
        next: Membership,
    },
}

impl Message {
    /// A short name for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Nack { .. } => "nack",
            Message::Decided { .. } => "decided",
            Message::Heartbeat { .. } => "heartbeat",
            Message::Forward { .. } => "forward",
            Message::CatchUp { .. } => "catch-up",
            Message::InstancePrepare { .. } => "instance-prepare",
            Message::InstancePromise { .. } => "instance-promise",
            Message::InstanceAccept { .. } => "instance-accept",
            Message::InstanceAccepted { .. } => "instance-accepted",
            Message::InstanceNack { .. } => "instance-nack",
            Message::InstanceDecided { .. } => "instance-decided",
            Message::InstanceLearned { .. } => "instance-learned",
            Message::InstanceSync { .. } => "instance-sync",
            Message::Snapshotted { .. } => "snapshotted",
            Message::Trim { .. } => "trim",
            Message::SnapshotOffer { .. } => "snapshot-offer",
            Message::SnapshotRequest { .. } => "snapshot-request",
            Message::SnapshotChunk { .. } => "snapshot-chunk",
            Message::ProposeInstance { .. } => "propose-instance",
            Message::ReadIndex { .. } => "read-index",
            Message::Confirm { .. } => "confirm",
            Message::Confirmed { .. } => "confirmed",
            Message::ReadReady { .. } => "read-ready",
            Message::RoundQuery => "round-query",
            Message::RoundReport { .. } => "round-report",
            Message::EpochQuery => "epoch-query",
            Message::EpochInfo { .. } => "epoch-info",
            Message::InstanceRead { .. } => "instance-read",
            Message::InstanceVotes { .. } => "instance-votes",
            Message::InstanceCarry { .. } => "instance-carry",
            Message::InstanceCarried { .. } => "instance-carried",
            Message::Reconfigure { .. } => "reconfigure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(message: &Message) -> Vec<u8> {
        postcard::to_stdvec(message).unwrap()
    }

    #[test]
    fn wire_tags_are_pinned() {
        let ballot = Ballot::new(2, 1);
        assert_eq!(
            encode(&Message::Prepare {
                ballot,
                from_slot: 5
            }),
            [0, 2, 1, 5]
        );
        assert_eq!(encode(&Message::Accepted { ballot, slot: 7 }), [3, 2, 1, 7]);
        // A payload is a length and its bytes (serde_bytes, as a plain
        // `Vec<u8>` encodes in postcard, written in one copy).
        let command = Command {
            id: crate::CommandId { client: 4, seq: 5 },
            payload: vec![0xaa, 0xbb],
        };
        assert_eq!(
            encode(&Message::Accept {
                ballot,
                slot: 3,
                value: Value::batch(vec![command]),
                chosen_upto: 6
            }),
            [2, 2, 1, 3, 1, 1, 4, 5, 2, 0xaa, 0xbb, 6]
        );
        assert_eq!(
            encode(&Message::Decided {
                slot: 1,
                value: Value::Noop
            }),
            [5, 1, 0]
        );
        assert_eq!(
            encode(&Message::Decided {
                slot: 1,
                value: Value::Clock(crate::ClockStamp {
                    ballot: Ballot::new(7, 2),
                    millis: 300
                })
            }),
            [5, 1, 2, 7, 2, 0xac, 0x02]
        );
        assert_eq!(
            encode(&Message::InstanceLearned { name: "x".into() }),
            [15, 1, b'x']
        );
        assert_eq!(encode(&Message::Trim { below: 4, ballot }), [18, 4, 2, 1]);
        assert_eq!(encode(&Message::EpochQuery), [29]);
        assert_eq!(
            encode(&Message::ProposeInstance {
                name: "r".into(),
                value: vec![7]
            }),
            [22, 1, b'r', 1, 7]
        );
        assert_eq!(encode(&Message::ReadIndex { id: 3 }), [23, 3]);
        let confirm = Message::Confirm { ballot, round: 4 };
        assert_eq!(encode(&confirm)[0], 24);
        assert_eq!(encode(&Message::Confirmed { ballot, round: 4 })[0], 25);
        assert_eq!(encode(&Message::ReadReady { id: 3, index: 9 }), [26, 3, 9]);
        assert_eq!(encode(&Message::RoundQuery), [27]);
        let read = Message::InstanceRead {
            ballot,
            from: "a".into(),
        };
        assert_eq!(encode(&read), [31, 2, 1, 1, b'a']);
        let page = CarryPage { run: 3, page: 4 };
        let carried = Message::InstanceCarried {
            ballot,
            page,
            open: true,
        };
        assert_eq!(encode(&carried), [34, 2, 1, 3, 4, 1]);
        let report = Message::RoundReport { promised: ballot };
        assert_eq!(encode(&report), [28, 2, 1]);
        assert_eq!(
            encode(&Message::SnapshotChunk {
                upto: 1,
                offset: 2,
                total: 3,
                data: vec![9]
            }),
            [21, 1, 2, 3, 1, 9]
        );
    }

    #[test]
    fn a_ballot_encodes_its_epoch_beside_its_proposer_and_orders_by_it_first() {
        // Epoch 0: the two varints of the ballot before epochs existed.
        assert_eq!(
            postcard::to_stdvec(&Ballot::new(300, 2)).unwrap(),
            [0xac, 0x02, 2]
        );
        let later = Ballot::in_epoch(1, 1, 1);
        let bytes = postcard::to_stdvec(&later).unwrap();
        assert_eq!(postcard::from_bytes::<Ballot>(&bytes).unwrap(), later);
        let most = Ballot::in_epoch(u32::MAX, u64::MAX, u32::MAX);
        let bytes = postcard::to_stdvec(&most).unwrap();
        assert_eq!(postcard::from_bytes::<Ballot>(&bytes).unwrap(), most);
        assert!(bytes.len() <= 2 * VARINT_MAX);
        assert!(later > Ballot::new(u64::MAX, u32::MAX));
        assert_eq!(later.to_string(), "1:1.1");
        assert_eq!(Ballot::new(3, 2).to_string(), "3.2");
    }

    #[test]
    fn messages_round_trip() {
        let message = Message::Promise {
            ballot: Ballot::new(9, 3),
            from_slot: 4,
            next: Some(5),
            chosen_upto: 2,
            trimmed_below: 1,
            accepted: vec![AcceptedEntry {
                slot: 4,
                ballot: Ballot::new(8, 1),
                value: Value::batch(vec![Command {
                    id: crate::CommandId { client: 1, seq: 2 },
                    payload: b"put".to_vec(),
                }]),
            }],
        };
        let bytes = encode(&message);
        assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), message);
    }

    #[test]
    fn size_bounds_never_underestimate() {
        let value = Value::batch(
            (0..50)
                .map(|n| Command {
                    id: crate::CommandId {
                        client: u64::MAX - n,
                        seq: u64::MAX,
                    },
                    payload: vec![7; (n * 37) as usize],
                })
                .collect(),
        );
        let entry = AcceptedEntry {
            slot: u64::MAX,
            ballot: Ballot::new(u64::MAX, u32::MAX),
            value: value.clone(),
        };
        assert!(
            encode(&Message::Decided {
                slot: 0,
                value: value.clone()
            })
            .len()
                <= 1 + value.encoded_len() + 10
        );
        assert!(postcard::to_stdvec(&entry).unwrap().len() <= AcceptedEntry::encoded_len(&value));
        assert!(postcard::to_stdvec(&Value::Noop).unwrap().len() <= Value::Noop.encoded_len());
        let vote = CarriedVote {
            name: "n".repeat(300),
            accepted: AcceptedRegister {
                ballot: Ballot::in_epoch(u32::MAX, u64::MAX, u32::MAX),
                value: vec![1; 200],
            },
        };
        assert!(postcard::to_stdvec(&vote).unwrap().len() <= vote.encoded_len());
        let stamp = Value::Clock(crate::ClockStamp {
            ballot: Ballot::new(u64::MAX, u32::MAX),
            millis: u64::MAX,
        });
        assert!(postcard::to_stdvec(&stamp).unwrap().len() <= stamp.encoded_len());
    }
}
