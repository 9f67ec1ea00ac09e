//! The simulator as a test suite: fixed seeds must be safe and live, the
//! amnesia and stubborn-leader controls must be caught, and a seed must
//! replay bit for bit.

use synod_sim::{SimOptions, run_seed};

/// Seeds run on every `cargo test`. The CLI runs thousands more.
const FIXED_SEEDS: u64 = 600;

#[test]
fn fixed_seeds_are_safe_and_live() {
    let options = SimOptions::default();
    let mut failures = Vec::new();
    for seed in 0..FIXED_SEEDS {
        let report = run_seed(seed, &options);
        if let Some((at, violation)) = &report.violation {
            failures.push(format!("seed {seed}: at {at} ms: {violation}"));
        }
        if let Some(why) = &report.liveness_failure {
            failures.push(format!("seed {seed}: liveness: {why}"));
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
