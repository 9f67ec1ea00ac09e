//! Embedding Synod in an actix application: start a three-node cluster in
//! this process from a config, submit 10,000 commands, and check that every
//! learner applied the same log.
//!
//! ```sh
//! cargo run --release -p synod-runtime --example embed
//! ```

use std::time::{Duration, Instant};
use synod_core::Command;
use synod_runtime::{Bootstrap, Node, SnapshotError, StateMachine, SynodConfig};

/// The application's state machine: a running sum of the numbers submitted.
#[derive(Default)]
struct Sum(u64);

impl StateMachine for Sum {
    fn apply(&mut self, command: &Command) -> Vec<u8> {
        let n: u64 = std::str::from_utf8(&command.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.0 += n;
        self.0.to_be_bytes().to_vec()
    }

    fn snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.0.to_be_bytes())
    }

    fn restore(&mut self, input: &mut dyn std::io::Read) -> Result<(), SnapshotError> {
        let mut bytes = [0u8; 8];
        input.read_exact(&mut bytes)?;
        self.0 = u64::from_be_bytes(bytes);
        Ok(())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("loopback")
        .local_addr()
        .expect("address")
        .port()
}

/// Three replicas with every role, on free loopback ports, data in `root`.
fn config(root: &std::path::Path) -> SynodConfig {
    let mut text = String::from("[cluster]\nid = \"embedded\"\nsecret = \"embedded-example\"\n");
    for n in 1..=3 {
        let dir = root.join(format!("n{n}"));
        text += &format!(
            "[nodes.n{n}]\nlisten = \"127.0.0.1:{}\"\ndata_dir = {dir:?}\n",
            free_port()
        );
    }
    text += "[roles]\n";
    for n in 1..=3 {
        text +=
            &format!("proposer-{n} = \"n{n}\"\nacceptor-{n} = \"n{n}\"\nlearner-{n} = \"n{n}\"\n");
    }
    SynodConfig::from_toml_str(&text, "embed example")
        .expect("valid config")
        .0
}

fn main() {
    let root = tempfile::tempdir().expect("temporary directory");
    let config = config(root.path());
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut nodes = Vec::new();
        for name in config.nodes.keys() {
            nodes.push(
                Node::start(&config, name, Bootstrap::New, Sum::default)
                    .await
                    .expect("node starts"),
            );
        }
        let started = Instant::now();
        let submits = (1..=10_000u64).map(|i| nodes[0].submit(i.to_string().into_bytes()));
        let results = futures_util::future::join_all(submits).await;
        let decided = results.iter().filter(|r| r.is_ok()).count();
        let elapsed = started.elapsed();

        // Wait (bounded) for every learner to apply the whole log.
        let mut agree = false;
        while !agree && started.elapsed() < elapsed + Duration::from_secs(30) {
            let mut views = Vec::new();
            for node in &nodes {
                views.extend(
                    node.status()
                        .await
                        .learners
                        .into_iter()
                        .map(|l| (l.applied, l.log_digest)),
                );
            }
            agree = views.windows(2).all(|w| w[0] == w[1]);
            if !agree {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        eprintln!(
            "10,000 commands in {elapsed:.2?} ({:.0} commands/s)",
            decided as f64 / elapsed.as_secs_f64()
        );
        println!("decided: {decided}, learners agree: {agree}");
        for node in nodes {
            node.shutdown().await;
        }
    });
}
