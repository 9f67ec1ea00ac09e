//! The simulator as a test suite: fixed seeds must be safe and live, the
//! amnesia, early-release, stubborn-leader, snapshot and trim controls must
//! be caught, and a seed must replay bit for bit.

use synod_sim::{SimOptions, SimQuorums, run_seed};

/// Seeds run on every `cargo test`. The CLI runs thousands more.
const FIXED_SEEDS: u64 = 600;

/// Run `seeds` under `options`; every seed must submit commands, stay
/// safe and live, and (under a frame limit) send no message too large.
fn assert_safe_and_live(seeds: std::ops::Range<u64>, options: &SimOptions) {
    let mut failures = Vec::new();
    for seed in seeds {
        let report = run_seed(seed, options);
        if let Some((at, violation)) = &report.violation {
            failures.push(format!("seed {seed}: at {at} ms: {violation}"));
        }
        if let Some(why) = &report.liveness_failure {
            failures.push(format!("seed {seed}: liveness: {why}"));
        }
        if report.oversized > 0 {
            let too_large = report.oversized;
            failures.push(format!(
                "seed {seed}: {too_large} messages larger than the frame"
            ));
        }
        assert!(report.commands > 0, "seed {seed} submitted no commands");
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fixed_seeds_are_safe_and_live() {
    assert_safe_and_live(0..FIXED_SEEDS, &SimOptions::default());
}

#[test]
fn snapshots_trims_transfers_wipes_and_session_expiries_happen_in_the_seeds() {
    let options = SimOptions::default();
    let reports: Vec<_> = (0..300).map(|seed| run_seed(seed, &options)).collect();
    let snapshots: u64 = reports.iter().map(|r| r.snapshots).sum();
    let restores: u64 = reports.iter().map(|r| r.restores).sum();
    assert!(snapshots > 0, "no learner took a snapshot");
    assert!(restores > 0, "no learner was restored from a snapshot");
    let sum = |field: fn(&synod_sim::SeedReport) -> u64| reports.iter().map(field).sum::<u64>();
    assert!(sum(|r| r.trims) > 0, "no acceptor was trimmed");
    assert!(sum(|r| r.wipes) > 0, "no learner lost its disk");
    assert!(
        sum(|r| r.proposer_wipes) > 0,
        "no proposer restarted on an empty store"
    );
    assert!(
        sum(|r| r.installs) > 0,
        "no learner fetched a snapshot from a peer"
    );
    assert!(
        sum(|r| r.expiries) > 0,
        "no client session expired under a command"
    );
}

#[test]
fn negative_control_a_command_resubmitted_under_a_new_id_is_applied_twice() {
    let options = SimOptions {
        resubmit_on_timeout: true,
        ..SimOptions::default()
    };
    let caught = (0..FIXED_SEEDS)
        .filter_map(|seed| run_seed(seed, &options).violation)
        .find(|(_, v)| v.property == "integrity");
    assert!(
        caught.is_some(),
        "a command applied under two ids must be caught"
    );
}

#[test]
fn negative_control_trimming_above_the_safe_point_loses_decided_values() {
    let options = SimOptions {
        unsafe_trim: true,
        ..SimOptions::default()
    };
    let stalled = (0..FIXED_SEEDS)
        .filter_map(|seed| run_seed(seed, &options).liveness_failure)
        .next();
    assert!(
        stalled.is_some(),
        "acceptors trimmed before the learners hold the values must lose some"
    );
}

#[test]
fn negative_control_a_snapshot_installed_without_its_tail_is_caught() {
    let options = SimOptions {
        snapshot_without_tail: true,
        ..SimOptions::default()
    };
    let caught = (0..FIXED_SEEDS)
        .filter_map(|seed| run_seed(seed, &options).violation)
        .find(|(_, v)| v.property == "state digest");
    assert!(
        caught.is_some(),
        "a learner that skips the log after its snapshot must diverge from replaying the log"
    );
}

#[test]
fn negative_control_amnesia_breaks_safety() {
    let options = SimOptions {
        amnesia: true,
        ..SimOptions::default()
    };
    let caught =
        (0..FIXED_SEEDS).find_map(|seed| run_seed(seed, &options).violation.map(|v| (seed, v)));
    let (seed, (_, violation)) =
        caught.expect("acceptors that forget their promises must break safety");
    assert!(
        ["agreement", "promise order"].contains(&violation.property),
        "seed {seed}: unexpected property {violation}"
    );
}

#[test]
fn negative_control_amnesia_breaks_agreement_itself() {
    let options = SimOptions {
        amnesia: true,
        ..SimOptions::default()
    };
    let agreement = (0..FIXED_SEEDS)
        .filter_map(|seed| run_seed(seed, &options).violation)
        .any(|(_, v)| v.property == "agreement");
    assert!(
        agreement,
        "forgetful acceptors must lead to two different decisions for a slot"
    );
}

#[test]
fn wiped_acceptors_are_refused_by_the_identity_gate_and_the_cluster_stays_safe_and_live() {
    // The fixed seeds (assert_safe_and_live over them elsewhere) include
    // these wipes; here: they happen, and each is refused.
    let options = SimOptions::default();
    let (mut wiped, mut refused) = (0, 0);
    for seed in 0..FIXED_SEEDS / 2 {
        let report = run_seed(seed, &options);
        assert!(
            report.violation.is_none(),
            "seed {seed}: {:?}",
            report.violation
        );
        assert!(
            report.liveness_failure.is_none(),
            "seed {seed}: {:?}",
            report.liveness_failure
        );
        wiped += report.acceptor_wipes;
        refused += report.refused_starts;
    }
    assert!(wiped >= 20, "only {wiped} acceptor disks wiped");
    assert_eq!(refused, wiped, "every wiped acceptor's start is refused");
}

#[test]
fn negative_control_adopting_wiped_acceptors_breaks_agreement() {
    let options = SimOptions {
        adopt_wiped_acceptors: true,
        ..SimOptions::default()
    };
    let violations: Vec<(u64, &'static str)> = (0..3 * FIXED_SEEDS)
        .filter_map(|seed| {
            run_seed(seed, &options)
                .violation
                .map(|(_, v)| (seed, v.property))
        })
        .collect();
    assert!(
        violations
            .iter()
            .any(|(_, property)| *property == "agreement"),
        "an acceptor that comes back empty and votes must break agreement: {violations:?}"
    );
}

#[test]
fn negative_control_early_release_breaks_safety() {
    let options = SimOptions {
        early_release: true,
        ..SimOptions::default()
    };
    // The window is one write's latency, so fewer seeds hit it than lose a
    // whole acceptor's state: search further (it stops at the first).
    let caught =
        (0..3 * FIXED_SEEDS).find_map(|seed| run_seed(seed, &options).violation.map(|v| (seed, v)));
    let (seed, (_, violation)) = caught.expect(
        "replies released before their writes are durable must break safety \
         when a crash loses the writes",
    );
    assert!(
        ["agreement", "promise order"].contains(&violation.property),
        "seed {seed}: unexpected property {violation}"
    );
}

#[test]
fn negative_control_stubborn_leaders_stall_when_cut_off() {
    let options = SimOptions {
        stubborn_leaders: true,
        ..SimOptions::default()
    };
    let stalled = (0..FIXED_SEEDS)
        .filter_map(|seed| run_seed(seed, &options).liveness_failure)
        .find(|why| why.contains("cut off from the acceptors"));
    assert!(
        stalled.is_some(),
        "a leader cut off from the acceptors that never gives up its ballot \
         must stall the cluster in some seed"
    );
}

/// A frame small enough that a few hundred slots of history outgrow it.
const SMALL_FRAME: usize = 1024;

fn restarted_proposers(unbounded_promises: bool) -> SimOptions {
    SimOptions {
        frame_limit: Some(SMALL_FRAME),
        restart_proposers: true,
        unbounded_promises,
        ..SimOptions::default()
    }
}

#[test]
fn every_proposer_restarted_at_once_elects_a_leader_under_a_small_frame_limit() {
    assert_safe_and_live(0..FIXED_SEEDS / 2, &restarted_proposers(false));
}

#[test]
fn negative_control_unbounded_promises_stall_a_restarted_cluster() {
    let options = restarted_proposers(true);
    let stalled = (0..FIXED_SEEDS / 2)
        .map(|seed| run_seed(seed, &options))
        .find(|report| report.liveness_failure.is_some() && report.oversized > 0);
    assert!(
        stalled.is_some(),
        "promises that carry the whole log must outgrow a small frame and \
         leave restarted proposers without a leader in some seed"
    );
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let options = SimOptions::default();
    for seed in [7, 4242] {
        let first = run_seed(seed, &options);
        let second = run_seed(seed, &options);
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.events, second.events, "seed {seed}");
    }
    assert_ne!(
        run_seed(1, &options).trace_hash,
        run_seed(2, &options).trace_hash
    );
}

#[test]
fn flexible_quorums_are_safe_and_live() {
    let options = SimOptions {
        quorums: SimQuorums::Flexible,
        ..SimOptions::default()
    };
    assert_safe_and_live(0..FIXED_SEEDS / 2, &options);
}

#[test]
fn negative_control_quorums_that_do_not_intersect_break_agreement() {
    let options = SimOptions {
        quorums: SimQuorums::Unsafe,
        ..SimOptions::default()
    };
    let caught = (0..3 * FIXED_SEEDS).find_map(|seed| {
        let (_, violation) = run_seed(seed, &options).violation?;
        Some((seed, violation))
    });
    let (seed, violation) = caught.expect(
        "with phase 1 + phase 2 = n acceptors, a new ballot's phase 1 can miss \
         a chosen value: agreement must break in some seed",
    );
    assert_eq!(violation.property, "agreement", "seed {seed}: {violation}");
}

/// Seeds of the lease workload run on every `cargo test`.
const LEASE_SEEDS: u64 = 200;

#[test]
fn lease_seeds_are_safe_and_live_and_leases_expire_and_locks_change_hands() {
    let options = SimOptions {
        leases: true,
        ..SimOptions::default()
    };
    assert_safe_and_live(0..LEASE_SEEDS, &options);
    let reports: Vec<_> = (0..LEASE_SEEDS).map(|s| run_seed(s, &options)).collect();
    let expiries: u64 = reports.iter().map(|r| r.lease_expiries).sum();
    let grants: u64 = reports.iter().map(|r| r.lock_grants).sum();
    assert!(expiries > 0, "no lease expired");
    assert!(grants > 0, "no lock was granted");
}

#[test]
fn negative_control_leases_expired_by_a_local_clock_diverge() {
    let options = SimOptions {
        leases: true,
        local_clock_leases: true,
        ..SimOptions::default()
    };
    let caught = (0..LEASE_SEEDS)
        .filter_map(|seed| run_seed(seed, &options).violation)
        .find(|(_, v)| v.property == "state digest");
    assert!(
        caught.is_some(),
        "learners that expire leases by their own clocks must disagree"
    );
}

fn reconfiguring() -> SimOptions {
    SimOptions {
        reconfigure: true,
        ..SimOptions::default()
    }
}

#[test]
fn acceptors_reconfigured_through_the_log_stay_safe_and_live() {
    assert_safe_and_live(0..FIXED_SEEDS / 2, &reconfiguring());
    let reports: Vec<_> = (0..FIXED_SEEDS / 2)
        .map(|seed| run_seed(seed, &reconfiguring()))
        .collect();
    let epochs: u64 = reports.iter().map(|r| u64::from(r.epoch)).sum();
    let deep = reports.iter().filter(|r| r.epoch >= 3).count();
    let moves: u64 = reports.iter().map(|r| r.proposer_moves).sum();
    assert!(epochs >= FIXED_SEEDS, "only {epochs} epochs reached");
    assert!(deep >= 10, "only {deep} seeds reached epoch 3");
    assert!(moves >= 10, "only {moves} proposers moved to another node");
}

#[test]
fn negative_control_a_phase_1_blind_to_stop_signs_breaks_agreement() {
    let options = SimOptions {
        hide_stop_signs: true,
        ..reconfiguring()
    };
    let caught = (0..FIXED_SEEDS).find_map(|seed| {
        let (_, violation) = run_seed(seed, &options).violation?;
        (violation.property == "agreement").then_some(seed)
    });
    assert!(
        caught.is_some(),
        "a leader that does not see an epoch's stop sign must break agreement"
    );
}

#[test]
fn negative_control_a_carry_that_reads_no_votes_decides_a_register_twice() {
    let options = SimOptions {
        blind_carries: true,
        ..reconfiguring()
    };
    let caught = (0..4 * FIXED_SEEDS).find_map(|seed| {
        let (_, violation) = run_seed(seed, &options).violation?;
        (violation.property == "agreement").then_some(seed)
    });
    assert!(
        caught.is_some(),
        "a new epoch that knows nothing of the registers the old one chose must decide one twice"
    );
}
