//! A cluster restarted after its accepted log outgrew one frame must elect
//! a leader again: phase-1 replies are paged, and a restarted proposer
//! skips the chosen prefix instead of reading the log from slot 0.
//!
//! The frame limit is made small (256 KiB) so that a few seconds of writes
//! hold several frames' worth of accepted values.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use synod_integration::Deployment;
use synod_testkit::TestCluster;

const FRAME: usize = 256 * 1024;
const VALUE: usize = 16 * 1024;
/// Values written before the restart: four frames' worth.
const VALUES: usize = 4 * FRAME / VALUE;

/// `cluster` with a 256 KiB frame and budgets that fit in it.
fn small_frames(cluster: TestCluster) -> Deployment {
    let budget = (FRAME / 4).to_string();
    let cluster = cluster
        .transport("max_frame_len", &FRAME.to_string())
        .paxos("reply_max_bytes", &budget)
        .paxos("batch_max_bytes", &budget)
        .paxos("max_command_bytes", &budget)
        .sections(&format!("[kv]\nmax_value_len = {VALUE}\n"));
    Deployment::new(cluster)
}

fn value(i: usize) -> Vec<u8> {
    let mut value = format!("value-{i}-").into_bytes();
    value.resize(VALUE, b'x');
    value
}

/// Write `VALUES` values of `VALUE` bytes; every one must be acknowledged.
async fn write_history(deployment: &Deployment) {
    let mut client = deployment.client();
    for i in 0..VALUES {
        client
            .put(format!("key-{i}").as_bytes(), &value(i))
            .await
            .unwrap_or_else(|e| panic!("write {i} before the restart: {e}"));
    }
}

/// SIGKILL `restarted`, start them again: a put succeeds within the
/// client's timeout (30 s, a hundred election timeouts; before paged
/// promises no leader was ever elected), and every value written before
/// is read back.
async fn put_succeeds_after_restart(deployment: &mut Deployment, restarted: &[String]) {
    for node in restarted {
        deployment.sigkill(node);
    }
    let began = Instant::now();
    deployment.start_nodes(restarted);
    let mut client = deployment.client();
    client
        .put(b"after-restart", b"ok")
        .await
        .expect("a put after restarting must be decided");
    eprintln!("first put answered {:?} after the restart", began.elapsed());
    for i in 0..VALUES {
        let read = client.get(format!("key-{i}").as_bytes()).await.unwrap();
        assert_eq!(read, value(i), "key-{i}");
    }
}

#[tokio::test]
async fn cluster_3_elects_a_leader_after_a_full_restart_with_history_beyond_a_frame() {
    let mut deployment = small_frames(TestCluster::three_replicas("it"));
    deployment.start_all();
    write_history(&deployment).await;
    let every_node = deployment.nodes().to_vec();
    put_succeeds_after_restart(&mut deployment, &every_node).await;
}

#[tokio::test]
async fn split_roles_elects_a_leader_after_restarting_both_proposers() {
    let mut deployment = small_frames(TestCluster::split_roles("it"));
    deployment.start_all();
    write_history(&deployment).await;
    let proposers = vec!["proposer-a".to_owned(), "proposer-b".to_owned()];
    put_succeeds_after_restart(&mut deployment, &proposers).await;
}

/// `name` from the environment (not `SYNOD_*`, which the nodes would read
/// as a config override), 1,000,000 if unset.
fn count_from_env(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// 64 clients writing `commands` 16-byte puts over 10,000 keys, and the
/// count of puts answered so far.
fn write_puts(
    deployment: &Deployment,
    commands: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<AtomicUsize>) {
    let clients = 64;
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..clients {
        let mut client = deployment.client();
        let done = Arc::clone(&done);
        writers.push(tokio::spawn(async move {
            for i in (writer..commands).step_by(clients) {
                let key = format!("k{}", i % 10_000);
                client
                    .put(key.as_bytes(), b"0123456789abcdef")
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    (writers, done)
}

fn report_footprint(deployment: &Deployment, done: usize, elapsed: Duration) {
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let nodes: Vec<String> = deployment
        .nodes()
        .iter()
        .map(|node| {
            let rss = deployment.rss_bytes(node).map_or(0.0, mib);
            let disk = mib(deployment.disk_bytes(node));
            format!("{node} RSS {rss:.0} MiB, data {disk:.0} MiB")
        })
        .collect();
    eprintln!(
        "{done} commands, {:.0} s: {}",
        elapsed.as_secs_f64(),
        nodes.join("; ")
    );
}

/// The restart benchmark of BENCHMARKS.md (not a test: it measures).
/// Writes `BENCH_HISTORY_COMMANDS` (default 1,000,000; not `SYNOD_*`, which
/// the nodes would read as a config override) 16-byte puts from
/// 64 concurrent clients into a cluster-3 deployment with default limits,
/// SIGKILLs all three nodes, starts them again and prints how long the
/// first put took to be answered.
///
/// `cargo test --release -p synod-integration --test restart -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a benchmark: run it by hand (see BENCHMARKS.md)"]
async fn bench_full_restart_with_a_long_history() {
    let commands = count_from_env("BENCH_HISTORY_COMMANDS");
    let mut deployment = Deployment::new(TestCluster::three_replicas("it"));
    deployment.start_all();
    let began = Instant::now();
    let (writers, done) = write_puts(&deployment, commands);
    // The footprint of every node each tenth of the way: with snapshots
    // and trimming it should level off, not grow with the history.
    let mut next_report = commands / 10;
    while !writers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if done.load(Ordering::Relaxed) >= next_report {
            report_footprint(&deployment, done.load(Ordering::Relaxed), began.elapsed());
            next_report += commands / 10;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let wrote = began.elapsed();
    eprintln!(
        "wrote {commands} commands in {wrote:?} ({:.0}/s)",
        commands as f64 / wrote.as_secs_f64()
    );
    let every_node = deployment.nodes().to_vec();
    for node in &every_node {
        deployment.sigkill(node);
    }
    let restarted = Instant::now();
    deployment.start_nodes(&every_node);
    let ready = restarted.elapsed();
    let mut client = deployment.client();
    client.put(b"after-restart", b"ok").await.unwrap();
    eprintln!(
        "after SIGKILL of every node: all ready in {ready:?}, first put answered {:?} after the restart",
        restarted.elapsed()
    );
}

/// The catch-up benchmark of BENCHMARKS.md (not a test: it measures).
/// SIGKILLs n3 of a cluster-3 deployment, writes `BENCH_BEHIND_COMMANDS`
/// (default 1,000,000) 16-byte puts from 64 clients through the other two,
/// starts n3 again and prints how long until its learner has applied what
/// the others had, and until a read through n3 alone is answered.
///
/// `cargo test --release --workspace --test restart -- --ignored --nocapture bench_a_learner_far_behind`
#[tokio::test]
#[ignore = "a benchmark: run it by hand (see BENCHMARKS.md)"]
async fn bench_a_learner_far_behind_serves_again() {
    let commands = count_from_env("BENCH_BEHIND_COMMANDS");
    let mut deployment = Deployment::new(TestCluster::three_replicas("it"));
    deployment.start_all();
    deployment.sigkill("n3");
    let began = Instant::now();
    let (writers, _) = write_puts(&deployment, commands);
    for writer in writers {
        writer.await.unwrap();
    }
    eprintln!(
        "wrote {commands} commands with n3 down in {:?}",
        began.elapsed()
    );
    let n1 = deployment.client_of("n1");
    let target = applied(&n1, &deployment, "n1").await;
    let restarted = Instant::now();
    deployment.start("n3");
    let ready = restarted.elapsed();
    let n3 = deployment.client_of("n3");
    let mut shown = Instant::now();
    loop {
        let now = applied(&n3, &deployment, "n3").await;
        if now >= target {
            break;
        }
        if shown.elapsed() >= Duration::from_millis(250) {
            eprintln!("  {:?}: n3 applied up to {now}", restarted.elapsed());
            shown = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let caught_up = restarted.elapsed();
    let mut read = deployment.client_of("n3");
    read.get(b"k1").await.unwrap();
    eprintln!(
        "n3 was {target} slots behind: ready in {ready:?}, caught up in {caught_up:?}, \
         a read through n3 answered {:?} after the restart",
        restarted.elapsed()
    );
}

/// The slot `node`'s learner has applied up to, asked through `client`.
async fn applied(client: &synod_client::Client, deployment: &Deployment, node: &str) -> u64 {
    let endpoint = deployment.endpoint(node);
    match client.status_of(endpoint).await {
        Ok(report) => report.learners.first().map_or(0, |l| l.applied),
        Err(_) => 0,
    }
}
