//! The key/value service through a real in-process cluster (three
//! replicas, loopback TCP, RocksDB): semantics, exactly-once retries across
//! nodes, and reads after a leader change.

use synod_core::CommandId;
use synod_kv::{KvCommand, KvResponse, KvStore};
use synod_runtime::{Bootstrap, Node, SynodConfig};
use synod_testkit::TestCluster;
use tempfile::TempDir;

fn config(root: &TempDir) -> SynodConfig {
    let text = TestCluster::three_replicas("kv")
        .paxos("submit_retry", "\"300ms\"")
        .render(root.path())
        .toml;
    SynodConfig::from_toml_str(&text, "kv test").unwrap().0
}

async fn cluster(config: &SynodConfig) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in config.nodes.keys() {
        nodes.push(
            Node::start(config, name, Bootstrap::New, KvStore::default)
                .await
                .unwrap(),
        );
    }
    nodes
}

async fn run(node: &Node, command: KvCommand) -> KvResponse {
    KvResponse::decode(&node.submit(command.encode()).await.expect("decided")).unwrap()
}

fn put(key: &str, value: &str) -> KvCommand {
    KvCommand::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> KvCommand {
    KvCommand::Get { key: key.into() }
}

#[actix_rt::test]
async fn key_value_and_lock_semantics_through_the_log() {
    let root = TempDir::new().unwrap();
    let config = config(&root);
    let nodes = cluster(&config).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    assert_eq!(run(a, put("greeting", "hello")).await, KvResponse::Done);
    assert_eq!(
        run(b, get("greeting")).await,
        KvResponse::Value(b"hello".to_vec()),
        "read through another node"
    );
    let cas = KvCommand::Cas {
        key: b"greeting".to_vec(),
        expected: Some(b"hello".to_vec()),
        new: b"hi".to_vec(),
    };
    assert_eq!(run(b, cas.clone()).await, KvResponse::Done);
    assert_eq!(
        run(a, cas).await,
        KvResponse::CasFailed {
            current: Some(b"hi".to_vec())
        }
    );
    assert_eq!(
        run(
            a,
            KvCommand::Delete {
                key: b"greeting".to_vec()
            }
        )
        .await,
        KvResponse::Done
    );
    assert_eq!(run(b, get("greeting")).await, KvResponse::NotFound);

    let lock = |owner: &str| KvCommand::Lock {
        name: b"job".to_vec(),
        owner: owner.into(),
    };
    let KvResponse::Granted { token } = run(a, lock("worker-a")).await else {
        panic!("lock granted")
    };
    assert_eq!(
        run(b, lock("worker-b")).await,
        KvResponse::Held {
            owner: "worker-a".into(),
            token
        }
    );
    let unlock = KvCommand::Unlock {
        name: b"job".to_vec(),
        owner: "worker-a".into(),
    };
    assert_eq!(run(a, unlock).await, KvResponse::Unlocked);
    let KvResponse::Granted { token: next } = run(b, lock("worker-b")).await else {
        panic!("lock granted")
    };
    assert!(next > token);
    for node in nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_retried_command_is_applied_once_and_answered_with_the_original_response() {
    let root = TempDir::new().unwrap();
    let config = config(&root);
    let nodes = cluster(&config).await;
    // Create-if-absent: applying it twice would answer CasFailed the second time.
    let create = KvCommand::Cas {
        key: b"once".to_vec(),
        expected: None,
        new: b"1".to_vec(),
    }
    .encode();
    let session = nodes[0].open_session(42).await.unwrap();
    let id = CommandId {
        client: session,
        seq: 1,
    };
    let first = nodes[0].submit_as(id, create.clone()).await.unwrap();
    // The client lost that response and retries through other nodes.
    let again = nodes[1].submit_as(id, create.clone()).await.unwrap();
    let third = nodes[2].submit_as(id, create).await.unwrap();
    assert_eq!(KvResponse::decode(&first).unwrap(), KvResponse::Done);
    assert_eq!(again, first);
    assert_eq!(third, first);
    assert_eq!(
        run(&nodes[0], get("once")).await,
        KvResponse::Value(b"1".to_vec())
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn reads_after_a_leader_change_see_every_acknowledged_write() {
    let root = TempDir::new().unwrap();
    let config = config(&root);
    let mut nodes = cluster(&config).await;
    for i in 0..50 {
        assert_eq!(
            run(&nodes[i % 3], put(&format!("k{i}"), &i.to_string())).await,
            KvResponse::Done
        );
    }
    let mut leader = None;
    for (i, node) in nodes.iter().enumerate() {
        if node
            .status()
            .await
            .proposers
            .iter()
            .any(|p| p.leading_ballot.is_some())
        {
            leader = Some(i);
        }
    }
    nodes.remove(leader.expect("a leader")).shutdown().await;
    for i in 0..50 {
        let value = run(&nodes[i % 2], get(&format!("k{i}"))).await;
        assert_eq!(value, KvResponse::Value(i.to_string().into_bytes()), "k{i}");
    }
    for node in nodes {
        node.shutdown().await;
    }
}
