//! Multi-process tests for Synod (see `tests/`) and the fault-injection
//! suite they share.
//!
//! They start real `synod node` processes (the binary cargo builds for the
//! `synod` package) on free loopback ports with temporary RocksDB data
//! directories ([`Deployment`]), drive a workload through `synod-client`,
//! and inflict faults: SIGKILL, SIGSTOP, and through a frame-aware proxy
//! on every node-to-node link ([`proxy::FaultNet`]) partitions of every
//! shape, one-way cuts, blackholes, dropped, duplicated, reordered and
//! delayed messages ([`nemesis`]). What the clients saw is checked
//! ([`scenario`]): the register history is linearizable
//! ([`linearizability`]), every acknowledged write reads back, and every
//! learner applied the same log.
#![deny(missing_docs)]

pub mod deployment;
pub mod history;
pub mod linearizability;
pub mod lossy_disk;
pub mod nemesis;
pub mod proxy;
pub mod scenario;
pub mod workload;

pub use deployment::{Deployment, synod_binary};
