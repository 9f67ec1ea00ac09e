//! `Node`: the role actors placed on one node, started inside the current
//! actix `System`, with their stores, router, links, listener and client
//! port. This is the API an embedding actix application uses.
//!
//! [`Node::start`] runs on RocksDB; [`Node::start_with`] takes any storage
//! [`Backend`] (the memory backend runs a whole node without a disk).
//! Starting is a sequence of steps, each a function below: stores → links
//! → router and listener → roles → gateway → client port → admin server.

use crate::admin::{self, AdminActor, NodeMetrics};
use crate::client_server::{self, ClientPortStats};
use crate::config::{SynodConfig, parse_role};
use crate::gateway::{Gateway, LearnerPort, NodeStatus, ProposerPort, RunningRole, StartedPort};
use crate::placement::MovedRoles;
use crate::router::{
    Follow, FollowedPlacement, LifecycleSlot, MessageCounts, RegisterRole, RoleLifecycle, Router,
    StartPlacedRoles, StopRouter,
};
use actix::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};
use synod_api::{Decision, StateMachine, SubmitError};
use synod_core::{
    Acceptor, CommandId, Learner, LearnerConfig, LearnerState, Message, Proposer, ProposerConfig,
    Role, RoleId,
};
use synod_rocks::RocksBackend;
use synod_roles::{
    AcceptorActor, Applier, Core, Hooks, LeaderHint, LearnerActor, NoHooks, ProposerActor,
    ProposerHooks, RoleActor, SnapshotEvery, Stagger,
};
use synod_storage::{
    Backend, Bootstrap, GroupCommit, GroupLimits, RoleStore, SnapshotDir, StorageError, StoreOwner,
    open_stamped, role_dir,
};
use synod_transport::{
    Inbound, Listener, OutboundBatch, PeerLink, Shutdown, StopListening, TransportConfig,
    TransportStats,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node is not in the config.
    #[error("node {0:?} is not in the config (known: {1:?})")]
    UnknownNode(String, Vec<String>),
    /// The node's record of the placement moves it follows is unreadable.
    #[error("{0}")]
    Placement(String),
    /// A store could not be opened (locked, corrupt, unreadable, ...).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A listen address is unavailable (in use, not local, ...).
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        reason: std::io::Error,
    },
    /// A learner's snapshot could not be restored, or is missing.
    #[error("{role}: {reason}")]
    Snapshot {
        /// The learner.
        role: RoleId,
        /// Why.
        reason: String,
    },
    /// The secret file could not be read.
    #[error("cannot read the cluster secret: {0}")]
    Secret(std::io::Error),
    /// The TLS certificate, key or CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] synod_tls::TlsError),
}

/// The role actors of one node and the plumbing between them.
pub struct Node {
    listen: SocketAddr,
    client_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    admin: Option<actix_web::dev::ServerHandle>,
    listener: Addr<Listener<Message>>,
    links: Vec<Addr<PeerLink<Message>>>,
    gateway: Rc<Gateway>,
    clients: CancellationToken,
    client_stats: Arc<ClientPortStats>,
    stats: Arc<TransportStats>,
}

/// The node's sockets and message routing, before any role runs.
struct Network {
    router: Addr<Router>,
    links: Vec<Addr<PeerLink<Message>>>,
    listener: Listener<Message>,
    listen: SocketAddr,
    client_listener: Option<TcpListener>,
    admin_listener: Option<std::net::TcpListener>,
    sent: Rc<MessageCounts>,
    stats: Arc<TransportStats>,
    lifecycle: LifecycleSlot,
}

/// The role actors started on a node, as the gateway holds them.
#[derive(Default)]
struct StartedRoles {
    running: Vec<RunningRole>,
    proposers: Vec<ProposerPort>,
    learners: Vec<LearnerPort>,
}

impl Node {
    /// Start node `name` of `config` in the current actix system, on
    /// RocksDB stores in the node's `data_dir`. Every learner on it gets a
    /// state machine from `machine`. `bootstrap` says whether missing
    /// stores may be created ([`Bootstrap::New`]: a brand-new cluster or
    /// member) or must be there ([`Bootstrap::Existing`]).
    pub async fn start<M: StateMachine>(
        config: &SynodConfig,
        name: &str,
        bootstrap: Bootstrap,
        machine: impl FnMut() -> M + 'static,
    ) -> Result<Self, NodeError> {
        Self::start_with(config, name, &RocksBackend, bootstrap, machine).await
    }

    /// [`Node::start`] on the stores `backend` opens.
    ///
    /// The roles it runs are the ones the config file places on it, with
    /// the moves the log decided (`synod member move`) that it followed
    /// last (see `placement.rs`); it follows later ones while it runs.
    pub async fn start_with<B: Backend + Clone, M: StateMachine>(
        file: &SynodConfig,
        name: &str,
        backend: &B,
        bootstrap: Bootstrap,
        machine: impl FnMut() -> M + 'static,
    ) -> Result<Self, NodeError> {
        let mut machine = machine;
        let node = file.nodes.get(name).ok_or_else(|| {
            NodeError::UnknownNode(name.to_owned(), file.nodes.keys().cloned().collect())
        })?;
        let moves = MovedRoles::load(&node.data_dir, name).map_err(NodeError::Placement)?;
        let config = &file.with_moved(&moves.moved);
        let stores = open_stores(config, name, backend, bootstrap)?;
        let mut network = Network::open(file, name, moves.clone()).await?;
        let metrics = network.admin_listener.as_ref().map(|_| NodeMetrics::new());
        let started = StartContext {
            config,
            name,
            router: &network.router,
            followed: &moves,
        };
        let roles = start_roles(&started, stores, &mut machine, metrics.as_deref()).await?;
        let latency = metrics.as_ref().map(|m| m.command_latency());
        let gateway = Rc::new(gateway(
            (file, config),
            name,
            network.router.clone(),
            roles,
            latency,
        ));
        let lifecycle = PlacedRoles {
            config: config.clone(),
            name: name.to_owned(),
            backend: backend.clone(),
            router: network.router.clone(),
            gateway: Rc::downgrade(&gateway),
            machine: RefCell::new(Box::new(machine)),
            metrics: metrics.clone(),
        };
        *network.lifecycle.borrow_mut() = Some(Rc::new(lifecycle));
        network.router.do_send(StartPlacedRoles);
        let clients = CancellationToken::new();
        let client_stats = Arc::new(ClientPortStats::default());
        let client_listen = match network.client_listener {
            Some(listener) => Some(serve_clients(
                config,
                listener,
                &gateway,
                &client_stats,
                &clients,
            )?),
            None => None,
        };
        let (admin_listen, admin) = match (network.admin_listener.take(), metrics) {
            (Some(listener), Some(metrics)) => {
                let admin = AdminActor {
                    config: Arc::new(config.clone()),
                    gateway: Rc::clone(&gateway),
                    transport: Arc::clone(&network.stats),
                    clients: Arc::clone(&client_stats),
                    sent: Rc::clone(&network.sent),
                    metrics,
                    progress: Default::default(),
                };
                let (address, handle) = serve_admin(config, name, listener, admin)?;
                (Some(address), Some(handle))
            }
            _ => (None, None),
        };
        Ok(Node {
            listen: network.listen,
            client_listen,
            admin_listen,
            admin,
            listener: network.listener.start(),
            links: network.links,
            gateway,
            clients,
            client_stats,
            stats: network.stats,
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

    /// The address of the admin HTTP server, if this node runs one.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_listen
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
    /// numbers its own commands): `id.client` is a session from
    /// [`Node::open_session`] and `id.seq` counts from 1. Submitting an id
    /// again, through this or another node, is a retry: the command is
    /// applied once and, if the state machine keeps responses, the retry
    /// gets the original answer. A session idle for `paxos.session_horizon`
    /// slots expires: its commands then fail with
    /// [`SubmitError::SessionExpired`], unapplied.
    pub async fn submit_as(&self, id: CommandId, payload: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        self.gateway.submit_as(id, payload).await
    }

    /// Open a client session through the log; its id numbers the commands
    /// of [`Node::submit_as`]. `nonce` is any number (it only routes the
    /// answer; two opens with one nonce get two sessions).
    pub async fn open_session(&self, nonce: u64) -> Result<u64, SubmitError> {
        let open = CommandId {
            client: nonce,
            seq: synod_core::OPEN_SESSION,
        };
        let answer = self.gateway.submit_as(open, Vec::new()).await?;
        let bytes: [u8; 8] = answer.try_into().map_err(|_| SubmitError::OutcomeUnknown)?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// Answer the read-only `request` from this node's learner as applied
    /// so far ([`StateMachine::query`](synod_api::StateMachine::query)),
    /// without the log: fast, but it may miss the latest writes
    /// (serializable, not linearizable). [`SubmitError::NoQueries`] if the
    /// state machine serves no such reads.
    pub async fn query(&self, request: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        self.gateway.query(request).await
    }

    /// Answer the read-only `request` from this node's learner
    /// linearizably, without a log slot (read index: the leader confirms
    /// its leadership with a quorum of acceptors, then the learner answers
    /// once applied up to the leader's position). Costs one round trip to
    /// the acceptors and no disk write.
    pub async fn read(&self, request: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        self.gateway.read(request).await
    }

    /// Stream every decision applied by this node's learner from now on.
    pub async fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Decision>, SubmitError> {
        self.gateway.subscribe(capacity).await
    }

    /// Propose `value` for single-decree instance `name` (a decide-once
    /// register) and wait for the value chosen: this one, or one proposed
    /// earlier or concurrently (every caller gets the same). Works on any
    /// node with a learner; without a local proposer the proposal is sent
    /// to one. [`SubmitError::TooManyInstances`] once the cluster keeps
    /// `paxos.max_instances` decided instances.
    pub async fn decide(&self, name: &str, value: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
        self.gateway.decide(name.to_owned(), value).await
    }

    /// The value chosen for single-decree instance `name`, if this node's
    /// learner knows it (`None`: not decided, or not learned here yet).
    pub async fn decided(&self, name: &str) -> Result<Option<Vec<u8>>, SubmitError> {
        self.gateway.decided(name.to_owned()).await
    }

    /// Propose `value` for single-decree instance `name` through a local
    /// proposer, without waiting (learners deliver the decided value to
    /// subscribers); false if this node has no proposer. See
    /// [`Node::decide`] for the value chosen.
    pub fn propose_instance(&self, name: &str, value: Vec<u8>) -> bool {
        self.gateway.propose_instance(name, value)
    }

    /// What this node's roles report.
    pub async fn status(&self) -> NodeStatus {
        self.gateway.status().await
    }

    /// Stop intake (client port and `submit`), stop the roles (their pending
    /// writes complete), flush and close the links, and stop listening.
    pub async fn shutdown(&self) {
        if let Some(admin) = &self.admin {
            admin.stop(false).await;
        }
        self.clients.cancel();
        let _ = self.listener.send(StopListening).await;
        self.gateway.stop_roles().await;
        for link in &self.links {
            let _ = link.send(Shutdown).await;
        }
        let _ = self.gateway.router.send(StopRouter).await;
    }
}

/// Step 1: open every store first, so a locked, corrupt, missing or
/// foreign store stops the start before anything listens.
fn open_stores<B: Backend>(
    config: &SynodConfig,
    name: &str,
    backend: &B,
    bootstrap: Bootstrap,
) -> Result<Vec<OpenedRole<B::Store>>, NodeError> {
    let node = config.nodes.get(name).ok_or_else(|| {
        NodeError::UnknownNode(name.to_owned(), config.nodes.keys().cloned().collect())
    })?;
    for role in stray_stores(config, name) {
        let path = role_dir(&node.data_dir, role);
        tracing::warn!(
            %role,
            path = %path.display(),
            "a store for {role} is in this node's data directory, but the placement no longer \
             puts {role} on node {name:?}: it is not used. If {role} moved to another node, \
             remove this directory once the move is done"
        );
    }
    let mut stores = Vec::new();
    for role in config.roles_on(name) {
        let owner = store_owner(config, name, role);
        let (store, stamp) =
            open_stamped(backend, &node.data_dir, &owner, bootstrap, random_u64())?;
        tracing::debug!(%role, incarnation = stamp.incarnation, "store opened");
        let snapshots = match role.role {
            Role::Learner => backend.snapshots(&node.data_dir, role)?,
            _ => None,
        };
        stores.push(OpenedRole {
            role,
            path: role_dir(&node.data_dir, role),
            store,
            snapshots,
        });
    }
    Ok(stores)
}

/// The role instances of node `name` whose RocksDB store has been created
/// (an empty list: the node has never run here).
pub fn created_stores(config: &SynodConfig, name: &str) -> Vec<RoleId> {
    let Some(node) = config.nodes.get(name) else {
        return Vec::new();
    };
    config
        .roles_on(name)
        .into_iter()
        .filter(|role| RocksBackend.exists(&node.data_dir, *role))
        .collect()
}

/// Role stores in node `name`'s data directory that no node sharing that
/// directory hosts: left behind when the placement moved a role away (or
/// dropped it). They are never opened; the node warns about each.
pub fn stray_stores(config: &SynodConfig, name: &str) -> Vec<RoleId> {
    let Some(node) = config.nodes.get(name) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&node.data_dir) else {
        return Vec::new();
    };
    let hosted: Vec<RoleId> = config
        .nodes
        .iter()
        .filter(|(_, other)| other.data_dir == node.data_dir)
        .flat_map(|(other, _)| config.roles_on(other))
        .collect();
    let mut stray: Vec<RoleId> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| parse_role(entry.file_name().to_str()?))
        .filter(|role| !hosted.contains(role))
        .collect();
    stray.sort();
    stray
}

/// Whose store `role` on node `name` opens.
pub(crate) fn store_owner(config: &SynodConfig, name: &str, role: RoleId) -> StoreOwner {
    StoreOwner {
        cluster: config.cluster.id.clone(),
        node: name.to_owned(),
        role,
    }
}

/// One role instance's store (and a learner's snapshots), opened.
struct OpenedRole<S> {
    role: RoleId,
    path: PathBuf,
    store: S,
    snapshots: Option<SnapshotDir>,
}

/// A learner core and its applier: restored from the latest snapshot if
/// there is one, else replaying the whole log.
fn learner<M: StateMachine>(
    config: &SynodConfig,
    role: RoleId,
    state: LearnerState,
    snapshots: Option<SnapshotDir>,
    machine: M,
) -> Result<(Learner, Applier<M>), NodeError> {
    let learner_config = learner_config(config, role.index);
    let mut applier = Applier::new(machine);
    if let Some(dir) = &snapshots {
        let learners = &learner_config.learners;
        let every = SnapshotEvery {
            commands: config.storage.snapshot_every,
            bytes: config.storage.snapshot_every_bytes,
            stagger: Stagger {
                place: learners.iter().filter(|&&l| l < role.index).count() as u64,
                of: learners.len() as u64,
            },
        };
        applier = applier.with_snapshots(dir.clone(), every);
    }
    let latest = match &snapshots {
        Some(dir) => dir.latest()?,
        None => None,
    };
    let core = match latest {
        Some(snapshot) => {
            let part = applier
                .restore(&snapshot)
                .map_err(|e| NodeError::Snapshot {
                    role,
                    reason: e.to_string(),
                })?;
            Learner::restored(learner_config, state, &part)
        }
        None if state.base > 0 => {
            return Err(NodeError::Snapshot {
                role,
                reason: format!(
                    "the log below slot {} was compacted but no snapshot is there",
                    state.base
                ),
            });
        }
        None => Learner::new(learner_config, state),
    };
    Ok((core, applier))
}

impl Network {
    /// Steps 2 and 3: a link to every other node, the router (following
    /// `moves` on top of the config file's placement), the node listener
    /// and the client listener (bound, not yet serving).
    async fn open(config: &SynodConfig, name: &str, moves: MovedRoles) -> Result<Self, NodeError> {
        let node = &config.nodes[name];
        let transport = Arc::new(transport_config(config, name)?);
        let stats = Arc::new(TransportStats::default());
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
        let placement = FollowedPlacement {
            seed: config.placement(),
            moves,
            data_dir: Some(node.data_dir.clone()),
        };
        let router = Router::new(name, placement, links.clone());
        let sent = router.sent();
        let lifecycle = router.lifecycle();
        let router = router.start();
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
        let admin_listener = match node.admin_listen {
            Some(address) => Some(
                std::net::TcpListener::bind(address)
                    .map_err(|reason| NodeError::Bind { address, reason })?,
            ),
            None => None,
        };
        let client_listener = match node.client_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|reason| NodeError::Bind { address, reason })?,
            ),
            None => None,
        };
        Ok(Self {
            router,
            links: links.into_values().collect(),
            listener,
            listen,
            client_listener,
            admin_listener,
            sent,
            stats,
            lifecycle,
        })
    }
}

/// What step 4 starts roles with.
struct StartContext<'a> {
    /// The config, with the moves followed.
    config: &'a SynodConfig,
    name: &'a str,
    router: &'a Addr<Router>,
    /// The moves followed (from the node's placement record).
    followed: &'a MovedRoles,
}

/// Step 4: one actor per role instance, each registered with the router.
async fn start_roles<S: RoleStore, M: StateMachine>(
    context: &StartContext<'_>,
    stores: Vec<OpenedRole<S>>,
    machine: &mut dyn FnMut() -> M,
    metrics: Option<&NodeMetrics>,
) -> Result<StartedRoles, NodeError> {
    let (config, router) = (context.config, context.router);
    let mut started = StartedRoles::default();
    for opened in stores {
        let OpenedRole {
            role,
            path,
            store,
            snapshots,
        } = opened;
        let limits = group_limits(config, role);
        let observer = metrics.map(|metrics| metrics.store(&role.to_string()));
        let writer = |store| GroupCommit::spawn_observed(store, path, limits, observer);
        let recipient: Recipient<Inbound<Message>> = match role.role {
            Role::Acceptor => {
                let state = store.load_acceptor()?;
                warn_if_removed(role, &state);
                let core = Acceptor::new(role.index, state)
                    .with_reply_max_bytes(config.paxos.reply_max_bytes);
                let actor: Addr<AcceptorActor<S>> =
                    spawn_role(core, NoHooks, writer(store), router);
                started.add(role, &actor);
                actor.recipient()
            }
            Role::Proposer => {
                let state = store.load_proposer()?;
                if moved_away_in_own_store(context, role, &state).await {
                    continue;
                }
                let core = Proposer::new(proposer_config(config, role.index), state, 0);
                let actor: Addr<ProposerActor<S>> =
                    spawn_role(core, ProposerHooks::default(), writer(store), router);
                started.proposers.push(proposer_port(role, &actor));
                started.add(role, &actor);
                actor.recipient()
            }
            Role::Learner => {
                let state = store.load_learner()?;
                let (core, applier) = learner(config, role, state, snapshots, machine())?;
                let (actor, port) =
                    spawn_learner(config, role, (core, applier), writer(store), router);
                started.learners.push(port);
                started.add(role, &actor);
                actor.recipient()
            }
        };
        let _ = router.send(RegisterRole { role, recipient }).await;
    }
    Ok(started)
}

/// Whether proposer `role`'s own store holds a newer configuration than
/// the node's placement record that moved it to another node. Its
/// leader wrote that configuration before the node could follow it (a
/// crash in between); it must not start here, where it would campaign
/// beside its new instance. The router follows that configuration now.
async fn moved_away_in_own_store(
    context: &StartContext<'_>,
    role: RoleId,
    state: &synod_core::ProposerState,
) -> bool {
    let Some(epoch) = &state.epoch else {
        return false;
    };
    let membership = &epoch.membership;
    if membership.epoch <= context.followed.epoch {
        return false;
    }
    let _ = context.router.send(Follow(membership.clone())).await;
    match membership.moved_to(role) {
        Some(node) if node != context.name => {
            tracing::warn!(%role, node, "{role} moved to node {node:?} in epoch {}: not started here", membership.epoch);
            true
        }
        _ => false,
    }
}

/// Start learner `role`'s actor; it and the port the gateway uses.
fn spawn_learner<S: RoleStore, M: StateMachine>(
    config: &SynodConfig,
    role: RoleId,
    (core, applier): (Learner, Applier<M>),
    writer: GroupCommit<S>,
    router: &Addr<Router>,
) -> (Addr<LearnerActor<S, M>>, LearnerPort) {
    let first_proposer = config.instances(Role::Proposer).first().copied();
    let leader = Rc::new(LeaderHint::new(first_proposer.unwrap_or(0)));
    let applier = applier.with_leader_hint(Rc::clone(&leader));
    let actor: Addr<LearnerActor<S, M>> = spawn_role(core, applier, writer, router);
    let port = LearnerPort {
        id: role,
        watch: actor.clone().recipient(),
        unwatch: actor.clone().recipient(),
        subscribe: actor.clone().recipient(),
        snapshot: actor.clone().recipient(),
        query: actor.clone().recipient(),
        watch_instance: actor.clone().recipient(),
        instance_value: actor.clone().recipient(),
        read_at: actor.clone().recipient(),
        leader,
    };
    (actor, port)
}

fn proposer_port<S: RoleStore>(role: RoleId, actor: &Addr<ProposerActor<S>>) -> ProposerPort {
    ProposerPort {
        id: role,
        submit: actor.clone().recipient(),
        propose: actor.clone().recipient(),
        reconfigure: actor.clone().recipient(),
    }
}

fn running_role<R: Core, S: RoleStore, H: Hooks<R>>(
    id: RoleId,
    actor: &Addr<RoleActor<R, S, H>>,
) -> RunningRole {
    RunningRole {
        id,
        stop: actor.clone().recipient(),
        status: actor.clone().recipient(),
    }
}

/// The group-commit limits of `role`'s store: a learner's lingers
/// (`storage.learner_group_linger_ms`), since no command waits for it.
fn group_limits(config: &SynodConfig, role: RoleId) -> GroupLimits {
    let linger = match role.role {
        Role::Learner => Duration::from_millis(config.storage.learner_group_linger_ms),
        Role::Acceptor | Role::Proposer => Duration::ZERO,
    };
    GroupLimits {
        max_submissions: config.storage.group_max_submissions,
        max_writes: config.storage.group_max_writes,
        linger,
    }
}

/// Starts and stops this node's roles when the placement the log decides
/// moves them (see `placement.rs`). Proposers and learners move while
/// nodes run: a proposer may start on an empty store (it discovers its
/// rounds first), a learner catches up from a peer's snapshot and the
/// log. An acceptor's promises never move (the gateway refuses).
struct PlacedRoles<B, M> {
    /// The config, with the moves followed at start.
    config: SynodConfig,
    name: String,
    backend: B,
    router: Addr<Router>,
    gateway: Weak<Gateway>,
    /// State machines for the learners that move here.
    machine: RefCell<Box<dyn FnMut() -> M>>,
    /// The node's metrics (with an admin port): moved roles' stores
    /// report there too.
    metrics: Option<Arc<NodeMetrics>>,
}

impl<B: Backend + Clone, M: StateMachine> PlacedRoles<B, M> {
    /// Open (or create) `role`'s store here and start its actor.
    fn spawn(
        &self,
        role: RoleId,
    ) -> Result<(RunningRole, StartedPort, Recipient<Inbound<Message>>), NodeError> {
        if role.role == Role::Acceptor {
            return Err(NodeError::Placement(format!(
                "{role} does not move: its promises stay in its store on its node"
            )));
        }
        let data_dir = &self.config.nodes[&self.name].data_dir;
        let owner = store_owner(&self.config, &self.name, role);
        let (store, _) = open_stamped(
            &self.backend,
            data_dir,
            &owner,
            Bootstrap::New,
            random_u64(),
        )?;
        let limits = group_limits(&self.config, role);
        let observer = self.metrics.as_ref().map(|m| m.store(&role.to_string()));
        let writer =
            |store| GroupCommit::spawn_observed(store, role_dir(data_dir, role), limits, observer);
        match role.role {
            Role::Proposer => {
                let state = synod_storage::ProposerStore::load_proposer(&store)?;
                let core = Proposer::new(proposer_config(&self.config, role.index), state, 0);
                let actor: Addr<ProposerActor<B::Store>> =
                    spawn_role(core, ProposerHooks::default(), writer(store), &self.router);
                let port = StartedPort::Proposer(proposer_port(role, &actor));
                Ok((running_role(role, &actor), port, actor.recipient()))
            }
            _ => {
                // A learner (acceptors were refused above).
                let snapshots = self.backend.snapshots(data_dir, role)?;
                let state = synod_storage::LearnerStore::load_learner(&store)?;
                let machine = (self.machine.borrow_mut())();
                let parts = learner(&self.config, role, state, snapshots, machine)?;
                let (actor, port) =
                    spawn_learner(&self.config, role, parts, writer(store), &self.router);
                Ok((
                    running_role(role, &actor),
                    StartedPort::Learner(port),
                    actor.recipient(),
                ))
            }
        }
    }
}

impl<B: Backend + Clone, M: StateMachine> RoleLifecycle for PlacedRoles<B, M> {
    fn start(&self, role: RoleId) -> Result<Recipient<Inbound<Message>>, String> {
        let gateway = self.gateway.upgrade().ok_or("the node is stopping")?;
        let (running, port, recipient) = self.spawn(role).map_err(|e| e.to_string())?;
        gateway.role_started(running, port);
        Ok(recipient)
    }

    fn stop(&self, role: RoleId) {
        if let Some(gateway) = self.gateway.upgrade() {
            gateway.role_moved_away(role);
        }
    }
}

/// Start `core` in its actor; its clock starts now (a new core's is 0).
fn spawn_role<R: Core, S: RoleStore, H: Hooks<R>>(
    core: R,
    hooks: H,
    writer: GroupCommit<S>,
    router: &Addr<Router>,
) -> Addr<RoleActor<R, S, H>> {
    let outbound = router.clone().recipient::<OutboundBatch<Message>>();
    RoleActor::new(core, hooks, writer, outbound, Instant::now()).start()
}

impl StartedRoles {
    fn add<R: Core, S: RoleStore, H: Hooks<R>>(
        &mut self,
        id: RoleId,
        actor: &Addr<RoleActor<R, S, H>>,
    ) {
        self.running.push(running_role(id, actor));
    }
}

/// Step 5: the gateway over the started roles.
/// (`configs`: the config file, and the same with the moves followed.)
fn gateway(
    (file, config): (&SynodConfig, &SynodConfig),
    name: &str,
    router: Addr<Router>,
    roles: StartedRoles,
    latency: Option<metrics::Histogram>,
) -> Gateway {
    let all_proposers = config.instances(Role::Proposer);
    let intake = crate::gateway::intake_for(
        roles.learners.first(),
        roles.proposers.first(),
        &router,
        config.paxos.batch_max_bytes,
    );
    Gateway {
        name: name.to_owned(),
        router,
        roles: RefCell::new(roles.running),
        proposers: RefCell::new(roles.proposers.into_iter().map(Rc::new).collect()),
        learners: RefCell::new(roles.learners.into_iter().map(Rc::new).collect()),
        all_proposers,
        session: Default::default(),
        opening: tokio::sync::Mutex::new(()),
        next_nonce: AtomicU64::new(random_u64()),
        next_read: AtomicU64::new(random_u64()),
        accepting: AtomicBool::new(true),
        submit_timeout: config.paxos.submit_timeout,
        submit_retry: config.paxos.submit_retry,
        max_command_bytes: config.paxos.max_command_bytes,
        max_instances: config.paxos.max_instances,
        intake: RefCell::new(intake.map(Rc::new)),
        forward_max_bytes: config.paxos.batch_max_bytes,
        membership: crate::gateway::MembershipRules {
            placed: synod_api::wire::MemberIds {
                acceptors: config.instances(Role::Acceptor),
                proposers: config.instances(Role::Proposer),
                learners: config.instances(Role::Learner),
                moved: Vec::new(),
            },
            placement: file.placement(),
            nodes: config.nodes.keys().cloned().collect(),
            quorums: config.quorums.clone(),
        },
        resends: Cell::new(0),
        answered: crate::gateway::Answered::new(latency),
    }
}

/// Step 7: serve the admin pages (when `admin_listen` is set).
fn serve_admin(
    config: &SynodConfig,
    name: &str,
    listener: std::net::TcpListener,
    admin: AdminActor,
) -> Result<(SocketAddr, actix_web::dev::ServerHandle), NodeError> {
    let bind_error = |reason| NodeError::Bind {
        address: config.nodes[name].admin_listen.expect("configured"),
        reason,
    };
    let address = listener.local_addr().map_err(bind_error)?;
    let config = Arc::clone(&admin.config);
    let handle = admin::serve(listener, admin.start(), config).map_err(bind_error)?;
    Ok((address, handle))
}

/// Step 6: serve the client port through the gateway until `stop`.
fn serve_clients(
    config: &SynodConfig,
    listener: TcpListener,
    gateway: &Rc<Gateway>,
    stats: &Arc<ClientPortStats>,
    stop: &CancellationToken,
) -> Result<SocketAddr, NodeError> {
    let address = listener.local_addr().map_err(|reason| NodeError::Bind {
        address: config.nodes[&gateway.name].listen,
        reason,
    })?;
    let node = &config.nodes[&gateway.name];
    let tls = match node.tls_files(config.tls.as_ref()) {
        Some(files) => Some(synod_tls::ServerTls::load(&files.cert, &files.key)?),
        None => None,
    };
    let port = client_server::ClientPort {
        cluster: config.cluster.id.clone(),
        token: config.cluster.client_token.clone(),
        limits: config.clients.clone(),
        stats: Arc::clone(stats),
        tls,
    };
    client_server::spawn(listener, Rc::clone(gateway), port, stop.clone());
    Ok(address)
}

fn transport_config(config: &SynodConfig, name: &str) -> Result<TransportConfig, NodeError> {
    let secret = config.secret().map_err(NodeError::Secret)?;
    let mut transport = TransportConfig::new(config.cluster.id.clone(), name, secret.into_bytes());
    for (peer, node) in &config.nodes {
        if peer != name {
            transport = transport.with_peer(peer.clone(), node.peer_address());
        }
    }
    let t = &config.transport;
    transport.max_frame_len = t.max_frame_len;
    transport.queue_capacity = t.queue_capacity;
    transport.handshake_timeout = t.handshake_timeout;
    transport.reconnect_min = t.reconnect_min;
    transport.reconnect_max = t.reconnect_max;
    transport.cluster_settings = config.cluster_settings();
    if let Some(files) = config.nodes[name].tls_files(config.tls.as_ref()) {
        transport.tls = Some(synod_tls::NodeTls::load(&files).map_err(NodeError::Tls)?);
    }
    Ok(transport)
}

/// An acceptor a configuration change removed starts as any other (the
/// carry into the next epoch may still read it), but says what to do.
fn warn_if_removed(role: RoleId, state: &synod_core::AcceptorState) {
    let Some(epoch) = &state.epoch else {
        return;
    };
    if !epoch.membership.acceptors.contains(&role.index) {
        tracing::warn!(
            acceptor = %role,
            epoch = epoch.membership.epoch,
            since_slot = epoch.start,
            "not a member of the latest configuration it was told of; once `synod member list` shows the registers carried, take it off [roles] and delete its store"
        );
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn proposer_config(config: &SynodConfig, id: u32) -> ProposerConfig {
    let p = &config.paxos;
    let mut c = ProposerConfig::new(
        id,
        config.instances(Role::Proposer),
        config.initial_acceptors(),
        config.instances(Role::Learner),
    );
    c.initial_proposers = config.initial(Role::Proposer);
    c.initial_learners = config.initial(Role::Learner);
    c.batch_max_commands = p.batch_max_commands;
    c.batch_max_bytes = p.batch_max_bytes;
    c.pipeline_window = p.pipeline_window;
    c.pipeline_eager = p.pipeline_eager;
    c.pipeline_max_bytes = p.pipeline_max_bytes;
    c.queue_limit = p.queue_limit;
    c.heartbeat_interval = millis(p.heartbeat_interval);
    c.election_timeout_min = millis(p.election_timeout_min);
    c.election_timeout_max = millis(p.election_timeout_max);
    c.retransmit_interval = millis(p.retransmit_interval);
    c.backoff_max = millis(p.backoff_max);
    c.quorum_timeout = millis(p.quorum_timeout);
    c.clock_interval = millis(p.clock_interval);
    c.quorums = config.quorum_system();
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
        session_horizon: p.session_horizon.max(1),
        max_sessions: p.max_sessions.max(1),
    }
}

pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}
