//! Whole nodes on the memory store (`Node::start_with` and a
//! `MemoryBackend`): three replicas decide and agree, a node restarted on
//! the same backend replays what it stored, and an acceptor whose store
//! starts failing stops voting while the others serve on, and nodes run
//! the roles the log moved. Nothing here touches a disk but the nodes'
//! placement records.

mod common;

use common::*;
use std::time::Duration;
use synod_core::{Epoch, Membership, ProposerWrite, Quorums, Role, RoleId};
use synod_runtime::{Bootstrap, MemoryBackend, MovedRoles, Node, SynodConfig};
use synod_storage::ProposerStore;
use tempfile::TempDir;

const SETTLE: Duration = Duration::from_secs(60);

async fn start_on(backend: &MemoryBackend, config: &SynodConfig) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in config.nodes.keys() {
        let node = Node::start_with(config, name, backend, Bootstrap::New, Counter::default)
            .await
            .expect("node starts on the memory store");
        nodes.push(node);
    }
    nodes
}

#[actix_rt::test]
async fn three_replicas_on_the_memory_store_decide_agree_and_replay_after_a_restart() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let backend = MemoryBackend::new();
    let mut nodes = start_on(&backend, &config).await;
    let responses = submit_many(&nodes[0], 2_000, "m").await;
    assert_eq!(responses.len(), 2_000);
    let all: Vec<&Node> = nodes.iter().collect();
    eventually("all learners hold the same log", SETTLE, || {
        learners_agree(&all, 1)
    })
    .await;
    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_none(),
        "nothing was written to the data directories"
    );

    let name = nodes[2].name().to_owned();
    nodes.pop().unwrap().shutdown().await;
    let restarted = Node::start_with(
        &config,
        &name,
        &backend,
        Bootstrap::Existing,
        Counter::default,
    )
    .await
    .expect("restart on the same backend");
    let replayed = restarted.status().await.learners[0].commands_applied;
    assert!(replayed > 0, "the learner replayed its stored log");
    nodes.push(restarted);
    submit_many(&nodes[2], 100, "after").await;
    agree_then_stop(nodes, "the restarted node agrees").await;
}

#[actix_rt::test]
async fn an_acceptor_whose_store_fails_stops_and_the_cluster_serves_on() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let backend = MemoryBackend::new();
    let nodes = start_on(&backend, &config).await;
    submit_many(&nodes[0], 100, "before").await;

    let (name, node) = config.nodes.iter().nth(2).unwrap();
    let acceptor = config
        .roles_on(name)
        .into_iter()
        .find(|r| r.role == Role::Acceptor)
        .unwrap();
    backend.store(&node.data_dir, acceptor).fail_writes(true);
    submit_many(&nodes[0], 200, "after").await;
    eventually("the failing acceptor has stopped", SETTLE, || async {
        nodes[2].status().await.stopped == vec![acceptor]
    })
    .await;
    submit_many(&nodes[1], 100, "still").await;
    shutdown_all(nodes).await;
}

#[actix_rt::test]
async fn an_idle_session_expires_and_its_late_commands_are_refused_unapplied() {
    let root = TempDir::new().unwrap();
    let cluster = synod_testkit::TestCluster::three_replicas("test").paxos("session_horizon", "20");
    let config = config(&cluster, &root);
    let backend = MemoryBackend::new();
    let nodes = start_on(&backend, &config).await;
    let session = nodes[0].open_session(7).await.unwrap();
    let id = |seq| synod_core::CommandId {
        client: session,
        seq,
    };
    let first = nodes[0].submit_as(id(1), b"a".to_vec()).await.unwrap();
    // Other traffic, one slot per command, moves the log past the horizon.
    // Through node 0, so its learner has applied all of it once the last
    // submit returns (through another node, node 0's learner could still
    // be one command behind when `applied` is read below).
    for n in 0..30 {
        nodes[0]
            .submit(format!("other-{n}").into_bytes())
            .await
            .unwrap();
    }
    let applied = nodes[0].status().await.learners[0].commands_applied;
    let late = nodes[0].submit_as(id(1), b"a".to_vec()).await;
    assert_eq!(late, Err(synod_runtime::SubmitError::SessionExpired));
    let next = nodes[0].submit_as(id(2), b"b".to_vec()).await;
    assert_eq!(next, Err(synod_runtime::SubmitError::SessionExpired));
    assert_eq!(
        nodes[0].status().await.learners[0].commands_applied,
        applied,
        "neither was applied"
    );
    let renewed = nodes[0].open_session(7).await.unwrap();
    assert_ne!(renewed, session, "a session id is never reused");
    assert!(!first.is_empty());
    agree_then_stop(nodes, "the learners agree").await;
}

/// A client connection: write `frame` (length-prefixed), then read until
/// the node closes it; returns what it answered first (if anything).
async fn one_frame_then_wait_for_close(
    address: std::net::SocketAddr,
    frame: &[u8],
) -> (bool, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(&(frame.len() as u32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(frame).await.unwrap();
    let began = std::time::Instant::now();
    let mut answered = false;
    let mut buffer = [0u8; 256];
    loop {
        match tokio::time::timeout(SETTLE, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answered, began.elapsed()),
            Ok(Ok(_)) => answered = true,
            Err(_) => panic!("the node never closed the connection"),
        }
    }
}

#[actix_rt::test]
async fn the_client_port_bounds_what_strangers_and_idle_clients_hold() {
    let root = TempDir::new().unwrap();
    let cluster = synod_testkit::TestCluster::three_replicas("test")
        .client_ports()
        .sections("[clients]\nidle_timeout = \"1s\"\n");
    let config = common::config(&cluster, &root);
    let backend = MemoryBackend::new();
    let nodes = start_on(&backend, &config).await;
    let address = nodes[0].client_address().expect("a client port");

    // Most of a full-size frame before the hello: refused at its length,
    // nothing buffered.
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(&(4_000_000u32).to_be_bytes())
        .await
        .unwrap();
    let mut buffer = [0u8; 16];
    let closed = tokio::time::timeout(SETTLE, stream.read(&mut buffer)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");

    // An authenticated client that sends nothing is closed once idle.
    let hello = postcard::to_stdvec(&synod_api::wire::Request::Hello {
        version: synod_api::wire::CLIENT_PROTOCOL_VERSION,
        cluster: "test".into(),
        token: None,
    })
    .unwrap();
    let (welcomed, after) = one_frame_then_wait_for_close(address, &hello).await;
    assert!(welcomed, "the hello was answered");
    assert!(
        after >= Duration::from_millis(500),
        "closed after {after:?}, before idle_timeout"
    );
    let stats = nodes[0].client_port_stats();
    assert_eq!(
        stats.closed_idle.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The port still serves.
    submit_many(&nodes[0], 10, "still").await;
}

#[actix_rt::test]
async fn a_command_numbered_zero_with_a_payload_is_refused_at_once() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let backend = MemoryBackend::new();
    let nodes = start_on(&backend, &config).await;
    let id = synod_core::CommandId { client: 7, seq: 0 };
    let refused = nodes[0].submit_as(id, b"payload".to_vec()).await;
    assert!(
        matches!(refused, Err(synod_runtime::SubmitError::InvalidCommand(_))),
        "{refused:?}"
    );
}

/// The node placed first in `config` (it hosts proposer-1), and the last.
fn first_and_last(config: &SynodConfig) -> (String, String) {
    let first = config.placement()[&RoleId::proposer(1)].clone();
    let last = config.nodes.keys().last().unwrap().clone();
    assert_ne!(first, last);
    (first, last)
}

#[actix_rt::test]
async fn nodes_run_the_roles_their_placement_record_says_the_log_moved() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let (first, last) = first_and_last(&config);
    // As `synod member move proposer-1 LAST` leaves every node that
    // followed epoch 3.
    let moves = MovedRoles {
        epoch: 3,
        moved: vec![(RoleId::proposer(1), last.clone())],
    };
    for (name, node) in &config.nodes {
        moves.save(&node.data_dir, name).unwrap();
    }
    let backend = MemoryBackend::new();
    let nodes = start_on(&backend, &config).await;
    let roles = |name: &str| {
        let node = nodes.iter().find(|n| n.name() == name).unwrap();
        async move { node.status().await.roles }
    };
    assert!(!roles(&first).await.contains(&RoleId::proposer(1)));
    assert!(roles(&last).await.contains(&RoleId::proposer(1)));
    let answered = submit_many(&nodes[0], 100, "moved").await;
    assert_eq!(answered.len(), 100);
    agree_then_stop(nodes, "the nodes agree with proposer-1 moved").await;
}

#[actix_rt::test]
async fn a_proposer_whose_own_store_moved_it_away_does_not_start() {
    let root = TempDir::new().unwrap();
    let config = three_replicas(&root);
    let (first, last) = first_and_last(&config);
    // Proposer-1 entered epoch 4, which moves it, and its node stopped
    // before it could keep the move in its placement record.
    let initial = Membership::initial(
        vec![1, 2, 3],
        Quorums::majority(3),
        vec![1, 2, 3],
        vec![1, 2, 3],
    );
    let moved = initial.with_moved(vec![(RoleId::proposer(1), last.clone())]);
    let epoch = Epoch::initial(Membership { epoch: 4, ..moved });
    let data_dir = &config.nodes[&first].data_dir;
    let backend = MemoryBackend::new();
    let mut store = backend.store(data_dir, RoleId::proposer(1));
    store
        .write_proposer(&[ProposerWrite::Epoch(epoch)])
        .unwrap();

    let node = Node::start_with(&config, &first, &backend, Bootstrap::New, Counter::default)
        .await
        .expect("starts");
    let roles = node.status().await.roles;
    assert!(!roles.contains(&RoleId::proposer(1)), "{roles:?}");
    assert!(roles.contains(&RoleId::learner(1)), "{roles:?}");
    let kept = MovedRoles::load(data_dir, &first).unwrap();
    assert_eq!(
        (kept.epoch, kept.moved.len()),
        (4, 1),
        "the node follows epoch 4 now"
    );
    node.shutdown().await;
}
