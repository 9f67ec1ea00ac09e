//! Protocol messages.
//!
//! Every variant's position is its wire tag (postcard encodes an enum
//! variant as its index). Tags are documented on each variant and are never
//! reordered or reused: new messages go at the end.

use crate::types::{Ballot, Command, InstanceName, Slot, Value};
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

/// A value accepted for a single-decree instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AcceptedRegister {
    /// The ballot the value was accepted in.
    pub ballot: Ballot,
    /// The accepted value.
    pub value: Vec<u8>,
}

/// Every message exchanged between role instances.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Tag 0, proposer → acceptor: phase 1a for every slot `>= from_slot`.
    Prepare {
        /// The ballot being prepared.
        ballot: Ballot,
        /// First slot whose accepted values the proposer needs.
        from_slot: Slot,
    },
    /// Tag 1, acceptor → proposer: phase 1b. Sent only after the promise is durable.
    Promise {
        /// The promised ballot (equal to the Prepare's).
        ballot: Ballot,
        /// Every value this acceptor accepted at or above the Prepare's `from_slot`.
        accepted: Vec<AcceptedEntry>,
    },
    /// Tag 2, proposer → acceptor: phase 2a for one slot.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// The proposed value.
        value: Value,
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
        assert_eq!(
            encode(&Message::Decided {
                slot: 1,
                value: Value::Noop
            }),
            [5, 1, 0]
        );
        assert_eq!(
            encode(&Message::InstanceLearned { name: "x".into() }),
            [15, 1, b'x']
        );
    }

    #[test]
    fn messages_round_trip() {
        let message = Message::Promise {
            ballot: Ballot::new(9, 3),
            accepted: vec![AcceptedEntry {
                slot: 4,
                ballot: Ballot::new(8, 1),
                value: Value::Batch(vec![Command {
                    id: crate::CommandId { client: 1, seq: 2 },
                    payload: b"put".to_vec(),
                }]),
            }],
        };
        let bytes = encode(&message);
        assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), message);
    }
}
