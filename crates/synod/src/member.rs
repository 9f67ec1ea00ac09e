//! `synod member`: show and change which acceptors vote.
//!
//! A change is a configuration the leader proposes through the log (a
//! stop sign, see ARCHITECTURE.md "Reconfiguration"): the next epoch's
//! acceptors decide every slot after it. The command asks a node's
//! proposer (which forwards to the leader), then waits until a proposer
//! reports the new epoch with every register carried into it: from then
//! on the acceptors that left are no longer needed.

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synod_client::wire::MembersReport;
use synod_client::{Client, ClientError};
use synod_runtime::{SynodConfig, parse_role};

use crate::cli::Target;

/// How long a change may take unless --timeout says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// How often the change is looked for.
const POLL: Duration = Duration::from_millis(100);

/// How long before the change is asked for again.
const RESEND: Duration = Duration::from_secs(2);

/// Membership commands.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Show the acceptors that vote, the epoch and the slot it took
    /// effect at.
    List,
    /// Make ACCEPTOR (e.g. acceptor-4) vote. It must be placed under
    /// [roles] in every node's config, and its node running.
    Add { acceptor: String },
    /// Stop ACCEPTOR from voting. Keep it running until the command
    /// returns (the registers it holds are carried to the others).
    Remove { acceptor: String },
    /// Put NEW in OLD's place, in one change (e.g. OLD's disk is lost).
    Replace { old: String, new: String },
}

/// Run a membership command.
pub async fn run(command: MemberCommand, target: Target, local: &SynodConfig) -> Result<()> {
    let config = crate::cli::client_config(&target, local)?;
    let endpoints = config.endpoints.clone();
    let client = Client::new(config);
    let (endpoint, current) = current(&client, &endpoints).await?;
    let acceptors = match &command {
        MemberCommand::List => return show(&current, target.json),
        MemberCommand::Add { acceptor } => add(&current.acceptors, acceptor_id(acceptor)?)?,
        MemberCommand::Remove { acceptor } => remove(&current.acceptors, acceptor_id(acceptor)?)?,
        MemberCommand::Replace { old, new } => {
            let without = remove(&current.acceptors, acceptor_id(old)?)?;
            add(&without, acceptor_id(new)?)?
        }
    };
    if let Some(warning) = fault_tolerance_warning(acceptors.len()) {
        eprintln!("synod: warning: {warning}");
    }
    let epoch = current.epoch + 1;
    let wait = target.timeout.unwrap_or(DEFAULT_WAIT);
    let deadline = Instant::now() + wait;
    // Asked again every RESEND while the epoch has not changed: a change
    // forwarded to a leader that lost its leadership is lost with it.
    // Asking again is safe: the leader refuses a second stop sign, and
    // a configuration that no longer follows the current one.
    let mut first = true;
    loop {
        match ask(&client, endpoint, &endpoints, epoch, acceptors.clone()).await {
            Err(error) if first && !retryable(&error) => return Err(error),
            _ => first = false,
        }
        let until = deadline.min(Instant::now() + RESEND);
        if let Some(done) = wait_for(&client, &endpoints, (epoch, &acceptors), until).await? {
            return show(&done, target.json);
        }
        if Instant::now() >= deadline {
            bail!(
                "epoch {epoch} did not take effect within {wait:?} (another change in progress, or no leader); see `synod member list`"
            );
        }
    }
}

/// Whether a refusal passes by itself: no leader yet, a change or a
/// register carry in progress (a new leader checks the carry first).
fn retryable(error: &anyhow::Error) -> bool {
    let text = error.to_string();
    ["no leader", "in progress", "still being carried"]
        .iter()
        .any(|passing| text.contains(passing))
}

/// `acceptor-N` (or `N`) as N.
fn acceptor_id(text: &str) -> Result<u32> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    match parse_role(text) {
        Some(role) if role.role == synod_core::Role::Acceptor => Ok(role.index),
        _ => bail!("{text:?} is not an acceptor; name one as acceptor-N"),
    }
}

/// What an operator should know about `n` acceptors with majorities
/// (as the config check says for the first configuration).
fn fault_tolerance_warning(n: usize) -> Option<String> {
    match n {
        1 | 2 => Some(format!(
            "{n} acceptor(s) survive no failure; use at least 3"
        )),
        _ if n.is_multiple_of(2) => Some(format!(
            "{n} acceptors tolerate no more failures than {}; an odd count is better",
            n - 1
        )),
        _ => None,
    }
}

fn add(acceptors: &[u32], id: u32) -> Result<Vec<u32>> {
    if acceptors.contains(&id) {
        bail!("acceptor-{id} already votes");
    }
    let mut next = acceptors.to_vec();
    next.push(id);
    next.sort_unstable();
    Ok(next)
}

fn remove(acceptors: &[u32], id: u32) -> Result<Vec<u32>> {
    if !acceptors.contains(&id) {
        bail!("acceptor-{id} does not vote");
    }
    let next: Vec<u32> = acceptors.iter().copied().filter(|a| *a != id).collect();
    if next.is_empty() {
        bail!("acceptor-{id} is the last acceptor; add another first");
    }
    Ok(next)
}

/// The latest configuration any reachable proposer reports, and a node
/// that reported it. Among reports of one epoch, one that knows the
/// registers carried wins (only the leader that carried them, or one
/// that checked since, knows).
async fn current(client: &Client, endpoints: &[SocketAddr]) -> Result<(SocketAddr, MembersReport)> {
    let mut best: Option<(SocketAddr, MembersReport)> = None;
    let mut problems = Vec::new();
    let rank = |m: &MembersReport| (m.epoch, m.instances_carried);
    for endpoint in endpoints {
        match client.members_of(*endpoint).await {
            Ok(members) => {
                if best.as_ref().is_none_or(|(_, b)| rank(&members) > rank(b)) {
                    best = Some((*endpoint, members));
                }
            }
            Err(error) => problems.push(format!("{endpoint}: {error}")),
        }
    }
    best.with_context(|| format!("no node answered: {}", problems.join("; ")))
}

/// Hand the change to `first`, else to the other nodes in turn.
async fn ask(
    client: &Client,
    first: SocketAddr,
    endpoints: &[SocketAddr],
    epoch: u32,
    acceptors: Vec<u32>,
) -> Result<()> {
    let others = endpoints.iter().copied().filter(|e| *e != first);
    let mut problems = Vec::new();
    for endpoint in std::iter::once(first).chain(others) {
        match client
            .reconfigure_at(endpoint, epoch, acceptors.clone())
            .await
        {
            Ok(()) => return Ok(()),
            Err(ClientError::Refused(reason)) if !reason.contains("no leader") => {
                bail!("refused: {reason}")
            }
            Err(error) => problems.push(format!("{endpoint}: {error}")),
        }
    }
    bail!("no node took the change: {}", problems.join("; "))
}

/// Wait until `deadline` for a proposer to work in `epoch` with
/// `acceptors` and every register carried (`None`: not yet).
async fn wait_for(
    client: &Client,
    endpoints: &[SocketAddr],
    (epoch, acceptors): (u32, &[u32]),
    deadline: Instant,
) -> Result<Option<MembersReport>> {
    loop {
        if let Ok((_, members)) = current(client, endpoints).await
            && members.epoch >= epoch
            && members.instances_carried
        {
            if members.epoch > epoch || members.acceptors != acceptors {
                bail!(
                    "another change took effect first (epoch {}: {:?})",
                    members.epoch,
                    members.acceptors
                );
            }
            return Ok(Some(members));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn show(members: &MembersReport, json: bool) -> Result<()> {
    if json {
        let value = serde_json::json!({
            "epoch": members.epoch,
            "start_slot": members.start,
            "acceptors": members.acceptors.iter().map(|a| format!("acceptor-{a}")).collect::<Vec<_>>(),
            "quorums": members.quorums,
            "registers_carried": members.instances_carried,
            "leader": members.leader.map(|l| format!("proposer-{l}")),
            "reported_by": members.proposer,
        });
        println!("{value}");
        return Ok(());
    }
    let acceptors: Vec<String> = members
        .acceptors
        .iter()
        .map(|a| format!("acceptor-{a}"))
        .collect();
    println!(
        "epoch {} from slot {}: {} ({})",
        members.epoch,
        members.start,
        acceptors.join(" "),
        members.quorums
    );
    let leader = members
        .leader
        .map_or_else(|| "none known".to_owned(), |l| format!("proposer-{l}"));
    let carried = match members.instances_carried {
        true => "carried",
        false => "still being carried from the previous acceptors",
    };
    println!("leader: {leader}; registers: {carried}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_acceptors_that_exist_and_keep_one() {
        assert_eq!(acceptor_id("acceptor-4").unwrap(), 4);
        assert_eq!(acceptor_id("4").unwrap(), 4);
        assert!(acceptor_id("learner-4").is_err());
        assert_eq!(add(&[1, 3], 2).unwrap(), vec![1, 2, 3]);
        assert!(add(&[1, 2], 2).is_err());
        assert_eq!(remove(&[1, 2, 3], 2).unwrap(), vec![1, 3]);
        assert!(remove(&[1, 3], 2).is_err());
        assert!(remove(&[1], 1).is_err());
        assert!(fault_tolerance_warning(2).is_some());
        assert!(fault_tolerance_warning(4).is_some());
        assert!(fault_tolerance_warning(3).is_none());
        assert!(fault_tolerance_warning(5).is_none());
    }

    #[test]
    fn refusals_that_pass_by_themselves_are_asked_again() {
        let refused = |why: &str| anyhow::anyhow!("refused: {why}");
        let carrying = synod_core::ReconfigureError::CarryInProgress.to_string();
        let changing = synod_core::ReconfigureError::InProgress.to_string();
        let no_leader = synod_core::ReconfigureError::NotLeader.to_string();
        assert!(retryable(&refused(&carrying)));
        assert!(retryable(&refused(&changing)));
        assert!(retryable(&refused(&no_leader)));
        assert!(!retryable(&refused(
            "acceptor-9 is not placed under [roles]"
        )));
        let invalid = synod_core::ReconfigureError::Invalid("epoch 3 does not follow".into());
        assert!(!retryable(&refused(&invalid.to_string())));
    }
}
