//! # synod-testkit: test clusters on loopback
//!
//! Owns the one way Synod's tests describe a cluster: a layout of nodes and
//! the role instances on each, rendered to a config TOML with free
//! loopback ports, data directories under a temporary root, and timings
//! short enough for tests. It depends on no Synod crate, so in-process
//! tests parse the text with `SynodConfig::from_toml_str` and process
//! tests write it to a file for `synod node --config`.
//!
//! [`SmallDisk`] mounts a small tmpfs where a test needs a disk that fills
//! up; [`TestCa`] issues certificates for TLS tests.
//!
//! ```
//! use synod_testkit::TestCluster;
//! let rendered = TestCluster::three_replicas("demo")
//!     .client_ports()
//!     .paxos("submit_retry", "\"300ms\"")
//!     .render(std::path::Path::new("/tmp/demo"));
//! assert!(rendered.toml.contains("learner-3 = \"n3\""));
//! assert_eq!(rendered.client_addresses.len(), 3);
//! ```
#![deny(missing_docs)]

mod ports;
mod tls;
pub use tls::{Issued, TestCa};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

/// A small tmpfs mounted on a directory for one test, unmounted when
/// dropped: a disk that fills up.
#[derive(Debug)]
pub struct SmallDisk {
    at: std::path::PathBuf,
}

impl SmallDisk {
    /// Mount a tmpfs of `size` (e.g. `"8m"`) on the existing directory
    /// `at`. `None` where this process may not mount (not root): the
    /// caller then says so and skips. CI runs as root, where it mounts.
    pub fn mount_at(at: &Path, size: &str) -> Option<Self> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Self {
            at: at.to_path_buf(),
        })
    }

    /// [`Self::mount_at`] for a test that needs the disk: where it cannot
    /// mount, the test is skipped with a line saying so, except when `CI`
    /// is set: a test that must run in CI fails there instead (panics).
    pub fn mount_or_skip(at: &Path, size: &str) -> Option<Self> {
        let disk = Self::mount_at(at, size);
        if disk.is_none() {
            skip_unless_ci(&format!(
                "cannot mount a {size} tmpfs at {} (needs root)",
                at.display()
            ));
        }
        disk
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a store still closing must not keep the mount around.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// A test that cannot run here says `skipped: why` and returns, except
/// when `CI` is set: a test that must run in CI fails there instead
/// (this panics).
pub fn skip_unless_ci(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}; CI is set, so this test must run"
    );
    eprintln!("skipped: {why}");
}

/// A loopback port for a test listener, free when returned, never handed
/// out twice in one process, and outside the kernel's ephemeral range (so
/// no outgoing connection takes it before the listener binds): see
/// `ports.rs`.
pub fn free_port() -> u16 {
    ports::test_port()
}

/// Test timings: elections in a few hundred milliseconds, quick reconnects.
const PAXOS: [(&str, &str); 6] = [
    ("heartbeat_interval", "\"20ms\""),
    ("election_timeout_min", "\"100ms\""),
    ("election_timeout_max", "\"200ms\""),
    ("retransmit_interval", "\"100ms\""),
    ("submit_retry", "\"500ms\""),
    ("submit_timeout", "\"20s\""),
];
const TRANSPORT: [(&str, &str); 2] = [
    ("reconnect_min", "\"10ms\""),
    ("reconnect_max", "\"100ms\""),
];

/// A cluster layout plus the settings a test changes.
#[derive(Clone, Debug)]
pub struct TestCluster {
    id: String,
    nodes: Vec<(String, Vec<String>)>,
    client_ports: bool,
    admin_nodes: BTreeSet<String>,
    tls: Option<(std::path::PathBuf, BTreeMap<String, Issued>)>,
    client_token: Option<String>,
    paxos: BTreeMap<String, String>,
    transport: BTreeMap<String, String>,
    sections: String,
}

/// A rendered config and the client addresses it assigned.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The config file's text.
    pub toml: String,
    /// Client ports, in node order (only nodes hosting a learner have one).
    pub client_addresses: Vec<SocketAddr>,
    /// Admin HTTP servers, by node (with [`TestCluster::admin_ports`]).
    pub admin_addresses: BTreeMap<String, SocketAddr>,
    /// Each node's `listen` address (its node-to-node port), by node.
    pub listen_addresses: BTreeMap<String, SocketAddr>,
}

impl TestCluster {
    /// Cluster `id` with `layout`: each node's name and its role instances
    /// (`"acceptor-1"`).
    pub fn new(id: &str, layout: &[(&str, &[&str])]) -> Self {
        let owned = |values: &[(&str, &str)]| -> BTreeMap<String, String> {
            values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Self {
            id: id.to_owned(),
            nodes: layout
                .iter()
                .map(|(node, roles)| {
                    let roles = roles.iter().map(|r| (*r).to_owned()).collect();
                    ((*node).to_owned(), roles)
                })
                .collect(),
            client_ports: false,
            admin_nodes: BTreeSet::new(),
            tls: None,
            client_token: None,
            paxos: owned(&PAXOS),
            transport: owned(&TRANSPORT),
            sections: String::new(),
        }
    }

    /// Nodes n1..n3, each running proposer, acceptor and learner N.
    pub fn three_replicas(id: &str) -> Self {
        Self::new(
            id,
            &[
                ("n1", &["proposer-1", "acceptor-1", "learner-1"]),
                ("n2", &["proposer-2", "acceptor-2", "learner-2"]),
                ("n3", &["proposer-3", "acceptor-3", "learner-3"]),
            ],
        )
    }

    /// Nodes n1..n5, each running proposer, acceptor and learner N: a
    /// majority of 3 survives two failures.
    pub fn five_replicas(id: &str) -> Self {
        let roles: Vec<(String, Vec<String>)> = (1..=5)
            .map(|i| {
                let roles = ["proposer", "acceptor", "learner"].map(|r| format!("{r}-{i}"));
                (format!("n{i}"), roles.to_vec())
            })
            .collect();
        Self {
            nodes: roles,
            ..Self::three_replicas(id)
        }
    }

    /// The split-roles layout of `configs/split-roles.toml`: three acceptor
    /// nodes, two proposer nodes, two learner nodes.
    pub fn split_roles(id: &str) -> Self {
        Self::new(
            id,
            &[
                ("acceptor-a", &["acceptor-1"]),
                ("acceptor-b", &["acceptor-2"]),
                ("acceptor-c", &["acceptor-3"]),
                ("proposer-a", &["proposer-1"]),
                ("proposer-b", &["proposer-2"]),
                ("learner-a", &["learner-1"]),
                ("learner-b", &["learner-2"]),
            ],
        )
    }

    /// The node names, in layout order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Give every node that hosts a learner a client port.
    pub fn client_ports(mut self) -> Self {
        self.client_ports = true;
        self
    }

    /// Give every node an admin HTTP server.
    pub fn admin_ports(self) -> Self {
        let all = self.node_names();
        self.admin_ports_on(&all)
    }

    /// Give `nodes` an admin HTTP server.
    pub fn admin_ports_on(mut self, nodes: &[impl AsRef<str>]) -> Self {
        self.admin_nodes
            .extend(nodes.iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// Mutual TLS: each node gets a certificate from `ca` naming it (and
    /// 127.0.0.1, for clients that connect by address).
    pub fn tls(mut self, ca: &TestCa) -> Self {
        let issued = self
            .node_names()
            .into_iter()
            .map(|node| {
                let cert = ca.issue(&node, &[&node, "127.0.0.1"]);
                (node, cert)
            })
            .collect();
        self.tls = Some((ca.ca_file().to_owned(), issued));
        self
    }

    /// Give `node` the certificate `cert` instead (after [`Self::tls`]).
    pub fn tls_cert(mut self, node: &str, cert: Issued) -> Self {
        let (_, issued) = self.tls.as_mut().expect("tls() first");
        issued.insert(node.to_owned(), cert);
        self
    }

    /// Require `token` from clients.
    pub fn client_token(mut self, token: &str) -> Self {
        self.client_token = Some(token.to_owned());
        self
    }

    /// Set `[paxos] key = value` (`value` as TOML, e.g. `"\"150ms\""`).
    pub fn paxos(mut self, key: &str, value: &str) -> Self {
        self.paxos.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Set `[transport] key = value` (`value` as TOML).
    pub fn transport(mut self, key: &str, value: &str) -> Self {
        self.transport.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Append whole sections (not `[paxos]` or `[transport]`: use
    /// [`Self::paxos`] and [`Self::transport`] for those).
    pub fn sections(mut self, toml: &str) -> Self {
        self.sections.push_str(toml);
        self.sections.push('\n');
        self
    }

    /// The config, with free ports and data directories under `data_root`.
    pub fn render(&self, data_root: &Path) -> Rendered {
        let mut toml = format!("[cluster]\nid = {:?}\nsecret = \"test-secret\"\n", self.id);
        if let Some(token) = &self.client_token {
            let _ = writeln!(toml, "client_token = {token:?}");
        }
        let mut client_addresses = Vec::new();
        let mut admin_addresses = BTreeMap::new();
        let mut listen_addresses = BTreeMap::new();
        let port = free_port;
        for (node, roles) in &self.nodes {
            let listen = SocketAddr::from(([127, 0, 0, 1], port()));
            let _ = writeln!(toml, "[nodes.{node}]\nlisten = \"{listen}\"");
            listen_addresses.insert(node.clone(), listen);
            if self.client_ports && roles.iter().any(|r| r.starts_with("learner")) {
                let address = SocketAddr::from(([127, 0, 0, 1], port()));
                let _ = writeln!(toml, "client_listen = \"{address}\"");
                client_addresses.push(address);
            }
            if self.admin_nodes.contains(node) {
                let address = SocketAddr::from(([127, 0, 0, 1], port()));
                let _ = writeln!(toml, "admin_listen = \"{address}\"");
                admin_addresses.insert(node.clone(), address);
            }
            let _ = writeln!(toml, "data_dir = {:?}", data_root.join(node));
            if let Some(issued) = self.tls.as_ref().and_then(|(_, certs)| certs.get(node)) {
                let _ = writeln!(toml, "tls_cert_file = {:?}", issued.cert);
                let _ = writeln!(toml, "tls_key_file = {:?}", issued.key);
            }
        }
        toml.push_str("[roles]\n");
        for (node, roles) in &self.nodes {
            for role in roles {
                let _ = writeln!(toml, "{role} = \"{node}\"");
            }
        }
        for (section, values) in [("paxos", &self.paxos), ("transport", &self.transport)] {
            let _ = writeln!(toml, "[{section}]");
            for (key, value) in values {
                let _ = writeln!(toml, "{key} = {value}");
            }
        }
        if let Some((ca, _)) = &self.tls {
            let _ = writeln!(toml, "[tls]\nca_file = {ca:?}");
        }
        toml.push_str(&self.sections);
        Rendered {
            toml,
            client_addresses,
            admin_addresses,
            listen_addresses,
        }
    }
}

/// One test of the running test binary, run again as a child process (a
/// writer for a crash test to SIGKILL), with `env` set and stdout sent
/// line by line to [`TestChild::lines`]. Killed when dropped, so a failing
/// parent never leaves a child running.
pub struct TestChild {
    child: std::process::Child,
    /// The child's stdout, a line at a time.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl TestChild {
    /// Run test `name` (exactly) of this test binary with `env` set.
    pub fn spawn(name: &str, env: (&str, &Path)) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child test");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// SIGKILL the child and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        self.kill();
    }
}
