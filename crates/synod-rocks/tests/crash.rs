//! Crash safety: a child process writes through the group-commit writer and
//! reports every acknowledged (synced) batch; the parent SIGKILLs it at a
//! random moment, reopens the store, and checks that every acknowledged
//! batch is there and that no batch is partly there.
//!
//! `SYNOD_CRASH_CYCLES` sets the number of kill cycles (default 50);
//! `SYNOD_CRASH_SEED` picks the kill moments.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use synod_core::{
    AcceptorState, AcceptorWrite, Ballot, Command as ClientCommand, CommandId, Value,
};
use synod_rocks::RocksStore;
use synod_storage::{AcceptorStore, GroupCommit, GroupLimits, StorageError, Write};
use synod_testkit::TestChild;

const CHILD_DIR: &str = "SYNOD_CRASH_CHILD_DIR";
const READY: &str = "synod-crash-child-ready";
const WRITES_PER_BATCH: u64 = 8;
const SUBMITTERS: usize = 8;
const CHILD_START_LIMIT: Duration = Duration::from_secs(60);

/// Batch `id`: accepts for slots `id * WRITES_PER_BATCH ..`, in ballot `id`.
fn batch(id: u64) -> Vec<Write> {
    (0..WRITES_PER_BATCH)
        .map(|i| {
            let slot = id * WRITES_PER_BATCH + i;
            let command = ClientCommand {
                id: CommandId { client: id, seq: i },
                payload: vec![i as u8; 64],
            };
            AcceptorWrite::Accept {
                slot,
                ballot: Ballot::new(id, 0),
                value: Value::batch(vec![command]),
            }
            .into()
        })
        .collect()
}

/// Batch ids present in `state`, with how many of their writes are there.
fn batches_present(state: &AcceptorState) -> BTreeMap<u64, u64> {
    let mut present = BTreeMap::new();
    for (slot, accepted) in &state.accepted {
        let id = accepted.ballot.round;
        assert_eq!(
            slot / WRITES_PER_BATCH,
            id,
            "slot {slot} holds a value of batch {id}"
        );
        *present.entry(id).or_default() += 1;
    }
    present
}

/// Not a test by itself: the child side of the crash test. It does nothing
/// unless the parent set `SYNOD_CRASH_CHILD_DIR`.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let store = RocksStore::open(&dir).expect("child opens the store");
    let first = batches_present(&store.load_acceptor().expect("load"))
        .keys()
        .last()
        .map_or(1, |id| id + 1);
    let writer = Arc::new(GroupCommit::spawn(store, &dir, GroupLimits::default()));
    let next = Arc::new(AtomicU64::new(first));
    // libtest may have printed "test crash_child_writer ... " without a
    // newline; the parent looks for this marker anywhere in a line.
    println!("{READY}");
    let threads: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let (writer, next) = (Arc::clone(&writer), Arc::clone(&next));
            std::thread::spawn(move || {
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    writer.submit_and_wait(batch(id)).expect("write");
                    println!("acked {id}");
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

fn wait_for_ready(lines: &mpsc::Receiver<String>) {
    let deadline = Instant::now() + CHILD_START_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(READY) => return,
            Ok(_) => continue,
            Err(e) => panic!("child never became ready: {e}"),
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let cycles: u64 = std::env::var("SYNOD_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("SYNOD_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut acked = BTreeSet::new();
    let mut torn_tails = 0;
    for cycle in 0..cycles {
        let mut child = TestChild::spawn("crash_child_writer", (CHILD_DIR, dir.path()));
        wait_for_ready(&child.lines);
        // The kill moment is what is random here; nothing waits on a condition.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        child.kill();
        acked.extend(
            child
                .lines
                .iter()
                .filter_map(|line| line.strip_prefix("acked ")?.parse::<u64>().ok()),
        );

        let store = RocksStore::open(dir.path()).expect("reopen after SIGKILL");
        torn_tails += u64::from(store.torn_tail().is_some());
        let state = store.load_acceptor().expect("load");
        drop(store);
        let present = batches_present(&state);
        for (id, count) in &present {
            assert_eq!(
                *count, WRITES_PER_BATCH,
                "cycle {cycle}: batch {id} is partial"
            );
        }
        let lost: Vec<_> = acked
            .iter()
            .filter(|id| !present.contains_key(id))
            .collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle}: acknowledged batches lost: {lost:?}"
        );
    }
    eprintln!("{cycles} kills, {torn_tails} torn WAL tails cut off at reopen");
    assert!(
        acked.len() as u64 >= cycles,
        "children acknowledged too little to prove anything: {}",
        acked.len()
    );
}

#[test]
fn a_store_held_by_another_process_is_locked() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut child = TestChild::spawn("crash_child_writer", (CHILD_DIR, dir.path()));
    wait_for_ready(&child.lines);
    let result = RocksStore::open(dir.path());
    child.kill();
    let error = result.expect_err("the child holds the lock");
    assert!(matches!(error, StorageError::Locked { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string())
    );
}
