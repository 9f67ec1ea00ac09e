//! What a handler returns: state to persist, then messages to send and
//! values to deliver.

use crate::message::Message;
use crate::types::{ClockStamp, Command, CommandId, InstanceName, RoleId, Slot};

/// A piece of a snapshot file in transfer (a `Message::SnapshotChunk`'s
/// fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotBytes {
    /// The snapshot's end: every slot below it is in it.
    pub upto: Slot,
    /// Where `data` starts in the file.
    pub offset: u64,
    /// The file's length.
    pub total: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A message for one role instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The destination.
    pub to: RoleId,
    /// The message.
    pub message: Message,
}

/// What a learner hands its host: slots and instances for the state
/// machine, in order (at once: they are chosen), and the snapshot bytes it
/// stages or serves (once the learner's writes before them are durable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `slot` is the next slot in order; `commands` are its commands that were
    /// not applied before (a retried command may be decided in two slots).
    Slot {
        /// The slot being delivered.
        slot: Slot,
        /// Commands to apply, in order. Empty for a no-op.
        commands: Vec<Command>,
        /// Sessions this slot opened: the opening command, the session id
        /// (the opener's answer).
        opened: Vec<(CommandId, u64)>,
        /// Commands of sessions unknown or expired: not applied; their
        /// clients are told so.
        expired: Vec<CommandId>,
        /// The leader's clock reading, if the slot is a stamp: state
        /// machines that need time take it from here.
        clock: Option<ClockStamp>,
    },
    /// Read `id` may be served now: the leader confirmed it and every
    /// slot below its read index is applied (see the proposer's
    /// `reads.rs`).
    ReadReady {
        /// The read.
        id: u64,
    },
    /// A single-decree instance is decided.
    Instance {
        /// The instance.
        name: InstanceName,
        /// Its value.
        value: Vec<u8>,
    },
    /// Bytes of a peer's snapshot being fetched, in order: stage them
    /// (`offset` 0 starts over). Once `offset + data.len() == total` the
    /// host verifies the staged file and, if the learner still
    /// [`wants`](crate::Learner::wants_snapshot) it, restores its state
    /// machine from it and calls [`crate::Learner::install`] (or
    /// [`crate::Learner::abandon_fetch`] if it did not verify).
    SnapshotChunk(SnapshotBytes),
    /// A peer learner asks for the bytes of snapshot `upto` from `offset`:
    /// answer with a [`crate::Message::SnapshotChunk`] of at most
    /// `max_bytes`, or, if the host's latest snapshot is another one, a
    /// [`crate::Message::SnapshotOffer`] of it.
    ServeSnapshot {
        /// The peer.
        to: RoleId,
        /// The snapshot asked for.
        upto: Slot,
        /// The first byte wanted.
        offset: u64,
        /// The most bytes one chunk carries.
        max_bytes: usize,
    },
}

impl Delivery {
    /// Whether this hands on a chosen value (a slot, a read that waited
    /// for slots, a decided instance): such a value is on the disks of a
    /// phase-2 quorum of acceptors before any learner hears of it, so the
    /// host may apply it before the learner's own copy is durable.
    /// Snapshot work waits for the learner's writes like its messages do.
    pub fn is_chosen(&self) -> bool {
        match self {
            Delivery::Slot { .. } | Delivery::ReadReady { .. } | Delivery::Instance { .. } => true,
            Delivery::SnapshotChunk(_) | Delivery::ServeSnapshot { .. } => false,
        }
    }
}

/// The effects of one handler call, in the order the caller must carry them
/// out.
///
/// **Persist, then send.** Everything in `persist` must be durable before any
/// of `send` or `deliver` is released (except deliveries of chosen values,
/// see [`Delivery::is_chosen`]), and writes must become durable in the
/// order handlers emitted them. A caller that batches writes (group commit)
/// releases held messages in emission order once the covering write has
/// completed; a message emitted with an empty `persist` may still depend on
/// an earlier, not yet durable write, so it waits in the same queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output<W> {
    /// Writes to make durable first.
    pub persist: Vec<W>,
    /// Messages to send once `persist` is durable.
    pub send: Vec<Outgoing>,
    /// Values to hand to the state machine once `persist` is durable.
    pub deliver: Vec<Delivery>,
}

impl<W> Default for Output<W> {
    fn default() -> Self {
        Self {
            persist: Vec::new(),
            send: Vec::new(),
            deliver: Vec::new(),
        }
    }
}

impl<W> Output<W> {
    /// An output with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `message` for `to`.
    pub fn send(&mut self, to: RoleId, message: Message) {
        self.send.push(Outgoing { to, message });
    }

    /// Queue `message` for each of `targets`.
    pub fn broadcast(&mut self, targets: impl IntoIterator<Item = RoleId>, message: &Message) {
        for to in targets {
            self.send(to, message.clone());
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty() && self.send.is_empty() && self.deliver.is_empty()
    }

    /// Append `other`'s effects after this one's.
    pub fn extend(&mut self, other: Output<W>) {
        self.persist.extend(other.persist);
        self.send.extend(other.send);
        self.deliver.extend(other.deliver);
    }
}
