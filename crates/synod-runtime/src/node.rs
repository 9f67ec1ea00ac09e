//! `Node`: the role actors placed on one node, started inside the current
//! actix `System`, with their stores, router, links, listener and client
//! port. This is the API an embedding actix application uses.

use crate::client_server::{self, ClientPortStats};
use crate::config::SynodConfig;
use crate::gateway::{Gateway, NodeStatus, SubmitError};
use crate::router::{RegisterRole, Router, StopRouter};
use actix::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use synod_acceptor::AcceptorActor;
use synod_core::{
    Acceptor, CommandId, Learner, LearnerConfig, Message, Proposer, ProposerConfig, Role, RoleId,
};
use synod_learner::{Decision, LearnerActor, StateMachine};
use synod_proposer::ProposerActor;
use synod_storage::{
    AcceptorStore, GroupCommit, GroupLimits, LearnerStore, ProposerStore, RocksStore, StorageError,
};
use synod_transport::{
    Inbound, Listener, OutboundBatch, PeerLink, Shutdown, StopListening, TransportConfig,
    TransportStats,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// A listen address is unavailable (in use, not local, ...).
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

type Store = RocksStore;

/// The role actors of one node and the plumbing between them.
pub struct Node<M: StateMachine> {
    listen: SocketAddr,
    client_listen: Option<SocketAddr>,
    listener: Addr<Listener<Message>>,
    links: Vec<Addr<PeerLink<Message>>>,
    gateway: Rc<Gateway<M>>,
    clients: CancellationToken,
    client_stats: Arc<ClientPortStats>,
    stats: Arc<TransportStats>,
}

fn open_store(data_dir: &Path, role: RoleId) -> Result<Store, NodeError> {
    let path = data_dir.join(role.to_string());
    std::fs::create_dir_all(&path).map_err(|reason| NodeError::DataDir {
        path: path.display().to_string(),
        reason,
    })?;
    let store = RocksStore::open(&path)?;
    if let Some(torn) = store.torn_tail() {
        tracing::warn!(
            wal = %torn.wal.display(),
            kept = torn.kept,
            dropped = torn.dropped,
            "cut off a torn, never-acknowledged WAL record left by a crash"
        );
    }
    Ok(store)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// The role actors started on a node, before the gateway is assembled.
struct Roles<M: StateMachine> {
    proposers: Vec<(RoleId, Addr<ProposerActor<Store>>)>,
    acceptors: Vec<(RoleId, Addr<AcceptorActor<Store>>)>,
    learners: Vec<(RoleId, Addr<LearnerActor<Store, M>>)>,
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
        let mut stores = Vec::new();
        for role in &roles {
            stores.push((*role, open_store(&node.data_dir, *role)?));
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
        let bind_error = |reason| NodeError::Bind {
            address: node.listen,
            reason,
        };
        let listener = Listener::bind(
            node.listen,
            Arc::clone(&transport),
            Arc::clone(&stats),
            router.clone().recipient(),
        )
        .await
        .map_err(bind_error)?;
        let listen = listener.local_addr().map_err(bind_error)?;
        let client_listener = match node.client_listen {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|reason| NodeError::Bind { address, reason })?,
            ),
            None => None,
        };

        let mut started = Roles::<M> {
            proposers: Vec::new(),
            acceptors: Vec::new(),
            learners: Vec::new(),
        };
        for (role, store) in stores {
            start_role(config, &router, role, store, &mut machine, &mut started).await?;
        }
        let gateway = Rc::new(Gateway {
            name: name.to_owned(),
            roles,
            router,
            proposers: started.proposers,
            acceptors: started.acceptors,
            learners: started.learners,
            all_proposers: config.instances(Role::Proposer),
            client: random_u64(),
            next_seq: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
            submit_timeout: config.paxos.submit_timeout,
            submit_retry: config.paxos.submit_retry,
            max_command_bytes: config.paxos.max_command_bytes,
        });
        let clients = CancellationToken::new();
        let client_stats = Arc::new(ClientPortStats::default());
        let client_listen = match client_listener {
            Some(listener) => {
                let address = listener.local_addr().map_err(|reason| NodeError::Bind {
                    address: listen,
                    reason,
                })?;
                let port = client_server::ClientPort {
                    cluster: config.cluster.id.clone(),
                    token: config.cluster.client_token.clone(),
                    limits: config.clients.clone(),
                    stats: Arc::clone(&client_stats),
                };
                client_server::spawn(listener, Rc::clone(&gateway), port, clients.clone());
                Some(address)
            }
            None => None,
        };
        Ok(Node {
            listen,
            client_listen,
            listener: listener.start(),
            links: links.into_values().collect(),
            gateway,
            clients,
            client_stats,
            stats,
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.gateway.name
    }

    /// The address this node listens on for other nodes.
    pub fn listen_address(&self) -> SocketAddr {
        self.listen
    }

    /// The address clients connect to, if this node serves clients.
    pub fn client_address(&self) -> Option<SocketAddr> {
        self.client_listen
    }

    /// Transport counters.
    pub fn transport_stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Client port counters (all zero when the node has no client port).
    pub fn client_port_stats(&self) -> &ClientPortStats {
        &self.client_stats
    }

    /// Submit `payload` as a command and wait for the state machine's
    /// response. Retries with the same command id (applied once however
    /// often it is decided) until `paxos.submit_timeout`.
    pub async fn submit(&self, payload: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        self.gateway.submit(payload).await
    }

    /// Submit `payload` under a caller-chosen `id` (a client library that
    /// numbers its own commands). Submitting an id again, through this or
    /// another node, is a retry: the command is applied once and, if the
    /// state machine keeps responses, the retry gets the original answer.
    pub async fn submit_as(&self, id: CommandId, payload: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        self.gateway.submit_as(id, payload).await
    }

    /// Stream every decision applied by this node's learner from now on.
    pub async fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Decision>, SubmitError> {
        self.gateway.subscribe(capacity).await
    }

    /// Propose `value` for single-decree instance `name` through a local
    /// proposer (learners deliver the decided value to subscribers).
    pub fn propose_instance(&self, name: &str, value: Vec<u8>) -> bool {
        let Some((_, proposer)) = self.gateway.proposers.first() else {
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
        self.gateway.status().await
    }

    /// Stop intake (client port and `submit`), stop the roles (their pending
    /// writes complete), flush and close the links, and stop listening.
    pub async fn shutdown(&self) {
        self.gateway.accepting.store(false, Ordering::Relaxed);
        self.clients.cancel();
        let _ = self.listener.send(StopListening).await;
        for (_, p) in &self.gateway.proposers {
            let _ = p.send(synod_proposer::Stop).await;
        }
        for (_, l) in &self.gateway.learners {
            let _ = l.send(synod_learner::Stop).await;
        }
        for (_, a) in &self.gateway.acceptors {
            let _ = a.send(synod_acceptor::Stop).await;
        }
        for link in &self.links {
            let _ = link.send(Shutdown).await;
        }
        let _ = self.gateway.router.send(StopRouter).await;
    }
}

async fn start_role<M: StateMachine>(
    config: &SynodConfig,
    router: &Addr<Router>,
    role: RoleId,
    store: Store,
    machine: &mut impl FnMut() -> M,
    started: &mut Roles<M>,
) -> Result<(), NodeError> {
    let limits = GroupLimits {
        max_submissions: config.storage.group_max_submissions,
        max_writes: config.storage.group_max_writes,
    };
    let path = store.path().to_path_buf();
    let outbound = router.clone().recipient::<OutboundBatch<Message>>();
    let tick = config.paxos.tick_interval;
    let recipient: Recipient<Inbound<Message>> = match role.role {
        Role::Acceptor => {
            let core = Acceptor::new(role.index, store.load_acceptor()?)
                .with_reply_max_bytes(config.paxos.reply_max_bytes);
            let writer = GroupCommit::spawn(store, path, limits);
            let actor = AcceptorActor::new(core, writer, outbound).start();
            started.acceptors.push((role, actor.clone()));
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
            let actor = ProposerActor::new(core, writer, outbound, epoch, tick).start();
            started.proposers.push((role, actor.clone()));
            actor.recipient()
        }
        Role::Learner => {
            let core = Learner::new(learner_config(config, role.index), store.load_learner()?);
            let writer = GroupCommit::spawn(store, path, limits);
            let actor = LearnerActor::new(core, machine(), writer, outbound, tick).start();
            started.learners.push((role, actor.clone()));
            actor.recipient()
        }
    };
    let _ = router.send(RegisterRole { role, recipient }).await;
    Ok(())
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
    c.pipeline_max_bytes = p.pipeline_max_bytes;
    c.queue_limit = p.queue_limit;
    c.heartbeat_interval = millis(p.heartbeat_interval);
    c.election_timeout_min = millis(p.election_timeout_min);
    c.election_timeout_max = millis(p.election_timeout_max);
    c.retransmit_interval = millis(p.retransmit_interval);
    c.backoff_max = millis(p.backoff_max);
    c.quorum_timeout = millis(p.quorum_timeout);
    c.reply_max_bytes = p.reply_max_bytes;
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
        reply_max_bytes: p.reply_max_bytes,
        instance_sync_interval: millis(p.instance_sync_interval),
    }
}
