//! Placement changes through `synod node` processes.
//!
//! A proposer moved to another node starts there on a new, empty store
//! (`--init`): it learns the highest round the acceptors promised before
//! its first ballot, so it never leads under a ballot it used on its old
//! node, and nothing acknowledged before the move is lost. The node it
//! left warns about the store left behind.

use std::time::{Duration, Instant};
use synod_integration::Deployment;
use synod_testkit::TestCluster;

const SETTLE: Duration = Duration::from_secs(60);

/// The ballot `(round, proposer)` of the proposer leading on `node`.
fn leading_ballot(deployment: &Deployment, node: &str) -> Option<(u64, u64)> {
    let status = deployment.admin_status(node)?;
    status["proposers"].as_array()?.iter().find_map(|p| {
        let ballot = p["ballot"].as_array()?;
        Some((ballot[0].as_u64()?, ballot[1].as_u64()?))
    })
}

/// Wait until some node's proposer leads; its node and ballot.
fn wait_for_leader(deployment: &Deployment) -> (String, (u64, u64)) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let leading = deployment
            .nodes()
            .iter()
            .find_map(|node| Some((node.clone(), leading_ballot(deployment, node)?)));
        if let Some(found) = leading {
            return found;
        }
        assert!(Instant::now() < deadline, "no leader within {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_proposer_moved_to_another_node_on_an_empty_store_leads_above_its_old_rounds() {
    let mut deployment = Deployment::new(TestCluster::three_replicas("it").admin_ports());
    deployment.start_all();
    let mut client = deployment.client();
    for i in 0..20 {
        let key = format!("before-{i}");
        client
            .put(key.as_bytes(), b"v1")
            .await
            .expect("acknowledged");
    }
    let (old_node, (old_round, proposer)) = wait_for_leader(&deployment);
    drop(client);
    deployment.stop_all();

    // The leader's proposer moves to the next node, and is the only
    // proposer left, so it must lead again, from a new store.
    let role = format!("proposer-{proposer}");
    let nodes = deployment.nodes().to_vec();
    let at = nodes.iter().position(|n| *n == old_node).expect("a node");
    let new_node = nodes[(at + 1) % nodes.len()].clone();
    deployment.edit_config(|text| {
        let mut lines = Vec::new();
        for line in text.lines() {
            let placed = line.trim_start().starts_with("proposer-");
            if !placed {
                lines.push(line.to_owned());
            } else if line.trim_start().starts_with(&format!("{role} ")) {
                lines.push(format!("{role} = \"{new_node}\""));
            }
        }
        lines.join("\n")
    });
    deployment.init_on_next_start(&new_node);
    deployment.start_all();

    let (leader, (round, leading)) = wait_for_leader(&deployment);
    assert_eq!((leader.as_str(), leading), (new_node.as_str(), proposer));
    assert!(
        round > old_round,
        "the moved proposer leads in round {round}, not above its old round {old_round}"
    );
    let mut client = deployment.client();
    for i in 0..20 {
        let key = format!("before-{i}");
        let value = client.get(key.as_bytes()).await.expect("a read");
        assert_eq!(value, b"v1", "{key} after the move");
        let key = format!("after-{i}");
        client
            .put(key.as_bytes(), b"v2")
            .await
            .expect("acknowledged");
    }
    for i in 0..20 {
        let key = format!("after-{i}");
        let value = client.get(key.as_bytes()).await.expect("a read");
        assert_eq!(value, b"v2", "{key}");
    }
    let log = deployment.log(&old_node);
    assert!(
        log.contains(&format!(
            "a store for {role} is in this node's data directory"
        )),
        "{old_node} warns about the store {role} left behind:\n{log}"
    );
}
