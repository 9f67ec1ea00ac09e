//! Operations against real `synod node` processes: the admin server's
//! `/metrics` after 1,000 commands (parsed as Prometheus text), `/readyz`
//! through the loss and return of an acceptor majority, `synod status`'s
//! exit codes on healthy, degraded and no-quorum clusters, and the
//! dashboard in a real headless Chromium.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use synod_integration::Deployment;
use synod_testkit::TestCluster;

/// The longest any condition below may take to come true.
const PATIENCE: Duration = Duration::from_secs(30);

/// GET `path` of an admin server: (status code, body); code 0 when
/// nothing answered.
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    match agent.get(format!("http://{address}{path}")).call() {
        Ok(mut response) => {
            let code = response.status().as_u16();
            (
                code,
                response.body_mut().read_to_string().unwrap_or_default(),
            )
        }
        Err(error) => (0, error.to_string()),
    }
}

/// Check until `check` gives a value; panic with the last `what` after
/// [`PATIENCE`].
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("{what}: still {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn admin_cluster() -> Deployment {
    Deployment::new(TestCluster::three_replicas("it").admin_ports())
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the metrics page parses as Prometheus text")
}

/// The value of counter `name` (summed over its label sets).
fn counter(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Observations in histogram `name` (over its label sets).
fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_every_decided_command_and_time_every_fsync() {
    let mut deployment = admin_cluster();
    deployment.start_all();
    let mut client = deployment.client();
    for i in 0..1_000 {
        let key = format!("key-{i}");
        client.put(key.as_bytes(), b"v").await.expect("put");
    }
    for node in deployment.nodes().to_vec() {
        let admin = deployment.admin(&node);
        let metrics = eventually(&format!("{node} counts 1,000 decided commands"), || {
            let (code, body) = get(admin, "/metrics");
            let parsed = scrape(&body);
            let decided = counter(&parsed, "synod_commands_decided_total");
            match code == 200 && decided >= 1_000.0 {
                true => Ok(parsed),
                false => Err(format!("HTTP {code}, {decided} decided")),
            }
        });
        let fsyncs = histogram_count(&metrics, "synod_group_commit_fsync_seconds");
        assert!(fsyncs > 0.0, "{node}: no group commit timed");
        assert!(
            counter(&metrics, "synod_messages_sent_total") > 0.0,
            "{node}"
        );
        assert!(
            counter(&metrics, "synod_link_bytes_sent_total") > 0.0,
            "{node}"
        );
    }
    // The gateway of the nodes the client used timed its commands.
    let timed: f64 = deployment
        .nodes()
        .iter()
        .map(|node| {
            histogram_count(
                &scrape(&get(deployment.admin(node), "/metrics").1),
                "synod_command_seconds",
            )
        })
        .sum();
    assert!(timed >= 1_000.0, "{timed} commands timed");
}

fn ready(address: SocketAddr) -> Result<String, String> {
    match get(address, "/readyz") {
        (200, body) => Ok(body),
        (code, body) => Err(format!("HTTP {code}: {body}")),
    }
}

fn unready(address: SocketAddr) -> Result<String, String> {
    match get(address, "/readyz") {
        (503, body) => Ok(body),
        (code, body) => Err(format!("HTTP {code}: {body}")),
    }
}

#[tokio::test]
async fn readyz_follows_the_acceptor_majority() {
    let mut deployment = admin_cluster();
    deployment.start_all();
    let n1 = deployment.admin("n1");
    assert_eq!(get(n1, "/livez").0, 200);
    eventually("n1 ready", || ready(n1));
    deployment.sigkill("n2");
    // One of three acceptors lost: a majority is left.
    eventually("n1 ready with n2 down", || ready(n1));
    deployment.sigkill("n3");
    let reasons = eventually("n1 unready with n2 and n3 down", || unready(n1));
    assert!(reasons.contains("acceptors reachable"), "{reasons}");
    assert_eq!(get(n1, "/livez").0, 200, "still alive");
    deployment.start_nodes(&["n2".into(), "n3".into()]);
    eventually("n1 ready again", || ready(n1));
    let status: serde_json::Value = serde_json::from_str(&get(n1, "/status").1).unwrap();
    assert_eq!(status["acceptors"][0]["id"], "acceptor-1", "{status}");
    assert_eq!(status["peers"]["n2"], true, "{status}");
}

/// `synod status --config` of `deployment`: (exit code, stdout).
fn status(deployment: &Deployment, json: bool) -> (i32, String) {
    let mut command = Command::new(synod_integration::synod_binary());
    command
        .args(["status", "--config"])
        .arg(deployment.config_path());
    if json {
        command.arg("--json");
    }
    let out = command.output().expect("run synod status");
    let code = out.status.code().expect("exited");
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status_is(deployment: &Deployment, code: i32) -> String {
    eventually(&format!("synod status exits {code}"), || {
        match status(deployment, false) {
            (c, text) if c == code => Ok(text),
            (c, text) => Err(format!("exit {c}: {text}")),
        }
    })
}

#[tokio::test]
async fn status_exit_codes_follow_health_degradation_and_quorum() {
    let mut deployment = admin_cluster();
    deployment.start_all();
    let healthy = status_is(&deployment, 0);
    assert!(
        healthy.contains("Healthy") && healthy.contains("3 of 3 acceptors up"),
        "{healthy}"
    );
    let (_, json) = status(&deployment, true);
    let json: serde_json::Value = serde_json::from_str(&json).expect("--json is JSON");
    assert_eq!(json["verdict"], "healthy", "{json}");
    assert!(json["leader"]["proposer"].is_u64(), "{json}");
    deployment.sigkill("n3");
    let degraded = status_is(&deployment, 1);
    assert!(
        degraded.contains("n3: UNREACHABLE") && degraded.contains("2 of 3"),
        "{degraded}"
    );
    deployment.sigkill("n2");
    let lost = status_is(&deployment, 2);
    assert!(
        lost.contains("no quorum: 1 of 3 acceptors are up"),
        "{lost}"
    );
}

#[tokio::test]
async fn status_judges_split_roles_through_node_ports() {
    // Admin ports on the proposer and learner nodes only: the acceptor
    // nodes are judged by their node ports.
    let layout = TestCluster::split_roles("it");
    let mut deployment = Deployment::new(layout.admin_ports_on(&[
        "proposer-a",
        "proposer-b",
        "learner-a",
        "learner-b",
    ]));
    deployment.start_all();
    let healthy = status_is(&deployment, 0);
    assert!(healthy.contains("acceptor-a: listening"), "{healthy}");
    assert!(healthy.contains("leader proposer-"), "{healthy}");
    deployment.sigkill("acceptor-a");
    status_is(&deployment, 1);
    deployment.sigkill("acceptor-b");
    let lost = status_is(&deployment, 2);
    assert!(lost.contains("no quorum"), "{lost}");
}

/// Debian's Chromium, or `None` where it is missing; a test that needs it
/// fails instead when `CI` is set.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/chromium");
    if path.exists() {
        return Some(path);
    }
    synod_testkit::skip_unless_ci("/usr/bin/chromium is missing (apt-get install chromium)");
    None
}

/// Headless Chromium with the flags this machine's closed network needs.
fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// Where the dashboard screenshot goes: under the target directory.
fn screenshot_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let target = exe.ancestors().nth(3).expect("target/<profile>/deps/exe");
    target.join("dashboard.png")
}

#[tokio::test]
async fn the_dashboard_shows_the_leader_placement_and_learners_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let mut deployment = admin_cluster();
    deployment.start_all();
    let mut client = deployment.client();
    for i in 0..200 {
        client
            .put(format!("k{i}").as_bytes(), b"v")
            .await
            .expect("put");
    }
    let url = format!("http://{}/", deployment.admin("n1"));
    let profile = tempfile::tempdir().unwrap();
    // The page polls /cluster once a second; Chromium runs it for a few
    // seconds of virtual time, then prints the DOM it built.
    let dom = eventually("the dashboard names the leader", || {
        let out = headless(&chromium, profile.path())
            .args(["--virtual-time-budget=4000", "--dump-dom", &url])
            .output()
            .map_err(|e| e.to_string())?;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let leader = dom
            .split("id=\"leader\">")
            .nth(1)
            .is_some_and(|rest| rest.starts_with("proposer-"));
        match leader && dom.contains("verdict healthy") {
            true => Ok(dom),
            false => Err(format!("{} bytes of DOM without a leader", dom.len())),
        }
    });
    for expected in [
        "acceptor-3",
        "learner-2",
        "n3",
        "3 of 3 up (a majority is 2)",
    ] {
        assert!(dom.contains(expected), "the page lacks {expected:?}");
    }
    let shot = screenshot_path();
    let out = headless(&chromium, profile.path())
        .args(["--virtual-time-budget=4000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG: {}", shot.display());
    eprintln!("dashboard screenshot: {}", shot.display());
}
