//! Real `synod node` processes: the 3 of a cluster-3 layout and the 7 of a
//! split-roles layout, a workload through synod-client, one acceptor
//! process SIGKILLed and restarted mid-load, every acknowledged write read
//! back afterwards.

use synod_integration::Deployment;
use synod_testkit::TestCluster;

/// Write `count` keys, SIGKILL `victim` after a third and restart it after
/// two thirds, then read every acknowledged key back.
async fn workload_survives_a_killed_acceptor(
    mut deployment: Deployment,
    victim: &str,
    count: usize,
) {
    deployment.start_all();
    let mut client = deployment.client();
    let mut acknowledged = Vec::new();
    for i in 0..count {
        if i == count / 3 {
            deployment.sigkill(victim);
        }
        if i == 2 * count / 3 {
            deployment.start(victim);
        }
        let (key, value) = (format!("key-{i}"), format!("value-{i}"));
        if client.put(key.as_bytes(), value.as_bytes()).await.is_ok() {
            acknowledged.push((key, value));
        }
    }
    assert!(
        acknowledged.len() >= count * 9 / 10,
        "most writes acknowledged: {}",
        acknowledged.len()
    );
    let mut reader = deployment.client();
    for (key, value) in &acknowledged {
        let read = reader
            .get(key.as_bytes())
            .await
            .expect("acknowledged key readable");
        assert_eq!(read, value.as_bytes(), "{key}");
    }
}

#[tokio::test]
async fn cluster_3_processes_survive_an_acceptor_sigkill() {
    let deployment = Deployment::new(TestCluster::three_replicas("it"));
    workload_survives_a_killed_acceptor(deployment, "n3", 300).await;
}

#[tokio::test]
async fn split_roles_processes_survive_an_acceptor_sigkill() {
    let deployment = Deployment::new(TestCluster::split_roles("it"));
    workload_survives_a_killed_acceptor(deployment, "acceptor-b", 300).await;
}
