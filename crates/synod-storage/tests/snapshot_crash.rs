//! Crash safety of snapshot installs: a child process installs snapshot
//! after snapshot (alternately written in place, and received from a peer
//! in chunks: staged, verified, promoted) and reports each one installed;
//! the parent SIGKILLs it at
//! a random moment (often mid-write), reopens the directory, and checks
//! that the latest snapshot verifies, is at least the last one reported,
//! and holds exactly the bytes written for its slot: the old or the new
//! snapshot, never a torn one.
//!
//! `SYNOD_CRASH_CYCLES` sets the number of kill cycles (default 20).

use std::io::Read;
use std::time::Duration;
use synod_core::SplitMix64;
use synod_storage::SnapshotDir;
use synod_testkit::TestChild;

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
    let peer = SnapshotDir::open(format!("{dir}.peer")).expect("the peer's directory");
    let dir = SnapshotDir::open(&dir).expect("child opens the directory");
    let first = dir.latest().expect("verifies").map_or(1, |s| s.upto + 1);
    for upto in first.. {
        if upto % 2 == 0 {
            let sent = write(&peer, upto);
            receive(&dir, &sent);
        } else {
            write(&dir, upto);
        }
        println!("installed {upto}");
    }
}

/// Produced and written piece by piece, as a state machine streams its
/// state, so most kills land in the middle of a write.
fn write(dir: &SnapshotDir, upto: u64) -> synod_storage::Snapshot {
    let len = body_len(upto);
    dir.install(upto, |out| {
        (0..len)
            .step_by(CHUNK)
            .try_for_each(|start| out.write_all(&body_bytes(upto, start..len.min(start + CHUNK))))
    })
    .expect("install")
}

/// As a learner receives a peer's snapshot: chunk by chunk into the
/// staging file, then verified and promoted.
fn receive(dir: &SnapshotDir, sent: &synod_storage::Snapshot) {
    let mut incoming = dir.receive(sent.upto).expect("staging");
    while incoming.written() < sent.file_len() {
        let chunk = sent.read_at(incoming.written(), CHUNK).expect("read");
        incoming.append(&chunk).expect("append");
    }
    let staged = incoming.finish().expect("verifies");
    dir.promote(staged).expect("promote");
}

/// The slots the child reports installed.
fn installed(line: &str) -> Option<u64> {
    // libtest may print its own text before ours on the same line.
    let (_, upto) = line.rsplit_once("installed ")?;
    upto.trim().parse().ok()
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
        let mut child = TestChild::spawn("snapshot_child_installer", (CHILD_DIR, tmp.path()));
        let first = loop {
            let line = child
                .lines
                .recv_timeout(START_LIMIT)
                .unwrap_or_else(|e| panic!("cycle {cycle}: the child installed nothing: {e}"));
            if let Some(upto) = installed(&line) {
                break upto;
            }
        };
        reported = reported.max(first);
        // The kill moment is what is random here; nothing waits on a condition.
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 30));
        child.kill();
        reported = child
            .lines
            .iter()
            .filter_map(|l| installed(&l))
            .fold(reported, u64::max);

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
