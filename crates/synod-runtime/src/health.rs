//! Cluster health: what each node reports on its admin `/status` page
//! ([`NodeReport`]), and the verdict over all nodes of a config
//! ([`assess`]), shared by the dashboard's `/cluster` page and
//! `synod status`.
//!
//! A verdict is quorum-aware: the cluster is [`Verdict::Unavailable`]
//! when the acceptors up form no phase-2 quorum (a majority, unless
//! `[quorums]` says otherwise) or no proposer knows a leader (commands
//! cannot be decided), [`Verdict::Degraded`] when it works but something
//! is missing (a node unreachable, a role stopped, a learner far behind,
//! too few acceptors up for a phase-1 quorum to elect a new leader), else
//! [`Verdict::Healthy`].

use crate::config::SynodConfig;
use crate::gateway::NodeStatus;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use synod_core::{Quorums, Role};

/// A learner this many slots behind the most advanced one makes the
/// cluster degraded (reports are read at slightly different moments, so
/// a busy cluster always shows some lag).
pub const LAGGING_SLOTS: u64 = 1_000;

/// One node's `/status` page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// Its role instances (`acceptor-1`, ...).
    pub roles: Vec<String>,
    /// Those that have stopped.
    pub stopped: Vec<String>,
    /// Its proposers.
    pub proposers: Vec<ProposerReport>,
    /// Its acceptors.
    pub acceptors: Vec<AcceptorReport>,
    /// Its learners.
    pub learners: Vec<LearnerReport>,
    /// Every other node, and whether it holds a connection to this one.
    pub peers: BTreeMap<String, bool>,
    /// Commands this node's gateway sent again.
    pub resends: u64,
    /// Commands this node's gateway saw answered.
    pub commands_answered: u64,
    /// The sum of their submit-to-answer times, in seconds.
    pub commands_seconds: f64,
}

/// A proposer's line of a [`NodeReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposerReport {
    /// `proposer-N`.
    pub id: String,
    /// The proposer it knows leads (itself when leading).
    pub leader: Option<u32>,
    /// Its ballot (round, proposer) while it leads.
    pub ballot: Option<(u64, u32)>,
    /// Every slot below this is decided.
    pub decided_upto: u64,
    /// The highest round it has used.
    pub max_round: u64,
    /// Times it was elected since its node started.
    pub elections_won: u64,
    /// Times the leader it knows changed since its node started.
    pub leader_changes: u64,
    /// The configuration it works in: which acceptors vote and their
    /// quorums, which proposers may lead, which learners count (absent in
    /// reports of older nodes).
    #[serde(default)]
    pub membership: Option<synod_core::Membership>,
}

impl NodeReport {
    /// The latest configuration among `reports`' proposers, if any says.
    pub fn latest_membership<'a>(
        reports: impl IntoIterator<Item = &'a NodeReport>,
    ) -> Option<synod_core::Membership> {
        let proposers = reports.into_iter().flat_map(|r| &r.proposers);
        let memberships = proposers.filter_map(|p| p.membership.as_ref());
        memberships.max_by_key(|m| m.epoch).cloned()
    }
}

/// The voting acceptors and their quorums: the latest configuration a
/// proposer reported, else the config file's first one.
pub(crate) fn voting(
    config: &SynodConfig,
    latest: Option<synod_core::Membership>,
) -> (Vec<u32>, Quorums) {
    let membership = configuration(config, latest);
    (membership.acceptors, membership.quorums)
}

/// The latest configuration a proposer reported, else the config file's
/// first one (also for the proposers and learners of a report from a
/// node that did not name them).
fn configuration(
    config: &SynodConfig,
    latest: Option<synod_core::Membership>,
) -> synod_core::Membership {
    let first = synod_core::Membership::initial(
        config.initial(Role::Acceptor),
        config.quorum_system(),
        config.initial(Role::Proposer),
        config.initial(Role::Learner),
    );
    let Some(mut latest) = latest else {
        return first;
    };
    if latest.proposers.is_empty() || latest.learners.is_empty() {
        latest.proposers = first.proposers;
        latest.learners = first.learners;
    }
    latest
}

/// An acceptor's line of a [`NodeReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AcceptorReport {
    /// `acceptor-N`.
    pub id: String,
    /// The ballot (round, proposer) it promised.
    pub promised: (u64, u32),
    /// Accepted slots it holds.
    pub accepted_slots: usize,
    /// It discarded its votes below this slot.
    pub trimmed_below: u64,
}

/// A learner's line of a [`NodeReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnerReport {
    /// `learner-N`.
    pub id: String,
    /// Every slot below this is applied.
    pub applied: u64,
    /// Decided slots it holds.
    pub decided_held: usize,
    /// Commands applied to its state machine.
    pub commands_applied: u64,
    /// Hash chain over the applied log: learners at the same `applied`
    /// slot with equal digests applied the same commands slot by slot.
    #[serde(default)]
    pub log_digest: u64,
    /// Slots below this are in its snapshot, not its log.
    pub compacted_below: u64,
}

impl NodeReport {
    /// The report of `status`, with the peers' connection state.
    pub(crate) fn of(status: &NodeStatus, peers: BTreeMap<String, bool>) -> Self {
        let ids = |roles: &[synod_core::RoleId]| roles.iter().map(ToString::to_string).collect();
        NodeReport {
            node: status.node.clone(),
            roles: ids(&status.roles),
            stopped: ids(&status.stopped),
            proposers: status
                .proposers
                .iter()
                .map(|p| ProposerReport {
                    id: p.id.to_string(),
                    leader: p.leader,
                    ballot: p.leading_ballot.map(|b| (b.round, b.proposer)),
                    decided_upto: p.first_unchosen,
                    max_round: p.max_round,
                    elections_won: p.elections_won,
                    leader_changes: p.leader_changes,
                    membership: Some(p.epoch.membership.clone()),
                })
                .collect(),
            acceptors: status
                .acceptors
                .iter()
                .map(|a| AcceptorReport {
                    id: a.id.to_string(),
                    promised: (a.promised.round, a.promised.proposer),
                    accepted_slots: a.accepted,
                    trimmed_below: a.trimmed_below,
                })
                .collect(),
            learners: status
                .learners
                .iter()
                .map(|l| LearnerReport {
                    id: l.id.to_string(),
                    applied: l.applied,
                    decided_held: l.decided,
                    commands_applied: l.commands_applied,
                    log_digest: l.log_digest,
                    compacted_below: l.compacted_below,
                })
                .collect(),
            peers,
            resends: status.resends,
            commands_answered: status.commands_answered,
            commands_seconds: status.commands_seconds,
        }
    }
}

/// What became of asking one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Probe {
    /// It answered with its report.
    Answered {
        /// The report.
        report: NodeReport,
    },
    /// It holds connections (its node port answers) but gave no report:
    /// it has no admin or client port to ask. Its roles count as up.
    Listening,
    /// It could not be reached.
    Unreachable {
        /// Why.
        error: String,
    },
}

/// How the cluster is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every node answered, no role stopped, no learner far behind.
    Healthy,
    /// Commands are decided, but something is missing.
    Degraded,
    /// No majority of acceptors is up, or no proposer knows a leader.
    Unavailable,
}

impl Verdict {
    /// `synod status`'s exit code: 0, 1, 2.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::Unavailable => 2,
        }
    }
}

/// A role instance of the config and whether it is up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleState {
    /// `acceptor-2`, ...
    pub role: String,
    /// The node it is placed on.
    pub node: String,
    /// Its node answered (or listens) and it has not stopped.
    pub up: bool,
    /// The latest configuration leaves it out: placed and running, but
    /// it votes, leads or holds back trimming only once `synod member
    /// add` puts it in.
    #[serde(default)]
    pub standby: bool,
}

/// The leader, as the proposers tell it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leader {
    /// Its proposer number.
    pub proposer: u32,
    /// Its ballot, when it reported it itself.
    pub ballot: Option<(u64, u32)>,
}

/// One learner's progress relative to the most advanced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnerLag {
    /// `learner-N`.
    pub id: String,
    /// Its node.
    pub node: String,
    /// Every slot below this is applied.
    pub applied: u64,
    /// Slots behind the most advanced learner.
    pub lag: u64,
}

/// The verdict and the facts behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// The cluster id.
    pub cluster: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Every reason it is not healthy.
    pub problems: Vec<String>,
    /// Acceptors up.
    pub acceptors_up: usize,
    /// Acceptors in the config.
    pub acceptors: usize,
    /// The fewest acceptors a phase-2 quorum has (a majority unless
    /// `[quorums]` says otherwise).
    pub majority: usize,
    /// What a phase-2 quorum needs, in words: "a majority is 2".
    #[serde(default)]
    pub quorum: String,
    /// The leader, if any proposer knows one.
    pub leader: Option<Leader>,
    /// Every role of the config.
    pub roles: Vec<RoleState>,
    /// Every learner that reported.
    pub learners: Vec<LearnerLag>,
    /// What each node of the config said.
    pub nodes: BTreeMap<String, Probe>,
}

/// Judge the cluster of `config` from what its nodes said (`probes`, one
/// per node of the config; a node missing from it counts as unreachable).
pub fn assess(config: &SynodConfig, mut probes: BTreeMap<String, Probe>) -> ClusterHealth {
    for node in config.nodes.keys() {
        probes
            .entry(node.clone())
            .or_insert_with(|| Probe::Unreachable {
                error: "not asked".into(),
            });
    }
    let mut problems = Vec::new();
    for (node, probe) in &probes {
        if let Probe::Unreachable { error } = probe {
            problems.push(format!("{node} is unreachable: {error}"));
        }
    }
    let answered = probes.values().filter_map(|probe| match probe {
        Probe::Answered { report } => Some(report),
        _ => None,
    });
    let membership = configuration(config, NodeReport::latest_membership(answered));
    let roles = role_states(config, &probes, &membership, &mut problems);
    let quorums = membership.quorums;
    let up_ids: BTreeSet<u32> = roles
        .iter()
        .filter(|r| r.up)
        .filter_map(|r| crate::config::parse_role(&r.role))
        .filter(|r| r.role == Role::Acceptor)
        .map(|r| r.index)
        .collect();
    let (acceptors_up, acceptors_total) = (up_ids.len(), membership.acceptors.len());
    let majority = smallest_phase2_quorum(quorums, acceptors_total);
    let quorum = quorums.describe_phase2(acceptors_total);
    if membership.phase2(&up_ids) && !membership.phase1(&up_ids) {
        problems.push(format!(
            "{acceptors_up} of {acceptors_total} acceptors are up: enough to commit, too few to elect a new leader"
        ));
    }
    let leader = leader(&probes);
    let learners = learner_lags(&probes);
    for l in learners.iter().filter(|l| l.lag > LAGGING_SLOTS) {
        problems.push(format!("{} on {} is {} slots behind", l.id, l.node, l.lag));
    }
    let mut verdict = if problems.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Degraded
    };
    if !membership.phase2(&up_ids) {
        problems.push(format!(
            "no quorum: {acceptors_up} of {acceptors_total} acceptors are up, {quorum}"
        ));
        verdict = Verdict::Unavailable;
    }
    let asked_proposers = probes
        .values()
        .any(|probe| matches!(probe, Probe::Answered { report } if !report.proposers.is_empty()));
    match (&leader, asked_proposers) {
        (Some(_), _) => {}
        (None, true) => {
            problems.push("no proposer knows a leader".into());
            if !member_proposer_up(&roles) {
                problems.push(
                    "no proposer of the configuration is up, and standby proposers never campaign: bring one back, or place one of their ids on a live node (with --init)".into(),
                );
            }
            verdict = Verdict::Unavailable;
        }
        (None, false) => {
            // Only node ports answered for the proposers: a leader may
            // well exist, but nothing here can say.
            problems.push(
                "no proposer could be asked about the leader (give their nodes an admin_listen)"
                    .into(),
            );
            verdict = verdict.max(Verdict::Degraded);
        }
    }
    ClusterHealth {
        cluster: config.cluster.id.clone(),
        verdict,
        problems,
        acceptors_up,
        acceptors: acceptors_total,
        majority,
        quorum,
        leader,
        roles,
        learners,
        nodes: probes,
    }
}

/// Whether any proposer of the configuration is up.
fn member_proposer_up(roles: &[RoleState]) -> bool {
    let proposer = |r: &&RoleState| r.role.starts_with("proposer-");
    roles.iter().filter(proposer).any(|r| r.up && !r.standby)
}

/// The size of the smallest phase-2 quorum of `acceptors` acceptors.
fn smallest_phase2_quorum(quorums: Quorums, acceptors: usize) -> usize {
    match quorums {
        Quorums::Counts { phase2, .. } => phase2,
        Quorums::Grid { columns } => columns.min(acceptors),
    }
}

fn role_states(
    config: &SynodConfig,
    probes: &BTreeMap<String, Probe>,
    membership: &synod_core::Membership,
    problems: &mut Vec<String>,
) -> Vec<RoleState> {
    config
        .placement_moved(&membership.moved)
        .into_iter()
        .map(|(role, node)| {
            let name = role.to_string();
            let standby = !membership.includes(role);
            let up = match probes.get(&node) {
                Some(Probe::Answered { report }) => {
                    let stopped = report.stopped.contains(&name);
                    if stopped {
                        problems.push(format!("{name} on {node} has stopped"));
                    }
                    !stopped
                }
                Some(Probe::Listening) => true,
                _ => false,
            };
            if !up && !standby && role.role == Role::Learner {
                problems.push(format!(
                    "{name} is down and in the configuration: the acceptors keep every slot since its last snapshot until it is back, or removed with `synod member remove {name}`"
                ));
            }
            RoleState {
                role: name,
                node,
                up,
                standby,
            }
        })
        .collect()
}

/// The leader: the proposer leading with the highest ballot, or else the
/// one most proposers name.
fn leader(probes: &BTreeMap<String, Probe>) -> Option<Leader> {
    let proposers = probes.values().flat_map(|probe| match probe {
        Probe::Answered { report } => report.proposers.as_slice(),
        _ => &[],
    });
    let mut leading: Option<(u64, u32)> = None;
    let mut named: BTreeMap<u32, usize> = BTreeMap::new();
    for p in proposers {
        if let Some(ballot) = p.ballot {
            leading = leading.max(Some(ballot));
        }
        if let Some(leader) = p.leader {
            *named.entry(leader).or_default() += 1;
        }
    }
    if let Some(ballot) = leading {
        return Some(Leader {
            proposer: ballot.1,
            ballot: Some(ballot),
        });
    }
    let (proposer, _) = named.into_iter().max_by_key(|&(id, votes)| (votes, id))?;
    Some(Leader {
        proposer,
        ballot: None,
    })
}

fn learner_lags(probes: &BTreeMap<String, Probe>) -> Vec<LearnerLag> {
    let mut learners: Vec<LearnerLag> = probes
        .iter()
        .flat_map(|(node, probe)| match probe {
            Probe::Answered { report } => report
                .learners
                .iter()
                .map(|l| LearnerLag {
                    id: l.id.clone(),
                    node: node.clone(),
                    applied: l.applied,
                    lag: 0,
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let ahead = learners.iter().map(|l| l.applied).max().unwrap_or(0);
    for l in &mut learners {
        l.lag = ahead - l.applied;
    }
    learners
}

/// GET `http://address/status` (`address` is `host:port`) and parse it,
/// within `timeout`.
pub fn fetch_report(address: &str, timeout: Duration) -> Result<NodeReport, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let text = agent
        .get(format!("http://{address}/status"))
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .map_err(|e| format!("{address}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{address}: not a node report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SynodConfig {
        let root = std::env::temp_dir().join("synod-health-test");
        let text = synod_testkit::TestCluster::three_replicas("h")
            .render(&root)
            .toml;
        SynodConfig::from_toml_str(&text, "test").unwrap().0
    }

    /// Node `n` (1..=3) with its three roles, its proposer knowing
    /// `leader`, its learner applied below `applied`.
    fn report(n: u32, leader: Option<u32>, applied: u64) -> Probe {
        let ballot = (leader == Some(n)).then_some((7, n));
        Probe::Answered {
            report: NodeReport {
                node: format!("n{n}"),
                roles: ["proposer", "acceptor", "learner"]
                    .map(|r| format!("{r}-{n}"))
                    .to_vec(),
                proposers: vec![ProposerReport {
                    id: format!("proposer-{n}"),
                    leader,
                    ballot,
                    ..Default::default()
                }],
                learners: vec![LearnerReport {
                    id: format!("learner-{n}"),
                    applied,
                    ..Default::default()
                }],
                ..Default::default()
            },
        }
    }

    fn down() -> Probe {
        Probe::Unreachable {
            error: "refused".into(),
        }
    }

    /// Whether one of `health`'s problems says `text`.
    fn names(health: &ClusterHealth, text: &str) -> bool {
        health.problems.iter().any(|p| p.contains(text))
    }

    fn judge(probes: [Probe; 3]) -> ClusterHealth {
        let probes = probes
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("n{}", i + 1), p))
            .collect();
        assess(&config(), probes)
    }

    #[test]
    fn every_node_up_with_a_leader_is_healthy() {
        let health = judge([
            report(1, Some(2), 10),
            report(2, Some(2), 10),
            report(3, Some(2), 9),
        ]);
        assert_eq!(health.verdict, Verdict::Healthy, "{:?}", health.problems);
        assert_eq!(health.leader.unwrap().ballot, Some((7, 2)));
        assert_eq!((health.acceptors_up, health.majority), (3, 2));
        assert_eq!(health.learners.iter().map(|l| l.lag).max(), Some(1));
    }

    #[test]
    fn a_lost_node_degrades_and_a_lost_majority_is_unavailable() {
        let one = judge([report(1, Some(1), 5), report(2, Some(1), 5), down()]);
        assert_eq!(one.verdict, Verdict::Degraded);
        assert!(
            one.problems[0].contains("n3 is unreachable"),
            "{:?}",
            one.problems
        );
        let two = judge([report(1, Some(1), 5), down(), down()]);
        assert_eq!(two.verdict, Verdict::Unavailable);
        assert!(names(&two, "no quorum: 1 of 3"), "{:?}", two.problems);
    }

    #[test]
    fn a_stopped_acceptor_counts_as_down() {
        let mut stopped = report(3, Some(1), 5);
        if let Probe::Answered { report } = &mut stopped {
            report.stopped = vec!["acceptor-3".into()];
        }
        let health = judge([report(1, Some(1), 5), down(), stopped]);
        assert_eq!(health.verdict, Verdict::Unavailable);
        assert_eq!(health.acceptors_up, 1);
        assert!(names(&health, "acceptor-3 on n3 has stopped"));
    }

    #[test]
    fn no_leader_is_unavailable_and_a_far_behind_learner_degrades() {
        let leaderless = judge([report(1, None, 5), report(2, None, 5), report(3, None, 5)]);
        assert_eq!(leaderless.verdict, Verdict::Unavailable);
        let behind = judge([
            report(1, Some(1), 5_000),
            report(2, Some(1), 5_000),
            report(3, Some(1), 5_000 - LAGGING_SLOTS - 1),
        ]);
        assert_eq!(behind.verdict, Verdict::Degraded);
        assert!(
            behind.problems[0].contains("learner-3 on n3"),
            "{:?}",
            behind.problems
        );
    }

    /// A configuration after the first: acceptors 1–3, `proposers` and
    /// `learners`.
    fn later_configuration(proposers: &[u32], learners: &[u32]) -> synod_core::Membership {
        let mut membership = synod_core::Membership::initial(
            vec![1, 2, 3],
            Quorums::majority(3),
            proposers.to_vec(),
            learners.to_vec(),
        );
        membership.epoch = 1;
        membership
    }

    #[test]
    fn roles_outside_the_configuration_are_standby_and_a_down_member_learner_is_named() {
        let mut latest = report(1, Some(1), 5);
        if let Probe::Answered { report } = &mut latest {
            report.proposers[0].membership = Some(later_configuration(&[1, 2], &[1, 2]));
        }
        let health = judge([latest, report(2, Some(1), 5), down()]);
        let standby: Vec<&str> = health
            .roles
            .iter()
            .filter(|r| r.standby)
            .map(|r| r.role.as_str())
            .collect();
        assert_eq!(standby, ["proposer-3", "learner-3"]);
        assert!(
            !names(&health, "learner-3 is down"),
            "a standby learner holds nothing back: {:?}",
            health.problems
        );
        let mut leaderless = [report(1, None, 5), report(2, None, 5), report(3, None, 5)];
        for probe in &mut leaderless[..2] {
            if let Probe::Answered { report } = probe {
                report.stopped = vec![report.proposers[0].id.clone()];
            }
        }
        if let Probe::Answered { report } = &mut leaderless[2] {
            report.proposers[0].membership = Some(later_configuration(&[1, 2], &[1, 2, 3]));
        }
        let health = judge(leaderless);
        assert!(
            names(&health, "no proposer of the configuration is up"),
            "proposers 1 and 2 stopped, 3 is standby: {:?}",
            health.problems
        );
        let health = judge([report(1, Some(1), 5), report(2, Some(1), 5), down()]);
        assert!(health.roles.iter().all(|r| !r.standby));
        assert!(
            names(&health, "learner-3 is down and in the configuration"),
            "{:?}",
            health.problems
        );
    }

    #[test]
    fn a_role_the_log_moved_is_judged_on_its_new_node() {
        let mut latest = report(1, Some(1), 5);
        let mut moved = later_configuration(&[1, 2, 3], &[1, 2, 3]);
        moved.moved = vec![(synod_core::RoleId::proposer(3), "n1".into())];
        if let Probe::Answered { report } = &mut latest {
            report.proposers[0].membership = Some(moved);
        }
        let health = judge([latest, report(2, Some(1), 5), down()]);
        let proposer_3 = health.roles.iter().find(|r| r.role == "proposer-3");
        let proposer_3 = proposer_3.expect("listed");
        assert_eq!((proposer_3.node.as_str(), proposer_3.up), ("n1", true));
        let learner_3 = health.roles.iter().find(|r| r.role == "learner-3");
        assert_eq!(learner_3.map(|r| r.up), Some(false), "n3 is down");
    }

    #[test]
    fn nodes_that_only_listen_count_as_up_but_cannot_name_a_leader() {
        let health = judge([Probe::Listening, Probe::Listening, Probe::Listening]);
        assert_eq!(health.acceptors_up, 3);
        assert_eq!(health.verdict, Verdict::Degraded, "{:?}", health.problems);
        assert!(health.problems[0].contains("no proposer could be asked"));
    }
}
