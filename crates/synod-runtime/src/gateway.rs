//! The gateway: how commands enter the cluster through one node and how
//! their answers come back. Shared by the embedding API ([`crate::Node`])
//! and the client port ([`crate::client_server`]).

use actix::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use synod_acceptor::AcceptorActor;
use synod_core::{Command, CommandId, Message, RoleId};
use synod_learner::{Decision, LearnerActor, LearnerStatus, StateMachine, Subscribe, WatchCommand};
use synod_proposer::{ProposerActor, ProposerStatus, Submit};
use synod_storage::RocksStore;
use synod_transport::{Outbound, OutboundBatch};
use tokio::sync::{mpsc, oneshot};

use crate::router::Router;

/// A command was not answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// This node has no learner, so it cannot answer clients.
    #[error("node has no learner; submit to a node that hosts one")]
    NoLearner,
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The local proposer's queue is full; retry later.
    #[error("proposer is busy; retry later")]
    Busy,
    /// Not decided within the submit timeout (it may still be decided later).
    #[error("command not decided within {0:?}")]
    Timeout(Duration),
    /// The payload is larger than `paxos.max_command_bytes`; nothing was
    /// submitted. (A larger command could not travel in one frame.)
    #[error("command of {len} bytes exceeds the {limit}-byte limit (paxos.max_command_bytes)")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A node's view of its roles.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// Its role instances.
    pub roles: Vec<RoleId>,
    /// Its proposers.
    pub proposers: Vec<ProposerStatus>,
    /// Its learners.
    pub learners: Vec<LearnerStatus>,
    /// Role instances that have stopped (after a failed disk write, say)
    /// while the node goes on serving with the rest.
    pub stopped: Vec<RoleId>,
}

/// Submission state of one node.
pub(crate) struct Gateway<M: StateMachine> {
    pub(crate) name: String,
    pub(crate) roles: Vec<RoleId>,
    pub(crate) router: Addr<Router>,
    pub(crate) proposers: Vec<(RoleId, Addr<ProposerActor<RocksStore>>)>,
    pub(crate) acceptors: Vec<(RoleId, Addr<AcceptorActor<RocksStore>>)>,
    pub(crate) learners: Vec<(RoleId, Addr<LearnerActor<RocksStore, M>>)>,
    pub(crate) all_proposers: Vec<u32>,
    pub(crate) client: u64,
    pub(crate) next_seq: AtomicU64,
    pub(crate) accepting: AtomicBool,
    pub(crate) submit_timeout: Duration,
    pub(crate) submit_retry: Duration,
    pub(crate) max_command_bytes: usize,
}

impl<M: StateMachine> Gateway<M> {
    pub(crate) async fn submit(&self, payload: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.submit_as(
            CommandId {
                client: self.client,
                seq,
            },
            payload,
        )
        .await
    }

    pub(crate) async fn submit_as(
        &self,
        id: CommandId,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, SubmitError> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        if payload.len() > self.max_command_bytes {
            return Err(SubmitError::TooLarge {
                len: payload.len(),
                limit: self.max_command_bytes,
            });
        }
        let (learner_id, learner) = self.learners.first().ok_or(SubmitError::NoLearner)?;
        let command = Command { id, payload };
        let (reply, mut response) = oneshot::channel();
        learner
            .send(WatchCommand { id, reply })
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        let deadline = Instant::now() + self.submit_timeout;
        // Resends back off (doubling): under load a command is slow, not
        // lost, and every copy is more bytes for the leader to push.
        let mut resend_after = self.submit_retry;
        for attempt in 0.. {
            self.send_command(*learner_id, command.clone(), attempt)
                .await?;
            let wait = resend_after.min(deadline.saturating_duration_since(Instant::now()));
            resend_after = resend_after.saturating_mul(2);
            match tokio::time::timeout(wait, &mut response).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(_)) => return Err(SubmitError::ShuttingDown),
                Err(_) if Instant::now() >= deadline => {
                    return Err(SubmitError::Timeout(self.submit_timeout));
                }
                Err(_) => continue,
            }
        }
        unreachable!("the loop returns")
    }

    /// Hand `command` to a local proposer, or forward it to a remote one
    /// (a different one on each attempt).
    async fn send_command(
        &self,
        learner: RoleId,
        command: Command,
        attempt: usize,
    ) -> Result<(), SubmitError> {
        if let Some((_, proposer)) = self.proposers.first() {
            return match proposer.send(Submit(vec![command])).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_busy)) => Err(SubmitError::Busy),
                Err(_) => Err(SubmitError::ShuttingDown),
            };
        }
        let Some(target) = self
            .all_proposers
            .get(attempt % self.all_proposers.len().max(1))
        else {
            return Err(SubmitError::Busy);
        };
        let forward = Outbound {
            from: learner,
            to: RoleId::proposer(*target),
            message: Message::Forward {
                commands: vec![command],
            },
        };
        self.router.do_send(OutboundBatch(vec![forward]));
        Ok(())
    }

    pub(crate) async fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Decision>, SubmitError> {
        let (_, learner) = self.learners.first().ok_or(SubmitError::NoLearner)?;
        let (sender, receiver) = mpsc::channel(capacity);
        learner
            .send(Subscribe(sender))
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        Ok(receiver)
    }

    pub(crate) async fn status(&self) -> NodeStatus {
        let mut proposers = Vec::new();
        for (_, p) in &self.proposers {
            if let Ok(status) = p.send(synod_proposer::GetStatus).await {
                proposers.push(status);
            }
        }
        let mut learners = Vec::new();
        for (_, l) in &self.learners {
            if let Ok(status) = l.send(synod_learner::GetStatus).await {
                learners.push(status);
            }
        }
        NodeStatus {
            node: self.name.clone(),
            roles: self.roles.clone(),
            proposers,
            learners,
            stopped: self.stopped_roles(),
        }
    }

    fn stopped_roles(&self) -> Vec<RoleId> {
        let proposers = self.proposers.iter().map(|(id, a)| (*id, a.connected()));
        let acceptors = self.acceptors.iter().map(|(id, a)| (*id, a.connected()));
        let learners = self.learners.iter().map(|(id, a)| (*id, a.connected()));
        let mut stopped: Vec<RoleId> = proposers
            .chain(acceptors)
            .chain(learners)
            .filter_map(|(id, running)| (!running).then_some(id))
            .collect();
        stopped.sort();
        stopped
    }
}
