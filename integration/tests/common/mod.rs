//! The harness of the process tests: a config written for a test cluster,
//! `synod node` processes started from it, and a client for them.
// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use synod_client::{Client, ClientConfig};
use synod_testkit::TestCluster;
use tempfile::TempDir;

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
/// (to see what a benchmark's nodes did), else nowhere.
fn node_log(node: &str) -> Stdio {
    let Ok(dir) = std::env::var("BENCH_NODE_LOGS") else {
        return Stdio::null();
    };
    let path = std::path::Path::new(&dir).join(format!("{node}.log"));
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    }
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
        let dir = TempDir::new().unwrap();
        let nodes = cluster.node_names();
        let rendered = cluster
            .client_ports()
            .paxos("election_timeout_min", "\"150ms\"")
            .paxos("election_timeout_max", "\"300ms\"")
            .transport("reconnect_max", "\"200ms\"")
            .render(dir.path());
        let (text, clients, admins) = (
            rendered.toml,
            rendered.client_addresses,
            rendered.admin_addresses,
        );
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).unwrap();
        Deployment {
            dir,
            config,
            nodes,
            clients,
            admins,
            processes: BTreeMap::new(),
            initialized: BTreeSet::new(),
        }
    }

    /// Start `node` and wait for its ready line.
    pub fn start(&mut self, node: &str) {
        let starting = self.spawn(node);
        self.wait_ready(starting);
    }

    /// Start `nodes` together, then wait until each is ready (a node waits
    /// for a leader, a while, before it says so).
    pub fn start_nodes(&mut self, nodes: &[String]) {
        let starting: Vec<Starting> = nodes.iter().map(|node| self.spawn(node)).collect();
        for one in starting {
            self.wait_ready(one);
        }
    }

    /// Spawn `node`: with `--init` the first time (a brand-new member),
    /// without on every restart (its stores must be there).
    fn spawn(&mut self, node: &str) -> Starting {
        let first = self.initialized.insert(node.to_owned());
        let mut command = Command::new(synod_binary());
        command
            .args(["node", "--config"])
            .arg(&self.config)
            .args(["--node", node]);
        if first {
            command.arg("--init");
        }
        let mut child = command
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(node_log(node))
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

    fn wait_ready(&mut self, starting: Starting) {
        let deadline = Instant::now() + START_LIMIT;
        let node = starting.node;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match starting.lines.recv_timeout(left) {
                Ok(line) if line.contains("ready") => break,
                Ok(_) => continue,
                Err(e) => panic!("{node} never became ready: {e}"),
            }
        }
        self.processes.insert(node, starting.child);
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
            .arg(&self.config)
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

    /// A client of every client port, patient enough for a failover.
    pub fn client(&self) -> Client {
        let mut config = ClientConfig::new(self.clients.clone(), "it");
        config.timeout = Duration::from_secs(30);
        config.attempt_timeout = Duration::from_secs(2);
        Client::new(config)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for child in self.processes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
