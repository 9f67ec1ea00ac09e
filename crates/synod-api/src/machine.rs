//! The replicated state machine an application plugs into the learners.

use synod_core::{Command, CommandId, Slot};

/// A deterministic replicated state machine: the same commands in the same
/// order give the same responses on every learner.
pub trait StateMachine: Unpin + 'static {
    /// Apply one command and return its response.
    fn apply(&mut self, command: &Command) -> Vec<u8>;

    /// The response this machine gave to command `id`, if it still keeps
    /// it. A client that retries a command already applied (through this
    /// or another node) gets the original answer instead of a timeout.
    fn response_to(&self, id: CommandId) -> Option<Vec<u8>> {
        let _ = id;
        None
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
