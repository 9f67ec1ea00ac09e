//! Disk faults under real `synod node` processes: every node's data
//! directory on a [`LossyDisk`] (FUSE, in memory) that can lose power
//! (every file back to its last fsync) or fail with EIO.
//!
//! - Power cuts of the whole cluster, `SYNOD_POWER_CYCLES` times (default
//!   3): after each restart the writes since the last cut read back, with
//!   a sample of the older ones; at the end every acknowledged write.
//! - The negative control: disks that report fsync without syncing lose
//!   acknowledged writes at a power cut, and the test sees it.
//! - A disk that fails with EIO stops the roles on it; the other nodes
//!   keep serving; after the disk recovers the node restarts and nothing
//!   acknowledged is lost.
//!
//! Mounting needs root and /dev/fuse: elsewhere the tests skip, except
//! when `CI` is set, where they fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use synod_integration::Deployment;
use synod_integration::lossy_disk::LossyDisk;
use synod_integration::scenario::missing_writes;
use synod_integration::workload::Workload;
use synod_testkit::TestCluster;

/// A cluster-3 deployment whose every data directory is a lossy disk
/// (`None`: no FUSE here, and CI is not set).
fn lossy_cluster(cluster: TestCluster) -> Option<(Deployment, BTreeMap<String, LossyDisk>)> {
    let deployment = Deployment::new(cluster.admin_ports());
    let mut disks = BTreeMap::new();
    for node in deployment.nodes() {
        let dir = deployment.data_dir(node);
        std::fs::create_dir_all(&dir).unwrap();
        disks.insert(node.clone(), LossyDisk::mount_or_skip(&dir)?);
    }
    Some((deployment, disks))
}

/// Fresh-key writes from 4 clients for `how_long`; the acknowledged ones.
fn write_for(deployment: &Deployment, how_long: Duration, seed: u64) -> BTreeMap<String, String> {
    let workload = Workload {
        clients: 4,
        fresh_percent: 100,
        seed,
        ..Workload::default()
    };
    let running = workload.start(deployment.endpoints(), "it");
    std::thread::sleep(how_long);
    running.stop().acknowledged
}

/// SIGKILL every node, then cut the power of every disk.
fn power_cut(deployment: &mut Deployment, disks: &BTreeMap<String, LossyDisk>) {
    for node in deployment.nodes().to_vec() {
        deployment.sigkill(&node);
    }
    for disk in disks.values() {
        disk.power_cut();
    }
}

fn missing(deployment: &Deployment, acknowledged: &BTreeMap<String, String>) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(missing_writes(deployment, acknowledged))
}

/// About `count` entries of `map`, evenly spread, starting `offset` in.
fn spread_sample(
    map: &BTreeMap<String, String>,
    count: usize,
    offset: usize,
) -> BTreeMap<String, String> {
    let step = (map.len() / count).max(1);
    map.iter()
        .skip(offset % step)
        .step_by(step)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn assert_none_lost(deployment: &Deployment, acknowledged: &BTreeMap<String, String>, when: &str) {
    let lost = missing(deployment, acknowledged);
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged writes lost or unanswered, e.g. {:?}; the nodes say:\n{}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)],
        deployment.post_mortem()
    );
}

#[test]
fn power_cuts_of_the_whole_cluster_lose_no_acknowledged_write() {
    let cycles: u64 =
        std::env::var("SYNOD_POWER_CYCLES").map_or(3, |s| s.parse().expect("SYNOD_POWER_CYCLES"));
    let Some((mut deployment, disks)) = lossy_cluster(TestCluster::three_replicas("it")) else {
        return;
    };
    deployment.start_all();
    let mut acknowledged = BTreeMap::new();
    let began = Instant::now();
    for cycle in 0..cycles {
        let at_risk = write_for(&deployment, Duration::from_millis(600), cycle);
        assert!(!at_risk.is_empty(), "cycle {cycle}: nothing acknowledged");
        power_cut(&mut deployment, &disks);
        deployment.start_all();
        // The writes since the last cut, and a different sample of the
        // older ones each cycle (a later cut must not lose them either:
        // compactions rewrite them); all of them once at the end.
        let mut checked = spread_sample(&acknowledged, 64, cycle as usize);
        checked.extend(at_risk.clone());
        assert_none_lost(&deployment, &checked, &format!("power cut {cycle}"));
        acknowledged.extend(at_risk);
        if (cycle + 1) % 50 == 0 {
            eprintln!("{} power cuts in {:?}", cycle + 1, began.elapsed());
        }
    }
    assert_none_lost(&deployment, &acknowledged, "after every cut");
    let lost_bytes: u64 = disks.values().map(|d| d.stats().bytes_lost).sum();
    let syncs: u64 = disks.values().map(|d| d.stats().syncs).sum();
    eprintln!(
        "{cycles} power cuts in {:?}: {} acknowledged writes, all read back; \
         {syncs} syncs, {lost_bytes} unsynced bytes thrown away",
        began.elapsed(),
        acknowledged.len()
    );
}

/// Negative control: disks that say they synced but did not. After a power
/// cut acknowledged writes are gone, and the read-back (or the node's own
/// start check) must say so.
#[test]
fn disks_that_lie_about_fsync_lose_acknowledged_writes_and_are_caught() {
    let Some((mut deployment, disks)) = lossy_cluster(TestCluster::three_replicas("it")) else {
        return;
    };
    deployment.start_all();
    let mut acknowledged = write_for(&deployment, Duration::from_millis(300), 1);
    for disk in disks.values() {
        disk.set_lying(true);
    }
    acknowledged.extend(write_for(&deployment, Duration::from_millis(600), 2));
    power_cut(&mut deployment, &disks);
    for disk in disks.values() {
        disk.set_lying(false);
    }
    let lost_bytes: u64 = disks.values().map(|d| d.stats().bytes_lost).sum();
    assert!(lost_bytes > 0, "the power cut threw nothing away");
    let nodes = deployment.nodes().to_vec();
    match deployment.try_start_nodes(&nodes) {
        Err(refused) => eprintln!("caught at start: {refused}"),
        Ok(()) => {
            let lost = missing(&deployment, &acknowledged);
            eprintln!(
                "caught by the read-back: {} of {} acknowledged writes lost",
                lost.len(),
                acknowledged.len()
            );
            assert!(!lost.is_empty(), "unsynced writes survived a power cut");
        }
    }
}

/// The roles of `node` that its admin server reports stopped.
fn stopped_roles(deployment: &Deployment, node: &str) -> Vec<String> {
    deployment.admin_roles(node, "stopped")
}

#[test]
fn a_disk_that_fails_stops_its_roles_and_the_others_lose_nothing() {
    let cluster = TestCluster::three_replicas("it").admin_ports();
    let Some((mut deployment, disks)) = lossy_cluster(cluster) else {
        return;
    };
    deployment.start_all();
    let mut acknowledged = write_for(&deployment, Duration::from_millis(300), 1);
    disks["n3"].set_failing(true);
    acknowledged.extend(write_for(&deployment, Duration::from_millis(1500), 2));
    let deadline = Instant::now() + Duration::from_secs(30);
    while stopped_roles(&deployment, "n3").is_empty() {
        assert!(
            Instant::now() < deadline,
            "n3 kept its roles on a failing disk"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("n3 stopped {:?}", stopped_roles(&deployment, "n3"));
    acknowledged.extend(write_for(&deployment, Duration::from_millis(500), 3));
    disks["n3"].set_failing(false);
    deployment.sigkill("n3");
    deployment.start("n3");
    assert!(
        stopped_roles(&deployment, "n3").is_empty(),
        "n3 restarted whole"
    );
    let lost = missing(&deployment, &acknowledged);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
}
