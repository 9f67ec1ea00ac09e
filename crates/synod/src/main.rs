//! # synod: the Synod binary
//!
//! - `synod node --config F --node NAME [--init]`: one process of a
//!   deployment (`--init` on its first start only).
//! - `synod up [--config F]`: every node of a config in this process; with
//!   no flag, the built-in three-replica cluster on loopback (`configs/local.toml`),
//!   data under `./data`.
//! - `synod put/get/delete/cas/txn/list/lock/unlock/status`: the key/value client
//!   (see `cli.rs`), against `synod up` by default.
//! - `synod member list|add|remove|replace`: the configuration (acceptors, proposers, learners)
//!   (`member.rs`).
//! - `synod bench`: a load generator with HDR latency percentiles (`bench/`).
//! - `synod snapshot save FILE` (a backup of a running cluster, consistent
//!   at one slot) and `synod snapshot restore FILE --config F` (seed a new
//!   cluster's data directories from one).
//!
//! Errors a user can cause (bad config, port in use, data dir locked) print
//! one line and exit with status 1; SIGINT or SIGTERM stops the nodes
//! cleanly.

use crate::output::say;
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use settings::Overrides;
use std::time::{Duration, Instant};
use synod_core::Role;
use synod_kv::{KvLimits, KvStore};
use synod_runtime::{Bootstrap, LogFormat, Node, SynodConfig};

/// glibc's malloc was a third of a loaded leader's CPU (consolidating
/// freed chunks); mimalloc's thread-local free lists avoid that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod cli;
mod lock_cmd;
mod member;
mod output;
mod settings;
mod status;
mod txn_syntax;

#[derive(Parser, Debug)]
#[command(name = "synod", version, about = "Paxos cluster runtime")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
    #[command(flatten)]
    target: cli::Target,
    /// Log lines as `text` or `json` (default: `[log] format`, else text).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Run one node of a deployment.
    Node {
        /// Which node of the config (--config) this process is.
        #[arg(long)]
        node: String,
        /// This is a brand-new cluster or a new member: create the stores
        /// that are missing. Without it a missing store is refused (a node
        /// of a running cluster must never come back empty). Use it for
        /// the first start only, never in a service file.
        #[arg(long)]
        init: bool,
    },
    /// Run every node of a config in this process (default: a local
    /// three-replica cluster on loopback, data under ./data). With no
    /// store there yet it starts a brand-new cluster.
    Up {
        /// Create missing stores even though some exist (see `node --init`).
        #[arg(long)]
        init: bool,
    },
    /// Back a cluster up, or seed a new one from a backup.
    #[command(subcommand)]
    Snapshot(cli::SnapshotCommand),
    /// Show or change the configuration: which acceptors vote, which
    /// proposers may lead, which learners trimming waits for (through
    /// the log, while the cluster serves).
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Load a cluster and measure throughput and latency.
    Bench(bench::BenchArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// Log to stderr: the level from `RUST_LOG`, else `level`; JSON lines or
/// text (colour only when stderr is a terminal).
fn init_logging(level: &str, format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn main() {
    let cli = Cli::parse();
    let format = match cli.log_format.as_deref() {
        Some("json") => Some(LogFormat::Json),
        Some(_) => Some(LogFormat::Text),
        None => None,
    };
    // Node commands log what their config says; client commands only
    // warnings, unless RUST_LOG says otherwise.
    let node_config = match &cli.command {
        Commands::Node { .. } | Commands::Up { .. } => {
            let file = cli.target.config.as_deref();
            match settings::load(file, Overrides::Environment) {
                Ok(loaded) => Some(loaded),
                Err(error) => {
                    eprintln!("synod: error: {error:#}");
                    std::process::exit(1);
                }
            }
        }
        _ => None,
    };
    match &node_config {
        Some((config, _)) => init_logging(&config.log.level, format.unwrap_or(config.log.format)),
        None => init_logging("warn,synod=info", format.unwrap_or_default()),
    }
    if let Commands::Bench(args) = cli.command {
        // The load runs on its own multi-threaded runtime.
        let result = settings::load(None, Overrides::None)
            .and_then(|(local, _)| bench::run(args, cli.target, local));
        if let Err(error) = result {
            eprintln!("synod: error: {error:#}");
            std::process::exit(1);
        }
        return;
    }
    let system = actix_rt::System::new();
    let result = system.block_on(run(cli, node_config));
    if let Err(error) = result {
        eprintln!("synod: error: {error:#}");
        std::process::exit(1);
    }
}

/// Run `cli`; `node_config` is the config a node command loaded.
async fn run(cli: Cli, node_config: Option<(SynodConfig, KvLimits)>) -> Result<()> {
    match cli.command {
        Commands::Node { node, init } => {
            if cli.target.config.is_none() {
                anyhow::bail!("synod node needs --config FILE")
            }
            let (config, limits) = node_config.expect("loaded for node commands");
            let bootstrap = if init {
                Bootstrap::New
            } else {
                Bootstrap::Existing
            };
            let nodes = start(&config, limits, &[node], bootstrap).await?;
            serve(nodes).await
        }
        Commands::Up { init } => {
            let (config, limits) = node_config.expect("loaded for node commands");
            let names: Vec<String> = config.nodes.keys().cloned().collect();
            // No store anywhere: a brand-new cluster (the README's first
            // command). Once any exists, every one must.
            let fresh = names
                .iter()
                .all(|name| synod_runtime::created_stores(&config, name).is_empty());
            let bootstrap = if init || fresh {
                Bootstrap::New
            } else {
                Bootstrap::Existing
            };
            let nodes = start(&config, limits, &names, bootstrap).await?;
            serve(nodes).await
        }
        Commands::Client(command) => {
            let (local, _) = settings::load(None, Overrides::None)?;
            cli::run(command, cli.target, &local).await
        }
        Commands::Snapshot(command) => {
            let (local, _) = settings::load(None, Overrides::None)?;
            cli::snapshot(command, cli.target, &local).await
        }
        Commands::Member(command) => {
            let (local, _) = settings::load(None, Overrides::None)?;
            member::run(command, cli.target, &local).await
        }
        Commands::Bench(_) => unreachable!("run before the actix system starts"),
    }
}

async fn start(
    config: &SynodConfig,
    limits: KvLimits,
    names: &[String],
    bootstrap: Bootstrap,
) -> Result<Vec<Node>> {
    let nodes = start_nodes(config, limits, names, bootstrap).await?;
    for node in &nodes {
        // What it runs: the config file's placement with the moves the
        // log decided (`synod member move`) that the node follows.
        let roles: Vec<String> = node
            .status()
            .await
            .roles
            .iter()
            .map(ToString::to_string)
            .collect();
        let clients = node
            .client_address()
            .map_or_else(String::new, |a| format!(", clients on {a}"));
        let admin = node
            .admin_address()
            .map_or_else(String::new, |a| format!(", dashboard http://{a}/"));
        say!(
            "synod: node {} listening on {}{clients}{admin} ({})",
            node.name(),
            node.listen_address(),
            roles.join(", ")
        );
    }
    let ready = match wait_for_leader(&nodes, config).await {
        Leader::NotHere => "(no proposer here)".to_owned(),
        Leader::Elected(leader) => format!("leader is proposer-{leader}"),
        Leader::NotYet => "no leader elected yet (waiting for peers)".to_owned(),
    };
    say!("synod: ready: {} node(s) running, {ready}", nodes.len());
    Ok(nodes)
}

/// Start the nodes `names` of `config` in this process, silently.
async fn start_nodes(
    config: &SynodConfig,
    limits: KvLimits,
    names: &[String],
    bootstrap: Bootstrap,
) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for name in names {
        let node = Node::start(config, name, bootstrap, move || KvStore::new(limits))
            .await
            .with_context(|| format!("starting node {name}"))?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Whether a leader is known to these nodes.
enum Leader {
    /// None of the nodes hosts a proposer.
    NotHere,
    /// This proposer leads.
    Elected(u32),
    /// None elected within ten election timeouts.
    NotYet,
}

/// Wait (at most ten election timeouts) until a proposer of `nodes` knows a leader.
async fn wait_for_leader(nodes: &[Node], config: &SynodConfig) -> Leader {
    let mut hosts_proposer = false;
    for node in nodes {
        let roles = node.status().await.roles;
        hosts_proposer |= roles.iter().any(|r| r.role == Role::Proposer);
    }
    if !hosts_proposer {
        return Leader::NotHere;
    }
    let limit = config.paxos.election_timeout_max * 10;
    let start = Instant::now();
    while start.elapsed() < limit {
        for node in nodes {
            let status = node.status().await;
            if let Some(leader) = status.proposers.iter().find_map(|p| p.leader) {
                return Leader::Elected(leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Leader::NotYet
}

async fn serve(nodes: Vec<Node>) -> Result<()> {
    let signal = wait_for_signal().await;
    say!("synod: {signal}: shutting down");
    for node in nodes {
        node.shutdown().await;
    }
    say!("synod: stopped");
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "interrupted";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = terminate.recv() => "terminated",
    }
}
