//! Identities, ballots, slots and values.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A position in the replicated log.
pub type Slot = u64;

/// Simulated or real time in milliseconds. The core never reads a clock: the
/// caller passes `now` into every handler.
pub type Millis = u64;

/// The three Paxos roles. The discriminants are wire tags: never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Tag 0: proposes values and, when elected, leads the log.
    Proposer,
    /// Tag 1: votes on ballots and remembers what it voted for.
    Acceptor,
    /// Tag 2: learns decided values and delivers them in slot order.
    Learner,
}

/// One role instance, e.g. acceptor 3. Messages are addressed to these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoleId {
    /// Which role.
    pub role: Role,
    /// The instance number, unique within the role.
    pub index: u32,
}

impl RoleId {
    /// Proposer `index`.
    pub const fn proposer(index: u32) -> Self {
        Self {
            role: Role::Proposer,
            index,
        }
    }
    /// Acceptor `index`.
    pub const fn acceptor(index: u32) -> Self {
        Self {
            role: Role::Acceptor,
            index,
        }
    }
    /// Learner `index`.
    pub const fn learner(index: u32) -> Self {
        Self {
            role: Role::Learner,
            index,
        }
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.role {
            Role::Proposer => "proposer",
            Role::Acceptor => "acceptor",
            Role::Learner => "learner",
        };
        write!(f, "{name}-{}", self.index)
    }
}

/// A ballot number: `(epoch, round, proposer)`, compared lexicographically.
///
/// `Ord` and `Eq` are both derived over the same three fields, so two
/// ballots are equal exactly when neither is greater. Distinct proposers
/// can never produce equal ballots, and a proposer never reuses a round (it
/// persists the highest round before using it, and one on an empty store
/// first learns the highest round promised). The epoch is the
/// configuration the ballot belongs to (see [`crate::Membership`]):
/// compared first, so every ballot of a later configuration is above
/// every ballot of an earlier one, and an acceptor that has promised one
/// refuses every leader still working in an earlier configuration.
///
/// On the wire (and on disk) a ballot is two varints, the round and
/// `epoch << 32 | proposer`: a ballot of epoch 0 encodes exactly as the
/// two-field ballot before configurations existed, so older stores and
/// snapshots read unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    /// The configuration epoch; compared first.
    pub epoch: u32,
    /// Monotonic round number; compared next.
    pub round: u64,
    /// The proposer that owns this ballot; breaks ties between rounds.
    pub proposer: u32,
}

impl Ballot {
    /// The ballot below every real ballot. Acceptors start promised to it;
    /// real ballots have `round >= 1`.
    pub const ZERO: Ballot = Ballot {
        epoch: 0,
        round: 0,
        proposer: 0,
    };

    /// Ballot `round` owned by `proposer`, in the first configuration.
    pub const fn new(round: u64, proposer: u32) -> Self {
        Self::in_epoch(0, round, proposer)
    }

    /// Ballot `round` owned by `proposer`, in configuration `epoch`.
    pub const fn in_epoch(epoch: u32, round: u64, proposer: u32) -> Self {
        Self {
            epoch,
            round,
            proposer,
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch > 0 {
            write!(f, "{}:", self.epoch)?;
        }
        write!(f, "{}.{}", self.round, self.proposer)
    }
}

impl Serialize for Ballot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let owner = u64::from(self.epoch) << 32 | u64::from(self.proposer);
        (self.round, owner).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Ballot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (round, owner) = <(u64, u64)>::deserialize(deserializer)?;
        Ok(Ballot {
            epoch: (owner >> 32) as u32,
            round,
            proposer: owner as u32,
        })
    }
}

/// Identifies a client command for exactly-once application: a client
/// numbers its commands and retries a command with the same number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommandId {
    /// The client that issued the command.
    pub client: u64,
    /// The client's sequence number, increasing per client.
    pub seq: u64,
}

/// One client command: an opaque payload for the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    /// Deduplication key.
    pub id: CommandId,
    /// Opaque bytes interpreted by the state machine.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// The most bytes postcard spends on one integer or length (a `u64`
/// varint): size bounds below use it so they never underestimate.
pub const VARINT_MAX: usize = 10;

impl Command {
    /// An upper bound of the bytes this command takes on the wire (its id's
    /// two integers, the payload's length and the payload). Batch, pipeline
    /// and reply byte limits count with it.
    pub fn encoded_len(&self) -> usize {
        3 * VARINT_MAX + self.payload.len()
    }
}

/// What a log slot holds. Tags are wire tags: never reorder.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Tag 0: fills a hole left by an earlier leader; applies nothing.
    Noop,
    /// Tag 1: a batch of client commands, applied in order. Shared, so
    /// that sending one value to every acceptor and learner copies a
    /// pointer, not the commands (the wire form is the plain list).
    Batch(#[serde(with = "shared_commands")] Arc<Vec<Command>>),
    /// Tag 2: the leader's clock, read when it proposed this slot: how
    /// time enters the log (see [`ClockStamp`]). Applies no command.
    Clock(ClockStamp),
    /// Tag 3: a stop sign: the epoch ends at this slot and the next slots
    /// are decided by this configuration (see [`crate::Membership`]).
    /// Applies no command.
    Reconfigure(Box<crate::Membership>),
}

/// A leader's clock reading, proposed every `clock_interval` while it
/// leads. State machines that need time (lease expiry) derive it from the
/// stamps in log order, never from a local clock, so every learner
/// expires the same lease at the same slot.
///
/// `millis` is the leader's monotonic clock: only differences between
/// stamps of one `ballot` (one leader, one process lifetime) mean
/// anything. A stamp of a new ballot restarts the count, so the time
/// between leaders is not counted: leases only ever last longer across a
/// leader change, never shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClockStamp {
    /// The ballot the leader proposed the stamp in.
    pub ballot: Ballot,
    /// Its clock then, in milliseconds since it started.
    pub millis: Millis,
}

/// A batch's commands on the wire: the plain list (what `Vec<Command>`
/// would be), read into one shared allocation.
mod shared_commands {
    use super::Command;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub(super) fn serialize<S: Serializer>(
        commands: &Arc<Vec<Command>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        commands.as_slice().serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<Vec<Command>>, D::Error> {
        Vec::deserialize(deserializer).map(Arc::new)
    }
}

impl Value {
    /// A batch of `commands`.
    pub fn batch(commands: Vec<Command>) -> Self {
        Value::Batch(Arc::new(commands))
    }

    /// An upper bound of the bytes this value takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let commands: usize = self.commands().iter().map(Command::encoded_len).sum();
        // A clock stamp: the ballot's two integers and the reading.
        let extra = match self {
            Value::Clock(_) => 3 * VARINT_MAX,
            // The epoch, the acceptor count and ids, the quorum system.
            Value::Reconfigure(m) => (m.acceptors.len() + 5) * VARINT_MAX,
            _ => 0,
        };
        1 + VARINT_MAX + commands + extra
    }

    /// The commands in this value (none for a no-op).
    pub fn commands(&self) -> &[Command] {
        match self {
            Value::Noop | Value::Clock(_) | Value::Reconfigure(_) => &[],
            Value::Batch(commands) => commands,
        }
    }
}

/// `commands` split, in order, into runs of at most `limit` encoded bytes
/// each (a single larger command makes a run alone): one `Forward` per run
/// keeps every frame sendable.
pub fn chunk_by_bytes(commands: Vec<Command>, limit: usize) -> Vec<Vec<Command>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    let mut budget = ByteBudget::new(limit);
    for command in commands {
        if !budget.take(command.encoded_len()) {
            chunks.push(std::mem::take(&mut chunk));
            budget = ByteBudget::new(limit);
            budget.take(command.encoded_len());
        }
        chunk.push(command);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// The byte budget of one message or answer: items are taken while they
/// fit, and the first one always is, so a reply makes progress whatever the
/// size of its items.
#[derive(Clone, Debug)]
pub(crate) struct ByteBudget {
    limit: usize,
    used: usize,
    taken: usize,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            taken: 0,
        }
    }

    /// Take an item of `size` bytes if it fits (or if it would be the first).
    pub(crate) fn take(&mut self, size: usize) -> bool {
        if self.taken > 0 && self.used.saturating_add(size) > self.limit {
            return false;
        }
        self.used = self.used.saturating_add(size);
        self.taken += 1;
        true
    }
}

/// The name of a single-decree Paxos instance ("decide once" register).
pub type InstanceName = String;
