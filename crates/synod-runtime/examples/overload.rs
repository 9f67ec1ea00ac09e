//! Overload: three replicas in this process, `COUNT` commands of `SIZE`
//! bytes submitted at once through one node, far more than the cluster can
//! decide within `paxos.submit_timeout`. Prints how many were answered in
//! time and how many leader elections the burst caused. A healthy runtime
//! degrades to timeouts for the excess; it must not collapse into leader
//! churn and resend storms.
//!
//! ```sh
//! cargo run --release -p synod-runtime --example overload -- [SIZE] [COUNT]
//! ```

use std::time::Instant;
use synod_core::Command;
use synod_runtime::{Bootstrap, Node, SnapshotError, StateMachine, SynodConfig};

/// Applies nothing; the cluster's work is deciding and storing the values.
#[derive(Default)]
struct Discard;

impl StateMachine for Discard {
    fn apply(&mut self, _: &Command) -> Vec<u8> {
        Vec::new()
    }

    fn snapshot(&self, _: &mut dyn std::io::Write) -> std::io::Result<()> {
        Ok(()) // no state
    }

    fn restore(&mut self, _: &mut dyn std::io::Read) -> Result<(), SnapshotError> {
        Ok(())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a loopback port")
        .port()
}

fn config(root: &std::path::Path) -> SynodConfig {
    let mut text = String::from("[cluster]\nid = \"overload\"\nsecret = \"overload\"\n[roles]\n");
    for n in 1..=3 {
        text +=
            &format!("proposer-{n} = \"n{n}\"\nacceptor-{n} = \"n{n}\"\nlearner-{n} = \"n{n}\"\n");
    }
    for n in 1..=3 {
        let dir = root.join(format!("n{n}"));
        text += &format!(
            "[nodes.n{n}]\nlisten = \"127.0.0.1:{}\"\ndata_dir = {dir:?}\n",
            free_port()
        );
    }
    SynodConfig::from_toml_str(&text, "overload example")
        .expect("valid config")
        .0
}

/// The highest ballot round any proposer has used: each campaign raises it.
async fn highest_round(nodes: &[Node]) -> u64 {
    let mut highest = 0;
    for node in nodes {
        for proposer in node.status().await.proposers {
            highest = highest.max(proposer.max_round);
        }
    }
    highest
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let size = args
        .next()
        .map_or(256 * 1024, |a| a.expect("SIZE in bytes"));
    let count = args.next().map_or(2_000, |a| a.expect("COUNT"));
    let root = tempfile::tempdir().expect("temporary directory");
    let config = config(root.path());
    let timeout = config.paxos.submit_timeout;
    actix_rt::System::new().block_on(async move {
        let mut nodes = Vec::new();
        for name in config.nodes.keys() {
            nodes.push(
                Node::start(&config, name, Bootstrap::New, Discard::default)
                    .await
                    .expect("node starts"),
            );
        }
        nodes[0]
            .submit(b"warm-up".to_vec())
            .await
            .expect("a leader is elected");
        let round_before = highest_round(&nodes).await;
        let started = Instant::now();
        let submits = (0..count).map(|_| nodes[0].submit(vec![7u8; size]));
        let results = futures_util::future::join_all(submits).await;
        let answered = results.iter().filter(|r| r.is_ok()).count();
        let round_after = highest_round(&nodes).await;
        println!(
            "{count} x {size} B at once: {answered} answered within {timeout:?} \
             ({:.2?} in all); highest ballot round {round_before} -> {round_after}",
            started.elapsed()
        );
        for node in nodes {
            node.shutdown().await;
        }
    });
}
