//! The fault-injection suite: real `synod node` processes with every
//! node-to-node link through a fault proxy, concurrent clients recording a
//! history, a schedule of partitions, flaky links, kills and pauses, and
//! the checks of `synod_integration::scenario` (linearizable registers,
//! every acknowledged write read back, learners agreeing slot by slot).
//!
//! The fixed scenarios run in `cargo test`. The soak test draws a random
//! schedule: `SYNOD_SOAK_SECS` (default 20) of faults on `SYNOD_SOAK_LAYOUT`
//! (`cluster-3`, `cluster-5` or `split-roles`; default cluster-3) from
//! `SYNOD_SOAK_SEED` (default 1). A failure prints the seed and schedule.

use std::collections::BTreeMap;
use std::time::Duration;
use synod_integration::Deployment;
use synod_integration::nemesis::{self, FLAKY, Fault, Step};
use synod_integration::proxy::{LinkFault, Mode};
use synod_integration::scenario::{self, Report, Scenario};
use synod_integration::workload::Workload;
use synod_testkit::TestCluster;

fn step(fault: Fault, hold_ms: u64) -> Step {
    Step {
        fault,
        hold: Duration::from_millis(hold_ms),
        quiet: Duration::from_millis(800),
    }
}

fn scenario(name: &str, cluster: TestCluster, steps: Vec<Step>) -> Scenario {
    Scenario {
        name: name.to_owned(),
        cluster,
        seed: 7,
        steps,
        workload: Workload::default(),
        warmup: Duration::from_millis(500),
    }
}

fn nodes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The report shows the faults happened: leaders changed.
fn assert_faults_bit(report: &Report) {
    assert!(
        report.leader_changes > 0,
        "{}: no leader change, so the faults never bit",
        report.name
    );
    assert!(report.tally.ok > 0, "{}: nothing answered", report.name);
}

#[test]
fn cluster_3_stays_linearizable_through_partitions() {
    let steps = vec![
        step(Fault::IsolateLeader, 1500),
        step(Fault::MuteLeader, 1500),
        step(Fault::Deafen("n2".into()), 1000),
        step(Fault::Blackhole("n1".into()), 1500),
        step(
            Fault::Partition(vec![nodes(&["n3"]), nodes(&["n1", "n2"])]),
            1000,
        ),
    ];
    let report = scenario(
        "cluster-3 partitions",
        TestCluster::three_replicas("it"),
        steps,
    )
    .run();
    assert_faults_bit(&report);
}

#[test]
fn cluster_5_stays_linearizable_through_rings_and_bridges() {
    let steps = vec![
        step(Fault::Ring, 2000),
        step(Fault::Bridge, 2000),
        step(
            Fault::Partition(vec![nodes(&["n1", "n2"]), nodes(&["n3", "n4", "n5"])]),
            1500,
        ),
        step(Fault::IsolateLeader, 1500),
    ];
    let report = scenario("cluster-5 rings", TestCluster::five_replicas("it"), steps).run();
    assert_faults_bit(&report);
}

#[test]
fn cluster_3_stays_linearizable_over_flaky_links() {
    let lossy = LinkFault { drop: 0.4, ..FLAKY };
    let steps = vec![
        step(Fault::Flaky(FLAKY), 4000),
        step(Fault::Flaky(lossy), 2500),
    ];
    let report = scenario("cluster-3 flaky", TestCluster::three_replicas("it"), steps).run();
    assert!(report.frames_dropped > 0, "the flaky links dropped nothing");
    assert!(report.tally.ok > 0, "nothing answered");
}

#[test]
fn cluster_3_stays_linearizable_through_kills_and_pauses() {
    // The rolling restart first: it resets every node's counters, and the
    // leader faults after it must show up in them.
    let steps = vec![
        step(Fault::RollingRestart, 0),
        step(Fault::KillLeader, 1000),
        step(Fault::PauseLeader, 1500),
        step(Fault::Kill("n2".into()), 500),
        step(Fault::Pause("n3".into()), 1000),
    ];
    let report = scenario(
        "cluster-3 processes",
        TestCluster::three_replicas("it"),
        steps,
    )
    .run();
    assert_faults_bit(&report);
}

#[test]
fn split_roles_stay_linearizable_through_mixed_faults() {
    let steps = vec![
        step(Fault::IsolateLeader, 1500),
        step(Fault::Kill("acceptor-b".into()), 1000),
        step(Fault::PauseLeader, 1500),
        step(Fault::Blackhole("acceptor-a".into()), 1000),
        step(Fault::Flaky(FLAKY), 2000),
        step(Fault::Kill("learner-a".into()), 1000),
    ];
    let report = scenario("split-roles mixed", TestCluster::split_roles("it"), steps).run();
    assert_faults_bit(&report);
}

/// A random schedule; long with `SYNOD_SOAK_SECS`.
#[test]
fn soak_with_a_random_schedule() {
    let env = |name: &str| std::env::var(name).ok();
    let seed: u64 = env("SYNOD_SOAK_SEED").map_or(1, |s| s.parse().expect("SYNOD_SOAK_SEED"));
    let secs: u64 = env("SYNOD_SOAK_SECS").map_or(20, |s| s.parse().expect("SYNOD_SOAK_SECS"));
    let layout = env("SYNOD_SOAK_LAYOUT").unwrap_or_else(|| "cluster-3".into());
    let cluster = match layout.as_str() {
        "cluster-3" => TestCluster::three_replicas("it"),
        "cluster-5" => TestCluster::five_replicas("it"),
        "split-roles" => TestCluster::split_roles("it"),
        other => panic!("SYNOD_SOAK_LAYOUT {other:?}: cluster-3, cluster-5 or split-roles"),
    };
    let faults = nemesis::every_fault(&cluster.node_names());
    // A step averages 1.75 s held plus 2 s quiet.
    let steps = (secs * 4 / 15).max(1) as usize;
    let mut soak = scenario(&format!("soak {layout}"), cluster, vec![]);
    soak.steps = nemesis::random_schedule(seed, &faults, steps);
    soak.seed = seed;
    soak.workload.seed = seed;
    let report = soak.run();
    assert!(report.tally.ok > 0, "nothing answered");
}

/// SIGKILL a random node and restart it, `SYNOD_KILL_CYCLES` times
/// (default 10) under load: nothing acknowledged is lost, the history
/// stays linearizable.
#[test]
fn kill_restart_cycles_lose_nothing() {
    use rand::{Rng, SeedableRng};
    let cycles: usize =
        std::env::var("SYNOD_KILL_CYCLES").map_or(10, |s| s.parse().expect("SYNOD_KILL_CYCLES"));
    let cluster = TestCluster::three_replicas("it");
    let names = cluster.node_names();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let steps = (0..cycles)
        .map(|_| Step {
            fault: Fault::Kill(names[rng.random_range(0..names.len())].clone()),
            hold: Duration::from_millis(rng.random_range(0..300)),
            quiet: Duration::from_millis(rng.random_range(100..400)),
        })
        .collect();
    let report = scenario(&format!("{cycles} kill cycles"), cluster, steps).run();
    assert!(report.tally.ok > 0, "nothing answered");
}

/// Negative control of the read-back check: a write the cluster never
/// saw is reported missing; the ones it acknowledged are not.
#[tokio::test]
async fn a_lost_write_is_caught_by_the_read_back() {
    let mut deployment = Deployment::new(TestCluster::three_replicas("it"));
    deployment.start_all();
    let mut client = deployment.client();
    client.put(b"written", b"1").await.expect("a put");
    let claimed: BTreeMap<String, String> = [("written", "1"), ("never-written", "2")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let missing = scenario::missing_writes(&deployment, &claimed).await;
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].starts_with("never-written"), "{missing:?}");
}

/// The proxies bite: a cut link refuses connections, and a link that
/// drops everything forwards nothing after the handshake.
#[test]
fn a_cut_link_carries_nothing() {
    let mut deployment = Deployment::with_faults(TestCluster::three_replicas("it"), 3);
    deployment.start_all();
    let net = deployment.net();
    assert_eq!(net.get("n1", "n2").mode, Mode::Pass);
    let forwarded = |net: &synod_integration::proxy::FaultNet| {
        net.counters("n1", "n2")
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(forwarded(net) > 0, "heartbeats crossed before the cut");
    net.set("n1", "n2", LinkFault::CUT);
    let refused = &net.counters("n1", "n2").refused;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refused.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cut closed nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cut_at = forwarded(net);
    // Nothing crosses while it is cut: the heartbeats every 20 ms stop.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(forwarded(net), cut_at, "frames crossed a cut link");
    net.heal();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while forwarded(net) == cut_at {
        assert!(
            std::time::Instant::now() < deadline,
            "the healed link stayed silent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The largest non-empty file under `dir` whose name ends with `suffix`.
fn largest_file(dir: &std::path::Path, suffix: &str) -> Option<std::path::PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.len(), p)))
        .filter(|(len, _)| *len > 0)
        .max()
        .map(|(_, p)| p)
}

/// Flip one byte in the middle of `file`.
fn flip_a_byte(file: &std::path::Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

/// Write `count` keys `prefix-i`; every one must be acknowledged.
async fn write_keys(deployment: &Deployment, prefix: &str, count: usize) -> Vec<String> {
    let mut client = deployment.client();
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        client
            .put(key.as_bytes(), key.as_bytes())
            .await
            .expect("a put");
        keys.push(key);
    }
    keys
}

/// A flipped byte in an acceptor's WAL (`.log`) or table (`.sst`): the node
/// refuses to start rather than vote on state it cannot vouch for, and the
/// other two keep serving with nothing lost.
async fn a_damaged_store_is_refused(suffix: &str) {
    let mut deployment = Deployment::new(TestCluster::three_replicas("it"));
    deployment.start_all();
    let mut written = write_keys(&deployment, "before", 100).await;
    // A restart flushes the recovered WAL into tables: both kinds exist.
    deployment.stop("n3");
    deployment.start("n3");
    written.extend(write_keys(&deployment, "after", 100).await);
    deployment.stop("n3");
    let store = deployment.data_dir("n3").join("acceptor-3");
    let file = largest_file(&store, suffix).unwrap_or_else(|| panic!("no {suffix} in {store:?}"));
    flip_a_byte(&file);
    let refusal = deployment.start_refused("n3");
    eprintln!("damaged {}: {}", file.display(), refusal.trim());
    assert!(
        refusal.contains("corrupt") || refusal.contains("Corruption"),
        "n3 should name the damage: {refusal}"
    );
    written.extend(write_keys(&deployment, "without-n3", 20).await);
    let mut client = deployment.client();
    for key in &written {
        let value = client.get(key.as_bytes()).await.expect("a get");
        assert_eq!(value, key.as_bytes(), "{key}");
    }
}

#[tokio::test]
async fn a_flipped_byte_in_an_acceptors_wal_is_refused_and_nothing_is_lost() {
    a_damaged_store_is_refused(".log").await;
}

#[tokio::test]
async fn a_flipped_byte_in_an_acceptors_table_is_refused_and_nothing_is_lost() {
    a_damaged_store_is_refused(".sst").await;
}
