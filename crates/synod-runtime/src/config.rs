//! The configuration schema, layered loading, and validation.
//!
//! [`SynodConfig::from_toml_str`] and [`SynodConfig::load`] read exactly
//! the text or file they are given over the built-in defaults, and nothing
//! else. [`ConfigSource`] is the explicit layered loader, later wins:
//! defaults (each struct's `Default`) < a TOML file < the `SYNOD_*`
//! variables it is handed, with `__` between levels
//! (`SYNOD_PAXOS__BATCH_MAX_COMMANDS=1024`,
//! `SYNOD_NODES__N1__LISTEN=10.0.0.5:7000`). The `synod` binary hands it
//! the process environment; an embedding application decides for itself.
//!
//! The runtime owns the sections below. An application's own section
//! (the binary's `[kv]`) is an [`AppSection`], read by
//! [`ConfigSource::load_with`]. Unknown keys are errors.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use synod_core::{Role, RoleId};

/// A whole deployment: the cluster, its nodes, and which role instance
/// runs on which node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynodConfig {
    /// Cluster identity and secret.
    pub cluster: ClusterConfig,
    /// Nodes (processes) by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeConfig>,
    /// Role placement: `"acceptor-1" = "n1"`.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Protocol tuning.
    #[serde(default)]
    pub paxos: PaxosConfig,
    /// Quorum sizes per phase (majorities when absent).
    #[serde(default)]
    pub quorums: QuorumSettings,
    /// Which placed acceptors vote from the start.
    #[serde(default)]
    pub membership: MembershipSettings,
    /// Storage limits.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Transport limits.
    #[serde(default)]
    pub transport: TransportSettings,
    /// Limits of the client port.
    #[serde(default)]
    pub clients: ClientSettings,
    /// Logging, as the `synod` binary sets it up (an embedding application
    /// sets up its own).
    #[serde(default)]
    pub log: LogSettings,
    /// TLS for node links and client ports (none: plain TCP).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// The application section's settings every node must share
    /// ([`AppSection::cluster_settings`]), filled in by
    /// [`ConfigSource::load_with`].
    #[serde(skip)]
    pub app_settings: Vec<(String, String)>,
}

/// `[tls]`: with it, every link between nodes is mutual TLS (each node's
/// certificate, signed by `ca_file`, names the node: a DNS subject
/// alternative name equal to the node's name) and every client port
/// serves TLS with the node's certificate. The HMAC handshake runs inside
/// TLS as without it. Each node's certificate and key are
/// `nodes.NAME.tls_cert_file` and `tls_key_file`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The CA certificate(s) (PEM) that signed every node's certificate.
    pub ca_file: PathBuf,
}

/// `[membership]`: the roles of the first configuration (epoch 0). Roles
/// placed under `[roles]` but not listed are *standby*: their nodes run
/// them and every node routes to them, but a standby acceptor votes in
/// nothing, a standby proposer never campaigns (it forwards to the
/// leader), and the trim point does not wait for a standby learner's
/// snapshots, until `synod member add` puts them in a configuration.
/// Later configurations come from the log, never from this file; these
/// lists must never change after the cluster's first start (every
/// proposer that starts on an empty store reads epoch 0 from them).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MembershipSettings {
    /// Acceptor ids (`acceptor-N`'s N) voting from the start; absent:
    /// every placed acceptor.
    pub initial_acceptors: Option<Vec<u32>>,
    /// Proposer ids that may lead from the start; absent: every placed
    /// proposer.
    pub initial_proposers: Option<Vec<u32>>,
    /// Learner ids the trim point waits for from the start; absent:
    /// every placed learner.
    pub initial_learners: Option<Vec<u32>>,
}

impl MembershipSettings {
    /// The list for `role`, and its field name.
    fn list(&self, role: Role) -> (&'static str, &Option<Vec<u32>>) {
        match role {
            Role::Acceptor => ("initial_acceptors", &self.initial_acceptors),
            Role::Proposer => ("initial_proposers", &self.initial_proposers),
            Role::Learner => ("initial_learners", &self.initial_learners),
        }
    }

    /// Each list with its role and field name.
    fn lists(&self) -> [(Role, &'static str, &Option<Vec<u32>>); 3] {
        [Role::Acceptor, Role::Proposer, Role::Learner].map(|role| {
            let (name, list) = self.list(role);
            (role, name, list)
        })
    }
}

/// `[log]`: what the `synod` binary logs, and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter (default `warn,synod=info`; e.g. `info`,
    /// `warn,synod_roles=debug`); `RUST_LOG` wins when set.
    pub level: String,
    /// `text` (for people) or `json` (one object per line); `--log-format`
    /// wins when given.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "warn,synod=info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Client port limits: what one node serves at once.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    /// Client connections served at once; a connection beyond it is closed
    /// at once (the client library moves on to another node).
    pub max_connections: usize,
    /// Requests one connection has in service at once; past it the node
    /// stops reading that connection until one is answered.
    pub max_in_flight: usize,
    /// An authenticated connection with no request for this long, and
    /// none in service, is closed (the client library reconnects).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_in_flight: 256,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Cluster identity.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster id; nodes of other clusters are refused.
    pub id: String,
    /// Shared secret for node authentication.
    #[serde(default)]
    pub secret: Option<String>,
    /// File holding the secret (instead of `secret`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Token clients must present on the client port (none: no check).
    #[serde(default)]
    pub client_token: Option<String>,
}

/// One node (process).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Address it listens on for other nodes.
    pub listen: SocketAddr,
    /// `host:port` the other nodes connect to (default: `listen`). Needed
    /// when `listen` is a wildcard (`0.0.0.0:7100`); a DNS name is
    /// resolved at every connect (a Kubernetes pod's stable name, say).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Address it serves clients on (none: no client port).
    #[serde(default)]
    pub client_listen: Option<SocketAddr>,
    /// Address of its admin HTTP server: /livez, /readyz, /status,
    /// /metrics (none: no admin server).
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Directory for its role instances' stores.
    pub data_dir: PathBuf,
    /// Its certificate chain (PEM), with `[tls]`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Its certificate's private key (PEM), with `[tls]`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl NodeConfig {
    /// Its TLS files, when the cluster uses TLS and both are set.
    pub fn tls_files(&self, tls: Option<&TlsSettings>) -> Option<synod_tls::TlsFiles> {
        Some(synod_tls::TlsFiles {
            ca: tls?.ca_file.clone(),
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
        })
    }

    /// The `host:port` other nodes connect to.
    pub fn peer_address(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// The `host:port` where another machine reaches `bound`, one of this
    /// node's listen addresses: itself, unless it is a wildcard
    /// (`0.0.0.0`), then the advertised host with `bound`'s port.
    pub fn reachable(&self, bound: SocketAddr) -> String {
        if !bound.ip().is_unspecified() {
            return bound.to_string();
        }
        let host = self
            .advertise
            .as_deref()
            .and_then(|a| a.rsplit_once(':'))
            .map_or("127.0.0.1", |(host, _)| host);
        format!("{host}:{}", bound.port())
    }
}

/// `[quorums]`: which sets of acceptors are quorums (Flexible Paxos, see
/// `synod_core::Quorums`). Without the section both phases need a
/// majority. `phase2 = 2` with 5 acceptors commits on any 2 and elects a
/// leader on any 4 (`phase1` defaults to the smallest size that meets
/// every phase-2 quorum, and the other way round); `grid_columns = 3`
/// with 9 acceptors lays them out in rows of 3 in id order: a commit
/// needs one whole row, an election one acceptor of every row. Every node
/// must have the same settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuorumSettings {
    /// Acceptors whose promises start a ballot.
    pub phase1: Option<usize>,
    /// Acceptors whose acceptance chooses a value.
    pub phase2: Option<usize>,
    /// Grid quorums: acceptors per row.
    pub grid_columns: Option<usize>,
}

impl QuorumSettings {
    /// Whether anything is set (otherwise: majorities).
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }

    /// The quorum system for `acceptors` acceptors.
    pub fn quorums(&self, acceptors: usize) -> synod_core::Quorums {
        use synod_core::Quorums;
        if let Some(columns) = self.grid_columns {
            return Quorums::Grid { columns };
        }
        let meeting = |other: usize| (acceptors + 1).saturating_sub(other).max(1);
        match (self.phase1, self.phase2) {
            (None, None) => Quorums::majority(acceptors),
            (Some(phase1), None) => Quorums::Counts {
                phase1,
                phase2: meeting(phase1),
            },
            (None, Some(phase2)) => Quorums::Counts {
                phase1: meeting(phase2),
                phase2,
            },
            (Some(phase1), Some(phase2)) => Quorums::Counts { phase1, phase2 },
        }
    }
}

/// Paxos tuning.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaxosConfig {
    /// Most commands in one log value.
    pub batch_max_commands: usize,
    /// Most payload bytes in one log value.
    pub batch_max_bytes: usize,
    /// Largest command payload a node takes; a larger one is refused at
    /// submit (`TooLarge`), since it could not travel in one frame.
    pub max_command_bytes: usize,
    /// Most bytes of log entries in one reply: a page of a phase-1
    /// Promise, one answer to a learner's catch-up request.
    pub reply_max_bytes: usize,
    /// Most slots in phase 2 at once.
    pub pipeline_window: usize,
    /// Slots in phase 2 at once that a partial batch may open; beyond
    /// them a slot waits for a full batch (`batch_max_commands` or
    /// `batch_max_bytes`) or for a decision, so at moderate load commands
    /// share a few slots instead of each taking its own.
    pub pipeline_eager: usize,
    /// Most payload bytes in phase 2 at once (one value always goes):
    /// bounds how long heartbeats and votes queue behind bulk data.
    pub pipeline_max_bytes: usize,
    /// Most queued commands per proposer before it answers busy.
    pub queue_limit: usize,
    /// Leader heartbeat period.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Shortest election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// Longest election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Resend unanswered Prepare/Accept after this long.
    #[serde(with = "humantime_serde")]
    pub retransmit_interval: Duration,
    /// Longest randomized backoff after a Nack.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// A leader (or candidate) whose Prepare, or oldest outstanding Accept,
    /// has not reached a majority of acceptors for this long gives up its
    /// ballot, so a proposer that can reach them takes over.
    #[serde(with = "humantime_serde")]
    pub quorum_timeout: Duration,
    /// How often the leader stamps its clock into the log: the time lease
    /// expiry is counted in (a lease's TTL is measured in stamps, so it
    /// expires up to one interval late). 0 turns stamps off (and leases
    /// then never expire).
    #[serde(with = "humantime_serde")]
    pub clock_interval: Duration,
    /// How long a learner waits before asking again for a missing slot.
    #[serde(with = "humantime_serde")]
    pub catch_up_interval: Duration,
    /// Most slots in one catch-up answer.
    pub catch_up_batch: u64,
    /// How often learners compare single-decree decisions.
    #[serde(with = "humantime_serde")]
    pub instance_sync_interval: Duration,
    /// How long a client command is retried before `submit` gives up.
    #[serde(with = "humantime_serde")]
    pub submit_timeout: Duration,
    /// How long `submit` waits before resending a command (same id).
    #[serde(with = "humantime_serde")]
    pub submit_retry: Duration,
    /// A client session with no command in this many slots is forgotten
    /// (its later commands are refused, unapplied, as "session expired").
    pub session_horizon: u64,
    /// Most client sessions a learner keeps; beyond it the idlest go.
    pub max_sessions: usize,
    /// Most decided single-decree instances (decide-once registers) the
    /// cluster keeps: past it, a new instance is refused.
    pub max_instances: usize,
}

impl Default for PaxosConfig {
    fn default() -> Self {
        Self {
            batch_max_commands: 1024,
            batch_max_bytes: 1024 * 1024,
            max_command_bytes: 3 * 1024 * 1024,
            reply_max_bytes: 1024 * 1024,
            pipeline_window: 64,
            pipeline_eager: 4,
            pipeline_max_bytes: 8 * 1024 * 1024,
            queue_limit: 200_000,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            retransmit_interval: Duration::from_millis(200),
            backoff_max: Duration::from_millis(150),
            quorum_timeout: Duration::from_secs(2),
            clock_interval: Duration::from_millis(500),
            catch_up_interval: Duration::from_millis(200),
            catch_up_batch: 4096,
            instance_sync_interval: Duration::from_secs(1),
            submit_timeout: Duration::from_secs(10),
            submit_retry: Duration::from_secs(1),
            session_horizon: synod_core::DEFAULT_SESSION_HORIZON,
            max_sessions: synod_core::DEFAULT_MAX_SESSIONS,
            max_instances: 100_000,
        }
    }
}

/// Storage limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Most submissions covered by one fsync.
    pub group_max_submissions: usize,
    /// Most writes covered by one fsync.
    pub group_max_writes: usize,
    /// How long a learner's group commit waits after a write for more
    /// before its fsync, in milliseconds (0: at once). A learner applies
    /// chosen values before its own copy is durable, so no command waits
    /// for it; only its messages (catch-up answers, reports) do. At low
    /// load this turns one fsync per decided slot into one per linger.
    pub learner_group_linger_ms: u64,
    /// A learner snapshots its state machine after this many applied
    /// commands, then drops its log below the snapshot (0: not by count).
    pub snapshot_every: u64,
    /// ... or after this many bytes of applied command payloads, whichever
    /// comes first, so a log of large values stays bounded too (0: not by
    /// bytes).
    pub snapshot_every_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            group_max_submissions: 4096,
            group_max_writes: 65_536,
            learner_group_linger_ms: 2,
            snapshot_every: 100_000,
            snapshot_every_bytes: 256 << 20,
        }
    }
}

/// Transport limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSettings {
    /// Largest frame in bytes.
    pub max_frame_len: usize,
    /// Frames queued per peer before new ones are dropped.
    pub queue_capacity: usize,
    /// Handshake (and connect) timeout.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// First reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            max_frame_len: synod_transport::DEFAULT_MAX_FRAME,
            queue_capacity: 65_536,
            handshake_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
        }
    }
}

/// Loading failed: the file, the environment, or the schema.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is missing or does not parse, or a value has the wrong type
    /// or an unknown key.
    #[error("config {source_name}: {message}")]
    Invalid {
        /// Where the config came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The config loaded but breaks a rule.
    #[error("config {source_name} is not valid:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Rules {
        /// Where the config came from.
        source_name: String,
        /// Every broken rule.
        problems: Vec<Problem>,
    },
}

/// One broken rule: the field, what is wrong, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The offending field, as a dotted path.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl SynodConfig {
    /// Read `file` (TOML) over the defaults and validate; nothing else
    /// (no environment). Returns the config and its warnings.
    pub fn load(file: &Path) -> Result<(Self, Vec<Problem>), LoadError> {
        ConfigSource::file(file).load()
    }

    /// Read TOML `text` over the defaults and validate; nothing else (no
    /// environment). `source_name` names the text in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<(Self, Vec<Problem>), LoadError> {
        ConfigSource::text(text, source_name).load()
    }

    /// Check every rule. Returns (errors, warnings).
    pub fn validate(&self) -> (Vec<Problem>, Vec<Problem>) {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let problem = |list: &mut Vec<Problem>, field: &str, message: String| {
            list.push(Problem {
                field: field.to_owned(),
                message,
            });
        };
        if self.cluster.id.trim().is_empty() {
            problem(
                &mut errors,
                "cluster.id",
                "is empty; name the cluster, e.g. id = \"synod-prod\"".into(),
            );
        }
        if self.nodes.is_empty() {
            problem(
                &mut errors,
                "nodes",
                "no nodes; add [nodes.n1] with listen and data_dir".into(),
            );
        }
        self.check_addresses(&mut errors);
        let placement = self.check_roles(&mut errors);
        self.check_membership(&placement, &mut errors);
        let acceptors = self.initial_acceptors().len();
        for (role, name) in [
            (Role::Proposer, "proposer"),
            (Role::Acceptor, "acceptor"),
            (Role::Learner, "learner"),
        ] {
            if !placement.keys().any(|r| r.role == role) {
                let fix = format!("no {name} placed; add e.g. {name}-1 = \"<node>\" under [roles]");
                problem(&mut errors, "roles", fix);
            }
        }
        self.check_quorums(acceptors, &mut errors);
        let quorums = self.quorum_system();
        if self.quorums.is_set()
            && acceptors > 1
            && quorums.check(acceptors).is_ok()
            && quorums.tolerated_failures(acceptors) == 0
        {
            let msg = format!(
                "{quorums:?} over {acceptors} acceptors: losing one acceptor can stop leader elections or commits"
            );
            problem(&mut warnings, "quorums", msg);
        }
        if acceptors > 0 && acceptors.is_multiple_of(2) && !self.quorums.is_set() {
            let msg = format!(
                "{acceptors} acceptors tolerate no more failures than {}; use an odd count",
                acceptors - 1
            );
            problem(&mut warnings, "roles", msg);
        }
        if self.nodes.len() > 1 && (1..3).contains(&acceptors) {
            let msg = format!(
                "{acceptors} acceptor(s) in a multi-node cluster survive no failure; place at least 3"
            );
            problem(&mut warnings, "roles", msg);
        }
        check_ranges(&self.ranges(), &mut errors);
        self.check_timing(&mut errors);
        self.check_sizes(&mut errors);
        if self.nodes.len() > 1 && self.secret().map(|s| s.is_empty()).unwrap_or(true) {
            let fix = "is empty in a multi-node cluster; set cluster.secret or cluster.secret_file"
                .into();
            problem(&mut errors, "cluster.secret", fix);
        }
        if self.cluster.secret.is_some() && self.cluster.secret_file.is_some() {
            problem(
                &mut errors,
                "cluster.secret_file",
                "set either secret or secret_file, not both".into(),
            );
        } else if let (Some(file), Err(e)) = (&self.cluster.secret_file, self.secret()) {
            let message = format!(
                "{}: cannot be read ({e}); point it at the secret",
                file.display()
            );
            problem(&mut errors, "cluster.secret_file", message);
        }
        self.check_data_dirs(&mut errors);
        self.check_tls(&mut errors);
        (errors, warnings)
    }

    fn check_addresses(&self, errors: &mut Vec<Problem>) {
        let mut seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (name, node) in &self.nodes {
            self.check_advertise(name, node, errors);
            // Wildcard addresses may repeat across nodes (each on its own
            // machine or pod), never within one.
            let mut own: BTreeMap<SocketAddr, String> = BTreeMap::new();
            let addresses = [
                ("listen", Some(node.listen)),
                ("client_listen", node.client_listen),
                ("admin_listen", node.admin_listen),
            ];
            for (field, address) in addresses {
                let Some(address) = address else { continue };
                let field = format!("nodes.{name}.{field}");
                if address.port() == 0 {
                    let message = format!(
                        "{address} has port 0 (any free port), which no peer or client can be told; name a port"
                    );
                    errors.push(Problem { field, message });
                    continue;
                }
                let shared = if address.ip().is_unspecified() {
                    &mut own
                } else {
                    &mut seen
                };
                if let Some(other) = shared.insert(address, field.clone()) {
                    let message = format!("{address} is also {other}; give each its own address");
                    errors.push(Problem { field, message });
                }
            }
        }
    }

    /// `advertise` must be `host:port`, and a wildcard `listen` needs it.
    fn check_advertise(&self, name: &str, node: &NodeConfig, errors: &mut Vec<Problem>) {
        let field = format!("nodes.{name}.advertise");
        match &node.advertise {
            None if node.listen.ip().is_unspecified() && self.nodes.len() > 1 => {
                errors.push(Problem {
                    field,
                    message: format!(
                        "listen is {}, which other nodes cannot connect to; set advertise to the host:port they reach this node at",
                        node.listen
                    ),
                });
            }
            None => {}
            Some(address) => {
                let port = address
                    .rsplit_once(':')
                    .map(|(host, port)| (host, port.parse::<u16>()));
                if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                    errors.push(Problem {
                        field,
                        message: format!("{address:?} is not host:port (with a port above 0)"),
                    });
                }
            }
        }
    }

    /// `[quorums]` must be possible and safe for the acceptors placed.
    fn check_quorums(&self, acceptors: usize, errors: &mut Vec<Problem>) {
        let q = &self.quorums;
        if q.grid_columns.is_some() && (q.phase1.is_some() || q.phase2.is_some()) {
            errors.push(Problem {
                field: "quorums.grid_columns".into(),
                message: "is set with phase1 or phase2; a grid defines both, set one or the other"
                    .into(),
            });
            return;
        }
        if acceptors == 0 {
            return;
        }
        if let Err(why) = q.quorums(acceptors).check(acceptors) {
            let field = if q.grid_columns.is_some() {
                "quorums.grid_columns"
            } else {
                "quorums"
            };
            errors.push(Problem {
                field: field.into(),
                message: why,
            });
        }
    }

    /// The quorum system of this cluster's first configuration (and of
    /// every later one of the same size, see `synod member`).
    pub fn quorum_system(&self) -> synod_core::Quorums {
        self.quorums.quorums(self.initial_acceptors().len())
    }

    /// The acceptors of the first configuration (epoch 0): the
    /// `[membership]` list, else every placed acceptor.
    pub fn initial_acceptors(&self) -> Vec<u32> {
        self.initial(Role::Acceptor)
    }

    /// The `role` instances of the first configuration (epoch 0), by id:
    /// the `[membership]` list, else every placed one.
    pub fn initial(&self, role: Role) -> Vec<u32> {
        match self.membership.list(role).1 {
            Some(ids) => {
                let set: BTreeSet<u32> = ids.iter().copied().collect();
                set.into_iter().collect()
            }
            None => self.instances(role),
        }
    }

    /// `[membership]` names placed roles, each once.
    fn check_membership(&self, placement: &BTreeMap<RoleId, String>, errors: &mut Vec<Problem>) {
        for (role, name, list) in self.membership.lists() {
            let Some(ids) = list else {
                continue;
            };
            let field = format!("membership.{name}");
            let distinct: BTreeSet<u32> = ids.iter().copied().collect();
            if ids.is_empty() || distinct.len() != ids.len() {
                let message = "must list distinct ids, at least one".to_owned();
                errors.push(Problem {
                    field: field.clone(),
                    message,
                });
            }
            for id in distinct {
                let instance = RoleId { role, index: id };
                if !placement.contains_key(&instance) {
                    let message = format!("lists {id}, but {instance} is not placed under [roles]");
                    errors.push(Problem {
                        field: field.clone(),
                        message,
                    });
                }
            }
        }
    }

    /// Parse the placement, reporting bad role names, duplicates and
    /// unknown nodes.
    fn check_roles(&self, errors: &mut Vec<Problem>) -> BTreeMap<RoleId, String> {
        let mut placement = BTreeMap::new();
        for (role, node) in &self.roles {
            let field = format!("roles.{role}");
            let Some(id) = parse_role(role) else {
                let msg =
                    "is not a role instance; use proposer-N, acceptor-N or learner-N".to_owned();
                errors.push(Problem {
                    field,
                    message: msg,
                });
                continue;
            };
            if !self.nodes.contains_key(node) {
                let known: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
                let msg = format!("is placed on unknown node {node:?}; known nodes: {known:?}");
                errors.push(Problem {
                    field,
                    message: msg,
                });
                continue;
            }
            if placement.insert(id, node.clone()).is_some() {
                let msg = format!("names {id} again; each role instance appears once");
                errors.push(Problem {
                    field,
                    message: msg,
                });
            }
        }
        placement
    }

    /// Every number and duration of the schema with the range it must be
    /// in (`tests/config.rs` checks that none is missing). The budgets
    /// that must fit in a frame are checked against it in `check_sizes`.
    pub fn ranges(&self) -> Vec<Range> {
        let (p, s, t, c) = (&self.paxos, &self.storage, &self.transport, &self.clients);
        let frame_max = 1 << 30;
        vec![
            Range::count("paxos.batch_max_commands", p.batch_max_commands, 1, 1 << 20),
            Range::bytes("paxos.batch_max_bytes", p.batch_max_bytes, 1, frame_max),
            Range::bytes("paxos.max_command_bytes", p.max_command_bytes, 1, frame_max),
            Range::bytes("paxos.reply_max_bytes", p.reply_max_bytes, 1, frame_max),
            Range::count("paxos.pipeline_window", p.pipeline_window, 1, 1 << 16),
            Range::count("paxos.pipeline_eager", p.pipeline_eager, 1, 1 << 16),
            Range::bytes("paxos.pipeline_max_bytes", p.pipeline_max_bytes, 1, 1 << 34),
            Range::count("paxos.queue_limit", p.queue_limit, 1, 1 << 24),
            Range::time("paxos.heartbeat_interval", p.heartbeat_interval, 1),
            Range::time("paxos.election_timeout_min", p.election_timeout_min, 1),
            Range::time("paxos.election_timeout_max", p.election_timeout_max, 1),
            Range::time("paxos.retransmit_interval", p.retransmit_interval, 1),
            Range::time("paxos.backoff_max", p.backoff_max, 0),
            Range::time("paxos.quorum_timeout", p.quorum_timeout, 1),
            Range::time("paxos.clock_interval", p.clock_interval, 0),
            Range::time("paxos.catch_up_interval", p.catch_up_interval, 1),
            Range::count("paxos.catch_up_batch", p.catch_up_batch, 1, 1 << 20),
            Range::time("paxos.instance_sync_interval", p.instance_sync_interval, 1),
            Range::time("paxos.submit_timeout", p.submit_timeout, 1),
            Range::time("paxos.submit_retry", p.submit_retry, 1),
            Range::count("paxos.session_horizon", p.session_horizon, 1, 1 << 48),
            Range::count("paxos.max_sessions", p.max_sessions, 1, 1 << 24),
            Range::count("paxos.max_instances", p.max_instances, 1, 1 << 24),
            Range::count(
                "storage.group_max_submissions",
                s.group_max_submissions,
                1,
                1 << 20,
            ),
            Range::count("storage.group_max_writes", s.group_max_writes, 1, 1 << 24),
            Range::count(
                "storage.learner_group_linger_ms",
                s.learner_group_linger_ms,
                0,
                1_000,
            ),
            Range::count("storage.snapshot_every", s.snapshot_every, 0, 1 << 40),
            Range::bytes(
                "storage.snapshot_every_bytes",
                s.snapshot_every_bytes,
                0,
                1 << 50,
            ),
            Range::bytes(
                "transport.max_frame_len",
                t.max_frame_len,
                2 * FRAME_HEADROOM as u128,
                frame_max,
            ),
            Range::count("transport.queue_capacity", t.queue_capacity, 1, 1 << 24),
            Range::time("transport.handshake_timeout", t.handshake_timeout, 1),
            Range::time("transport.reconnect_min", t.reconnect_min, 1),
            Range::time("transport.reconnect_max", t.reconnect_max, 1),
            Range::count("clients.max_connections", c.max_connections, 1, 1 << 16),
            Range::count("clients.max_in_flight", c.max_in_flight, 1, 1 << 16),
            Range::time("clients.idle_timeout", c.idle_timeout, 1000),
        ]
    }

    fn check_timing(&self, errors: &mut Vec<Problem>) {
        let p = &self.paxos;
        if p.heartbeat_interval.saturating_mul(3) > p.election_timeout_min {
            errors.push(Problem {
                field: "paxos.heartbeat_interval".into(),
                message: format!(
                    "{:?} is not well below election_timeout_min {:?}; keep it at most a third",
                    p.heartbeat_interval, p.election_timeout_min
                ),
            });
        }
        if p.election_timeout_min > p.election_timeout_max {
            errors.push(Problem {
                field: "paxos.election_timeout_max".into(),
                message: "is below election_timeout_min; make max >= min".into(),
            });
        }
        if p.quorum_timeout
            < p.election_timeout_max
                .max(p.retransmit_interval.saturating_mul(2))
        {
            errors.push(Problem {
                field: "paxos.quorum_timeout".into(),
                message: format!(
                    "{:?} would depose healthy leaders; make it at least election_timeout_max \
                     ({:?}) and twice retransmit_interval ({:?})",
                    p.quorum_timeout, p.election_timeout_max, p.retransmit_interval
                ),
            });
        }
    }

    /// Every message must fit in a frame: a log value (a batch, or one
    /// command alone), a Promise page, a catch-up answer's values.
    fn check_sizes(&self, errors: &mut Vec<Problem>) {
        let p = &self.paxos;
        let frame = self.transport.max_frame_len;
        let fits = frame.saturating_sub(FRAME_HEADROOM);
        for (field, value) in [
            ("paxos.batch_max_bytes", p.batch_max_bytes),
            ("paxos.max_command_bytes", p.max_command_bytes),
            ("paxos.reply_max_bytes", p.reply_max_bytes),
        ] {
            if value > fits {
                errors.push(Problem {
                    field: field.into(),
                    message: format!(
                        "{value} bytes would not fit in a frame of transport.max_frame_len \
                         ({frame}) less {FRAME_HEADROOM} bytes of headers; lower it or raise \
                         max_frame_len"
                    ),
                });
            }
        }
    }

    /// With `[tls]`, every node needs a certificate and key that load,
    /// and a name a certificate can carry.
    fn check_tls(&self, errors: &mut Vec<Problem>) {
        let Some(tls) = &self.tls else {
            for (name, node) in &self.nodes {
                if node.tls_cert_file.is_some() || node.tls_key_file.is_some() {
                    errors.push(Problem {
                        field: format!("nodes.{name}.tls_cert_file"),
                        message:
                            "is set but there is no [tls] section (ca_file); add it or remove these"
                                .into(),
                    });
                }
            }
            return;
        };
        for (name, node) in &self.nodes {
            if !synod_tls::valid_name(name) {
                errors.push(Problem {
                    field: format!("nodes.{name}"),
                    message: "with TLS a node's name is its certificate's DNS name; use letters, digits, '-' and '.'".into(),
                });
            }
            let Some(files) = node.tls_files(Some(tls)) else {
                errors.push(Problem {
                    field: format!("nodes.{name}.tls_cert_file"),
                    message: "[tls] is on: set tls_cert_file and tls_key_file for every node"
                        .into(),
                });
                continue;
            };
            if let Err(e) = synod_tls::NodeTls::load(&files) {
                errors.push(Problem {
                    field: format!("nodes.{name}.tls_cert_file"),
                    message: format!(
                        "{e}; point tls_cert_file, tls_key_file and tls.ca_file at PEM files"
                    ),
                });
            }
        }
    }

    fn check_data_dirs(&self, errors: &mut Vec<Problem>) {
        for (name, node) in &self.nodes {
            let dir = &node.data_dir;
            let bad = match std::fs::metadata(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None, // created at start
                Err(e) => Some(e.to_string()),
                Ok(meta) if !meta.is_dir() => Some("is not a directory".into()),
                Ok(_) => std::fs::read_dir(dir)
                    .err()
                    .map(|e| format!("cannot be read: {e}")),
            };
            if let Some(reason) = bad {
                errors.push(Problem {
                    field: format!("nodes.{name}.data_dir"),
                    message: format!(
                        "{}: {reason}; point it at a readable directory",
                        dir.display()
                    ),
                });
            }
        }
    }

    /// The cluster secret (read from `secret_file` if set).
    pub fn secret(&self) -> std::io::Result<String> {
        match (&self.cluster.secret, &self.cluster.secret_file) {
            (Some(secret), _) => Ok(secret.clone()),
            (None, Some(file)) => Ok(std::fs::read_to_string(file)?.trim().to_owned()),
            (None, None) => Ok(String::new()),
        }
    }

    /// The settings every node of the cluster must share, as (name,
    /// value): the role placement and node names (quorums and routing),
    /// the quorum system,
    /// the settings that shape every learner's state identically (session
    /// expiry) or what a message may be (the frame limit), and the
    /// application's ([`AppSection::cluster_settings`], e.g. `[kv]`).
    /// Peers compare them after the handshake and refuse any difference.
    /// Addresses, directories and local tuning may differ per node.
    pub fn cluster_settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![(
            "nodes".to_owned(),
            self.nodes.keys().cloned().collect::<Vec<_>>().join(","),
        )];
        for (role, node) in &self.roles {
            settings.push((format!("roles.{role}"), node.clone()));
        }
        settings.push(("quorums".into(), format!("{:?}", self.quorum_system())));
        for (role, name, _) in self.membership.lists() {
            let initial = format!("{:?}", self.initial(role));
            settings.push((format!("membership.{name}"), initial));
        }
        let p = &self.paxos;
        settings.push((
            "paxos.session_horizon".into(),
            p.session_horizon.to_string(),
        ));
        settings.push(("paxos.max_sessions".into(), p.max_sessions.to_string()));
        let frame = self.transport.max_frame_len.to_string();
        settings.push(("transport.max_frame_len".into(), frame));
        settings.extend(self.app_settings.iter().cloned());
        settings.sort();
        settings
    }

    /// Role instances placed on `node`.
    pub fn roles_on(&self, node: &str) -> Vec<RoleId> {
        self.placement()
            .into_iter()
            .filter(|(_, n)| n == node)
            .map(|(r, _)| r)
            .collect()
    }

    /// Every role instance with its node (valid entries only).
    pub fn placement(&self) -> BTreeMap<RoleId, String> {
        self.roles
            .iter()
            .filter_map(|(role, node)| Some((parse_role(role)?, node.clone())))
            .collect()
    }

    /// Every role instance with its node once `moved` (the roles the
    /// log moved, `synod member move`) is applied to this file's
    /// placement.
    pub fn placement_moved(&self, moved: &[(RoleId, String)]) -> BTreeMap<RoleId, String> {
        let mut placement = self.placement();
        crate::placement::apply_moves(&mut placement, moved);
        placement
    }

    /// This config with the roles in `moved` placed where the log put
    /// them. Only for where roles run: the settings nodes compare at the
    /// handshake stay this file's ([`SynodConfig::cluster_settings`] of
    /// the config before the moves).
    pub fn with_moved(&self, moved: &[(RoleId, String)]) -> SynodConfig {
        let mut config = self.clone();
        for (key, node) in &mut config.roles {
            let role = parse_role(key);
            if let Some((_, to)) = moved.iter().find(|(r, _)| Some(*r) == role) {
                node.clone_from(to);
            }
        }
        config
    }

    /// All instances of `role`, by index.
    pub fn instances(&self, role: Role) -> Vec<u32> {
        let set: BTreeSet<u32> = self
            .placement()
            .keys()
            .filter(|r| r.role == role)
            .map(|r| r.index)
            .collect();
        set.into_iter().collect()
    }
}

/// The longest duration any setting may have: one day. Longer ones mean
/// a typo, and would overflow the arithmetic on deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// One numeric setting and the range it must lie in.
#[derive(Clone, Debug)]
pub struct Range {
    /// The field, as a dotted path.
    pub field: &'static str,
    /// Its value (durations in milliseconds).
    pub value: u128,
    /// Smallest allowed.
    pub min: u128,
    /// Largest allowed.
    pub max: u128,
    /// How to print the bounds.
    pub unit: &'static str,
}

impl Range {
    /// A count, `min..=max`.
    pub fn count(field: &'static str, value: impl TryInto<u128>, min: u128, max: u128) -> Self {
        let value = value.try_into().unwrap_or(u128::MAX);
        Self {
            field,
            value,
            min,
            max,
            unit: "",
        }
    }

    /// A size in bytes, `min..=max`.
    pub fn bytes(field: &'static str, value: impl TryInto<u128>, min: u128, max: u128) -> Self {
        Self {
            unit: " bytes",
            ..Self::count(field, value, min, max)
        }
    }

    /// A duration of at least `min_ms` milliseconds and at most [`MAX_DURATION`].
    pub fn time(field: &'static str, value: Duration, min_ms: u128) -> Self {
        Self {
            field,
            value: value.as_millis(),
            min: min_ms,
            max: MAX_DURATION.as_millis(),
            unit: " ms",
        }
    }
}

/// A problem for every value outside its range.
pub fn check_ranges(ranges: &[Range], errors: &mut Vec<Problem>) {
    for r in ranges {
        if (r.min..=r.max).contains(&r.value) {
            continue;
        }
        errors.push(Problem {
            field: r.field.to_owned(),
            message: format!(
                "{}{} is out of range; allowed: {} to {}{}",
                r.value, r.unit, r.min, r.max, r.unit
            ),
        });
    }
}

/// Bytes of a frame kept for what surrounds log entries: the envelope
/// (cluster id, node name, role ids) and a message's own fields.
pub const FRAME_HEADROOM: usize = 64 * 1024;

/// An application's own config section (`[kv]` for the `synod`
/// binary), read beside the runtime's by [`ConfigSource::load_with`].
pub trait AppSection: DeserializeOwned + Default {
    /// The section's name in the file.
    const NAME: &'static str;

    /// Rules the section must keep, given the rest of the config
    /// (errors).
    fn validate(&self, config: &SynodConfig) -> Vec<Problem>;

    /// Its settings that every node must share, as (dotted name, value):
    /// those that shape the replicated state. Peers with other values are
    /// refused at the handshake.
    fn cluster_settings(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// The layered loader: built-in defaults < a TOML file or text < the
/// `SYNOD_*` variables handed to [`ConfigSource::env`], if any.
pub struct ConfigSource {
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    source_name: String,
    /// The `SYNOD_*` variables handed to [`ConfigSource::env`].
    vars: Option<BTreeMap<String, String>>,
}

/// The runtime's sections: a `SYNOD_<SECTION>__...` variable for one of
/// them (or the application's) is an override; any other `SYNOD_*`
/// variable (`SYNOD_BIN`, a test knob) is not the config's business.
const SECTIONS: [&str; 9] = [
    "cluster",
    "log",
    "tls",
    "nodes",
    "roles",
    "paxos",
    "storage",
    "transport",
    "clients",
];

impl ConfigSource {
    /// TOML file `file`.
    pub fn file(file: &Path) -> Self {
        Self {
            builder: config::Config::builder()
                .add_source(config::File::from(file).format(config::FileFormat::Toml)),
            source_name: file.display().to_string(),
            vars: None,
        }
    }

    /// TOML `text`, named `source_name` in errors.
    pub fn text(text: &str, source_name: &str) -> Self {
        Self {
            builder: config::Config::builder()
                .add_source(config::File::from_str(text, config::FileFormat::Toml)),
            source_name: source_name.to_owned(),
            vars: None,
        }
    }

    /// Layer the entries of `vars` (say, `std::env::vars()`) that name a
    /// config key over the file: `SYNOD_<SECTION>__<FIELD>` for a section
    /// of the schema. Every other entry, `SYNOD_*` or not, is ignored.
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.vars = Some(vars.into_iter().collect());
        self
    }

    /// The handed variables that are overrides of `sections`.
    fn overrides(&self, sections: &[&str]) -> Option<config::Environment> {
        let vars = self.vars.as_ref()?;
        let chosen: config::Map<String, String> = vars
            .iter()
            .filter(|(key, _)| {
                let Some(rest) = key.strip_prefix("SYNOD_") else {
                    return false;
                };
                let section = rest.split("__").next().unwrap_or_default();
                rest.contains("__") && sections.iter().any(|s| section.eq_ignore_ascii_case(s))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let environment = config::Environment::with_prefix("SYNOD")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(chosen));
        Some(environment)
    }

    /// The runtime's config, validated, with its warnings. An unknown
    /// section (an application's) is an error.
    pub fn load(self) -> Result<(SynodConfig, Vec<Problem>), LoadError> {
        let source_name = self.source_name.clone();
        let table = self.table(&SECTIONS)?;
        let config = deserialize::<SynodConfig>(table, &source_name)?;
        finish(config, Vec::new(), source_name)
    }

    /// The runtime's config and application section `A` (its defaults
    /// when absent), both validated.
    pub fn load_with<A: AppSection>(self) -> Result<(SynodConfig, A, Vec<Problem>), LoadError> {
        let source_name = self.source_name.clone();
        let mut sections = SECTIONS.to_vec();
        sections.push(A::NAME);
        let mut table = self.table(&sections)?;
        let app: A = match table.remove(A::NAME) {
            Some(section) => section.try_deserialize().map_err(|e| LoadError::Invalid {
                source_name: source_name.clone(),
                message: format!("[{}]: {e}", A::NAME),
            })?,
            None => A::default(),
        };
        let mut config = deserialize::<SynodConfig>(table, &source_name)?;
        config.app_settings = app.cluster_settings();
        let app_problems = app.validate(&config);
        let (config, warnings) = finish(config, app_problems, source_name)?;
        Ok((config, app, warnings))
    }

    fn table(self, sections: &[&str]) -> Result<config::Map<String, config::Value>, LoadError> {
        let invalid = |e: config::ConfigError| LoadError::Invalid {
            source_name: self.source_name.clone(),
            message: e.to_string(),
        };
        let mut builder = self.builder.clone();
        if let Some(environment) = self.overrides(sections) {
            builder = builder.add_source(environment);
        }
        builder
            .build()
            .map_err(invalid)?
            .try_deserialize()
            .map_err(invalid)
    }
}

fn deserialize<T: DeserializeOwned>(
    table: config::Map<String, config::Value>,
    source_name: &str,
) -> Result<T, LoadError> {
    config::Value::new(None, config::ValueKind::Table(table))
        .try_deserialize()
        .map_err(|e| LoadError::Invalid {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })
}

/// Validate `config`; `more` are errors found elsewhere (an app section).
fn finish(
    config: SynodConfig,
    more: Vec<Problem>,
    source_name: String,
) -> Result<(SynodConfig, Vec<Problem>), LoadError> {
    let (mut problems, warnings) = config.validate();
    problems.extend(more);
    if problems.is_empty() {
        Ok((config, warnings))
    } else {
        Err(LoadError::Rules {
            source_name,
            problems,
        })
    }
}

/// `proposer-2` → proposer 2.
pub fn parse_role(text: &str) -> Option<RoleId> {
    let (role, index) = text.rsplit_once('-')?;
    let index: u32 = index.parse().ok()?;
    match role {
        "proposer" => Some(RoleId::proposer(index)),
        "acceptor" => Some(RoleId::acceptor(index)),
        "learner" => Some(RoleId::learner(index)),
        _ => None,
    }
}
