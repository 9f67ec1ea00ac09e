//! Identity, end to end through `synod node` processes: a node refuses a
//! store stamped for another cluster or node, and a node whose
//! data directory is deleted while it runs stops the roles on it, keeps
//! nothing acknowledged on their behalf, and refuses to restart empty.

use std::time::{Duration, Instant};
use synod_integration::Deployment;
use synod_testkit::TestCluster;

/// Put a few keys; each must be acknowledged.
async fn write(deployment: &Deployment, prefix: &str) {
    let mut client = deployment.client();
    for i in 0..5 {
        let key = format!("{prefix}-{i}");
        client.put(key.as_bytes(), b"v").await.expect("a put");
    }
}

#[tokio::test]
async fn a_new_cluster_refuses_an_old_clusters_data_directories() {
    let mut old = Deployment::new(TestCluster::three_replicas("it"));
    old.start_all();
    write(&old, "old").await;
    old.stop_all();

    let new = Deployment::new(TestCluster::three_replicas("new"));
    for node in new.nodes().to_vec() {
        std::fs::remove_dir_all(new.data_dir(&node)).ok();
        std::fs::rename(old.data_dir(&node), new.data_dir(&node)).unwrap();
    }
    // Even told this is a new cluster, n1 will not adopt the old one's state.
    let refusal = new.start_refused_with("n1", &["--init"]);
    assert!(
        refusal.contains("belongs to") && refusal.contains("\"it\"") && refusal.contains("\"new\""),
        "{refusal}"
    );
}

#[tokio::test]
async fn a_node_refuses_a_store_copied_from_another_node() {
    let mut deployment = Deployment::new(TestCluster::three_replicas("it"));
    deployment.start_all();
    write(&deployment, "k").await;
    deployment.stop_all();
    // An operator moves acceptor-1 to n2 by editing its line and copying
    // its directory along: the store says it is n1's.
    deployment.edit_config(|text| {
        let moved = text.replace("acceptor-1 = \"n1\"", "acceptor-1 = \"n2\"");
        assert_ne!(moved, text, "the placement line is in the config");
        moved
    });
    let from = deployment.data_dir("n1").join("acceptor-1");
    std::fs::rename(&from, deployment.data_dir("n2").join("acceptor-1")).unwrap();
    let refusal = deployment.start_refused("n2");
    assert!(
        refusal.contains("belongs to acceptor-1 of node \"n1\"")
            && refusal.contains("not acceptor-1 of node \"n2\""),
        "{refusal}"
    );
}

#[tokio::test]
async fn a_data_directory_deleted_under_a_running_node_stops_its_roles_and_blocks_a_restart() {
    let mut deployment = Deployment::new(TestCluster::three_replicas("it"));
    deployment.start_all();
    write(&deployment, "before").await;
    std::fs::remove_dir_all(deployment.data_dir("n1")).unwrap();

    // The other two keep the cluster writable; n1's acceptor and learner
    // stop at their next write instead of acknowledging into deleted files.
    let mut client = deployment.client();
    let status_client = deployment.client_of("n1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    let stopped = loop {
        client
            .put(format!("after-{round}").as_bytes(), b"v")
            .await
            .expect("n2 and n3 still form a majority");
        round += 1;
        let status = status_client
            .status_of(deployment.endpoint("n1"))
            .await
            .expect("n1 still answers status");
        let stopped = status.stopped;
        if stopped.iter().any(|r| r == "acceptor-1") && stopped.iter().any(|r| r == "learner-1") {
            break stopped;
        }
        assert!(
            Instant::now() < deadline,
            "n1 still runs on a deleted directory: {stopped:?}"
        );
    };
    eprintln!("n1 stopped {stopped:?} after {round} writes");

    deployment.sigkill("n1");
    let refusal = deployment.start_refused("n1");
    assert!(refusal.contains("no store for"), "{refusal}");
    // Every acknowledged write is still there.
    for i in 0..5 {
        assert_eq!(
            client.get(format!("before-{i}").as_bytes()).await.unwrap(),
            b"v"
        );
    }
}
