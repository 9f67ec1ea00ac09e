//! The simulated network: delay, reordering, loss, duplication and
//! partitions, all drawn from the world's seeded generator.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use synod_core::{Millis, RoleId};

/// A cut in the network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Partition {
    /// One node can neither send nor receive.
    Isolate(RoleId),
    /// The group and everyone else cannot reach each other.
    Split(BTreeSet<RoleId>),
    /// Asymmetric: the node's messages are lost, it still hears others.
    Mute(RoleId),
    /// Asymmetric: the node hears nothing, its messages still arrive.
    Deafen(RoleId),
    /// The node and the group cannot reach each other; both still reach
    /// everyone else (a leader cut off from the acceptors only).
    Sever(RoleId, BTreeSet<RoleId>),
}

impl Partition {
    fn blocks(&self, from: RoleId, to: RoleId) -> bool {
        match self {
            Partition::Isolate(node) => from == *node || to == *node,
            Partition::Split(group) => group.contains(&from) != group.contains(&to),
            Partition::Mute(node) => from == *node,
            Partition::Deafen(node) => to == *node,
            Partition::Sever(node, group) => {
                (from == *node && group.contains(&to)) || (to == *node && group.contains(&from))
            }
        }
    }
}

/// Link behaviour for one seed.
#[derive(Clone, Debug)]
pub struct Network {
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a delivered message arrives twice.
    pub duplication: f64,
    /// Largest ordinary one-way delay.
    pub max_delay: Millis,
    partitions: BTreeMap<u64, Partition>,
}

/// Share of messages that take a slow path (up to five times `max_delay`),
/// which is what reorders them.
const SLOW_SHARE: f64 = 0.05;

impl Network {
    /// A network with the given fault rates and no partitions.
    pub fn new(loss: f64, duplication: f64, max_delay: Millis) -> Self {
        Self {
            loss,
            duplication,
            max_delay,
            partitions: BTreeMap::new(),
        }
    }

    /// Add partition `id`.
    pub fn cut(&mut self, id: u64, partition: Partition) {
        self.partitions.insert(id, partition);
    }

    /// Remove partition `id` (no-op if already healed).
    pub fn mend(&mut self, id: u64) {
        self.partitions.remove(&id);
    }

    /// Stop all faults: no loss, no partitions. Delay, reordering and
    /// duplication go on; they never stop progress.
    pub fn heal(&mut self) {
        self.loss = 0.0;
        self.partitions.clear();
    }

    /// The delays after which copies of a message sent now arrive: none if
    /// it is lost or cut off, two if it is duplicated.
    pub fn delays(&self, rng: &mut ChaCha8Rng, from: RoleId, to: RoleId) -> Vec<Millis> {
        if from == to {
            return vec![0];
        }
        if self.partitions.values().any(|p| p.blocks(from, to)) || rng.random_bool(self.loss) {
            return Vec::new();
        }
        let mut delays = vec![self.delay(rng)];
        if rng.random_bool(self.duplication) {
            delays.push(self.delay(rng));
        }
        delays
    }

    fn delay(&self, rng: &mut ChaCha8Rng) -> Millis {
        let max = if rng.random_bool(SLOW_SHARE) {
            5 * self.max_delay
        } else {
            self.max_delay
        };
        rng.random_range(1..=max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn partitions_block_the_right_directions() {
        let (a, b) = (RoleId::acceptor(1), RoleId::proposer(1));
        assert!(Partition::Isolate(a).blocks(a, b) && Partition::Isolate(a).blocks(b, a));
        assert!(Partition::Mute(a).blocks(a, b) && !Partition::Mute(a).blocks(b, a));
        assert!(!Partition::Deafen(a).blocks(a, b) && Partition::Deafen(a).blocks(b, a));
        let split = Partition::Split(BTreeSet::from([a]));
        assert!(split.blocks(a, b) && split.blocks(b, a) && !split.blocks(b, RoleId::learner(1)));
        let sever = Partition::Sever(b, BTreeSet::from([a]));
        assert!(sever.blocks(a, b) && sever.blocks(b, a));
        assert!(!sever.blocks(b, RoleId::learner(1)) && !sever.blocks(a, RoleId::learner(1)));
    }

    #[test]
    fn healed_network_loses_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::new(0.5, 0.0, 10);
        net.cut(1, Partition::Isolate(RoleId::acceptor(1)));
        net.heal();
        for _ in 0..100 {
            assert_eq!(
                net.delays(&mut rng, RoleId::acceptor(1), RoleId::proposer(1))
                    .len(),
                1
            );
        }
    }
}
