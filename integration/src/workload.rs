//! Concurrent clients on a few keys, each operation recorded for the
//! checkers: puts, linearizable gets and compare-and-sets on a handful of
//! registers and lock/unlock on two locks (checked by
//! [`crate::linearizability`]), plus writes of fresh keys that must all be
//! readable after the faults heal.
//!
//! The clients run on a thread and runtime of their own, so the test
//! thread can kill, pause and restart processes (blocking calls) while
//! they keep going.

use crate::history::{Call, Op, Outcome, Recorder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use synod_client::{Client, ClientConfig, ClientError};

/// The shape of the load.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Concurrent clients, each one command at a time.
    pub clients: usize,
    /// Registers the clients share at any one time.
    pub keys: usize,
    /// How long the clients use one set of registers before moving on to
    /// new keys (`reg-E-K` in epoch `E`): each key's history stays short,
    /// so checking a long run costs time in proportion to its length.
    pub key_lifetime: Duration,
    /// Percent of operations that write a fresh key instead.
    pub fresh_percent: u32,
    /// Percent of operations that take or release a lock (`lock-E-K`,
    /// two in use at a time) instead.
    pub lock_percent: u32,
    /// How long one client call may take before its outcome is unknown.
    pub timeout: Duration,
    /// Seed of the clients' choices.
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            clients: 6,
            keys: 4,
            key_lifetime: Duration::from_secs(10),
            fresh_percent: 20,
            lock_percent: 10,
            timeout: Duration::from_secs(1),
            seed: 1,
        }
    }
}

/// What the clients did.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// Every register operation, with its outcome.
    pub history: Vec<Op>,
    /// Fresh keys whose write was acknowledged, and their values.
    pub acknowledged: BTreeMap<String, String>,
    /// Fresh-key writes without an answer.
    pub unanswered: usize,
    /// The history's clock (to add operations after the workload).
    pub clock: Recorder,
}

/// Clients running until [`Running::stop`].
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Results>,
    recorder: Recorder,
}

impl Workload {
    /// The registers in use at `at` (time since the history started).
    pub fn registers_at(&self, at: Duration) -> Vec<String> {
        let epoch = at.as_millis() / self.key_lifetime.as_millis().max(1);
        (0..self.keys).map(|k| format!("reg-{epoch}-{k}")).collect()
    }

    /// The locks in use at `at`.
    pub fn locks_at(&self, at: Duration) -> Vec<String> {
        let epoch = at.as_millis() / self.key_lifetime.as_millis().max(1);
        (0..2).map(|k| format!("lock-{epoch}-{k}")).collect()
    }

    /// Start the clients against `endpoints` of cluster `cluster`. Client
    /// `i` tries the endpoints starting from the `i`-th, so the load
    /// spreads over the nodes.
    pub fn start(&self, endpoints: &[SocketAddr], cluster: &str) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let recorder = Recorder::new();
        let configs: Vec<ClientConfig> = (0..self.clients)
            .map(|i| {
                let mut rotated = endpoints.to_vec();
                rotated.rotate_left(i % endpoints.len().max(1));
                let mut config = ClientConfig::new(rotated, cluster);
                config.timeout = self.timeout;
                config.attempt_timeout = Duration::from_millis(700).min(self.timeout);
                config
            })
            .collect();
        let (workload, flag, history) = (self.clone(), stop.clone(), recorder.clone());
        let thread = std::thread::Builder::new()
            .name("workload".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the clients");
                runtime.block_on(workload.run(configs, flag, history))
            })
            .expect("spawn the workload");
        Running {
            stop,
            thread,
            recorder,
        }
    }

    async fn run(
        self,
        configs: Vec<ClientConfig>,
        stop: Arc<AtomicBool>,
        history: Recorder,
    ) -> Results {
        let tasks: Vec<_> = configs
            .into_iter()
            .enumerate()
            .map(|(index, config)| {
                let one = ClientRun {
                    index,
                    client: Client::new(config),
                    rng: ChaCha8Rng::seed_from_u64(self.seed.wrapping_add(index as u64)),
                    workload: self.clone(),
                    history: history.clone(),
                    last_seen: BTreeMap::new(),
                    results: Results::default(),
                    next_value: 0,
                    holding: Default::default(),
                };
                tokio::spawn(one.run(stop.clone()))
            })
            .collect();
        let mut results = Results::default();
        for task in tasks {
            let one = task.await.expect("a client task");
            results.acknowledged.extend(one.acknowledged);
            results.unanswered += one.unanswered;
        }
        results.history = history.ops();
        results.clock = history;
        results
    }
}

impl Running {
    /// Operations recorded so far.
    pub fn ops_so_far(&self) -> usize {
        self.recorder.ops().len()
    }

    /// Stop the clients (each finishes its current operation) and collect
    /// what they did.
    pub fn stop(self) -> Results {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the workload thread")
    }
}

/// One client's loop.
struct ClientRun {
    index: usize,
    client: Client,
    rng: ChaCha8Rng,
    workload: Workload,
    history: Recorder,
    /// The last value this client saw in each register.
    last_seen: BTreeMap<String, Option<String>>,
    results: Results,
    next_value: u64,
    /// Locks this client was last granted and has not released.
    holding: std::collections::BTreeSet<String>,
}

impl ClientRun {
    async fn run(mut self, stop: Arc<AtomicBool>) -> Results {
        while !stop.load(Ordering::Relaxed) {
            let roll = self.rng.random_range(0..100);
            if roll < self.workload.fresh_percent {
                self.write_fresh().await;
            } else if roll < self.workload.fresh_percent + self.workload.lock_percent {
                self.lock_op().await;
            } else {
                self.register_op().await;
            }
        }
        self.results
    }

    /// A value no other call writes, in this workload or in another one
    /// with a different seed (tests that run one workload after another
    /// on the same cluster keep every fresh key).
    fn fresh_value(&mut self) -> String {
        self.next_value += 1;
        let seed = self.workload.seed;
        format!("s{seed}-c{}-{}", self.index, self.next_value)
    }

    async fn write_fresh(&mut self) {
        let value = self.fresh_value();
        let key = format!("fresh-{value}");
        match self.client.put(key.as_bytes(), value.as_bytes()).await {
            Ok(()) => {
                self.results.acknowledged.insert(key, value);
            }
            Err(_) => self.results.unanswered += 1,
        }
    }

    /// Take or release one of the locks in use (released if this client
    /// believes it holds it).
    async fn lock_op(&mut self) {
        let locks = self.workload.locks_at(self.history.now());
        let key = locks[self.rng.random_range(0..locks.len())].clone();
        let owner = format!("c{}", self.index);
        let call = if self.holding.contains(&key) {
            Call::Unlock(owner)
        } else {
            Call::Lock(owner)
        };
        let outcome = self.recorded(&key, call.clone()).await;
        match (&call, &outcome) {
            (Call::Lock(_), Outcome::Granted(_)) => {
                self.holding.insert(key);
            }
            (Call::Unlock(_), Outcome::Done | Outcome::NotOwner(_)) => {
                self.holding.remove(&key);
            }
            _ => {}
        }
    }

    /// Run `call` on `key` and record it with its times and outcome.
    async fn recorded(&mut self, key: &str, call: Call) -> Outcome {
        let invoke = self.history.now();
        let outcome = execute(&mut self.client, key, &call).await;
        let complete = self.history.now();
        self.history.record(Op {
            client: self.index,
            key: key.to_owned(),
            call,
            outcome: outcome.clone(),
            invoke,
            complete,
        });
        outcome
    }

    async fn register_op(&mut self) {
        let registers = self.workload.registers_at(self.history.now());
        let key = registers[self.rng.random_range(0..registers.len())].clone();
        let roll = self.rng.random_range(0..100);
        // Half the reads through the log, half by read index: both are
        // checked against the same linearizable register.
        let call = if roll < 20 {
            Call::Get
        } else if roll < 40 {
            Call::ReadIndexGet
        } else if roll < 75 {
            Call::Put(self.fresh_value())
        } else {
            let expected = self.last_seen.get(&key).cloned().flatten();
            Call::Cas {
                expected,
                new: self.fresh_value(),
            }
        };
        let outcome = self.recorded(&key, call.clone()).await;
        match (&call, outcome) {
            (_, Outcome::Value(seen) | Outcome::CasFailed(seen)) => {
                self.last_seen.insert(key, seen);
            }
            (Call::Put(v) | Call::Cas { new: v, .. }, Outcome::Done) => {
                self.last_seen.insert(key, Some(v.clone()));
            }
            _ => {}
        }
    }
}

/// Run `call` on `key`; any error but the register's own answers is an
/// unknown outcome.
pub async fn execute(client: &mut Client, key: &str, call: &Call) -> Outcome {
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let key = key.as_bytes();
    match call {
        Call::Put(value) => match client.put(key, value.as_bytes()).await {
            Ok(()) => Outcome::Done,
            Err(_) => Outcome::Unknown,
        },
        Call::Get => match client.get(key).await {
            Ok(value) => Outcome::Value(Some(text(value))),
            Err(ClientError::NotFound) => Outcome::Value(None),
            Err(_) => Outcome::Unknown,
        },
        Call::ReadIndexGet => match client.get_read_index(key).await {
            Ok(value) => Outcome::Value(Some(text(value))),
            Err(ClientError::NotFound) => Outcome::Value(None),
            Err(_) => Outcome::Unknown,
        },
        Call::Cas { expected, new } => {
            let expected = expected.as_deref().map(str::as_bytes);
            match client.cas(key, expected, new.as_bytes()).await {
                Ok(()) => Outcome::Done,
                Err(ClientError::CasFailed { current }) => Outcome::CasFailed(current.map(text)),
                Err(_) => Outcome::Unknown,
            }
        }
        Call::Lock(owner) => match client.lock(key, owner).await {
            Ok(token) => Outcome::Granted(token),
            Err(ClientError::Held { owner, token }) => Outcome::Held { owner, token },
            Err(_) => Outcome::Unknown,
        },
        Call::Unlock(owner) => match client.unlock(key, owner).await {
            Ok(()) => Outcome::Done,
            Err(ClientError::NotOwner { owner }) => Outcome::NotOwner(owner),
            Err(_) => Outcome::Unknown,
        },
    }
}
