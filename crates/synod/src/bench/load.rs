//! The load: what each command is (the op mix over a key space), and one
//! task per client connection that keeps its window of commands in flight
//! (closed loop) or sends on a fixed schedule (open loop).
//!
//! In the open loop a command's latency runs from the moment the schedule
//! meant to send it, not from when it went out: when the cluster falls
//! behind, the queueing shows in the latency instead of silently lowering
//! the rate (no coordinated omission).

use super::stats::Recorder;
use anyhow::{Result, bail};
use futures_util::FutureExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use synod_client::wire::Failure;
use synod_client::{Answer, ClientConfig, ClientError, Pipeline};
use synod_kv::{KvCommand, KvResponse};
use tokio::time::{Instant, sleep_until};

/// How long commands still in flight at the end are waited for.
const DRAIN: Duration = Duration::from_secs(10);
/// Pause before reconnecting after a lost connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Weights of the operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub put: u32,
    pub get: u32,
    pub cas: u32,
    /// Serializable gets: queries to the node's learner, outside the log.
    pub sget: u32,
    /// Read-index gets: linearizable, outside the log.
    pub rget: u32,
}

impl Mix {
    fn total(&self) -> u32 {
        self.put + self.get + self.cas + self.sget + self.rget
    }
}

impl std::str::FromStr for Mix {
    type Err = anyhow::Error;

    /// `put=80,get=15,cas=5` (missing operations weigh 0).
    fn from_str(text: &str) -> Result<Self> {
        let mut mix = Mix {
            put: 0,
            get: 0,
            cas: 0,
            sget: 0,
            rget: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((op, weight)) = part.split_once('=') else {
                bail!("{part:?}: expected op=weight, e.g. put=80,get=20");
            };
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{part:?}: the weight is not a whole number"))?;
            match op.trim() {
                "put" => mix.put = weight,
                "get" => mix.get = weight,
                "cas" => mix.cas = weight,
                "sget" => mix.sget = weight,
                "rget" => mix.rget = weight,
                other => bail!("unknown operation {other:?} (put, get, cas, sget, rget)"),
            }
        }
        if mix.total() == 0 {
            bail!("the op mix {text:?} has no operation with a weight above 0");
        }
        Ok(mix)
    }
}

/// What the commands are.
#[derive(Clone, Debug)]
pub struct Workload {
    pub mix: Mix,
    /// Keys are `bench-0` .. `bench-{keys-1}`, picked uniformly.
    pub keys: u64,
    /// Every put writes this value; a cas expects it and writes it again,
    /// so a cas succeeds once its key has been put.
    pub value: Vec<u8>,
}

impl Workload {
    /// The next operation and its command, drawn from `rng`.
    fn next(&self, rng: &mut impl Rng) -> (Op, KvCommand) {
        let key = format!("bench-{}", rng.random_range(0..self.keys)).into_bytes();
        let pick = rng.random_range(0..self.mix.total());
        let logged = self.mix.put + self.mix.get + self.mix.cas;
        if pick >= logged + self.mix.sget {
            return (Op::ReadIndexGet, KvCommand::Get { key });
        }
        if pick >= logged {
            return (Op::ServedGet, KvCommand::Get { key });
        }
        let command = if pick < self.mix.put {
            KvCommand::Put {
                key,
                value: self.value.clone(),
            }
        } else if pick < self.mix.put + self.mix.get {
            KvCommand::Get { key }
        } else {
            KvCommand::Cas {
                key,
                expected: Some(self.value.clone()),
                new: self.value.clone(),
            }
        };
        (Op::of(&command), command)
    }
}

/// When the run's phases begin and end.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Results count from here (the warm-up ends).
    pub measure_from: Instant,
    /// No command is sent from here on.
    pub end: Instant,
}

/// How one client connection sends.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Commands in flight at most.
    pub window: usize,
    /// Open loop: one command every `interval`, starting at `first`.
    /// `None`: closed loop (a new command as soon as one is answered).
    pub schedule: Option<(Instant, Duration)>,
}

/// Shared with the progress display: successes so far.
pub type Progress = Arc<AtomicU64>;

/// One client connection's whole run, reconnecting after a lost
/// connection, until `clock.end` and the drain after it.
pub async fn client(
    index: usize,
    config: Arc<ClientConfig>,
    workload: Arc<Workload>,
    pace: Pace,
    clock: Clock,
    progress: Progress,
) -> Recorder {
    let mut task = Task {
        recorder: Recorder::default(),
        rng: ChaCha8Rng::seed_from_u64(index as u64),
        next_send: pace.schedule.map(|(first, _)| first),
        workload,
        pace,
        clock,
        progress,
    };
    // A lost connection moves to the next endpoint, as a client fails over.
    let mut endpoints = config.endpoints.iter().cycle().skip(index);
    while Instant::now() < clock.end {
        let endpoint = *endpoints
            .next()
            .expect("a cycle over at least one endpoint");
        match Pipeline::connect(&config, endpoint).await {
            Ok(pipeline) => {
                if task.run(pipeline).await == Finished::Done {
                    break;
                }
            }
            Err(error) => task.recorder.error(client_error_kind(&error)),
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
    task.recorder
}

struct Task {
    recorder: Recorder,
    rng: ChaCha8Rng,
    /// Open loop: the intended time of the next command.
    next_send: Option<Instant>,
    workload: Arc<Workload>,
    pace: Pace,
    clock: Clock,
    progress: Progress,
}

#[derive(PartialEq, Eq)]
enum Finished {
    Done,
    ConnectionLost,
}

impl Task {
    async fn run(&mut self, mut pipeline: Pipeline) -> Finished {
        // seq -> (intended send time, which op)
        let mut in_flight: HashMap<u64, (Instant, Op)> = HashMap::new();
        let drained_by = self.clock.end + DRAIN;
        loop {
            let open = Instant::now() < self.clock.end && in_flight.len() < self.pace.window;
            if open && self.next_send.is_none() {
                // Closed loop: fill the window now (one write for all).
                if self
                    .send(&mut pipeline, &mut in_flight, Instant::now())
                    .await
                    .is_err()
                {
                    return self.lost(&mut in_flight);
                }
                continue;
            }
            if pipeline.flush().await.is_err() {
                return self.lost(&mut in_flight);
            }
            let scheduled = self.next_send.unwrap_or(drained_by);
            tokio::select! {
                biased;
                answer = pipeline.next_answer() => {
                    let Ok(answer) = answer else {
                        return self.lost(&mut in_flight);
                    };
                    self.answered(answer, &mut in_flight);
                    // Take every answer already received before refilling,
                    // so the refill leaves in one write.
                    while let Some(answer) = pipeline.next_answer().now_or_never() {
                        let Ok(answer) = answer else {
                            return self.lost(&mut in_flight);
                        };
                        self.answered(answer, &mut in_flight);
                    }
                }
                () = sleep_until(scheduled), if open => {
                    if self.send_due(&mut pipeline, &mut in_flight, scheduled).await.is_err() {
                        return self.lost(&mut in_flight);
                    }
                }
                () = sleep_until(self.clock.end), if in_flight.is_empty() => return Finished::Done,
                () = sleep_until(drained_by) => {
                    for _ in in_flight.drain() {
                        self.recorder.error("unanswered");
                    }
                    return Finished::Done;
                }
            }
            if Instant::now() >= self.clock.end && in_flight.is_empty() {
                return Finished::Done;
            }
        }
    }

    /// Open loop: send every command whose time has come (from
    /// `scheduled` on), each with its own intended time, as one write. A
    /// client behind its schedule catches up in one write, not one per
    /// command; the latency still counts from each intended time.
    async fn send_due(
        &mut self,
        pipeline: &mut Pipeline,
        in_flight: &mut HashMap<u64, (Instant, Op)>,
        scheduled: Instant,
    ) -> Result<(), ClientError> {
        let interval = self.pace.schedule.map_or(Duration::ZERO, |(_, i)| i);
        let now = Instant::now();
        let mut due = scheduled;
        loop {
            self.send(pipeline, in_flight, due).await?;
            due += interval;
            let more = due <= now && due < self.clock.end && in_flight.len() < self.pace.window;
            if !more || interval.is_zero() {
                break;
            }
        }
        self.next_send = Some(due);
        Ok(())
    }

    async fn send(
        &mut self,
        pipeline: &mut Pipeline,
        in_flight: &mut HashMap<u64, (Instant, Op)>,
        intended: Instant,
    ) -> Result<(), ClientError> {
        let (op, command) = self.workload.next(&mut self.rng);
        let seq = match op {
            Op::ServedGet => pipeline.queue_query(command.encode()).await?,
            Op::ReadIndexGet => pipeline.queue_read(command.encode()).await?,
            _ => pipeline.queue(command.encode()).await?,
        };
        in_flight.insert(seq, (intended, op));
        Ok(())
    }

    fn answered(&mut self, answer: Answer, in_flight: &mut HashMap<u64, (Instant, Op)>) {
        let Some((intended, op)) = in_flight.remove(&answer.seq) else {
            return; // not one of ours (cannot happen on a fresh session)
        };
        let now = Instant::now();
        if now < self.clock.measure_from || now >= self.clock.end {
            return; // warm-up, or the drain after the window
        }
        match answer.result {
            Ok(payload) => match outcome(op, &payload) {
                Ok(kind) => {
                    let at = now - self.clock.measure_from;
                    self.recorder.success(at, now - intended, kind);
                    self.progress.fetch_add(1, Ordering::Relaxed);
                }
                Err(kind) => self.recorder.error(kind),
            },
            Err(failure) => self.recorder.error(failure_kind(&failure)),
        }
    }

    /// The connection broke: what was in flight has no answer (it may
    /// still be applied).
    fn lost(&mut self, in_flight: &mut HashMap<u64, (Instant, Op)>) -> Finished {
        self.recorder.error("connection_lost");
        for _ in in_flight.drain() {
            self.recorder.error("unanswered");
        }
        Finished::ConnectionLost
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Put,
    Get,
    Cas,
    /// A get outside the log.
    ServedGet,
    /// A linearizable get outside the log (read index).
    ReadIndexGet,
}

impl Op {
    fn of(command: &KvCommand) -> Self {
        match command {
            KvCommand::Get { .. } => Op::Get,
            KvCommand::Cas { .. } => Op::Cas,
            _ => Op::Put,
        }
    }
}

/// A successful answer's kind, or the error kind of one that is wrong.
fn outcome(op: Op, payload: &[u8]) -> Result<&'static str, &'static str> {
    match (op, KvResponse::decode(payload)) {
        (Op::Put | Op::Cas, Ok(KvResponse::Done)) => Ok("done"),
        (Op::Cas, Ok(KvResponse::CasFailed { .. })) => Ok("cas_failed"),
        (Op::Get | Op::ServedGet | Op::ReadIndexGet, Ok(KvResponse::Value(_))) => Ok("value"),
        (Op::Get | Op::ServedGet | Op::ReadIndexGet, Ok(KvResponse::NotFound)) => Ok("not_found"),
        (_, Ok(KvResponse::TooLarge { .. })) => Err("too_large"),
        (_, Ok(_)) | (_, Err(_)) => Err("malformed_answer"),
    }
}

fn failure_kind(failure: &Failure) -> &'static str {
    match failure {
        Failure::NoLearner => "no_learner",
        Failure::Busy => "busy",
        Failure::Timeout => "timeout",
        Failure::ShuttingDown => "shutting_down",
        Failure::TooLarge { .. } => "too_large",
        Failure::InvalidCommand => "invalid_command",
        Failure::SessionExpired => "session_expired",
        Failure::NoQueries => "no_queries",
        Failure::TooManyInstances { .. } => "too_many_instances",
    }
}

fn client_error_kind(error: &ClientError) -> &'static str {
    match error {
        ClientError::Timeout(_) => "connect_timeout",
        ClientError::Refused(_) => "refused",
        ClientError::SessionExpired => "session_expired",
        ClientError::Compacted { .. } => "compacted",
        _ => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_and_rejects_nonsense() {
        let mix: Mix = "put=80, get=15,cas=5".parse().unwrap();
        assert_eq!(
            mix,
            Mix {
                put: 80,
                get: 15,
                cas: 5,
                sget: 0,
                rget: 0
            }
        );
        assert_eq!("get=1".parse::<Mix>().unwrap().put, 0);
        for bad in ["", "put=0", "put", "put=x", "scan=1"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn commands_follow_the_mix_and_stay_in_the_key_space() {
        let workload = Workload {
            mix: "put=50,get=20,cas=10,sget=10,rget=10".parse().unwrap(),
            keys: 50,
            value: vec![7; 16],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = HashMap::new();
        for _ in 0..10_000 {
            let (op, command) = workload.next(&mut rng);
            let key = match &command {
                KvCommand::Put { key, value } => {
                    assert_eq!(value.len(), 16);
                    key
                }
                KvCommand::Get { key } | KvCommand::Cas { key, .. } => key,
                other => panic!("{other:?}"),
            };
            let index: u64 = std::str::from_utf8(key).unwrap()["bench-".len()..]
                .parse()
                .unwrap();
            assert!(index < 50);
            *counts.entry(op).or_insert(0) += 1;
        }
        let share = |op| f64::from(counts[&op]) / 10_000.0;
        assert!((share(Op::Put) - 0.5).abs() < 0.03, "{counts:?}");
        assert!((share(Op::ReadIndexGet) - 0.1).abs() < 0.03, "{counts:?}");
        assert!((share(Op::ServedGet) - 0.1).abs() < 0.03, "{counts:?}");
        assert!((share(Op::Get) - 0.2).abs() < 0.03, "{counts:?}");
        assert!((share(Op::Cas) - 0.1).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn answers_are_classified_by_what_was_asked() {
        let done = KvResponse::Done.encode();
        assert_eq!(outcome(Op::Put, &done), Ok("done"));
        assert_eq!(outcome(Op::Get, &done), Err("malformed_answer"));
        let failed = KvResponse::CasFailed { current: None }.encode();
        assert_eq!(outcome(Op::Cas, &failed), Ok("cas_failed"));
        assert_eq!(
            outcome(Op::Get, &KvResponse::NotFound.encode()),
            Ok("not_found")
        );
        assert_eq!(outcome(Op::Put, b"\xff\xff"), Err("malformed_answer"));
    }
}
