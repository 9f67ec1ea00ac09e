//! Helpers for in-process clusters: free loopback ports, temporary data
//! directories, a deterministic state machine, and polling with deadlines.

#![allow(dead_code)]

use std::time::{Duration, Instant};
use synod_core::Command;
use synod_runtime::{Node, StateMachine, SynodConfig};
use tempfile::TempDir;

/// Answers each command with its position in the applied sequence.
#[derive(Default)]
pub struct Counter(u64);

impl StateMachine for Counter {
    fn apply(&mut self, _: &Command) -> Vec<u8> {
        self.0 += 1;
        self.0.to_be_bytes().to_vec()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config for `nodes` (name, roles) on free loopback ports under `root`,
/// with timings short enough for tests.
pub fn cluster(root: &TempDir, nodes: &[(&str, &[&str])]) -> SynodConfig {
    let mut text = String::from("[cluster]\nid = \"test\"\nsecret = \"test-secret\"\n");
    for (name, _) in nodes {
        let dir = root.path().join(name);
        text += &format!(
            "[nodes.{name}]\nlisten = \"127.0.0.1:{}\"\ndata_dir = {:?}\n",
            free_port(),
            dir
        );
    }
    text += "[roles]\n";
    for (name, roles) in nodes {
        for role in *roles {
            text += &format!("{role} = \"{name}\"\n");
        }
    }
    text += "[paxos]\nheartbeat_interval = \"20ms\"\nelection_timeout_min = \"100ms\"\nelection_timeout_max = \"200ms\"\n";
    text += "retransmit_interval = \"100ms\"\nsubmit_retry = \"500ms\"\nsubmit_timeout = \"20s\"\n";
    text += "[transport]\nreconnect_min = \"10ms\"\nreconnect_max = \"100ms\"\n";
    SynodConfig::from_toml(&text, "test")
        .expect("valid test config")
        .0
}

/// Three nodes, every role on each.
pub fn three_replicas(root: &TempDir) -> SynodConfig {
    cluster(
        root,
        &[
            ("n1", &["proposer-1", "acceptor-1", "learner-1"]),
            ("n2", &["proposer-2", "acceptor-2", "learner-2"]),
            ("n3", &["proposer-3", "acceptor-3", "learner-3"]),
        ],
    )
}

pub async fn start_all(config: &SynodConfig) -> Vec<Node<Counter>> {
    let mut nodes = Vec::new();
    for name in config.nodes.keys() {
        nodes.push(
            Node::start(config, name, Counter::default)
                .await
                .expect("node starts"),
        );
    }
    nodes
}

/// Poll `condition` every few milliseconds until it holds or `limit` passes.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every learner on `nodes` has applied the same log, at least `min_slots` long.
pub async fn learners_agree(nodes: &[&Node<Counter>], min_slots: u64) -> bool {
    let mut seen = Vec::new();
    for node in nodes {
        for learner in node.status().await.learners {
            seen.push((learner.applied, learner.log_digest));
        }
    }
    !seen.is_empty() && seen.iter().all(|s| *s == seen[0]) && seen[0].0 >= min_slots
}

/// Submit `count` commands through `node`, all in flight at once; returns
/// the responses.
pub async fn submit_many(node: &Node<Counter>, count: usize, tag: &str) -> Vec<Vec<u8>> {
    let futures = (0..count).map(|i| node.submit(format!("{tag}-{i}").into_bytes()));
    futures_util::future::join_all(futures)
        .await
        .into_iter()
        .map(|r| r.expect("command decided"))
        .collect()
}
