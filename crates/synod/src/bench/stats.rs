//! What a benchmark run measured: a latency histogram (HDR, microseconds),
//! completions per second, and every error by kind. Each load task keeps
//! its own [`Recorder`]; they are merged once at the end, so recording is
//! a histogram increment and no lock.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies above this are recorded as this (an hour: nothing real).
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// The resolution of the longest stall.
const TICK: Duration = Duration::from_millis(10);

/// One load task's measurements.
pub struct Recorder {
    latency: Histogram<u64>,
    /// Successful completions in each second of the measured window.
    per_second: Vec<u64>,
    /// Successful completions in each 10 ms tick of the window.
    per_tick: Vec<u32>,
    errors: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("1 µs .. 1 h at 3 significant figures is a valid histogram"),
            per_second: Vec::new(),
            per_tick: Vec::new(),
            errors: BTreeMap::new(),
            outcomes: BTreeMap::new(),
        }
    }
}

impl Recorder {
    /// A command answered successfully `at` (since the measured window
    /// began) after `latency`; `outcome` names its kind of answer.
    pub fn success(&mut self, at: Duration, latency: Duration, outcome: &str) {
        let micros = (latency.as_micros() as u64).clamp(1, HIGHEST_MICROS);
        self.latency.saturating_record(micros);
        let second = at.as_secs() as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
        let tick = (at.as_millis() / TICK.as_millis()) as usize;
        if self.per_tick.len() <= tick {
            self.per_tick.resize(tick + 1, 0);
        }
        self.per_tick[tick] += 1;
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    /// A command that failed, or a connection problem, by kind.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Fold `other` into this one.
    pub fn merge(&mut self, other: Recorder) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds merge");
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(other.per_second) {
            *mine += theirs;
        }
        if self.per_tick.len() < other.per_tick.len() {
            self.per_tick.resize(other.per_tick.len(), 0);
        }
        for (mine, theirs) in self.per_tick.iter_mut().zip(other.per_tick) {
            *mine += theirs;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, n) in other.outcomes {
            *self.outcomes.entry(kind).or_default() += n;
        }
    }

    /// The summary of a window of `duration`.
    pub fn summarize(&self, duration: Duration) -> Summary {
        let seconds = duration.as_secs_f64();
        let ops = self.latency.len();
        let mut per_second = self.per_second.clone();
        per_second.resize(duration.as_secs().max(1) as usize, 0);
        Summary {
            ops,
            seconds,
            throughput: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            latency_ms: Percentiles::of(&self.latency),
            per_second,
            longest_stall_ms: longest_stall(&self.per_tick).as_secs_f64() * 1000.0,
            cdf: cdf(&self.latency),
            errors: self.errors.clone(),
            outcomes: self.outcomes.clone(),
        }
    }
}

/// A run's result, as printed and written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Successful commands completed in the window.
    pub ops: u64,
    /// The window's length.
    pub seconds: f64,
    /// `ops / seconds`.
    pub throughput: f64,
    /// Latency percentiles, milliseconds.
    pub latency_ms: Percentiles,
    /// Successful completions in each second of the window.
    pub per_second: Vec<u64>,
    /// The longest time (10 ms resolution) between two successful
    /// completions in the window: a failover's gap.
    pub longest_stall_ms: f64,
    /// (fraction of commands, latency in ms at or below which they finished).
    pub cdf: Vec<(f64, f64)>,
    /// Failures by kind (busy, timeout, unavailable, connection, …).
    pub errors: BTreeMap<String, u64>,
    /// Successful answers by kind (done, value, not_found, cas_failed).
    pub outcomes: BTreeMap<String, u64>,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Self {
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Self {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The longest run of ticks with no completion, between the first and the
/// last completion (a quiet start or end is not a stall).
fn longest_stall(per_tick: &[u32]) -> Duration {
    let (mut longest, mut run) = (0u32, 0u32);
    let first = per_tick
        .iter()
        .position(|&n| n > 0)
        .unwrap_or(per_tick.len());
    for &n in &per_tick[first..] {
        if n == 0 {
            run += 1;
        } else {
            longest = longest.max(run);
            run = 0;
        }
    }
    TICK * longest
}

/// The latency CDF at fixed quantiles, dense in the tail.
fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut quantiles: Vec<f64> = (1..=90).map(|i| f64::from(i) / 100.0).collect();
    quantiles.extend((1..=9).map(|i| 0.9 + f64::from(i) / 100.0));
    quantiles.extend((1..=9).map(|i| 0.99 + f64::from(i) / 1000.0));
    quantiles.extend([0.9995, 0.9999, 1.0]);
    quantiles
        .into_iter()
        .map(|q| (q, h.value_at_quantile(q) as f64 / 1000.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Within HDR's 3 significant figures.
    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_a_known_uniform_latency_distribution() {
        let mut r = Recorder::default();
        for i in 1..=1000 {
            r.success(ms(0), Duration::from_micros(i * 100), "done");
        }
        let s = r.summarize(Duration::from_secs(1));
        assert_eq!(s.ops, 1000);
        assert!(close(s.latency_ms.p50, 50.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p90, 90.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p99, 99.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p999, 99.9), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.max, 100.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.mean, 50.05), "{:?}", s.latency_ms);
    }

    #[test]
    fn throughput_is_successes_over_the_window_and_errors_do_not_count() {
        let mut r = Recorder::default();
        for i in 0..3000u64 {
            r.success(ms(i), ms(1), "done");
        }
        r.error("busy");
        r.error("busy");
        r.error("timeout");
        let s = r.summarize(Duration::from_secs(3));
        assert_eq!(s.ops, 3000);
        assert!(close(s.throughput, 1000.0), "{}", s.throughput);
        assert_eq!(s.per_second, vec![1000, 1000, 1000]);
        assert_eq!(s.errors["busy"], 2);
        assert_eq!(s.errors["timeout"], 1);
        assert_eq!(s.outcomes["done"], 3000);
    }

    #[test]
    fn the_longest_stall_is_the_widest_gap_between_completions() {
        let mut r = Recorder::default();
        // Completions every 5 ms to 1 s, none until 1.75 s, then every 5 ms
        // to 2 s, then none until the window ends at 3 s.
        for at in (0..1000).step_by(5).chain((1750..2000).step_by(5)) {
            r.success(ms(at), ms(1), "done");
        }
        let s = r.summarize(Duration::from_secs(3));
        // Ticks 100..=174 are empty: 75 ticks of 10 ms.
        assert_eq!(s.longest_stall_ms, 750.0);
        let mut steady = Recorder::default();
        for at in (300..2000).step_by(5) {
            steady.success(ms(at), ms(1), "done");
        }
        assert_eq!(steady.summarize(ms(3000)).longest_stall_ms, 0.0);
    }

    #[test]
    fn quiet_seconds_show_as_zeros_in_the_series() {
        let mut r = Recorder::default();
        r.success(ms(2500), ms(1), "done");
        let s = r.summarize(Duration::from_secs(4));
        assert_eq!(s.per_second, vec![0, 0, 1, 0]);
        assert!(close(s.throughput, 0.25));
    }

    #[test]
    fn merged_recorders_equal_one_that_saw_everything() {
        let (mut a, mut b, mut all) = (
            Recorder::default(),
            Recorder::default(),
            Recorder::default(),
        );
        for i in 0..500u64 {
            let (at, latency) = (ms(i * 7), Duration::from_micros(100 + i * 13));
            if i % 3 == 0 { &mut a } else { &mut b }.success(at, latency, "value");
            all.success(at, latency, "value");
        }
        b.error("connection");
        all.error("connection");
        a.merge(b);
        let (merged, whole) = (a.summarize(ms(4000)), all.summarize(ms(4000)));
        assert_eq!(merged.latency_ms, whole.latency_ms);
        assert_eq!(merged.per_second, whole.per_second);
        assert_eq!(merged.errors, whole.errors);
        assert_eq!(merged.cdf, whole.cdf);
    }

    #[test]
    fn the_cdf_rises_to_the_maximum() {
        let mut r = Recorder::default();
        for i in 1..=10_000 {
            r.success(ms(0), Duration::from_micros(i), "done");
        }
        let cdf = r.summarize(ms(1000)).cdf;
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(cdf.last().unwrap().0, 1.0);
        assert!(close(cdf.last().unwrap().1, 10.0));
        let median = cdf.iter().find(|(q, _)| *q == 0.5).unwrap().1;
        assert!(close(median, 5.0), "{median}");
    }

    #[test]
    fn an_empty_run_summarizes_to_zeros() {
        let s = Recorder::default().summarize(Duration::from_secs(2));
        assert_eq!(s.ops, 0);
        assert_eq!(s.throughput, 0.0);
        assert_eq!(s.latency_ms.max, 0.0);
        assert!(s.cdf.is_empty());
    }
}
