//! Leases, leased keys and lease-bound locks.

use super::*;
use synod_core::Ballot;

/// A little driver: commands from one client, clock stamps of one ballot.
struct Driver {
    store: KvStore,
    seq: u64,
    ballot: Ballot,
}

impl Driver {
    fn new() -> Self {
        Self::with(KvLimits::default())
    }

    fn with(limits: KvLimits) -> Self {
        let mut driver = Self {
            store: KvStore::new(limits),
            seq: 0,
            ballot: Ballot::new(1, 1),
        };
        driver.stamp(0);
        driver
    }

    fn run(&mut self, kv: KvCommand) -> KvResponse {
        self.seq += 1;
        let command = Command {
            id: CommandId {
                client: 1,
                seq: self.seq,
            },
            payload: kv.encode(),
        };
        KvResponse::decode(&self.store.apply(&command)).unwrap()
    }

    /// A stamp reading `millis` on the current leader's clock.
    fn stamp(&mut self, millis: u64) {
        let ballot = self.ballot;
        self.store.clock(ClockStamp { ballot, millis });
    }

    fn grant(&mut self, ttl_ms: u64) -> u64 {
        match self.run(KvCommand::Grant { ttl_ms }) {
            KvResponse::Lease { id, .. } => id,
            other => panic!("grant answered {other:?}"),
        }
    }

    fn acquire(&mut self, name: &str, owner: &str, lease: u64) -> KvResponse {
        self.run(KvCommand::Acquire {
            name: name.into(),
            owner: owner.into(),
            lease,
            wait: true,
        })
    }

    fn put_leased(&mut self, key: &str, lease: u64) -> KvResponse {
        self.run(KvCommand::PutLeased {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
        })
    }

    fn get(&mut self, key: &str) -> KvResponse {
        self.run(KvCommand::Get { key: key.into() })
    }

    fn holder(&mut self, name: &str) -> (Option<String>, u64) {
        match self.run(KvCommand::LockInfo { name: name.into() }) {
            KvResponse::LockState { holder, token, .. } => (holder, token),
            other => panic!("lock info answered {other:?}"),
        }
    }
}

fn granted(response: KvResponse) -> u64 {
    match response {
        KvResponse::Granted { token } => token,
        other => panic!("not granted: {other:?}"),
    }
}

#[test]
fn a_lease_ends_after_its_ttl_of_stamps_taking_its_keys_and_locks() {
    let mut d = Driver::new();
    let lease = d.grant(1000);
    assert_eq!(d.put_leased("session/a", lease), KvResponse::Done);
    let token = granted(d.acquire("job", "a", lease));
    d.stamp(999);
    assert_eq!(d.get("session/a"), KvResponse::Value(b"v".to_vec()));
    assert_eq!(
        d.run(KvCommand::LeaseInfo { lease }),
        KvResponse::Lease {
            id: lease,
            ttl_ms: 1000,
            remaining_ms: 1
        }
    );
    let before = d.store.revision();
    d.stamp(1000);
    assert_eq!(d.store.revision(), before + 1, "the expiry has a revision");
    assert_eq!(d.get("session/a"), KvResponse::NotFound);
    assert_eq!(d.holder("job"), (None, 0));
    assert_eq!(
        d.run(KvCommand::KeepAlive { lease }),
        KvResponse::NoLease { id: lease }
    );
    // The deletion is in the history at the expiry's revision, for watchers.
    let KvResponse::Changes { changes, .. } = d.run(KvCommand::Changes {
        prefix: b"session/".to_vec(),
        from: before + 1,
        limit: 0,
    }) else {
        panic!("no changes");
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].revision, changes[0].value.clone()),
        (before + 1, None)
    );
    assert!(token < before + 1);
}

#[test]
fn keep_alive_restarts_the_ttl_and_revoke_ends_it_at_once() {
    let mut d = Driver::new();
    let lease = d.grant(1000);
    d.put_leased("k", lease);
    d.stamp(800);
    assert!(matches!(
        d.run(KvCommand::KeepAlive { lease }),
        KvResponse::Lease { ttl_ms: 1000, .. }
    ));
    d.stamp(1700);
    assert_eq!(
        d.get("k"),
        KvResponse::Value(b"v".to_vec()),
        "kept alive at 800"
    );
    d.stamp(1800);
    assert_eq!(d.get("k"), KvResponse::NotFound);

    let lease = d.grant(60_000);
    d.put_leased("k", lease);
    assert_eq!(d.run(KvCommand::Revoke { lease }), KvResponse::Done);
    assert_eq!(d.get("k"), KvResponse::NotFound);
    assert_eq!(
        d.run(KvCommand::Revoke { lease }),
        KvResponse::NoLease { id: lease }
    );
    assert_eq!(d.put_leased("k", lease), KvResponse::NoLease { id: lease });
}

#[test]
fn the_time_between_leaders_does_not_count() {
    let mut d = Driver::new();
    let lease = d.grant(1000);
    d.put_leased("k", lease);
    d.stamp(900);
    // A new leader, whose clock reads anything: its first stamp counts
    // nothing, so the lease has 100 ms left of its stamps.
    d.ballot = Ballot::new(2, 3);
    d.stamp(5_000_000);
    assert_eq!(d.get("k"), KvResponse::Value(b"v".to_vec()));
    d.stamp(5_000_099);
    assert_eq!(d.get("k"), KvResponse::Value(b"v".to_vec()));
    d.stamp(5_000_100);
    assert_eq!(d.get("k"), KvResponse::NotFound);
}

#[test]
fn a_plain_put_detaches_a_key_from_its_lease_and_a_delete_forgets_it() {
    let mut d = Driver::new();
    let lease = d.grant(1000);
    d.put_leased("kept", lease);
    d.put_leased("deleted", lease);
    d.run(KvCommand::Put {
        key: b"kept".to_vec(),
        value: b"plain".to_vec(),
    });
    d.run(KvCommand::Delete {
        key: b"deleted".to_vec(),
    });
    assert!(d.store.leases.get(lease).unwrap().keys.is_empty());
    d.stamp(1000);
    assert_eq!(d.get("kept"), KvResponse::Value(b"plain".to_vec()));
}

#[test]
fn waiters_get_a_lock_in_order_with_growing_tokens() {
    let mut d = Driver::new();
    let (a, b, c) = (d.grant(1000), d.grant(5000), d.grant(5000));
    let first = granted(d.acquire("job", "a", a));
    assert!(matches!(
        d.acquire("job", "b", b),
        KvResponse::Queued { position: 1, ref holder, token } if holder == "a" && token == first
    ));
    assert!(matches!(
        d.acquire("job", "c", c),
        KvResponse::Queued { position: 2, .. }
    ));
    assert!(matches!(
        d.acquire("job", "b", b),
        KvResponse::Queued { position: 1, .. }
    ));
    let refused = d.run(KvCommand::Acquire {
        name: b"job".to_vec(),
        owner: "d".into(),
        lease: c,
        wait: false,
    });
    assert!(matches!(refused, KvResponse::Held { .. }));
    // a's lease expires: b is next.
    d.stamp(1000);
    let (holder, second) = d.holder("job");
    assert_eq!(holder.as_deref(), Some("b"));
    assert!(second > first);
    // b unlocks: c gets it.
    assert_eq!(
        d.run(KvCommand::Unlock {
            name: b"job".to_vec(),
            owner: "b".into()
        }),
        KvResponse::Unlocked
    );
    let (holder, third) = d.holder("job");
    assert_eq!(holder.as_deref(), Some("c"));
    assert!(third > second);
    assert_eq!(granted(d.acquire("job", "c", c)), third, "asking again");
}

#[test]
fn a_waiter_whose_lease_ends_with_the_holders_is_skipped() {
    let mut d = Driver::new();
    let (a, b, c) = (d.grant(1000), d.grant(1000), d.grant(9000));
    let first = granted(d.acquire("job", "a", a));
    d.acquire("job", "b", b);
    d.acquire("job", "c", c);
    d.stamp(1000); // a and b end in the same expiry
    let (holder, token) = d.holder("job");
    assert_eq!(holder.as_deref(), Some("c"));
    assert!(token > first);
    assert!(!d.store.leases.get(c).unwrap().locks.is_empty());
    assert!(d.store.leases.get(b).is_none());
}

#[test]
fn a_waiter_that_unlocks_leaves_the_queue() {
    let mut d = Driver::new();
    let (a, b) = (d.grant(1000), d.grant(5000));
    granted(d.acquire("job", "a", a));
    d.acquire("job", "b", b);
    let unlock = KvCommand::Unlock {
        name: b"job".to_vec(),
        owner: "b".into(),
    };
    assert_eq!(d.run(unlock), KvResponse::Unlocked);
    assert!(d.store.leases.get(b).unwrap().locks.is_empty());
    d.stamp(1000);
    assert_eq!(d.holder("job"), (None, 0), "nobody waits any more");
}

#[test]
fn lease_limits_and_malformed_lease_commands_are_refused() {
    let mut d = Driver::with(KvLimits {
        max_leases: 2,
        max_lease_ttl_ms: 10_000,
        max_lock_waiters: 1,
        ..KvLimits::default()
    });
    let (a, b) = (d.grant(1000), d.grant(1000));
    assert!(matches!(
        d.run(KvCommand::Grant { ttl_ms: 1000 }),
        KvResponse::TooLarge { ref what, limit: 2, .. } if what == "leases"
    ));
    d.run(KvCommand::Revoke { lease: b });
    assert!(matches!(
        d.run(KvCommand::Grant { ttl_ms: 10_001 }),
        KvResponse::TooLarge { ref what, .. } if what == "lease TTL"
    ));
    let b = d.grant(1000);
    granted(d.acquire("job", "a", a));
    assert!(matches!(
        d.acquire("job", "b", b),
        KvResponse::Queued { .. }
    ));
    assert!(matches!(
        d.acquire("job", "c", b),
        KvResponse::TooLarge { ref what, .. } if what == "lock waiters"
    ));
    assert_eq!(d.acquire("job", "x", 999), KvResponse::NoLease { id: 999 });
    assert!(KvCommand::Grant { ttl_ms: 0 }.check().is_err());
    assert!(
        KvCommand::PutLeased {
            key: b"k".to_vec(),
            value: vec![],
            lease: 0
        }
        .check()
        .is_err()
    );
}

#[test]
fn lease_tags_are_pinned() {
    assert_eq!(KvCommand::Grant { ttl_ms: 5 }.encode(), vec![9, 5]);
    assert_eq!(KvCommand::KeepAlive { lease: 7 }.encode(), vec![10, 7]);
    assert_eq!(KvCommand::Revoke { lease: 7 }.encode(), vec![11, 7]);
    let put = KvCommand::PutLeased {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        lease: 7,
    };
    assert_eq!(put.encode(), vec![12, 1, b'k', 1, b'v', 7]);
    let acquire = KvCommand::Acquire {
        name: b"n".to_vec(),
        owner: "o".into(),
        lease: 7,
        wait: true,
    };
    assert_eq!(acquire.encode(), vec![13, 1, b'n', 1, b'o', 7, 1]);
    assert_eq!(KvCommand::LeaseInfo { lease: 7 }.encode(), vec![14, 7]);
    let info = KvCommand::LockInfo {
        name: b"n".to_vec(),
    };
    assert_eq!(info.encode(), vec![15, 1, b'n']);
    let lease = KvResponse::Lease {
        id: 1,
        ttl_ms: 2,
        remaining_ms: 3,
    };
    assert_eq!(lease.encode(), vec![14, 1, 2, 3]);
    assert_eq!(KvResponse::NoLease { id: 4 }.encode(), vec![15, 4]);
    let queued = KvResponse::Queued {
        position: 1,
        holder: "h".into(),
        token: 2,
    };
    assert_eq!(queued.encode(), vec![16, 1, 1, b'h', 2]);
    let state = KvResponse::LockState {
        holder: None,
        token: 0,
        lease: 0,
        waiters: vec![],
    };
    assert_eq!(state.encode(), vec![17, 0, 0, 0, 0]);
}

#[test]
fn a_snapshot_keeps_leases_the_clock_and_lock_queues() {
    let mut d = Driver::new();
    let (a, b) = (d.grant(1000), d.grant(3000));
    d.put_leased("k", a);
    granted(d.acquire("job", "a", a));
    d.acquire("job", "b", b);
    d.stamp(400);
    let mut bytes = Vec::new();
    d.store.snapshot(&mut bytes).unwrap();
    let mut restored = KvStore::default();
    restored.restore(&mut &bytes[..]).unwrap();
    assert_eq!(restored.leases, d.store.leases);
    assert_eq!(restored.locks, d.store.locks);
    assert_eq!(restored.data, d.store.data);
    let stamp = ClockStamp {
        ballot: d.ballot,
        millis: 1000,
    };
    d.store.clock(stamp);
    restored.clock(stamp);
    assert_eq!(restored.locks, d.store.locks, "b got the lock in both");
    assert_eq!(restored.data, d.store.data, "k expired in both");
}

/// One step of a random run: a command, or a clock stamp.
enum Step {
    Apply(Command),
    Stamp(ClockStamp),
}

/// Lease, leased-key and lock commands on a few names, with stamps of
/// two alternating leaders in between. Lease ids are revisions, so
/// picking recent revisions hits live leases often enough.
fn random_steps(seed: u64, count: u64) -> Vec<Step> {
    let mut rng = synod_core::SplitMix64::new(seed);
    let mut pick = |n: u64| rng.next_u64() % n;
    let mut millis = 0;
    (1..=count)
        .map(|seq| {
            let lease = seq.saturating_sub(pick(12));
            let key = format!("k{}", pick(4)).into_bytes();
            let name = format!("l{}", pick(2)).into_bytes();
            let owner = format!("o{}", pick(4));
            let kv = match pick(9) {
                0 | 1 => {
                    millis += pick(400);
                    let ballot = Ballot::new(1 + pick(2), 1);
                    return Step::Stamp(ClockStamp { ballot, millis });
                }
                2 => KvCommand::Grant {
                    ttl_ms: 100 + pick(2000),
                },
                3 => KvCommand::KeepAlive { lease },
                4 if pick(4) == 0 => KvCommand::Revoke { lease },
                4 => KvCommand::Put {
                    key,
                    value: vec![1],
                },
                5 => KvCommand::PutLeased {
                    key,
                    value: seq.to_be_bytes().to_vec(),
                    lease,
                },
                6 => KvCommand::Acquire {
                    name,
                    owner,
                    lease,
                    wait: pick(3) > 0,
                },
                7 => KvCommand::Unlock { name, owner },
                _ => KvCommand::LockInfo { name },
            };
            Step::Apply(Command {
                id: CommandId {
                    client: pick(3),
                    seq,
                },
                payload: kv.encode(),
            })
        })
        .collect()
}

fn step(store: &mut KvStore, step: &Step) -> Vec<u8> {
    match step {
        Step::Apply(command) => store.apply(command),
        Step::Stamp(stamp) => {
            store.clock(*stamp);
            Vec::new()
        }
    }
}

#[test]
fn a_restored_snapshot_with_leases_continues_exactly_like_the_original() {
    let mut expired_somewhere = false;
    for seed in 0..40 {
        let steps = random_steps(seed, 400);
        let cut = 1 + (seed as usize * 13) % 399;
        let mut original = KvStore::default();
        for s in &steps[..cut] {
            step(&mut original, s);
        }
        let mut bytes = Vec::new();
        original.snapshot(&mut bytes).unwrap();
        let mut restored = KvStore::default();
        restored.restore(&mut &bytes[..]).unwrap();
        let leases_before = original.leases.len();
        for s in &steps[cut..] {
            assert_eq!(
                step(&mut original, s),
                step(&mut restored, s),
                "seed {seed}"
            );
        }
        expired_somewhere |= original.leases.len() < leases_before;
        let (mut again, mut now) = (Vec::new(), Vec::new());
        original.snapshot(&mut again).unwrap();
        restored.snapshot(&mut now).unwrap();
        assert_eq!(again, now, "seed {seed}");
        // Every lease's record of its keys and locks matches the keys and
        // locks themselves.
        for (id, lease) in original.leases.iter() {
            for key in &lease.keys {
                assert_eq!(original.data.get(key).unwrap().lease, id, "seed {seed}");
            }
            for (name, owner) in &lease.locks {
                let lock = &original.locks[name];
                let holds = lock.owner == *owner && lock.lease == id;
                let waits = lock
                    .waiters
                    .iter()
                    .any(|w| w.owner == *owner && w.lease == id);
                assert!(holds || waits, "seed {seed}: a stale claim");
            }
        }
    }
    assert!(expired_somewhere, "no lease expired in any run");
}
