//! Real `synod node` processes: the 3 of a cluster-3 layout and the 7 of a
//! split-roles layout, a workload through synod-client, one acceptor
//! process SIGKILLed and restarted mid-load, every acknowledged write read
//! back afterwards.

use std::collections::BTreeMap;
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
fn synod_binary() -> PathBuf {
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

struct Deployment {
    dir: TempDir,
    config: PathBuf,
    nodes: Vec<String>,
    clients: Vec<SocketAddr>,
    processes: BTreeMap<String, Child>,
}

impl Deployment {
    /// Write the config of `cluster`; nodes hosting a learner get a client port.
    fn new(cluster: TestCluster) -> Self {
        let dir = TempDir::new().unwrap();
        let nodes = cluster.node_names();
        let rendered = cluster
            .client_ports()
            .paxos("election_timeout_min", "\"150ms\"")
            .paxos("election_timeout_max", "\"300ms\"")
            .transport("reconnect_max", "\"200ms\"")
            .render(dir.path());
        let (text, clients) = (rendered.toml, rendered.client_addresses);
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).unwrap();
        Deployment {
            dir,
            config,
            nodes,
            clients,
            processes: BTreeMap::new(),
        }
    }

    fn start(&mut self, node: &str) {
        let mut child = Command::new(synod_binary())
            .args(["node", "--config"])
            .arg(&self.config)
            .args(["--node", node])
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn synod node");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("ready") => break,
                Ok(_) => continue,
                Err(e) => panic!("{node} never became ready: {e}"),
            }
        }
        self.processes.insert(node.to_owned(), child);
    }

    fn start_all(&mut self) {
        for node in self.nodes.clone() {
            self.start(&node);
        }
    }

    fn sigkill(&mut self, node: &str) {
        let mut child = self.processes.remove(node).expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn client(&self) -> Client {
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
