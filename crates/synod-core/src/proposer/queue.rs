//! The proposer's queue of commands waiting for a slot (or for a leader to
//! forward to). A command already waiting is not queued again: clients
//! resend a command (same id) until it is answered, and under load those
//! copies would otherwise pile up behind the original and multiply the
//! bytes the leader has to push through.

use crate::types::{Command, CommandId};
use std::collections::{HashSet, VecDeque};

#[derive(Clone, Debug, Default)]
pub(super) struct CommandQueue {
    commands: VecDeque<Command>,
    ids: HashSet<CommandId>,
    /// The commands' encoded bytes, summed.
    bytes: usize,
}

impl CommandQueue {
    pub(super) fn len(&self) -> usize {
        self.commands.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    pub(super) fn front(&self) -> Option<&Command> {
        self.commands.front()
    }

    /// The waiting commands' encoded bytes, summed.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queue `commands` at the back, skipping any already waiting.
    pub(super) fn extend(&mut self, commands: impl IntoIterator<Item = Command>) {
        for command in commands {
            if self.ids.insert(command.id) {
                self.bytes += command.encoded_len();
                self.commands.push_back(command);
            }
        }
    }

    /// Put `command` back at the front (its slot was abandoned), unless a
    /// copy is already waiting.
    pub(super) fn push_front(&mut self, command: Command) {
        if self.ids.insert(command.id) {
            self.bytes += command.encoded_len();
            self.commands.push_front(command);
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<Command> {
        let command = self.commands.pop_front()?;
        self.ids.remove(&command.id);
        self.bytes -= command.encoded_len();
        Some(command)
    }

    /// Everything waiting, in order, leaving the queue empty.
    pub(super) fn take_all(&mut self) -> Vec<Command> {
        self.ids.clear();
        self.bytes = 0;
        self.commands.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(client: u64, seq: u64) -> Command {
        Command {
            id: CommandId { client, seq },
            payload: vec![seq as u8],
        }
    }

    #[test]
    fn a_command_already_waiting_is_not_queued_twice() {
        let mut queue = CommandQueue::default();
        queue.extend([command(1, 1), command(1, 2), command(1, 1)]);
        assert_eq!(queue.len(), 2);
        queue.push_front(command(1, 2));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop_front(), Some(command(1, 1)));
        // Once it has left the queue, the same id may be queued again.
        queue.extend([command(1, 1)]);
        assert_eq!(queue.take_all(), vec![command(1, 2), command(1, 1)]);
        assert!(queue.is_empty());
        queue.extend([command(1, 2)]);
        assert_eq!(queue.len(), 1, "take_all forgets the ids too");
    }
}
