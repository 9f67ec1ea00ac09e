//! `synod bench`: a load generator to point at any cluster.
//!
//! - closed loop: `--clients N` connections, each keeping `--window W`
//!   commands in flight (W = 1: one at a time);
//! - open loop: `--rate R` commands per second in total on a fixed
//!   schedule, latency measured from each command's intended send time;
//! - the op mix (`--mix put=80,get=20,cas=0`; `sget`: serializable gets,
//!   outside the log; `rget`: read-index gets, linearizable outside the
//!   log), `--keys`, `--value-size`,
//!   `--duration`, `--warmup`;
//! - against `--endpoints`/`--config` (default: the local `synod up`), or
//!   `--local`, which starts the built-in three-replica cluster in this
//!   process, in a temporary directory.
//!
//! It prints throughput, HDR latency percentiles and every error by kind
//! (`--json` for one JSON object); `--out PREFIX` writes PREFIX.json and
//! PREFIX.svg (throughput per second and the latency CDF). The load runs on
//! a multi-threaded runtime, one task per connection.

mod load;
mod plot;
mod stats;

use crate::cli::Target;
use crate::output::say;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use load::{Clock, Mix, Pace, Progress, Workload};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use synod_client::ClientConfig;
use synod_runtime::SynodConfig;
use tokio::time::Instant;

/// `synod bench` options.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Client connections (spread over the endpoints).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Commands in flight per connection (default 1; in the open loop, 256).
    #[arg(long)]
    window: Option<usize>,
    /// Open loop: commands per second in total, sent on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// How long results are counted.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long the load runs before results count.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// Distinct keys, picked uniformly.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Operation weights, e.g. put=80,get=15,cas=5.
    #[arg(long, default_value = "put=100")]
    mix: Mix,
    /// Start the built-in local cluster in this process (temporary data).
    #[arg(long)]
    local: bool,
    /// Write PREFIX.json and PREFIX.svg.
    #[arg(long, value_name = "PREFIX")]
    out: Option<PathBuf>,
}

/// Run the benchmark; `local` is the built-in config.
pub fn run(args: BenchArgs, target: Target, local: SynodConfig) -> Result<()> {
    check(&args)?;
    let cluster = if args.local {
        Some(LocalCluster::start(local.clone()).context("starting the local cluster")?)
    } else {
        None
    };
    let config = match &cluster {
        Some(cluster) => cluster.client.clone(),
        None => crate::cli::client_config(&target, &local)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the load runtime")?;
    let summary = runtime.block_on(drive(&args, config.clone()));
    if let Some(cluster) = cluster {
        cluster.stop();
    }
    report(&args, &config, &summary, target.json)
}

fn check(args: &BenchArgs) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.window == Some(0) {
        bail!("--window must be at least 1");
    }
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of commands per second");
    }
    if args.duration.is_zero() {
        bail!("--duration must be above 0");
    }
    Ok(())
}

async fn drive(args: &BenchArgs, config: ClientConfig) -> stats::Summary {
    let workload = Arc::new(Workload {
        mix: args.mix,
        keys: args.keys,
        value: vec![b'v'; args.value_size],
    });
    let start = Instant::now();
    let clock = Clock {
        measure_from: start + args.warmup,
        end: start + args.warmup + args.duration,
    };
    let progress = Progress::default();
    let config = Arc::new(config);
    let tasks: Vec<_> = (0..args.clients)
        .map(|index| {
            let pace = pace(args, index, start);
            let task = load::client(
                index,
                Arc::clone(&config),
                Arc::clone(&workload),
                pace,
                clock,
                Arc::clone(&progress),
            );
            tokio::spawn(task)
        })
        .collect();
    let bar = tokio::spawn(show_progress(args.warmup + args.duration, clock, progress));
    let mut recorder = stats::Recorder::default();
    for task in tasks {
        match task.await {
            Ok(result) => recorder.merge(result),
            Err(_) => recorder.error("load_task_failed"),
        }
    }
    bar.abort();
    recorder.summarize(args.duration)
}

/// Commands in flight per connection: `--window`, else 1 in the closed
/// loop and 256 (a node's default `clients.max_in_flight`) in the open loop.
fn window(args: &BenchArgs) -> usize {
    args.window
        .unwrap_or(if args.rate.is_some() { 256 } else { 1 })
}

/// Connection `index`'s share of the load: its window, and in the open
/// loop its schedule, staggered so connections do not send in lockstep.
fn pace(args: &BenchArgs, index: usize, start: Instant) -> Pace {
    match args.rate {
        None => Pace {
            window: window(args),
            schedule: None,
        },
        Some(rate) => {
            let interval = Duration::from_secs_f64(args.clients as f64 / rate);
            let offset = interval.mul_f64(index as f64 / args.clients as f64);
            Pace {
                window: window(args),
                schedule: Some((start + offset, interval)),
            }
        }
    }
}

async fn show_progress(total: Duration, clock: Clock, progress: Progress) {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
            .expect("a valid template"),
    );
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (now, done) = (Instant::now(), progress.load(Ordering::Relaxed));
        let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, done);
        let phase = if now < clock.measure_from {
            "warming up"
        } else {
            "measuring"
        };
        bar.set_position((now - started).as_millis() as u64);
        bar.set_message(format!("{phase}: {rate:.0} commands/s"));
        if now >= clock.end {
            bar.finish_and_clear();
            return;
        }
    }
}

fn report(
    args: &BenchArgs,
    config: &ClientConfig,
    summary: &stats::Summary,
    json_out: bool,
) -> Result<()> {
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} commands/s"),
        None => "closed loop".to_owned(),
    };
    let setup = json!({
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate,
        "clients": args.clients,
        "window": window(args),
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "value_size": args.value_size,
        "keys": args.keys,
        "mix": format!(
            "put={},get={},cas={},sget={},rget={}",
            args.mix.put, args.mix.get, args.mix.cas, args.mix.sget, args.mix.rget
        ),
        "endpoints": config.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "local": args.local,
    });
    let result = json!({"setup": setup, "result": summary});
    if let Some(prefix) = &args.out {
        let json_path = prefix.with_extension("json");
        std::fs::write(&json_path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", json_path.display()))?;
        let title = format!(
            "synod bench: {mode}, {} clients × {} in flight",
            args.clients, setup["window"]
        );
        plot::write_svg(summary, &title, &prefix.with_extension("svg"))?;
    }
    if json_out {
        say!("{result}");
    } else {
        crate::output::text(&text(&mode, args, summary));
    }
    if summary.ops == 0 {
        bail!("no command succeeded in the measured window");
    }
    Ok(())
}

fn text(mode: &str, args: &BenchArgs, s: &stats::Summary) -> String {
    let l = &s.latency_ms;
    let mut out = format!(
        "{mode}, {} clients, window {}, {} B values, {} keys\n\
         {} commands in {:.1} s: {:.0} commands/s\n\
         latency ms: mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
        args.clients,
        window(args),
        args.value_size,
        args.keys,
        s.ops,
        s.seconds,
        s.throughput,
        l.mean,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max
    );
    let list = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out += &format!(
        "longest stall: {:.0} ms\nanswers: {}\n",
        s.longest_stall_ms,
        list(&s.outcomes)
    );
    out += &format!(
        "errors: {}\n",
        if s.errors.is_empty() {
            "none".to_owned()
        } else {
            list(&s.errors)
        }
    );
    out
}

/// The built-in three-replica cluster, run on its own thread (an actix
/// system) with data in a temporary directory, for `--local`.
struct LocalCluster {
    client: ClientConfig,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    _data: tempfile::TempDir,
}

impl LocalCluster {
    fn start(mut config: SynodConfig) -> Result<Self> {
        let data = tempfile::tempdir().context("creating a temporary data directory")?;
        for (name, node) in &mut config.nodes {
            node.data_dir = data.path().join(name);
        }
        let client = crate::cli::client_config_of(&config)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel::<Result<()>>();
        let thread = std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let names: Vec<String> = config.nodes.keys().cloned().collect();
                let limits = synod_kv::KvLimits::default();
                let nodes = match crate::start_nodes(
                    &config,
                    limits,
                    &names,
                    synod_runtime::Bootstrap::New,
                )
                .await
                {
                    Ok(nodes) => nodes,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = crate::wait_for_leader(&nodes, &config).await;
                let _ = ready.send(Ok(()));
                let _ = stopped.await;
                for node in nodes {
                    node.shutdown().await;
                }
            });
        });
        started
            .recv()
            .context("the local cluster's thread ended before it started")??;
        Ok(Self {
            client,
            stop,
            thread,
            _data: data,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rate: Option<f64>, clients: usize) -> BenchArgs {
        BenchArgs {
            clients,
            window: None,
            rate,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            value_size: 16,
            keys: 10,
            mix: "put=1".parse().unwrap(),
            local: false,
            out: None,
        }
    }

    #[test]
    fn the_open_loop_rate_is_shared_evenly_and_staggered() {
        let start = Instant::now();
        let a = args(Some(1000.0), 4);
        let paces: Vec<Pace> = (0..4).map(|i| pace(&a, i, start)).collect();
        for (index, p) in paces.iter().enumerate() {
            let (first, interval) = p.schedule.unwrap();
            // 4 connections × one per 4 ms = 1000 commands/s.
            assert_eq!(interval, Duration::from_millis(4));
            assert_eq!(first - start, Duration::from_millis(index as u64));
            assert_eq!(p.window, 256);
        }
        let closed = pace(&args(None, 4), 0, start);
        assert_eq!((closed.window, closed.schedule), (1, None));
    }

    #[test]
    fn nonsense_options_are_refused() {
        assert!(check(&args(None, 0)).is_err());
        assert!(check(&args(Some(0.0), 1)).is_err());
        assert!(check(&args(Some(f64::NAN), 1)).is_err());
        let mut no_window = args(None, 1);
        no_window.window = Some(0);
        assert!(check(&no_window).is_err());
        assert!(check(&args(Some(10.0), 2)).is_ok());
    }
}
