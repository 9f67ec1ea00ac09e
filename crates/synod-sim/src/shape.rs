//! What one seed decides before the first event: the cluster and the
//! weather.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use synod_core::Millis;

/// The cluster shape and fault rates of one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// 1–3 proposers.
    pub proposers: u32,
    /// 3 or 5 acceptors (a quorum option may set another count).
    pub acceptors: u32,
    /// 1–3 learners.
    pub learners: u32,
    /// Message loss while faults are on: 0–30 %.
    pub loss: f64,
    /// Message duplication: 0–50 %.
    pub duplication: f64,
    /// Largest ordinary one-way delay.
    pub max_delay: Millis,
    /// Clients, each with one command in flight at a time.
    pub clients: u64,
    /// Single-decree instances, each with competing proposals.
    pub instances: usize,
    /// Mean time between faults (crashes, partitions).
    pub fault_every: Millis,
    /// After healing, the leader stays cut off from every acceptor (only
    /// drawn with more than one proposer): another must take over.
    pub sever_leader: bool,
}

impl Shape {
    /// Draw a shape.
    pub fn random(rng: &mut ChaCha8Rng) -> Self {
        let proposers = rng.random_range(1..=3);
        Self {
            proposers,
            acceptors: if rng.random_bool(0.5) { 3 } else { 5 },
            learners: rng.random_range(1..=3),
            loss: rng.random_range(0.0..=0.30),
            duplication: rng.random_range(0.0..=0.50),
            max_delay: rng.random_range(2..=40),
            clients: rng.random_range(1..=8),
            instances: rng.random_range(0..=3),
            fault_every: rng.random_range(100..=800),
            sever_leader: proposers > 1 && rng.random_bool(0.5),
        }
    }
}
