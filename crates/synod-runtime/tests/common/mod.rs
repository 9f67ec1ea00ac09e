//! Helpers for in-process clusters (configs from synod-testkit): temporary data
//! directories, a deterministic state machine, and polling with deadlines.

#![allow(dead_code)]

use std::time::{Duration, Instant};
use synod_core::Command;
use synod_runtime::{Bootstrap, Node, SnapshotError, StateMachine, SynodConfig};
use synod_testkit::TestCluster;
use tempfile::TempDir;

/// Answers each command with its position in the applied sequence.
#[derive(Default)]
pub struct Counter(u64);

impl StateMachine for Counter {
    fn apply(&mut self, _: &Command) -> Vec<u8> {
        self.0 += 1;
        self.0.to_be_bytes().to_vec()
    }

    fn snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.0.to_be_bytes())
    }

    fn restore(&mut self, input: &mut dyn std::io::Read) -> Result<(), SnapshotError> {
        let mut bytes = [0u8; 8];
        input.read_exact(&mut bytes)?;
        self.0 = u64::from_be_bytes(bytes);
        Ok(())
    }
}

/// `cluster` rendered under `root` and parsed.
pub fn config(cluster: &TestCluster, root: &TempDir) -> SynodConfig {
    let text = cluster.render(root.path()).toml;
    SynodConfig::from_toml_str(&text, "test")
        .expect("valid test config")
        .0
}

/// Three nodes, every role on each.
pub fn three_replicas(root: &TempDir) -> SynodConfig {
    config(&TestCluster::three_replicas("test"), root)
}

/// Seven nodes, one role instance each (configs/split-roles.toml's layout).
pub fn split_roles(root: &TempDir) -> SynodConfig {
    config(&TestCluster::split_roles("test"), root)
}

pub async fn start_all(config: &SynodConfig) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in config.nodes.keys() {
        nodes.push(
            Node::start(config, name, Bootstrap::New, Counter::default)
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
pub async fn learners_agree(nodes: &[&Node], min_slots: u64) -> bool {
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
pub async fn submit_many(node: &Node, count: usize, tag: &str) -> Vec<Vec<u8>> {
    let futures = (0..count).map(|i| node.submit(format!("{tag}-{i}").into_bytes()));
    futures_util::future::join_all(futures)
        .await
        .into_iter()
        .map(|r| r.expect("command decided"))
        .collect()
}

/// Wait until every learner on `nodes` holds the same log (`what` names the
/// wait in a failure), then stop every node.
pub async fn agree_then_stop(nodes: Vec<Node>, what: &str) {
    let all: Vec<&Node> = nodes.iter().collect();
    eventually(what, Duration::from_secs(60), || learners_agree(&all, 1)).await;
    shutdown_all(nodes).await;
}

/// Stop every node.
pub async fn shutdown_all(nodes: Vec<Node>) {
    for node in nodes {
        node.shutdown().await;
    }
}
