//! Group commit: one thread owns the store; callers submit batches and are
//! told when theirs is durable.
//!
//! ```text
//! submit(writes, done) ──▶ channel ──▶ writer thread:
//!                                       take everything pending
//!                                       one WriteBatch, sync = true   (one fsync)
//!                                       call each `done`, in submission order
//! ```
//!
//! While one write is in flight, the next group gathers in the channel, so
//! one fsync covers as many submissions as arrived during the previous one.
//! A store whose writes no command waits for (a learner's: it applies
//! chosen values before its own copy is durable) may also *linger*: wait
//! a little after a group's first submission for more, so that at low
//! load it pays one fsync per few milliseconds rather than one per write.
//! Nothing is acknowledged sooner for it: completions still follow the
//! fsync.
//! `submit` never blocks, so an actix actor can call it from a handler and
//! have `done` send it a message.
//!
//! After a failed write the writer fails every later submission too: once
//! an fsync has failed nobody knows what is on disk, and acknowledging
//! anything after it would be a lie.

use crate::error::StorageError;
use crate::store::{Store, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Called once with the outcome of a submission.
pub type Completion = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

struct Submission {
    writes: Vec<Write>,
    done: Completion,
}

/// Limits on one group.
#[derive(Clone, Copy, Debug)]
pub struct GroupLimits {
    /// Most submissions written by one fsync.
    pub max_submissions: usize,
    /// Most individual writes in one group (a single larger submission
    /// still goes alone).
    pub max_writes: usize,
    /// How long a group waits after its first submission for more before
    /// it is written (zero: at once).
    pub linger: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_submissions: 4096,
            max_writes: 65_536,
            linger: Duration::ZERO,
        }
    }
}

/// Handle on a group-commit writer thread.
pub struct GroupCommit<S: Store> {
    sender: Option<Sender<Submission>>,
    thread: Option<JoinHandle<S>>,
    path: PathBuf,
}

/// Told about every group the writer makes durable (or fails), on the
/// writer thread: what metrics are made of.
pub trait GroupObserver: Send + Sync + 'static {
    /// One group: its submissions and writes, how long the synced write
    /// took, and whether it succeeded.
    fn group(&self, submissions: usize, writes: usize, took: std::time::Duration, ok: bool);
}

impl<S: Store> GroupCommit<S> {
    /// Start a writer thread that owns `store`. `path` names the store in
    /// errors.
    pub fn spawn(store: S, path: impl Into<PathBuf>, limits: GroupLimits) -> Self {
        Self::spawn_observed(store, path, limits, None)
    }

    /// [`GroupCommit::spawn`], telling `observer` about every group.
    pub fn spawn_observed(
        store: S,
        path: impl Into<PathBuf>,
        limits: GroupLimits,
        observer: Option<std::sync::Arc<dyn GroupObserver>>,
    ) -> Self {
        let path = path.into();
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("synod-group-commit".into())
            .spawn(move || run(store, receiver, limits, observer))
            .expect("spawning the group-commit thread");
        Self {
            sender: Some(sender),
            thread: Some(thread),
            path,
        }
    }

    /// Queue `writes`; `done` runs on the writer thread once they are
    /// durable (or failed). Submissions complete in the order they were
    /// made. Never blocks.
    pub fn submit(
        &self,
        writes: Vec<Write>,
        done: impl FnOnce(Result<(), StorageError>) + Send + 'static,
    ) {
        let submission = Submission {
            writes,
            done: Box::new(done),
        };
        let sender = self.sender.as_ref().expect("present until shutdown");
        if let Err(mpsc::SendError(submission)) = sender.send(submission) {
            (submission.done)(Err(StorageError::WriterStopped {
                path: self.path.clone(),
            }));
        }
    }

    /// Submit and wait (for tests and start-up code, not for actors).
    pub fn submit_and_wait(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(writes, move |result| {
            let _ = tx.send(result);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StorageError::WriterStopped {
                path: self.path.clone(),
            })
        })
    }

    /// Finish every queued submission, stop the thread, and hand the store
    /// back.
    pub fn shutdown(mut self) -> Result<S, StorageError> {
        self.sender.take();
        let thread = self.thread.take().expect("present until shutdown");
        thread.join().map_err(|_| StorageError::WriterStopped {
            path: self.path.clone(),
        })
    }
}

impl<S: Store> Drop for GroupCommit<S> {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<S: Store>(
    mut store: S,
    receiver: Receiver<Submission>,
    limits: GroupLimits,
    observer: Option<std::sync::Arc<dyn GroupObserver>>,
) -> S {
    while let Ok(first) = receiver.recv() {
        let mut group = gather(first, &receiver, limits);
        let mut writes = Vec::with_capacity(group.iter().map(|s| s.writes.len()).sum());
        for submission in &mut group {
            writes.append(&mut submission.writes);
        }
        let began = std::time::Instant::now();
        let result = store.write_batch(&writes);
        if let Some(observer) = &observer {
            observer.group(group.len(), writes.len(), began.elapsed(), result.is_ok());
        }
        for submission in group {
            (submission.done)(result.clone());
        }
    }
    store
}

/// `first` plus whatever else is already waiting, or arrives within the
/// linger, within the limits.
fn gather(
    first: Submission,
    receiver: &Receiver<Submission>,
    limits: GroupLimits,
) -> Vec<Submission> {
    let until = Instant::now() + limits.linger;
    let mut writes = first.writes.len();
    let mut group = vec![first];
    while group.len() < limits.max_submissions && writes < limits.max_writes {
        let next = match receiver.try_recv() {
            Ok(next) => next,
            Err(_) if limits.linger.is_zero() => break,
            Err(_) => {
                match receiver.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(next) => next,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        writes += next.writes.len();
        group.push(next);
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::ProposerStore;
    use std::sync::{Arc, Mutex};
    use synod_core::ProposerWrite;

    fn round(r: u64) -> Vec<Write> {
        vec![Write::Proposer(ProposerWrite::Round(r))]
    }

    #[test]
    fn completions_arrive_in_submission_order() {
        let store = MemoryStore::new();
        let writer = GroupCommit::spawn(store.clone(), "<memory>", GroupLimits::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        for r in 1..=100 {
            let order = Arc::clone(&order);
            writer.submit(round(r), move |result| {
                result.unwrap();
                order.lock().unwrap().push(r);
            });
        }
        writer.shutdown().unwrap();
        assert_eq!(*order.lock().unwrap(), (1..=100).collect::<Vec<_>>());
        assert_eq!(store.load_proposer().unwrap().max_round, 100);
    }

    #[test]
    fn a_failed_write_fails_its_group_and_everything_after() {
        let store = MemoryStore::new();
        let writer = GroupCommit::spawn(store.clone(), "<memory>", GroupLimits::default());
        writer.submit_and_wait(round(1)).unwrap();
        store.fail_writes(true);
        assert!(matches!(
            writer.submit_and_wait(round(2)),
            Err(StorageError::WriteFailed { .. })
        ));
        store.fail_writes(false);
        assert!(matches!(
            writer.submit_and_wait(round(3)),
            Err(StorageError::Poisoned { .. })
        ));
        assert_eq!(
            store.load_proposer().unwrap().max_round,
            1,
            "nothing after the failure is kept"
        );
    }

    /// Counts the submissions of each group.
    #[derive(Default)]
    struct Groups(Mutex<Vec<usize>>);

    impl GroupObserver for Groups {
        fn group(&self, submissions: usize, _: usize, _: std::time::Duration, _: bool) {
            self.0.lock().unwrap().push(submissions);
        }
    }

    #[test]
    fn a_lingering_group_waits_for_more_submissions() {
        // The group closes at two submissions, long before the linger
        // ends: the writer waited for the second rather than writing the
        // first alone.
        let groups = Arc::new(Groups::default());
        let limits = GroupLimits {
            max_submissions: 2,
            linger: Duration::from_secs(30),
            ..GroupLimits::default()
        };
        let observer: Arc<dyn GroupObserver> = groups.clone();
        let writer =
            GroupCommit::spawn_observed(MemoryStore::new(), "<memory>", limits, Some(observer));
        let (tx, rx) = std::sync::mpsc::channel();
        for r in 1..=2 {
            let tx = tx.clone();
            writer.submit(round(r), move |result| tx.send(result).unwrap());
        }
        for _ in 0..2 {
            rx.recv().unwrap().unwrap();
        }
        assert_eq!(*groups.0.lock().unwrap(), vec![2]);
        // A lone submission is written once the linger ends.
        let writer = GroupCommit::spawn(
            MemoryStore::new(),
            "<memory>",
            GroupLimits {
                linger: Duration::from_millis(5),
                ..GroupLimits::default()
            },
        );
        writer.submit_and_wait(round(3)).unwrap();
    }

    #[test]
    fn submitting_after_the_writer_stopped_reports_it() {
        let (tx, rx) = mpsc::channel::<Submission>();
        drop(rx);
        let writer: GroupCommit<MemoryStore> = GroupCommit {
            sender: Some(tx),
            thread: None,
            path: PathBuf::from("<memory>"),
        };
        assert!(matches!(
            writer.submit_and_wait(round(1)),
            Err(StorageError::WriterStopped { .. })
        ));
    }
}
