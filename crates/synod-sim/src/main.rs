//! `synod-sim`: run many seeds and report safety violations and liveness
//! failures, with the command that replays each failing seed.

use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use synod_sim::{SeedReport, SimOptions, SimQuorums, run_seed};

/// Deterministic simulation of Synod's Paxos core.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Acceptors forget their state on restart (negative control: must find violations).
    #[arg(long)]
    amnesia: bool,
    /// Leaders never give up a ballot without a quorum (negative control:
    /// seeds that cut the leader off from the acceptors must stall).
    #[arg(long)]
    stubborn_leaders: bool,
    /// Drop messages whose encoding exceeds BYTES, as a transport frame
    /// limit does (the roles get byte budgets of a quarter of it).
    #[arg(long, value_name = "BYTES")]
    frame_limit: Option<usize>,
    /// At healing, restart every proposer at once; every client then writes
    /// once more.
    #[arg(long)]
    restart_proposers: bool,
    /// Acceptors answer with one unbounded Promise (negative control for
    /// --frame-limit with --restart-proposers: seeds with enough history
    /// must fail liveness).
    #[arg(long)]
    unbounded_promises: bool,
    /// Release replies when their writes are submitted, not when they are
    /// durable (negative control for the persist-then-release pipeline:
    /// must find violations).
    #[arg(long)]
    early_release: bool,
    /// A learner restored from a snapshot skips the log after it (negative
    /// control for snapshots: must find violations).
    #[arg(long)]
    snapshot_without_tail: bool,
    /// The leader trims the acceptors at its first unchosen slot, ignoring
    /// the learners' snapshots (negative control for the safe point: must
    /// find failures).
    #[arg(long)]
    unsafe_trim: bool,
    /// Clients resubmit an unanswered command under a new id (negative
    /// control for the exactly-once checks: must find violations).
    #[arg(long)]
    resubmit_on_timeout: bool,
    /// Start acceptors whose disk was wiped anyway, on new empty stores
    /// (the identity gate's negative control).
    #[arg(long)]
    adopt_wiped_acceptors: bool,
    /// Acceptors answer round queries with a zero ballot (the negative
    /// control for proposers restarted on wiped stores: must find
    /// violations).
    #[arg(long)]
    forgetful_round_reports: bool,
    /// Reconfigure the acceptors through the log during the faults.
    #[arg(long)]
    reconfigure: bool,
    /// With --reconfigure, promise pages leave out stop signs (negative
    /// control: must find violations).
    #[arg(long)]
    hide_stop_signs: bool,
    /// With --reconfigure, the carry of registers into a new epoch reads
    /// no votes (negative control: must find violations).
    #[arg(long)]
    blind_carries: bool,
    /// The quorums proposers count: majorities; flexible (each seed draws
    /// a safe non-majority system: counts or a grid, 4 to 9 acceptors); or
    /// unsafe (phase 1 + phase 2 = n, the negative control: must find
    /// violations).
    #[arg(long, value_enum, default_value_t = QuorumArg::Majority)]
    quorums: QuorumArg,
    /// The lease workload: learners run the key/value store, leaders stamp
    /// their clocks into the log, clients take lease-bound locks.
    #[arg(long)]
    leases: bool,
    /// With --leases, learners expire leases by their own clocks (negative
    /// control: must find violations).
    #[arg(long)]
    local_clock_leases: bool,
    /// The simulated disk takes 1 ms to MS per write group.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    max_write_latency: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one line per seed.
    #[arg(long)]
    verbose: bool,
}

/// `--quorums`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum QuorumArg {
    Majority,
    Flexible,
    Unsafe,
}

fn main() {
    let args = Args::parse();
    let options = SimOptions {
        amnesia: args.amnesia,
        stubborn_leaders: args.stubborn_leaders,
        frame_limit: args.frame_limit,
        restart_proposers: args.restart_proposers,
        unbounded_promises: args.unbounded_promises,
        early_release: args.early_release,
        snapshot_without_tail: args.snapshot_without_tail,
        unsafe_trim: args.unsafe_trim,
        resubmit_on_timeout: args.resubmit_on_timeout,
        adopt_wiped_acceptors: args.adopt_wiped_acceptors,
        forgetful_round_reports: args.forgetful_round_reports,
        reconfigure: args.reconfigure || args.hide_stop_signs || args.blind_carries,
        hide_stop_signs: args.hide_stop_signs,
        blind_carries: args.blind_carries,
        max_write_latency: args.max_write_latency,
        leases: args.leases || args.local_clock_leases,
        local_clock_leases: args.local_clock_leases,
        quorums: match args.quorums {
            QuorumArg::Majority => SimQuorums::Majority,
            QuorumArg::Flexible => SimQuorums::Flexible,
            QuorumArg::Unsafe => SimQuorums::Unsafe,
        },
        ..SimOptions::default()
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let reports = run_all(&args, &options, threads);

    let mut safety = 0;
    let mut liveness = 0;
    let oversized: u64 = reports.iter().map(|r| r.oversized).sum();
    let snapshots: u64 = reports.iter().map(|r| r.snapshots).sum();
    let restores: u64 = reports.iter().map(|r| r.restores).sum();
    let trims: u64 = reports.iter().map(|r| r.trims).sum();
    let installs: u64 = reports.iter().map(|r| r.installs).sum();
    let wipes: u64 = reports.iter().map(|r| r.wipes).sum();
    let acceptor_wipes: u64 = reports.iter().map(|r| r.acceptor_wipes).sum();
    let proposer_wipes: u64 = reports.iter().map(|r| r.proposer_wipes).sum();
    let reconfigurations: u64 = reports.iter().map(|r| r.reconfigurations).sum();
    let proposer_moves: u64 = reports.iter().map(|r| r.proposer_moves).sum();
    let epochs: u64 = reports.iter().map(|r| u64::from(r.epoch)).sum();
    let refused: u64 = reports.iter().map(|r| r.refused_starts).sum();
    let expiries: u64 = reports.iter().map(|r| r.expiries).sum();
    let lease_expiries: u64 = reports.iter().map(|r| r.lease_expiries).sum();
    let lock_grants: u64 = reports.iter().map(|r| r.lock_grants).sum();
    for report in &reports {
        if args.verbose {
            println!(
                "seed {}: {} events, {} commands, {:?}",
                report.seed, report.events, report.commands, report.shape
            );
        }
        let replay = replay_command(report.seed, &args);
        if let Some((at, violation)) = &report.violation {
            safety += 1;
            println!(
                "seed {}: at {at} ms: {violation}\n  replay: {replay}",
                report.seed
            );
        } else if let Some(why) = &report.liveness_failure {
            liveness += 1;
            println!("seed {}: liveness: {why}\n  replay: {replay}", report.seed);
        }
    }
    if args.frame_limit.is_some() {
        println!("messages dropped as larger than the frame limit: {oversized}");
    }
    println!("learner snapshots: {snapshots}, learners restored from one: {restores}");
    println!(
        "acceptor trims: {trims}, snapshots fetched from a peer: {installs}, learner disks wiped: {wipes}"
    );
    println!(
        "acceptor disks wiped: {acceptor_wipes}, acceptor starts refused by the identity gate: {refused}"
    );
    println!("proposers restarted on a wiped store: {proposer_wipes}");
    if args.reconfigure || args.hide_stop_signs || args.blind_carries {
        println!(
            "reconfigurations proposed: {reconfigurations}, epochs reached (summed over seeds): {epochs}, proposers moved to another node: {proposer_moves}"
        );
    }
    println!("commands refused for an expired session (then resubmitted): {expiries}");
    if args.leases || args.local_clock_leases {
        println!(
            "lease expiries seen by learners: {lease_expiries}, lock grants seen: {lock_grants}"
        );
    }
    println!(
        "seeds: {}, safety violations: {safety}, liveness failures: {liveness}",
        reports.len()
    );
}

/// Run every seed on `threads` workers; the reports come back in seed order.
fn run_all(args: &Args, options: &SimOptions, threads: usize) -> Vec<SeedReport> {
    let next = AtomicU64::new(args.start);
    let end = args.start.saturating_add(args.seeds);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    tx.send(run_seed(seed, options)).expect("collector alive");
                }
            });
        }
        drop(tx);
    });
    let mut reports: Vec<SeedReport> = rx.into_iter().collect();
    reports.sort_by_key(|r| r.seed);
    reports
}

fn replay_command(seed: u64, args: &Args) -> String {
    let amnesia = if args.amnesia { " --amnesia" } else { "" };
    let stubborn = if args.stubborn_leaders {
        " --stubborn-leaders"
    } else {
        ""
    };
    let mut frames = String::new();
    if let Some(limit) = args.frame_limit {
        frames += &format!(" --frame-limit {limit}");
    }
    if args.restart_proposers {
        frames += " --restart-proposers";
    }
    if args.unbounded_promises {
        frames += " --unbounded-promises";
    }
    if args.early_release {
        frames += " --early-release";
    }
    if args.snapshot_without_tail {
        frames += " --snapshot-without-tail";
    }
    if args.unsafe_trim {
        frames += " --unsafe-trim";
    }
    if args.resubmit_on_timeout {
        frames += " --resubmit-on-timeout";
    }
    if args.adopt_wiped_acceptors {
        frames += " --adopt-wiped-acceptors";
    }
    if args.forgetful_round_reports {
        frames += " --forgetful-round-reports";
    }
    if args.reconfigure {
        frames += " --reconfigure";
    }
    if args.hide_stop_signs {
        frames += " --hide-stop-signs";
    }
    if args.blind_carries {
        frames += " --blind-carries";
    }
    if args.leases {
        frames += " --leases";
    }
    if args.local_clock_leases {
        frames += " --local-clock-leases";
    }
    if args.max_write_latency != 10 {
        frames += &format!(" --max-write-latency {}", args.max_write_latency);
    }
    format!(
        "cargo run --release -p synod-sim -- --seeds 1 --start {seed}{amnesia}{stubborn}{frames} --verbose"
    )
}
