//! The simulator's host side of snapshot transfer, as the learner actor
//! does it with files: a learner serves chunks of its durable snapshot,
//! and stages a peer's chunks in memory (lost in a crash) until the last
//! one, then verifies the whole, installs it durably, restores its state
//! machine from it and lets the core continue from its end.
//!
//! Chunks are tiny here, so a transfer takes many of them and the
//! network's loss, duplication, delay and reordering hit every step.

use super::{Machine, SimSnapshot, World};
use crate::checkers::Violation;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use synod_core::{
    CommandId, Learner, LearnerSnapshot, Message, Outgoing, RoleId, Slot, SnapshotBytes,
};

/// Bytes per chunk the simulated learners serve (at most).
const SIM_CHUNK: usize = 97;

/// A learner's snapshot as bytes: the parts, then a checksum over them.
fn encode(snapshot: &SimSnapshot) -> Vec<u8> {
    let learned: Vec<CommandId> = snapshot.learned.iter().copied().collect();
    let parts = (&snapshot.learner, snapshot.digest, learned, &snapshot.kv);
    let mut bytes = postcard::to_stdvec(&parts).expect("a snapshot encodes");
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// The snapshot in `bytes`, if they verify.
fn decode(bytes: &[u8]) -> Option<SimSnapshot> {
    let (body, sum) = bytes.split_at(bytes.len().checked_sub(8)?);
    if checksum(body).to_le_bytes() != sum {
        return None;
    }
    let (learner, digest, learned, kv): (LearnerSnapshot, u64, Vec<CommandId>, Vec<u8>) =
        postcard::from_bytes(body).ok()?;
    Some(SimSnapshot {
        learner,
        digest,
        learned: learned.into_iter().collect(),
        kv,
    })
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

impl World {
    /// `node` serves bytes of its snapshot `upto` to `to` (or offers the
    /// one it has now).
    pub(super) fn serve_snapshot(
        &mut self,
        node: RoleId,
        to: RoleId,
        upto: Slot,
        offset: u64,
        max_bytes: usize,
    ) {
        let Some(snapshot) = self.snapshots.get(&node.index) else {
            return;
        };
        let message = if snapshot.learner.upto == upto {
            let bytes = encode(snapshot);
            let start = usize::try_from(offset).map_or(bytes.len(), |o| o.min(bytes.len()));
            let end = (start + max_bytes.min(SIM_CHUNK)).min(bytes.len());
            Message::SnapshotChunk {
                upto,
                offset,
                total: bytes.len() as u64,
                data: bytes[start..end].to_vec(),
            }
        } else {
            Message::SnapshotOffer {
                upto: snapshot.learner.upto,
            }
        };
        self.send_all(node, vec![Outgoing { to, message }]);
    }

    /// `node` stages a chunk of a fetched snapshot; the last one installs it.
    pub(super) fn stage_snapshot(&mut self, node: RoleId, chunk: SnapshotBytes) {
        if chunk.offset == 0 {
            self.staging.insert(node.index, (chunk.upto, Vec::new()));
        }
        let Some((upto, bytes)) = self.staging.get_mut(&node.index) else {
            return;
        };
        if *upto != chunk.upto || bytes.len() as u64 != chunk.offset {
            self.staging.remove(&node.index);
            self.abandon_fetch(node);
            return;
        }
        bytes.extend_from_slice(&chunk.data);
        if (bytes.len() as u64) < chunk.total {
            return;
        }
        let (upto, bytes) = self.staging.remove(&node.index).expect("staged");
        let wanted = self
            .live_mut::<Learner>(node)
            .is_some_and(|live| live.core.wants_snapshot(upto));
        if !wanted {
            self.abandon_fetch(node);
            return;
        }
        // The network carries bytes intact, so a staged snapshot that does
        // not verify means the chunks were put together wrongly.
        let Some(snapshot) = decode(&bytes) else {
            let detail = format!("{node} assembled snapshot {upto} and it does not verify");
            self.record(Err(Violation::new("snapshot transfer", detail)));
            return;
        };
        self.install_snapshot(node, snapshot);
    }

    fn abandon_fetch(&mut self, node: RoleId) {
        if let Some(live) = self.live_mut::<Learner>(node) {
            let out = live.core.abandon_fetch();
            self.process::<Learner>(node, out);
        }
    }

    /// Durable first, then the state machine, then the core.
    fn install_snapshot(&mut self, node: RoleId, snapshot: SimSnapshot) {
        let upto = snapshot.learner.upto;
        self.snapshots.insert(node.index, snapshot.clone());
        let machine = Machine {
            digest: snapshot.digest,
            since_snapshot: 0,
            kv: super::leases::kv_from(&snapshot.kv),
        };
        self.machines.insert(node.index, machine);
        self.checkers.locks.restarted(node);
        self.checkers
            .integrity
            .installed(node, upto, &snapshot.learned);
        self.learned_commands.insert(node.index, snapshot.learned);
        self.installs += 1;
        let live = self.live_mut::<Learner>(node).expect("live");
        let out = live.core.install(&snapshot.learner);
        self.process::<Learner>(node, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_encoding_and_a_damaged_one_is_refused() {
        let snapshot = SimSnapshot {
            learner: LearnerSnapshot::default(),
            digest: 7,
            learned: [CommandId { client: 1, seq: 2 }].into_iter().collect(),
            kv: vec![5],
        };
        let mut bytes = encode(&snapshot);
        let back = decode(&bytes).expect("verifies");
        assert_eq!(
            (back.digest, back.learned, back.kv),
            (7, snapshot.learned, vec![5])
        );
        bytes[0] ^= 1;
        assert!(decode(&bytes).is_none());
        assert!(decode(&[1, 2]).is_none());
    }
}
