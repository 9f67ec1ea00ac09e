//! A client connection's commands in service, kept by the connection
//! itself. The gateway's [`submit_as`](crate::gateway::Gateway) keeps one
//! waiting task per command: its own answer channel, its own timer and,
//! in the client port, a future of about a kilobyte in the connection's
//! set. For a connection with hundreds of commands in flight that was the
//! largest cost of the port, so the port does the same work in one table:
//!
//! - a command handed on ([`Gateway::enqueue`](crate::gateway::Gateway))
//!   is entered here; its answer comes on the connection's one answer
//!   queue, with its id ([`Submissions::answered`]);
//! - the connection has one timer, set to the earliest moment anything is
//!   due ([`Submissions::alarm`]). Then a command unanswered for its
//!   resend interval goes again, the interval doubling each time (under
//!   load a command is slow, not lost), and one past `submit_timeout` is
//!   answered `Timeout` ([`Submissions::due`]);
//! - when the learner hears of a new leader, everything in service goes
//!   again at once ([`Submissions::resend_all`]).
//!
//! Those are the rules `submit_as` follows for each command. The table
//! holds at most the connection's `clients.max_in_flight` requests: the
//! connection reads no more while it is full.

use foldhash::quality::RandomState;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;
use synod_core::{Command, CommandId};
use tokio::time::Instant;

/// One command in service.
struct Pending {
    /// Kept for resends.
    command: Command,
    /// When it was handed on.
    started: Instant,
    /// When it is answered `Timeout`.
    deadline: Instant,
    /// When it goes again.
    resend_at: Instant,
    /// How long after that resend the next one comes.
    backoff: Duration,
    /// Requests with this id waiting (a client may send one twice).
    copies: u32,
}

impl Pending {
    fn next_due(&self) -> Instant {
        self.resend_at.min(self.deadline)
    }

    /// Sent again at `now`: the next resend comes after the backoff, which
    /// doubles.
    fn resent(&mut self, now: Instant) -> Command {
        self.resend_at = now + self.backoff;
        self.backoff = self.backoff.saturating_mul(2);
        self.command.clone()
    }
}

/// What is due at an alarm.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// Commands to send again.
    pub(crate) resend: Vec<Command>,
    /// Commands past their deadline, no longer in service, and how many
    /// requests wait for each.
    pub(crate) expired: Vec<(CommandId, u32)>,
}

/// The commands one connection has in service.
pub(crate) struct Submissions {
    pending: HashMap<CommandId, Pending, RandomState>,
    /// Requests waiting (the copies of every command).
    requests: usize,
    retry: Duration,
    timeout: Duration,
    /// When the connection's timer must fire (`None`: nothing is due).
    alarm: Option<Instant>,
}

impl Submissions {
    /// Resend after `retry` (then twice as long each time), give up after
    /// `timeout`.
    pub(crate) fn new(retry: Duration, timeout: Duration) -> Self {
        Self {
            pending: HashMap::default(),
            requests: 0,
            retry,
            timeout,
            alarm: None,
        }
    }

    /// Requests waiting for an answer.
    pub(crate) fn len(&self) -> usize {
        self.requests
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests == 0
    }

    /// When the connection's timer must fire: the earliest resend or
    /// deadline (it may come early: a command answered since is skipped).
    pub(crate) fn alarm(&self) -> Option<Instant> {
        self.alarm
    }

    /// `command` was handed on at `now`. A second request for a command
    /// in service waits for the same answer.
    pub(crate) fn add(&mut self, command: Command, now: Instant) {
        self.requests += 1;
        let pending = match self.pending.entry(command.id) {
            Entry::Occupied(entry) => {
                entry.into_mut().copies += 1;
                return;
            }
            Entry::Vacant(entry) => entry.insert(Pending {
                command,
                started: now,
                deadline: now + self.timeout,
                resend_at: now + self.retry,
                backoff: self.retry.saturating_mul(2),
                copies: 1,
            }),
        };
        let due = pending.next_due();
        if self.alarm.is_none_or(|alarm| alarm > due) {
            self.alarm = Some(due);
        }
    }

    /// The answer to `id` came: how many requests wait for it and when it
    /// was handed on, or `None` if it is not in service (it timed out).
    pub(crate) fn answered(&mut self, id: CommandId) -> Option<(u32, Instant)> {
        let pending = self.pending.remove(&id)?;
        self.requests -= pending.copies as usize;
        if self.pending.is_empty() {
            self.alarm = None;
        }
        Some((pending.copies, pending.started))
    }

    /// What is due at `now`, and the next alarm set.
    pub(crate) fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        self.pending.retain(|&id, pending| {
            if pending.deadline <= now {
                due.expired.push((id, pending.copies));
                return false;
            }
            if pending.resend_at <= now {
                due.resend.push(pending.resent(now));
            }
            true
        });
        self.requests -= due
            .expired
            .iter()
            .map(|&(_, copies)| copies as usize)
            .sum::<usize>();
        self.set_alarm();
        due
    }

    /// The leader changed at `now`: every command goes again (each
    /// command's next resend moves on as after any resend).
    pub(crate) fn resend_all(&mut self, now: Instant) -> Vec<Command> {
        let resend = self
            .pending
            .values_mut()
            .map(|pending| pending.resent(now))
            .collect();
        self.set_alarm();
        resend
    }

    fn set_alarm(&mut self) {
        self.alarm = self.pending.values().map(Pending::next_due).min();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(1);
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn command(seq: u64) -> Command {
        Command {
            id: CommandId { client: 1, seq },
            payload: vec![seq as u8],
        }
    }

    fn seqs(commands: &[Command]) -> Vec<u64> {
        let mut seqs: Vec<u64> = commands.iter().map(|c| c.id.seq).collect();
        seqs.sort_unstable();
        seqs
    }

    #[test]
    fn resends_back_off_and_give_up_at_the_deadline() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut table = Submissions::new(RETRY, TIMEOUT);
        table.add(command(1), start);
        assert_eq!(table.alarm(), Some(at(1)));
        // Resends after 1 s, then 2 s later, then 4 s later: 1, 3, 7.
        let mut resent_at = Vec::new();
        let mut now = start;
        while let Some(alarm) = table.alarm() {
            now = alarm;
            let due = table.due(now);
            if !due.resend.is_empty() {
                resent_at.push(now - start);
            }
            if !due.expired.is_empty() {
                assert_eq!(due.expired, vec![(command(1).id, 1)]);
                break;
            }
        }
        let secs = |s| Duration::from_secs(s);
        assert_eq!(resent_at, vec![secs(1), secs(3), secs(7)]);
        assert_eq!(now, at(10), "given up at the deadline");
        assert!(table.is_empty());
        assert_eq!(table.alarm(), None);
    }

    #[test]
    fn an_answered_command_is_neither_resent_nor_timed_out() {
        let start = Instant::now();
        let mut table = Submissions::new(RETRY, TIMEOUT);
        table.add(command(1), start);
        table.add(command(2), start + Duration::from_millis(500));
        assert_eq!(table.len(), 2);
        assert_eq!(table.answered(command(1).id), Some((1, start)));
        assert_eq!(table.answered(command(1).id), None, "answered once");
        // The alarm set for command 1 fires early for command 2: nothing due.
        let due = table.due(start + Duration::from_secs(1));
        assert_eq!(due, Due::default());
        assert_eq!(table.alarm(), Some(start + Duration::from_millis(1500)));
        let due = table.due(start + Duration::from_millis(1500));
        assert_eq!(seqs(&due.resend), vec![2]);
        assert!(table.answered(command(2).id).is_some());
        assert!(table.is_empty());
        assert_eq!(table.alarm(), None);
    }

    #[test]
    fn copies_of_a_command_wait_for_one_answer() {
        let start = Instant::now();
        let mut table = Submissions::new(RETRY, TIMEOUT);
        table.add(command(1), start);
        table.add(command(1), start + Duration::from_millis(10));
        assert_eq!(table.len(), 2);
        assert_eq!(table.answered(command(1).id), Some((2, start)));
        assert!(table.is_empty());
    }

    #[test]
    fn a_new_leader_sends_everything_again() {
        let start = Instant::now();
        let mut table = Submissions::new(RETRY, TIMEOUT);
        for seq in 1..=3 {
            table.add(command(seq), start);
        }
        let now = start + Duration::from_millis(100);
        assert_eq!(seqs(&table.resend_all(now)), vec![1, 2, 3]);
        // The next resend backs off from there: 2 s later, not 1 s after
        // the start.
        assert_eq!(table.alarm(), Some(now + 2 * RETRY));
        assert_eq!(table.due(start + RETRY), Due::default());
    }
}
