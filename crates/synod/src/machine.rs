//! The state machine `synod` runs until the key/value service lands: it
//! counts applied commands and answers each with its position.

use synod_core::Command;
use synod_runtime::StateMachine;

/// Answers every command with how many commands were applied before it
/// (eight bytes, big-endian). Deterministic, so every learner agrees.
#[derive(Debug, Default)]
pub struct AppliedCounter {
    applied: u64,
}

impl StateMachine for AppliedCounter {
    fn apply(&mut self, _command: &Command) -> Vec<u8> {
        let position = self.applied;
        self.applied += 1;
        position.to_be_bytes().to_vec()
    }
}
