//! Multi-process tests for Synod.
//!
//! This crate will hold the tests that start real `synod node` processes on
//! loopback with temporary RocksDB data directories, put a frame-aware fault
//! proxy between them, SIGKILL and restart roles, and check every client
//! history for linearizability. The runtime those tests need (transport,
//! storage, role actors, the `synod` binary) lands in later issues; until
//! then the crate is intentionally empty so the workspace layout is fixed.
#![deny(missing_docs)]
