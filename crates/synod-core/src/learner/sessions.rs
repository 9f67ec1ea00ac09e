//! Client sessions: the exactly-once filter, with bounded memory.
//!
//! A client first opens a session: a command with sequence number
//! [`OPEN_SESSION`] (its client id is any nonce the client picked to get
//! the answer). The learner gives it the session id `slot << 20 | index`,
//! the command's position in the log, so every learner assigns the same
//! one and no two opens, not even two copies of the same, ever share one.
//! The client then numbers its commands 1, 2, … under that session id.
//!
//! Per session the filter keeps every sequence number up to `contiguous`
//! plus the out-of-order ones above it, and the last slot it was active
//! in. A session idle for `session_horizon` slots, or the idlest one once
//! there are `max_sessions`, is forgotten: deterministically, by log
//! position, so every learner forgets the same ones. A command of a
//! session that is not (or no longer) known is never applied: it is
//! answered "session expired". Since session ids are never reused, a late
//! retry of a command from a forgotten session can never be applied a
//! second time; its client opens a new session.

use crate::types::{Command, CommandId, Slot};
use std::collections::{BTreeSet, HashMap};

/// The sequence number of a command that opens a session.
pub const OPEN_SESSION: u64 = 0;

/// Bits of a session id taken by the command's index in its slot.
const INDEX_BITS: u32 = 20;

/// Out-of-order sequence numbers one session may leave open. Past it the
/// oldest gap is given up (a command that old is treated as applied).
const MAX_ABOVE: usize = 1 << 16;

/// The outcome of filtering one slot's commands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// Commands to apply, in order.
    pub apply: Vec<Command>,
    /// Sessions opened: the opening command and the new session's id.
    pub opened: Vec<(CommandId, u64)>,
    /// Commands of unknown or expired sessions, not applied.
    pub expired: Vec<CommandId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Window {
    contiguous: u64,
    above: BTreeSet<u64>,
    active: Slot,
    /// The slot this session is filed under in `by_activity` (at most
    /// `active`: refiled only when it reaches the front).
    listed: Slot,
}

impl Window {
    /// Record `seq`; false if it was applied before (a retry decided again).
    fn insert(&mut self, seq: u64) -> bool {
        if seq == self.contiguous + 1 && self.above.is_empty() {
            self.contiguous = seq; // in order: the common case
            return true;
        }
        if seq <= self.contiguous || !self.above.insert(seq) {
            return false;
        }
        if self.above.len() > MAX_ABOVE {
            let oldest = self.above.pop_first().expect("not empty");
            self.contiguous = oldest;
        }
        while self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        true
    }
}

/// Every live session's window.
#[derive(Clone, Debug, Default)]
pub(super) struct Sessions {
    windows: HashMap<u64, Window>,
    /// (slot listed, session), one entry per session, refiled lazily: a
    /// session's entry is its `listed` slot, which may be older than its
    /// last active slot. Only the front is ever brought up to date (see
    /// `idlest`), so a command costs no reordering.
    by_activity: BTreeSet<(Slot, u64)>,
}

impl PartialEq for Sessions {
    /// The same sessions in the same state, however lazily filed.
    fn eq(&self, other: &Self) -> bool {
        self.records() == other.records()
    }
}

impl Eq for Sessions {}

/// One session in a snapshot: id, last active slot, contiguous, above.
pub(super) type SessionRecord = (u64, Slot, u64, Vec<u64>);

impl Sessions {
    /// Sort slot `slot`'s commands into those to apply, opens and expired.
    pub(super) fn filter(&mut self, slot: Slot, commands: &[Command]) -> Filtered {
        let mut filtered = Filtered::default();
        for (index, command) in commands.iter().enumerate() {
            if command.id.seq == OPEN_SESSION {
                match self.open(slot, index) {
                    Some(session) => filtered.opened.push((command.id, session)),
                    None => filtered.expired.push(command.id),
                }
                continue;
            }
            let Some(window) = self.windows.get_mut(&command.id.client) else {
                filtered.expired.push(command.id);
                continue;
            };
            window.active = slot;
            if window.insert(command.id.seq) {
                filtered.apply.push(command.clone());
            }
        }
        filtered
    }

    fn open(&mut self, slot: Slot, index: usize) -> Option<u64> {
        let index = u64::try_from(index).ok().filter(|i| *i < 1 << INDEX_BITS)?;
        let session = slot.checked_mul(1 << INDEX_BITS)? | index;
        let window = Window {
            active: slot,
            listed: slot,
            ..Window::default()
        };
        self.windows.insert(session, window);
        self.by_activity.insert((slot, session));
        Some(session)
    }

    /// Forget the sessions idle for more than `horizon` slots as of `slot`,
    /// then the idlest beyond `max`.
    pub(super) fn expire(&mut self, slot: Slot, horizon: Slot, max: usize) {
        while let Some((active, session)) = self.idlest() {
            let idle = slot.saturating_sub(active) > horizon;
            if !idle && self.windows.len() <= max {
                break;
            }
            self.by_activity.pop_first();
            self.windows.remove(&session);
        }
    }

    /// The session idle longest (ties: the lowest id) and its last active
    /// slot, with its entry at the front of `by_activity`. Entries ahead
    /// of it that are out of date are refiled first: each is at most its
    /// session's `active`, so the first up-to-date entry is the idlest.
    fn idlest(&mut self) -> Option<(Slot, u64)> {
        loop {
            let &(listed, session) = self.by_activity.first()?;
            let window = self
                .windows
                .get_mut(&session)
                .expect("one entry per session");
            if window.active == listed {
                return Some((listed, session));
            }
            self.by_activity.pop_first();
            window.listed = window.active;
            self.by_activity.insert((window.active, session));
        }
    }

    /// Live sessions.
    pub(super) fn len(&self) -> usize {
        self.windows.len()
    }

    /// Every session, sorted, for a snapshot (the same on every learner).
    pub(super) fn records(&self) -> Vec<SessionRecord> {
        let mut records: Vec<SessionRecord> = self
            .windows
            .iter()
            .map(|(id, w)| {
                (
                    *id,
                    w.active,
                    w.contiguous,
                    w.above.iter().copied().collect(),
                )
            })
            .collect();
        records.sort_unstable();
        records
    }

    /// The sessions of a snapshot.
    pub(super) fn from_records(records: &[SessionRecord]) -> Self {
        let mut sessions = Self::default();
        for (id, active, contiguous, above) in records {
            let window = Window {
                contiguous: *contiguous,
                above: above.iter().copied().collect(),
                active: *active,
                listed: *active,
            };
            sessions.windows.insert(*id, window);
            sessions.by_activity.insert((*active, *id));
        }
        sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn command(client: u64, seq: u64) -> Command {
        Command {
            id: CommandId { client, seq },
            payload: vec![],
        }
    }

    fn open(sessions: &mut Sessions, slot: Slot) -> u64 {
        let filtered = sessions.filter(slot, &[command(99, OPEN_SESSION)]);
        filtered.opened[0].1
    }

    fn applied(filtered: &Filtered) -> Vec<u64> {
        filtered.apply.iter().map(|c| c.id.seq).collect()
    }

    #[test]
    fn a_session_applies_each_sequence_number_once() {
        let mut sessions = Sessions::default();
        let s = open(&mut sessions, 1);
        let once = sessions.filter(2, &[command(s, 2), command(s, 1), command(s, 2)]);
        assert_eq!(applied(&once), vec![2, 1]);
        assert!(applied(&sessions.filter(3, &[command(s, 1)])).is_empty());
    }

    #[test]
    fn two_copies_of_one_open_get_two_sessions() {
        let mut sessions = Sessions::default();
        let both = sessions.filter(5, &[command(7, 0), command(7, 0)]);
        assert_eq!(both.opened.len(), 2);
        assert_ne!(both.opened[0].1, both.opened[1].1);
        assert_ne!(open(&mut sessions, 6), both.opened[0].1);
    }

    #[test]
    fn an_unknown_or_expired_session_is_never_applied() {
        let mut sessions = Sessions::default();
        let unknown = sessions.filter(1, &[command(12345, 1)]);
        assert_eq!(
            unknown.expired,
            vec![CommandId {
                client: 12345,
                seq: 1
            }]
        );
        let s = open(&mut sessions, 2);
        assert_eq!(applied(&sessions.filter(3, &[command(s, 1)])), vec![1]);
        sessions.expire(103, 100, 10);
        assert_eq!(sessions.len(), 1, "idle for 100 slots: kept");
        sessions.expire(104, 100, 10);
        assert_eq!(sessions.len(), 0, "idle for 101 slots: forgotten");
        let late = sessions.filter(105, &[command(s, 1), command(s, 2)]);
        assert!(late.apply.is_empty(), "a late retry is not applied again");
        assert_eq!(late.expired.len(), 2);
    }

    #[test]
    fn the_idlest_sessions_go_beyond_the_limit() {
        let mut sessions = Sessions::default();
        let old = open(&mut sessions, 1);
        let newer = open(&mut sessions, 2);
        sessions.filter(3, &[command(old, 1)]);
        sessions.expire(3, 1_000, 1);
        assert!(sessions.windows.contains_key(&old), "used at slot 3");
        assert!(!sessions.windows.contains_key(&newer));
    }

    #[test]
    fn lazy_filing_expires_exactly_the_idlest() {
        // Against a plain model: every session's last active slot.
        let mut sessions = Sessions::default();
        let mut model: BTreeMap<u64, Slot> = BTreeMap::new();
        let mut rng = crate::rng::SplitMix64::new(7);
        for slot in 1..3_000u64 {
            if rng.next_u64().is_multiple_of(3) || model.is_empty() {
                model.insert(open(&mut sessions, slot), slot);
            } else {
                let ids: Vec<u64> = model.keys().copied().collect();
                let s = ids[(rng.next_u64() % ids.len() as u64) as usize];
                sessions.filter(slot, &[command(s, slot)]);
                model.insert(s, slot);
            }
            let (horizon, max) = (200, 40);
            sessions.expire(slot, horizon, max);
            model.retain(|_, active| slot - *active <= horizon);
            while model.len() > max {
                let (&s, _) = model.iter().min_by_key(|(s, a)| (**a, **s)).unwrap();
                model.remove(&s);
            }
            let kept: BTreeMap<u64, Slot> = sessions
                .windows
                .iter()
                .map(|(s, w)| (*s, w.active))
                .collect();
            assert_eq!(kept, model, "at slot {slot}");
        }
    }

    #[test]
    fn records_round_trip() {
        let mut sessions = Sessions::default();
        let s = open(&mut sessions, 1);
        sessions.filter(2, &[command(s, 1), command(s, 3)]);
        let back = Sessions::from_records(&sessions.records());
        assert_eq!(back, sessions);
    }

    #[test]
    fn out_of_order_gaps_are_bounded() {
        let mut window = Window::default();
        for seq in 2..(MAX_ABOVE as u64 + 3) {
            window.insert(seq);
        }
        assert!(window.above.len() <= MAX_ABOVE);
        assert!(!window.insert(1), "the oldest gap was given up");
    }
}
