//! In-process clusters over real loopback TCP and RocksDB in temporary
//! directories: decide many commands, keep every learner's log identical,
//! and survive losing the leader, restarting an acceptor mid-load, or an
//! acceptor's disk filling up.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use synod_core::RoleId;
use synod_runtime::{Bootstrap, Node};
use synod_testkit::{SmallDisk, TestCluster};
use tempfile::TempDir;

const SETTLE: Duration = Duration::from_secs(60);

#[actix_rt::test]
async fn three_colocated_replicas_decide_10000_commands_and_agree() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let nodes = start_all(&config).await;
    let responses = submit_many(&nodes[0], 10_000, "c").await;
    let positions: BTreeSet<Vec<u8>> = responses.into_iter().collect();
    assert_eq!(
        positions.len(),
        10_000,
        "every command applied once, each at its own position"
    );
    agree_then_stop(nodes, "all learners hold the same log").await;
}

#[actix_rt::test]
async fn split_role_placement_decides_and_agrees() {
    let root = TempDir::new().unwrap();
    let config = split_roles(&root);
    let nodes = start_all(&config).await;
    let learner_nodes: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.name().starts_with("learner"))
        .collect();
    let (a, b) = tokio::join!(
        submit_many(learner_nodes[0], 5_000, "a"),
        submit_many(learner_nodes[1], 5_000, "b")
    );
    assert_eq!(a.len() + b.len(), 10_000);
    eventually("both learners hold the same log", SETTLE, || {
        learners_agree(&learner_nodes, 1)
    })
    .await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn learner_only_nodes_decide_a_register_by_forwarding_and_agree_on_its_value() {
    let root = TempDir::new().unwrap();
    let config = split_roles(&root);
    let nodes = start_all(&config).await;
    let learners: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.name().starts_with("learner"))
        .collect();
    assert!(learners.iter().all(|n| {
        !config
            .roles_on(n.name())
            .iter()
            .any(|r| r.role == synod_core::Role::Proposer)
    }));
    let (a, b) = tokio::join!(
        learners[0].decide("owner", b"a".to_vec()),
        learners[1].decide("owner", b"b".to_vec())
    );
    let (a, b) = (a.expect("decided via a"), b.expect("decided via b"));
    assert_eq!(a, b, "one value for both callers");
    assert!(a == b"a" || a == b"b");
    for learner in &learners {
        assert_eq!(learner.decided("owner").await.unwrap(), Some(a.clone()));
        assert_eq!(learner.decided("unproposed").await.unwrap(), None);
    }
    assert_eq!(learners[0].decide("owner", b"c".to_vec()).await.unwrap(), a);
    shutdown_all(nodes).await;
}

#[actix_rt::test]
async fn a_new_register_past_max_instances_is_refused_and_decided_ones_still_answer() {
    let root = TempDir::new().unwrap();
    let cluster = TestCluster::three_replicas("test").paxos("max_instances", "2");
    let config = common::config(&cluster, &root);
    let nodes = start_all(&config).await;
    assert_eq!(nodes[0].decide("r1", b"1".to_vec()).await.unwrap(), b"1");
    // Through one node, whose learner then holds both: the bound is
    // checked against the decided instances the asked node knows.
    assert_eq!(nodes[0].decide("r2", b"2".to_vec()).await.unwrap(), b"2");
    let refused = nodes[0].decide("r3", b"3".to_vec()).await;
    assert_eq!(
        refused,
        Err(synod_api::SubmitError::TooManyInstances { limit: 2 })
    );
    assert_eq!(nodes[0].decide("r1", b"x".to_vec()).await.unwrap(), b"1");
    shutdown_all(nodes).await;
}

#[actix_rt::test]
async fn without_proposer_1_a_learner_only_node_forwards_to_the_leader_its_learner_hears_from() {
    let root = TempDir::new().unwrap();
    // A long resend interval: only the command that finds proposer-1 gone
    // should ever need one.
    let cluster = TestCluster::split_roles("test").paxos("submit_retry", "\"3s\"");
    let config = common::config(&cluster, &root);
    let mut nodes = start_all(&config).await;
    let hosts_proposer_1 = |n: &Node| config.roles_on(n.name()).contains(&RoleId::proposer(1));
    let gone = nodes
        .iter()
        .position(hosts_proposer_1)
        .expect("proposer-1 placed");
    nodes.remove(gone).shutdown().await;
    let learner = nodes
        .iter()
        .find(|n| n.name().starts_with("learner"))
        .expect("a learner-only node");

    submit_many(learner, 1, "first").await;
    let resent = learner.status().await.resends;
    assert!(
        resent >= 1,
        "the first command was sent to proposer-1, which is gone"
    );
    submit_many(learner, 200, "then").await;
    assert_eq!(
        learner.status().await.resends,
        resent,
        "later commands went straight to the proposer that decided the first"
    );
    shutdown_all(nodes).await;
}

/// The node whose proposer leads, by index into `nodes`.
async fn leader_index(nodes: &[Node]) -> Option<usize> {
    for (i, node) in nodes.iter().enumerate() {
        if node
            .status()
            .await
            .proposers
            .iter()
            .any(|p| p.leading_ballot.is_some())
        {
            return Some(i);
        }
    }
    None
}

#[actix_rt::test]
async fn losing_the_leader_hands_over_to_another_proposer() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let mut nodes = start_all(&config).await;
    submit_many(&nodes[0], 100, "before").await;
    let leader = leader_index(&nodes)
        .await
        .expect("a leader decided those commands");
    nodes.remove(leader).shutdown().await;

    let survivor = &nodes[0];
    let after = submit_many(survivor, 500, "after").await;
    assert_eq!(
        after.len(),
        500,
        "commands keep being decided without the old leader"
    );
    let new_leader = leader_index(&nodes).await;
    assert!(new_leader.is_some(), "another proposer took over");
    agree_then_stop(nodes, "the survivors agree").await;
}

#[actix_rt::test]
async fn restarting_an_acceptor_node_mid_load_loses_nothing_and_it_rejoins() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let mut nodes = start_all(&config).await;
    let first = submit_many(&nodes[0], 1_000, "first").await;

    // Restart n3 (acceptor-3 with its proposer and learner) while load runs.
    let restarted_name = nodes[2].name().to_owned();
    let n3 = nodes.pop().unwrap();
    let load = submit_many(&nodes[0], 2_000, "during");
    let restart = async {
        n3.shutdown().await;
        Node::start(
            &config,
            &restarted_name,
            Bootstrap::Existing,
            Counter::default,
        )
        .await
        .expect("restart from the same data dir")
    };
    let (during, n3) = tokio::join!(load, restart);
    nodes.push(n3);
    let more = submit_many(&nodes[2], 500, "after").await;

    assert_eq!(first.len() + during.len() + more.len(), 3_500);
    let all: Vec<&Node> = nodes.iter().collect();
    eventually(
        "the restarted node caught up and all learners agree",
        SETTLE,
        || learners_agree(&all, 1),
    )
    .await;
    // Every acknowledged command is in every learner's state machine,
    // including the restarted one, which replayed its log and caught up.
    for node in &nodes {
        let learner = &node.status().await.learners[0];
        assert_eq!(
            learner.commands_applied,
            3_500,
            "{}: acknowledged commands lost",
            node.name()
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn an_acceptor_whose_disk_fills_stops_and_its_node_serves_on() {
    let root = TempDir::new().unwrap();
    // Large values take a while to encode in a debug build; election
    // timeouts of the shipped configs keep leadership steady meanwhile.
    let cluster = TestCluster::three_replicas("test")
        .paxos("election_timeout_min", "\"300ms\"")
        .paxos("election_timeout_max", "\"600ms\"");
    let config = config(&cluster, &root);
    let acceptor_dir = root.path().join("n1").join("acceptor-1");
    std::fs::create_dir_all(&acceptor_dir).unwrap();
    let Some(_disk) = SmallDisk::mount_or_skip(&acceptor_dir, "2m") else {
        return;
    };
    let nodes = start_all(&config).await;
    let n1 = &nodes[0];
    let value = vec![0x5a; 64 * 1024];
    // 400 values of 64 KiB are 25 MiB, far past the acceptor's 2 MiB.
    let mut submitted = 0;
    while n1.status().await.stopped.is_empty() {
        assert!(submitted < 400, "acceptor-1 never noticed its full disk");
        n1.submit(value.clone())
            .await
            .expect("two acceptors of three keep deciding");
        submitted += 1;
    }
    assert_eq!(n1.status().await.stopped, vec![RoleId::acceptor(1)]);
    // The node's proposer and learner go on serving through the others.
    for i in 0..20 {
        n1.submit(format!("after-{i}").into_bytes())
            .await
            .expect("the node serves on");
    }
    for node in &nodes[1..] {
        assert!(node.status().await.stopped.is_empty());
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_command_larger_than_a_frame_can_carry_is_refused_and_the_node_serves_on() {
    let root = TempDir::new().unwrap();
    let cluster = TestCluster::three_replicas("test").paxos("max_command_bytes", "65536");
    let config = config(&cluster, &root);
    let nodes = start_all(&config).await;
    let refused = nodes[0].submit(vec![0; 65_537]).await;
    assert_eq!(
        refused,
        Err(synod_runtime::SubmitError::TooLarge {
            len: 65_537,
            limit: 65_536
        })
    );
    nodes[0]
        .submit(vec![0; 65_536])
        .await
        .expect("a command at the limit is decided");
    for node in nodes {
        node.shutdown().await;
    }
}
