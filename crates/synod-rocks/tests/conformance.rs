//! One conformance suite, run against every store: the in-memory one and
//! RocksDB. Each case writes, reopens, and checks what comes back.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use synod_core::{
    AcceptorWrite, Ballot, Command, CommandId, Epoch, LearnerWrite, Membership, ProposerWrite,
    Quorums, Value,
};
use synod_rocks::RocksStore;
use synod_storage::{AcceptorStore, LearnerStore, MemoryStore, ProposerStore, Store, Write};
use tempfile::TempDir;

/// Opens a store, and opens it again after the previous handle is dropped.
trait Harness {
    type S: AcceptorStore + ProposerStore + LearnerStore;
    fn open(&mut self) -> Self::S;
}

struct Memory(MemoryStore);

impl Harness for Memory {
    type S = MemoryStore;
    fn open(&mut self) -> MemoryStore {
        self.0.reopen()
    }
}

struct Rocks(TempDir);

impl Harness for Rocks {
    type S = RocksStore;
    fn open(&mut self) -> RocksStore {
        RocksStore::open(self.0.path()).expect("open")
    }
}

fn memory() -> Memory {
    Memory(MemoryStore::new())
}

fn rocks() -> Rocks {
    Rocks(TempDir::new().expect("tempdir"))
}

fn value(n: u64) -> Value {
    Value::batch(vec![Command {
        id: CommandId { client: n, seq: 1 },
        payload: vec![n as u8; 64],
    }])
}

fn b(round: u64) -> Ballot {
    Ballot::new(round, 1)
}

fn fresh_store_is_empty(h: &mut impl Harness) {
    let s = h.open();
    assert_eq!(s.load_acceptor().unwrap(), Default::default());
    assert_eq!(s.load_proposer().unwrap(), Default::default());
    assert_eq!(s.load_learner().unwrap(), Default::default());
}

fn acceptor_state_survives_reopen(h: &mut impl Harness) {
    let mut s = h.open();
    s.write_acceptor(&[AcceptorWrite::Promise(b(2))]).unwrap();
    s.write_acceptor(&[
        AcceptorWrite::Accept {
            slot: 7,
            ballot: b(3),
            value: value(7),
        },
        AcceptorWrite::Accept {
            slot: 1,
            ballot: b(3),
            value: value(1),
        },
    ])
    .unwrap();
    drop(s);
    let state = h.open().load_acceptor().unwrap();
    assert_eq!(state.promised, b(3), "an accept raises the promise");
    assert_eq!(
        state.accepted.keys().copied().collect::<Vec<_>>(),
        vec![1, 7],
        "slot order"
    );
    assert_eq!(state.accepted[&7].value, value(7));
}

fn promise_only_rises(h: &mut impl Harness) {
    let mut s = h.open();
    s.write_acceptor(&[AcceptorWrite::Promise(b(5))]).unwrap();
    s.write_acceptor(&[AcceptorWrite::Promise(b(4))]).unwrap();
    drop(s);
    assert_eq!(h.open().load_acceptor().unwrap().promised, b(5));
}

fn chosen_watermark_survives_reopen_and_only_rises(h: &mut impl Harness) {
    let mut s = h.open();
    s.write_acceptor(&[AcceptorWrite::Chosen(40), AcceptorWrite::Chosen(12)])
        .unwrap();
    s.write_acceptor(&[AcceptorWrite::Chosen(30)]).unwrap();
    drop(s);
    assert_eq!(h.open().load_acceptor().unwrap().chosen_upto, 40);
}

fn instance_writes_in_one_batch_build_on_each_other(h: &mut impl Harness) {
    let mut s = h.open();
    let name = "lock".to_owned();
    s.write_acceptor(&[
        AcceptorWrite::InstancePromise {
            name: name.clone(),
            ballot: b(4),
        },
        AcceptorWrite::InstanceAccept {
            name: name.clone(),
            ballot: b(2),
            value: b"x".to_vec(),
        },
    ])
    .unwrap();
    drop(s);
    let vote = &h.open().load_acceptor().unwrap().instances[&name];
    assert_eq!(vote.promised, b(4));
    assert_eq!(vote.accepted.as_ref().unwrap().value, b"x".to_vec());
}

fn proposer_round_only_rises(h: &mut impl Harness) {
    let mut s = h.open();
    s.write_proposer(&[ProposerWrite::Round(9)]).unwrap();
    s.write_proposer(&[ProposerWrite::Round(3)]).unwrap();
    drop(s);
    assert_eq!(h.open().load_proposer().unwrap().max_round, 9);
}

fn learner_first_decision_wins(h: &mut impl Harness) {
    let mut s = h.open();
    s.write_learner(&[
        LearnerWrite::Decided {
            slot: 0,
            value: value(1),
        },
        LearnerWrite::Decided {
            slot: 0,
            value: value(2),
        },
        LearnerWrite::Applied(1),
        LearnerWrite::InstanceDecided {
            name: "x".into(),
            value: vec![1],
        },
    ])
    .unwrap();
    s.write_learner(&[
        LearnerWrite::Decided {
            slot: 0,
            value: value(3),
        },
        LearnerWrite::Applied(0),
        LearnerWrite::InstanceDecided {
            name: "x".into(),
            value: vec![2],
        },
    ])
    .unwrap();
    drop(s);
    let state = h.open().load_learner().unwrap();
    assert_eq!(state.decided[&0], value(1));
    assert_eq!(state.applied, 1);
    assert_eq!(state.instances["x"], vec![1]);
}

fn trim_drops_old_slots_and_only_rises(h: &mut impl Harness) {
    let mut s = h.open();
    for slot in 0..10 {
        s.write_acceptor(&[AcceptorWrite::Accept {
            slot,
            ballot: b(1),
            value: value(slot),
        }])
        .unwrap();
    }
    s.write_acceptor(&[AcceptorWrite::Trim(5)]).unwrap();
    s.write_acceptor(&[AcceptorWrite::Trim(2)]).unwrap();
    s.write_acceptor(&[AcceptorWrite::Accept {
        slot: 3,
        ballot: b(2),
        value: value(3),
    }])
    .unwrap();
    drop(s);
    let s = h.open();
    let state = s.load_acceptor().unwrap();
    assert_eq!(state.trimmed_below, 5);
    assert_eq!(
        state.accepted.keys().copied().collect::<Vec<_>>(),
        vec![5, 6, 7, 8, 9]
    );
    assert_eq!(
        state.promised,
        b(2),
        "the accept below the trim point still raised the promise"
    );
}

fn random_write(rng: &mut ChaCha8Rng) -> Write {
    let name = format!("i{}", rng.random_range(0..3));
    let ballot = b(rng.random_range(1..20));
    let slot = rng.random_range(0..30);
    match rng.random_range(0..9) {
        0 if rng.random_bool(0.3) => AcceptorWrite::Chosen(slot).into(),
        0 => AcceptorWrite::Promise(ballot).into(),
        1 | 2 => AcceptorWrite::Accept {
            slot,
            ballot,
            value: value(slot),
        }
        .into(),
        3 => AcceptorWrite::InstancePromise { name, ballot }.into(),
        4 => AcceptorWrite::InstanceAccept {
            name,
            ballot,
            value: vec![slot as u8],
        }
        .into(),
        5 if rng.random_bool(0.2) => {
            let epoch = Epoch {
                membership: Membership {
                    epoch: rng.random_range(1..5),
                    acceptors: vec![1, 2, 4],
                    quorums: Quorums::majority(3),
                    proposers: vec![1, 3],
                    learners: vec![2],
                    moved: vec![(synod_core::RoleId::proposer(3), "n1".into())],
                },
                start: slot,
                past: Vec::new(),
            };
            match rng.random_bool(0.5) {
                true => AcceptorWrite::Epoch(epoch).into(),
                false => ProposerWrite::Epoch(epoch).into(),
            }
        }
        5 if rng.random_bool(0.3) => AcceptorWrite::InstancesOpen(rng.random_range(0..5)).into(),
        5 if rng.random_bool(0.3) => ProposerWrite::RoundsKnown(rng.random_range(0..5)).into(),
        5 => ProposerWrite::Round(rng.random_range(0..50)).into(),
        6 => LearnerWrite::Decided {
            slot,
            value: value(rng.random_range(0..100)),
        }
        .into(),
        7 => LearnerWrite::InstanceDecided {
            name,
            value: vec![slot as u8],
        }
        .into(),
        _ if rng.random_bool(0.2) => AcceptorWrite::Trim(rng.random_range(0..10)).into(),
        _ if rng.random_bool(0.2) => LearnerWrite::Compact(rng.random_range(0..15)).into(),
        _ => LearnerWrite::Applied(slot).into(),
    }
}

/// Random writes in random batches, with a reopen after each round, give
/// the same state as the reference store, whose semantics are synod-core's
/// `apply`.
fn random_batches_match_the_reference(h: &mut impl Harness) {
    let mut reference = MemoryStore::new();
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = h.open();
        for _ in 0..rng.random_range(1..30) {
            let batch: Vec<Write> = (0..rng.random_range(1..8))
                .map(|_| random_write(&mut rng))
                .collect();
            reference.write_batch(&batch).unwrap();
            s.write_batch(&batch).unwrap();
        }
        drop(s);
        let s = h.open();
        assert_eq!(
            s.load_acceptor().unwrap(),
            reference.load_acceptor().unwrap(),
            "seed {seed}"
        );
        assert_eq!(
            s.load_proposer().unwrap(),
            reference.load_proposer().unwrap(),
            "seed {seed}"
        );
        assert_eq!(
            s.load_learner().unwrap(),
            reference.load_learner().unwrap(),
            "seed {seed}"
        );
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory_store {
            $(#[test] fn $case() { super::$case(&mut super::memory()); })*
        }
        mod rocks_store {
            $(#[test] fn $case() { super::$case(&mut super::rocks()); })*
        }
    };
}

conformance!(
    fresh_store_is_empty,
    acceptor_state_survives_reopen,
    promise_only_rises,
    chosen_watermark_survives_reopen_and_only_rises,
    instance_writes_in_one_batch_build_on_each_other,
    proposer_round_only_rises,
    learner_first_decision_wins,
    trim_drops_old_slots_and_only_rises,
    random_batches_match_the_reference,
);
