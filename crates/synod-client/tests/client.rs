//! The client library against an in-process three-node cluster with client
//! ports: typed results and errors, authentication, and failover when the
//! node it talks to goes away.

use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use synod_client::wire::{self, Reply, Request};
use synod_client::{Client, ClientConfig, ClientError, Compare, CompareOp, Target, TxnOp};
use synod_core::CommandId;
use synod_kv::KvStore;
use synod_runtime::{Bootstrap, Node, SynodConfig};
use synod_testkit::TestCluster;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

fn config(root: &TempDir, token: Option<&str>) -> SynodConfig {
    with_sections(root, token, "")
}

/// The test cluster's config with `sections` appended.
fn with_sections(root: &TempDir, token: Option<&str>, sections: &str) -> SynodConfig {
    let mut cluster = TestCluster::three_replicas("client-test")
        .client_ports()
        .paxos("submit_retry", "\"300ms\"")
        .sections(sections);
    if let Some(token) = token {
        cluster = cluster.client_token(token);
    }
    let text = cluster.render(root.path()).toml;
    SynodConfig::from_toml_str(&text, "client test").unwrap().0
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

fn client(nodes: &[Node], token: Option<&str>) -> Client {
    let endpoints = nodes.iter().filter_map(Node::client_address).collect();
    let mut config = ClientConfig::new(endpoints, "client-test");
    config.token = token.map(str::to_owned);
    config.attempt_timeout = Duration::from_millis(500);
    Client::new(config)
}

#[actix_rt::test]
async fn typed_results_and_errors() {
    let root = TempDir::new().unwrap();
    let nodes = cluster(&config(&root, None)).await;
    let mut c = client(&nodes, None);
    assert_eq!(c.get(b"k").await, Err(ClientError::NotFound));
    c.put(b"k", b"v1").await.unwrap();
    assert_eq!(c.get(b"k").await.unwrap(), b"v1");
    assert_eq!(
        c.cas(b"k", Some(b"nope"), b"v2").await,
        Err(ClientError::CasFailed {
            current: Some(b"v1".to_vec())
        })
    );
    c.cas(b"k", Some(b"v1"), b"v2").await.unwrap();
    assert_eq!(c.cas(b"new", None, b"x").await, Ok(()));
    let token = c.lock(b"l", "me").await.unwrap();
    assert_eq!(
        c.lock(b"l", "you").await,
        Err(ClientError::Held {
            owner: "me".into(),
            token
        })
    );
    assert_eq!(
        c.unlock(b"l", "you").await,
        Err(ClientError::NotOwner {
            owner: Some("me".into())
        })
    );
    c.unlock(b"l", "me").await.unwrap();
    c.delete(b"k").await.unwrap();
    assert_eq!(c.delete(b"k").await, Err(ClientError::NotFound));
    for node in &nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_listing_longer_than_a_page_comes_back_whole_and_a_txn_applies_one_branch() {
    let root = TempDir::new().unwrap();
    let nodes = cluster(&config(&root, None)).await;
    let mut c = client(&nodes, None);
    let big = vec![b'x'; 300 * 1024]; // four fill a page of the default limits
    for i in 0..6 {
        c.put(format!("big/{i}").as_bytes(), &big).await.unwrap();
    }
    c.put(b"bigger", b"not under big/").await.unwrap();
    let first = c.list_page(b"big/", None, 0, false).await.unwrap();
    assert!(
        first.more && first.entries.len() < 6,
        "one page: {}",
        first.entries.len()
    );
    let all = c.list(b"big/", None, false).await.unwrap();
    let keys: Vec<_> = all
        .iter()
        .map(|e| String::from_utf8_lossy(&e.key))
        .collect();
    assert_eq!(keys, ["big/0", "big/1", "big/2", "big/3", "big/4", "big/5"]);
    assert!(all.iter().all(|e| e.value.as_deref() == Some(&big[..])));
    assert_eq!(c.list(b"big/", Some(4), true).await.unwrap().len(), 4);
    // Outside the log: every key above was acknowledged after its learner
    // applied it, so the node this client talks to has them all.
    let local = c.list_serializable(b"big/", None, true).await.unwrap();
    assert_eq!(local.len(), 6);
    assert_eq!(
        c.get_serializable(b"bigger").await.unwrap(),
        b"not under big/"
    );
    assert_eq!(
        c.get_serializable(b"nope").await,
        Err(ClientError::NotFound)
    );

    let absent = || Compare {
        key: b"leader".to_vec(),
        op: CompareOp::Equal,
        target: Target::Version(0),
    };
    let claim = |who: &str| TxnOp::Put {
        key: b"leader".to_vec(),
        value: who.as_bytes().to_vec(),
    };
    let first = c
        .txn(vec![absent()], vec![claim("a")], vec![])
        .await
        .unwrap();
    let second = c
        .txn(vec![absent()], vec![claim("b")], vec![])
        .await
        .unwrap();
    assert!(first.succeeded && !second.succeeded);
    assert!(second.revision > first.revision);
    assert_eq!(c.get(b"leader").await.unwrap(), b"a");
    let empty_key = Compare {
        key: Vec::new(),
        ..absent()
    };
    assert!(matches!(
        c.txn(vec![empty_key], vec![], vec![]).await,
        Err(ClientError::Invalid(_))
    ));
    for node in &nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn clones_of_one_client_send_from_many_tasks_at_once() {
    let root = TempDir::new().unwrap();
    let nodes = cluster(&config(&root, None)).await;
    let c = client(&nodes, None);
    let tasks = (0..8).map(|task| {
        let mut c = c.clone();
        async move {
            for i in 0..10 {
                let key = format!("t{task}/{i}");
                c.put(key.as_bytes(), key.as_bytes()).await.unwrap();
            }
        }
    });
    futures_util::future::join_all(tasks).await;
    let mut reader = c.clone();
    let written = reader.list(b"t", None, false).await.unwrap();
    assert_eq!(written.len(), 80);
    assert!(
        written
            .iter()
            .all(|e| e.value.as_deref() == Some(&e.key[..]))
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_watch_resumes_on_another_node_without_a_gap_or_a_repeat() {
    let root = TempDir::new().unwrap();
    let mut nodes = cluster(&config(&root, None)).await;
    let mut writer = client(&nodes, None);
    writer.put(b"w/0", b"0").await.unwrap();
    writer.put(b"elsewhere", b"x").await.unwrap();
    // A handle's clone talks to the next endpoint: the watch reads from
    // nodes[1], which then stops.
    let mut watch = client(&nodes, None).watch(b"w/", Some(1));
    let mut seen = watch.next().await.unwrap();
    assert_eq!(seen.len(), 1);
    nodes.remove(1).shutdown().await;
    for i in 1..=5 {
        let key = format!("w/{i}");
        writer.put(key.as_bytes(), key.as_bytes()).await.unwrap();
    }
    writer.delete(b"w/0").await.unwrap();
    while seen.len() < 7 {
        seen.extend(watch.next().await.unwrap());
    }
    let keys: Vec<_> = seen
        .iter()
        .map(|c| String::from_utf8_lossy(&c.key))
        .collect();
    assert_eq!(keys, ["w/0", "w/1", "w/2", "w/3", "w/4", "w/5", "w/0"]);
    assert!(seen.windows(2).all(|w| w[0].revision < w[1].revision));
    assert_eq!(seen[6].value, None, "the delete");
    for node in &nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_wrong_token_or_cluster_is_refused() {
    let root = TempDir::new().unwrap();
    let nodes = cluster(&config(&root, Some("let-me-in"))).await;
    let mut wrong = client(&nodes, Some("guess"));
    assert!(matches!(
        wrong.get(b"k").await,
        Err(ClientError::Refused(_))
    ));
    let mut none = client(&nodes, None);
    assert!(matches!(none.get(b"k").await, Err(ClientError::Refused(_))));
    let endpoints = nodes.iter().filter_map(Node::client_address).collect();
    let mut config = ClientConfig::new(endpoints, "another-cluster");
    config.token = Some("let-me-in".into());
    assert!(matches!(
        Client::new(config).get(b"k").await,
        Err(ClientError::Refused(_))
    ));
    let mut right = client(&nodes, Some("let-me-in"));
    right.put(b"k", b"v").await.unwrap();
    for node in &nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn the_client_fails_over_when_its_node_stops() {
    let root = TempDir::new().unwrap();
    let mut nodes = cluster(&config(&root, None)).await;
    let mut c = client(&nodes, None);
    c.put(b"before", b"1").await.unwrap();
    // The client talks to the first endpoint; stop that node.
    let first = nodes.remove(0);
    first.shutdown().await;
    c.put(b"after", b"2").await.unwrap();
    assert_eq!(c.get(b"before").await.unwrap(), b"1");
    assert_eq!(c.get(b"after").await.unwrap(), b"2");
    for node in &nodes {
        node.shutdown().await;
    }
}

type Raw = Framed<TcpStream, LengthDelimitedCodec>;

/// A bare client-port connection: hello sent, first reply returned.
async fn raw_connection(node: &Node) -> (Raw, Option<Reply>) {
    let stream = TcpStream::connect(node.client_address().unwrap())
        .await
        .unwrap();
    let mut raw = Framed::new(stream, wire::client_codec());
    let hello = Request::Hello {
        version: wire::CLIENT_PROTOCOL_VERSION,
        cluster: "client-test".into(),
        token: None,
    };
    // A node at its limit may already have closed the socket.
    let _ = raw.send(wire::encode(&hello)).await;
    let reply = match raw.next().await {
        Some(Ok(frame)) => Some(wire::decode::<Reply>(&frame).unwrap()),
        _ => None,
    };
    (raw, reply)
}

/// Pipelines `count` submits on one connection and reads every reply.
async fn burst(node: &Node, count: u64) {
    burst_then(node, count, false).await;
}

/// `burst`, closing the connection's sending side after the submits when
/// `half_close`: the answers must still come, then the end of the stream.
async fn burst_then(node: &Node, count: u64, half_close: bool) {
    let (mut raw, welcome) = raw_connection(node).await;
    assert!(
        matches!(welcome, Some(Reply::Welcome { .. })),
        "{welcome:?}"
    );
    let session = node.open_session(4242 + count).await.unwrap();
    let ids: BTreeSet<CommandId> = (1..=count)
        .map(|seq| CommandId {
            client: session,
            seq,
        })
        .collect();
    for id in &ids {
        let submit = Request::Submit {
            id: *id,
            payload: b"not a kv request".to_vec(),
        };
        raw.feed(wire::encode(&submit)).await.unwrap();
    }
    SinkExt::<bytes::Bytes>::flush(&mut raw).await.unwrap();
    if half_close {
        raw.get_mut().shutdown().await.unwrap();
    }
    let mut answered = BTreeSet::new();
    while answered.len() < ids.len() {
        let frame = raw.next().await.expect("open").unwrap();
        match wire::decode::<Reply>(&frame).unwrap() {
            Reply::Response { id, .. } => assert!(answered.insert(id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answered, ids);
    if half_close {
        assert!(
            raw.next().await.is_none(),
            "the node closes once all is answered"
        );
    }
}

#[actix_rt::test]
async fn a_client_that_stops_sending_still_gets_every_answer() {
    let root = TempDir::new().unwrap();
    let nodes = cluster(&config(&root, None)).await;
    burst_then(&nodes[0], 200, true).await;
    for node in &nodes {
        node.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_pipelining_connection_is_served_at_most_max_in_flight_at_once() {
    let root = TempDir::new().unwrap();
    let capped = with_sections(&root, None, "[clients]\nmax_in_flight = 2\n");
    let nodes = cluster(&capped).await;
    burst(&nodes[0], 50).await;
    let peak = nodes[0].client_port_stats().peak_in_flight.load(Relaxed);
    assert!((1..=2).contains(&peak), "peak {peak} with a cap of 2");
    for node in &nodes {
        node.shutdown().await;
    }

    // The control: without a tight cap the same burst is served wider.
    let root = TempDir::new().unwrap();
    let nodes = cluster(&config(&root, None)).await;
    burst(&nodes[0], 50).await;
    let peak = nodes[0].client_port_stats().peak_in_flight.load(Relaxed);
    assert!(peak > 2, "peak {peak} with the default cap");
    for node in &nodes {
        node.shutdown().await;
    }
}

/// Commands a connection pipelines into a node whose acceptors lost their
/// quorum are sent again (backing off) until `submit_timeout`, then each
/// request, a repeated one too, is answered `Timeout`; the connection
/// stays usable for what a quorum-less node can still answer.
#[actix_rt::test]
async fn commands_without_a_quorum_are_resent_then_answered_timeout() {
    let root = TempDir::new().unwrap();
    let config = TestCluster::three_replicas("client-test")
        .client_ports()
        .paxos("submit_retry", "\"200ms\"")
        .paxos("submit_timeout", "\"1500ms\"")
        .render(root.path())
        .toml;
    let config = SynodConfig::from_toml_str(&config, "client test")
        .unwrap()
        .0;
    let mut nodes = cluster(&config).await;
    let session = nodes[0].open_session(77).await.unwrap();
    for node in nodes.drain(1..) {
        node.shutdown().await;
    }
    let (mut raw, welcome) = raw_connection(&nodes[0]).await;
    assert!(matches!(welcome, Some(Reply::Welcome { .. })));
    let ids = [1, 2, 3, 2].map(|seq| CommandId {
        client: session,
        seq,
    });
    for id in ids {
        let submit = Request::Submit {
            id,
            payload: b"no quorum".to_vec(),
        };
        raw.send(wire::encode(&submit)).await.unwrap();
    }
    let mut timed_out = Vec::new();
    while timed_out.len() < ids.len() {
        let frame = tokio::time::timeout(Duration::from_secs(20), raw.next())
            .await
            .expect("every request answered by its deadline")
            .expect("open")
            .unwrap();
        match wire::decode::<Reply>(&frame).unwrap() {
            Reply::Failed {
                id,
                error: wire::Failure::Timeout,
            } => timed_out.push(id.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    timed_out.sort_unstable();
    assert_eq!(timed_out, [1, 2, 2, 3]);
    // Resent at 200 ms and 600 ms (then 1400 ms) before the 1.5 s deadline.
    let resends = nodes[0].status().await.resends;
    assert!(resends >= 6, "{resends} resends");
    let status = Request::Status;
    raw.send(wire::encode(&status)).await.unwrap();
    let frame = raw.next().await.expect("open").unwrap();
    assert!(matches!(
        wire::decode::<Reply>(&frame).unwrap(),
        Reply::Status(_)
    ));
    nodes.remove(0).shutdown().await;
}

#[actix_rt::test]
async fn connections_past_max_connections_are_turned_away() {
    let root = TempDir::new().unwrap();
    let limited = with_sections(&root, None, "[clients]\nmax_connections = 2\n");
    let nodes = cluster(&limited).await;
    let node = &nodes[0];
    let (mut first, welcome) = raw_connection(node).await;
    assert!(matches!(welcome, Some(Reply::Welcome { .. })));
    let (_second, welcome) = raw_connection(node).await;
    assert!(matches!(welcome, Some(Reply::Welcome { .. })));
    let (_third, reply) = raw_connection(node).await;
    assert_eq!(reply, None, "the third connection is closed unanswered");
    let stats = node.client_port_stats();
    assert_eq!(stats.turned_away.load(Relaxed), 1);
    assert_eq!(stats.open.load(Relaxed), 2);
    // The connections already served go on being served.
    first.send(wire::encode(&Request::Status)).await.unwrap();
    let frame = first.next().await.expect("open").unwrap();
    assert!(matches!(
        wire::decode::<Reply>(&frame).unwrap(),
        Reply::Status(_)
    ));
    for node in &nodes {
        node.shutdown().await;
    }
}
