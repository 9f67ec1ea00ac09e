//! # synod-runtime: config, placement, routing, and the embeddable Node
//!
//! This crate turns a config file into running role actors:
//!
//! ```text
//! ConfigSource::file(f).env(vars).load() ── defaults ◀ TOML ◀ SYNOD_* ── validate()
//!        │
//!        ▼
//! Node::start(config, "n1", Bootstrap::New, state_machine)      (inside the caller's actix System)
//!   ├─ a store per role instance: data_dir/<role>   (RocksBackend, or any Backend via start_with;
//!   │                                                opened first: locked/corrupt stops the start)
//!   ├─ PeerLink per other node ──▶ Router ◀── Listener (authenticated inbound)
//!   ├─ ProposerActor / AcceptorActor / LearnerActor placed on this node (synod-roles)
//!   ├─ Gateway ◀── client port (synod-api's wire protocol)
//!   │    └─ Intake: commands arriving in one turn go on as one batch
//!   └─ admin HTTP server (optional): /livez /readyz /status /cluster /metrics, dashboard
//! ```
//!
//! An embedding application calls [`Node::submit`] to submit a command and
//! await its response, [`Node::subscribe`] to follow decided values in
//! order, and [`Node::shutdown`] to stop cleanly.
#![deny(missing_docs)]

mod admin;
mod backup;
mod client_server;
mod config;
mod gateway;
pub mod health;
mod intake;
mod node;
mod placement;
mod router;
mod submissions;

pub use backup::{Restored, restore_backup, restore_backup_on_disk};
pub use client_server::ClientPortStats;
pub use config::{
    AppSection, ClientSettings, ClusterConfig, ConfigSource, LoadError, LogFormat, LogSettings,
    MAX_DURATION, MembershipSettings, NodeConfig, PaxosConfig, Problem, QuorumSettings, Range,
    StorageConfig, SynodConfig, TlsSettings, TransportSettings, check_ranges, parse_role,
};
pub use gateway::NodeStatus;
pub use node::{Node, NodeError, created_stores, stray_stores};
pub use placement::MovedRoles;
pub use router::Router;
pub use synod_api::{Decision, SnapshotError, StateMachine, SubmitError};
pub use synod_storage::{Backend, Bootstrap, MemoryBackend};
