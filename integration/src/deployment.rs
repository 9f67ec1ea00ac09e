//! The harness of the process tests: a config written for a test cluster,
//! `synod node` processes started from it, and a client for them. With
//! [`Deployment::with_faults`] every node-to-node link runs through a
//! [`FaultNet`] proxy: each node gets its own config file in which the
//! other nodes' addresses are the proxies of its links to them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use synod_client::{Client, ClientConfig};
use synod_testkit::TestCluster;
use tempfile::TempDir;

use crate::proxy::FaultNet;

const START_LIMIT: Duration = Duration::from_secs(60);

/// The `synod` binary cargo built next to this test.
pub fn synod_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = dir.join("synod");
    assert!(
        binary.exists(),
        "build the synod binary first (cargo test --workspace does): {}",
        binary.display()
    );
    binary
}

/// Where a node's log goes: `BENCH_NODE_LOGS/<node>.log` when that is set
/// (to see what a benchmark's nodes did), else `<node>.log` in the
/// deployment's directory (printed when the node fails to start).
fn node_log_path(dir: &Path, node: &str) -> PathBuf {
    match std::env::var_os("BENCH_NODE_LOGS") {
        Some(logs) => Path::new(&logs).join(format!("{node}.log")),
        None => dir.join(format!("{node}.log")),
    }
}

fn node_log(path: &Path) -> Stdio {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
/// How many of process `pid`'s threads wait where, from /proc (`wchan`,
/// e.g. `request_wait_answer` for a FUSE call): what a node that stopped
/// answering is stuck on.
fn thread_states(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "gone".into();
    };
    let mut waits: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks.flatten() {
        let wchan = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
        let wait = if wchan.is_empty() || wchan == "0" {
            "running".to_owned()
        } else {
            wchan
        };
        *waits.entry(wait).or_default() += 1;
    }
    format!("{waits:?}")
}

/// Every thread's backtrace of process `pid` into `out`, by gdb when it
/// is installed (a post-mortem aid: false without gdb or on failure).
fn write_stacks(pid: u32, out: &Path) -> bool {
    let Ok(file) = std::fs::File::create(out) else {
        return false;
    };
    Command::new("timeout")
        .args([
            "30",
            "gdb",
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt 40",
        ])
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A test cluster's config on disk and its running `synod node` processes.
pub struct Deployment {
    dir: TempDir,
    config: PathBuf,
    nodes: Vec<String>,
    clients: Vec<SocketAddr>,
    admins: BTreeMap<String, SocketAddr>,
    processes: BTreeMap<String, Child>,
    /// Nodes started at least once (later starts go without `--init`).
    initialized: BTreeSet<String>,
    /// Each node's own config file, where its links go through `net`.
    node_configs: BTreeMap<String, PathBuf>,
    /// The proxies of every node-to-node link (with `with_faults`).
    net: Option<FaultNet>,
}

/// A started process whose ready line has not been seen yet.
pub struct Starting {
    node: String,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Deployment {
    /// Write the config of `cluster`; nodes hosting a learner get a client port.
    pub fn new(cluster: TestCluster) -> Self {
        Self::build(cluster, None)
    }

    /// [`Deployment::new`] with every node-to-node link through a proxy of
    /// a [`FaultNet`] (faults drawn from `seed`), and an admin server on
    /// every node (to find the leader and compare the learners).
    pub fn with_faults(cluster: TestCluster, seed: u64) -> Self {
        Self::build(cluster.admin_ports(), Some(seed))
    }

    fn build(cluster: TestCluster, fault_seed: Option<u64>) -> Self {
        let dir = TempDir::new().unwrap();
        let nodes = cluster.node_names();
        let rendered = cluster
            .client_ports()
            .paxos("election_timeout_min", "\"150ms\"")
            .paxos("election_timeout_max", "\"300ms\"")
            .transport("reconnect_max", "\"200ms\"")
            .render(dir.path());
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, &rendered.toml).unwrap();
        let mut node_configs = BTreeMap::new();
        let net = fault_seed.map(|seed| FaultNet::new(&rendered.listen_addresses, seed));
        if let Some(net) = &net {
            for node in &nodes {
                let path = dir.path().join(format!("{node}.toml"));
                std::fs::write(&path, net.config_for(node, &rendered.toml)).unwrap();
                node_configs.insert(node.clone(), path);
            }
        }
        Deployment {
            dir,
            config,
            nodes,
            clients: rendered.client_addresses,
            admins: rendered.admin_addresses,
            processes: BTreeMap::new(),
            initialized: BTreeSet::new(),
            node_configs,
            net,
        }
    }

    /// The fault proxies (of a deployment made by `with_faults`).
    pub fn net(&self) -> &FaultNet {
        self.net.as_ref().expect("a deployment made with_faults")
    }

    /// The config file `node` runs with.
    fn config_of(&self, node: &str) -> &Path {
        self.node_configs.get(node).unwrap_or(&self.config)
    }

    /// Start `node` and wait for its ready line.
    pub fn start(&mut self, node: &str) {
        self.start_nodes(&[node.to_owned()]);
    }

    /// Start `nodes` together, then wait until each is ready (a node waits
    /// for a leader, a while, before it says so).
    pub fn start_nodes(&mut self, nodes: &[String]) {
        if let Err(why) = self.try_start_nodes(nodes) {
            panic!("{why}");
        }
    }

    /// Start `node` with `--init` next time, as a node that gains a role
    /// it never hosted before (the missing store is created).
    pub fn init_on_next_start(&mut self, node: &str) {
        self.initialized.remove(node);
    }

    /// [`Deployment::start_nodes`], saying which node did not become
    /// ready (and how its log ends) instead of panicking.
    pub fn try_start_nodes(&mut self, nodes: &[String]) -> Result<(), String> {
        let starting: Vec<Starting> = nodes.iter().map(|node| self.spawn(node)).collect();
        let mut first_failure = Ok(());
        for one in starting {
            let ready = self.wait_ready(one);
            first_failure = first_failure.and(ready);
        }
        first_failure
    }

    /// Spawn `node`: with `--init` the first time (a brand-new member),
    /// without on every restart (its stores must be there).
    fn spawn(&mut self, node: &str) -> Starting {
        let first = self.initialized.insert(node.to_owned());
        let mut command = Command::new(synod_binary());
        command
            .args(["node", "--config"])
            .arg(self.config_of(node))
            .args(["--node", node]);
        if first {
            command.arg("--init");
        }
        let log = node_log_path(self.dir.path(), node);
        let mut child = command
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(node_log(&log))
            .spawn()
            .expect("spawn synod node");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Starting {
            node: node.to_owned(),
            child,
            lines: rx,
        }
    }

    fn wait_ready(&mut self, starting: Starting) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        let Starting {
            node,
            mut child,
            lines,
        } = starting;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("ready") => break,
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = node_log_path(self.dir.path(), &node);
                    return Err(format!(
                        "{node} never became ready: {e}; its log ends:\n{}",
                        tail(&log, 30)
                    ));
                }
            }
        }
        self.processes.insert(node, child);
        Ok(())
    }

    /// Start `node` (without `--init`) expecting it to refuse: it must
    /// exit unsuccessfully within the start limit. Returns its stderr.
    pub fn start_refused(&self, node: &str) -> String {
        self.start_refused_with(node, &[])
    }

    /// [`Deployment::start_refused`] with extra arguments (`--init`).
    pub fn start_refused_with(&self, node: &str, args: &[&str]) -> String {
        let mut child = Command::new(synod_binary())
            .args(["node", "--config"])
            .arg(self.config_of(node))
            .args(["--node", node])
            .args(args)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn synod node");
        let mut stderr = child.stderr.take().unwrap();
        let pid = child.id().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            let _ = tx.send((child.wait(), text));
        });
        let Ok((status, text)) = rx.recv_timeout(START_LIMIT) else {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("{node} was expected to refuse to start but kept running");
        };
        let status = status.unwrap();
        assert!(!status.success(), "{node} exited successfully: {text}");
        text
    }

    /// Stop `node` with SIGTERM (a clean shutdown) and reap it.
    pub fn stop(&mut self, node: &str) {
        let child = self.processes.remove(node).expect("running");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut child = child;
        child.wait().unwrap();
    }

    /// Stop every running node cleanly.
    pub fn stop_all(&mut self) {
        for node in self.processes.keys().cloned().collect::<Vec<_>>() {
            self.stop(&node);
        }
    }

    /// Rewrite the config file (for nodes started after this).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
    }

    /// Everything `node` has written to its log (stderr) so far, across
    /// its restarts.
    pub fn log(&self, node: &str) -> String {
        std::fs::read_to_string(node_log_path(self.dir.path(), node)).unwrap_or_default()
    }

    /// `node`'s data directory.
    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    /// Start every node of the layout.
    pub fn start_all(&mut self) {
        self.start_nodes(&self.nodes.clone());
    }

    /// The node names, in layout order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// SIGKILL `node` and reap it.
    pub fn sigkill(&mut self, node: &str) {
        let mut child = self.processes.remove(node).expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Whether `node`'s process is running (started and not killed).
    pub fn is_running(&self, node: &str) -> bool {
        self.processes.contains_key(node)
    }

    /// Freeze `node` with SIGSTOP: its sockets stay open, nothing moves.
    pub fn pause(&self, node: &str) {
        self.signal(node, "-STOP");
    }

    /// Thaw a paused `node` with SIGCONT.
    pub fn resume(&self, node: &str) {
        self.signal(node, "-CONT");
    }

    fn signal(&self, node: &str, signal: &str) {
        let pid = self.processes.get(node).expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} {node}");
    }

    /// `node`'s admin `/status`, as JSON (`None`: no answer within 1 s).
    pub fn admin_status(&self, node: &str) -> Option<serde_json::Value> {
        let url = format!("http://{}/status", self.admins.get(node)?);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(1)))
            .build()
            .into();
        let mut response = agent.get(&url).call().ok()?;
        let text = response.body_mut().read_to_string().ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The role names listed under `field` (`"roles"`, `"stopped"`) in
    /// `node`'s admin `/status` (empty when it does not answer).
    pub fn admin_roles(&self, node: &str, field: &str) -> Vec<String> {
        let Some(status) = self.admin_status(node) else {
            return Vec::new();
        };
        let listed = status[field].as_array().cloned().unwrap_or_default();
        listed
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    }

    /// What every node says about itself, for a failure message: its admin
    /// `/status` (roles, ballots, promises, applied slots) and its
    /// group-commit fsync figures from `/metrics`.
    pub fn post_mortem(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let status = self.admin_status(node).map_or_else(
                || "no answer (down, or no admin port)".to_owned(),
                |s| s.to_string(),
            );
            let _ = writeln!(text, "{node}: {status}");
            if let Some(child) = self.processes.get(node) {
                let _ = writeln!(text, "  threads: {}", thread_states(child.id()));
                let stacks = self.dir.path().join(format!("{node}.stacks"));
                if write_stacks(child.id(), &stacks) {
                    let _ = writeln!(text, "  stacks: {}", stacks.display());
                }
            }
            for line in self.admin_metrics(node).lines().filter(|l| {
                l.starts_with("synod_group_commit_fsync_seconds_")
                    || l.starts_with("synod_group_commit_failures_total")
            }) {
                let _ = writeln!(text, "  {line}");
            }
        }
        text
    }

    fn admin_metrics(&self, node: &str) -> String {
        let Some(admin) = self.admins.get(node) else {
            return String::new();
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(1)))
            .build()
            .into();
        let url = format!("http://{admin}/metrics");
        agent
            .get(&url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    }

    /// The node whose proposer leads, as its admin server reports.
    pub fn leader(&self) -> Option<String> {
        self.processes.keys().find_map(|node| {
            let status = self.admin_status(node)?;
            let leads = status["proposers"]
                .as_array()?
                .iter()
                .any(|p| !p["ballot"].is_null());
            leads.then(|| node.clone())
        })
    }

    /// Every running learner's `(learner, applied slot, log digest)`.
    pub fn learner_progress(&self) -> Vec<(String, u64, u64)> {
        let mut progress = Vec::new();
        for node in self.processes.keys() {
            let Some(status) = self.admin_status(node) else {
                continue;
            };
            for learner in status["learners"].as_array().into_iter().flatten() {
                progress.push((
                    learner["id"].as_str().unwrap_or("?").to_owned(),
                    learner["applied"].as_u64().unwrap_or(0),
                    learner["log_digest"].as_u64().unwrap_or(0),
                ));
            }
        }
        progress
    }

    /// The learners of every node in the layout (`learner-N`).
    pub fn learner_count(&self) -> usize {
        let text = std::fs::read_to_string(&self.config).unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with("learner-"))
            .count()
    }

    /// Resident memory of `node`'s process, in bytes (from /proc).
    pub fn rss_bytes(&self, node: &str) -> Option<u64> {
        let pid = self.processes.get(node)?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Bytes of every file under `node`'s data directory.
    pub fn disk_bytes(&self, node: &str) -> u64 {
        fn walk(path: &std::path::Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else {
                return 0;
            };
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir.path().join(node))
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `node`'s admin server (with [`TestCluster::admin_ports`]).
    pub fn admin(&self, node: &str) -> SocketAddr {
        self.admins[node]
    }

    /// `node`'s client port (in a layout where every node has one).
    pub fn endpoint(&self, node: &str) -> SocketAddr {
        let index = self.nodes.iter().position(|n| n == node).expect("a node");
        self.clients[index]
    }

    /// A client of `node`'s client port only (in a layout where every node
    /// has one).
    pub fn client_of(&self, node: &str) -> Client {
        let index = self.nodes.iter().position(|n| n == node).expect("a node");
        let mut config = ClientConfig::new(vec![self.clients[index]], "it");
        config.timeout = Duration::from_secs(30);
        Client::new(config)
    }

    /// Every client port (the nodes that host a learner), in layout order.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.clients
    }

    /// A client of every client port, patient enough for a failover.
    pub fn client(&self) -> Client {
        let mut config = ClientConfig::new(self.clients.clone(), "it");
        config.timeout = Duration::from_secs(30);
        config.attempt_timeout = Duration::from_secs(2);
        Client::new(config)
    }
}

impl Drop for Deployment {
    /// Kills every node. After a failed check (a panic) the directory,
    /// with every node's config and log, stays for the post-mortem.
    fn drop(&mut self) {
        for child in self.processes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "deployment kept for inspection: {}",
                self.dir.path().display()
            );
        }
    }
}
