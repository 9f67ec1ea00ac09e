//! `Node`: the role actors placed on one node, started inside the current
//! actix `System`, with their stores, router, links and listener. This is
//! the API an embedding actix application uses.

use crate::config::SynodConfig;
use crate::router::{RegisterRole, Router, StopRouter};
use actix::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use synod_acceptor::AcceptorActor;
use synod_core::{
    Acceptor, Command, CommandId, Learner, LearnerConfig, Message, Proposer, ProposerConfig, Role,
    RoleId,
};
use synod_learner::{Decision, LearnerActor, LearnerStatus, StateMachine, Subscribe, WatchCommand};
use synod_proposer::{ProposerActor, ProposerStatus, Submit};
use synod_storage::{
    AcceptorStore, GroupCommit, GroupLimits, LearnerStore, ProposerStore, RocksStore, StorageError,
};
use synod_transport::{
    Inbound, Listener, Outbound, OutboundBatch, PeerLink, Shutdown, StopListening, TransportConfig,
    TransportStats,
};
use tokio::sync::{mpsc, oneshot};

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node is not in the config.
    #[error("node {0:?} is not in the config (known: {1:?})")]
    UnknownNode(String, Vec<String>),
    /// A store could not be opened (locked, corrupt, unreadable, ...).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        reason: std::io::Error,
    },
    /// The listen address is unavailable (in use, not local, ...).
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        reason: std::io::Error,
    },
    /// The secret file could not be read.
    #[error("cannot read the cluster secret: {0}")]
    Secret(std::io::Error),
}

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
}

/// A node's view of its roles.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// Its proposers.
    pub proposers: Vec<ProposerStatus>,
    /// Its learners.
    pub learners: Vec<LearnerStatus>,
}

type Store = RocksStore;

/// The role actors of one node and the plumbing between them.
pub struct Node<M: StateMachine> {
    name: String,
    listen: SocketAddr,
    router: Addr<Router>,
    listener: Addr<Listener<Message>>,
    links: Vec<Addr<PeerLink<Message>>>,
    proposers: Vec<(RoleId, Addr<ProposerActor<Store>>)>,
    acceptors: Vec<(RoleId, Addr<AcceptorActor<Store>>)>,
    learners: Vec<(RoleId, Addr<LearnerActor<Store, M>>)>,
    all_proposers: Vec<u32>,
    client: u64,
    next_seq: AtomicU64,
    accepting: AtomicBool,
    submit_timeout: Duration,
    submit_retry: Duration,
    stats: Arc<TransportStats>,
}

fn open_store(data_dir: &Path, role: RoleId) -> Result<Store, NodeError> {
    let path = data_dir.join(role.to_string());
    std::fs::create_dir_all(&path).map_err(|reason| NodeError::DataDir {
        path: path.display().to_string(),
        reason,
    })?;
    Ok(RocksStore::open(&path)?)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl<M: StateMachine> Node<M> {
    /// Start node `name` of `config` in the current actix system. Every
    /// learner on it gets a state machine from `machine`.
    pub async fn start(
        config: &SynodConfig,
        name: &str,
        mut machine: impl FnMut() -> M,
    ) -> Result<Self, NodeError> {
        let node = config.nodes.get(name).ok_or_else(|| {
            NodeError::UnknownNode(name.to_owned(), config.nodes.keys().cloned().collect())
        })?;
        let transport = Arc::new(transport_config(config, name)?);
        let stats = Arc::new(TransportStats::default());

        // Open every store first: a locked or corrupt store stops the start
        // before anything listens.
        let roles = config.roles_on(name);
        let mut stores = HashMap::new();
        for role in &roles {
            stores.insert(*role, open_store(&node.data_dir, *role)?);
        }

        let links: HashMap<Arc<str>, Addr<PeerLink<Message>>> = config
            .nodes
            .keys()
            .filter(|peer| *peer != name)
            .map(|peer| {
                let link =
                    PeerLink::new(peer.clone(), Arc::clone(&transport), Arc::clone(&stats)).start();
                (Arc::from(peer.as_str()), link)
            })
            .collect();
        let placement = config
            .placement()
            .into_iter()
            .map(|(role, node)| (role, Arc::from(node.as_str())))
            .collect();
        let router = Router::new(name, placement, links.clone()).start();
        let listener = Listener::bind(
            node.listen,
            Arc::clone(&transport),
            Arc::clone(&stats),
            router.clone().recipient(),
        )
        .await
        .map_err(|reason| NodeError::Bind {
            address: node.listen,
            reason,
        })?;
        let listen = listener.local_addr().map_err(|reason| NodeError::Bind {
            address: node.listen,
            reason,
        })?;

        let mut started = Node {
            name: name.to_owned(),
            listen,
            router: router.clone(),
            listener: listener.start(),
            links: links.into_values().collect(),
            proposers: Vec::new(),
            acceptors: Vec::new(),
            learners: Vec::new(),
            all_proposers: config.instances(Role::Proposer),
            client: random_u64(),
            next_seq: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
            submit_timeout: config.paxos.submit_timeout,
            submit_retry: config.paxos.submit_retry,
            stats,
        };
        for (role, store) in stores {
            started
                .start_role(config, role, store, &mut machine)
                .await?;
        }
        Ok(started)
    }

    async fn start_role(
        &mut self,
        config: &SynodConfig,
        role: RoleId,
        store: Store,
        machine: &mut impl FnMut() -> M,
    ) -> Result<(), NodeError> {
        let limits = GroupLimits {
            max_submissions: config.storage.group_max_submissions,
            max_writes: config.storage.group_max_writes,
        };
        let path = store.path().to_path_buf();
        let router = self.router.clone().recipient::<OutboundBatch<Message>>();
        let tick = config.paxos.tick_interval;
        let recipient: Recipient<Inbound<Message>> = match role.role {
            Role::Acceptor => {
                let core = Acceptor::new(role.index, store.load_acceptor()?);
                let writer = GroupCommit::spawn(store, path, limits);
                let actor = AcceptorActor::new(core, writer, router).start();
                self.acceptors.push((role, actor.clone()));
                actor.recipient()
            }
            Role::Proposer => {
                let epoch = Instant::now();
                let core = Proposer::new(
                    proposer_config(config, role.index),
                    store.load_proposer()?,
                    0,
                );
                let writer = GroupCommit::spawn(store, path, limits);
                let actor = ProposerActor::new(core, writer, router, epoch, tick).start();
                self.proposers.push((role, actor.clone()));
                actor.recipient()
            }
            Role::Learner => {
                let core = Learner::new(learner_config(config, role.index), store.load_learner()?);
                let writer = GroupCommit::spawn(store, path, limits);
                let actor = LearnerActor::new(core, machine(), writer, router, tick).start();
                self.learners.push((role, actor.clone()));
                actor.recipient()
            }
        };
        let _ = self.router.send(RegisterRole { role, recipient }).await;
        Ok(())
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address this node listens on (resolved, if the config said port 0).
    pub fn listen_address(&self) -> SocketAddr {
        self.listen
    }

    /// Transport counters.
    pub fn transport_stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Submit `payload` as a command and wait for the state machine's
    /// response. Retries with the same command id (applied once however
    /// often it is decided) until `paxos.submit_timeout`.
    pub async fn submit(&self, payload: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        let id = CommandId {
            client: self.client,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed) + 1,
        };
        self.submit_as(id, payload).await
    }

    /// Submit `payload` under a caller-chosen `id` (a client library that
    /// numbers its own commands). Submitting an id again, through this or
    /// another node, is a retry: the command is applied once and, if the
    /// state machine keeps responses, the retry gets the original answer.
    pub async fn submit_as(&self, id: CommandId, payload: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        let (learner_id, learner) = self.learners.first().ok_or(SubmitError::NoLearner)?;
        let command = Command { id, payload };
        let (reply, mut response) = oneshot::channel();
        learner
            .send(WatchCommand { id, reply })
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        let deadline = Instant::now() + self.submit_timeout;
        for attempt in 0.. {
            self.send_command(*learner_id, command.clone(), attempt)
                .await?;
            let wait = self
                .submit_retry
                .min(deadline.saturating_duration_since(Instant::now()));
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

    /// Stream every decision applied by this node's learner from now on.
    pub async fn subscribe(
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

    /// Propose `value` for single-decree instance `name` through a local
    /// proposer (learners deliver the decided value to subscribers).
    pub fn propose_instance(&self, name: &str, value: Vec<u8>) -> bool {
        let Some((_, proposer)) = self.proposers.first() else {
            return false;
        };
        proposer.do_send(synod_proposer::ProposeInstance {
            name: name.to_owned(),
            value,
        });
        true
    }

    /// What this node's roles report.
    pub async fn status(&self) -> NodeStatus {
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
            proposers,
            learners,
        }
    }

    /// Stop intake, stop the roles (their pending writes complete), flush
    /// and close the links, and stop listening.
    pub async fn shutdown(self) {
        self.accepting.store(false, Ordering::Relaxed);
        let _ = self.listener.send(StopListening).await;
        for (_, p) in &self.proposers {
            let _ = p.send(synod_proposer::Stop).await;
        }
        for (_, l) in &self.learners {
            let _ = l.send(synod_learner::Stop).await;
        }
        for (_, a) in &self.acceptors {
            let _ = a.send(synod_acceptor::Stop).await;
        }
        for link in &self.links {
            let _ = link.send(Shutdown).await;
        }
        let _ = self.router.send(StopRouter).await;
    }
}

fn transport_config(config: &SynodConfig, name: &str) -> Result<TransportConfig, NodeError> {
    let secret = config.secret().map_err(NodeError::Secret)?;
    let mut transport = TransportConfig::new(config.cluster.id.clone(), name, secret.into_bytes());
    for (peer, node) in &config.nodes {
        if peer != name {
            transport = transport.with_peer(peer.clone(), node.listen);
        }
    }
    let t = &config.transport;
    transport.max_frame_len = t.max_frame_len;
    transport.queue_capacity = t.queue_capacity;
    transport.handshake_timeout = t.handshake_timeout;
    transport.reconnect_min = t.reconnect_min;
    transport.reconnect_max = t.reconnect_max;
    Ok(transport)
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn proposer_config(config: &SynodConfig, id: u32) -> ProposerConfig {
    let p = &config.paxos;
    let mut c = ProposerConfig::new(
        id,
        config.instances(Role::Proposer),
        config.instances(Role::Acceptor),
        config.instances(Role::Learner),
    );
    c.batch_max_commands = p.batch_max_commands;
    c.batch_max_bytes = p.batch_max_bytes;
    c.pipeline_window = p.pipeline_window;
    c.queue_limit = p.queue_limit;
    c.heartbeat_interval = millis(p.heartbeat_interval);
    c.election_timeout_min = millis(p.election_timeout_min);
    c.election_timeout_max = millis(p.election_timeout_max);
    c.retransmit_interval = millis(p.retransmit_interval);
    c.backoff_max = millis(p.backoff_max);
    c.seed = random_u64();
    c
}

fn learner_config(config: &SynodConfig, id: u32) -> LearnerConfig {
    let p = &config.paxos;
    LearnerConfig {
        id,
        learners: config.instances(Role::Learner),
        proposers: config.instances(Role::Proposer),
        catch_up_interval: millis(p.catch_up_interval),
        catch_up_batch: p.catch_up_batch,
        instance_sync_interval: millis(p.instance_sync_interval),
    }
}
