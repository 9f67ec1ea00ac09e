//! Group-commit throughput: acknowledged, synced writes per second for 1,
//! 16, 64 and 256 concurrent submitters, plus the raw fsync time of the
//! data directory's disk.
//!
//! ```sh
//! cargo run --release -p synod-rocks --example group_commit [-- DIR [SECONDS]]
//! ```
//!
//! DIR defaults to a temporary directory under the current one (so the
//! disk measured is the one you run from); SECONDS per level defaults to 3.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use synod_core::{AcceptorWrite, Ballot, Command, CommandId, Value};
use synod_rocks::RocksStore;
use synod_storage::{GroupCommit, GroupLimits, Write};

const LEVELS: [usize; 4] = [1, 16, 64, 256];
const FSYNC_SAMPLES: usize = 200;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args
        .first()
        .map_or_else(|| std::env::current_dir().expect("cwd"), Into::into);
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir_in(&base).expect("temporary directory");

    let (fsync_mean, fsync_p50) = measure_fsync(dir.path());
    println!(
        "raw fsync on {}: mean {fsync_mean:.3} ms, median {fsync_p50:.3} ms",
        base.display()
    );

    let store = RocksStore::open(dir.path()).expect("open store");
    let writer = Arc::new(GroupCommit::spawn(
        store,
        dir.path(),
        GroupLimits::default(),
    ));
    let next_slot = Arc::new(AtomicU64::new(0));
    let mut rates = Vec::new();
    for submitters in LEVELS {
        let rate = measure(
            &writer,
            &next_slot,
            submitters,
            Duration::from_secs(seconds),
        );
        println!("{submitters:>4} submitters: {rate:>10.0} synced writes/s");
        rates.push(format!("{submitters}={rate:.0}"));
    }
    println!("synced writes/s: {}", rates.join(" "));
}

/// Time `FSYNC_SAMPLES` appends of 64 bytes, each followed by fdatasync.
fn measure_fsync(dir: &Path) -> (f64, f64) {
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("probe file");
    let mut samples: Vec<f64> = (0..FSYNC_SAMPLES)
        .map(|_| {
            let start = Instant::now();
            file.write_all(&[7u8; 64]).expect("write");
            file.sync_data().expect("fdatasync");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    std::fs::remove_file(&path).ok();
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (mean, samples[samples.len() / 2])
}

/// ~64-byte accepts for fresh slots.
fn accept(slot: u64) -> Vec<Write> {
    let command = Command {
        id: CommandId {
            client: slot,
            seq: 0,
        },
        payload: vec![0xab; 48],
    };
    let write = AcceptorWrite::Accept {
        slot,
        ballot: Ballot::new(1, 1),
        value: Value::batch(vec![command]),
    };
    vec![write.into()]
}

/// `submitters` threads each submit one write, wait for it, and repeat.
fn measure(
    writer: &Arc<GroupCommit<RocksStore>>,
    next_slot: &Arc<AtomicU64>,
    submitters: usize,
    length: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..submitters)
        .map(|_| {
            let (writer, next_slot, stop, done) = (
                Arc::clone(writer),
                Arc::clone(next_slot),
                Arc::clone(&stop),
                Arc::clone(&done),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let slot = next_slot.fetch_add(1, Ordering::Relaxed);
                    writer.submit_and_wait(accept(slot)).expect("synced write");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let every submitter get going before counting.
    std::thread::sleep(Duration::from_millis(200));
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(length);
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("submitter");
    }
    count as f64 / elapsed
}
