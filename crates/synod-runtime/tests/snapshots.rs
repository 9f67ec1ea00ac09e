//! Learner snapshots in running nodes (RocksDB in temporary directories):
//! learners snapshot and compact their logs, a restarted node restores its
//! snapshot and replays only the tail, its state machine continues where
//! it was, a learner whose disk was wiped rejoins from a peer's snapshot
//! once the acceptors have trimmed, and a damaged snapshot stops the start
//! instead of being skipped.

mod common;

use common::*;
use std::time::Duration;
use synod_runtime::{Bootstrap, Node, NodeError, SynodConfig};
use synod_testkit::TestCluster;
use tempfile::TempDir;

const SETTLE: Duration = Duration::from_secs(60);

fn snapshotting(root: &TempDir) -> SynodConfig {
    config(
        &TestCluster::three_replicas("test").sections("[storage]\nsnapshot_every = 200"),
        root,
    )
}

async fn all_compacted(nodes: &[&Node]) -> bool {
    for node in nodes {
        for learner in node.status().await.learners {
            if learner.compacted_below == 0 {
                return false;
            }
        }
    }
    true
}

fn position(response: &[u8]) -> u64 {
    u64::from_be_bytes(response.try_into().expect("a counter answer"))
}

#[actix_rt::test]
async fn learners_compact_and_a_restarted_node_resumes_from_its_snapshot() {
    let root = TempDir::new().unwrap();
    let config = snapshotting(&root);
    let mut nodes = start_all(&config).await;
    submit_many(&nodes[0], 1_000, "before").await;
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("every learner compacted its log", SETTLE, || {
        all_compacted(&all)
    })
    .await;
    eventually("the learners agree", SETTLE, || learners_agree(&all, 1)).await;
    for node in &nodes {
        let learner = &node.status().await.learners[0];
        assert!(
            learner.decided < 1_000,
            "{}: {} decided slots held after compaction",
            node.name(),
            learner.decided
        );
    }

    let name = nodes[2].name().to_owned();
    let snapshots = config.nodes[&name].data_dir.join("learner-3.snapshots");
    assert!(
        std::fs::read_dir(&snapshots).unwrap().next().is_some(),
        "a snapshot file"
    );
    nodes.pop().unwrap().shutdown().await;
    let restarted = Node::start(&config, &name, Bootstrap::Existing, Counter::default)
        .await
        .expect("restarts from its snapshot");
    let learner = &restarted.status().await.learners[0];
    assert!(learner.compacted_below > 0, "restored, not replayed from 0");
    assert_eq!(
        learner.commands_applied, 1_000,
        "the snapshot's count plus the tail"
    );
    nodes.push(restarted);

    let after = submit_many(&nodes[2], 10, "after").await;
    assert!(
        after.iter().all(|r| (1_001..=1_010).contains(&position(r))),
        "the restored state machine counts on: {:?}",
        after.iter().map(|r| position(r)).collect::<Vec<_>>()
    );
    agree_then_stop(nodes, "the learners agree after the restart").await;
}

#[actix_rt::test]
async fn learners_also_snapshot_by_bytes_of_applied_payloads() {
    let root = TempDir::new().unwrap();
    let cluster = TestCluster::three_replicas("test")
        .sections("[storage]\nsnapshot_every = 0\nsnapshot_every_bytes = 2048");
    let config = config(&cluster, &root);
    let nodes = start_all(&config).await;
    submit_many(&nodes[0], 300, "by-bytes").await; // 300 payloads of 10-12 bytes
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("every learner compacted by bytes", SETTLE, || {
        all_compacted(&all)
    })
    .await;
    agree_then_stop(nodes, "the learners agree").await;
}

async fn all_trimmed(nodes: &[&Node]) -> bool {
    for node in nodes {
        for acceptor in node.status().await.acceptors {
            if acceptor.trimmed_below == 0 {
                return false;
            }
        }
    }
    true
}

#[actix_rt::test]
async fn a_wiped_learner_rejoins_from_a_peer_snapshot_after_the_acceptors_trimmed() {
    let root = TempDir::new().unwrap();
    let config = snapshotting(&root);
    let nodes = start_all(&config).await;
    submit_many(&nodes[0], 1_000, "before").await;
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("every acceptor trimmed its votes", SETTLE, || {
        all_trimmed(&all)
    })
    .await;
    eventually("the learners agree", SETTLE, || learners_agree(&all, 1)).await;
    // A full restart also empties every proposer's cache of decided
    // values: below the trim point only the other learners' snapshots
    // hold the history.
    shutdown_all(nodes).await;
    let dir = &config.nodes["n3"].data_dir;
    std::fs::remove_dir_all(dir.join("learner-3")).unwrap();
    std::fs::remove_dir_all(dir.join("learner-3.snapshots")).unwrap();

    let nodes = start_all(&config).await;
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("the wiped learner caught up", SETTLE, || {
        learners_agree(&all, 1)
    })
    .await;
    let learner = &nodes[2].status().await.learners[0];
    assert!(learner.snapshots_fetched >= 1, "{learner:?}");
    assert_eq!(learner.commands_applied, 1_000, "{learner:?}");
    let after = submit_many(&nodes[2], 10, "after").await;
    assert!(
        after.iter().all(|r| (1_001..=1_010).contains(&position(r))),
        "the fetched state machine counts on: {:?}",
        after.iter().map(|r| position(r)).collect::<Vec<_>>()
    );
    agree_then_stop(nodes, "the learners agree after the rejoin").await;
}

#[actix_rt::test]
async fn a_damaged_snapshot_stops_the_start() {
    let root = TempDir::new().unwrap();
    let config = snapshotting(&root);
    let nodes = start_all(&config).await;
    submit_many(&nodes[0], 500, "c").await;
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("every learner compacted its log", SETTLE, || {
        all_compacted(&all)
    })
    .await;
    shutdown_all(nodes).await;
    let name = "n1";
    let dir = config.nodes[name].data_dir.join("learner-1.snapshots");
    // The installed snapshot (a newer one may have been half written when
    // the node stopped: its temporary file is not what a start reads).
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "snap"))
        .max()
        .expect("an installed snapshot");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let refused = Node::start(&config, name, Bootstrap::Existing, Counter::default).await;
    assert!(
        matches!(&refused, Err(NodeError::Storage(e)) if e.is_corruption()),
        "{:?}",
        refused.err()
    );
}
