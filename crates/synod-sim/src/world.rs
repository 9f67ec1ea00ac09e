//! The discrete-event world: nodes, clients, the network and the fault
//! schedule, driven by one seeded generator and one event queue.
//!
//! Every event is hashed into a trace hash, so two runs of a seed can be
//! compared bit for bit.

mod clients;
mod leases;
mod transfer;

use crate::checkers::{
    Agreement, Integrity, LockOrder, PromiseOrder, StateDigest, Validity, Violation,
};
use crate::network::{Network, Partition};
use crate::shape::Shape;
use rand::seq::IteratorRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use synod_core::{
    Acceptor, AcceptorWrite, Ballot, Command, CommandId, Delivery, Learner, LearnerConfig,
    LearnerSnapshot, LearnerWrite, Membership, Message, Millis, Output, Proposer, ProposerConfig,
    Quorums, Role, RoleCore, RoleId, Slot, wake_at,
};
use synod_storage::{
    AcceptorStore, Bootstrap, Effect, LearnerStore, MemoryBackend, MemoryStore, Pipeline,
    ProposerStore, StorageError, Store, StoreOwner, Write, open_stamped,
};

/// How a run is set up beyond what the seed draws.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Acceptors forget everything on restart (the negative control).
    pub amnesia: bool,
    /// How long faults go on.
    pub fault_duration: Millis,
    /// Leaders never give up a ballot that lost its quorum (the negative
    /// control for seeds that cut the leader off from the acceptors).
    pub stubborn_leaders: bool,
    /// Simulated time the cluster gets, after healing, to decide every
    /// command and bring every learner level.
    pub liveness_bound: Millis,
    /// The largest message the network carries, in encoded bytes (as
    /// `transport.max_frame_len` does): a larger one is dropped and counted
    /// in [`SeedReport::oversized`]. The roles get byte budgets to match.
    pub frame_limit: Option<usize>,
    /// At healing, crash and restart every proposer at once (none keeps a
    /// leader's memory of the log), then every client writes once more.
    pub restart_proposers: bool,
    /// Acceptors answer a Prepare with one unbounded Promise (the negative
    /// control for `frame_limit`: with enough history, no leader can be
    /// elected after `restart_proposers`).
    pub unbounded_promises: bool,
    /// Release a role's replies when its writes are submitted instead of
    /// when they are durable (the negative control for the pipeline: a
    /// crash before the write lands loses a promise already sent).
    pub early_release: bool,
    /// A learner restored from a snapshot skips the log after it (the
    /// negative control for snapshots: the state digest must catch it).
    pub snapshot_without_tail: bool,
    /// The simulated disk takes 1 ms to this long per write group.
    pub max_write_latency: Millis,
    /// The leader trims the acceptors at its first unchosen slot, whether
    /// or not the learners have snapshots there (the negative control for
    /// the safe point: values nobody else holds are lost).
    pub unsafe_trim: bool,
    /// A client whose command is not answered in time resubmits it under a
    /// new id instead of retrying the same one (the negative control for
    /// the exactly-once checks: commands get applied twice).
    pub resubmit_on_timeout: bool,
    /// An acceptor restarted on a wiped (missing) store is started anyway,
    /// on a new empty store, as a node told `--init` would (the negative
    /// control for the identity gate: it votes with amnesia and agreement
    /// breaks). Without it, the node refuses that acceptor and it stays
    /// down.
    pub adopt_wiped_acceptors: bool,
    /// Acceptors answer a proposer's `RoundQuery` with a zero ballot, as
    /// if nobody had promised anything (the negative control for round
    /// discovery: a proposer restarted on a wiped store takes rounds it
    /// used before, and proposes new values under ballots that carry old
    /// ones).
    pub forgetful_round_reports: bool,
    /// The acceptors are reconfigured through the log during the faults:
    /// two spare acceptors run beside the first ones, and leaders are
    /// asked every 0.5–2.5 s to replace, add or remove one (3 to 5
    /// members, majorities). Registers are carried into each new epoch.
    /// One change in five also moves a proposer to another node: it
    /// stops when the configuration reaches it (as its router would stop
    /// it) and starts again on an empty store.
    pub reconfigure: bool,
    /// Acceptors' promise pages leave out stop signs (the negative
    /// control for reconfiguration: a leader of an ended epoch then
    /// proposes after its stop sign, and agreement must break).
    pub hide_stop_signs: bool,
    /// The carry of registers into a new epoch reads nothing (the negative
    /// control for the carry: acceptors of the new epoch vote on
    /// instances with no knowledge of what the earlier epoch chose, and
    /// agreement must break).
    pub blind_carries: bool,
    /// Which quorums the proposers count (majorities by default).
    pub quorums: SimQuorums,
    /// The lease workload: learners run the key/value state machine,
    /// leaders stamp their clocks, clients use leases and lease-bound
    /// locks (see `world/leases.rs`).
    pub leases: bool,
    /// Under `leases`, each learner expires leases by its own clock
    /// instead of the log's stamps (the negative control: learners must
    /// diverge).
    pub local_clock_leases: bool,
}

/// The quorum systems a run draws from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimQuorums {
    /// Majorities of the seed's 3 or 5 acceptors.
    #[default]
    Majority,
    /// Each seed draws one of [`FLEXIBLE_QUORUMS`], with its acceptor
    /// count (phase-1 quorums meet phase-2 quorums; majorities excluded).
    Flexible,
    /// Each seed draws one of [`UNSAFE_QUORUMS`], where a phase-1 quorum
    /// can miss a phase-2 quorum (the negative control: agreement must
    /// break in some seed).
    Unsafe,
}

/// Safe quorum systems that are not majorities, each of which survives
/// one acceptor down (the runs keep some acceptors down after healing).
pub const FLEXIBLE_QUORUMS: [(u32, Quorums); 7] = [
    (
        4,
        Quorums::Counts {
            phase1: 3,
            phase2: 2,
        },
    ),
    (4, Quorums::Grid { columns: 2 }),
    (
        5,
        Quorums::Counts {
            phase1: 4,
            phase2: 2,
        },
    ),
    (
        5,
        Quorums::Counts {
            phase1: 2,
            phase2: 4,
        },
    ),
    (6, Quorums::Grid { columns: 3 }),
    (6, Quorums::Grid { columns: 2 }),
    (9, Quorums::Grid { columns: 3 }),
];

/// Quorum systems with `phase1 + phase2 = n`: some phase-1 quorum misses
/// some phase-2 quorum.
pub const UNSAFE_QUORUMS: [(u32, Quorums); 4] = [
    (
        3,
        Quorums::Counts {
            phase1: 1,
            phase2: 2,
        },
    ),
    (
        4,
        Quorums::Counts {
            phase1: 2,
            phase2: 2,
        },
    ),
    (
        5,
        Quorums::Counts {
            phase1: 2,
            phase2: 3,
        },
    ),
    (
        5,
        Quorums::Counts {
            phase1: 3,
            phase2: 2,
        },
    ),
];

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            amnesia: false,
            stubborn_leaders: false,
            fault_duration: 10_000,
            liveness_bound: 30_000,
            frame_limit: None,
            restart_proposers: false,
            unbounded_promises: false,
            early_release: false,
            snapshot_without_tail: false,
            max_write_latency: 10,
            unsafe_trim: false,
            resubmit_on_timeout: false,
            adopt_wiped_acceptors: false,
            forgetful_round_reports: false,
            reconfigure: false,
            hide_stop_signs: false,
            blind_carries: false,
            quorums: SimQuorums::Majority,
            leases: false,
            local_clock_leases: false,
        }
    }
}

/// What happened to one seed.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The cluster and fault rates it drew.
    pub shape: Shape,
    /// The first safety violation, with the simulated time it happened.
    pub violation: Option<(Millis, Violation)>,
    /// Why liveness failed, if it did.
    pub liveness_failure: Option<String>,
    /// Hash of every event processed, in order.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Commands submitted by clients.
    pub commands: usize,
    /// Messages dropped for being larger than `frame_limit`.
    pub oversized: u64,
    /// Snapshots learners took (each followed by a compaction of the log).
    pub snapshots: u64,
    /// Learner starts restored from a snapshot.
    pub restores: u64,
    /// Trim points acceptors made durable.
    pub trims: u64,
    /// Snapshots learners fetched from a peer and installed.
    pub installs: u64,
    /// Learners restarted with their disk wiped.
    pub wipes: u64,
    /// Acceptors whose disk was wiped while they were down.
    pub acceptor_wipes: u64,
    /// Proposers restarted on a new empty store (their disk wiped while
    /// they were down).
    pub proposer_wipes: u64,
    /// Stop signs leaders were asked to propose.
    pub reconfigurations: u64,
    /// Proposers moved to another node by a configuration (stopped where
    /// they ran, started again on an empty store).
    pub proposer_moves: u64,
    /// The highest epoch a proposer reached.
    pub epoch: u32,
    /// Acceptor starts refused because the store was missing (each such
    /// acceptor stays down for good).
    pub refused_starts: u64,
    /// Commands refused because their session had expired (each then
    /// resubmitted in a new session).
    pub expiries: u64,
    /// Leases that expired on a learner (counted on every learner).
    pub lease_expiries: u64,
    /// Times a learner saw a lock go to a new holder.
    pub lock_grants: u64,
}

const CLIENT_RETRY: Millis = 400;
/// The node the config file puts a proposer on, in `proposer_nodes`.
const HOME_NODE: &str = "home";
const DONE_CHECK: Millis = 50;

#[derive(Clone, Debug, Hash)]
enum Event {
    Deliver {
        from: RoleId,
        to: RoleId,
        message: Message,
    },
    Tick {
        node: RoleId,
        incarnation: u64,
    },
    /// The oldest write group of `node` reached the disk.
    Durable {
        node: RoleId,
        incarnation: u64,
    },
    ClientSend {
        client: u64,
    },
    ClientRetry {
        client: u64,
        seq: u64,
    },
    Instance {
        name: String,
        value: Vec<u8>,
    },
    Chaos,
    Restart(RoleId),
    Mend(u64),
    Heal,
    FinalWrite {
        client: u64,
    },
    CheckDone,
    /// Ask the leader to propose the next configuration.
    Reconfigure,
}

/// A role instance: its durable store and, while it runs, its core behind
/// the same persist-then-release pipeline the actors use.
struct Replica<R> {
    live: Option<Live<R>>,
    store: MemoryStore,
}

struct Live<R> {
    core: R,
    incarnation: u64,
    pipeline: Pipeline,
    /// Write groups on their way to the disk, oldest first, each with the
    /// pipeline ticket it completes. A crash loses them.
    writing: VecDeque<(u64, Vec<Write>)>,
    /// When the disk finishes the newest group (groups finish in order).
    disk_free_at: Millis,
    /// The tick armed at the core's next deadline, if any.
    timer: Option<Millis>,
}

impl<R> Replica<R> {
    fn new() -> Self {
        Self {
            live: None,
            store: MemoryStore::new(),
        }
    }

    fn core(&self) -> Option<&R> {
        self.live.as_ref().map(|live| &live.core)
    }
}

/// A core the world runs, and where it keeps its replicas.
trait Placed: RoleCore<Write: Into<Write>> + Sized {
    fn replicas(world: &mut World) -> &mut BTreeMap<u32, Replica<Self>>;
}

impl Placed for Proposer {
    fn replicas(world: &mut World) -> &mut BTreeMap<u32, Replica<Self>> {
        &mut world.proposers
    }
}

impl Placed for Acceptor {
    fn replicas(world: &mut World) -> &mut BTreeMap<u32, Replica<Self>> {
        &mut world.acceptors
    }
}

impl Placed for Learner {
    fn replicas(world: &mut World) -> &mut BTreeMap<u32, Replica<Self>> {
        &mut world.learners
    }
}

#[derive(Default)]
struct Client {
    /// Commands this client has issued (0: none yet); the current one is
    /// the last.
    seq: u64,
    answered: bool,
    /// A final write waits for the command in flight to be answered.
    final_write_due: bool,
    /// The session it numbers commands in, once one is open.
    session: Option<u64>,
    /// The last sequence number used in `session`.
    session_seq: u64,
    /// The id the current command was submitted under, if it was.
    in_flight: Option<CommandId>,
    /// The current command's payload (the same on every retry).
    payload: Vec<u8>,
    /// Under the lease workload, the lease it holds, if any.
    lease: Option<u64>,
}

struct Checkers {
    validity: Validity,
    agreement: Agreement,
    integrity: Integrity,
    promises: PromiseOrder,
    digest: StateDigest,
    locks: LockOrder,
}

/// A learner's state machine in the simulation: a hash chain over the
/// commands it applied, slot by slot (and, under the lease workload, over
/// the key/value state it runs). Volatile: a restart starts it over, or
/// from a snapshot.
#[derive(Debug, Default)]
struct Machine {
    digest: u64,
    /// Slots applied since the last snapshot.
    since_snapshot: u64,
    /// The key/value state (used only by the lease workload).
    kv: synod_kv::KvStore,
}

/// A learner's durable snapshot: the core's part, the machine's digest,
/// and which commands the machine holds (for the liveness check).
#[derive(Clone, Debug)]
struct SimSnapshot {
    learner: LearnerSnapshot,
    digest: u64,
    learned: BTreeSet<CommandId>,
    /// The key/value state's snapshot (empty outside the lease workload).
    kv: Vec<u8>,
}

/// Run one seed to completion.
pub fn run_seed(seed: u64, options: &SimOptions) -> SeedReport {
    World::new(seed, options.clone()).run()
}

struct World {
    seed: u64,
    options: SimOptions,
    shape: Shape,
    /// The quorums every proposer counts.
    quorums: Quorums,
    /// The proposers and learners of epoch 0 (with `--reconfigure`
    /// sometimes fewer than all: the others start standby, as
    /// `[membership]` allows).
    initial_members: (Vec<u32>, Vec<u32>),
    rng: ChaCha8Rng,
    now: Millis,
    next_id: u64,
    queue: BTreeMap<(Millis, u64), Event>,
    network: Network,
    proposers: BTreeMap<u32, Replica<Proposer>>,
    acceptors: BTreeMap<u32, Replica<Acceptor>>,
    learners: BTreeMap<u32, Replica<Learner>>,
    incarnations: BTreeMap<RoleId, u64>,
    stay_down: BTreeSet<RoleId>,
    clients: BTreeMap<u64, Client>,
    /// Which client each open session belongs to.
    sessions: BTreeMap<u64, u64>,
    /// Learners forget sessions idle for this many slots (drawn per seed:
    /// often small, so sessions expire while clients think or wait).
    session_horizon: Slot,
    submitted: BTreeSet<CommandId>,
    /// Commands each learner's current state machine holds.
    learned_commands: BTreeMap<u32, BTreeSet<CommandId>>,
    machines: BTreeMap<u32, Machine>,
    snapshots: BTreeMap<u32, SimSnapshot>,
    /// Learners snapshot after this many applied slots (drawn per seed).
    snapshot_every: u64,
    /// Decided slots a proposer keeps for catch-up (drawn per seed, small,
    /// so that learners behind must fetch snapshots).
    decided_cache: usize,
    learned_instances: BTreeMap<u32, BTreeSet<String>>,
    instance_names: BTreeSet<String>,
    checkers: Checkers,
    violation: Option<(Millis, Violation)>,
    healed_at: Option<Millis>,
    /// The proposer cut off from the acceptors after healing, if any.
    severed: Option<u32>,
    done: bool,
    trace: DefaultHasher,
    events: u64,
    oversized: u64,
    snapshots_taken: u64,
    restores: u64,
    trims: u64,
    installs: u64,
    /// A peer's snapshot being staged, per learner (volatile).
    staging: BTreeMap<u32, (Slot, Vec<u8>)>,
    /// Learners whose disk is lost at their next start.
    wipe_on_start: BTreeSet<RoleId>,
    /// Disk losses still allowed: one, so another learner's snapshot
    /// always holds what the acceptors trimmed.
    wipes_left: u32,
    wipes: u64,
    /// Acceptors still to be wiped this seed (at most a minority).
    acceptor_wipes_left: u32,
    acceptor_wipes: u64,
    proposer_wipes: u64,
    reconfigurations: u64,
    /// Where each proposer runs, as every node's router would follow it:
    /// the epoch of the newest configuration that reached it, and the
    /// node that configuration puts it on (see `Membership::moved`).
    proposer_nodes: BTreeMap<u32, (u32, String)>,
    proposer_moves: u64,
    refused_starts: u64,
    /// Acceptors the identity gate refused: down for good.
    refused: BTreeSet<RoleId>,
    /// Every replica's store, as the node's backend holds them: opened
    /// through the same identity gate a node uses.
    backend: MemoryBackend,
    /// Incarnations drawn for stamped stores so far.
    stamps: u64,
    expiries: u64,
    lease_expiries: u64,
}

/// One of `systems` for this seed; the shape takes its acceptor count.
fn draw_quorums(rng: &mut ChaCha8Rng, systems: &[(u32, Quorums)], shape: &mut Shape) -> Quorums {
    let (acceptors, quorums) = systems[rng.random_range(0..systems.len())];
    shape.acceptors = acceptors;
    quorums
}

impl World {
    fn new(seed: u64, options: SimOptions) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut shape = Shape::random(&mut rng);
        let quorums = match options.quorums {
            SimQuorums::Majority => Quorums::majority(shape.acceptors as usize),
            SimQuorums::Flexible => draw_quorums(&mut rng, &FLEXIBLE_QUORUMS, &mut shape),
            SimQuorums::Unsafe => draw_quorums(&mut rng, &UNSAFE_QUORUMS, &mut shape),
        };
        let network = Network::new(shape.loss, shape.duplication, shape.max_delay);
        let mut world = Self {
            seed,
            options,
            rng,
            now: 0,
            next_id: 0,
            queue: BTreeMap::new(),
            network,
            proposers: BTreeMap::new(),
            acceptors: BTreeMap::new(),
            learners: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            stay_down: BTreeSet::new(),
            clients: BTreeMap::new(),
            sessions: BTreeMap::new(),
            session_horizon: synod_core::DEFAULT_SESSION_HORIZON,
            submitted: BTreeSet::new(),
            learned_commands: BTreeMap::new(),
            machines: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            snapshot_every: 0,
            learned_instances: BTreeMap::new(),
            instance_names: BTreeSet::new(),
            checkers: Checkers {
                validity: Validity::default(),
                agreement: Agreement::default(),
                integrity: Integrity::default(),
                promises: PromiseOrder::default(),
                digest: StateDigest::default(),
                locks: LockOrder::default(),
            },
            violation: None,
            healed_at: None,
            severed: None,
            done: false,
            trace: DefaultHasher::new(),
            events: 0,
            oversized: 0,
            snapshots_taken: 0,
            restores: 0,
            trims: 0,
            installs: 0,
            staging: BTreeMap::new(),
            wipe_on_start: BTreeSet::new(),
            wipes_left: 0,
            wipes: 0,
            acceptor_wipes_left: 0,
            acceptor_wipes: 0,
            proposer_wipes: 0,
            reconfigurations: 0,
            proposer_nodes: BTreeMap::new(),
            proposer_moves: 0,
            refused_starts: 0,
            refused: BTreeSet::new(),
            backend: MemoryBackend::new(),
            stamps: 0,
            expiries: 0,
            lease_expiries: 0,
            decided_cache: 0,
            initial_members: (Vec::new(), Vec::new()),
            shape,
            quorums,
        };
        world.snapshot_every = world.rng.random_range(3..=40);
        world.decided_cache = world.rng.random_range(2..=64);
        if world.rng.random_bool(0.5) {
            world.session_horizon = world.rng.random_range(15..=150);
        }
        world.wipes_left = u32::from(world.shape.learners >= 2);
        world.acceptor_wipes_left = world.tolerated_failures() as u32;
        let proposers: Vec<u32> = (1..=world.shape.proposers).collect();
        let learners: Vec<u32> = (1..=world.shape.learners).collect();
        world.initial_members = (proposers.clone(), learners.clone());
        if world.options.reconfigure {
            // Kept out of reconfiguration runs: wiped acceptors (down for
            // good) could become a majority of a later configuration.
            world.acceptor_wipes_left = 0;
            if world.rng.random_bool(0.3) {
                world.initial_members = (world.some_of(proposers, 2), world.some_of(learners, 2));
            }
        }
        world.populate();
        world
    }

    fn populate(&mut self) {
        for id in 1..=self.shape.proposers {
            self.proposers.insert(id, Replica::new());
            self.start(RoleId::proposer(id));
        }
        let spares = if self.options.reconfigure { 2 } else { 0 };
        for id in 1..=self.shape.acceptors + spares {
            let node = RoleId::acceptor(id);
            let store = self
                .open_store(node, Bootstrap::New)
                .expect("a new cluster's store");
            self.acceptors.insert(id, Replica { live: None, store });
            self.start(node);
        }
        for id in 1..=self.shape.learners {
            self.learners.insert(id, Replica::new());
            self.start(RoleId::learner(id));
        }
        let fault_end = self.options.fault_duration;
        for client in 1..=self.shape.clients {
            self.clients.insert(client, Client::default());
            let at = self.rng.random_range(0..fault_end / 2);
            self.schedule(at, Event::ClientSend { client });
        }
        for index in 0..self.shape.instances {
            let name = format!("register-{index}");
            self.instance_names.insert(name.clone());
            for proposal in 0..self.rng.random_range(2..=3) {
                let value = format!("{name}/proposal-{proposal}").into_bytes();
                self.checkers.validity.proposed_instance(&name, &value);
                let at = self.rng.random_range(0..fault_end);
                self.schedule(
                    at,
                    Event::Instance {
                        name: name.clone(),
                        value,
                    },
                );
            }
        }
        let first_fault = self.rng.random_range(0..=self.shape.fault_every);
        self.schedule(first_fault, Event::Chaos);
        if self.options.reconfigure {
            let at = self.rng.random_range(500..=2_500);
            self.schedule(at, Event::Reconfigure);
        }
        self.schedule(fault_end, Event::Heal);
    }

    fn run(mut self) -> SeedReport {
        while let Some(((at, _), event)) = self.queue.pop_first() {
            self.now = at;
            self.events += 1;
            (at, &event).hash(&mut self.trace);
            self.step(event);
            if self.violation.is_some() || self.done {
                break;
            }
            let deadline = self.healed_at.map(|h| h + self.options.liveness_bound);
            if deadline.is_some_and(|d| self.now > d) {
                break;
            }
        }
        let liveness_failure =
            (self.violation.is_none() && !self.done).then(|| self.liveness_report());
        SeedReport {
            seed: self.seed,
            shape: self.shape.clone(),
            violation: self.violation.take(),
            liveness_failure,
            trace_hash: self.trace.finish(),
            events: self.events,
            commands: self.submitted.len(),
            oversized: self.oversized,
            snapshots: self.snapshots_taken,
            restores: self.restores,
            trims: self.trims,
            installs: self.installs,
            wipes: self.wipes,
            acceptor_wipes: self.acceptor_wipes,
            proposer_wipes: self.proposer_wipes,
            reconfigurations: self.reconfigurations,
            proposer_moves: self.proposer_moves,
            epoch: self.highest_epoch(),
            refused_starts: self.refused_starts,
            expiries: self.expiries,
            lease_expiries: self.lease_expiries,
            lock_grants: self.checkers.locks.grants,
        }
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.next_id += 1;
        self.queue.insert((at, self.next_id), event);
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, message } => self.deliver(from, to, message),
            Event::Tick { node, incarnation } => match node.role {
                Role::Proposer => self.tick::<Proposer>(node, incarnation),
                Role::Acceptor => self.tick::<Acceptor>(node, incarnation),
                Role::Learner => self.tick::<Learner>(node, incarnation),
            },
            Event::Durable { node, incarnation } => match node.role {
                Role::Proposer => self.durable::<Proposer>(node, incarnation),
                Role::Acceptor => self.durable::<Acceptor>(node, incarnation),
                Role::Learner => self.durable::<Learner>(node, incarnation),
            },
            Event::ClientSend { client } => self.client_send(client),
            Event::ClientRetry { client, seq } => self.client_retry(client, seq),
            Event::Instance { name, value } => self.propose_instance(name, value),
            Event::Chaos => self.chaos(),
            Event::Restart(node) => {
                if !self.stay_down.contains(&node) {
                    self.start(node);
                }
            }
            Event::Mend(id) => self.network.mend(id),
            Event::Heal => self.heal(),
            Event::FinalWrite { client } => self.final_write(client),
            Event::Reconfigure => self.reconfigure(),
            Event::CheckDone => {
                self.done = self.all_done();
                self.schedule(self.now + DONE_CHECK, Event::CheckDone);
            }
        }
    }

    // ---- nodes ------------------------------------------------------------

    fn is_live(&self, node: RoleId) -> bool {
        match node.role {
            Role::Proposer => self.proposers[&node.index].live.is_some(),
            Role::Acceptor => self.acceptors[&node.index].live.is_some(),
            Role::Learner => self.learners[&node.index].live.is_some(),
        }
    }

    /// Start (or restart) `node` from its durable state.
    fn start(&mut self, node: RoleId) {
        if self.is_live(node) || self.refused.contains(&node) {
            return;
        }
        let incarnation = {
            let counter = self.incarnations.entry(node).or_default();
            *counter += 1;
            *counter
        };
        match node.role {
            Role::Proposer => {
                let core = self.new_proposer(node);
                self.launch(node, core, incarnation);
            }
            Role::Acceptor => {
                if let Some(core) = self.new_acceptor(node) {
                    self.launch(node, core, incarnation);
                }
            }
            Role::Learner => {
                let core = self.new_learner(node);
                self.learned_instances.insert(node.index, BTreeSet::new());
                self.launch(node, core, incarnation);
            }
        }
    }

    fn new_proposer(&mut self, node: RoleId) -> Proposer {
        let mut config = ProposerConfig::new(
            node.index,
            (1..=self.shape.proposers).collect(),
            (1..=self.shape.acceptors).collect(),
            (1..=self.shape.learners).collect(),
        );
        config.seed = self.rng.random();
        config.quorums = self.quorums;
        (config.initial_proposers, config.initial_learners) = self.initial_members.clone();
        config.decided_cache = self.decided_cache;
        if self.options.leases {
            config.clock_interval = leases::SIM_CLOCK_INTERVAL;
        }
        if self.options.stubborn_leaders {
            config.quorum_timeout = Millis::MAX;
        }
        if let Some(budget) = self.reply_budget() {
            config.reply_max_bytes = budget;
            config.batch_max_bytes = budget;
        }
        if self.wipe_on_start.remove(&node) {
            // A proposer-only node restarted with `--init` on a new disk:
            // safe, because the proposer discovers its rounds.
            let replica = self.proposers.get_mut(&node.index).expect("exists");
            replica.store = MemoryStore::new();
            self.proposer_wipes += 1;
        }
        let state = self.proposers[&node.index].store.load_proposer();
        Proposer::new(config, state.expect("memory store"), self.now)
    }

    /// The store of `node`, opened through the identity gate as a node
    /// opens it.
    fn open_store(
        &mut self,
        node: RoleId,
        bootstrap: Bootstrap,
    ) -> Result<MemoryStore, StorageError> {
        self.stamps += 1;
        let owner = StoreOwner {
            cluster: "sim".into(),
            node: node.to_string(),
            role: node,
        };
        let data_dir = std::path::Path::new("/sim");
        open_stamped(&self.backend, data_dir, &owner, bootstrap, self.stamps)
            .map(|(store, _)| store)
    }

    /// The acceptor `node` restarted from its store; `None` if the identity
    /// gate refuses a wiped one (it then stays down for good).
    fn new_acceptor(&mut self, node: RoleId) -> Option<Acceptor> {
        let budget = match (self.options.unbounded_promises, self.reply_budget()) {
            (true, _) => Some(usize::MAX),
            (false, budget) => budget,
        };
        let wiped = self.wipe_on_start.remove(&node);
        if wiped {
            self.backend.wipe(std::path::Path::new("/sim"), node);
            self.acceptor_wipes += 1;
        }
        let bootstrap = match self.options.adopt_wiped_acceptors {
            true => Bootstrap::New,
            false => Bootstrap::Existing,
        };
        let store = match self.open_store(node, bootstrap) {
            Ok(store) => store,
            Err(StorageError::Missing { .. }) => {
                self.refused_starts += 1;
                self.refused.insert(node);
                return None;
            }
            Err(e) => panic!("memory store: {e}"),
        };
        let replica = self.acceptors.get_mut(&node.index).expect("exists");
        replica.store = store;
        if self.options.amnesia {
            replica.store = MemoryStore::new();
        }
        let state = replica.store.load_acceptor().expect("memory store");
        // Under amnesia (and an adopted wipe) the loss is deliberate: what
        // must be caught there is what forgetting does to the protocol,
        // not the loss itself.
        if !self.options.amnesia && !wiped {
            let check = self.checkers.promises.restarted(node, &state);
            self.record(check);
        }
        let mut acceptor = Acceptor::new(node.index, state);
        if let Some(budget) = budget {
            acceptor = acceptor.with_reply_max_bytes(budget);
        }
        Some(acceptor)
    }

    fn new_learner(&mut self, node: RoleId) -> Learner {
        let config = LearnerConfig {
            id: node.index,
            learners: (1..=self.shape.learners).collect(),
            proposers: (1..=self.shape.proposers).collect(),
            catch_up_interval: 100,
            catch_up_batch: 64,
            reply_max_bytes: self.reply_budget().unwrap_or(1 << 20),
            instance_sync_interval: 500,
            session_horizon: self.session_horizon,
            max_sessions: synod_core::DEFAULT_MAX_SESSIONS,
        };
        if self.wipe_on_start.remove(&node) {
            let replica = self.learners.get_mut(&node.index).expect("exists");
            replica.store = MemoryStore::new();
            self.snapshots.remove(&node.index);
            self.wipes += 1;
        }
        let state = self.learners[&node.index].store.load_learner();
        let state = state.expect("memory store");
        self.checkers.locks.restarted(node);
        let Some(snapshot) = self.snapshots.get(&node.index).cloned() else {
            self.checkers.integrity.restarted(node, 0);
            self.learned_commands.insert(node.index, BTreeSet::new());
            self.machines.insert(node.index, Machine::default());
            return Learner::new(config, state);
        };
        let mut from = snapshot.learner;
        if self.options.snapshot_without_tail {
            from.upto = state
                .decided
                .last_key_value()
                .map_or(from.upto, |(s, _)| s + 1);
        }
        self.restores += 1;
        self.checkers.integrity.restarted(node, from.upto);
        self.learned_commands.insert(node.index, snapshot.learned);
        let machine = Machine {
            digest: snapshot.digest,
            since_snapshot: 0,
            kv: leases::kv_from(&snapshot.kv),
        };
        self.machines.insert(node.index, machine);
        Learner::restored(config, state, &from)
    }

    /// A learner whose every delivery has reached its state machine (no
    /// write pending) snapshots once `snapshot_every` slots were applied
    /// since the last, then compacts its log.
    fn maybe_snapshot(&mut self, node: RoleId) {
        let due = self.machines[&node.index].since_snapshot >= self.snapshot_every;
        let Some(live) = self.live_mut::<Learner>(node) else {
            return;
        };
        if !due || live.pipeline.pending_writes() > 0 {
            return;
        }
        let learner = live.core.snapshot();
        let upto = learner.upto;
        let machine = self.machines.get_mut(&node.index).expect("running");
        machine.since_snapshot = 0;
        let kv = match self.options.leases {
            true => leases::kv_bytes(&machine.kv),
            false => Vec::new(),
        };
        let snapshot = SimSnapshot {
            learner,
            digest: machine.digest,
            learned: self.learned_commands[&node.index].clone(),
            kv,
        };
        self.snapshots.insert(node.index, snapshot);
        self.snapshots_taken += 1;
        let out = self
            .live_mut::<Learner>(node)
            .expect("live")
            .core
            .compact(upto);
        self.process::<Learner>(node, out);
    }

    /// Run `core` as incarnation `incarnation` of `node`.
    fn launch<R: Placed>(&mut self, node: RoleId, mut core: R, incarnation: u64) {
        let started = core.start(self.now);
        let replica = R::replicas(self).get_mut(&node.index).expect("exists");
        replica.live = Some(Live {
            core,
            incarnation,
            pipeline: Pipeline::new(),
            writing: VecDeque::new(),
            disk_free_at: 0,
            timer: None,
        });
        self.process::<R>(node, started);
    }

    /// The node stops at once: what it had not written is lost.
    fn crash(&mut self, node: RoleId) {
        match node.role {
            Role::Proposer => self.proposers.get_mut(&node.index).expect("exists").live = None,
            Role::Acceptor => self.acceptors.get_mut(&node.index).expect("exists").live = None,
            Role::Learner => {
                self.learners.get_mut(&node.index).expect("exists").live = None;
                self.staging.remove(&node.index);
            }
        }
    }

    fn live_mut<R: Placed>(&mut self, node: RoleId) -> Option<&mut Live<R>> {
        R::replicas(self).get_mut(&node.index)?.live.as_mut()
    }

    fn deliver(&mut self, from: RoleId, to: RoleId, message: Message) {
        match to.role {
            Role::Proposer => self.handle::<Proposer>(to, from, message),
            Role::Acceptor => self.handle::<Acceptor>(to, from, message),
            Role::Learner => self.handle::<Learner>(to, from, message),
        }
    }

    fn handle<R: Placed>(&mut self, node: RoleId, from: RoleId, message: Message) {
        let now = self.now;
        if std::env::var("SIM_TRACE").is_ok()
            && (self.healed_at.is_some() || std::env::var("SIM_TRACE_ALL").is_ok())
            && (node.role == Role::Proposer || from.role == Role::Proposer)
        {
            let text = format!("{message:?}");
            eprintln!("{now} {from} -> {node}: {}", &text[..text.len().min(150)]);
        }
        let mut message = message;
        self.apply_controls(&mut message);
        if node.role == Role::Proposer && self.moves_proposer(node.index, &message) {
            // Its router stops it before delivering; the new node starts
            // it on an empty store, which learns the epoch by itself.
            self.move_proposer(node.index);
            return;
        }
        let Some(live) = self.live_mut::<R>(node) else {
            return; // a crashed node loses what it is sent
        };
        let out = live.core.handle(now, from, message);
        self.process::<R>(node, out);
    }

    /// What the negative controls do to a message on its way in:
    /// acceptors' round reports forget every promise, promise pages leave
    /// out stop signs, carries read no votes.
    fn apply_controls(&self, message: &mut Message) {
        match message {
            Message::RoundReport { promised } if self.options.forgetful_round_reports => {
                *promised = Ballot::ZERO;
            }
            Message::Promise { accepted, .. } if self.options.hide_stop_signs => {
                accepted.retain(|e| !matches!(e.value, synod_core::Value::Reconfigure(_)));
            }
            Message::InstanceVotes { votes, next, .. } if self.options.blind_carries => {
                votes.clear();
                *next = None;
            }
            _ => {}
        }
    }

    fn tick<R: Placed>(&mut self, node: RoleId, incarnation: u64) {
        let now = self.now;
        let Some(live) = self.live_mut::<R>(node) else {
            return;
        };
        if live.incarnation != incarnation || live.timer != Some(now) {
            return; // a timer of a crashed incarnation, or one re-armed earlier
        }
        live.timer = None;
        let out = live.core.tick(now);
        self.process::<R>(node, out);
        if self.options.unsafe_trim && node.role == Role::Proposer {
            self.trim_unsafely(node);
        }
    }

    /// The negative control's leader: trims every acceptor at its first
    /// unchosen slot, ignoring the learners.
    fn trim_unsafely(&mut self, node: RoleId) {
        let Some(proposer) = self.proposers[&node.index].core() else {
            return;
        };
        if proposer.leading_ballot().is_none() || proposer.first_unchosen() == 0 {
            return;
        }
        let below = proposer.first_unchosen();
        let trims = self
            .acceptors
            .keys()
            .map(|a| synod_core::Outgoing {
                to: RoleId::acceptor(*a),
                message: Message::Trim {
                    below,
                    ballot: proposer.leading_ballot().expect("leads"),
                },
            })
            .collect();
        self.send_all(node, trims);
    }

    // ---- effects ------------------------------------------------------------
    //
    // Every output goes through the role's `Pipeline`, as in the actors:
    // writes go to a simulated disk that finishes them in order after a
    // random latency, and what depends on them is released only then. A
    // crash loses the writes still on their way, and the replies held for
    // them with them.

    fn process<R: Placed>(&mut self, node: RoleId, out: Output<R::Write>) {
        let step = self.live_mut::<R>(node).expect("live").pipeline.run(out);
        self.release(node, step.release);
        if let Some((ticket, writes)) = step.submit {
            self.check_writes(node, &writes);
            let latency = self
                .rng
                .random_range(1..=self.options.max_write_latency.max(1));
            let (now, early) = (self.now, self.options.early_release);
            let live = self.live_mut::<R>(node).expect("live");
            live.disk_free_at = live.disk_free_at.max(now + latency);
            let (at, incarnation) = (live.disk_free_at, live.incarnation);
            live.writing.push_back((ticket, writes));
            let premature = if early {
                live.pipeline.durable(ticket)
            } else {
                Vec::new()
            };
            self.schedule(at, Event::Durable { node, incarnation });
            self.release(node, premature);
        }
        self.arm::<R>(node);
    }

    /// Arm the node's timer at its core's next deadline, unless an earlier
    /// one is armed.
    fn arm<R: Placed>(&mut self, node: RoleId) {
        let now = self.now;
        let Some(live) = self.live_mut::<R>(node) else {
            return;
        };
        let Some(at) = wake_at(&live.core, now) else {
            return;
        };
        if live.timer.is_some_and(|armed| armed <= at) {
            return;
        }
        live.timer = Some(at);
        let incarnation = live.incarnation;
        self.schedule(at, Event::Tick { node, incarnation });
    }

    /// The oldest write group of `node` is on disk: store it, then release
    /// what waited for it.
    fn durable<R: Placed>(&mut self, node: RoleId, incarnation: u64) {
        let replica = R::replicas(self).get_mut(&node.index).expect("exists");
        let Some(live) = replica.live.as_mut() else {
            return; // crashed first: the write never landed
        };
        if live.incarnation != incarnation {
            return;
        }
        let (ticket, writes) = live.writing.pop_front().expect("a write on its way");
        let released = live.pipeline.durable(ticket);
        replica
            .store
            .write_batch(&writes)
            .expect("the memory store does not fail");
        self.release(node, released);
        if node.role == Role::Learner {
            self.maybe_snapshot(node);
        }
    }

    fn release(&mut self, node: RoleId, effects: Vec<Effect>) {
        let mut messages = Vec::new();
        let mut snapshot_work = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send(outgoing) => messages.push(outgoing),
                Effect::Deliver(
                    work @ (Delivery::SnapshotChunk(_) | Delivery::ServeSnapshot { .. }),
                ) => snapshot_work.push(work),
                Effect::Deliver(delivery) => {
                    let check = self.checkers.integrity.delivered(node, &delivery);
                    self.record(check);
                    self.observe_delivery(node, &delivery);
                }
            }
        }
        self.send_all(node, messages);
        for work in snapshot_work {
            match work {
                Delivery::SnapshotChunk(chunk) => self.stage_snapshot(node, chunk),
                Delivery::ServeSnapshot {
                    to,
                    upto,
                    offset,
                    max_bytes,
                } => self.serve_snapshot(node, to, upto, offset, max_bytes),
                Delivery::Slot { .. } | Delivery::Instance { .. } | Delivery::ReadReady { .. } => {}
            }
        }
    }

    /// A learner's decisions are checked when its core makes them.
    fn check_writes(&mut self, node: RoleId, writes: &[Write]) {
        for write in writes {
            let check = match write {
                Write::Learner(LearnerWrite::Decided { slot, value }) => self
                    .checkers
                    .validity
                    .decided_slot(value)
                    .and_then(|()| self.checkers.agreement.decided_slot(node, *slot, value)),
                Write::Learner(LearnerWrite::InstanceDecided { name, value }) => self
                    .checkers
                    .validity
                    .decided_instance(name, value)
                    .and_then(|()| self.checkers.agreement.decided_instance(node, name, value)),
                Write::Acceptor(AcceptorWrite::Trim(_)) => {
                    self.trims += 1;
                    Ok(())
                }
                _ => Ok(()),
            };
            self.record(check);
        }
    }

    /// The byte budget of replies and batches under a frame limit: a
    /// quarter of the frame, as the runtime's defaults keep it.
    fn reply_budget(&self) -> Option<usize> {
        self.options.frame_limit.map(|limit| limit / 4)
    }

    fn too_large(&self, message: &Message) -> bool {
        self.options.frame_limit.is_some_and(|limit| {
            postcard::to_stdvec(message).map_or(true, |bytes| bytes.len() > limit)
        })
    }

    fn send_all(&mut self, from: RoleId, outgoing: Vec<synod_core::Outgoing>) {
        let moved = from.role == Role::Proposer
            && outgoing
                .iter()
                .any(|o| self.moves_proposer(from.index, &o.message));
        if moved {
            // It entered the configuration that moves it: its router
            // lets the announcements out and nothing else, and stops it.
            self.move_proposer(from.index);
        }
        for o in outgoing {
            if moved && !matches!(o.message, Message::EpochInfo { .. }) {
                continue;
            }
            self.check_sent(from, &o.message);
            if self.too_large(&o.message) {
                self.oversized += 1;
                continue;
            }
            for delay in self.network.delays(&mut self.rng, from, o.to) {
                let event = Event::Deliver {
                    from,
                    to: o.to,
                    message: o.message.clone(),
                };
                self.schedule(self.now + delay, event);
            }
        }
    }

    fn check_sent(&mut self, from: RoleId, message: &Message) {
        let check = match message {
            Message::Decided { slot, value } => self
                .checkers
                .validity
                .decided_slot(value)
                .and_then(|()| self.checkers.agreement.decided_slot(from, *slot, value)),
            Message::InstanceDecided { name, value } => self
                .checkers
                .validity
                .decided_instance(name, value)
                .and_then(|()| self.checkers.agreement.decided_instance(from, name, value)),
            _ if from.role == Role::Acceptor => self.checkers.promises.sent(from, message),
            _ => Ok(()),
        };
        self.record(check);
    }

    fn record(&mut self, check: Result<(), Violation>) {
        if let Err(violation) = check {
            self.violation.get_or_insert((self.now, violation));
        }
    }

    // ---- clients ------------------------------------------------------------

    fn observe_delivery(&mut self, learner: RoleId, delivery: &Delivery) {
        match delivery {
            Delivery::Slot {
                slot,
                commands,
                opened,
                expired,
                clock,
            } => {
                let (responses, kv_digest) = match self.options.leases {
                    true => self.apply_to_kv(learner, *slot, *clock, commands),
                    false => (Vec::new(), 0),
                };
                let machine = self.machines.entry(learner.index).or_default();
                let mut hasher = DefaultHasher::new();
                (
                    machine.digest,
                    slot,
                    commands.iter().map(|c| c.id).collect::<Vec<_>>(),
                    kv_digest,
                )
                    .hash(&mut hasher);
                machine.digest = hasher.finish();
                // Clock stamps do not count towards a snapshot, as in the
                // learner actor (which counts commands): a log of stamps
                // would otherwise replace snapshots faster than a wiped
                // learner can fetch one.
                machine.since_snapshot += u64::from(clock.is_none());
                let digest = machine.digest;
                let check = self.checkers.digest.applied(learner, *slot, digest);
                self.record(check);
                for (i, command) in commands.iter().enumerate() {
                    let check = self.checkers.integrity.applied_once(command);
                    self.record(check);
                    self.learned_commands
                        .entry(learner.index)
                        .or_default()
                        .insert(command.id);
                    self.answer(command.id, responses.get(i).map(Vec::as_slice));
                }
                for (open, session) in opened {
                    self.session_opened(*open, *session);
                }
                for id in expired {
                    self.session_expired(*id);
                }
            }
            Delivery::Instance { name, .. } => {
                self.learned_instances
                    .entry(learner.index)
                    .or_default()
                    .insert(name.clone());
            }
            Delivery::SnapshotChunk(_)
            | Delivery::ServeSnapshot { .. }
            | Delivery::ReadReady { .. } => {}
        }
    }

    /// Hand `command` to a random proposer; a crashed one loses it (the
    /// client retries).
    fn submit(&mut self, command: Command) {
        let node = RoleId::proposer(self.rng.random_range(1..=self.shape.proposers));
        let now = self.now;
        let Some(live) = self.live_mut::<Proposer>(node) else {
            return;
        };
        if let Ok(out) = live.core.submit(now, vec![command]) {
            self.process::<Proposer>(node, out);
        }
    }

    fn propose_instance(&mut self, name: String, value: Vec<u8>) {
        // Proposed while some learner lacks it: a learner whose disk was
        // wiped may have been the only one to learn it, and running the
        // instance again recovers the chosen value from the acceptors.
        let learned_everywhere = self.learners.keys().all(|l| {
            self.learned_instances
                .get(l)
                .is_some_and(|names| names.contains(&name))
        });
        if learned_everywhere {
            // Looked at again later: a learner that crashes before its
            // copy is durable forgets it, and the proposer announcing it
            // may crash too.
            self.schedule(self.now + 4 * CLIENT_RETRY, Event::Instance { name, value });
            return;
        }
        let node = RoleId::proposer(self.rng.random_range(1..=self.shape.proposers));
        let now = self.now;
        if let Some(live) = self.live_mut::<Proposer>(node) {
            let out = live.core.propose_instance(now, name.clone(), value.clone());
            self.process::<Proposer>(node, out);
        }
        let wait = CLIENT_RETRY + self.rng.random_range(0..CLIENT_RETRY);
        self.schedule(self.now + wait, Event::Instance { name, value });
    }

    // ---- reconfiguration ----------------------------------------------------

    /// The highest epoch any proposer works in.
    fn highest_epoch(&self) -> u32 {
        let cores = self.proposers.values().filter_map(|r| r.core());
        cores.map(|p| p.epoch().membership.epoch).max().unwrap_or(0)
    }

    /// Ask a proposer (of the latest epoch) for the next configuration:
    /// one acceptor replaced, added or removed.
    fn reconfigure(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let next_at = self.now + self.rng.random_range(500..=2_500);
        self.schedule(next_at, Event::Reconfigure);
        // As an operator would: ask any live proposer of the latest epoch,
        // which proposes the change if it leads and forwards it otherwise.
        let live: Vec<(u32, Membership)> = self
            .proposers
            .iter()
            .filter_map(|(id, r)| Some((*id, r.core()?.epoch().membership.clone())))
            .collect();
        let Some(latest) = live.iter().map(|(_, m)| m.epoch).max() else {
            return;
        };
        let asked: Vec<&(u32, Membership)> =
            live.iter().filter(|(_, m)| m.epoch == latest).collect();
        let (asked, current) = asked[self.rng.random_range(0..asked.len())].clone();
        let next = self.next_membership(&current);
        let node = RoleId::proposer(asked);
        let now = self.now;
        let live = self.live_mut::<Proposer>(node).expect("live");
        if let Ok(out) = live.core.request_reconfigure(now, next) {
            self.reconfigurations += 1;
            self.process::<Proposer>(node, out);
        }
    }

    /// `current` with one acceptor replaced, added or removed (3 to 5
    /// members, majority quorums), and sometimes other proposers or
    /// learners in it (the rest stay standby).
    fn next_membership(&mut self, current: &Membership) -> Membership {
        let members: BTreeSet<u32> = current.acceptors.iter().copied().collect();
        let spares: Vec<u32> = self
            .acceptors
            .keys()
            .copied()
            .filter(|a| !members.contains(a))
            .collect();
        let mut next = members.clone();
        let gone = *members.iter().choose(&mut self.rng).expect("members");
        let added = spares.iter().choose(&mut self.rng).copied();
        match (self.rng.random_range(0..3), added) {
            (0, _) if members.len() > 3 => {
                next.remove(&gone);
            }
            (1, Some(added)) if members.len() < 5 => {
                next.insert(added);
            }
            (_, Some(added)) => {
                next.remove(&gone);
                next.insert(added);
            }
            (_, None) => {}
        }
        let acceptors: Vec<u32> = next.into_iter().collect();
        let mut next =
            current.with_acceptors(acceptors.clone(), Quorums::majority(acceptors.len()));
        // Two of each at least where there are two: the fault phase may
        // cut the leader off for good, and another must take over; and
        // it may wipe a learner's disk, which is rebuilt from another
        // learner's snapshot, and below the trim point only the learners
        // of the configuration are sure to have one.
        if self.rng.random_bool(0.3) {
            next.proposers = self.some_of(self.proposers.keys().copied().collect(), 2);
        }
        if self.rng.random_bool(0.3) {
            next.learners = self.some_of(self.learners.keys().copied().collect(), 2);
        }
        if self.rng.random_bool(0.2) {
            next.moved = self.move_a_proposer(&next.moved);
        }
        next
    }

    /// `moved` with one proposer put on another node (or back on its
    /// config file's node, which leaves the list).
    fn move_a_proposer(&mut self, moved: &[(RoleId, String)]) -> Vec<(RoleId, String)> {
        let id = *self
            .proposers
            .keys()
            .choose(&mut self.rng)
            .expect("proposers");
        let role = RoleId::proposer(id);
        let nodes = [HOME_NODE, "node-a", "node-b"];
        let to = nodes.into_iter().choose(&mut self.rng).expect("nodes");
        let mut next: Vec<(RoleId, String)> =
            moved.iter().filter(|(r, _)| *r != role).cloned().collect();
        if to != HOME_NODE {
            next.push((role, to.to_owned()));
            next.sort();
        }
        next
    }

    /// A random subset of `ids` (ascending) of at least `least` of them
    /// (all of them if there are fewer).
    fn some_of(&mut self, ids: Vec<u32>, least: usize) -> Vec<u32> {
        let count = self.rng.random_range(least.min(ids.len())..=ids.len());
        let mut some = ids.into_iter().choose_multiple(&mut self.rng, count);
        some.sort_unstable();
        some
    }

    /// Whether `message` names a newer configuration that puts proposer
    /// `id` on another node than it runs on (followed as a router would).
    fn moves_proposer(&mut self, id: u32, message: &Message) -> bool {
        let Message::EpochInfo { epoch } = message else {
            return false;
        };
        let membership = &epoch.membership;
        let (followed, node) = self
            .proposer_nodes
            .entry(id)
            .or_insert_with(|| (0, HOME_NODE.to_owned()));
        if membership.epoch <= *followed {
            return false;
        }
        *followed = membership.epoch;
        let to = membership
            .moved_to(RoleId::proposer(id))
            .unwrap_or(HOME_NODE);
        if to == node {
            return false;
        }
        to.clone_into(node);
        true
    }

    /// Proposer `id` stops where it ran and starts soon on its new node,
    /// on an empty store.
    fn move_proposer(&mut self, id: u32) {
        let node = RoleId::proposer(id);
        self.crash(node);
        self.wipe_on_start.insert(node);
        self.proposer_moves += 1;
        let starts_in = self.rng.random_range(1..=50);
        self.schedule(self.now + starts_in, Event::Restart(node));
    }

    // ---- faults -------------------------------------------------------------

    fn all_nodes(&self) -> Vec<RoleId> {
        let proposers = self.proposers.keys().map(|i| RoleId::proposer(*i));
        let acceptors = self.acceptors.keys().map(|i| RoleId::acceptor(*i));
        let learners = self.learners.keys().map(|i| RoleId::learner(*i));
        proposers.chain(acceptors).chain(learners).collect()
    }

    /// One random fault, then schedule the next while faults are on.
    fn chaos(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let nodes = self.all_nodes();
        let node = *nodes.iter().choose(&mut self.rng).expect("nodes exist");
        let lasts = self.rng.random_range(50..=2_000);
        match self.rng.random_range(0..6) {
            0 | 1 => {
                self.crash(node);
                if node.role == Role::Learner && self.wipes_left > 0 && self.rng.random_bool(0.3) {
                    self.wipes_left -= 1;
                    self.wipe_on_start.insert(node);
                }
                if node.role == Role::Proposer && self.rng.random_bool(0.9) {
                    self.wipe_on_start.insert(node);
                }
                if node.role == Role::Acceptor
                    && self.acceptor_wipes_left > 0
                    && self.rng.random_bool(0.2)
                {
                    self.acceptor_wipes_left -= 1;
                    self.wipe_on_start.insert(node);
                }
                self.schedule(self.now + lasts, Event::Restart(node));
            }
            2 => self.partition(Partition::Isolate(node), lasts),
            3 => {
                let size = self.rng.random_range(1..nodes.len());
                let group = nodes
                    .iter()
                    .copied()
                    .choose_multiple(&mut self.rng, size)
                    .into_iter()
                    .collect();
                self.partition(Partition::Split(group), lasts);
            }
            4 => self.partition(Partition::Mute(node), lasts),
            _ => self.partition(Partition::Deafen(node), lasts),
        }
        let next = self.rng.random_range(1..=2 * self.shape.fault_every);
        self.schedule(self.now + next, Event::Chaos);
    }

    fn partition(&mut self, partition: Partition, lasts: Millis) {
        self.next_id += 1;
        let id = self.next_id;
        self.network.cut(id, partition);
        self.schedule(self.now + lasts, Event::Mend(id));
    }

    /// The most acceptors that may stay down (a minority for majorities).
    fn tolerated_failures(&self) -> usize {
        let acceptors = self.shape.acceptors as usize;
        self.quorums.tolerated_failures(acceptors)
    }

    /// Faults stop: the network heals, every proposer and learner runs, and
    /// all but a random minority of acceptors run.
    fn heal(&mut self) {
        self.healed_at = Some(self.now);
        self.network.heal();
        // Acceptors the identity gate refused (or will refuse: wiped and
        // not restarted yet) stay down; with them, at most a minority.
        let gone: BTreeSet<RoleId> = self
            .refused
            .iter()
            .chain(
                self.wipe_on_start
                    .iter()
                    .filter(|r| r.role == Role::Acceptor),
            )
            .copied()
            .collect();
        // Under reconfiguration the final members are not known here: every
        // acceptor runs.
        let tolerated = match self.options.reconfigure {
            true => 0,
            false => self.tolerated_failures(),
        };
        let down = self
            .rng
            .random_range(0..=tolerated)
            .saturating_sub(gone.len());
        let acceptors: Vec<RoleId> = self
            .acceptors
            .keys()
            .map(|i| RoleId::acceptor(*i))
            .filter(|a| !gone.contains(a))
            .collect();
        self.stay_down = acceptors
            .iter()
            .copied()
            .choose_multiple(&mut self.rng, down)
            .into_iter()
            .chain(gone)
            .collect();
        for node in self.all_nodes() {
            if self.stay_down.contains(&node) {
                self.crash(node);
            } else {
                self.start(node);
            }
        }
        if self.shape.sever_leader {
            self.sever_leader();
        }
        if self.options.restart_proposers {
            self.restart_every_proposer();
        }
        self.schedule(self.now, Event::CheckDone);
    }

    /// Every proposer crashes and restarts at once, so no leader remembers
    /// where the log ends; then every client writes once more, which only a
    /// newly elected leader can decide.
    fn restart_every_proposer(&mut self) {
        let proposers: Vec<RoleId> = self
            .proposers
            .keys()
            .map(|i| RoleId::proposer(*i))
            .collect();
        for node in proposers {
            self.crash(node);
            self.start(node);
        }
        let clients: Vec<u64> = self.clients.keys().copied().collect();
        for client in clients {
            let at = self.now + self.rng.random_range(0..CLIENT_RETRY);
            self.schedule(at, Event::FinalWrite { client });
        }
    }

    /// A client's write after healing (see `restart_every_proposer`), once
    /// its command in flight, if any, is answered: a client keeps one
    /// command in flight.
    fn final_write(&mut self, client_id: u64) {
        let client = self.clients.get_mut(&client_id).expect("exists");
        if client.seq > 0 && !client.answered {
            client.final_write_due = true;
            return;
        }
        self.next_command(client_id);
    }

    /// Cut the proposer leading with the highest ballot (or any proposer,
    /// if none leads) off from every acceptor, for good.
    fn sever_leader(&mut self) {
        let leader = self
            .proposers
            .iter()
            .filter_map(|(id, r)| Some((r.core()?.leading_ballot()?, *id)))
            .max()
            .map(|(_, id)| id);
        let id = leader.unwrap_or_else(|| self.rng.random_range(1..=self.shape.proposers));
        let acceptors = self
            .acceptors
            .keys()
            .map(|i| RoleId::acceptor(*i))
            .collect();
        self.next_id += 1;
        let cut = self.next_id;
        self.network
            .cut(cut, Partition::Sever(RoleId::proposer(id), acceptors));
        self.severed = Some(id);
    }

    // ---- liveness -----------------------------------------------------------

    fn all_done(&self) -> bool {
        let learners_done = self.learners.keys().all(|l| {
            self.learned_commands
                .get(l)
                .is_some_and(|c| c.len() == self.submitted.len())
                && self
                    .learned_instances
                    .get(l)
                    .is_some_and(|i| i.len() == self.instance_names.len())
        });
        let positions: BTreeSet<u64> = self
            .learners
            .values()
            .filter_map(|r| r.core().map(Learner::next_delivery))
            .collect();
        // Every client's current command answered: its session opened and
        // the command applied (or never issued).
        let clients_done = self.clients.values().all(|c| c.seq == 0 || c.answered);
        learners_done && clients_done && positions.len() == 1
    }

    fn liveness_report(&self) -> String {
        let mut parts = Vec::new();
        for (id, replica) in &self.learners {
            let commands = self.learned_commands.get(id).map_or(0, BTreeSet::len);
            let instances = self.learned_instances.get(id).map_or(0, BTreeSet::len);
            let position = replica.core().map(Learner::next_delivery);
            parts.push(format!(
                "learner-{id}: {commands}/{} commands, {instances}/{} instances, next slot {position:?}",
                self.submitted.len(),
                self.instance_names.len()
            ));
        }
        let waiting = self
            .clients
            .values()
            .filter(|c| c.seq > 0 && !c.answered)
            .count();
        parts.push(format!("{waiting} clients waiting for an answer"));
        let leaders: Vec<String> = self
            .proposers
            .iter()
            .filter_map(|(id, r)| {
                r.core()
                    .and_then(|p| p.leading_ballot())
                    .map(|b| format!("proposer-{id}@{b}"))
            })
            .collect();
        let timers: Vec<String> = self
            .proposers
            .iter()
            .map(|(id, r)| {
                let next = r.core().and_then(RoleCore::next_deadline);
                format!("proposer-{id} next tick {next:?}")
            })
            .collect();
        parts.push(timers.join(", "));
        let severed = self
            .severed
            .map(|id| format!("; proposer-{id} cut off from the acceptors"))
            .unwrap_or_default();
        let oversized = if self.oversized > 0 {
            format!("; {} messages dropped as too large", self.oversized)
        } else {
            String::new()
        };
        format!(
            "not converged {} ms after healing; {}; leaders: {leaders:?}{severed}{oversized}",
            self.options.liveness_bound,
            parts.join("; ")
        )
    }
}
