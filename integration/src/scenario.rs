//! A fault scenario end to end: start a layout with every link through a
//! proxy, run the workload, inflict a schedule of faults (each healed
//! before the next), then check what the clients saw.
//!
//! The checks, in order, each failing the scenario with its seed and
//! schedule printed so it replays:
//! 1. the register history is linearizable ([`crate::linearizability`]),
//!    including one read of every register after the last heal;
//! 2. every acknowledged fresh-key write reads back with its value
//!    ([`missing_writes`]);
//! 3. every learner reaches the same applied slot with the same log
//!    digest ([`compare_learners`]).
//!
//! After each heal it measures how long the cluster takes to answer a
//! write again ([`Report::worst_recovery`]).

use crate::deployment::Deployment;
use crate::history::{self, Call, Op, Tally};
use crate::linearizability::{self, Checked};
use crate::nemesis::{Nemesis, Step};
use crate::workload::{self, Results, Workload};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};
use synod_client::{Client, ClientConfig};
use synod_testkit::TestCluster;

/// How long the learners get to agree after the workload stops.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How long the cluster gets to answer again after a heal.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// A scenario to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name in reports.
    pub name: String,
    /// The layout.
    pub cluster: TestCluster,
    /// Seeds the proxies' fault draws (the schedule is given).
    pub seed: u64,
    /// The faults, in order.
    pub steps: Vec<Step>,
    /// The load.
    pub workload: Workload,
    /// Load before the first fault.
    pub warmup: Duration,
}

/// What a scenario did and found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// Wall time from the first client operation to the last.
    pub duration: Duration,
    /// Register operations by outcome.
    pub tally: Tally,
    /// Fresh-key writes acknowledged (all read back).
    pub acknowledged: usize,
    /// Fresh-key writes without an answer.
    pub unanswered: usize,
    /// What the linearizability check covered.
    pub checked: Checked,
    /// Per fault kind, the longest time from heal to an answered write.
    pub worst_recovery: BTreeMap<&'static str, Duration>,
    /// Frames the proxies dropped (0 means the faults did not bite).
    pub frames_dropped: u64,
    /// Leader changes the faults caused, as the proposers count them.
    pub leader_changes: u64,
}

impl Report {
    /// One table row: name, duration, ok/cas-failed/unknown, fresh writes,
    /// recovery per fault kind.
    pub fn row(&self) -> String {
        let mut recovery = String::new();
        for (kind, took) in &self.worst_recovery {
            let _ = write!(recovery, "{kind} {:.2}s ", took.as_secs_f64());
        }
        format!(
            "| {} | {:.0}s | {}/{}/{} | {} ({} unanswered) | yes ({} ops) | 0 | {}|",
            self.name,
            self.duration.as_secs_f64(),
            self.tally.ok,
            self.tally.refused,
            self.tally.unknown,
            self.acknowledged,
            self.unanswered,
            self.checked.ops,
            recovery
        )
    }
}

impl Scenario {
    /// Run it; panics, naming the seed and schedule, if a check fails.
    pub fn run(&self) -> Report {
        eprintln!(
            "scenario {}: seed {}, {} steps",
            self.name,
            self.seed,
            self.steps.len()
        );
        let mut deployment = Deployment::with_faults(self.cluster.clone(), self.seed);
        deployment.start_all();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the probes");
        let running = self.workload.start(deployment.endpoints(), "it");
        std::thread::sleep(self.warmup);
        let mut nemesis = Nemesis::default();
        let mut worst_recovery = BTreeMap::new();
        let mut probe = probe_client(&deployment);
        for (index, step) in self.steps.iter().enumerate() {
            let target = nemesis.apply(&mut deployment, &step.fault);
            eprintln!(
                "  step {index}: {:?} on {target:?} for {:?} ({} ops so far)",
                step.fault,
                step.hold,
                running.ops_so_far()
            );
            std::thread::sleep(step.hold);
            nemesis.heal(&mut deployment);
            let healed = Instant::now();
            let answered = runtime.block_on(answered_write(&mut probe, index));
            let took = healed.elapsed();
            if !answered {
                self.fail(&format!(
                    "no write answered within {RECOVERY_LIMIT:?} of healing step {index}; the nodes say:\n{}",
                    deployment.post_mortem()
                ));
            }
            let worst = worst_recovery.entry(step.fault.kind()).or_insert(took);
            *worst = (*worst).max(took);
            std::thread::sleep(step.quiet);
        }
        let mut results = running.stop();
        let duration = results
            .history
            .iter()
            .map(|op| op.complete)
            .max()
            .unwrap_or_default();
        runtime.block_on(self.read_every_register(&deployment, &mut results));
        self.check(&deployment, &runtime, &results, duration, worst_recovery)
    }

    fn check(
        &self,
        deployment: &Deployment,
        runtime: &tokio::runtime::Runtime,
        results: &Results,
        duration: Duration,
        worst_recovery: BTreeMap<&'static str, Duration>,
    ) -> Report {
        let checked = linearizability::check(&results.history)
            .unwrap_or_else(|violation| self.fail(&violation.to_string()));
        let missing = runtime.block_on(missing_writes(deployment, &results.acknowledged));
        if !missing.is_empty() {
            self.fail(&format!(
                "{} acknowledged writes lost or changed, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        if let Err(why) = settle_learners(deployment) {
            self.fail(&why);
        }
        let report = Report {
            name: self.name.clone(),
            duration,
            tally: history::tally(&results.history),
            acknowledged: results.acknowledged.len(),
            unanswered: results.unanswered,
            checked,
            worst_recovery,
            frames_dropped: deployment.net().total_dropped(),
            leader_changes: leader_changes(deployment),
        };
        eprintln!("{}", report.row());
        report
    }

    /// Read every register in use once after the last heal, into the history.
    async fn read_every_register(&self, deployment: &Deployment, results: &mut Results) {
        let clock = results.clock.clone();
        let mut client = deployment.client();
        let last = results.history.iter().map(|o| o.invoke).max();
        for key in self.workload.registers_at(last.unwrap_or_default()) {
            let invoke = clock.now();
            let outcome = workload::execute(&mut client, &key, &Call::Get).await;
            if outcome == history::Outcome::Unknown {
                self.fail(&format!("the final read of {key} got no answer"));
            }
            results.history.push(Op {
                client: usize::MAX,
                key,
                call: Call::Get,
                outcome,
                invoke,
                complete: clock.now(),
            });
        }
    }

    fn fail(&self, why: &str) -> ! {
        let mut schedule = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(
                schedule,
                "  {i}: {:?} for {:?}, then {:?} quiet",
                step.fault, step.hold, step.quiet
            );
        }
        panic!(
            "scenario {} failed: {why}\nreplay: seed {} (workload seed {}), schedule:\n{schedule}",
            self.name, self.seed, self.workload.seed
        )
    }
}

fn probe_client(deployment: &Deployment) -> Client {
    let mut config = ClientConfig::new(deployment.endpoints().to_vec(), "it");
    config.timeout = Duration::from_millis(500);
    config.attempt_timeout = Duration::from_millis(250);
    Client::new(config)
}

/// Put probe keys until one is answered (true) or [`RECOVERY_LIMIT`] passes.
async fn answered_write(probe: &mut Client, step: usize) -> bool {
    let began = Instant::now();
    while began.elapsed() < RECOVERY_LIMIT {
        if probe
            .put(format!("probe-{step}").as_bytes(), b"ok")
            .await
            .is_ok()
        {
            return true;
        }
    }
    false
}

/// The acknowledged writes that do not read back with their value.
pub async fn missing_writes(
    deployment: &Deployment,
    acknowledged: &BTreeMap<String, String>,
) -> Vec<String> {
    let writes: Vec<(&String, &String)> = acknowledged.iter().collect();
    let share = writes.len().div_ceil(READ_BACK_CLIENTS).max(1);
    let readers = writes.chunks(share).map(|writes| async move {
        let mut client = deployment.client();
        let mut missing = Vec::new();
        for (key, value) in writes {
            match client.get(key.as_bytes()).await {
                Ok(read) if read == value.as_bytes() => {}
                other => missing.push(format!("{key}: {other:?}")),
            }
        }
        missing
    });
    futures_util::future::join_all(readers)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Clients reading acknowledged writes back at once: a read is a log
/// round, so one client alone reads a long run's writes for hours.
const READ_BACK_CLIENTS: usize = 16;

/// Whether learners agree: `Ok(true)` when all `expected` learners are at
/// the same applied slot with the same digest, `Ok(false)` while they are
/// at different slots (still applying), `Err` when two learners at the same
/// slot applied different logs.
pub fn compare_learners(progress: &[(String, u64, u64)], expected: usize) -> Result<bool, String> {
    let mut by_slot: BTreeMap<u64, BTreeMap<u64, Vec<&str>>> = BTreeMap::new();
    for (learner, applied, digest) in progress {
        by_slot
            .entry(*applied)
            .or_default()
            .entry(*digest)
            .or_default()
            .push(learner);
    }
    if let Some((slot, digests)) = by_slot.iter().find(|(_, d)| d.len() > 1) {
        return Err(format!(
            "learners applied different logs up to slot {slot}: {digests:?}"
        ));
    }
    Ok(progress.len() == expected && by_slot.len() == 1)
}

/// Wait until every learner applied the same log, or say why not.
fn settle_learners(deployment: &Deployment) -> Result<(), String> {
    let began = Instant::now();
    let expected = deployment.learner_count();
    let mut last = Vec::new();
    while began.elapsed() < SETTLE_LIMIT {
        last = deployment.learner_progress();
        if compare_learners(&last, expected)? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the learners did not reach one slot within {SETTLE_LIMIT:?}: {last:?}"
    ))
}

/// Leader changes counted by every running proposer.
fn leader_changes(deployment: &Deployment) -> u64 {
    deployment
        .nodes()
        .iter()
        .filter_map(|node| deployment.admin_status(node))
        .flat_map(|status| status["proposers"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["leader_changes"].as_u64())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::compare_learners;

    fn learner(name: &str, applied: u64, digest: u64) -> (String, u64, u64) {
        (name.to_owned(), applied, digest)
    }

    #[test]
    fn learners_at_one_slot_with_one_digest_agree() {
        let progress = [learner("learner-1", 9, 7), learner("learner-2", 9, 7)];
        assert_eq!(compare_learners(&progress, 2), Ok(true));
    }

    #[test]
    fn learners_at_different_slots_are_not_settled_yet() {
        let progress = [learner("learner-1", 9, 7), learner("learner-2", 8, 3)];
        assert_eq!(compare_learners(&progress, 2), Ok(false));
        let one_missing = [learner("learner-1", 9, 7)];
        assert_eq!(compare_learners(&one_missing, 2), Ok(false));
    }

    /// Negative control: two learners at one slot with different logs.
    #[test]
    fn learners_that_applied_different_logs_are_caught() {
        let progress = [
            learner("learner-1", 9, 7),
            learner("learner-2", 9, 8),
            learner("learner-3", 4, 1),
        ];
        let why = compare_learners(&progress, 3).expect_err("diverged");
        assert!(why.contains("slot 9"), "{why}");
    }
}
