//! The client protocol: length-prefixed postcard frames on a node's client
//! port (separate from the node-to-node port, so a client can never speak
//! the Paxos protocol or pose as a node).
//!
//! ```text
//! client → Hello { version, cluster, token }      node → Welcome { node } | Refused { reason }
//! client → Submit { id, payload }                  node → Response { id, payload } | Failed { id, error }
//! client → Status                                  node → Status(StatusReport)
//! client → Backup                                  node → BackupChunk … (the last one ends at `total`) | BackupFailed
//! client → Query { tag, payload }                  node → QueryAnswer { tag, payload } | QueryFailed { tag, error }
//! client → Decide { tag, name, value }             node → Decision { tag, value } | QueryFailed { tag, error }
//! ```
//!
//! **Sessions.** Commands are numbered per client session. A client opens
//! one with `Submit { id: (nonce, OPEN_SESSION), payload: [] }`, where the
//! nonce is any number it picks; the `Response` payload is the session id
//! (8 bytes, big-endian), assigned by the log. It then submits commands
//! `(session, 1)`, `(session, 2)`, …; resubmitting an id is a safe retry.
//! A session idle for long is forgotten (`paxos.session_horizon` slots):
//! its commands then fail with [`Failure::SessionExpired`], unapplied, and
//! the client opens a new session. Version 3 introduced sessions; version 4
//! configurations that name proposers and learners ([`MemberIds`]); version
//! 5 the roles a configuration moved to other nodes (`MemberIds::moved`).
//!
//! Tags are wire tags: never reorder.

use serde::{Deserialize, Serialize};
use synod_core::CommandId;

/// The client protocol version.
pub const CLIENT_PROTOCOL_VERSION: u16 = 5;

/// The sequence number that opens a session (see the module docs).
pub const OPEN_SESSION: u64 = synod_core::OPEN_SESSION;

/// Largest client frame (a command payload plus framing). Frames are a
/// 4-byte big-endian length, then a postcard-encoded [`Request`] or [`Reply`].
pub const MAX_CLIENT_FRAME: usize = 4 * 1024 * 1024;

/// Client → node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Tag 0: first frame on a connection.
    Hello {
        /// Must be [`CLIENT_PROTOCOL_VERSION`].
        version: u16,
        /// Must be the node's cluster id.
        cluster: String,
        /// Must equal `cluster.client_token` when the cluster sets one.
        token: Option<String>,
    },
    /// Tag 1: a command; resubmitting the same id is a safe retry.
    Submit {
        /// The command id (client, sequence number).
        id: CommandId,
        /// The state machine command.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Tag 2: the node's view of its roles.
    Status,
    /// Tag 3: a fresh snapshot of the node's learner, consistent at one
    /// slot, streamed back as [`Reply::BackupChunk`]s.
    Backup,
    /// Tag 4: a read-only request answered from this node's learner as
    /// applied so far, without the log (serializable, may be stale;
    /// `StateMachine::query`). `tag` is the client's, echoed in the answer.
    Query {
        /// Matches the answer to the request.
        tag: u64,
        /// The state machine's read request.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Tag 5: single-decree instance `name` (a decide-once register):
    /// with a `value`, propose it and answer with the value chosen (this
    /// one, or one proposed earlier or concurrently: every caller gets the
    /// same); without, answer with the value chosen so far, if any. `tag`
    /// is the client's, echoed in the answer; asking again is safe.
    Decide {
        /// Matches the answer to the request.
        tag: u64,
        /// The instance.
        name: String,
        /// The value to propose (`None`: only read).
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
    },
    /// Tag 6: like [`Request::Query`], but linearizable: answered after
    /// the leader confirmed its leadership and this node's learner applied
    /// everything decided before the request (read index). No log slot,
    /// no disk write. Answered [`Reply::QueryAnswer`] or
    /// [`Reply::QueryFailed`].
    Read {
        /// Matches the answer to the request.
        tag: u64,
        /// The state machine's read request.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Tag 7: the configuration this node's proposer works in, answered
    /// [`Reply::Members`] (or [`Reply::Reconfiguring`] with a reason, on a
    /// node without a proposer).
    Members {
        /// Matches the answer to the request.
        tag: u64,
    },
    /// Tag 8: make `members` the configuration `epoch` (the one after the
    /// current). The node's proposer proposes it if it leads, else
    /// forwards it to the leader; answered [`Reply::Reconfiguring`]. The
    /// change is done once [`Request::Members`] reports `epoch` with its
    /// instances carried.
    Reconfigure {
        /// Matches the answer to the request.
        tag: u64,
        /// The epoch the new configuration is (current + 1).
        epoch: u32,
        /// Its roles (each placed under `[roles]`).
        members: MemberIds,
    },
}

/// Node → client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Tag 0: hello accepted.
    Welcome {
        /// The node's name.
        node: String,
    },
    /// Tag 1: hello refused; the connection closes.
    Refused {
        /// Why.
        reason: String,
    },
    /// Tag 2: the state machine's response to command `id`.
    Response {
        /// The command.
        id: CommandId,
        /// The response.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Tag 3: command `id` was not answered here.
    Failed {
        /// The command.
        id: CommandId,
        /// Why.
        error: Failure,
    },
    /// Tag 4: the node's status.
    Status(StatusReport),
    /// Tag 5: bytes of the snapshot file a [`Request::Backup`] asked for,
    /// in order; the file is complete when `offset + data.len() == total`.
    BackupChunk {
        /// Every slot below this is in the snapshot.
        upto: u64,
        /// Where `data` starts in the file.
        offset: u64,
        /// The file's length.
        total: u64,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Tag 6: no backup from this node.
    BackupFailed {
        /// Why.
        reason: String,
    },
    /// Tag 7: the answer to [`Request::Query`] `tag`.
    QueryAnswer {
        /// The request's tag.
        tag: u64,
        /// The state machine's answer.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Tag 8: [`Request::Query`] or [`Request::Decide`] `tag` was not
    /// answered here.
    QueryFailed {
        /// The request's tag.
        tag: u64,
        /// Why.
        error: Failure,
    },
    /// Tag 9: the answer to [`Request::Decide`] `tag`: the chosen value
    /// (`None`: a read of an instance not decided yet).
    Decision {
        /// The request's tag.
        tag: u64,
        /// The chosen value.
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
    },
    /// Tag 10: the answer to [`Request::Members`].
    Members {
        /// The request's tag.
        tag: u64,
        /// The configuration.
        members: MembersReport,
    },
    /// Tag 11: the answer to [`Request::Reconfigure`] (and to
    /// [`Request::Members`] on a node that cannot answer it): `None` if
    /// the change went to the leader, else why not.
    Reconfiguring {
        /// The request's tag.
        tag: u64,
        /// Why the change was refused.
        refused: Option<String>,
    },
}

/// The role instances of a configuration, by id (`acceptor-N`'s N),
/// each list ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberIds {
    /// The acceptors that vote.
    pub acceptors: Vec<u32>,
    /// The proposers that may lead (the others only forward).
    pub proposers: Vec<u32>,
    /// The learners whose snapshots the trim point waits for (the others
    /// learn, but may have to catch up from a peer's snapshot).
    pub learners: Vec<u32>,
    /// Roles the log placed on another node than the config file does
    /// (`synod member move`): the role (`proposer-2`) and its node,
    /// ascending by role.
    pub moved: Vec<(String, String)>,
}

/// A proposer's view of the current configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersReport {
    /// The proposer answering, e.g. `proposer-1`.
    pub proposer: String,
    /// The leader it knows.
    pub leader: Option<u32>,
    /// The configuration's epoch (0: the one the cluster started with).
    pub epoch: u32,
    /// The first slot it decides.
    pub start: u64,
    /// The roles in it.
    pub members: MemberIds,
    /// Its quorums, described.
    pub quorums: String,
    /// Every single-decree instance of earlier epochs is carried into it:
    /// the earlier acceptors are no longer needed. Known to the leader
    /// that carried them (a follower says `false` until it leads and
    /// checks).
    pub instances_carried: bool,
}

/// Bytes of snapshot file per [`Reply::BackupChunk`].
pub const BACKUP_CHUNK: usize = 1024 * 1024;

/// Why a node did not answer a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// Tag 0: the node has no learner; try another.
    NoLearner,
    /// Tag 1: the proposer's queue is full; back off.
    Busy,
    /// Tag 2: not decided in time (may still be decided; retry with the same id).
    Timeout,
    /// Tag 3: the node is shutting down.
    ShuttingDown,
    /// Tag 4: the command is larger than the cluster takes
    /// (`paxos.max_command_bytes`); it was not submitted.
    TooLarge {
        /// The command's payload length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Tag 5: the command's session is unknown or expired; it was not
    /// applied. Open a new session.
    SessionExpired,
    /// Tag 6: the request is not a command the node takes (sequence
    /// number 0 with a payload: 0 opens a session, commands count from 1).
    InvalidCommand,
    /// Tag 7: the node's state machine serves no reads outside the log
    /// ([`Request::Query`]); submit the read as a command.
    NoQueries,
    /// Tag 8: a new single-decree instance was refused: the cluster keeps
    /// `limit` decided ones already (`paxos.max_instances`).
    TooManyInstances {
        /// The limit.
        limit: u64,
    },
}

/// What a node reports about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node.
    pub node: String,
    /// Its role instances.
    pub roles: Vec<String>,
    /// Its proposers.
    pub proposers: Vec<ProposerReport>,
    /// Its learners.
    pub learners: Vec<LearnerReport>,
    /// Role instances that have stopped (after a failed disk write, say)
    /// while the node serves on with the rest.
    pub stopped: Vec<String>,
}

/// One proposer's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposerReport {
    /// The proposer, e.g. `proposer-1`.
    pub id: String,
    /// The leader it knows.
    pub leader: Option<u32>,
    /// Its ballot `(round, proposer)` when it leads.
    pub ballot: Option<(u64, u32)>,
    /// Every slot below this is decided.
    pub decided_upto: u64,
}

/// One learner's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerReport {
    /// The learner, e.g. `learner-1`.
    pub id: String,
    /// Every slot below this is applied.
    pub applied: u64,
    /// Decided slots it holds.
    pub decided: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Serialize>(value: &T) -> Vec<u8> {
        postcard::to_stdvec(value).unwrap()
    }

    /// Tags are the wire: a client of one build must keep talking to a
    /// node of the next.
    #[test]
    fn request_and_reply_tags_are_pinned() {
        let id = CommandId { client: 2, seq: 3 };
        let submit = Request::Submit {
            id,
            payload: vec![9],
        };
        assert_eq!(bytes(&submit), vec![1, 2, 3, 1, 9]);
        assert_eq!(bytes(&Request::Backup), vec![3]);
        let query = Request::Query {
            tag: 5,
            payload: vec![9],
        };
        assert_eq!(bytes(&query), vec![4, 5, 1, 9]);
        let answer = Reply::QueryAnswer {
            tag: 5,
            payload: vec![8],
        };
        assert_eq!(bytes(&answer), vec![7, 5, 1, 8]);
        let refused = Reply::QueryFailed {
            tag: 5,
            error: Failure::NoQueries,
        };
        assert_eq!(bytes(&refused), vec![8, 5, 7]);
        let failed = Reply::Failed {
            id,
            error: Failure::Busy,
        };
        assert_eq!(bytes(&failed), vec![3, 2, 3, 1]);
        let decide = Request::Decide {
            tag: 5,
            name: "r".into(),
            value: Some(vec![7]),
        };
        assert_eq!(bytes(&decide), vec![5, 5, 1, b'r', 1, 1, 7]);
        let decision = Reply::Decision {
            tag: 5,
            value: None,
        };
        assert_eq!(bytes(&decision), vec![9, 5, 0]);
        let full = Reply::QueryFailed {
            tag: 5,
            error: Failure::TooManyInstances { limit: 4 },
        };
        assert_eq!(bytes(&full), vec![8, 5, 8, 4]);
        let read = Request::Read {
            tag: 5,
            payload: vec![9],
        };
        assert_eq!(bytes(&read), vec![6, 5, 1, 9]);
        assert_eq!(bytes(&Request::Members { tag: 5 }), vec![7, 5]);
        let members = MemberIds {
            acceptors: vec![2],
            proposers: vec![1],
            learners: vec![3, 4],
            moved: vec![("proposer-1".into(), "n2".into())],
        };
        let change = Request::Reconfigure {
            tag: 5,
            epoch: 1,
            members,
        };
        let mut expected = vec![8, 5, 1, 1, 2, 1, 1, 2, 3, 4, 1, 10];
        expected.extend(b"proposer-1");
        expected.extend([2, b'n', b'2']);
        assert_eq!(bytes(&change), expected);
        let done = Reply::Reconfiguring {
            tag: 5,
            refused: None,
        };
        assert_eq!(bytes(&done), vec![11, 5, 0]);
    }
}
