//! Mutual TLS between nodes (`[tls]`, certificates made at test time):
//! a TLS cluster decides commands; a node whose certificate names another
//! node, and a peer with no certificate, are refused at the handshake.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use synod_runtime::{Node, SynodConfig};
use synod_testkit::{TestCa, TestCluster};
use tempfile::TempDir;

const SETTLE: Duration = Duration::from_secs(30);

fn tls_config(cluster: TestCluster, root: &TempDir) -> SynodConfig {
    config(&cluster, root)
}

fn refused(node: &Node) -> u64 {
    node.transport_stats()
        .handshakes_refused
        .load(Ordering::Relaxed)
}

#[actix_rt::test]
async fn a_tls_cluster_decides_and_agrees() {
    let ca = TestCa::new();
    let root = TempDir::new().unwrap();
    let config = tls_config(TestCluster::three_replicas("tls").tls(&ca), &root);
    assert!(config.tls.is_some());
    let nodes = start_all(&config).await;
    let responses = submit_many(&nodes[0], 200, "tls").await;
    assert_eq!(responses.len(), 200);
    for node in &nodes {
        assert_eq!(refused(node), 0, "{} refused a peer", node.name());
    }
    agree_then_stop(nodes, "the TLS cluster's learners agree").await;
}

#[actix_rt::test]
async fn a_node_with_a_certificate_for_another_name_is_refused() {
    let ca = TestCa::new();
    let impostor = ca.issue("impostor", &["n2"]);
    let cluster = TestCluster::three_replicas("tls")
        .tls(&ca)
        .tls_cert("n3", impostor);
    let root = TempDir::new().unwrap();
    let nodes = start_all(&tls_config(cluster, &root)).await;
    // n1 and n2 are a majority: they decide without n3.
    submit_many(&nodes[0], 50, "majority").await;
    eventually("n1 refuses n3's certificate", SETTLE, || async {
        refused(&nodes[0]) > 0
    })
    .await;
    let stats = nodes[0].transport_stats();
    assert!(!stats.peer("n3").connected(), "n3 got a link to n1");
    assert!(stats.peer("n2").connected(), "n2 is linked to n1");
    shutdown_all(nodes).await;
}

#[actix_rt::test]
async fn a_peer_without_a_certificate_is_refused() {
    let ca = TestCa::new();
    let root = TempDir::new().unwrap();
    let config = tls_config(TestCluster::three_replicas("tls").tls(&ca), &root);
    let nodes = start_all(&config).await;
    submit_many(&nodes[0], 10, "up").await;
    let before = refused(&nodes[0]);
    let address = nodes[0].listen_address();
    // TLS that trusts the CA but presents no certificate.
    let anonymous = synod_tls::ClientTls::load(ca.ca_file()).unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    if let Ok(mut stream) = anonymous.connect("n1", tcp).await {
        // TLS 1.3 reports a refused client certificate on the first read.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream.write_all(b"hello").await;
        let mut byte = [0u8; 1];
        assert!(
            !matches!(stream.read(&mut byte).await, Ok(n) if n > 0),
            "a certificate-less peer was answered"
        );
    }
    // Plain TCP, as a node without TLS would speak.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"\0\0\0\x05hello")
        .await
        .unwrap();
    eventually("n1 refuses both", SETTLE, || async {
        refused(&nodes[0]) >= before + 2
    })
    .await;
    shutdown_all(nodes).await;
}
