//! Placement changes through `synod node` processes.
//!
//! A proposer moved to another node starts there on a new, empty store
//! (`--init`): it learns the highest round the acceptors promised before
//! its first ballot, so it never leads under a ballot it used on its old
//! node, and nothing acknowledged before the move is lost. The node it
//! left warns about the store left behind.

use std::time::{Duration, Instant};
use synod_integration::Deployment;
use synod_testkit::TestCluster;

const SETTLE: Duration = Duration::from_secs(60);

/// Slots the decided point proposers report may trail a learner's.
const SLACK: u64 = 50;

/// The ballot `(round, proposer)` of the proposer leading on `node`.
fn leading_ballot(deployment: &Deployment, node: &str) -> Option<(u64, u64)> {
    let status = deployment.admin_status(node)?;
    status["proposers"].as_array()?.iter().find_map(|p| {
        let ballot = p["ballot"].as_array()?;
        Some((ballot[0].as_u64()?, ballot[1].as_u64()?))
    })
}

/// Wait until some node's proposer leads; its node and ballot.
fn wait_for_leader(deployment: &Deployment) -> (String, (u64, u64)) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let leading = deployment
            .nodes()
            .iter()
            .find_map(|node| Some((node.clone(), leading_ballot(deployment, node)?)));
        if let Some(found) = leading {
            return found;
        }
        assert!(Instant::now() < deadline, "no leader within {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_proposer_moved_to_another_node_on_an_empty_store_leads_above_its_old_rounds() {
    let mut deployment = Deployment::new(TestCluster::three_replicas("it").admin_ports());
    deployment.start_all();
    let mut client = deployment.client();
    for i in 0..20 {
        let key = format!("before-{i}");
        client
            .put(key.as_bytes(), b"v1")
            .await
            .expect("acknowledged");
    }
    let (old_node, (old_round, proposer)) = wait_for_leader(&deployment);
    drop(client);
    deployment.stop_all();

    // The leader's proposer moves to the next node, and is the only
    // proposer left, so it must lead again, from a new store.
    let role = format!("proposer-{proposer}");
    let nodes = deployment.nodes().to_vec();
    let at = nodes.iter().position(|n| *n == old_node).expect("a node");
    let new_node = nodes[(at + 1) % nodes.len()].clone();
    deployment.edit_config(|text| {
        let mut lines = Vec::new();
        for line in text.lines() {
            let placed = line.trim_start().starts_with("proposer-");
            if !placed {
                lines.push(line.to_owned());
            } else if line.trim_start().starts_with(&format!("{role} ")) {
                lines.push(format!("{role} = \"{new_node}\""));
            }
        }
        lines.join("\n")
    });
    deployment.init_on_next_start(&new_node);
    deployment.start_all();

    let (leader, (round, leading)) = wait_for_leader(&deployment);
    assert_eq!((leader.as_str(), leading), (new_node.as_str(), proposer));
    assert!(
        round > old_round,
        "the moved proposer leads in round {round}, not above its old round {old_round}"
    );
    let mut client = deployment.client();
    for i in 0..20 {
        let key = format!("before-{i}");
        let value = client.get(key.as_bytes()).await.expect("a read");
        assert_eq!(value, b"v1", "{key} after the move");
        let key = format!("after-{i}");
        client
            .put(key.as_bytes(), b"v2")
            .await
            .expect("acknowledged");
    }
    for i in 0..20 {
        let key = format!("after-{i}");
        let value = client.get(key.as_bytes()).await.expect("a read");
        assert_eq!(value, b"v2", "{key}");
    }
    let log = deployment.log(&old_node);
    assert!(
        log.contains(&format!(
            "a store for {role} is in this node's data directory"
        )),
        "{old_node} warns about the store {role} left behind:\n{log}"
    );
}

/// `synod member ARGS --json` against the deployment's config (on the
/// blocking pool, so the load goes on); its JSON answer.
async fn member(deployment: &Deployment, args: &[&str]) -> serde_json::Value {
    let config = deployment.config_path().to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let run = move || member_command(&config, &args);
    tokio::task::spawn_blocking(run).await.expect("ran")
}

fn member_command(config: &std::path::Path, args: &[String]) -> serde_json::Value {
    let output = std::process::Command::new(synod_integration::synod_binary())
        .arg("--config")
        .arg(config)
        .args(["--json", "--timeout", "60s", "member"])
        .args(args)
        .output()
        .expect("synod runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "synod member {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The `kind` list (`acceptors`, `proposers`, `learners`, `standby`) of
/// a `synod member --json` answer.
fn names_of(members: &serde_json::Value, kind: &str) -> Vec<String> {
    let list = members[kind].as_array().expect("a list");
    list.iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// Writes keys `load-N` one after another until told to stop; the keys
/// acknowledged.
async fn write_until(
    mut client: synod_client::Client,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let key = format!("load-{n}");
        n += 1;
        if client.put(key.as_bytes(), b"x").await.is_ok() {
            acknowledged.push(key);
        }
    }
    acknowledged
}

#[tokio::test]
async fn acceptors_grow_to_five_shrink_back_and_replace_a_lost_one_under_load() {
    // Acceptor-only nodes a1..a5; a4 and a5 are standby (placed, not
    // voting). Proposers and learners on n1, n2.
    let cluster = TestCluster::new(
        "it",
        &[
            ("n1", &["proposer-1", "learner-1"]),
            ("n2", &["proposer-2", "learner-2"]),
            ("a1", &["acceptor-1"]),
            ("a2", &["acceptor-2"]),
            ("a3", &["acceptor-3"]),
            ("a4", &["acceptor-4"]),
            ("a5", &["acceptor-5"]),
        ],
    )
    .sections("[membership]\ninitial_acceptors = [1, 2, 3]");
    let mut deployment = Deployment::new(cluster);
    deployment.start_all();
    let mut client = deployment.client();
    let register = client.decide("owner", b"first").await.expect("decided");
    assert_eq!(register, b"first");

    let listed = member(&deployment, &["list"]).await;
    assert_eq!(listed["epoch"], 0);
    assert_eq!(
        names_of(&listed, "acceptors"),
        ["acceptor-1", "acceptor-2", "acceptor-3"]
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(write_until(deployment.client(), stop.clone()));

    // Grow to five, then shrink back to three without acceptors 1 and 2.
    let changes: [&[&str]; 4] = [
        &["add", "acceptor-4"],
        &["add", "acceptor-5"],
        &["remove", "acceptor-1"],
        &["remove", "acceptor-2"],
    ];
    let mut last = serde_json::Value::Null;
    for change in changes {
        last = member(&deployment, change).await;
        assert_eq!(last["registers_carried"], true, "{change:?}: {last}");
    }
    assert_eq!(last["epoch"], 4);
    assert_eq!(
        names_of(&last, "acceptors"),
        ["acceptor-3", "acceptor-4", "acceptor-5"]
    );

    // The removed acceptors are not needed any more.
    deployment.stop("a1");
    deployment.stop("a2");
    let key = b"after-shrink";
    client
        .put(key, b"v")
        .await
        .expect("acknowledged by 3, 4, 5");

    // Acceptor 3's disk is lost: it stays down, and acceptor 1 (whose
    // node comes back) takes its place.
    deployment.stop("a3");
    std::fs::remove_dir_all(deployment.data_dir("a3")).expect("wiped");
    deployment.start("a1");
    let replaced = member(&deployment, &["replace", "acceptor-3", "acceptor-1"]).await;
    assert_eq!(replaced["epoch"], 5);
    assert_eq!(
        names_of(&replaced, "acceptors"),
        ["acceptor-1", "acceptor-4", "acceptor-5"]
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.expect("the writer");
    assert!(
        acknowledged.len() > 10,
        "only {} writes",
        acknowledged.len()
    );
    for key in &acknowledged {
        let value = client.get(key.as_bytes()).await.expect("a read");
        assert_eq!(value, b"x", "{key}");
    }
    assert_eq!(client.get(key).await.expect("a read"), b"v");
    // The register chosen in epoch 0 keeps its value five epochs later.
    let again = client.decide("owner", b"second").await.expect("decided");
    assert_eq!(again, b"first");
}

/// The highest of `field` over the `kind` lines ("proposers",
/// "acceptors", "learners") of every running node's admin status.
fn highest(deployment: &Deployment, kind: &str, field: &str) -> u64 {
    let running = deployment
        .nodes()
        .iter()
        .filter(|n| deployment.is_running(n));
    running
        .filter_map(|node| deployment.admin_status(node))
        .flat_map(|status| status[kind].as_array().cloned().unwrap_or_default())
        .filter_map(|line| line[field].as_u64())
        .max()
        .unwrap_or(0)
}

/// Poll `done` until it holds, for at most `SETTLE`.
fn wait_until(what: &str, deployment: &Deployment, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within {SETTLE:?}:\n{}",
            deployment.post_mortem()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Multi-threaded: the test body polls admin ports (blocking) while the
// writer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposers_and_learners_join_and_leave_the_configuration_under_load() {
    // proposer-3 and learner-3 are standby at first; learners snapshot
    // every 20 commands, so the trim point moves with the load.
    let cluster = TestCluster::three_replicas("it")
        .admin_ports()
        .sections("[membership]\ninitial_proposers = [1, 2]\ninitial_learners = [1, 2]")
        .sections("[storage]\nsnapshot_every = 20");
    let mut deployment = Deployment::new(cluster);
    deployment.start_all();
    let mut client = deployment.client();
    client.put(b"first", b"v").await.expect("acknowledged");
    let listed = member(&deployment, &["list"]).await;
    assert_eq!(names_of(&listed, "proposers"), ["proposer-1", "proposer-2"]);
    assert_eq!(names_of(&listed, "learners"), ["learner-1", "learner-2"]);
    assert_eq!(names_of(&listed, "standby"), ["proposer-3", "learner-3"]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(write_until(deployment.client(), stop.clone()));

    // Proposers: proposer-3 joins, then the leader leaves; another leads.
    member(&deployment, &["add", "proposer-3"]).await;
    let (old_node, (_, old_leader)) = wait_for_leader(&deployment);
    let removed = format!("proposer-{old_leader}");
    let after = member(&deployment, &["remove", &removed]).await;
    assert!(!names_of(&after, "proposers").contains(&removed), "{after}");
    wait_until("another proposer leads", &deployment, || {
        deployment.leader().is_some_and(|node| node != old_node)
    });
    assert_eq!(
        leading_ballot(&deployment, &old_node),
        None,
        "{removed} leads no more"
    );

    // Learners: with learner-3 in the configuration and its node down,
    // nothing is trimmed past what it may have applied; once it is
    // removed, trimming goes on without it.
    member(&deployment, &["add", "learner-3"]).await;
    deployment.stop("n3");
    let decided_when_stopped = highest(&deployment, "proposers", "decided_upto");
    let bound = decided_when_stopped + SLACK;
    wait_until("200 more slots decided", &deployment, || {
        highest(&deployment, "proposers", "decided_upto") > bound + 200
    });
    // What the proposers report decided may lag what learner-3 applied by
    // a few slots (never past a stop sign, see ARCHITECTURE.md); with
    // learner-3 not counted, the trim would follow learners 1 and 2,
    // 200 slots further.
    let trimmed = highest(&deployment, "acceptors", "trimmed_below");
    assert!(
        trimmed <= bound,
        "trimmed below {trimmed} while learner-3 (down near slot {decided_when_stopped}) counts"
    );
    let after = member(&deployment, &["remove", "learner-3"]).await;
    assert_eq!(names_of(&after, "learners"), ["learner-1", "learner-2"]);
    wait_until("trimming past learner-3", &deployment, || {
        highest(&deployment, "acceptors", "trimmed_below") > bound
    });

    // learner-3, standby now, comes back behind the trim point: it
    // catches up from a peer's snapshot and serves reads again.
    deployment.start("n3");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.expect("the writer");
    assert!(
        acknowledged.len() > 200,
        "only {} writes",
        acknowledged.len()
    );
    let mut on_n3 = deployment.client_of("n3");
    for key in &acknowledged {
        let value = on_n3.get(key.as_bytes()).await.expect("a read on n3");
        assert_eq!(value, b"x", "{key}");
    }
    assert_eq!(on_n3.get(b"first").await.expect("a read"), b"v");
}

/// The roles `node` runs, as its admin server reports them.
fn roles_on(deployment: &Deployment, node: &str) -> Vec<String> {
    deployment.admin_roles(node, "roles")
}

// Multi-threaded: the test body polls admin ports (blocking) while the
// writer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_s_proposer_moves_to_a_node_without_one_through_the_log_under_load() {
    // n3 runs only a learner at first; the config file is never edited.
    let cluster = TestCluster::new(
        "it",
        &[
            ("n1", &["proposer-1", "learner-1"]),
            ("n2", &["proposer-2", "learner-2"]),
            ("n3", &["learner-3"]),
            ("a1", &["acceptor-1"]),
            ("a2", &["acceptor-2"]),
            ("a3", &["acceptor-3"]),
        ],
    )
    .admin_ports();
    let mut deployment = Deployment::new(cluster);
    deployment.start_all();
    let mut client = deployment.client();
    client.put(b"first", b"v").await.expect("acknowledged");
    let (old_node, (old_round, leader)) = wait_for_leader(&deployment);
    let moving = format!("proposer-{leader}");
    let other = if old_node == "n1" { "n2" } else { "n1" };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(write_until(deployment.client(), stop.clone()));

    // The leader's own proposer moves: its node stops it, n3 starts it.
    let moved = member(&deployment, &["move", &moving, "n3"]).await;
    assert_eq!(moved["epoch"], 1, "{moved}");
    assert_eq!(moved["moved"][&moving], "n3", "{moved}");
    wait_until("the proposer runs on n3 only", &deployment, || {
        roles_on(&deployment, "n3").contains(&moving)
            && !roles_on(&deployment, &old_node).contains(&moving)
    });

    // With the other proposer's node down, only the moved one can lead:
    // from its new, empty store, above the rounds it used before.
    deployment.stop(other);
    wait_until("the moved proposer leads", &deployment, || {
        leading_ballot(&deployment, "n3").is_some()
    });
    let (round, proposer) = leading_ballot(&deployment, "n3").expect("leading");
    assert_eq!(proposer, leader);
    assert!(
        round > old_round,
        "it leads in round {round}, not above its old round {old_round}"
    );
    let after_move = highest(&deployment, "learners", "applied");
    wait_until(
        "commands decided under the moved leader",
        &deployment,
        || highest(&deployment, "learners", "applied") > after_move + 40,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.expect("the writer");
    assert!(
        acknowledged.len() > 20,
        "only {} writes",
        acknowledged.len()
    );

    // Restarts follow the log's placement, not the file's: each node kept
    // the move in its data directory.
    deployment.stop(&old_node);
    deployment.stop("n3");
    deployment.start_nodes(&[old_node.clone(), "n3".to_owned(), other.to_owned()]);
    wait_until("the placement survives restarts", &deployment, || {
        roles_on(&deployment, "n3").contains(&moving)
            && !roles_on(&deployment, &old_node).is_empty()
            && !roles_on(&deployment, &old_node).contains(&moving)
    });
    for key in &acknowledged {
        let value = client.get(key.as_bytes()).await.expect("a read");
        assert_eq!(value, b"x", "{key}");
    }
    assert_eq!(client.get(b"first").await.expect("a read"), b"v");

    // Moving it back to the config file's node empties the list; it runs
    // on its old store there again.
    let back = member(&deployment, &["move", &moving, &old_node]).await;
    assert_eq!(back["epoch"], 2, "{back}");
    assert_eq!(back["moved"], serde_json::json!({}), "{back}");
    wait_until(
        "the proposer runs on its first node again",
        &deployment,
        || {
            roles_on(&deployment, &old_node).contains(&moving)
                && !roles_on(&deployment, "n3").contains(&moving)
        },
    );
    client.put(b"last", b"v").await.expect("acknowledged");
    assert_eq!(client.get(b"last").await.expect("a read"), b"v");
    let log = deployment.log("n3");
    assert!(
        log.contains(&format!("{moving} moved to another node: stopped here")),
        "n3 stopped {moving} when the log moved it back:\n{log}"
    );
}

// Multi-threaded: the test body polls admin ports (blocking) while the
// writer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_moves_to_a_spare_node_through_the_log_and_catches_up_there() {
    // n4 is a spare node: declared, running, hosting nothing. Learners
    // snapshot every 20 commands, so the acceptors trim and the moved
    // learner, on an empty store, starts from a peer's snapshot.
    let cluster = TestCluster::new(
        "it",
        &[
            ("n1", &["proposer-1", "acceptor-1", "learner-1"]),
            ("n2", &["proposer-2", "acceptor-2", "learner-2"]),
            ("n3", &["proposer-3", "acceptor-3", "learner-3"]),
            ("n4", &[]),
        ],
    )
    .admin_ports()
    .sections("[storage]\nsnapshot_every = 20");
    let mut deployment = Deployment::new(cluster);
    deployment.start_all();
    let mut client = deployment.client();
    for i in 0..100 {
        let key = format!("before-{i}");
        client
            .put(key.as_bytes(), b"v")
            .await
            .expect("acknowledged");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(write_until(deployment.client(), stop.clone()));

    let moved = member(&deployment, &["move", "learner-3", "n4"]).await;
    assert_eq!(moved["moved"]["learner-3"], "n4", "{moved}");
    wait_until("learner-3 runs on n4 only", &deployment, || {
        roles_on(&deployment, "n4").contains(&"learner-3".to_owned())
            && !roles_on(&deployment, "n3").contains(&"learner-3".to_owned())
    });
    let at_move = highest(&deployment, "learners", "applied");
    let applied_by_learner_3 = || {
        let status = deployment.admin_status("n4")?;
        let learners = status["learners"].as_array()?;
        let line = learners.iter().find(|l| l["id"] == "learner-3")?;
        line["applied"].as_u64()
    };
    wait_until("learner-3 catches up on its new node", &deployment, || {
        applied_by_learner_3().is_some_and(|applied| applied > at_move)
    });
    wait_until("more writes decided after the move", &deployment, || {
        highest(&deployment, "learners", "applied") > at_move + 40
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.expect("the writer");
    assert!(
        acknowledged.len() > 10,
        "only {} writes",
        acknowledged.len()
    );

    // n3 has no learner now: reads go through the others; after a
    // restart n4 still runs learner-3 (the move is in its record).
    deployment.stop("n4");
    deployment.start("n4");
    wait_until("learner-3 runs on n4 after a restart", &deployment, || {
        roles_on(&deployment, "n4").contains(&"learner-3".to_owned())
    });
    for key in acknowledged
        .iter()
        .chain(&["before-0".to_owned(), "before-99".to_owned()])
    {
        let value = client.get(key.as_bytes()).await.expect("a read");
        assert!(value == b"x" || value == b"v", "{key}: {value:?}");
    }
    let listed = member(&deployment, &["list"]).await;
    assert_eq!(listed["moved"]["learner-3"], "n4", "{listed}");
}
