//! Multi-process tests for Synod (see `tests/`).
//!
//! They start real `synod node` processes (the binary cargo builds for the
//! `synod` package) on free loopback ports with temporary RocksDB data
//! directories, drive a workload through `synod-client`, SIGKILL and
//! restart processes mid-load, and check that every acknowledged write is
//! read back afterwards.
#![deny(missing_docs)]
