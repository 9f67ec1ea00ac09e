//! Crash safety of snapshot installs: a child process installs snapshot
//! after snapshot and reports each one installed; the parent SIGKILLs it at
//! a random moment (often mid-write), reopens the directory, and checks
//! that the latest snapshot verifies, is at least the last one reported,
//! and holds exactly the bytes written for its slot: the old or the new
//! snapshot, never a torn one.
//!
//! `SYNOD_CRASH_CYCLES` sets the number of kill cycles (default 20).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use synod_core::SplitMix64;
use synod_storage::SnapshotDir;

const CHILD_DIR: &str = "SYNOD_SNAPSHOT_CHILD_DIR";
const START_LIMIT: Duration = Duration::from_secs(60);
const CHUNK: usize = 16 * 1024;

/// The length of the snapshot body for `upto`: 1–3 MiB.
fn body_len(upto: u64) -> usize {
    (1 << 20) + (SplitMix64::new(upto).next_u64() % (2 << 20)) as usize
}

/// Bytes `range` of the body for `upto`.
fn body_bytes(upto: u64, range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(|i| (i as u64 ^ upto) as u8).collect()
}

fn body(upto: u64) -> Vec<u8> {
    body_bytes(upto, 0..body_len(upto))
}

/// Not a test by itself: the child side. Does nothing unless the parent
/// set `SYNOD_SNAPSHOT_CHILD_DIR`.
#[test]
fn snapshot_child_installer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = SnapshotDir::open(&dir).expect("child opens the directory");
    let first = dir.latest().expect("verifies").map_or(1, |s| s.upto + 1);
    for upto in first.. {
        // Produced and written piece by piece, as a state machine streams
        // its state, so most kills land in the middle of a write.
        let len = body_len(upto);
        dir.install(upto, |out| {
            (0..len).step_by(CHUNK).try_for_each(|start| {
                out.write_all(&body_bytes(upto, start..len.min(start + CHUNK)))
            })
        })
        .expect("install");
        println!("installed {upto}");
    }
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path) -> (ChildGuard, mpsc::Receiver<u64>) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "snapshot_child_installer",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // libtest may print its own text before ours on the same line.
            let Some((_, upto)) = line.rsplit_once("installed ") else {
                continue;
            };
            if tx.send(upto.trim().parse().expect("a slot")).is_err() {
                break;
            }
        }
    });
    (ChildGuard(child), rx)
}

#[test]
fn a_sigkilled_install_leaves_the_old_or_the_new_snapshot() {
    let cycles: u64 = std::env::var("SYNOD_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = SplitMix64::new(7);
    let mut reported = 0;
    for cycle in 0..cycles {
        let (child, installed) = spawn_child(tmp.path());
        let first = installed
            .recv_timeout(START_LIMIT)
            .unwrap_or_else(|e| panic!("cycle {cycle}: the child installed nothing: {e}"));
        reported = reported.max(first);
        // The kill moment is what is random here; nothing waits on a condition.
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 30));
        drop(child);
        reported = installed.try_iter().fold(reported, u64::max);

        let latest = SnapshotDir::open(tmp.path())
            .and_then(|dir| dir.latest())
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"))
            .expect("a snapshot survives");
        assert!(
            latest.upto >= reported,
            "cycle {cycle}: snapshot {} is older than the reported {reported}",
            latest.upto
        );
        let mut bytes = Vec::new();
        latest.body().unwrap().read_to_end(&mut bytes).unwrap();
        assert!(
            bytes == body(latest.upto),
            "cycle {cycle}: wrong bytes for {}",
            latest.upto
        );
    }
}
