//! The lease workload (`SimOptions::leases`): every learner runs the real
//! key/value state machine, leaders stamp their clocks into the log, and
//! clients grant leases, take and release lease-bound locks (waiting in
//! line), keep leases alive, attach keys and revoke, choosing each
//! command from the answers to the last ones. Faults make clients stall,
//! so leases expire while their locks are held and waited for.
//!
//! Each slot folds the hash of the whole key/value state into the
//! learner's digest, so the state digest checker compares lease expiry on
//! every learner after every slot; the lock order checker reads every
//! lock. The negative control `local_clock_leases` expires leases by each
//! learner's own clock instead of the log's stamps, and must be caught.

use super::{Machine, World};
use crate::checkers::LockView;
use rand::Rng;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use synod_api::StateMachine;
use synod_core::{Ballot, ClockStamp, Command, RoleId, Slot};
use synod_kv::{KvCommand, KvResponse, KvStore};

/// How often leaders stamp their clocks, in simulated milliseconds.
pub(super) const SIM_CLOCK_INTERVAL: u64 = 100;

/// The locks clients contend for.
const LOCKS: [&str; 2] = ["lock-0", "lock-1"];

/// A key/value state from snapshot bytes (none: empty).
pub(super) fn kv_from(bytes: &[u8]) -> KvStore {
    let mut kv = KvStore::default();
    if !bytes.is_empty() {
        kv.restore(&mut &bytes[..])
            .expect("a snapshot the sim wrote");
    }
    kv
}

/// The bytes of a key/value state's snapshot.
pub(super) fn kv_bytes(kv: &KvStore) -> Vec<u8> {
    let mut bytes = Vec::new();
    kv.snapshot(&mut bytes).expect("into a Vec");
    bytes
}

impl World {
    /// The payload of a lease client's next command.
    pub(super) fn lease_payload(&mut self, client_id: u64) -> Vec<u8> {
        let lease = self.clients[&client_id].lease;
        let owner = format!("c{client_id}");
        let name = LOCKS[self.rng.random_range(0..LOCKS.len())]
            .as_bytes()
            .to_vec();
        let kv = match lease {
            None => KvCommand::Grant {
                ttl_ms: self.rng.random_range(200..=1500),
            },
            Some(lease) => match self.rng.random_range(0..10) {
                0..=3 => KvCommand::Acquire {
                    name,
                    owner,
                    lease,
                    wait: true,
                },
                4 | 5 => KvCommand::KeepAlive { lease },
                6 => KvCommand::PutLeased {
                    key: format!("k{client_id}").into_bytes(),
                    value: self.rng.random::<u64>().to_be_bytes().to_vec(),
                    lease,
                },
                7 | 8 => KvCommand::Unlock { name, owner },
                _ => KvCommand::Revoke { lease },
            },
        };
        // A unique tail after the command (postcard reads a value and
        // leaves what follows), so the integrity checker, which tells
        // commands apart by payload, sees two identical requests as two.
        let seq = self.clients[&client_id].seq;
        let mut payload = kv.encode();
        payload.extend_from_slice(format!("#c{client_id}-{seq}").as_bytes());
        payload
    }

    /// A lease client's command was answered `response`.
    pub(super) fn lease_answered(&mut self, client_id: u64, response: &[u8]) {
        let client = self.clients.get_mut(&client_id).expect("exists");
        let revoked = matches!(
            postcard::from_bytes(&client.payload),
            Ok(KvCommand::Revoke { .. })
        );
        match KvResponse::decode(response) {
            Ok(KvResponse::Lease { id, .. }) => client.lease = Some(id),
            Ok(KvResponse::NoLease { .. }) => client.lease = None,
            Ok(KvResponse::Done) if revoked => client.lease = None,
            _ => {}
        }
    }

    /// Apply a slot to `learner`'s key/value state: the clock stamp (or,
    /// under the negative control, the learner's own clock), then the
    /// commands. Returns the responses and the state's hash.
    pub(super) fn apply_to_kv(
        &mut self,
        learner: RoleId,
        slot: Slot,
        clock: Option<ClockStamp>,
        commands: &[Command],
    ) -> (Vec<Vec<u8>>, u64) {
        let local = self.options.local_clock_leases.then_some(ClockStamp {
            ballot: Ballot::ZERO,
            millis: self.now,
        });
        let machine: &mut Machine = self.machines.entry(learner.index).or_default();
        let kv = &mut machine.kv;
        if let Some(stamp) = local.or(clock) {
            let live = kv.leases();
            kv.clock(stamp);
            self.lease_expiries += live.saturating_sub(kv.leases()) as u64;
        }
        let responses: Vec<Vec<u8>> = commands.iter().map(|c| kv.apply(c)).collect();
        let mut hasher = DefaultHasher::new();
        kv_bytes(kv).hash(&mut hasher);
        let digest = hasher.finish();
        self.check_locks(learner, slot);
        (responses, digest)
    }

    /// Every lock of `learner`'s state after `slot`, to the lock checker.
    fn check_locks(&mut self, learner: RoleId, slot: Slot) {
        for name in LOCKS {
            let kv = &self.machines[&learner.index].kv;
            let ask = |command: KvCommand| {
                let answer = kv.query(&command.encode()).expect("the KV answers queries");
                KvResponse::decode(&answer).expect("a KV answer")
            };
            let info = ask(KvCommand::LockInfo {
                name: name.as_bytes().to_vec(),
            });
            let KvResponse::LockState {
                holder,
                token,
                lease,
                ..
            } = info
            else {
                panic!("lock info answered {info:?}");
            };
            let lease_live = matches!(
                ask(KvCommand::LeaseInfo { lease }),
                KvResponse::Lease { .. }
            );
            let view = LockView {
                name,
                holder: holder.as_deref(),
                token,
                lease,
                lease_live,
            };
            let check = self.checkers.locks.observed(learner, slot, view);
            self.record(check);
        }
    }
}
