//! Flexible quorums through real processes. Five acceptors with
//! `[quorums] phase2 = 2` (phase 1 then needs 4) keep committing with three
//! of them killed; with majorities, the control, the same loss stops
//! commits.

use std::time::{Duration, Instant};
use synod_client::{Client, ClientConfig};
use synod_integration::Deployment;
use synod_testkit::TestCluster;

/// Five nodes with every role; the leader's node and one other survive
/// while the other three are SIGKILLed. Returns whether a put through the
/// leader's node was answered within a few seconds.
async fn commits_with_three_of_five_down(quorums: &str) -> bool {
    let cluster = TestCluster::five_replicas("it")
        .admin_ports()
        .sections(quorums);
    let mut deployment = Deployment::new(cluster);
    deployment.start_all();
    deployment
        .client()
        .put(b"before", b"1")
        .await
        .expect("all five acceptors are up");
    let leader = wait_for_leader(&deployment);
    let doomed: Vec<String> = deployment
        .nodes()
        .iter()
        .filter(|n| **n != leader)
        .take(3)
        .cloned()
        .collect();
    for node in &doomed {
        deployment.sigkill(node);
    }
    let index = deployment
        .nodes()
        .iter()
        .position(|n| *n == leader)
        .unwrap();
    let mut config = ClientConfig::new(vec![deployment.endpoints()[index]], "it");
    config.timeout = Duration::from_secs(5);
    let mut client = Client::new(config);
    let answered = client.put(b"after", b"2").await.is_ok();
    if answered {
        assert_eq!(client.get(b"before").await.unwrap(), b"1");
        assert_eq!(client.get(b"after").await.unwrap(), b"2");
    }
    answered
}

fn wait_for_leader(deployment: &Deployment) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = deployment.leader() {
            return leader;
        }
        assert!(Instant::now() < deadline, "no leader in 30 s");
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn two_of_five_acceptors_commit_with_phase_two_quorums_of_two() {
    assert!(
        commits_with_three_of_five_down("[quorums]\nphase2 = 2\n").await,
        "phase-2 quorums of 2: the leader and one acceptor choose"
    );
}

#[tokio::test]
async fn control_majorities_stop_committing_with_three_of_five_down() {
    assert!(
        !commits_with_three_of_five_down("").await,
        "with majorities, 2 of 5 acceptors cannot choose"
    );
}
