//! `synod status`: every node of the config, quorum-aware.
//!
//! Each node is asked in the best way its config allows: its admin
//! server's `/status` (every role, acceptors included), else its client
//! port (proposers and learners), else a TCP connect to its node port
//! (alive, no detail). The verdict ([`synod_runtime::health::assess`])
//! is the exit status: 0 healthy, 1 degraded, 2 no quorum or no leader.
//! With `--endpoints` and no config, only those client ports are asked,
//! and the acceptors' quorum cannot be judged.

use crate::cli::Target;
use crate::output::say;
use anyhow::Result;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use synod_client::wire::StatusReport;
use synod_client::{Client, ClientError};
use synod_runtime::SynodConfig;
use synod_runtime::health::{
    self, ClusterHealth, LearnerReport, NodeReport, Probe, ProposerReport, Verdict,
};

/// How long each node gets to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Run `synod status` and exit with its verdict.
pub async fn run(target: &Target, local: &SynodConfig) -> Result<()> {
    let (verdict, text, json) = if target.config.is_none() && !target.endpoints.is_empty() {
        let config = crate::cli::client_config(target, local)?;
        let endpoints = config.endpoints.clone();
        endpoints_only(&Client::new(config), endpoints).await
    } else {
        let config = match &target.config {
            Some(file) => crate::settings::load(Some(file), crate::settings::Overrides::None)?.0,
            None => local.clone(),
        };
        // A config without client ports is still asked through its admin
        // and node ports.
        let mut client = crate::cli::client_config_of(&config).ok();
        if let (Some(client), Some(timeout)) = (&mut client, target.timeout) {
            client.timeout = timeout;
        }
        let client = client.map(Client::new);
        let health = cluster(&config, client.as_ref()).await;
        (
            health.verdict,
            describe(&health),
            serde_json::to_value(&health)?,
        )
    };
    if target.json {
        say!("{json}");
    } else {
        crate::output::text(&text);
    }
    std::process::exit(verdict.exit_code());
}

/// Ask every node of `config` at once, then judge.
async fn cluster(config: &SynodConfig, client: Option<&Client>) -> ClusterHealth {
    let asks = config.nodes.iter().map(|(name, node)| async move {
        let probe = if let Some(admin) = node.admin_listen {
            let admin = node.reachable(admin);
            let fetched =
                tokio::task::spawn_blocking(move || health::fetch_report(&admin, ASK_TIMEOUT))
                    .await;
            match fetched {
                Ok(Ok(report)) => Probe::Answered { report },
                Ok(Err(error)) => Probe::Unreachable { error },
                Err(error) => Probe::Unreachable {
                    error: error.to_string(),
                },
            }
        } else if let (Some(endpoint), Some(client)) = (client_endpoint(node), client) {
            match client.status_of(endpoint).await {
                Ok(report) => Probe::Answered {
                    report: from_client_port(report),
                },
                Err(error) => Probe::Unreachable {
                    error: format!("{endpoint}: {error}"),
                },
            }
        } else {
            listening(node.peer_address()).await
        };
        (name.clone(), probe)
    });
    let probes = futures_util::future::join_all(asks).await;
    health::assess(config, probes.into_iter().collect())
}

/// The address to reach `node`'s client port at, if it has one.
fn client_endpoint(node: &synod_runtime::NodeConfig) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let address = node.reachable(node.client_listen?);
    address.to_socket_addrs().ok()?.next()
}

/// Whether something accepts connections on a node port (it does not
/// handshake: that needs the cluster secret).
async fn listening(address: String) -> Probe {
    let connect = tokio::net::TcpStream::connect(address.as_str());
    match tokio::time::timeout(ASK_TIMEOUT, connect).await {
        Ok(Ok(_)) => Probe::Listening,
        Ok(Err(error)) => Probe::Unreachable {
            error: format!("{address}: {error}"),
        },
        Err(_) => Probe::Unreachable {
            error: format!("{address}: no answer within {ASK_TIMEOUT:?}"),
        },
    }
}

/// What a client port's status says, as an admin report without acceptors.
fn from_client_port(report: StatusReport) -> NodeReport {
    NodeReport {
        node: report.node,
        roles: report.roles,
        stopped: report.stopped,
        proposers: report
            .proposers
            .into_iter()
            .map(|p| ProposerReport {
                id: p.id,
                leader: p.leader,
                ballot: p.ballot,
                decided_upto: p.decided_upto,
                ..Default::default()
            })
            .collect(),
        learners: report
            .learners
            .into_iter()
            .map(|l| LearnerReport {
                id: l.id,
                applied: l.applied,
                decided_held: l.decided as usize,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The text of a cluster verdict.
fn describe(health: &ClusterHealth) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let leader = health.leader.as_ref().map_or_else(
        || "none".to_owned(),
        |l| match l.ballot {
            Some((round, id)) => format!("proposer-{} (ballot {round}.{id})", l.proposer),
            None => format!("proposer-{}", l.proposer),
        },
    );
    let _ = writeln!(
        text,
        "cluster {}: {:?}; leader {leader}; {} of {} acceptors up ({})",
        health.cluster, health.verdict, health.acceptors_up, health.acceptors, health.quorum
    );
    for (node, probe) in &health.nodes {
        let roles: Vec<String> = health
            .roles
            .iter()
            .filter(|r| &r.node == node)
            .map(|r| match (r.up, r.standby) {
                (true, false) => r.role.clone(),
                (true, true) => format!("{} (standby)", r.role),
                (false, false) => format!("{} (DOWN)", r.role),
                (false, true) => format!("{} (DOWN, standby)", r.role),
            })
            .collect();
        let state = match probe {
            Probe::Answered { .. } => "up".to_owned(),
            Probe::Listening => "listening (no admin or client port to ask)".to_owned(),
            Probe::Unreachable { error } => format!("UNREACHABLE: {error}"),
        };
        let _ = writeln!(text, "  {node}: {state}; {}", roles.join(", "));
    }
    for l in &health.learners {
        let _ = writeln!(
            text,
            "  {} on {}: applied below slot {}, {} behind",
            l.id, l.node, l.applied, l.lag
        );
    }
    for problem in &health.problems {
        let _ = writeln!(text, "  problem: {problem}");
    }
    text
}

/// `--endpoints` without a config: ask those client ports only.
async fn endpoints_only(
    client: &Client,
    endpoints: Vec<SocketAddr>,
) -> (Verdict, String, serde_json::Value) {
    let mut reports: Vec<(SocketAddr, Result<StatusReport, ClientError>)> = Vec::new();
    for endpoint in endpoints {
        reports.push((endpoint, client.status_of(endpoint).await));
    }
    let answered: Vec<&StatusReport> = reports
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let leader = answered
        .iter()
        .flat_map(|r| &r.proposers)
        .find_map(|p| p.leader);
    let stopped = answered.iter().any(|r| !r.stopped.is_empty());
    let verdict = if answered.is_empty() || leader.is_none() {
        Verdict::Unavailable
    } else if stopped || answered.len() < reports.len() {
        Verdict::Degraded
    } else {
        Verdict::Healthy
    };
    let mut text = format!(
        "{verdict:?} (from client ports only: pass --config to judge the acceptors' quorum)\n"
    );
    let mut nodes = Vec::new();
    for (endpoint, report) in &reports {
        match report {
            Ok(r) => {
                text.push_str(&format!(
                    "  {} at {endpoint}: {}{}\n",
                    r.node,
                    r.roles.join(", "),
                    if r.stopped.is_empty() {
                        String::new()
                    } else {
                        format!("; STOPPED: {}", r.stopped.join(", "))
                    }
                ));
                nodes.push(json!({"endpoint": endpoint.to_string(), "report": r}));
            }
            Err(error) => {
                text.push_str(&format!("  {endpoint}: UNREACHABLE: {error}\n"));
                nodes.push(json!({"endpoint": endpoint.to_string(), "error": error.to_string()}));
            }
        }
    }
    let json = json!({"verdict": verdict, "leader": leader, "nodes": nodes});
    (verdict, text, json)
}
