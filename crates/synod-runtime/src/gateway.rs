//! The gateway: how commands enter the cluster through one node and how
//! their answers come back. Shared by the embedding API ([`crate::Node`])
//! and the client port ([`crate::client_server`]).

use actix::prelude::*;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use synod_api::wire::{MemberIds, MembersReport};
use synod_api::{Decision, SubmitError};
use synod_core::{Command, CommandId, Membership, Message, OPEN_SESSION, Role, RoleId};
use synod_roles::{
    AcceptorStatus, AnswerQueue, GetStatus, InstanceValue, LeaderHint, LearnerStatus,
    ProposeInstance, ProposerStatus, Query, ReadAt, Reconfigure, ReplyTo, RoleStatus, Stop, Submit,
    Subscribe, TakeSnapshot, Unwatch, WatchCommand, WatchCommands, WatchInstance,
};
use synod_storage::Snapshot;
use synod_transport::{Outbound, OutboundBatch};
use tokio::sync::futures::Notified;
use tokio::sync::{mpsc, oneshot};

use crate::intake::{Destination, Intake, Told, submit_to};
use crate::router::Router;

/// A node's view of its roles.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// Its role instances.
    pub roles: Vec<RoleId>,
    /// Its proposers.
    pub proposers: Vec<ProposerStatus>,
    /// Its acceptors.
    pub acceptors: Vec<AcceptorStatus>,
    /// Its learners.
    pub learners: Vec<LearnerStatus>,
    /// Role instances that have stopped (after a failed disk write, say)
    /// while the node goes on serving with the rest.
    pub stopped: Vec<RoleId>,
    /// Commands this node's gateway sent again: after `paxos.submit_retry`
    /// passed without an answer, or when the leader changed.
    pub resends: u64,
    /// Commands this node's gateway saw answered.
    pub commands_answered: u64,
    /// The sum of their submit-to-answer times, in seconds.
    pub commands_seconds: f64,
}

/// A role actor as the node sees it, whatever its core and store.
#[derive(Clone)]
pub(crate) struct RunningRole {
    pub(crate) id: RoleId,
    pub(crate) stop: Recipient<Stop>,
    pub(crate) status: Recipient<GetStatus>,
}

/// The local proposer commands go to.
#[derive(Clone)]
pub(crate) struct ProposerPort {
    pub(crate) id: RoleId,
    pub(crate) submit: Recipient<Submit>,
    pub(crate) propose: Recipient<ProposeInstance>,
    pub(crate) reconfigure: Recipient<Reconfigure>,
}

/// What a configuration change may name, from the config file: the
/// roles placed (every node routes to them) and where, and the quorum
/// settings applied to the new number of acceptors.
pub(crate) struct MembershipRules {
    pub(crate) placed: MemberIds,
    /// Every role's node in the config file.
    pub(crate) placement: std::collections::BTreeMap<RoleId, String>,
    /// The nodes a role may move to.
    pub(crate) nodes: Vec<String>,
    pub(crate) quorums: crate::config::QuorumSettings,
}

impl MembershipRules {
    /// `wanted` as configuration `epoch`, if every role in it is placed
    /// and every move is one the runtime carries out (proposers and
    /// learners; an acceptor's promises stay in its store).
    fn configuration(&self, epoch: u32, wanted: MemberIds) -> Result<Membership, String> {
        let placed = &self.placed;
        let acceptors = placed_ids("acceptor", wanted.acceptors, &placed.acceptors)?;
        let proposers = placed_ids("proposer", wanted.proposers, &placed.proposers)?;
        let learners = placed_ids("learner", wanted.learners, &placed.learners)?;
        Ok(Membership {
            epoch,
            quorums: self.quorums.quorums(acceptors.len()),
            acceptors,
            proposers,
            learners,
            moved: self.moves(wanted.moved)?,
        })
    }

    /// `wanted` moves, checked, ascending by role, without the ones that
    /// put a role back on its config file's node.
    fn moves(&self, wanted: Vec<(String, String)>) -> Result<Vec<(RoleId, String)>, String> {
        let mut moved = std::collections::BTreeMap::new();
        for (name, node) in wanted {
            let role = crate::config::parse_role(&name)
                .filter(|role| self.placement.contains_key(role))
                .ok_or_else(|| format!("{name} is not placed under [roles]"))?;
            if !self.nodes.contains(&node) {
                return Err(format!(
                    "there is no node {node:?} under [nodes]; known: {}",
                    self.nodes.join(", ")
                ));
            }
            if role.role == Role::Acceptor {
                return Err(format!(
                    "{role} does not move: its promises are in its store on its node. Place a new acceptor id on {node} and `synod member replace {role} acceptor-N`"
                ));
            }
            if self.placement.get(&role) == Some(&node) {
                moved.remove(&role);
            } else {
                moved.insert(role, node);
            }
        }
        Ok(moved.into_iter().collect())
    }
}

/// `ids` of `kind`, ascending and distinct, if each is `placed`.
fn placed_ids(kind: &str, mut ids: Vec<u32>, placed: &[u32]) -> Result<Vec<u32>, String> {
    if let Some(id) = ids.iter().find(|id| !placed.contains(id)) {
        return Err(format!(
            "{kind}-{id} is not placed under [roles]: place it on a node in every node's config and restart them first"
        ));
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The local learner answers come from.
#[derive(Clone)]
pub(crate) struct LearnerPort {
    pub(crate) id: RoleId,
    pub(crate) watch: Recipient<WatchCommands>,
    pub(crate) unwatch: Recipient<Unwatch>,
    pub(crate) subscribe: Recipient<Subscribe>,
    pub(crate) snapshot: Recipient<TakeSnapshot>,
    pub(crate) query: Recipient<Query>,
    pub(crate) watch_instance: Recipient<WatchInstance>,
    pub(crate) instance_value: Recipient<InstanceValue>,
    pub(crate) read_at: Recipient<ReadAt>,
    /// The proposer the learner last heard leading: where a node without
    /// a proposer forwards commands.
    pub(crate) leader: Rc<LeaderHint>,
}

/// The gateway's own client session.
#[derive(Debug, Default)]
pub(crate) struct Session {
    id: Option<u64>,
    last_seq: u64,
}

impl Session {
    fn next(&mut self) -> Option<CommandId> {
        let client = self.id?;
        self.last_seq += 1;
        Some(CommandId {
            client,
            seq: self.last_seq,
        })
    }
}

/// Submission state of one node.
pub(crate) struct Gateway {
    pub(crate) name: String,
    pub(crate) router: Addr<Router>,
    /// The roles running here (the placement the log decides may move
    /// some away and others here while the node runs).
    pub(crate) roles: RefCell<Vec<RunningRole>>,
    /// Its proposers; commands go to the first. Shared, so taking the
    /// first for a command costs a count, not a clone of every recipient.
    pub(crate) proposers: RefCell<Vec<Rc<ProposerPort>>>,
    /// Its learners; answers come from the first.
    pub(crate) learners: RefCell<Vec<Rc<LearnerPort>>>,
    pub(crate) all_proposers: Vec<u32>,
    /// The session `submit` numbers its commands in, once opened.
    pub(crate) session: RefCell<Session>,
    /// Held while a session is being opened, so only one open is.
    pub(crate) opening: tokio::sync::Mutex<()>,
    /// Nonces for session opens (random start).
    pub(crate) next_nonce: AtomicU64,
    /// Ids of read-index reads (random start, so a late answer to a read
    /// of an earlier run never matches one of this run).
    pub(crate) next_read: AtomicU64,
    pub(crate) accepting: AtomicBool,
    pub(crate) submit_timeout: Duration,
    pub(crate) submit_retry: Duration,
    pub(crate) max_command_bytes: usize,
    /// Most decided single-decree instances before new ones are refused.
    pub(crate) max_instances: usize,
    /// Batches first sends (none without a learner), to the first
    /// learner and proposer; rebuilt when they change.
    pub(crate) intake: RefCell<Option<Rc<Intake>>>,
    /// The largest `Forward` the intake sends (`paxos.batch_max_bytes`).
    pub(crate) forward_max_bytes: usize,
    /// What `synod member` may ask for.
    pub(crate) membership: MembershipRules,
    /// Commands sent again (after `submit_retry`, or at a leader change).
    pub(crate) resends: Cell<u64>,
    /// Commands answered, and how long each took.
    pub(crate) answered: Answered,
}

/// Commands a gateway saw answered: a count and the sum of their
/// submit-to-answer times (for a mean over any interval), and the same
/// times into the node's histogram when it keeps metrics.
#[derive(Default)]
pub(crate) struct Answered {
    count: Cell<u64>,
    seconds: Cell<f64>,
    histogram: Option<metrics::Histogram>,
}

impl Answered {
    pub(crate) fn new(histogram: Option<metrics::Histogram>) -> Self {
        Answered {
            histogram,
            ..Default::default()
        }
    }

    fn record(&self, took: Duration) {
        self.count.set(self.count.get() + 1);
        self.seconds.set(self.seconds.get() + took.as_secs_f64());
        if let Some(histogram) = &self.histogram {
            histogram.record(took);
        }
    }
}

impl Gateway {
    /// The local proposer commands go to, if there is one.
    fn proposer(&self) -> Option<Rc<ProposerPort>> {
        self.proposers.borrow().first().cloned()
    }

    /// The local learner answers come from, if there is one.
    fn learner(&self) -> Option<Rc<LearnerPort>> {
        self.learners.borrow().first().cloned()
    }

    /// The roles running here, now.
    fn running(&self) -> Vec<RunningRole> {
        self.roles.borrow().clone()
    }

    /// `role` started here while the node runs: the placement moved it
    /// here.
    pub(crate) fn role_started(&self, role: RunningRole, port: StartedPort) {
        self.roles.borrow_mut().push(role);
        match port {
            StartedPort::Proposer(port) => self.proposers.borrow_mut().push(Rc::new(port)),
            StartedPort::Learner(port) => self.learners.borrow_mut().push(Rc::new(port)),
        }
        self.rebuild_intake();
    }

    /// `id` moved to another node: stop it (the writes it handed to its
    /// writer finish first) and send nothing more to it.
    pub(crate) fn role_moved_away(&self, id: RoleId) {
        let stopped = {
            let mut roles = self.roles.borrow_mut();
            let at = roles.iter().position(|r| r.id == id);
            at.map(|at| roles.remove(at))
        };
        if let Some(role) = stopped {
            role.stop.do_send(Stop);
        }
        self.proposers.borrow_mut().retain(|p| p.id != id);
        self.learners.borrow_mut().retain(|l| l.id != id);
        self.rebuild_intake();
    }

    /// A new intake over the learner and proposer there are now (batches
    /// already gathered leave as they were going to).
    fn rebuild_intake(&self) {
        let (learner, proposer) = (self.learner(), self.proposer());
        let max_bytes = self.forward_max_bytes;
        let intake = intake_for(
            learner.as_deref(),
            proposer.as_deref(),
            &self.router,
            max_bytes,
        );
        *self.intake.borrow_mut() = intake.map(Rc::new);
    }

    /// A fresh snapshot of the local learner (for a backup).
    pub(crate) async fn backup(&self) -> Result<Snapshot, String> {
        let learner = self.learner().ok_or("this node has no learner")?;
        let (reply, answer) = oneshot::channel();
        learner
            .snapshot
            .send(TakeSnapshot(reply))
            .await
            .map_err(|_| "the learner stopped")?;
        answer.await.map_err(|_| "the learner stopped")?
    }

    /// Submit `payload` in this gateway's session (opened on first use).
    /// A command refused because the session expired was not applied, so
    /// it is resubmitted once in a new session.
    pub(crate) async fn submit(&self, payload: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        let mut result = Err(SubmitError::SessionExpired);
        for _ in 0..2 {
            let id = self.next_id().await?;
            result = self.submit_as(id, payload.clone()).await;
            if result != Err(SubmitError::SessionExpired) {
                break;
            }
            let mut session = self.session.borrow_mut();
            if session.id == Some(id.client) {
                session.id = None;
            }
        }
        result
    }

    /// The next command id of this gateway's session, opening one first if
    /// there is none.
    async fn next_id(&self) -> Result<CommandId, SubmitError> {
        if let Some(id) = self.session.borrow_mut().next() {
            return Ok(id);
        }
        let _opening = self.opening.lock().await;
        if let Some(id) = self.session.borrow_mut().next() {
            return Ok(id); // another caller opened it meanwhile
        }
        let nonce = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        let open = CommandId {
            client: nonce,
            seq: OPEN_SESSION,
        };
        let answer = self.submit_as(open, Vec::new()).await?;
        let bytes: [u8; 8] = answer.try_into().map_err(|_| SubmitError::OutcomeUnknown)?;
        let mut session = self.session.borrow_mut();
        *session = Session {
            id: Some(u64::from_be_bytes(bytes)),
            last_seq: 0,
        };
        Ok(session.next().expect("just opened"))
    }

    pub(crate) async fn submit_as(
        &self,
        id: CommandId,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, SubmitError> {
        self.admit(id, &payload)?;
        let intake = self.intake.borrow().clone();
        let (learner, intake) = match (self.learner(), intake) {
            (Some(learner), Some(intake)) => (learner, intake),
            _ => return Err(SubmitError::NoLearner),
        };
        let command = Command { id, payload };
        let (reply, mut response) = oneshot::channel();
        let started = Instant::now();
        let deadline = started + self.submit_timeout;
        let reply = ReplyTo::One(reply);
        intake
            .send(WatchCommand { id, reply }, command.clone())
            .await?;
        // Resends back off (doubling): under load a command is slow, not
        // lost, and every copy is more bytes for the leader to push.
        let mut resend_after = self.submit_retry;
        for attempt in 0.. {
            let leader_changed = learner.leader.changed();
            if attempt > 0 {
                self.resends.set(self.resends.get() + 1);
                self.send_command(&learner, command.clone()).await?;
            }
            let wait = resend_after.min(deadline.saturating_duration_since(Instant::now()));
            resend_after = resend_after.saturating_mul(2);
            match answer_within(wait, leader_changed, &mut response).await {
                Some(Ok(answer)) => {
                    self.record_answer(started.elapsed());
                    return answer;
                }
                Some(Err(_)) => return Err(SubmitError::ShuttingDown),
                None if Instant::now() >= deadline => {
                    return Err(SubmitError::Timeout(self.submit_timeout));
                }
                None => continue,
            }
        }
        unreachable!("the loop returns")
    }

    /// Why command `id` with `payload` may not enter, if it may not.
    fn admit(&self, id: CommandId, payload: &[u8]) -> Result<(), SubmitError> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        if id.seq == OPEN_SESSION && !payload.is_empty() {
            return Err(SubmitError::InvalidCommand(
                "sequence number 0 opens a session and carries no payload; number commands from 1",
            ));
        }
        if payload.len() > self.max_command_bytes {
            return Err(SubmitError::TooLarge {
                len: payload.len(),
                limit: self.max_command_bytes,
            });
        }
        Ok(())
    }

    /// The client port's way in ([`Gateway::submit_as`] without a task
    /// per command): `command` leaves in this turn's batch, and its answer,
    /// or why there is none, arrives on `answers`. Resending and giving up
    /// are the caller's ([`crate::submissions`]). An error: refused
    /// before it went anywhere.
    pub(crate) fn enqueue(
        &self,
        command: Command,
        answers: &AnswerQueue,
    ) -> Result<(), SubmitError> {
        self.admit(command.id, &command.payload)?;
        let intake = self.intake.borrow().clone().ok_or(SubmitError::NoLearner)?;
        let id = command.id;
        let watch = WatchCommand {
            id,
            reply: ReplyTo::Queue(answers.clone()),
        };
        intake.push(watch, command, Told::Queue(id, answers.clone()));
        Ok(())
    }

    /// Send `commands` again, whose answers go to `answers` (the
    /// connection that enqueued them): to the local proposer, or else to
    /// every proposer, as [`Gateway::send_command`] does. A proposer that
    /// refuses them answers each with the reason.
    pub(crate) fn resend(&self, commands: Vec<Command>, answers: &AnswerQueue) {
        if commands.is_empty() {
            return;
        }
        self.resends.set(self.resends.get() + commands.len() as u64);
        let ids = commands.iter().map(|command| command.id);
        let Some(learner) = self.learner() else {
            refuse(ids, SubmitError::NoLearner, answers);
            return;
        };
        let Some(proposer) = self.proposer() else {
            self.forward_to_all(&learner, commands);
            return;
        };
        let (ids, answers): (Vec<CommandId>, _) = (ids.collect(), answers.clone());
        actix::spawn(async move {
            if let Err(refused) = submit_to(&proposer.submit, commands).await {
                refuse(ids, refused, &answers);
            }
        });
    }

    /// The commands `ids`, whose answers would go to `answers`, were given
    /// up on: the learner may forget who waits for them.
    pub(crate) fn unwatch(&self, ids: Vec<CommandId>, answers: &AnswerQueue) {
        if let Some(learner) = self.learner().filter(|_| !ids.is_empty()) {
            learner.unwatch.do_send(Unwatch {
                ids,
                queue: answers.clone(),
            });
        }
    }

    /// The local learner's view of the leader: a change means commands in
    /// service should go again at once.
    pub(crate) fn leader_hint(&self) -> Option<Rc<LeaderHint>> {
        self.learner().map(|learner| Rc::clone(&learner.leader))
    }

    /// A command this gateway handed on was answered after `took`.
    pub(crate) fn record_answer(&self, took: Duration) {
        self.answered.record(took);
    }

    /// Every proposer gets `commands`, in frame-sized `Forward`s.
    fn forward_to_all(&self, learner: &LearnerPort, commands: Vec<Command>) {
        let chunks = synod_core::chunk_by_bytes(commands, self.forward_max_bytes);
        let forwards = chunks
            .iter()
            .flat_map(|chunk| {
                self.all_proposers.iter().map(|&to| Outbound {
                    from: learner.id,
                    to: RoleId::proposer(to),
                    message: Message::Forward {
                        commands: chunk.clone(),
                    },
                })
            })
            .collect();
        self.router.do_send(OutboundBatch(forwards));
    }

    /// Hand `command` to a local proposer, or else forward it to every
    /// proposer: the one it went to did not answer in time (it or the
    /// leader behind it may be gone), and a copy to each reaches whichever
    /// leads now. Copies are safe (the learner applies a command id once)
    /// and rare: only resends come here; first sends are batched by the
    /// intake and go to the learner's leader hint.
    async fn send_command(
        &self,
        learner: &LearnerPort,
        command: Command,
    ) -> Result<(), SubmitError> {
        if let Some(proposer) = self.proposer() {
            return submit_to(&proposer.submit, vec![command]).await;
        }
        self.forward_to_all(learner, vec![command]);
        Ok(())
    }

    pub(crate) async fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Decision>, SubmitError> {
        let learner = self.learner().ok_or(SubmitError::NoLearner)?;
        let (sender, receiver) = mpsc::channel(capacity);
        learner
            .subscribe
            .send(Subscribe(sender))
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        Ok(receiver)
    }

    /// Answer the read-only `request` from the local learner's state as
    /// applied so far, without the log (may be stale).
    pub(crate) async fn query(&self, request: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        let learner = self.learner().ok_or(SubmitError::NoLearner)?;
        match learner.query.send(Query(request)).await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(SubmitError::NoQueries),
            Err(_) => Err(SubmitError::ShuttingDown),
        }
    }

    /// Answer the read-only `request` linearizably without a log slot: the
    /// leader confirms it still leads and names a read index, and the
    /// local learner answers once it has applied up to it. Asked of the
    /// learner's leader hint first, of every proposer on each resend.
    pub(crate) async fn read(&self, request: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        let learner = self.learner().ok_or(SubmitError::NoLearner)?;
        let id = self.next_read.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        learner
            .read_at
            .send(ReadAt { id, request, reply })
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        let deadline = Instant::now() + self.submit_timeout;
        let mut resend_after = self.submit_retry;
        for attempt in 0.. {
            let leader_changed = learner.leader.changed();
            self.to_proposers(&learner, &Message::ReadIndex { id }, attempt > 0);
            let wait = resend_after.min(deadline.saturating_duration_since(Instant::now()));
            resend_after = resend_after.saturating_mul(2);
            match answer_within(wait, leader_changed, &mut answer).await {
                Some(Ok(Some(answer))) => return Ok(answer),
                Some(Ok(None)) => return Err(SubmitError::NoQueries),
                Some(Err(_)) => return Err(SubmitError::ShuttingDown),
                None if Instant::now() >= deadline => {
                    return Err(SubmitError::Timeout(self.submit_timeout));
                }
                None => continue,
            }
        }
        unreachable!("the loop returns")
    }

    /// Propose `value` for single-decree instance `name` and wait for the
    /// value chosen (this one or another proposer's: every caller gets the
    /// same). Proposed through the local proposer, or else sent to the
    /// learner's leader hint and, on each resend, to every proposer.
    pub(crate) async fn decide(
        &self,
        name: String,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, SubmitError> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        if name.is_empty() {
            return Err(SubmitError::InvalidCommand("the instance name is empty"));
        }
        let len = name.len() + value.len();
        if len > self.max_command_bytes {
            let limit = self.max_command_bytes;
            return Err(SubmitError::TooLarge { len, limit });
        }
        let learner = self.learner().ok_or(SubmitError::NoLearner)?;
        let (reply, mut decided) = oneshot::channel();
        let watch = WatchInstance {
            name: name.clone(),
            max_instances: self.max_instances,
            reply,
        };
        match learner.watch_instance.send(watch).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                let limit = self.max_instances;
                return Err(SubmitError::TooManyInstances { limit });
            }
            Err(_) => return Err(SubmitError::ShuttingDown),
        }
        let deadline = Instant::now() + self.submit_timeout;
        let mut resend_after = self.submit_retry;
        for attempt in 0.. {
            if let Ok(answer) = decided.try_recv() {
                return Ok(answer); // decided before: no proposal needed
            }
            let leader_changed = learner.leader.changed();
            self.propose_anywhere(&learner, &name, &value, attempt > 0);
            let wait = resend_after.min(deadline.saturating_duration_since(Instant::now()));
            resend_after = resend_after.saturating_mul(2);
            match answer_within(wait, leader_changed, &mut decided).await {
                Some(Ok(answer)) => return Ok(answer),
                Some(Err(_)) => return Err(SubmitError::ShuttingDown),
                None if Instant::now() >= deadline => {
                    return Err(SubmitError::Timeout(self.submit_timeout));
                }
                None => continue,
            }
        }
        unreachable!("the loop returns")
    }

    /// Hand a proposal for `name` to the local proposer, or else to the
    /// leader hint (`everywhere`: to every proposer).
    fn propose_anywhere(&self, learner: &LearnerPort, name: &str, value: &[u8], everywhere: bool) {
        if self.propose_instance(name, value.to_vec()) {
            return;
        }
        let message = Message::ProposeInstance {
            name: name.to_owned(),
            value: value.to_vec(),
        };
        self.to_proposers(learner, &message, everywhere);
    }

    /// Send `message` from the learner to its leader hint, or (with
    /// `everywhere`) to every proposer.
    fn to_proposers(&self, learner: &LearnerPort, message: &Message, everywhere: bool) {
        let proposers = match everywhere {
            true => self.all_proposers.clone(),
            false => vec![learner.leader.get()],
        };
        let batch = proposers
            .into_iter()
            .map(|to| Outbound {
                from: learner.id,
                to: RoleId::proposer(to),
                message: message.clone(),
            })
            .collect();
        self.router.do_send(OutboundBatch(batch));
    }

    /// The value chosen for single-decree instance `name`, if the local
    /// learner knows one.
    pub(crate) async fn decided(&self, name: String) -> Result<Option<Vec<u8>>, SubmitError> {
        let learner = self.learner().ok_or(SubmitError::NoLearner)?;
        learner
            .instance_value
            .send(InstanceValue(name))
            .await
            .map_err(|_| SubmitError::ShuttingDown)
    }

    /// Propose `value` for single-decree instance `name` through the
    /// local proposer; false if this node has none.
    pub(crate) fn propose_instance(&self, name: &str, value: Vec<u8>) -> bool {
        let Some(proposer) = self.proposer() else {
            return false;
        };
        proposer.propose.do_send(ProposeInstance {
            name: name.to_owned(),
            value,
        });
        true
    }

    /// The configuration the local proposer works in.
    pub(crate) async fn members(&self) -> Result<MembersReport, String> {
        let running = self.running();
        let proposer = running.iter().find(|r| r.id.role == Role::Proposer);
        let proposer = proposer.ok_or("this node runs no proposer; ask a node that does")?;
        let status = proposer.status.send(GetStatus).await;
        let Ok(RoleStatus::Proposer(status)) = status else {
            return Err(format!("{} has stopped", proposer.id));
        };
        let membership = &status.epoch.membership;
        let size = membership.acceptors.len();
        Ok(MembersReport {
            proposer: status.id.to_string(),
            leader: status.leader,
            epoch: membership.epoch,
            start: status.epoch.start,
            members: MemberIds {
                acceptors: membership.acceptors.clone(),
                proposers: membership.proposers.clone(),
                learners: membership.learners.clone(),
                moved: membership
                    .moved
                    .iter()
                    .map(|(role, node)| (role.to_string(), node.clone()))
                    .collect(),
            },
            quorums: membership.quorums.describe_phase2(size),
            instances_carried: status.instances_carried,
        })
    }

    /// Ask for `members` as configuration `epoch`: checked against the
    /// placement and the quorum settings here, then proposed by the local
    /// proposer if it leads, else forwarded to the leader.
    pub(crate) async fn reconfigure(&self, epoch: u32, members: MemberIds) -> Result<(), String> {
        let port = self
            .proposer()
            .ok_or("this node runs no proposer; ask a node that does")?;
        let next = self.membership.configuration(epoch, members)?;
        match port.reconfigure.send(Reconfigure(next)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("the proposer has stopped".into()),
        }
    }

    pub(crate) async fn status(&self) -> NodeStatus {
        let running = self.running();
        let mut status = NodeStatus {
            node: self.name.clone(),
            roles: running.iter().map(|r| r.id).collect(),
            proposers: Vec::new(),
            acceptors: Vec::new(),
            learners: Vec::new(),
            stopped: Vec::new(),
            resends: self.resends.get(),
            commands_answered: self.answered.count.get(),
            commands_seconds: self.answered.seconds.get(),
        };
        for role in &running {
            match role.status.send(GetStatus).await {
                Ok(RoleStatus::Proposer(p)) => status.proposers.push(p),
                Ok(RoleStatus::Acceptor(a)) => status.acceptors.push(a),
                Ok(RoleStatus::Learner(l)) => status.learners.push(l),
                Err(_) => status.stopped.push(role.id),
            }
        }
        status.stopped.sort();
        status
    }

    /// Stop every role (each finishes the writes it has handed to its writer).
    pub(crate) async fn stop_roles(&self) {
        self.accepting.store(false, Ordering::Relaxed);
        for role in &self.running() {
            let _ = role.stop.send(Stop).await;
        }
    }
}

/// Each of the commands `ids` is answered with `error`.
fn refuse(ids: impl IntoIterator<Item = CommandId>, error: SubmitError, answers: &AnswerQueue) {
    for id in ids {
        let _ = answers.send((id, Err(error.clone())));
    }
}

/// The answer on `response`, or `None` once `wait` has passed or the
/// leader has changed: what was sent may have gone to a leader that is
/// gone, so the caller sends it again now rather than after
/// `submit_retry` (copies are safe: a command id is applied once).
async fn answer_within<T>(
    wait: Duration,
    leader_changed: Notified<'_>,
    response: &mut oneshot::Receiver<T>,
) -> Option<Result<T, oneshot::error::RecvError>> {
    tokio::select! {
        answer = response => Some(answer),
        () = tokio::time::sleep(wait) => None,
        () = leader_changed => None,
    }
}

/// Where the intake sends first sends: the local proposer, or else the
/// learner's leader hint (a resend goes to every proposer).
pub(crate) fn intake_for(
    learner: Option<&LearnerPort>,
    proposer: Option<&ProposerPort>,
    router: &Addr<Router>,
    max_bytes: usize,
) -> Option<Intake> {
    let learner = learner?;
    let destination = match proposer {
        Some(proposer) => Destination::Local(proposer.submit.clone()),
        None => Destination::Remote {
            router: router.clone(),
            from: learner.id,
            to: Rc::clone(&learner.leader),
            max_bytes,
        },
    };
    Some(Intake::new(learner.watch.clone(), destination))
}

/// The port of a role started while the node runs.
pub(crate) enum StartedPort {
    Proposer(ProposerPort),
    Learner(LearnerPort),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MembershipRules {
        let placement = [
            (RoleId::proposer(1), "n1"),
            (RoleId::proposer(2), "n2"),
            (RoleId::acceptor(1), "n1"),
            (RoleId::learner(1), "n1"),
        ];
        MembershipRules {
            placed: MemberIds {
                acceptors: vec![1],
                proposers: vec![1, 2],
                learners: vec![1],
                moved: Vec::new(),
            },
            placement: placement.map(|(r, n)| (r, n.to_owned())).into(),
            nodes: vec!["n1".into(), "n2".into(), "n3".into()],
            quorums: Default::default(),
        }
    }

    fn moves(wanted: &[(&str, &str)]) -> Result<Vec<(RoleId, String)>, String> {
        let wanted = wanted
            .iter()
            .map(|(r, n)| ((*r).to_owned(), (*n).to_owned()));
        rules().moves(wanted.collect())
    }

    #[test]
    fn proposers_and_learners_move_to_known_nodes_and_acceptors_do_not() {
        let to = |role, node: &str| (role, node.to_owned());
        assert_eq!(
            moves(&[("learner-1", "n3"), ("proposer-2", "n3")]),
            Ok(vec![
                to(RoleId::proposer(2), "n3"),
                to(RoleId::learner(1), "n3")
            ]),
            "ascending by role"
        );
        assert_eq!(moves(&[("proposer-2", "n2")]), Ok(vec![]), "home again");
        let refused = |wanted, why: &str| {
            let error = moves(wanted).expect_err("refused");
            assert!(error.contains(why), "{error}");
        };
        refused(&[("acceptor-1", "n2")], "does not move");
        refused(&[("proposer-1", "n9")], "no node \"n9\"");
        refused(&[("proposer-7", "n2")], "not placed");
        refused(&[("leader-1", "n2")], "not placed");
    }
}
