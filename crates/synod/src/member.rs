//! `synod member`: show and change the configuration: which acceptors
//! vote, which proposers may lead, which learners the trim point waits
//! for, and which roles run on another node than the config file says.
//!
//! A change is a configuration the leader proposes through the log (a
//! stop sign, see ARCHITECTURE.md "Reconfiguration"): the next epoch's
//! acceptors decide every slot after it. The command asks a node's
//! proposer (which forwards to the leader), then waits until a proposer
//! reports the new epoch with every register carried into it: from then
//! on the acceptors that left are no longer needed.

use crate::output::say;
use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synod_client::wire::{MemberIds, MembersReport};
use synod_client::{Client, ClientError};
use synod_core::{Role, RoleId};
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
    /// Show the configuration (acceptors, proposers, learners), its
    /// epoch and the slot it took effect at.
    List,
    /// Put ROLE (e.g. acceptor-4, proposer-4, learner-4) in the
    /// configuration. It must be placed under [roles] in every node's
    /// config, and its node running.
    Add { role: String },
    /// Take ROLE out of the configuration: an acceptor stops voting (keep
    /// it running until the command returns: the registers it holds are
    /// carried to the others), a proposer stops campaigning, the trim
    /// point stops waiting for a learner.
    Remove { role: String },
    /// Put NEW in OLD's place, in one change (e.g. OLD's disk is lost).
    Replace { old: String, new: String },
    /// Run ROLE (a proposer) on NODE from now on, without a config edit
    /// or a restart: once the change is decided its old node stops it and
    /// NODE starts it (on an empty store, it first learns the rounds it
    /// used). NODE must be under [nodes] in every node's config; the
    /// config file's node moves it back.
    Move { role: String, node: String },
}

/// Run a membership command.
pub async fn run(command: MemberCommand, target: Target, local: &SynodConfig) -> Result<()> {
    let config = crate::cli::client_config(&target, local)?;
    let placed = placed_roles(&target, local)?;
    let endpoints = config.endpoints.clone();
    let client = Client::new(config);
    let (endpoint, current) = current(&client, &endpoints).await?;
    let members = match &command {
        MemberCommand::List => return show(&current, &placed, target.json),
        MemberCommand::Add { role } => add(&current.members, role_id(role)?)?,
        MemberCommand::Remove { role } => remove(&current.members, role_id(role)?)?,
        MemberCommand::Replace { old, new } => {
            replace(&current.members, role_id(old)?, role_id(new)?)?
        }
        MemberCommand::Move { role, node } => moved(&current.members, role_id(role)?, node)?,
    };
    for warning in fault_tolerance_warnings(&members) {
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
        match ask(&client, endpoint, &endpoints, epoch, &members).await {
            Err(error) if first && !retryable(&error) => return Err(error),
            _ => first = false,
        }
        let until = deadline.min(Instant::now() + RESEND);
        if let Some(done) = wait_for(&client, &endpoints, (epoch, &members), until).await? {
            return show(&done, &placed, target.json);
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

/// `proposer-N`, `acceptor-N` or `learner-N`.
fn role_id(text: &str) -> Result<RoleId> {
    parse_role(text).with_context(|| {
        format!("{text:?} is not a role instance; name one as acceptor-N, proposer-N or learner-N")
    })
}

/// The list of `role`'s kind in `members`.
fn list_of(members: &mut MemberIds, role: Role) -> &mut Vec<u32> {
    match role {
        Role::Acceptor => &mut members.acceptors,
        Role::Proposer => &mut members.proposers,
        Role::Learner => &mut members.learners,
    }
}

/// What an operator should know about a configuration: acceptors with
/// majorities (as the config check says for the first configuration),
/// a single proposer or learner.
fn fault_tolerance_warnings(members: &MemberIds) -> Vec<String> {
    let mut warnings = Vec::new();
    match members.acceptors.len() {
        n @ (1 | 2) => warnings.push(format!(
            "{n} acceptor(s) survive no failure; use at least 3"
        )),
        n if n.is_multiple_of(2) => warnings.push(format!(
            "{n} acceptors tolerate no more failures than {}; an odd count is better",
            n - 1
        )),
        _ => {}
    }
    if members.proposers.len() == 1 {
        warnings.push("one proposer may lead: while it is down, nothing is decided".into());
    }
    if members.learners.len() == 1 {
        warnings.push(
            "the trim point waits for one learner: the trimmed log then lives only in its snapshots, and losing its disk loses it".into(),
        );
    }
    warnings
}

fn add(members: &MemberIds, role: RoleId) -> Result<MemberIds> {
    let mut next = members.clone();
    let list = list_of(&mut next, role.role);
    if list.contains(&role.index) {
        bail!("{role} is already in the configuration");
    }
    list.push(role.index);
    list.sort_unstable();
    Ok(next)
}

fn remove(members: &MemberIds, role: RoleId) -> Result<MemberIds> {
    let mut next = members.clone();
    let list = list_of(&mut next, role.role);
    if !list.contains(&role.index) {
        bail!("{role} is not in the configuration");
    }
    list.retain(|id| *id != role.index);
    if list.is_empty() {
        bail!("{role} is the last of its kind in the configuration; add another first");
    }
    Ok(next)
}

fn moved(members: &MemberIds, role: RoleId, node: &str) -> Result<MemberIds> {
    let name = role.to_string();
    if members.moved.iter().any(|(r, n)| *r == name && n == node) {
        bail!("{role} already runs on {node}");
    }
    let mut next = members.clone();
    next.moved.retain(|(r, _)| *r != name);
    next.moved.push((name, node.to_owned()));
    Ok(next)
}

fn replace(members: &MemberIds, old: RoleId, new: RoleId) -> Result<MemberIds> {
    if old.role != new.role {
        bail!("{new} cannot take {old}'s place: not the same role");
    }
    let mut next = members.clone();
    let list = list_of(&mut next, old.role);
    if !list.contains(&old.index) {
        bail!("{old} is not in the configuration");
    }
    if list.contains(&new.index) {
        bail!("{new} is already in the configuration");
    }
    list.retain(|id| *id != old.index);
    list.push(new.index);
    list.sort_unstable();
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
    members: &MemberIds,
) -> Result<()> {
    let others = endpoints.iter().copied().filter(|e| *e != first);
    let mut problems = Vec::new();
    for endpoint in std::iter::once(first).chain(others) {
        match client
            .reconfigure_at(endpoint, epoch, members.clone())
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
/// `wanted` and every register carried (`None`: not yet).
async fn wait_for(
    client: &Client,
    endpoints: &[SocketAddr],
    (epoch, wanted): (u32, &MemberIds),
    deadline: Instant,
) -> Result<Option<MembersReport>> {
    loop {
        if let Ok((_, members)) = current(client, endpoints).await
            && members.epoch >= epoch
            && members.instances_carried
        {
            if members.epoch > epoch || !is_the_change(&members.members, wanted) {
                bail!(
                    "another change took effect first (epoch {}: {})",
                    members.epoch,
                    describe(&members.members)
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

/// Whether configuration `got` is the `wanted` change: the same roles,
/// and only moves it asked for (one back to the config file's node is
/// dropped from the list).
fn is_the_change(got: &MemberIds, wanted: &MemberIds) -> bool {
    let roles = |m: &MemberIds| (m.acceptors.clone(), m.proposers.clone(), m.learners.clone());
    roles(got) == roles(wanted) && got.moved.iter().all(|m| wanted.moved.contains(m))
}

/// `role-N` names of `ids`.
fn names(role: &str, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|id| format!("{role}-{id}")).collect()
}

/// The configuration in one line.
fn describe(members: &MemberIds) -> String {
    let mut all = names("acceptor", &members.acceptors);
    all.extend(names("proposer", &members.proposers));
    all.extend(names("learner", &members.learners));
    all.join(" ")
}

/// The roles the deployment's config places (none known with
/// `--endpoints` alone).
fn placed_roles(target: &Target, local: &SynodConfig) -> Result<Vec<RoleId>> {
    let placement = match (&target.config, target.endpoints.is_empty()) {
        (Some(file), _) => {
            let (config, _) = crate::settings::load(Some(file), crate::settings::Overrides::None)?;
            config.placement()
        }
        (None, true) => local.placement(),
        (None, false) => return Ok(Vec::new()),
    };
    Ok(placement.into_keys().collect())
}

/// The placed roles `members` leaves out: standby, ready for `add`.
fn standby(placed: &[RoleId], members: &MemberIds) -> Vec<String> {
    let mut members = members.clone();
    placed
        .iter()
        .filter(|role| !list_of(&mut members, role.role).contains(&role.index))
        .map(ToString::to_string)
        .collect()
}

fn show(report: &MembersReport, placed: &[RoleId], json: bool) -> Result<()> {
    let members = &report.members;
    let standby = standby(placed, members);
    if json {
        let value = serde_json::json!({
            "epoch": report.epoch,
            "start_slot": report.start,
            "acceptors": names("acceptor", &members.acceptors),
            "proposers": names("proposer", &members.proposers),
            "learners": names("learner", &members.learners),
            "standby": standby,
            "moved": members.moved.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "quorums": report.quorums,
            "registers_carried": report.instances_carried,
            "leader": report.leader.map(|l| format!("proposer-{l}")),
            "reported_by": report.proposer,
        });
        say!("{value}");
        return Ok(());
    }
    say!(
        "epoch {} from slot {}: {} ({})",
        report.epoch,
        report.start,
        names("acceptor", &members.acceptors).join(" "),
        report.quorums
    );
    say!(
        "proposers: {}",
        names("proposer", &members.proposers).join(" ")
    );
    say!(
        "learners: {}",
        names("learner", &members.learners).join(" ")
    );
    if !standby.is_empty() {
        say!("standby (placed, not in it): {}", standby.join(" "));
    }
    if !members.moved.is_empty() {
        let moved: Vec<String> = members
            .moved
            .iter()
            .map(|(role, node)| format!("{role} on {node}"))
            .collect();
        say!(
            "moved off the config file's placement: {}",
            moved.join(", ")
        );
    }
    let leader = report
        .leader
        .map_or_else(|| "none known".to_owned(), |l| format!("proposer-{l}"));
    let carried = match report.instances_carried {
        true => "carried",
        false => "still being carried from the previous acceptors",
    };
    say!("leader: {leader}; registers: {carried}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(acceptors: &[u32], proposers: &[u32], learners: &[u32]) -> MemberIds {
        MemberIds {
            acceptors: acceptors.to_vec(),
            proposers: proposers.to_vec(),
            learners: learners.to_vec(),
            moved: Vec::new(),
        }
    }

    #[test]
    fn a_move_replaces_the_role_s_earlier_move_and_is_recognised_when_done() {
        let current = ids(&[1, 2, 3], &[1, 2], &[1]);
        let p2 = RoleId::proposer(2);
        let once = moved(&current, p2, "n3").unwrap();
        assert_eq!(once.moved, [("proposer-2".to_owned(), "n3".to_owned())]);
        assert!(moved(&once, p2, "n3").is_err(), "already there");
        let again = moved(&once, p2, "n1").unwrap();
        assert_eq!(again.moved, [("proposer-2".to_owned(), "n1".to_owned())]);
        assert!(is_the_change(&once, &once));
        assert!(
            is_the_change(&current, &again),
            "a move home leaves the list"
        );
        assert!(!is_the_change(&once, &again), "a different node");
        assert!(!is_the_change(&ids(&[1, 2], &[1, 2], &[1]), &current));
    }

    #[test]
    fn changes_name_roles_that_exist_and_keep_one_of_each() {
        let role = |text| role_id(text).unwrap();
        assert_eq!(role("acceptor-4"), RoleId::acceptor(4));
        assert!(role_id("4").is_err());
        assert!(role_id("leader-4").is_err());
        let current = ids(&[1, 3], &[1], &[1, 2]);
        assert_eq!(
            add(&current, role("acceptor-2")).unwrap(),
            ids(&[1, 2, 3], &[1], &[1, 2])
        );
        assert_eq!(
            add(&current, role("proposer-2")).unwrap(),
            ids(&[1, 3], &[1, 2], &[1, 2])
        );
        assert!(add(&current, role("learner-2")).is_err(), "already in");
        assert_eq!(
            remove(&current, role("learner-1")).unwrap(),
            ids(&[1, 3], &[1], &[2])
        );
        assert!(remove(&current, role("acceptor-2")).is_err(), "not in");
        assert!(
            remove(&current, role("proposer-1")).is_err(),
            "the last proposer"
        );
        let replaced = replace(&current, role("acceptor-3"), role("acceptor-5")).unwrap();
        assert_eq!(replaced, ids(&[1, 5], &[1], &[1, 2]));
        assert!(replace(&current, role("acceptor-3"), role("learner-5")).is_err());
        assert!(replace(&current, role("acceptor-3"), role("acceptor-1")).is_err());
    }

    #[test]
    fn placed_roles_outside_the_configuration_are_standby() {
        let placed = [
            RoleId::acceptor(1),
            RoleId::acceptor(4),
            RoleId::proposer(1),
            RoleId::learner(1),
            RoleId::learner(2),
        ];
        let members = ids(&[1, 2, 3], &[1], &[1]);
        assert_eq!(standby(&placed, &members), ["acceptor-4", "learner-2"]);
        assert!(standby(&[], &members).is_empty(), "--endpoints alone");
    }

    #[test]
    fn a_configuration_that_tolerates_no_failure_is_warned_about() {
        let count = |a: &[u32], p: &[u32], l: &[u32]| fault_tolerance_warnings(&ids(a, p, l)).len();
        assert_eq!(count(&[1, 2, 3], &[1, 2], &[1, 2]), 0);
        assert_eq!(count(&[1, 2, 3, 4, 5], &[1, 2, 3], &[1, 2, 3]), 0);
        assert_eq!(count(&[1, 2], &[1, 2], &[1, 2]), 1);
        assert_eq!(count(&[1, 2, 3, 4], &[1, 2], &[1, 2]), 1);
        assert_eq!(count(&[1, 2, 3], &[1], &[1]), 2);
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
