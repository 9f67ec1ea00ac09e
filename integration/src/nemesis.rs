//! Faults to inflict on a running [`Deployment`], and seeded schedules of
//! them.
//!
//! Network faults set the [`crate::proxy::FaultNet`] links; process faults
//! signal the `synod node` processes. Every fault is undone by
//! [`Nemesis::heal`]: links pass again, paused processes continue, killed
//! ones restart (without `--init`: their stores must be there).

use crate::deployment::Deployment;
use crate::proxy::LinkFault;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// One fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Cut every link to and from the node.
    Isolate(String),
    /// Cut every link to and from the current leader's node.
    IsolateLeader,
    /// Cut the links between the groups (each node in one group).
    Partition(Vec<Vec<String>>),
    /// Each node keeps only its two neighbours in layout order: with five
    /// nodes, each sees a different majority.
    Ring,
    /// Two halves that cannot reach each other, and one node between
    /// them that reaches both.
    Bridge,
    /// The node's outgoing links work, nothing reaches it.
    Deafen(String),
    /// The node hears everything, nothing it sends arrives.
    Mute(String),
    /// The leader hears everything, nothing it sends arrives.
    MuteLeader,
    /// The node's links keep their connections and carry nothing.
    Blackhole(String),
    /// Every link drops, duplicates, reorders and delays frames.
    Flaky(LinkFault),
    /// SIGKILL the node (restarted at heal).
    Kill(String),
    /// SIGKILL the leader's node (restarted at heal).
    KillLeader,
    /// SIGSTOP the node (SIGCONT at heal).
    Pause(String),
    /// SIGSTOP the leader's node (SIGCONT at heal).
    PauseLeader,
    /// SIGKILL and restart every node, one after the other, each once
    /// the previous one is ready again.
    RollingRestart,
}

impl Fault {
    /// A short name for the report (`isolate`, `kill-leader`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Isolate(_) => "isolate",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Partition(_) => "partition",
            Fault::Ring => "ring",
            Fault::Bridge => "bridge",
            Fault::Deafen(_) => "deafen",
            Fault::Mute(_) => "mute",
            Fault::MuteLeader => "mute-leader",
            Fault::Blackhole(_) => "blackhole",
            Fault::Flaky(_) => "flaky",
            Fault::Kill(_) => "kill",
            Fault::KillLeader => "kill-leader",
            Fault::Pause(_) => "pause",
            Fault::PauseLeader => "pause-leader",
            Fault::RollingRestart => "rolling-restart",
        }
    }
}

/// The flaky-link fault of the schedules: a fifth of frames dropped,
/// some duplicated and reordered, 0–20 ms of delay.
pub const FLAKY: LinkFault = LinkFault {
    mode: crate::proxy::Mode::Pass,
    drop: 0.2,
    duplicate: 0.1,
    reorder: 0.1,
    delay: Duration::from_millis(2),
    jitter: Duration::from_millis(18),
};

/// What a fault left to undo.
#[derive(Debug, Default)]
pub struct Nemesis {
    killed: BTreeSet<String>,
    paused: BTreeSet<String>,
}

impl Nemesis {
    /// Inflict `fault`; returns the node it targeted, if one.
    pub fn apply(&mut self, deployment: &mut Deployment, fault: &Fault) -> Option<String> {
        let nodes = deployment.nodes().to_vec();
        match fault {
            Fault::Isolate(node) => self.isolate(deployment, node),
            Fault::IsolateLeader => {
                let node = deployment.leader()?;
                self.isolate(deployment, &node)
            }
            Fault::Partition(groups) => {
                cut_between(deployment, groups);
                None
            }
            Fault::Ring => {
                let n = nodes.len();
                for (i, from) in nodes.iter().enumerate() {
                    for (j, to) in nodes.iter().enumerate() {
                        let near = (i + 1) % n == j || (j + 1) % n == i;
                        if i != j && !near {
                            deployment.net().set(from, to, LinkFault::CUT);
                        }
                    }
                }
                None
            }
            Fault::Bridge => {
                let middle = nodes.len() / 2;
                let groups = [nodes[..middle].to_vec(), nodes[middle + 1..].to_vec()];
                cut_between(deployment, &groups);
                Some(nodes[middle].clone())
            }
            Fault::Deafen(node) => {
                for other in nodes.iter().filter(|o| *o != node) {
                    deployment.net().set(other, node, LinkFault::CUT);
                }
                Some(node.clone())
            }
            Fault::Mute(node) => self.mute(deployment, node),
            Fault::MuteLeader => {
                let node = deployment.leader()?;
                self.mute(deployment, &node)
            }
            Fault::Blackhole(node) => {
                for other in nodes.iter().filter(|o| *o != node) {
                    deployment.net().set(other, node, LinkFault::BLACKHOLE);
                    deployment.net().set(node, other, LinkFault::BLACKHOLE);
                }
                Some(node.clone())
            }
            Fault::Flaky(fault) => {
                deployment.net().set_all(*fault);
                None
            }
            Fault::Kill(node) => self.kill(deployment, node),
            Fault::KillLeader => {
                let node = deployment.leader()?;
                self.kill(deployment, &node)
            }
            Fault::Pause(node) => self.pause(deployment, node),
            Fault::PauseLeader => {
                let node = deployment.leader()?;
                self.pause(deployment, &node)
            }
            Fault::RollingRestart => {
                for node in &nodes {
                    deployment.sigkill(node);
                    deployment.start(node);
                }
                None
            }
        }
    }

    fn isolate(&mut self, deployment: &Deployment, node: &str) -> Option<String> {
        let others: Vec<String> = deployment
            .nodes()
            .iter()
            .filter(|o| *o != node)
            .cloned()
            .collect();
        cut_between(deployment, &[vec![node.to_owned()], others]);
        Some(node.to_owned())
    }

    fn mute(&mut self, deployment: &Deployment, node: &str) -> Option<String> {
        for other in deployment.nodes().iter().filter(|o| *o != node) {
            deployment.net().set(node, other, LinkFault::CUT);
        }
        Some(node.to_owned())
    }

    fn kill(&mut self, deployment: &mut Deployment, node: &str) -> Option<String> {
        if deployment.is_running(node) {
            deployment.sigkill(node);
            self.killed.insert(node.to_owned());
        }
        Some(node.to_owned())
    }

    fn pause(&mut self, deployment: &mut Deployment, node: &str) -> Option<String> {
        if deployment.is_running(node) && self.paused.insert(node.to_owned()) {
            deployment.pause(node);
        }
        Some(node.to_owned())
    }

    /// Undo every fault: links pass, paused nodes continue, killed nodes
    /// are started again (together, each waited for until ready).
    pub fn heal(&mut self, deployment: &mut Deployment) {
        deployment.net().heal();
        for node in std::mem::take(&mut self.paused) {
            deployment.resume(&node);
        }
        let killed: Vec<String> = std::mem::take(&mut self.killed).into_iter().collect();
        if !killed.is_empty() {
            deployment.start_nodes(&killed);
        }
    }
}

/// Cut every link between nodes of different `groups`, both ways.
fn cut_between(deployment: &Deployment, groups: &[Vec<String>]) {
    for (i, group) in groups.iter().enumerate() {
        for (j, other) in groups.iter().enumerate() {
            if i == j {
                continue;
            }
            for from in group {
                for to in other {
                    deployment.net().set(from, to, LinkFault::CUT);
                }
            }
        }
    }
}

/// One step of a schedule: a fault held for a while, then healed and
/// left quiet for a while.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The fault.
    pub fault: Fault,
    /// How long it lasts.
    pub hold: Duration,
    /// How long the cluster runs healed before the next step.
    pub quiet: Duration,
}

/// Every fault kind a random schedule draws from, for `nodes`.
pub fn every_fault(nodes: &[String]) -> Vec<Fault> {
    let mut faults = vec![
        Fault::IsolateLeader,
        Fault::MuteLeader,
        Fault::Ring,
        Fault::Bridge,
        Fault::Flaky(FLAKY),
        Fault::KillLeader,
        Fault::PauseLeader,
        Fault::RollingRestart,
    ];
    for node in nodes {
        faults.push(Fault::Isolate(node.clone()));
        faults.push(Fault::Deafen(node.clone()));
        faults.push(Fault::Blackhole(node.clone()));
        faults.push(Fault::Kill(node.clone()));
        faults.push(Fault::Pause(node.clone()));
    }
    let minority = nodes.len() / 2;
    faults.push(Fault::Partition(vec![
        nodes[..minority].to_vec(),
        nodes[minority..].to_vec(),
    ]));
    faults
}

/// A schedule of `steps` faults drawn from `faults` with `seed`: each held
/// 0.5–3 s, then 1–3 s quiet. The same seed gives the same schedule.
pub fn random_schedule(seed: u64, faults: &[Fault], steps: usize) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..steps)
        .map(|_| Step {
            fault: faults.choose(&mut rng).expect("some faults").clone(),
            hold: Duration::from_millis(rng.random_range(500..3000)),
            quiet: Duration::from_millis(rng.random_range(1000..3000)),
        })
        .collect()
}
