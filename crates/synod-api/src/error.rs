//! Why a command was not answered.

use crate::wire::Failure;
use std::fmt;
use std::time::Duration;

/// A command was not answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// This node has no learner, so it cannot answer clients.
    NoLearner,
    /// The node is shutting down.
    ShuttingDown,
    /// The local proposer's queue is full; retry later.
    Busy,
    /// Not decided within the submit timeout (it may still be decided later).
    Timeout(Duration),
    /// The payload is larger than `paxos.max_command_bytes`; nothing was
    /// submitted. (A larger command could not travel in one frame.)
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The command's session is unknown or expired: it was not applied,
    /// and never will be under this id. Open a new session and resubmit.
    SessionExpired,
    /// The learner jumped past the command by installing a snapshot that
    /// no longer holds its response: it may or may not have been applied
    /// (retrying it with the same id is safe).
    OutcomeUnknown,
    /// The command cannot be a command: sequence number 0 opens a session
    /// and carries no payload; a command is numbered from 1 in its session.
    InvalidCommand(&'static str),
    /// A read outside the log was asked of a state machine that serves
    /// none (`StateMachine::query` answered `None`).
    NoQueries,
    /// A new single-decree instance was refused: the cluster already keeps
    /// `limit` decided ones (`paxos.max_instances`).
    TooManyInstances {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLearner => write!(f, "node has no learner; submit to a node that hosts one"),
            Self::ShuttingDown => write!(f, "node is shutting down"),
            Self::Busy => write!(f, "proposer is busy; retry later"),
            Self::Timeout(after) => write!(f, "command not decided within {after:?}"),
            Self::TooLarge { len, limit } => write!(
                f,
                "command of {len} bytes exceeds the {limit}-byte limit (paxos.max_command_bytes)"
            ),
            Self::SessionExpired => write!(
                f,
                "the client session is unknown or expired; the command was not applied"
            ),
            Self::OutcomeUnknown => write!(
                f,
                "the outcome is unknown (the learner installed a snapshot past it)"
            ),
            Self::InvalidCommand(why) => write!(f, "invalid command: {why}"),
            Self::NoQueries => write!(
                f,
                "this state machine serves no reads outside the log; submit the read as a command"
            ),
            Self::TooManyInstances { limit } => write!(
                f,
                "the cluster already keeps {limit} decided instances (paxos.max_instances); \
                 no new one is started"
            ),
        }
    }
}

impl std::error::Error for SubmitError {}

impl From<&SubmitError> for Failure {
    fn from(error: &SubmitError) -> Self {
        match error {
            SubmitError::NoLearner => Failure::NoLearner,
            SubmitError::Busy => Failure::Busy,
            SubmitError::Timeout(_) => Failure::Timeout,
            SubmitError::ShuttingDown => Failure::ShuttingDown,
            SubmitError::TooLarge { len, limit } => Failure::TooLarge {
                len: *len as u64,
                limit: *limit as u64,
            },
            SubmitError::SessionExpired => Failure::SessionExpired,
            // The same promise as a timeout: maybe applied; the same id is
            // a safe retry.
            SubmitError::OutcomeUnknown => Failure::Timeout,
            SubmitError::InvalidCommand(_) => Failure::InvalidCommand,
            SubmitError::NoQueries => Failure::NoQueries,
            SubmitError::TooManyInstances { limit } => Failure::TooManyInstances {
                limit: *limit as u64,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_wire_failure_and_a_message() {
        let errors = [
            SubmitError::NoLearner,
            SubmitError::ShuttingDown,
            SubmitError::Busy,
            SubmitError::Timeout(Duration::from_secs(1)),
            SubmitError::TooLarge { len: 9, limit: 8 },
            SubmitError::SessionExpired,
            SubmitError::OutcomeUnknown,
            SubmitError::NoQueries,
            SubmitError::TooManyInstances { limit: 3 },
        ];
        let failures: Vec<Failure> = errors.iter().map(Failure::from).collect();
        assert_eq!(
            failures[4],
            Failure::TooLarge { len: 9, limit: 8 },
            "sizes travel"
        );
        assert!(errors.iter().all(|e| !e.to_string().is_empty()));
    }
}
