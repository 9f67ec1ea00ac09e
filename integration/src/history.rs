//! What clients did and saw: each operation with the time it was invoked,
//! the time it completed, and its outcome.
//!
//! An outcome is *definite* when the cluster answered (the write took
//! effect, the read returned this, the compare-and-set was refused with
//! that current value) and [`Outcome::Unknown`] when the client gave up
//! (timeout, connection lost, no node could answer): such a write may take
//! effect at any time after its invocation, or never. The checker in
//! [`crate::linearizability`] treats it so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An operation on one key's register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// Set the key to this value.
    Put(String),
    /// Read the key (through the log).
    Get,
    /// Read the key by read index (linearizable, outside the log): checked
    /// exactly like `Get`.
    ReadIndexGet,
    /// Set the key to `new` if its value is `expected` (`None`: absent).
    Cas {
        /// The value it must have.
        expected: Option<String>,
        /// The value it gets.
        new: String,
    },
    /// Take the lock named by the key for this owner.
    Lock(String),
    /// Release the lock named by the key held by this owner.
    Unlock(String),
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A put, compare-and-set or unlock took effect.
    Done,
    /// A read returned this (`None`: not found).
    Value(Option<String>),
    /// A compare-and-set was refused; the key's value was this.
    CasFailed(Option<String>),
    /// The lock was granted (or was already the caller's) with this
    /// fencing token.
    Granted(u64),
    /// Someone else holds the lock.
    Held {
        /// The holder.
        owner: String,
        /// The holder's fencing token.
        token: u64,
    },
    /// An unlock was refused: the lock is this owner's (`None`: free).
    NotOwner(Option<String>),
    /// No answer: it may have taken effect, or not.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client (one connection, one command at a time) that ran it.
    pub client: usize,
    /// The key it touched.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// What came back.
    pub outcome: Outcome,
    /// When it was sent, from the start of the history.
    pub invoke: Duration,
    /// When its outcome came back (for [`Outcome::Unknown`], when the
    /// client gave up: the operation may still take effect later).
    pub complete: Duration,
}

/// A history being recorded by many clients at once.
#[derive(Clone, Debug)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty history starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Arc::default(),
        }
    }

    /// Time since the start of the history.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Record one finished operation.
    pub fn record(&self, op: Op) {
        self.ops.lock().expect("history").push(op);
    }

    /// Everything recorded so far, in completion order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history").clone()
    }
}

/// Counts of a history's outcomes, for the test's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Definite outcomes: answered by the cluster.
    pub ok: usize,
    /// Refused compare-and-sets, locks and unlocks (definite, counted
    /// apart).
    pub refused: usize,
    /// No answer.
    pub unknown: usize,
}

/// Count `ops` by outcome.
pub fn tally(ops: &[Op]) -> Tally {
    let mut tally = Tally::default();
    for op in ops {
        match op.outcome {
            Outcome::Done | Outcome::Value(_) | Outcome::Granted(_) => tally.ok += 1,
            Outcome::CasFailed(_) | Outcome::Held { .. } | Outcome::NotOwner(_) => {
                tally.refused += 1
            }
            Outcome::Unknown => tally.unknown += 1,
        }
    }
    tally
}
