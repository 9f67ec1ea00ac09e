//! The replicated state machine an application plugs into the learners.

use std::fmt;
use std::io::{Read, Write};
use synod_core::{ClockStamp, Command, CommandId, Slot};

/// A deterministic replicated state machine: the same commands in the same
/// order give the same responses on every learner.
///
/// **Snapshots.** A learner bounds its log by asking the machine for a
/// snapshot of everything applied so far ([`StateMachine::snapshot`]) and
/// dropping the log below it; a learner that restarts, or lags behind what
/// the others kept, restores one ([`StateMachine::restore`]) and applies
/// only the tail. Both stream: the machine writes and reads its own format
/// through `std::io`, and the learner frames, checksums and stores the
/// bytes. Restoring a snapshot and applying the commands after it must
/// leave the machine exactly as applying every command from the start
/// would (including what [`StateMachine::response_to`] answers).
pub trait StateMachine: Unpin + 'static {
    /// Apply one command and return its response.
    fn apply(&mut self, command: &Command) -> Vec<u8>;

    /// A leader's clock stamp reached this point of the log (every
    /// `paxos.clock_interval` while a leader leads). A machine that needs
    /// time (to expire leases, say) counts it from these stamps, in log
    /// order, never from a clock of its own: then every learner expires
    /// the same thing at the same point. See [`ClockStamp`] for what the
    /// readings mean across leaders.
    fn clock(&mut self, stamp: ClockStamp) {
        let _ = stamp;
    }

    /// The response this machine gave to command `id`, if it still keeps
    /// it. A client that retries a command already applied (through this
    /// or another node) gets the original answer instead of a timeout.
    fn response_to(&self, id: CommandId) -> Option<Vec<u8>> {
        let _ = id;
        None
    }

    /// Answer the read-only `request` from the state as applied so far,
    /// without going through the log: the answer may be stale (the caller
    /// opted into that) and is never recorded. `None`: this machine serves
    /// no such reads.
    fn query(&self, request: &[u8]) -> Option<Vec<u8>> {
        let _ = request;
        None
    }

    /// Write the whole state, as of the last command applied, to `out`.
    fn snapshot(&self, out: &mut dyn Write) -> std::io::Result<()>;

    /// The whole state as of the last command applied, to be written later
    /// (the learner writes it off its actor, while it applies what comes
    /// next): what [`StateMachine::snapshot`] would write, byte for byte.
    /// The default writes it into memory now. A machine that can share
    /// the parts of its state that no command changes again (sealed
    /// chunks of a history, say) returns them instead, so the learner
    /// pauses only for what it must copy.
    fn snapshot_image(&self) -> SnapshotImage {
        let mut bytes = Vec::new();
        let written = self.snapshot(&mut bytes);
        Box::new(move |out: &mut dyn Write| {
            written?;
            out.write_all(&bytes)
        })
    }

    /// Replace the whole state with the snapshot read from `input`. On an
    /// error the machine may be left in any state; the learner discards it.
    fn restore(&mut self, input: &mut dyn Read) -> Result<(), SnapshotError>;
}

/// A state machine's snapshot taken at one point of the log and written
/// later, on any thread ([`StateMachine::snapshot_image`]).
pub type SnapshotImage = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

/// A snapshot could not be restored.
#[derive(Debug)]
pub enum SnapshotError {
    /// Reading it failed.
    Io(std::io::Error),
    /// It is not a snapshot this machine wrote, or it is damaged or cut short.
    Invalid(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "reading the snapshot failed: {error}"),
            Self::Invalid(why) => write!(f, "invalid snapshot: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<std::io::Error> for SnapshotError {
    fn from(error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::UnexpectedEof => Self::Invalid("cut short".into()),
            _ => Self::Io(error),
        }
    }
}

/// One decision, as subscribers see it, in slot order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A log slot was applied.
    Slot {
        /// The slot.
        slot: Slot,
        /// Its commands that were applied (retried duplicates left out).
        commands: Vec<Command>,
        /// The state machine's response to each command.
        responses: Vec<Vec<u8>>,
    },
    /// A single-decree instance was decided.
    Instance {
        /// The instance.
        name: String,
        /// Its value.
        value: Vec<u8>,
    },
}
